//! The job engine through its admin API: lifecycle, retries, dead jobs, cancel, idempotency,
//! snoozing, leases.

use std::time::Duration;

use hookrelay::clock;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn ms(t: &serde_json::Value) -> i64 {
    clock::parse_rfc3339(t.as_str().expect("time")).expect("rfc3339")
}

#[tokio::test]
async fn a_job_runs_and_succeeds() {
    let app = spawn_app().await;
    let id = app.enqueue(noop(json!({"sleep_ms": 10}))).await;
    let job = app.wait_job(&id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["kind"], "system.noop");
    assert!(job["finished_at"].is_string() && job["lease_until"].is_null());
}

#[tokio::test]
async fn failures_retry_with_growing_backoff_then_succeed() {
    let app = spawn_app().await;
    let id = app.enqueue(noop(json!({"fail_times": 2}))).await;
    let job = app.wait_job(&id, "retrying", Duration::from_secs(5)).await;
    assert_eq!(job["attempt"], 1);
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("failing on purpose")
    );
    let wait1 = ms(&job["run_at"]) - ms(&job["updated_at"]);
    assert!(
        (500..=1000).contains(&wait1),
        "first retry waits 0.5–1 s, got {wait1} ms"
    );

    let job = app
        .wait_job(&id, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(job["attempt"], 3);
    // Two waits: at least 0.5 s + 1 s with the smallest jitter.
    let took = ms(&job["finished_at"]) - ms(&job["created_at"]);
    assert!(took >= 1500, "two backoffs took only {took} ms");
}

#[tokio::test]
async fn out_of_attempts_goes_dead_through_the_error_handler() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "payload": {"fail_times": 9}, "max_attempts": 2}),
        )
        .await;
    let id = assert_json(res, StatusCode::CREATED).await["job"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let job = app.wait_job(&id, "dead", Duration::from_secs(10)).await;
    assert_eq!(job["attempt"], 2);
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("attempt 2")
    );
    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=job.dead&target_id={id}"),
            StatusCode::OK,
        )
        .await;
    let rec = &logs["audit_logs"][0];
    assert_eq!(rec["actor"], "system");
    assert_eq!(rec["detail"]["kind"], "system.noop");
    assert_eq!(rec["detail"]["attempts"], 2);

    // An operator can retry a dead job: it gets a fresh set of attempts.
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/retry"), &json!({}))
        .await;
    let retried = assert_json(res, StatusCode::OK).await;
    assert_eq!(retried["job"]["state"], "queued");
    assert_eq!(retried["job"]["attempt"], 0);
}

