//! Front ingress end to end: signatures, challenge, durability of the hot path, and the
//! processing job against a fake Front API on loopback (wiremock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::config::{Config, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;

pub const SECRET: &str = "my-app-signing-secret";
pub const RULE_SECRET: &str = "my-rule-secret";
pub const API_TOKEN: &str = "front-api-token";

/// Front's signature, computed independently of hookrelay's code.
pub fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{timestamp}:").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn sign_rule(body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(RULE_SECRET.as_bytes()).expect("key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn now_ms_string() -> String {
    hookrelay::clock::now_ms().to_string()
}

pub fn front_config(c: &mut Config, api: Option<&MockServer>) {
    c.front.webhook_secret = Some(Secret::new(SECRET));
    c.front.rule_webhook_secret = Some(Secret::new(RULE_SECRET));
    if let Some(api) = api {
        c.front.api_token = Some(Secret::new(API_TOKEN));
        c.front.api_base_url = api.uri();
    }
}

/// Posts a signed application webhook.
pub async fn post_front(client: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    post_front_result(client, base, body).await.expect("post")
}

/// Posts a signed application webhook, returning transport errors.
pub async fn post_front_result(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    let body = serde_json::to_vec(body).expect("json");
    let ts = now_ms_string();
    client
        .post(format!("{base}/webhooks/front"))
        .header("content-type", "application/json")
        .header("x-front-request-timestamp", &ts)
        .header("x-front-signature", sign(&ts, &body))
        .body(body)
        .send()
        .await
}

/// A realistic, full `inbound_received` application webhook.
pub fn full_inbound(event_id: &str, msg_id: &str) -> Value {
    json!({
        "authorization": {"id": "cmp_acme"},
        "type": "inbound_received",
        "payload": {
            "_links": {"self": format!("https://acme.api.frontapp.com/events/{event_id}")},
            "id": event_id,
            "type": "inbound",
            "emitted_at": 1_694_046_470.93,
            "conversation": {
                "_links": {"self": "https://acme.api.frontapp.com/conversations/cnv_55"},
                "id": "cnv_55",
                "subject": "Refund for order #1234",
                "status": "unassigned",
                "assignee": null,
                "tags": [],
                "is_private": false
            },
            "source": {
                "_meta": {"type": "inboxes"},
                "data": [{"_links": {"self": "https://acme.api.frontapp.com/inboxes/inb_3srbb"}, "id": "inb_3srbb", "name": "Support"}]
            },
            "target": {
                "_meta": {"type": "message"},
                "data": {
                    "_links": {"self": format!("https://acme.api.frontapp.com/messages/{msg_id}"),
                               "related": {"conversation": "https://acme.api.frontapp.com/conversations/cnv_55"}},
                    "id": msg_id,
                    "type": "email",
                    "is_inbound": true,
                    "created_at": 1_694_046_470.5,
                    "blurb": "Hi, I would like a refund…",
                    "body": "<p>Hi, I would like a refund for order #1234.</p>",
                    "text": "Hi, I would like a refund for order #1234.",
                    "author": null,
                    "recipients": [
                        {"_links": {"related": {"contact": "https://acme.api.frontapp.com/contacts/crd_77"}},
                         "handle": "jane@example.com", "name": "Jane Doe", "role": "from"},
                        {"_links": {"related": {"contact": null}}, "handle": "support@acme.test", "name": null, "role": "to"}
                    ],
                    "attachments": [],
                    "metadata": {}
                }
            }
        }
    })
}

/// A preview event: only `_meta`, `_links` and `id` for the target and the conversation.
fn preview_inbound(event_id: &str, msg_link: &str, conv_link: &str) -> Value {
    json!({
        "authorization": {"id": "cmp_acme"},
        "type": "inbound_received",
        "payload": {
            "id": event_id,
            "type": "inbound",
            "emitted_at": 1_694_046_470.93,
            "conversation": {"_links": {"self": conv_link}, "id": "cnv_9"},
            "source": {"_meta": {"type": "inboxes"}, "data": {"id": "inb_3srbb", "name": "Support"}},
            "target": {"_meta": {"type": "message"}, "_links": {"self": msg_link}, "id": "msg_9"}
        }
    })
}

