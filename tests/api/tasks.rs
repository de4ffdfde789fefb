//! Tasks: `POST /v1beta1/tasks` and the task lifecycle — signed calls the app can verify with
//! any Standard Webhooks library, delays, retries with `Retry-After`, 410 and redirects, the
//! attempt log, cancel and retry, the URL policy, and the one error handler.

use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{
    PUBLISH_TOKEN, TASKS_SECRET, TestApp, TestReceiver, assert_error, assert_json, local_delivery,
    spawn_app_with, wait_until, write_db,
};

pub async fn task_app() -> TestApp {
    spawn_app_with(local_delivery).await
}

pub async fn enqueue_task(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1beta1/tasks", &body).await;
    assert_json(res, StatusCode::ACCEPTED).await["task"].clone()
}

pub async fn task(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1beta1/admin/tasks/{id}"), StatusCode::OK)
        .await["task"]
        .clone()
}

pub async fn wait_task(app: &TestApp, id: &str, state: &str, within: Duration) -> Value {
    wait_until(within, &format!("task {id} to be {state}"), || async {
        let t = task(app, id).await;
        (t["state"] == state).then_some(t)
    })
    .await
}

/// Whether `signature` (a `webhook-signature` value) signs `id.ts.body` with the tasks key —
/// computed here from the Standard Webhooks definition, not with hookrelay's code.
pub fn signed(id: &str, ts: &str, body: &[u8], signature: &str) -> bool {
    signed_with(TASKS_SECRET, id, ts, body, signature)
}

fn signed_with(secret: &str, id: &str, ts: &str, body: &[u8], signature: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    signature.split(' ').any(|s| s == want)
}

fn header<'a>(req: &'a wiremock::Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_task_call_is_signed_carries_its_body_and_headers_and_is_recorded() {
    let app = task_app().await;
    let receiver = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_body_string("indexed doc_1"),
    ])
    .await;
    let t = enqueue_task(
        &app,
        json!({
            "url": receiver.url("/tasks/index-document"),
            "body": {"document_id": "doc_1", "n": 1.5},
            "headers": {"Authorization": "Bearer app-s3cr3t", "X-Team": "search"},
            "name": "index-document",
        }),
    )
    .await;
    let id = t["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("tsk_"), "{t}");
    assert_eq!(t["headers"]["Authorization"], "[redacted]", "{t}");
    assert_eq!(t["headers"]["X-Team"], "search");
    assert_eq!(t["method"], "POST");
    assert_eq!(t["timeout"], "30s");

    let reqs = receiver.wait_for(1, Duration::from_secs(10)).await;
    let req = &reqs[0].1;
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/tasks/index-document");
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body).expect("json"),
        json!({"document_id": "doc_1", "n": 1.5})
    );
    assert_eq!(header(req, "content-type"), "application/json");
    assert_eq!(header(req, "authorization"), "Bearer app-s3cr3t");
    assert_eq!(header(req, "x-team"), "search");
    assert!(header(req, "user-agent").starts_with("hookrelay/"));
    assert_eq!(header(req, "webhook-id"), id);
    assert_eq!(header(req, "x-hookrelay-task"), id);
    assert_eq!(header(req, "x-hookrelay-attempt"), "1");
    assert_eq!(header(req, "x-hookrelay-schedule"), "");
    let ts = header(req, "webhook-timestamp");
    let now = hookrelay::clock::now_ms() / 1000;
    assert!(
        (now - ts.parse::<i64>().expect("ts")).abs() < 30,
        "timestamp {ts}"
    );
    assert!(
        signed(&id, ts, &req.body, header(req, "webhook-signature")),
        "{}",
        header(req, "webhook-signature")
    );

    let done = wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(done["attempt_count"], 1);
    assert_eq!(done["last_status"], 200);
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{done}");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["response_body"], "indexed doc_1");
    assert!(done["finished_at"].is_string());

    let list = app
        .get_json("/v1beta1/admin/tasks?name=index-document", StatusCode::OK)
        .await;
    assert_eq!(list["tasks"][0]["id"], id.as_str());
    assert_eq!(list["tasks"][0]["headers"]["Authorization"], "[redacted]");
    let none = app
        .get_json("/v1beta1/admin/tasks?state=failed", StatusCode::OK)
        .await;
    assert_eq!(none["tasks"], json!([]));

    // The header's secret is sealed at rest.
    let dir = app.shutdown().await;
    let mut bytes = std::fs::read(dir.path().join("hookrelay.db")).expect("db");
    if let Ok(wal) = std::fs::read(dir.path().join("hookrelay.db-wal")) {
        bytes.extend(wal);
    }
    assert!(
        !bytes
            .windows(b"app-s3cr3t".len())
            .any(|w| w == b"app-s3cr3t"),
        "the Authorization header is in the database file in the clear"
    );
}

