//! Operations: cron on durable jobs, retention, endpoint health, stats, metrics, readiness.

use std::time::Duration;

use hookrelay::clock;
use hookrelay::cron::{Ticked, Trigger};
use hookrelay::sql::params;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::*;

const HOUR: i64 = 3_600_000;

/// `sql`'s one number, read from the app's database (SQLite or PostgreSQL).
async fn count(app: &TestApp, sql: impl Into<String>) -> i64 {
    let sql = sql.into();
    read_db(&app.app_store, move |c| {
        c.query_row(&sql, params![], |r| r.get(0))
    })
    .await
}

/// An id with `prefix` made at `at` (ids sort by creation time).
fn id_at(prefix: &str, at: i64, n: u128) -> String {
    format!(
        "{prefix}_{}",
        ulid::Ulid::from_parts(u64::try_from(at).expect("positive"), n)
    )
}

/// Waits until the latest run of cron `name` has finished; returns the cron entry.
async fn wait_run(app: &TestApp, name: &str) -> Value {
    wait_until(
        Duration::from_secs(15),
        &format!("a finished run of {name}"),
        || async {
            let v = app
                .get_json(&format!("/v1beta1/admin/cron/{name}"), StatusCode::OK)
                .await;
            let state = v["cron"]["runs"][0]["state"].as_str().unwrap_or_default();
            matches!(state, "succeeded" | "failed").then(|| v["cron"].clone())
        },
    )
    .await
}