fn full_message() -> Value {
    json!({
        "_links": {"self": "x", "related": {"conversation": "x"}},
        "id": "msg_9", "type": "email", "is_inbound": true, "subject": "Where is my parcel?",
        "blurb": "Hello…", "body": "<p>Hello, where is my parcel?</p>", "author": null,
        "recipients": [{"handle": "bob@example.com", "role": "from", "name": "Bob"}]
    })
}

fn full_conversation() -> Value {
    json!({"_links": {"self": "x"}, "id": "cnv_9", "subject": "Where is my parcel?", "status": "unassigned"})
}

async fn inbound_list(app: &TestApp) -> Vec<Value> {
    app.get_json("/v1beta1/admin/inbound?source=front", StatusCode::OK)
        .await["inbound"]
        .as_array()
        .expect("list")
        .clone()
}

async fn wait_inbound(app: &TestApp, id: &str, state: &str, within: Duration) -> Value {
    wait_until(within, &format!("inbound {id} to be {state}"), || async {
        let v = app
            .get_json(&format!("/v1beta1/admin/inbound/{id}"), StatusCode::OK)
            .await["inbound"]
            .clone();
        (v["state"] == state).then_some(v)
    })
    .await
}

async fn only_inbound_id(app: &TestApp) -> String {
    let list = inbound_list(app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]["id"].as_str().expect("id").to_string()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_full_inbound_event_is_stored_and_processed_without_fetching() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;

    let res = post_front(
        &app.client,
        &app.address,
        &full_inbound("evt_full1", "msg_full1"),
    )
    .await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true})
    );

    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert_eq!(v["event_id"], "evt_full1");
    assert_eq!(v["type"], "inbound_received");
    assert_eq!(v["company_id"], "cmp_acme");
    assert_eq!(v["raw"]["payload"]["emitted_at"], 1_694_046_470.93);
    assert_eq!(v["headers"]["content-type"], "application/json");
    let out = &v["outbound"];
    assert_eq!(out["action"], "front.inbound_received");
    assert_eq!(
        out["data"]["actor"],
        json!({"id": "crd_77", "type": "contact", "name": "Jane Doe", "email": "jane@example.com"})
    );
    assert_eq!(
        out["data"]["target"],
        json!({"id": "msg_full1", "type": "message", "name": "Refund for order #1234"})
    );
    assert_eq!(out["data"]["org_id"], "cmp_acme");
    assert_eq!(out["data"]["source"], "front");
    assert_eq!(
        out["data"]["metadata"]["message"]["body"],
        "<p>Hi, I would like a refund for order #1234.</p>"
    );
    assert_eq!(
        out["data"]["metadata"]["conversation"]["status"],
        "unassigned"
    );
    assert_eq!(v["fetched"]["urls"], json!([]));
    assert_eq!(v["job"]["state"], "succeeded");
}