#[tokio::test]
async fn get_and_delete_tasks_carry_no_body_and_sign_the_empty_string() {
    let app = task_app().await;
    let receiver = TestReceiver::ok().await;
    let t = enqueue_task(
        &app,
        json!({"url": receiver.url("/tasks/heartbeat?x=1"), "method": "get"}),
    )
    .await;
    assert_eq!(t["method"], "GET");
    let reqs = receiver.wait_for(1, Duration::from_secs(10)).await;
    let req = &reqs[0].1;
    assert_eq!(req.method.as_str(), "GET");
    assert_eq!(req.url.query(), Some("x=1"));
    assert!(req.body.is_empty());
    assert_eq!(header(req, "content-type"), "");
    assert!(signed(
        t["id"].as_str().expect("id"),
        header(req, "webhook-timestamp"),
        b"",
        header(req, "webhook-signature")
    ));
    let bad = app
        .post(
            "/v1beta1/tasks",
            &json!({"url": receiver.url("/x"), "method": "DELETE", "body": {"a": 1}}),
        )
        .await;
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_payload").await;
}

#[tokio::test]
async fn delay_and_run_at_hold_the_call_until_then() {
    let app = task_app().await;
    let receiver = TestReceiver::ok().await;
    let asked = std::time::Instant::now();
    let t = enqueue_task(
        &app,
        json!({"url": receiver.url("/later"), "delay": "1500ms"}),
    )
    .await;
    assert_eq!(t["state"], "scheduled");
    let run_at =
        hookrelay::clock::parse_rfc3339(t["run_at"].as_str().expect("run_at")).expect("rfc3339");
    assert!(run_at > hookrelay::clock::now_ms() + 1000, "{t}");
    let reqs = receiver.wait_for(1, Duration::from_secs(10)).await;
    let waited = reqs[0].0 - asked;
    assert!(
        waited >= Duration::from_millis(1400),
        "called after {waited:?}, before its delay"
    );
    // And not much later: the worker sleeps until the task is due.
    assert!(waited < Duration::from_secs(4), "called after {waited:?}");

    let at = hookrelay::clock::to_rfc3339(hookrelay::clock::now_ms() + 1000);
    let t2 = enqueue_task(&app, json!({"url": receiver.url("/at"), "run_at": at})).await;
    assert_eq!(t2["run_at"], at.as_str());
    receiver.wait_for(2, Duration::from_secs(10)).await;

    let both = app
        .post(
            "/v1beta1/tasks",
            &json!({"url": receiver.url("/x"), "delay": "1s", "run_at": at}),
        )
        .await;
    assert_error(both, StatusCode::BAD_REQUEST, "invalid_payload").await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_existing_task_per_caller() {
    let app = task_app().await;
    let receiver = TestReceiver::ok().await;
    let body = json!({"url": receiver.url("/onboard"), "idempotency_key": "onboard:user_1", "delay": "1h"});
    let first = enqueue_task(&app, body.clone()).await;
    let again = app.post("/v1beta1/tasks", &body).await;
    let again = assert_json(again, StatusCode::OK).await;
    assert_eq!(again["task"]["id"], first["id"]);
    assert_eq!(again["task"]["idempotency_key"], "onboard:user_1");
    // A publish token's keys are its own.
    let other = app
        .client
        .post(app.url("/v1beta1/tasks"))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let other = assert_json(other, StatusCode::ACCEPTED).await;
    assert_ne!(other["task"]["id"], first["id"]);
    assert_eq!(other["task"]["created_by"], "publish:1");
    // A publish token may enqueue tasks, not read the admin lists.
    let list = app
        .client
        .get(app.url("/v1beta1/admin/tasks"))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .expect("request");
    assert_error(list, StatusCode::FORBIDDEN, "forbidden").await;
    let anonymous = app
        .client
        .post(app.url("/v1beta1/tasks"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn failures_are_retried_on_the_schedule_and_retry_after_replaces_the_wait() {
    let app = task_app().await;
    let receiver = TestReceiver::start(vec![
        ResponseTemplate::new(500).set_body_string("boom"),
        ResponseTemplate::new(503).insert_header("Retry-After", "1"),
        ResponseTemplate::new(302)
            .insert_header("Location", "https://elsewhere.example/?token=t0p"),
        ResponseTemplate::new(204),
    ])
    .await;
    let t = enqueue_task(
        &app,
        json!({"url": receiver.url("/flaky"), "retry_schedule": ["100ms", "100ms", "100ms"]}),
    )
    .await;
    let id = t["id"].as_str().expect("id").to_string();
    assert_eq!(t["max_attempts"], 4);
    let reqs = receiver.wait_for(4, Duration::from_secs(15)).await;
    let gap = |i: usize| reqs[i].0 - reqs[i - 1].0;
    assert!(gap(1) < Duration::from_millis(900), "{:?}", gap(1));
    assert!(
        gap(2) >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {:?}",
        gap(2)
    );
    assert_eq!(
        reqs.iter()
            .map(|(_, r)| header(r, "x-hookrelay-attempt").to_string())
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );
    // Every attempt has the same id, and a fresh signature.
    assert!(reqs.iter().all(|(_, r)| header(r, "webhook-id") == id));
    let done = wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 4, "{done}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["response_body"], "boom");
    assert_eq!(attempts[1]["status"], 503);
    assert_eq!(attempts[2]["status"], 302);
    let redirect = attempts[2]["error"].as_str().expect("error");
    assert!(
        redirect.contains("redirects are not followed"),
        "{redirect}"
    );
    assert!(!redirect.contains("t0p"), "{redirect}");
    assert_eq!(attempts[3]["status"], 204);
    // The redirect was not followed.
    assert_eq!(receiver.requests().len(), 4);
}

#[tokio::test]
async fn a_task_that_fails_goes_to_the_error_handler_and_can_be_retried() {
    let app = task_app().await;
    let receiver = TestReceiver::start(vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(500),
        ResponseTemplate::new(200),
    ])
    .await;
    let t = enqueue_task(
        &app,
        json!({"url": receiver.url("/summary"), "retry_schedule": ["50ms"], "name": "daily-summary"}),
    )
    .await;
    let id = t["id"].as_str().expect("id").to_string();
    let failed = wait_task(&app, &id, "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempt_count"], 2);
    assert_eq!(failed["last_status"], 500);
    assert_eq!(failed["last_error"], "HTTP 500");
    let stats = app.get_json("/v1beta1/admin/stats", StatusCode::OK).await;
    assert_eq!(stats["tasks"]["by_state"]["failed"], 1, "{stats}");
    assert_eq!(stats["tasks"]["by_state"]["scheduled"], 0, "{stats}");

    // The one error handler: an audit record and a system.task.failed event, no system.job.dead.
    let events = wait_until(Duration::from_secs(5), "system.task.failed", || async {
        let v = app
            .get_json(
                "/v1beta1/admin/events?action=system.task.failed",
                StatusCode::OK,
            )
            .await;
        (!v["events"].as_array().expect("events").is_empty()).then_some(v)
    })
    .await;
    let event = &events["events"][0];
    let detail = app
        .get_json(
            &format!(
                "/v1beta1/admin/events/{}",
                event["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    let envelope = detail["event"]["payload"].clone();
    let envelope = if envelope.is_null() {
        detail["event"].clone()
    } else {
        envelope
    };
    assert_eq!(envelope["data"]["target"]["id"], id.as_str(), "{detail}");
    assert_eq!(envelope["data"]["target"]["type"], "task");
    assert_eq!(envelope["data"]["metadata"]["attempts"], 2);
    let dead = app
        .get_json(
            "/v1beta1/admin/events?action=system.job.dead",
            StatusCode::OK,
        )
        .await;
    assert_eq!(dead["events"], json!([]), "{dead}");
    let audit = app
        .get_json("/v1beta1/admin/audit-logs", StatusCode::OK)
        .await;
    assert!(
        audit.to_string().contains("task.failed"),
        "no task.failed audit record: {audit}"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookrelay_tasks_total{state=\"failed\"}")),
        "{metrics}"
    );

    // Retry: a fresh set of attempts, the log goes on.
    let again = app
        .post(&format!("/v1beta1/admin/tasks/{id}/retry"), &json!({}))
        .await;
    let again = assert_json(again, StatusCode::ACCEPTED).await;
    assert_eq!(again["task"]["state"], "scheduled");
    let done = wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(done["attempt_count"], 3);
    let reqs = receiver.requests();
    assert_eq!(header(&reqs[2].1, "x-hookrelay-attempt"), "3");
    let busy = app
        .post(&format!("/v1beta1/admin/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_error(busy, StatusCode::CONFLICT, "not_cancellable").await;
}

#[tokio::test]
async fn gone_ends_a_task_and_a_slow_app_times_out() {
    let app = task_app().await;
    let gone = TestReceiver::start(vec![ResponseTemplate::new(410)]).await;
    let t = enqueue_task(
        &app,
        json!({"url": gone.url("/old"), "retry_schedule": ["50ms", "50ms"]}),
    )
    .await;
    let gone_id = t["id"].as_str().expect("id").to_string();
    let failed = wait_task(&app, &gone_id, "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempt_count"], 1, "410 ends the task: {failed}");
    // The one error handler, for a 410 too.
    let audit = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?target_id={gone_id}"),
            StatusCode::OK,
        )
        .await;
    assert!(audit.to_string().contains("task.failed"), "{audit}");

    let slow = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
        ResponseTemplate::new(200),
    ])
    .await;
    let t = enqueue_task(
        &app,
        json!({"url": slow.url("/slow"), "timeout": "300ms", "retry_schedule": ["50ms"]}),
    )
    .await;
    let done = wait_task(
        &app,
        t["id"].as_str().expect("id"),
        "succeeded",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done["attempts"][0]["error_kind"], "timeout", "{done}");
    assert!(done["attempts"][0]["latency_ms"].as_i64().expect("ms") < 2000);
    let big = app
        .post(
            "/v1beta1/tasks",
            &json!({"url": slow.url("/x"), "timeout": "16m"}),
        )
        .await;
    assert_error(big, StatusCode::BAD_REQUEST, "invalid_payload").await;
}

#[tokio::test]
async fn cancelling_a_waiting_task_means_it_is_never_called() {
    let app = task_app().await;
    let receiver = TestReceiver::ok().await;
    let t = enqueue_task(&app, json!({"url": receiver.url("/never"), "delay": "1s"})).await;
    let id = t["id"].as_str().expect("id");
    let pending = app
        .post(&format!("/v1beta1/admin/tasks/{id}/retry"), &json!({}))
        .await;
    assert_error(pending, StatusCode::CONFLICT, "already_pending").await;
    let cancelled = app
        .post(&format!("/v1beta1/admin/tasks/{id}/cancel"), &json!({}))
        .await;
    let cancelled = assert_json(cancelled, StatusCode::OK).await;
    assert_eq!(cancelled["task"]["state"], "cancelled");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.requests().is_empty());
    assert_eq!(task(&app, id).await["state"], "cancelled");
    let missing = app
        .post("/v1beta1/admin/tasks/tsk_nope/cancel", &json!({}))
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn urls_must_be_allowed_or_pass_the_ssrf_rules() {
    let receiver = TestReceiver::ok().await;
    let prefix = receiver.url("/tasks/");
    let app = spawn_app_with(|c| c.tasks.allowed_urls = vec![prefix.clone()]).await;
    // Under the allowed prefix: http and loopback are fine.
    let t = enqueue_task(&app, json!({"url": receiver.url("/tasks/ok")})).await;
    wait_task(
        &app,
        t["id"].as_str().expect("id"),
        "succeeded",
        Duration::from_secs(10),
    )
    .await;
    for url in [
        receiver.url("/elsewhere"),
        "http://10.1.2.3/tasks/".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://[::1]/x".to_string(),
    ] {
        let res = app.post("/v1beta1/tasks", &json!({"url": url})).await;
        assert_error(res, StatusCode::BAD_REQUEST, "url_not_allowed").await;
    }
    let res = app
        .post("/v1beta1/tasks", &json!({"url": "ftp://example.com/"}))
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "url_not_allowed").await;
    // Under the prefix by segment only, and with no encoded separator.
    for url in [
        receiver.url("/tasks-admin"),
        receiver.url("/tasks/..%2fadmin"),
    ] {
        let res = app.post("/v1beta1/tasks", &json!({"url": url})).await;
        assert_error(res, StatusCode::BAD_REQUEST, "url_not_allowed").await;
    }
    let res = app
        .post(
            "/v1beta1/tasks",
            &json!({"url": "https://example.com/", "surprise": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A host name that resolves to loopback passes at enqueue and is refused at the call.
    let t = enqueue_task(
        &app,
        json!({"url": format!("https://localhost:{}/x", receiver.server.address().port()), "retry_schedule": []}),
    )
    .await;
    let failed = wait_task(
        &app,
        t["id"].as_str().expect("id"),
        "failed",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        failed["attempts"][0]["error_kind"], "refused_by_policy",
        "{failed}"
    );
    let audit = app
        .get_json(
            &format!(
                "/v1beta1/admin/audit-logs?target_id={}",
                failed["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    assert!(audit.to_string().contains("task.failed"), "{audit}");
}

/// Task states straight from the database file.
fn task_states(db: &std::path::Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare("SELECT state, COUNT(*) FROM tasks GROUP BY state")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_tasks_scheduled_and_in_flight_loses_none() {
    use crate::helpers::{ChildApp, write_child_config};
    use nix::sys::signal::Signal;
    const NOW: usize = 60;
    const LATER: usize = 60;
    // The first calls hang, so that some are in flight when the process is killed.
    let receiver = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(
        dir.path(),
        &format!(
            "[tasks]\nsigning_secret = \"{TASKS_SECRET}\"\nallowed_urls = [\"{}\"]\n[jobs]\nworkers = 8\n",
            receiver.url("/")
        ),
    );
    let db = dir.path().join("hookrelay.db");
    let app = ChildApp::start(&config);
    let mut acked = Vec::new();
    for i in 0..NOW + LATER {
        let mut body = json!({"url": receiver.url(&format!("/tasks/{i}")), "timeout": "60s"});
        if i >= NOW {
            body["delay"] = json!("3s");
        }
        let res = app.post("/v1beta1/tasks", &body).await.expect("post");
        let v = assert_json(res, StatusCode::ACCEPTED).await;
        acked.push(v["task"]["id"].as_str().expect("id").to_string());
    }
    receiver.wait_for(8, Duration::from_secs(10)).await;
    let mut app = app;
    app.signal(Signal::SIGKILL);
    app.wait_exit(Duration::from_secs(5));
    drop(app);
    let before = task_states(&db);
    assert_eq!(
        before.values().sum::<i64>(),
        (NOW + LATER) as i64,
        "every acked task is stored: {before:?}"
    );
    assert!(
        before.get("running").copied().unwrap_or(0) >= 8,
        "{before:?}"
    );
    let called_before: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .map(|(_, r)| header(r, "x-hookrelay-task").to_string())
        .collect();

    // Restart against a receiver that answers at once: every task ends succeeded, and the ones
    // that were in flight were called again.
    receiver.server.reset().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver.server)
        .await;
    let app = ChildApp::start(&config);
    let states = wait_until(Duration::from_secs(60), "every task to succeed", || async {
        let s = task_states(&db);
        (s.get("succeeded").copied().unwrap_or(0) == (NOW + LATER) as i64).then_some(s)
    })
    .await;
    assert_eq!(states.len(), 1, "none failed, none stuck: {states:?}");
    let again: std::collections::HashSet<String> = receiver
        .server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| header(r, "x-hookrelay-task").to_string())
        .collect();
    for id in &called_before {
        assert!(
            again.contains(id),
            "task {id} was in flight at the kill and not called again"
        );
    }
    for id in &acked {
        assert!(
            again.contains(id) || called_before.contains(id),
            "task {id} was never called"
        );
    }
    drop(app);
}

/// The README's receiver (`tests/receivers/task-receiver.js`, npm `standardwebhooks`) on a free
/// port, verifying with `secret`.
struct NodeReceiver {
    child: std::process::Child,
    port: u16,
    out: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodeReceiver {
    async fn start(secret: &str) -> Self {
        use std::io::BufRead as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = std::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/receivers/task-receiver.js"
            ))
            .env("TASKS_SECRET", secret)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().expect("stdout");
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&out);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().expect("lock").push(line);
            }
        });
        wait_until(
            Duration::from_secs(10),
            "the node receiver to listen",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Self { child, port, out }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }
}

impl Drop for NodeReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's worked example, as a user runs it: an hourly `calendar-sync` schedule and an
/// `index-document` task enqueued with a delay, both verified by the README's 18-line receiver
/// with the npm `standardwebhooks` library; a receiver holding another secret refuses them.
#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn the_readme_receiver_verifies_task_calls_with_standardwebhooks() {
    if !crate::provider_libs::npm_or_skip("the README task receiver test") {
        return;
    }
    let receiver = NodeReceiver::start(TASKS_SECRET).await;
    let prefix = receiver.url("/");
    let toml = format!(
        "[schedules.calendar-sync]\ncron = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"\nurl = \"{}\"\nbody = {{ full = false }}\n",
        receiver.url("/tasks/calendar-sync")
    );
    let schedules = hookrelay::config::from_toml_str(&toml)
        .expect("valid")
        .schedules;
    let app = spawn_app_with(move |c| {
        c.tasks.allowed_urls = vec![prefix];
        c.schedules = schedules;
    })
    .await;
    let t = enqueue_task(
        &app,
        json!({
            "url": receiver.url("/tasks/index-document"),
            "delay": "1s",
            "body": {"document_id": "doc_42", "title": "Grüße <b>bold</b>"},
            "name": "index-document",
        }),
    )
    .await;
    let id = t["id"].as_str().expect("id");
    let done = wait_task(&app, id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(done["attempts"][0]["response_body"], "done");
    let run = app
        .post("/v1beta1/admin/schedules/calendar-sync/run", &json!({}))
        .await;
    let run = assert_json(run, StatusCode::ACCEPTED).await;
    wait_task(
        &app,
        run["task"]["id"].as_str().expect("id"),
        "succeeded",
        Duration::from_secs(15),
    )
    .await;
    let lines = receiver.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/tasks/index-document 1 ") && l.contains("doc_42")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/tasks/calendar-sync 1 {\"full\":false}")),
        "{lines:?}"
    );

    // Signed with another key: the library refuses it, and the task fails.
    let other = NodeReceiver::start("whsec_c2VjcmV0LW9mLWFub3RoZXItYXBwLTMyLWJ5dGVzIQ==").await;
    let app2 = spawn_app_with(|c| c.tasks.allowed_urls = vec![other.url("/")]).await;
    let t = enqueue_task(
        &app2,
        json!({"url": other.url("/tasks/x"), "body": {"a": 1}, "retry_schedule": []}),
    )
    .await;
    let failed = wait_task(
        &app2,
        t["id"].as_str().expect("id"),
        "failed",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(failed["last_status"], 401, "{failed}");
}