#[tokio::test]
async fn cancel_and_retry_a_queued_job() {
    let app = spawn_app().await;
    let later = now_rfc3339_plus(60_000);
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "run_at": later}),
        )
        .await;
    let id = assert_json(res, StatusCode::CREATED).await["job"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await["job"]["state"],
        "cancelled"
    );
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_error(res, StatusCode::CONFLICT, "invalid_state").await;

    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await["job"]["state"],
        "queued"
    );
    app.wait_job(&id, "succeeded", Duration::from_secs(5)).await;
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/retry"), &json!({}))
        .await;
    assert_error(res, StatusCode::CONFLICT, "invalid_state").await;

    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=job.*&target_id={id}"),
            StatusCode::OK,
        )
        .await;
    let actions: Vec<&str> = logs["audit_logs"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(actions, ["job.retry", "job.cancel", "job.enqueue"]);

    assert_error(
        app.get("/v1beta1/admin/jobs/job_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .post("/v1beta1/admin/jobs/job_nope/cancel", &json!({}))
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn cancelling_a_running_job_discards_its_result() {
    let app = spawn_app().await;
    let id = app.enqueue(noop(json!({"sleep_ms": 800}))).await;
    app.wait_job(&id, "running", Duration::from_secs(5)).await;
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_json(res, StatusCode::OK).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.job(&id).await["state"], "cancelled");
}

#[tokio::test]
async fn a_job_cancelled_while_it_waits_for_a_worker_does_not_run() {
    let app = spawn_app_with(|c| c.jobs.workers = 1).await;
    let first = app.enqueue(noop(json!({"sleep_ms": 3000}))).await;
    let long = app.enqueue(noop(json!({"sleep_ms": 20_000}))).await;
    let last = app.enqueue(noop(json!({}))).await;
    app.wait_job(&first, "running", Duration::from_secs(5))
        .await;
    // Claimed with the first, `long` waits in memory for the one worker: `running` already.
    app.wait_job(&long, "running", Duration::from_secs(5)).await;
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{long}/cancel"), &json!({}))
        .await;
    assert_json(res, StatusCode::OK).await;
    // Had `long` started, its 20 s sleep would hold the worker and `last` behind it.
    app.wait_job(&last, "succeeded", Duration::from_secs(12))
        .await;
    assert_eq!(app.job(&long).await["state"], "cancelled");
}

#[tokio::test]
async fn an_idempotency_key_names_one_job() {
    let app = spawn_app().await;
    let body =
        json!({"kind": "system.noop", "idempotency_key": "cron:retention:2026-01-01T00:00:00Z"});
    let first = assert_json(
        app.post("/v1beta1/admin/jobs", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let id = first["job"]["id"].as_str().expect("id").to_string();
    app.wait_job(&id, "succeeded", Duration::from_secs(5)).await;
    let second = assert_json(app.post("/v1beta1/admin/jobs", &body).await, StatusCode::OK).await;
    assert_eq!(second["job"]["id"], id.as_str());
    assert_eq!(second["job"]["state"], "succeeded");
    let all = app.get_json("/v1beta1/admin/jobs", StatusCode::OK).await;
    assert_eq!(all["jobs"].as_array().expect("list").len(), 1);
}

#[tokio::test]
async fn a_job_can_run_again_later_without_spending_an_attempt() {
    let app = spawn_app().await;
    let until = now_rfc3339_plus(1500);
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "payload": {"snooze_until": until}, "max_attempts": 1}),
        )
        .await;
    let id = assert_json(res, StatusCode::CREATED).await["job"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // It ran once, asked to run again at `until`, and was rescheduled to exactly that.
    wait_until(Duration::from_secs(5), "the job to be snoozed", || async {
        let job = app.job(&id).await;
        (job["state"] == "queued" && job["run_at"] == until.as_str()).then_some(())
    })
    .await;
    let job = app.wait_job(&id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(
        job["attempt"], 1,
        "the snooze did not spend the only attempt"
    );
    assert!(ms(&job["finished_at"]) >= ms(&json!(until)));
}

#[tokio::test]
async fn only_operator_kinds_can_be_enqueued_and_payloads_are_checked() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "front.process", "payload": {}}),
        )
        .await;
    let v = assert_error(res, StatusCode::BAD_REQUEST, "kind_not_allowed").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("system.noop")
    );
    let res = app
        .post("/v1beta1/admin/jobs", &noop(json!({"sleep_ms": "long"})))
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "max_attempts": 0}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "run_at": "soon"}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn an_unknown_kind_in_the_queue_goes_dead_instead_of_looping() {
    let app = spawn_app().await;
    let now = clock::now_ms();
    write_db(&app.app_store, move |c| {
        c.execute(
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, created_at, updated_at)
             VALUES ('job_01JUNKNOWNKIND0000000000000', 'from.the.future', '{}', 'queued', 0, 5, ?1, ?1, ?1)",
            hookrelay::sql::params![now],
        )
    })
    .await;
    let job = app
        .wait_job(
            "job_01JUNKNOWNKIND0000000000000",
            "dead",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(job["attempt"], 1);
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown job kind")
    );
}