#[tokio::test]
async fn a_preview_is_fetched_and_stored_whole() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/messages/msg_9"))
        .and(header(
            "authorization",
            format!("Bearer {API_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_message()))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_9"))
        .and(header(
            "authorization",
            format!("Bearer {API_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_conversation()))
        .expect(1)
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;
    let body = preview_inbound(
        "evt_prev1",
        &format!("{}/messages/msg_9", api.uri()),
        &format!("{}/conversations/cnv_9", api.uri()),
    );
    assert_json(
        post_front(&app.client, &app.address, &body).await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    let meta = &v["outbound"]["data"]["metadata"];
    assert_eq!(
        meta["message"]["body"], "<p>Hello, where is my parcel?</p>",
        "never a preview"
    );
    assert_eq!(meta["conversation"]["subject"], "Where is my parcel?");
    assert_eq!(v["outbound"]["data"]["actor"]["email"], "bob@example.com");
    assert_eq!(v["fetched"]["message"]["id"], "msg_9");
}

#[tokio::test]
async fn the_token_never_goes_to_a_foreign_link_host() {
    let api = MockServer::start().await;
    let foreign = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_message()))
        .expect(0)
        .mount(&foreign)
        .await;
    Mock::given(method("GET"))
        .and(path("/messages/msg_9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_message()))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_conversation()))
        .expect(1)
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;
    // The foreign server is reached as `localhost`, a host the token may not go to.
    let foreign_base = foreign.uri().replace("127.0.0.1", "localhost");
    let body = preview_inbound(
        "evt_foreign",
        &format!("{foreign_base}/messages/msg_9"),
        &format!("{foreign_base}/conversations/cnv_9"),
    );
    assert_json(
        post_front(&app.client, &app.address, &body).await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert!(
        foreign
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the foreign host got a request"
    );
}

/// Answers from a script and records when each request came.
struct Scripted {
    responses: Vec<ResponseTemplate>,
    seen: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for Scripted {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("lock");
        seen.push(Instant::now());
        let i = (seen.len() - 1).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

async fn preview_app_with_message_script(
    responses: Vec<ResponseTemplate>,
) -> (TestApp, MockServer, Arc<Mutex<Vec<Instant>>>) {
    let api = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path("/messages/msg_9"))
        .respond_with(Scripted {
            responses,
            seen: Arc::clone(&seen),
        })
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_conversation()))
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;
    let body = preview_inbound(
        "evt_script",
        &format!("{}/messages/msg_9", api.uri()),
        &format!("{}/conversations/cnv_9", api.uri()),
    );
    assert_json(
        post_front(&app.client, &app.address, &body).await,
        StatusCode::OK,
    )
    .await;
    (app, api, seen)
}

#[tokio::test]
async fn a_429_waits_for_retry_after_without_spending_an_attempt() {
    let (app, _api, seen) = preview_app_with_message_script(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "2"),
        ResponseTemplate::new(200).set_body_json(full_message()),
    ])
    .await;
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(15)).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    let gap = seen[1] - seen[0];
    assert!(
        gap >= Duration::from_millis(1950),
        "second request came after only {gap:?}"
    );
    assert_eq!(
        v["job"]["attempt"], 1,
        "the rate limit did not spend an attempt"
    );
}

#[tokio::test]
async fn a_5xx_is_retried_then_succeeds() {
    let (app, _api, seen) = preview_app_with_message_script(vec![
        ResponseTemplate::new(502).set_body_string("bad gateway"),
        ResponseTemplate::new(200).set_body_json(full_message()),
    ])
    .await;
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(15)).await;
    assert_eq!(seen.lock().expect("lock").len(), 2);
    assert_eq!(v["job"]["attempt"], 2);
    assert!(v["error"].is_null(), "a success clears the error");
}

#[tokio::test]
async fn a_404_fails_the_event_with_the_reason() {
    let (app, _api, seen) = preview_app_with_message_script(vec![
        ResponseTemplate::new(404).set_body_string("{\"_error\":{\"message\":\"not found\"}}"),
    ])
    .await;
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "failed", Duration::from_secs(10)).await;
    assert_eq!(seen.lock().expect("lock").len(), 1, "a 404 is not retried");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("404") && err.contains("/messages/msg_9"),
        "{err}"
    );
    assert_eq!(v["job"]["state"], "dead");
    let failed = app
        .get_json("/v1beta1/admin/inbound?state=failed", StatusCode::OK)
        .await;
    assert_eq!(failed["inbound"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_repeated_event_is_stored_and_processed_once() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    let body = full_inbound("evt_dup", "msg_dup");
    assert_eq!(
        assert_json(
            post_front(&app.client, &app.address, &body).await,
            StatusCode::OK
        )
        .await,
        json!({"received": true})
    );
    let id = only_inbound_id(&app).await;
    wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    for _ in 0..2 {
        let again = assert_json(
            post_front(&app.client, &app.address, &body).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again, json!({"received": true, "duplicate": true}));
    }
    assert_eq!(inbound_list(&app).await.len(), 1);
    let jobs = app
        .get_json("/v1beta1/admin/jobs?kind=front.process", StatusCode::OK)
        .await;
    assert_eq!(
        jobs["jobs"].as_array().expect("jobs").len(),
        1,
        "nothing new was queued"
    );
}

#[tokio::test]
async fn the_challenge_is_answered_and_nothing_stored() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    let body = br#"{"type":"sync","authorization":{"id":"cmp_abc"}}"#.to_vec();
    let ts = now_ms_string();
    let res = app
        .client
        .post(app.url("/webhooks/front"))
        .header("x-front-request-timestamp", &ts)
        .header("x-front-signature", sign(&ts, &body))
        .header("x-front-challenge", "abc123xyz")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"challenge": "abc123xyz"})
    );
    // The challenge is verified like any request.
    let res = app
        .client
        .post(app.url("/webhooks/front"))
        .header("x-front-request-timestamp", &ts)
        .header("x-front-signature", "AAAA")
        .header("x-front-challenge", "abc123xyz")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    assert!(inbound_list(&app).await.is_empty());
}

