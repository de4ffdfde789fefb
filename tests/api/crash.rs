//! Durability and signals with the real binary: `kill -9` mid-way through 1,000 jobs loses
//! nothing; SIGTERM finishes running jobs, or gives them back when the grace period is over.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_way_loses_no_job() {
    const JOBS: usize = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "[jobs]\nworkers = 8\n");
    let db = dir.path().join("hookrelay.db");
    let app = ChildApp::start(&config);

    // Enqueue 1,000 jobs, 16 requests at a time; every 201 is an acked job.
    let mut acked = 0;
    let bodies: Vec<_> = (0..JOBS).map(|i| json!({"kind": "system.noop", "payload": {"sleep_ms": 40}, "idempotency_key": format!("crash-{i}")})).collect();
    for chunk in bodies.chunks(16) {
        let futs = chunk.iter().map(|b| app.post("/v1beta1/admin/jobs", b));
        for res in futures_util::future::join_all(futs).await {
            assert_eq!(res.expect("post").status(), reqwest::StatusCode::CREATED);
            acked += 1;
        }
    }
    assert_eq!(acked, JOBS);

    // Kill it while jobs are running.
    wait_until(Duration::from_secs(30), "some jobs to succeed", || async {
        let s = job_states(&db);
        (s.get("succeeded").copied().unwrap_or(0) >= 100).then_some(())
    })
    .await;
    let mut app = app;
    app.signal(Signal::SIGKILL);
    app.wait_exit(Duration::from_secs(5));
    let before = job_states(&db);
    let total: i64 = before.values().sum();
    assert_eq!(total, JOBS as i64, "every acked job is stored: {before:?}");
    assert!(
        before.get("succeeded").copied().unwrap_or(0) < JOBS as i64,
        "killed mid-way: {before:?}"
    );
    drop(app);

    // Restart: everything ends succeeded.
    let _app = ChildApp::start(&config);
    let states = wait_until(
        Duration::from_secs(60),
        "all jobs to succeed after restart",
        || async {
            let s = job_states(&db);
            (s.get("succeeded").copied().unwrap_or(0) == JOBS as i64).then_some(s)
        },
    )
    .await;
    assert_eq!(states.len(), 1, "no job is dead, stuck or lost: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let db = dir.path().join("hookrelay.db");
    let mut app = ChildApp::start(&config);
    for _ in 0..3 {
        let res = app
            .post(
                "/v1beta1/admin/jobs",
                &json!({"kind": "system.noop", "payload": {"sleep_ms": 1500}}),
            )
            .await;
        assert_eq!(res.expect("post").status(), reqwest::StatusCode::CREATED);
    }
    wait_until(Duration::from_secs(10), "jobs to run", || async {
        (job_states(&db).get("running").copied().unwrap_or(0) == 3).then_some(())
    })
    .await;
    // A row is `running` once its claim commits; the dispatcher starts the job a moment later.
    // A job claimed but not started when the signal arrives is given back, not run: wait for
    // the start (the jobs sleep 1.5 s, so they are still running at the signal).
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.signal(Signal::SIGTERM);
    let status = app.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", app.log());
    assert_eq!(
        job_states(&db).get("succeeded").copied(),
        Some(3),
        "{:?}",
        job_states(&db)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_back_jobs_that_outlast_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("read")
            .replace("shutdown_grace = \"10s\"", "shutdown_grace = \"1s\""),
    )
    .expect("write");
    let db = dir.path().join("hookrelay.db");
    let mut app = ChildApp::start(&config);
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "payload": {"sleep_ms": 60000}}),
        )
        .await;
    assert_eq!(res.expect("post").status(), reqwest::StatusCode::CREATED);
    wait_until(Duration::from_secs(10), "the job to run", || async {
        (job_states(&db).get("running").copied().unwrap_or(0) == 1).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    app.signal(Signal::SIGINT);
    let status = app.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", app.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after the grace period"
    );
    let conn = rusqlite::Connection::open(&db).expect("db");
    let (state, attempt, lease): (String, i64, Option<i64>) = conn
        .query_row("SELECT state, attempt, lease_until FROM jobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("row");
    assert_eq!(
        (state.as_str(), attempt, lease),
        ("queued", 0, None),
        "released without spending the attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_front_events_stream_in_loses_no_acked_event() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(
        dir.path(),
        &format!("[front]\nwebhook_secret = \"{}\"\n", crate::front::SECRET),
    );
    let db = dir.path().join("hookrelay.db");
    let mut app = ChildApp::start(&config);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let posters: Vec<_> = (0..8)
        .map(|p| {
            let (acked, stop, base) = (Arc::clone(&acked), Arc::clone(&stop), app.address.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let event_id = format!("evt_crash_{p}_{n}");
                    let body = crate::front::full_inbound(&event_id, &format!("msg_{p}_{n}"));
                    let res = crate::front::post_front_result(&client, &base, &body).await;
                    match res {
                        Ok(r) if r.status() == reqwest::StatusCode::OK => {
                            acked.lock().expect("lock").push(event_id)
                        }
                        Ok(r) => panic!("unexpected answer {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "some events to be acked",
        || async { (acked.lock().expect("lock").len() >= 300).then_some(()) },
    )
    .await;
    app.signal(Signal::SIGKILL);
    app.wait_exit(Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    for p in posters {
        p.await.expect("poster");
    }
    drop(app);
    let acked = acked.lock().expect("lock").clone();

    let _app = ChildApp::start(&config);
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    wait_until(
        Duration::from_secs(60),
        "every acked event to be processed",
        || async {
            let processed: i64 = conn
                .query_row(
                    // Every stored event processed (some stored ones were never acked: the
                    // kill cut their answer off), and at least as many as were acked.
                    "SELECT CASE WHEN SUM(state != 'processed') = 0 THEN COUNT(*) ELSE -1 END FROM inbound_events",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
            (processed >= acked.len() as i64).then_some(())
        },
    )
    .await;
    let mut stmt = conn
        .prepare("SELECT state FROM inbound_events WHERE external_id = ?1")
        .expect("prepare");
    for id in &acked {
        let state: String = stmt
            .query_row([id], |r| r.get(0))
            .unwrap_or_else(|_| panic!("acked event {id} was lost"));
        assert_eq!(state, "processed", "{id}");
    }
}