/// `hookrelay keys reencrypt` re-seals task headers (and webhook secrets) with the new key, so
/// the old key can be dropped: the server starts without it and the task still sends its
/// `Authorization` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reencrypt_reseals_task_headers_so_the_old_key_can_go() {
    use crate::helpers::{ChildApp, run_bin, write_child_config};
    use nix::sys::signal::Signal;
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    let receiver = TestReceiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tasks = format!(
        "[tasks]\nsigning_secret = \"{TASKS_SECRET}\"\nallowed_urls = [\"{}\"]\n",
        receiver.url("/")
    );
    let config = |delivery: &str| {
        write_child_config(dir.path(), &format!("{tasks}[delivery]\n{delivery}\n"))
    };
    let path = config(&format!("encryption_key = \"{OLD}\""));
    let mut app = ChildApp::start(&path);
    let res = app
        .post(
            "/v1beta1/tasks",
            &json!({"url": receiver.url("/later"), "delay": "1h", "headers": {"Authorization": "Bearer keep-me"}}),
        )
        .await
        .expect("post");
    let id = assert_json(res, StatusCode::ACCEPTED).await["task"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.signal(Signal::SIGTERM);
    app.wait_exit(Duration::from_secs(15));
    drop(app);

    config(&format!(
        "encryption_key = \"{NEW}\"\nprevious_encryption_keys = [\"{OLD}\"]"
    ));
    let out = run_bin(
        dir.path(),
        &[
            "keys",
            "reencrypt",
            "--config",
            path.to_str().expect("path"),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("re-encrypted 1 secret(s)"), "{stdout}");

    config(&format!("encryption_key = \"{NEW}\""));
    let app = ChildApp::start(&path);
    let call = |p: &str| {
        app.client
            .post(format!("{}{p}", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({}))
            .send()
    };
    assert_eq!(
        call(&format!("/v1beta1/admin/tasks/{id}/cancel"))
            .await
            .expect("cancel")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&format!("/v1beta1/admin/tasks/{id}/retry"))
            .await
            .expect("retry")
            .status(),
        StatusCode::ACCEPTED
    );
    let reqs = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(header(&reqs[0].1, "authorization"), "Bearer keep-me");
}

/// Without `tasks.signing_secret`, a key is generated into `<db dir>/tasks.secret` (0600) on the
/// first start, kept on the next, and the calls verify with it.
#[tokio::test]
async fn a_signing_secret_is_generated_once_into_tasks_secret() {
    let receiver = TestReceiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::helpers::test_config(dir.path());
    local_delivery(&mut cfg);
    cfg.tasks.signing_secret = None;
    let app = crate::helpers::spawn_app_in(dir, cfg.clone()).await;
    let file = app.db_path.with_file_name("tasks.secret");
    let secret = std::fs::read_to_string(&file).expect("tasks.secret");
    let secret = secret.trim_end().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    enqueue_task(&app, json!({"url": receiver.url("/a"), "body": {"n": 1}})).await;
    let reqs = receiver.wait_for(1, Duration::from_secs(10)).await;
    let req = &reqs[0].1;
    assert!(signed_with(
        &secret,
        header(req, "webhook-id"),
        header(req, "webhook-timestamp"),
        &req.body,
        header(req, "webhook-signature")
    ));
    let dir = app.shutdown().await;
    let app = crate::helpers::spawn_app_in(dir, cfg).await;
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("tasks.secret")
            .trim_end(),
        secret,
        "the key changed on restart"
    );
    drop(app);
}