#[tokio::test]
async fn bad_signatures_timestamps_bodies_and_sizes_are_refused() {
    let app = spawn_app_with(|c| {
        front_config(c, None);
        c.server.max_body_bytes = 4096;
    })
    .await;
    let body = serde_json::to_vec(&full_inbound("evt_bad", "msg_bad")).expect("json");
    let post = |ts: String, sig: Option<String>, body: Vec<u8>| {
        let mut req = app
            .client
            .post(app.url("/webhooks/front"))
            .header("x-front-request-timestamp", ts)
            .body(body);
        if let Some(s) = sig {
            req = req.header("x-front-signature", s);
        }
        req.send()
    };
    let ts = now_ms_string();
    assert_error(
        post(ts.clone(), None, body.clone()).await.expect("req"),
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    )
    .await;
    let wrong = sign(&ts, b"something else");
    assert_error(
        post(ts.clone(), Some(wrong), body.clone())
            .await
            .expect("req"),
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    )
    .await;
    for skew in [-6 * 60_000, 6 * 60_000] {
        let ts = (hookrelay::clock::now_ms() + skew).to_string();
        let sig = sign(&ts, &body);
        assert_error(
            post(ts, Some(sig), body.clone()).await.expect("req"),
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
        )
        .await;
    }
    let junk = b"{not json".to_vec();
    assert_error(
        post(ts.clone(), Some(sign(&ts, &junk)), junk)
            .await
            .expect("req"),
        StatusCode::BAD_REQUEST,
        "invalid_payload",
    )
    .await;
    let no_id = br#"{"type":"inbound_received","authorization":{"id":"cmp_1"},"payload":{"type":"inbound"}}"#.to_vec();
    assert_error(
        post(ts.clone(), Some(sign(&ts, &no_id)), no_id)
            .await
            .expect("req"),
        StatusCode::BAD_REQUEST,
        "invalid_payload",
    )
    .await;
    let huge = format!(
        "{{\"payload\":{{\"id\":\"evt_huge\",\"x\":\"{}\"}}}}",
        "a".repeat(8192)
    )
    .into_bytes();
    assert_error(
        post(ts.clone(), Some(sign(&ts, &huge)), huge)
            .await
            .expect("req"),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert!(
        inbound_list(&app).await.is_empty(),
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn without_a_secret_the_ingress_says_so() {
    let app = spawn_app().await;
    let res = post_front(&app.client, &app.address, &full_inbound("evt_1", "msg_1")).await;
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "front_not_configured").await;
    let res = app
        .client
        .post(app.url("/webhooks/front/rules"))
        .body("{}")
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "front_not_configured").await;
}

#[tokio::test]
async fn disabled_front_mounts_no_ingress() {
    let app = spawn_app_with(|c| {
        front_config(c, None);
        c.front.enabled = false;
    })
    .await;
    let res = post_front(&app.client, &app.address, &full_inbound("evt_1", "msg_1")).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn rule_webhooks_are_verified_with_sha1_and_processed() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    let event = full_inbound("evt_rule1", "msg_rule1")["payload"].clone();
    let body = serde_json::to_vec(&event).expect("json");
    let res = app
        .client
        .post(app.url("/webhooks/front/rules"))
        .header("x-front-signature", "8QZ7aP/q9C7wjllgrbSO5LdfVms=")
        .body(body.clone())
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    let res = app
        .client
        .post(app.url("/webhooks/front/rules"))
        .header("X-Front-Signature", sign_rule(&body))
        .body(body)
        .send()
        .await
        .expect("req");
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true})
    );
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert_eq!(v["channel"], "rule");
    assert_eq!(
        v["type"], "inbound_received",
        "the API type `inbound` maps to the webhook type"
    );
    assert_eq!(v["outbound"]["action"], "front.inbound_received");
}