/// Waits until `/readyz` answers 503; returns its body.
async fn wait_not_ready(app: &TestApp, within: Duration) -> Value {
    wait_until(within, "readyz to fail", || async {
        let (status, body) = readyz(app).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await
}

async fn jobs_of_kind(app: &TestApp, kind: &str) -> Vec<Value> {
    app.get_json(&format!("/v1beta1/admin/jobs?kind={kind}"), StatusCode::OK)
        .await["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_tick_that_fires_twice_enqueues_one_job() {
    let app = spawn_app().await;
    let tick = (clock::now_ms() / 1000 - 3600) * 1000;
    let first = app
        .cron
        .tick("retention", tick, Trigger::Schedule)
        .await
        .expect("tick");
    assert!(matches!(first, Ticked::Enqueued { .. }), "{first:?}");
    let second = app
        .cron
        .tick("retention", tick, Trigger::Schedule)
        .await
        .expect("tick");
    assert_eq!(second, Ticked::Duplicate);
    let jobs = jobs_of_kind(&app, "cron.retention").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0]["idempotency_key"],
        format!("cron:retention:{}", clock::to_rfc3339(tick))
    );
    let entry = wait_run(&app, "retention").await;
    let runs = entry["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "one run recorded: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(run["scheduled_at"], clock::to_rfc3339(tick));
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());
    assert!(
        run["rows_affected"].is_i64() && run["detail"].is_object(),
        "{run}"
    );
}

#[tokio::test]
async fn a_tick_while_the_previous_run_is_running_is_skipped_and_recorded() {
    let app = spawn_app().await;
    // A retention run whose job is running (held by a worker that has it leased).
    let now = clock::now_ms();
    let job_id = id_at("job", now, 7);
    {
        let job_id = job_id.clone();
        write_db(&app.app_store, move |conn| {
            conn.execute(
                "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, lease_until, lease_owner, created_at, updated_at)
                 VALUES (?1, 'cron.retention', '{}', 'running', 1, 3, ?2, ?3, 'elsewhere:1', ?2, ?2)",
                params![job_id, now, now + HOUR],
            )?;
            conn.execute(
                "INSERT INTO cron_runs (name, scheduled_at, trigger, state, job_id, started_at, created_at)
                 VALUES ('retention', ?1, 'schedule', 'running', ?2, ?1, ?1)",
                params![now - 60_000, job_id],
            )
        })
        .await;
    }
    let tick = (now / 1000) * 1000;
    let t = app
        .cron
        .tick("retention", tick, Trigger::Schedule)
        .await
        .expect("tick");
    assert!(
        matches!(&t, Ticked::Skipped { running_job, .. } if *running_job == job_id),
        "{t:?}"
    );
    assert_eq!(jobs_of_kind(&app, "cron.retention").await.len(), 1);
    let entry = app
        .get_json("/v1beta1/admin/cron/retention", StatusCode::OK)
        .await;
    let latest = &entry["cron"]["runs"][0];
    assert_eq!(latest["state"], "skipped");
    assert!(
        latest["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&job_id),
        "{latest}"
    );
    // Run now is refused too while it runs.
    assert_error(
        app.post("/v1beta1/admin/cron/retention/run", &json!({}))
            .await,
        StatusCode::CONFLICT,
        "cron_running",
    )
    .await;
}

#[tokio::test]
async fn a_tick_missed_while_stopped_runs_once_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    // Hourly, at the minute that was half an hour ago: the test is never near a tick.
    let now = clock::now_ms();
    let last_hour = {
        let t = now - 30 * 60_000;
        t - t % 60_000
    };
    let minute = (last_hour / 60_000) % 60;
    set_cron(&mut cfg, "db_maintenance", &format!("0 {minute} * * * *"));
    // It last ticked three hours ago: the process was down for the two ticks since.
    write_offline(&cfg.database, move |c| {
        c.execute(
            "INSERT INTO cron_runs (name, scheduled_at, trigger, state, created_at, finished_at)
             VALUES ('db_maintenance', ?1, 'schedule', 'succeeded', ?1, ?1)",
            params![last_hour - 2 * HOUR],
        )
    })
    .await;
    let app = spawn_app_in(dir, cfg.clone()).await;
    // At start on SQLite; on PostgreSQL once this replica holds the ticker lease, a moment later.
    let entry = wait_until(Duration::from_secs(15), "the caught-up run", || async {
        let v = app
            .get_json("/v1beta1/admin/cron/db_maintenance", StatusCode::OK)
            .await;
        let latest = &v["cron"]["runs"][0];
        (latest["trigger"] == "catch_up"
            && matches!(latest["state"].as_str(), Some("succeeded" | "failed")))
        .then(|| v["cron"].clone())
    })
    .await;
    let runs = entry["runs"].as_array().expect("runs");
    let caught_up: Vec<&Value> = runs.iter().filter(|r| r["trigger"] == "catch_up").collect();
    assert_eq!(
        caught_up.len(),
        1,
        "only the latest missed tick runs: {runs:?}"
    );
    assert_eq!(caught_up[0]["scheduled_at"], clock::to_rfc3339(last_hour));
    assert_eq!(jobs_of_kind(&app, "cron.db_maintenance").await.len(), 1);

    // A restart does not run it again: that tick is recorded. (On PostgreSQL, once the
    // restarted app ticks, so that the check is not over before it could catch up.)
    let dir = app.shutdown().await;
    let app = spawn_app_in(dir, cfg).await;
    wait_until(
        Duration::from_secs(10),
        "the restarted app to tick",
        || async { app.cron.is_leader().then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jobs_of_kind(&app, "cron.db_maintenance").await.len(), 1);
}

#[tokio::test]
async fn a_fresh_install_does_not_catch_up() {
    // The shipped schedules, but not the every-15-s lease reaper, which could tick during the
    // test (nothing else is due soon).
    let app = spawn_app_with(|c| {
        c.cron = hookrelay::config::from_toml_str("").expect("defaults").cron;
        set_cron(c, "lease_reaper", "off");
    })
    .await;
    let list = app.get_json("/v1beta1/admin/cron", StatusCode::OK).await;
    let entries = list["cron"].as_array().expect("entries");
    assert_eq!(entries.len(), 6, "{list}");
    assert!(list["next_cursor"].is_null());
    for e in entries {
        assert!(e["last_run"].is_null(), "{e}");
        assert_eq!(e["overdue"], false);
    }
    let backup = entries
        .iter()
        .find(|e| e["name"] == "backup")
        .expect("backup");
    assert_eq!(backup["schedule"], "off");
    assert_eq!(backup["enabled"], false);
    assert!(backup["next_run_at"].is_null());
    let retention = entries
        .iter()
        .find(|e| e["name"] == "retention")
        .expect("retention");
    assert_eq!(retention["schedule"], "0 17 * * * *");
    let next =
        clock::parse_rfc3339(retention["next_run_at"].as_str().expect("next")).expect("time");
    assert!(next > clock::now_ms() && next <= clock::now_ms() + HOUR);
}

#[tokio::test]
async fn run_now_runs_a_task_even_when_its_schedule_is_off_and_is_audited() {
    let app = spawn_app_with(|c| set_cron(c, "endpoint_health", "off")).await;
    let res = app
        .post("/v1beta1/admin/cron/endpoint_health/run", &json!({}))
        .await;
    let v = assert_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(v["run"]["trigger"], "manual");
    let job_id = v["run"]["job_id"].as_str().expect("job").to_string();
    let entry = wait_run(&app, "endpoint_health").await;
    assert_eq!(entry["runs"][0]["state"], "succeeded", "{entry}");
    assert_eq!(entry["runs"][0]["job_id"], job_id.as_str());
    assert_eq!(entry["runs"][0]["detail"], json!({"disabled": []}));
    let audit = app
        .get_json("/v1beta1/admin/audit-logs?action=cron.run", StatusCode::OK)
        .await;
    assert_eq!(
        audit["audit_logs"][0]["target_id"], "endpoint_health",
        "{audit}"
    );

    assert_error(
        app.post("/v1beta1/admin/cron/nope/run", &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .client
        .get(app.url("/v1beta1/admin/cron"))
        .send()
        .await
        .expect("request");
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn retention_removes_exactly_the_rows_past_their_age_in_batches() {
    let app = spawn_app_with(|c| {
        c.retention.succeeded = Duration::from_secs(3600);
        c.retention.failed = Duration::from_secs(2 * 3600);
        set_cron(c, "lease_reaper", "off");
    })
    .await;
    let now = clock::now_ms();
    let (old, recent, ancient) = (now - 90 * 60_000, now - 10 * 60_000, now - 3 * HOUR);
    write_db(&app.app_store, move |tx| {
        let job = |id: &str, state: &str, created: i64, finished: i64| -> hookrelay::sql::Result<()> {
            tx.execute(
                "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, created_at, updated_at, finished_at)
                 VALUES (?1, 'system.noop', '{}', ?2, 1, 1, ?3, ?4, ?5, ?5)",
                // A queued job waits an hour, so the workers leave it alone.
                params![id, state, if state == "queued" { now + HOUR } else { created }, created, finished],
            )?;
            Ok(())
        };
        // 2,100 old succeeded jobs: more than one batch.
        for n in 0..2100 {
            job(&id_at("job", old, n), "succeeded", old, old)?;
        }
        for n in 0..5 {
            job(&id_at("job", recent, n), "succeeded", recent, recent)?;
        }
        job(&id_at("job", ancient, 1), "succeeded", ancient, recent)?; // finished recently: kept
        for n in 0..3 {
            job(&id_at("job", old, 10_000 + n), "dead", old, old)?; // failed retention is longer
        }
        for n in 0..2 {
            job(&id_at("job", ancient, 10 + n), "dead", ancient, ancient)?;
        }
        job(&id_at("job", ancient, 20), "cancelled", ancient, ancient)?;
        job(&id_at("job", ancient, 21), "queued", ancient, ancient)?; // never finished: kept

        let event = |id: &str, at: i64| -> hookrelay::sql::Result<()> {
            tx.execute(
                "INSERT INTO events (id, action, source, body, deliveries, created_at) VALUES (?1, 'a.b', 'test', ?3, 1, ?2)",
                params![id, at, b"{}".to_vec()],
            )?;
            Ok(())
        };
        let delivery = |id: &str, event: &str, state: &str, at: i64| -> hookrelay::sql::Result<()> {
            tx.execute(
                "INSERT INTO deliveries (id, event_id, webhook_id, action, state, attempts, max_attempts, created_at, updated_at, finished_at)
                 VALUES (?1, ?2, 'wh_x', 'a.b', ?3, 1, 4, ?4, ?4, ?4)",
                params![id, event, state, at],
            )?;
            for attempt in 1..=2 {
                tx.execute(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms) VALUES (?1, ?2, ?3, 500, 3)",
                    params![id, attempt, at],
                )?;
            }
            Ok(())
        };
        let (e_kept, e_gone, e_new) = (
            id_at("evt", old, 1),
            id_at("evt", old, 2),
            id_at("evt", recent, 3),
        );
        event(&e_kept, old)?;
        event(&e_gone, old)?;
        event(&e_new, recent)?;
        delivery(&id_at("dlv", old, 1), &e_kept, "succeeded", old)?;
        delivery(&id_at("dlv", old, 2), &e_kept, "failed", old)?; // kept: keeps its event
        delivery(&id_at("dlv", old, 3), &e_gone, "succeeded", old)?;
        delivery(&id_at("dlv", recent, 4), &e_new, "succeeded", recent)?;

        let inbound = |id: &str, state: &str, at: i64| -> hookrelay::sql::Result<()> {
            tx.execute(
                "INSERT INTO inbound_events (id, source, channel, external_id, event_type, state, raw_body, received_at, processed_at, updated_at)
                 VALUES (?1, 'front', 'app', ?1, 'x', ?2, ?4, ?3, ?3, ?3)",
                params![id, state, at, b"{}".to_vec()],
            )?;
            Ok(())
        };
        inbound(&id_at("rcv", old, 1), "processed", old)?;
        inbound(&id_at("rcv", old, 2), "failed", old)?;
        inbound(&id_at("rcv", old, 3), "pending", old)?;
        inbound(&id_at("rcv", recent, 4), "processed", recent)?;
        Ok(())
    })
    .await;

    let res = app
        .post("/v1beta1/admin/cron/retention/run", &json!({}))
        .await;
    assert_json(res, StatusCode::ACCEPTED).await;
    let entry = wait_run(&app, "retention").await;
    let run = &entry["runs"][0];
    assert_eq!(run["state"], "succeeded", "{run}");
    let detail = &run["detail"];
    assert_eq!(detail["jobs"]["succeeded"], 2100, "{detail}");
    assert_eq!(detail["jobs"]["dead"], 2);
    assert_eq!(detail["jobs"]["cancelled"], 1);
    assert_eq!(detail["deliveries"]["succeeded"], 2);
    assert_eq!(detail["deliveries"]["failed"], 0);
    assert_eq!(detail["inbound_events"]["processed"], 1);
    assert_eq!(detail["events"], 1);
    assert!(
        detail["transactions"].as_i64().unwrap_or(0) > 10,
        "batched: {detail}"
    );

    // The retention job itself (and the app's own jobs) are younger than any cut-off.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'system.noop' AND state = 'succeeded'"
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'system.noop' AND state = 'dead'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM jobs WHERE kind = 'system.noop' AND state IN ('queued', 'cancelled')").await,
        1
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM deliveries").await, 2);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM delivery_attempts").await,
        4,
        "attempts go with their delivery"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM events").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbound_events").await, 3);
}

#[tokio::test]
async fn endpoint_health_disables_only_endpoints_whose_deliveries_all_failed() {
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.delivery.auto_disable_after = Duration::from_secs(1);
        set_cron(c, "endpoint_health", "off");
    })
    .await;
    let failing = TestReceiver::start(vec![ResponseTemplate::new(500)]).await;
    let flaky =
        TestReceiver::start(vec![ResponseTemplate::new(500), ResponseTemplate::new(200)]).await;
    // Failures spanning more than auto_disable_after (1 s): attempts at +0, +0.6, +1.2 s.
    let dead = create_webhook(
        &app,
        json!({"url": failing.url("/hook"), "retry_schedule": ["600ms", "600ms"]}),
    )
    .await;
    let alive = create_webhook(
        &app,
        json!({"url": flaky.url("/hook"), "retry_schedule": ["600ms", "600ms"]}),
    )
    .await;
    // One failure long ago and nothing since is not "all failed for a day".
    let quiet_rx = TestReceiver::start(vec![ResponseTemplate::new(500)]).await;
    let quiet = create_webhook(
        &app,
        json!({"url": quiet_rx.url("/hook"), "retry_schedule": []}),
    )
    .await;
    publish(
        &app,
        json!({"action": "app.user.created", "data": {"metadata": {"n": 1}}}),
    )
    .await;
    failing.wait_for(3, Duration::from_secs(5)).await;
    flaky.wait_for(2, Duration::from_secs(5)).await;
    quiet_rx.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    assert_json(
        app.post("/v1beta1/admin/cron/endpoint_health/run", &json!({}))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let entry = wait_run(&app, "endpoint_health").await;
    let disabled = entry["runs"][0]["detail"]["disabled"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(disabled.len(), 1, "{entry}");
    assert_eq!(disabled[0]["id"], dead["id"]);

    let w = app
        .get_json(
            &format!(
                "/v1beta1/admin/webhooks/{}",
                dead["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    assert_eq!(w["webhook"]["state"], "disabled");
    assert!(
        w["webhook"]["failing_since"].is_string(),
        "the API shows since when it fails: {w}"
    );
    let w = app
        .get_json(
            &format!(
                "/v1beta1/admin/webhooks/{}",
                alive["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        w["webhook"]["state"], "enabled",
        "one success resets the clock"
    );
    assert_eq!(w["webhook"]["failing_since"], Value::Null, "{w}");
    let w = app
        .get_json(
            &format!(
                "/v1beta1/admin/webhooks/{}",
                quiet["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        w["webhook"]["state"], "enabled",
        "one failure, then silence"
    );
    let audit = app
        .get_json(
            "/v1beta1/admin/audit-logs?action=webhook.disabled",
            StatusCode::OK,
        )
        .await;
    let record = &audit["audit_logs"][0];
    assert_eq!(record["target_id"], dead["id"]);
    assert!(
        record["detail"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("auto_disable_after"),
        "{record}"
    );
    let events = app
        .get_json(
            "/v1beta1/admin/events?action=webhook.disabled",
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );

    // Enabled again by an operator, it gets a fresh start.
    let res = app
        .client
        .put(app.url(&format!(
            "/v1beta1/admin/webhooks/{}",
            dead["id"].as_str().expect("id")
        )))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"state": "enabled"}))
        .send()
        .await
        .expect("request");
    let w = assert_json(res, StatusCode::OK).await;
    assert_eq!(w["webhook"]["failing_since"], Value::Null, "{w}");
    assert_eq!(
        count(
            &app,
            format!(
                "SELECT COUNT(*) FROM webhooks WHERE failing_since IS NOT NULL AND id = '{}'",
                dead["id"].as_str().expect("id")
            )
        )
        .await,
        0
    );
}

#[tokio::test]
async fn stats_count_by_state() {
    let app = spawn_app_with(local_delivery).await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/hook")})).await;
    publish(&app, json!({"action": "app.user.created", "data": {}})).await;
    rx.wait_for(1, Duration::from_secs(5)).await;
    let stats = wait_until(Duration::from_secs(5), "the delivery counted", || async {
        let s = app.get_json("/v1beta1/admin/stats", StatusCode::OK).await;
        (s["deliveries"]["by_state"]["succeeded"] == 1).then_some(s)
    })
    .await;
    assert_eq!(stats["deliveries"]["last_hour"]["created"], 1, "{stats}");
    assert_eq!(stats["deliveries"]["last_hour"]["failed"], 0);
    assert_eq!(stats["webhooks"]["by_state"]["enabled"], 1);
    assert!(stats["jobs"]["by_state"]["succeeded"].as_i64().unwrap_or(0) >= 1);
    assert!(stats["jobs"]["queue_depth"].is_i64());
    assert!(stats["jobs"]["oldest_queued_age_seconds"].is_number());
    assert_eq!(stats["jobs"]["dead"], 0);
    assert_eq!(stats["inbound"]["by_state"]["pending"], 0);
    assert_eq!(stats["cron"]["overdue"], json!([]));
}

#[tokio::test]
async fn metrics_expose_every_family() {
    let app = spawn_app_with(local_delivery).await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/hook")})).await;
    publish(&app, json!({"action": "app.user.created", "data": {}})).await;
    rx.wait_for(1, Duration::from_secs(5)).await;
    let res = app
        .post("/v1beta1/admin/cron/db_maintenance/run", &json!({}))
        .await;
    assert_json(res, StatusCode::ACCEPTED).await;
    wait_run(&app, "db_maintenance").await;
    // An ingress outcome: Front is not configured in this app.
    let res = app
        .client
        .post(app.url("/webhooks/front"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    let text = res.text().await.expect("body");
    for family in [
        "hookrelay_http_requests_total{",
        "hookrelay_http_request_duration_seconds_bucket{",
        "hookrelay_ingress_total{",
        "hookrelay_delivery_attempts_total{outcome=\"succeeded\"}",
        "hookrelay_delivery_attempt_duration_seconds_bucket{",
        "hookrelay_deliveries_total{state=\"succeeded\"}",
        "hookrelay_jobs{",
        "hookrelay_jobs_finished_total{",
        "hookrelay_queue_depth ",
        "hookrelay_oldest_queued_job_age_seconds ",
        "hookrelay_cron_runs_total{",
        "hookrelay_cron_overdue{name=\"retention\"} 0",
        "hookrelay_writer_batch_size_bucket{",
        "hookrelay_writer_commit_seconds_bucket{",
        "hookrelay_database_bytes ",
        "hookrelay_wal_bytes ",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
    assert!(
        text.contains("route=\"/v1beta1/admin/cron/{name}/run\""),
        "routes are labelled by pattern, not path"
    );
}

#[tokio::test]
async fn readyz_fails_when_a_schedule_stops_ticking() {
    let app = spawn_app_with(|c| set_cron(c, "lease_reaper", "* * * * * *")).await;
    wait_until(Duration::from_secs(5), "ready", || async {
        (readyz(&app).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    // What tokio-cron-scheduler's issue #113 describes: the ticker silently stops.
    app.cron.stop().await;
    let body = wait_not_ready(&app, Duration::from_secs(10)).await;
    assert_eq!(body["checks"]["cron"], "overdue", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("lease_reaper"),
        "{body}"
    );
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("hookrelay_cron_overdue{name=\"lease_reaper\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn backup_db_maintenance_and_front_sync_run_as_cron_jobs() {
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().to_path_buf();
    let app = spawn_app_with(move |c| {
        c.backup.dir = dir;
        c.backup.keep = 2;
    })
    .await;
    for _ in 0..3 {
        assert_json(
            app.post("/v1beta1/admin/cron/backup/run", &json!({})).await,
            StatusCode::ACCEPTED,
        )
        .await;
        let entry = wait_run(&app, "backup").await;
        assert_eq!(entry["runs"][0]["state"], "succeeded", "{entry}");
        assert_eq!(entry["runs"][0]["rows_affected"], 1);
    }
    let files: Vec<_> = std::fs::read_dir(backups.path())
        .expect("dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 2, "backup.keep = 2: {files:?}");
    for f in files {
        let conn = rusqlite::Connection::open(f.path()).expect("open snapshot");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(ok, "ok");
    }

    assert_json(
        app.post("/v1beta1/admin/cron/db_maintenance/run", &json!({}))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let entry = wait_run(&app, "db_maintenance").await;
    let detail = &entry["runs"][0]["detail"];
    assert_eq!(entry["runs"][0]["state"], "succeeded", "{entry}");
    assert!(
        detail["db_bytes_after"].as_u64().unwrap_or(0) > 0,
        "{detail}"
    );
    assert!(detail["checkpoint"].is_object(), "{detail}");

    // Without front.api_token the sync has nothing to do, and says why.
    assert_json(
        app.post("/v1beta1/admin/cron/front_sync/run", &json!({}))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let entry = wait_run(&app, "front_sync").await;
    assert_eq!(entry["runs"][0]["state"], "succeeded", "{entry}");
    assert!(
        entry["runs"][0]["detail"]["skipped_reason"].is_string(),
        "{entry}"
    );
}

#[tokio::test]
async fn a_run_that_hangs_makes_its_schedule_overdue() {
    // A Front API that never answers in time: every front_sync run hangs on its first page.
    let api = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| {
        crate::front::front_config(c, Some(&api));
        set_cron(c, "front_sync", "* * * * * *");
        set_cron(c, "lease_reaper", "off");
    })
    .await;
    let body = wait_not_ready(&app, Duration::from_secs(15)).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("front_sync"),
        "{body}"
    );
    let entry = app
        .get_json("/v1beta1/admin/cron/front_sync", StatusCode::OK)
        .await;
    let runs = entry["cron"]["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        runs.iter().any(|r| r["state"] == "skipped"),
        "later ticks are skipped while it hangs: {runs:?}"
    );
    assert_eq!(
        runs.iter().filter(|r| r["state"] == "running").count(),
        1,
        "one run at a time: {runs:?}"
    );
}
