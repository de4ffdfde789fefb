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
    PUBLISH_TOKEN, TASKS_SECRET, TestApp, TestReceiver, assert_error, assert_json,
    local_delivery, spawn_app_with, wait_until,
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
    let key = base64::engine::general_purpose::STANDARD
        .decode(TASKS_SECRET.trim_start_matches("whsec_"))
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
        !bytes.windows(b"app-s3cr3t".len()).any(|w| w == b"app-s3cr3t"),
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
    let run_at = hookrelay::clock::parse_rfc3339(t["run_at"].as_str().expect("run_at"))
        .expect("rfc3339");
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
        ResponseTemplate::new(302).insert_header("Location", "https://elsewhere.example/?token=t0p"),
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
    assert!(redirect.contains("redirects are not followed"), "{redirect}");
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

    // The one error handler: an audit record and a system.task.failed event, no system.job.dead.
    let events = wait_until(Duration::from_secs(5), "system.task.failed", || async {
        let v = app
            .get_json("/v1beta1/admin/events?action=system.task.failed", StatusCode::OK)
            .await;
        (!v["events"].as_array().expect("events").is_empty()).then_some(v)
    })
    .await;
    let event = &events["events"][0];
    let detail = app
        .get_json(
            &format!("/v1beta1/admin/events/{}", event["id"].as_str().expect("id")),
            StatusCode::OK,
        )
        .await;
    let envelope = detail["event"]["payload"].clone();
    let envelope = if envelope.is_null() { detail["event"].clone() } else { envelope };
    assert_eq!(envelope["data"]["target"]["id"], id.as_str(), "{detail}");
    assert_eq!(envelope["data"]["target"]["type"], "task");
    assert_eq!(envelope["data"]["metadata"]["attempts"], 2);
    let dead = app
        .get_json("/v1beta1/admin/events?action=system.job.dead", StatusCode::OK)
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
    let failed = wait_task(&app, t["id"].as_str().expect("id"), "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempt_count"], 1, "410 ends the task: {failed}");

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
    let done = wait_task(&app, t["id"].as_str().expect("id"), "succeeded", Duration::from_secs(10)).await;
    assert_eq!(done["attempts"][0]["error_kind"], "timeout", "{done}");
    assert!(done["attempts"][0]["latency_ms"].as_i64().expect("ms") < 2000);
    let big = app
        .post("/v1beta1/tasks", &json!({"url": slow.url("/x"), "timeout": "16m"}))
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
    wait_task(&app, t["id"].as_str().expect("id"), "succeeded", Duration::from_secs(10)).await;
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
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    let res = app
        .post("/v1beta1/tasks", &json!({"url": "https://example.com/", "surprise": 1}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A host name that resolves to loopback passes at enqueue and is refused at the call.
    let t = enqueue_task(
        &app,
        json!({"url": format!("https://localhost:{}/x", receiver.server.address().port()), "retry_schedule": []}),
    )
    .await;
    let failed = wait_task(&app, t["id"].as_str().expect("id"), "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempts"][0]["error_kind"], "refused_by_policy", "{failed}");
}