#[tokio::test]
async fn replay_processes_an_event_again() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    assert_json(
        post_front(
            &app.client,
            &app.address,
            &full_inbound("evt_replay", "msg_r"),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    let first = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    let res = app
        .post(&format!("/v1beta1/admin/inbound/{id}/replay"), &json!({}))
        .await;
    let v = assert_json(res, StatusCode::OK).await;
    assert_eq!(v["inbound"]["job_id"], first["job_id"]);
    let again = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert_ne!(again["processed_at"], first["processed_at"]);
    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=inbound.replay&target_id={id}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(logs["audit_logs"].as_array().expect("logs").len(), 1);
    assert_error(
        app.post("/v1beta1/admin/inbound/rcv_nope/replay", &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/inbound/rcv_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/inbound?state=odd").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

/// The first run gets the stored event in memory from the ingress that handed its job off; a
/// replay reads the row back. Both must publish the same event.
#[tokio::test]
async fn the_event_handed_off_in_memory_publishes_what_a_replay_reads_back() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    assert_json(
        post_front(
            &app.client,
            &app.address,
            &full_inbound("evt_memo", "msg_memo"),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    let first = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert_json(
        app.post(&format!("/v1beta1/admin/inbound/{id}/replay"), &json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    let again = wait_until(Duration::from_secs(10), "the replay published", || async {
        let v = app
            .get_json(&format!("/v1beta1/admin/inbound/{id}"), StatusCode::OK)
            .await["inbound"]
            .take();
        (v["state"] == "processed" && v["published_event_id"] != first["published_event_id"])
            .then_some(v)
    })
    .await;
    assert_eq!(first["outbound"]["action"], "front.inbound_received");
    assert_eq!(first["outbound"]["data"]["org_id"], "cmp_acme");
    assert_eq!(
        first["outbound"]["data"], again["outbound"]["data"],
        "the event in memory and the row read back publish the same data"
    );
    assert_ne!(first["outbound"]["id"], again["outbound"]["id"]);
}

/// Memos stop at `jobs::MEMO_MAX_BYTES` (64 KiB), so the runs waiting in memory stay bounded:
/// a larger event is read back by its processing run and its delivery, and arrives whole.
#[tokio::test]
async fn an_event_too_large_for_a_memo_is_read_back_whole() {
    let rx = TestReceiver::ok().await;
    let app = spawn_app_with(|c| {
        front_config(c, None);
        local_delivery(c);
    })
    .await;
    create_webhook(
        &app,
        json!({"url": rx.url("/front"), "subscribed_events": ["front.*"]}),
    )
    .await;
    let mut body = full_inbound("evt_big", "msg_big");
    let text = "refund ".repeat(100_000 / 7);
    assert!(text.len() > hookrelay::jobs::MEMO_MAX_BYTES);
    body["payload"]["target"]["data"]["text"] = json!(text);
    assert_json(
        post_front(&app.client, &app.address, &body).await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    let processed = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    assert_eq!(
        processed["outbound"]["data"]["metadata"]["message"]["text"],
        json!(text)
    );
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let sent: Value = serde_json::from_slice(&got[0].1.body).expect("json");
    assert_eq!(sent["data"]["metadata"]["message"]["text"], json!(text));
}

#[tokio::test]
async fn history_follows_pagination_when_enabled() {
    let api = MockServer::start().await;
    let page2 = format!("{}/conversations/cnv_55/messages?page_token=p2", api.uri());
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_55/messages"))
        .and(wiremock::matchers::query_param("page_token", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"_pagination": {"next": null}, "_results": [{"id": "msg_old2"}]}),
        ))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_55/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"_pagination": {"next": page2}, "_results": [{"id": "msg_new"}, {"id": "msg_old1"}]})))
        .expect(1)
        .mount(&api)
        .await;
    let app = spawn_app_with(|c| {
        front_config(c, Some(&api));
        c.front.fetch_history = true;
    })
    .await;
    assert_json(
        post_front(
            &app.client,
            &app.address,
            &full_inbound("evt_hist", "msg_new"),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let id = only_inbound_id(&app).await;
    let v = wait_inbound(&app, &id, "processed", Duration::from_secs(10)).await;
    let ids: Vec<&str> = v["outbound"]["data"]["metadata"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["msg_new", "msg_old1", "msg_old2"]);
}