/// The README shows the receiver the suite runs (`tests/receivers/task-receiver.js`), verbatim
/// after the file's two comment lines.
#[test]
fn the_readme_shows_the_tested_task_receiver() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file =
        std::fs::read_to_string(root.join("tests/receivers/task-receiver.js")).expect("file");
    let code: String = file
        .lines()
        .skip_while(|l| l.starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = readme
        .split("## Tasks and schedules")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's tasks section");
    assert!(
        section.contains(&format!("```js\n{code}```")),
        "the README's task receiver differs from tests/receivers/task-receiver.js: copy the file in"
    );
}

/// Cancelling a task while its call is in flight: the call's answer is still recorded as an
/// attempt, the task stays cancelled and is not called again; a retry later counts on.
#[tokio::test]
async fn cancelling_during_a_call_records_the_answer_and_calls_no_more() {
    let app = task_app().await;
    let receiver = TestReceiver::start(vec![
        ResponseTemplate::new(500).set_delay(Duration::from_millis(1500)),
        ResponseTemplate::new(200),
    ])
    .await;
    let t = enqueue_task(
        &app,
        json!({"url": receiver.url("/slow"), "retry_schedule": ["50ms", "50ms"]}),
    )
    .await;
    let id = t["id"].as_str().expect("id").to_string();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let cancelled = app
        .post(&format!("/v1beta1/admin/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        assert_json(cancelled, StatusCode::OK).await["task"]["state"],
        "cancelled"
    );
    let recorded = wait_until(Duration::from_secs(10), "the in-flight answer", || async {
        let t = task(&app, &id).await;
        (t["attempt_count"] == 1).then_some(t)
    })
    .await;
    assert_eq!(recorded["state"], "cancelled", "{recorded}");
    assert_eq!(recorded["attempts"][0]["status"], 500);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "a cancelled task was called again"
    );
    let again = app
        .post(&format!("/v1beta1/admin/tasks/{id}/retry"), &json!({}))
        .await;
    assert_json(again, StatusCode::ACCEPTED).await;
    let reqs = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(header(&reqs[1].1, "x-hookrelay-attempt"), "2");
    wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(receiver.requests().len(), 2);
}

