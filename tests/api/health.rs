//! What `/readyz` and `/metrics` cost and say while writes fail: at most one probe
//! commit per second, at most one stored-state read per 5 s, and 503 while the latest write
//! failed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hookrelay::store::{StoreError, writer::QUEUE_CAPACITY};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::*;

/// Calls `path` `total` times, `at_once` requests in flight at a time; returns every status.
async fn hammer(app: &TestApp, path: &str, total: usize, at_once: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(total);
    for _ in 0..total / at_once {
        let wave: Vec<_> = (0..at_once)
            .map(|_| {
                let req = app.client.get(app.url(path)).send();
                tokio::spawn(async move { req.await.expect("request").status() })
            })
            .collect();
        for r in wave {
            statuses.push(r.await.expect("task"));
        }
    }
    statuses
}

/// Waits until `/readyz` answers `status`; returns its body and how long that took.
async fn wait_readyz(app: &TestApp, status: StatusCode, within: Duration) -> (Value, Duration) {
    let started = Instant::now();
    let body = wait_until(within, &format!("readyz {status}"), || async {
        let (s, body) = readyz(app).await;
        (s == status).then_some(body)
    })
    .await;
    (body, started.elapsed())
}

/// Turns every write on the writer's connection into a read-only failure, or back: SQLite's
/// SQLITE_READONLY (like a file system that went read-only), PostgreSQL's "cannot execute …
/// in a read-only transaction" (like a server that became a standby). Runs between two
/// transactions, so it never fails itself.
async fn set_read_only(app: &TestApp, on: bool) {
    app.app_store
        .writer()
        .run_outside_transaction(move |conn| {
            match conn.sqlite() {
                Some(c) => c.pragma_update(None, "query_only", on)?,
                None => conn.execute_batch(if on {
                    "SET SESSION default_transaction_read_only = on"
                } else {
                    "SET SESSION default_transaction_read_only = off"
                })?,
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("read only");
}

/// Whether `message` names a read-only database (SQLite's wording or PostgreSQL's).
fn names_read_only(message: &str) -> bool {
    message.contains("readonly") || message.contains("read-only")
}

#[tokio::test]
async fn readyz_commits_at_most_one_probe_per_second_however_often_it_is_called() {
    let app = spawn_app().await;
    wait_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
    let writer = app.app_store.writer();
    let (probes, commits) = (
        hookrelay::web::health::probes(&app.app_store),
        writer.stats().commits.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let statuses = hammer(&app, "/readyz", 200, 20).await;
    let elapsed = started.elapsed();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let probed = hookrelay::web::health::probes(&app.app_store) - probes;
    let committed = writer.stats().commits.load(Ordering::Relaxed) - commits;
    let allowed = elapsed.as_secs() + 1;
    assert!(
        probed <= allowed,
        "{probed} probes in {elapsed:?} for 200 calls"
    );
    // No cron and no jobs in this app: the probes are the only writes.
    assert!(
        committed <= allowed,
        "{committed} commits in {elapsed:?} for 200 calls"
    );
}

#[tokio::test]
async fn readyz_is_503_while_writes_fail_and_200_once_they_commit_again() {
    let app = spawn_app().await;
    wait_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;

    // Writes start failing; nobody writes but the probe.
    set_read_only(&app, true).await;
    let (body, took) = wait_readyz(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_secs(2), "503 after {took:?}: {body}");
    assert_eq!(body["checks"]["database"], "unwritable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(names_read_only(message), "the reason is named: {body}");
    let failure = app
        .app_store
        .writer()
        .stats()
        .write_failure()
        .expect("the writer knows its writes fail");
    assert!(names_read_only(&failure.reason), "{failure:?}");

    // Writes recover: ready again within about a second, though nothing but the probe writes.
    set_read_only(&app, false).await;
    let (body, took) = wait_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "200 after {took:?}: {body}");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(app.app_store.writer().stats().write_failure(), None);
}

#[tokio::test]
async fn readyz_fails_at_once_when_ingress_answers_storage_unavailable() {
    let app = spawn_app().await;
    // A fresh probe that committed: the cached result says the database is fine.
    wait_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
    set_read_only(&app, true).await;
    let res = app
        .post("/v1beta1/admin/jobs", &noop(json!({"sleep_ms": 0})))
        .await;
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    // No waiting: the writer's record of that failed write is read on every call.
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"], "unwritable", "{body}");

    set_read_only(&app, false).await;
    let res = app
        .post("/v1beta1/admin/jobs", &noop(json!({"sleep_ms": 0})))
        .await;
    assert_json(res, StatusCode::CREATED).await;
    wait_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_queue_is_not_a_failed_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        hookrelay::app::open_store(&test_config(dir.path()).database, Arc::new(Notify::new()))
            .expect("store opens");
    // Hold the writer thread inside one command while the queue overflows.
    let gate = Arc::new(std::sync::Barrier::new(2));
    let held = Arc::clone(&gate);
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .writer()
                .write(move |_tx| {
                    held.wait();
                    std::thread::sleep(Duration::from_millis(300));
                    Ok::<_, StoreError>(())
                })
                .await
        })
    };
    tokio::task::spawn_blocking(move || gate.wait())
        .await
        .expect("writer is held");
    let pending: Vec<_> = (0..QUEUE_CAPACITY + 100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .writer()
                    .write(move |tx| {
                        tx.execute(
                            "INSERT INTO kv (key, value, updated_at) VALUES (?1, 'v', 0)",
                            [format!("q{i}")],
                        )?;
                        Ok::<_, StoreError>(())
                    })
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    for p in pending {
        match p.await.expect("task") {
            Err(StoreError::Busy) => busy += 1,
            other => other.expect("a queued write commits"),
        }
    }
    blocker.await.expect("task").expect("blocker");
    assert!(busy >= 100, "the overflow was refused: {busy}");
    let stats = store.writer().stats();
    assert_eq!(stats.write_failure(), None, "refused is not failed");
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    store.writer().stop().await;
}

#[tokio::test]
async fn metrics_read_the_database_at_most_once_per_five_seconds() {
    let app = spawn_app().await;
    let reads = || hookrelay::web::metrics::state_reads(&app.app_store);
    let before = reads();
    let statuses = hammer(&app, "/metrics", 100, 20).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let burst = reads() - before;
    assert!((1..=2).contains(&burst), "{burst} reads for 100 scrapes");
    // The values are at most 5 s old: a later scrape reads again.
    let after_burst = reads();
    wait_until(Duration::from_secs(10), "a fresh read", || async {
        let res = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK);
        (reads() > after_burst).then_some(())
    })
    .await;
}