#[tokio::test]
async fn lists_filter_and_paginate() {
    let app = spawn_app().await;
    let later = now_rfc3339_plus(600_000);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let res = app
            .post(
                "/v1beta1/admin/jobs",
                &json!({"kind": "system.noop", "run_at": later}),
            )
            .await;
        ids.push(
            assert_json(res, StatusCode::CREATED).await["job"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let done = app.enqueue(noop(json!({}))).await;
    app.wait_job(&done, "succeeded", Duration::from_secs(5))
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1beta1/admin/jobs?state=queued&limit=2&cursor={c}"),
            None => "/v1beta1/admin/jobs?state=queued&limit=2".to_string(),
        };
        let page = app.get_json(&path, StatusCode::OK).await;
        let jobs = page["jobs"].as_array().expect("jobs");
        assert!(jobs.len() <= 2);
        seen.extend(
            jobs.iter()
                .map(|j| j["id"].as_str().expect("id").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    let succeeded = app
        .get_json(
            "/v1beta1/admin/jobs?state=succeeded&kind=system.noop",
            StatusCode::OK,
        )
        .await;
    assert_eq!(succeeded["jobs"].as_array().expect("jobs").len(), 1);
    let none = app
        .get_json("/v1beta1/admin/jobs?kind=other.kind", StatusCode::OK)
        .await;
    assert!(none["jobs"].as_array().expect("jobs").is_empty() && none["next_cursor"].is_null());
}

/// Inserts a job that looks claimed by a worker that is gone.
fn stale_running(
    id: &'static str,
    lease_until: i64,
) -> impl Fn(&hookrelay::sql::Connection) -> hookrelay::sql::Result<usize> + Send + 'static {
    let now = clock::now_ms();
    move |c| {
        c.execute(
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, lease_until, lease_owner, created_at, updated_at)
             VALUES (?1, 'system.noop', '{}', 'running', 1, 5, ?2, ?3, 'gone:1', ?2, ?2)",
            hookrelay::sql::params![id, now - 10_000, lease_until],
        )
    }
}

#[tokio::test]
async fn the_lease_reaper_takes_back_a_job_whose_lease_ran_out() {
    let app = spawn_app_with(|c| {
        c.jobs.lease = Duration::from_secs(2);
        set_cron(c, "lease_reaper", "* * * * * *");
    })
    .await;
    let id = "job_01JSTALELEASE0000000000000";
    write_db(&app.app_store, stale_running(id, clock::now_ms() + 500)).await;
    let job = app.wait_job(id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(job["attempt"], 2, "the lost run counts as an attempt");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("lease ran out"),
        "{job}"
    );
}

#[tokio::test]
async fn with_the_lease_reaper_off_a_safety_net_still_takes_back_expired_leases() {
    let app = spawn_app_with(|c| {
        c.jobs.lease = Duration::from_secs(1);
        set_cron(c, "lease_reaper", "off");
    })
    .await;
    let id = "job_01JSAFETYNET00000000000000";
    write_db(&app.app_store, stale_running(id, clock::now_ms() + 200)).await;
    let job = app.wait_job(id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(job["attempt"], 2, "the lost run counts as an attempt");
}

#[tokio::test]
async fn long_jobs_keep_their_lease() {
    let app = spawn_app_with(|c| c.jobs.lease = Duration::from_secs(2)).await;
    let id = app.enqueue(noop(json!({"sleep_ms": 3500}))).await;
    let job = app
        .wait_job(&id, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(
        job["attempt"], 1,
        "the lease was extended while the job ran"
    );
}

#[tokio::test]
async fn jobs_left_running_by_a_dead_process_are_requeued_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path());
    let id = "job_01JLEFTRUNNING000000000000";
    write_offline(
        &cfg.database,
        stale_running(id, clock::now_ms() + 3_600_000),
    )
    .await;
    if cfg.database.url.is_some() {
        // On PostgreSQL another replica may be running it: at start only expired leases are
        // taken back. One whose lease ran out runs again at once (the lost run counted); the
        // one still leased stays with its holder.
        let expired = "job_01JLEASEEXPIRED0000000000";
        write_offline(&cfg.database, stale_running(expired, clock::now_ms() - 1)).await;
        let app = spawn_app_in(dir, cfg).await;
        let job = app
            .wait_job(expired, "succeeded", Duration::from_secs(5))
            .await;
        assert_eq!(job["attempt"], 2, "the lost run counts: {job}");
        assert!(
            job["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("lease ran out"),
            "{job}"
        );
        assert_eq!(
            app.job(id).await["state"],
            "running",
            "a held lease was taken"
        );
        return;
    }
    let app = spawn_app_in(dir, cfg).await;
    let job = app.wait_job(id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(
        job["attempt"], 1,
        "the interrupted run does not count: the job runs again"
    );
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("process stopped"),
        "{job}"
    );
}

#[tokio::test]
async fn graceful_shutdown_in_process_finishes_running_jobs() {
    let app = spawn_app().await;
    let id = app.enqueue(noop(json!({"sleep_ms": 700}))).await;
    app.wait_job(&id, "running", Duration::from_secs(5)).await;
    // `running` once its claim commits; started a moment later (one claimed but not started at
    // shutdown is given back instead). The job sleeps 0.7 s, so it is still running after this.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let database = app.database.clone();
    let _dir = app.shutdown().await;
    let state: String = write_offline(&database, move |c| {
        c.query_row(
            "SELECT state FROM jobs WHERE id = ?1",
            hookrelay::sql::params![id.as_str()],
            |r| r.get(0),
        )
    })
    .await;
    assert_eq!(state, "succeeded");
}

/// How many `delivery.send` jobs are in each state.
async fn delivery_job_states(app: &TestApp) -> std::collections::HashMap<String, i64> {
    read_db(&app.app_store, |c| {
        c.prepare_cached(
            "SELECT state, COUNT(*) FROM jobs WHERE kind = 'delivery.send' GROUP BY state",
        )?
        .query_map(hookrelay::sql::params![], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<hookrelay::sql::Result<Vec<(String, i64)>>>()
    })
    .await
    .into_iter()
    .collect()
}

/// A burst the workers cannot keep up with waits in this process's memory, already claimed
/// (`running` under its lease), up to `jobs::worker::HANDOFF_AHEAD`, instead of being queued and
/// claimed back one by one. It holds back neither a job the database has due nor the queue lag
/// `/readyz` reports.
#[tokio::test]
async fn a_burst_beyond_the_workers_is_handed_off_in_memory() {
    // Never answers in time: each attempt takes the whole `delivery.timeout` (3 s).
    let rx = TestReceiver::start(vec![
        wiremock::ResponseTemplate::new(200).set_delay(Duration::from_secs(20)),
    ])
    .await;
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.jobs.workers = 1;
    })
    .await;
    create_webhook(
        &app,
        json!({"url": rx.url("/slow"), "subscribed_events": ["app.user.created"]}),
    )
    .await;
    // More than the dispatcher ever read ahead before: workers + 2 × the claim batch.
    let burst = 1 + 2 * hookrelay::jobs::worker::CLAIM_BATCH + 100;
    for i in 0..burst {
        publish(
            &app,
            json!({"action": "app.user.created", "data": {"target": {"id": format!("user_{i}")}}}),
        )
        .await;
    }
    let states = delivery_job_states(&app).await;
    assert_eq!(
        states.get("queued"),
        None,
        "no delivery waits in the queue: {states:?}"
    );
    assert_eq!(
        states.values().sum::<i64>(),
        i64::try_from(burst).expect("small"),
        "one delivery per event: {states:?}"
    );

    // A job queued in the database is claimed into its own lane and runs next, not after the
    // ~230 deliveries (3 s each on the one worker) waiting in memory.
    let id = app.enqueue(noop(json!({}))).await;
    app.wait_job(&id, "succeeded", Duration::from_secs(15))
        .await;

    // The jobs waiting in memory are `running` in the database; the lag still shows them.
    let (_, ready) = readyz(&app).await;
    let lag = ready["checks"]["queue_lag_ms"].as_u64().expect("lag");
    assert!(
        lag >= 1_000,
        "the deliveries have waited for seconds: {ready}"
    );
}

#[tokio::test]
async fn deliveries_cancelled_while_they_wait_in_memory_are_not_sent() {
    // One worker and a receiver that takes 2 s to answer: while the first delivery is at the
    // receiver, the other two wait in memory, already `running` in the database, their delivery
    // rows handed along as `pending`. Disabling the webhook must still stop them: the sender
    // looks the webhook up in its cache, which the disabling commit invalidates.
    let rx = TestReceiver::start(vec![
        wiremock::ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
    ])
    .await;
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.jobs.workers = 1;
    })
    .await;
    let webhook = create_webhook(
        &app,
        json!({"url": rx.url("/slow"), "subscribed_events": ["app.user.created"]}),
    )
    .await;
    for i in 0..3 {
        publish(
            &app,
            json!({"action": "app.user.created", "data": {"target": {"id": format!("user_{i}")}}}),
        )
        .await;
    }
    rx.wait_for(1, Duration::from_secs(10)).await;

    // Disabling the webhook cancels its pending deliveries: the one at the receiver (it runs on,
    // its result discarded) and the two waiting.
    let res = app
        .client
        .put(app.url(&format!(
            "/v1beta1/admin/webhooks/{}",
            webhook["id"].as_str().expect("id")
        )))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"state": "disabled"}))
        .send()
        .await
        .expect("put");
    assert_json(res, StatusCode::OK).await;
    let cancelled = app
        .get_json("/v1beta1/admin/deliveries?state=cancelled", StatusCode::OK)
        .await;
    assert_eq!(
        cancelled["deliveries"].as_array().map(Vec::len),
        Some(3),
        "{cancelled}"
    );

    // The first answer comes after 2 s; give the waiting two time to have been sent if they were.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rx.requests().len(),
        1,
        "only the delivery already at the receiver was sent"
    );
    let states = delivery_job_states(&app).await;
    assert_eq!(
        states,
        [("cancelled".to_string(), 3)].into(),
        "every delivery job stays cancelled"
    );
}