/// The rest of the request rules: `run_at` in the past means now and more than 366 days ahead
/// is refused; hookrelay's own headers cannot be set; retry waits are bounded; the first 4 KiB
/// of an answer are kept; a task whose job was pruned is retried with a new one.
#[tokio::test]
async fn request_rules_answer_bounds_and_a_retry_after_retention() {
    let app = task_app().await;
    let big = "x".repeat(10_000);
    let receiver = TestReceiver::start(vec![ResponseTemplate::new(200).set_body_string(big)]).await;
    let past = hookrelay::clock::to_rfc3339(hookrelay::clock::now_ms() - 3_600_000);
    let t = enqueue_task(&app, json!({"url": receiver.url("/past"), "run_at": past})).await;
    let id = t["id"].as_str().expect("id").to_string();
    let done = wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    let body = done["attempts"][0]["response_body"].as_str().expect("body");
    assert_eq!(body.len(), 4096, "the first 4 KiB are kept");

    let far = hookrelay::clock::to_rfc3339(hookrelay::clock::now_ms() + 367 * 86_400_000);
    for bad in [
        json!({"url": receiver.url("/x"), "run_at": far}),
        json!({"url": receiver.url("/x"), "delay": "400d"}),
        json!({"url": receiver.url("/x"), "run_at": "tomorrow"}),
        json!({"url": receiver.url("/x"), "retry_schedule": ["1s", "500000000000years"]}),
        json!({"url": receiver.url("/x"), "headers": {"Content-Type": "text/plain"}}),
        json!({"url": receiver.url("/x"), "headers": {"User-Agent": "me"}}),
        json!({"url": receiver.url("/x"), "headers": {"X-Hookrelay-Task": "tsk_forged"}}),
        json!({"url": receiver.url("/x"), "headers": {"webhook-signature": "v1,forged"}}),
        json!({"url": receiver.url("/x"), "headers": {"X-Bell": "a\u{7}b"}}),
        json!({"url": receiver.url("/x"), "method": "TRACE"}),
        json!({"url": receiver.url("/x"), "name": ""}),
        json!({"url": receiver.url("/x"), "idempotency_key": ""}),
    ] {
        let res = app.post("/v1beta1/tasks", &bad).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    }

    // The job of a finished task is gone (as after retention): a retry gives it a new one.
    let job: String = {
        let id = id.clone();
        write_db(&app.app_store, move |c| {
            let job: String = c.query_row(
                "SELECT job_id FROM tasks WHERE id = ?1",
                hookrelay::sql::params![id],
                |r| r.get(0),
            )?;
            c.execute(
                "DELETE FROM jobs WHERE id = ?1",
                hookrelay::sql::params![job],
            )?;
            Ok(job)
        })
        .await
    };
    let again = app
        .post(&format!("/v1beta1/admin/tasks/{id}/retry"), &json!({}))
        .await;
    let again = assert_json(again, StatusCode::ACCEPTED).await;
    assert_ne!(again["task"]["job_id"], job.as_str());
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let done = wait_task(&app, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(done["attempt_count"], 2);
}
