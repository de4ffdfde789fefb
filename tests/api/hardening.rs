//! Hostile input and limits (SPEC §13), used the way a careless user or an attacker would:
//! forged service events, borrowed idempotency ids, cross-site requests riding a proxy's
//! cookie, credentials at rest, stalled and trickled bodies, replayed captures, bodies built to
//! make parsing quadratic, and a lost encryption key.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::app::Application;
use hookrelay::config::{Config, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wiremock::{Request, ResponseTemplate};

use crate::front::{RULE_SECRET, front_config, now_ms_string, sign};
use crate::helpers::*;

const SECOND_PUBLISH_TOKEN: &str = "test-publish-token-2";
const IDENTITY: &str = "X-Frontier-Email";
const EVIL: &str = "https://evil.example";
/// `server.max_body_bytes` by default: the bodies of the linear-work tests stay under it.
const MAX_BODY: usize = 1_048_576;

fn event(action: &str) -> Value {
    json!({"action": action, "data": {
        "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
        "target": {"id": "user_xyz789", "type": "user", "name": "Jane Doe"},
        "org_id": "org_123abc",
        "metadata": {}
    }})
}

async fn publish_as(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1beta1/events"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn put(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .expect("request")
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn identity_admins(c: &mut Config) {
    local_delivery(c);
    c.auth.identity_header = Some(IDENTITY.into());
    c.auth.admin_emails = vec!["ops@example.com".into()];
}

/// `host:port` of the app, for raw TCP clients.
fn host(app: &TestApp) -> &str {
    app.address.trim_start_matches("http://")
}

async fn webhooks(app: &TestApp) -> Vec<Value> {
    app.get_json("/v1beta1/admin/webhooks", StatusCode::OK)
        .await["webhooks"]
        .as_array()
        .expect("webhooks")
        .clone()
}

async fn deliveries_of_webhook(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    app.get_json(
        &format!("/v1beta1/admin/deliveries?webhook_id={webhook_id}"),
        StatusCode::OK,
    )
    .await["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone()
}

async fn actor_of(app: &TestApp, action: &str, target_id: &str) -> Value {
    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action={action}&target_id={target_id}"),
            StatusCode::OK,
        )
        .await;
    logs["audit_logs"][0]["actor"].clone()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn sign_rule(body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(RULE_SECRET.as_bytes()).expect("key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Sends `request` on a fresh connection and reads until the server closes it.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(host(app)).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .expect("read");
    out
}

/// Splits a raw HTTP/1.1 response into its head (lowercased) and body.
fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    (
        String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase(),
        raw[at + 4..].to_vec(),
    )
}

/// The JSON error code in a raw response body (plain or chunked: the object is found by its braces).
fn raw_error_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let (start, end) = (text.find('{'), text.rfind('}'));
    let json = &text[start.expect("a JSON body")..=end.expect("a JSON body")];
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Reserved actions and sources
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publishers_cannot_forge_the_services_own_events() {
    let app = spawn_app().await;
    for token in [ADMIN_TOKEN, PUBLISH_TOKEN] {
        for action in [
            "system.job.dead",
            "webhook.disabled",
            "webhook.test",
            "front.inbound_received",
            "task.x",
            "schedule.x",
        ] {
            let res = publish_as(&app, token, &event(action)).await;
            assert_error(res, StatusCode::BAD_REQUEST, "reserved_action").await;
        }
        for source in ["front", "hookrelay"] {
            let mut body = event("app.user.created");
            body["data"]["source"] = json!(source);
            let res = publish_as(&app, token, &body).await;
            assert_error(res, StatusCode::BAD_REQUEST, "reserved_action").await;
        }
    }
    let events = app.get_json("/v1beta1/admin/events", StatusCode::OK).await;
    assert_eq!(events["events"], json!([]), "nothing refused was stored");

    let mut body = event("app.user.created");
    body["data"]["source"] = json!("billing");
    let res = publish_as(&app, PUBLISH_TOKEN, &body).await;
    let id = assert_json(res, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let stored = app
        .get_json(&format!("/v1beta1/admin/events/{id}"), StatusCode::OK)
        .await;
    assert!(
        stored.to_string().contains("\"source\":\"billing\""),
        "{stored}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Idempotency ids per token
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_ids_are_scoped_to_the_token_that_sent_them() {
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.auth.publish_tokens = vec![
            Secret::new(PUBLISH_TOKEN),
            Secret::new(SECOND_PUBLISH_TOKEN),
        ];
    })
    .await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/all")})).await;
    let mut body = event("app.user.created");
    body["id"] = json!("k1");

    let first = assert_json(
        publish_as(&app, PUBLISH_TOKEN, &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(first["deliveries"], 1, "{first}");
    let by_admin = assert_json(
        publish_as(&app, ADMIN_TOKEN, &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let by_second = assert_json(
        publish_as(&app, SECOND_PUBLISH_TOKEN, &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let ids = [&first["id"], &by_admin["id"], &by_second["id"]];
    assert!(
        ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
        "another token's id is not an answer to borrow: {ids:?}"
    );

    // Each token's own retry gets its own first answer.
    let again = assert_json(publish_as(&app, PUBLISH_TOKEN, &body).await, StatusCode::OK).await;
    assert_eq!(again, first);
    let again = assert_json(publish_as(&app, ADMIN_TOKEN, &body).await, StatusCode::OK).await;
    assert_eq!(again, by_admin);
    let again = assert_json(
        publish_as(&app, SECOND_PUBLISH_TOKEN, &body).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again, by_second);

    let events = app.get_json("/v1beta1/admin/events", StatusCode::OK).await;
    assert_eq!(
        events["events"].as_array().expect("events").len(),
        3,
        "{events}"
    );
    rx.wait_for(3, Duration::from_secs(10)).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Actors in the audit log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_log_names_what_authenticated_the_request() {
    let app = spawn_app_with(identity_admins).await;

    let by_token = create_webhook(&app, json!({"url": "http://127.0.0.1:9/token"})).await;
    let id = by_token["id"].as_str().expect("id");
    assert_eq!(actor_of(&app, "webhook.create", id).await, "admin");

    let res = app
        .client
        .post(app.url("/v1beta1/admin/webhooks"))
        .header(IDENTITY, "ops@example.com")
        .json(&json!({"url": "http://127.0.0.1:9/identity"}))
        .send()
        .await
        .expect("request");
    let by_identity = assert_json(res, StatusCode::OK).await;
    let id = by_identity["webhook"]["id"].as_str().expect("id");
    assert_eq!(
        actor_of(&app, "webhook.create", id).await,
        "ops@example.com"
    );

    // A bearer token decides alone: a header riding along names nobody.
    let res = app
        .client
        .post(app.url("/v1beta1/admin/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .header(IDENTITY, "someone@example.com")
        .json(&json!({"url": "http://127.0.0.1:9/both"}))
        .send()
        .await
        .expect("request");
    let by_both = assert_json(res, StatusCode::OK).await;
    let id = by_both["webhook"]["id"].as_str().expect("id");
    assert_eq!(actor_of(&app, "webhook.create", id).await, "admin");
}

// ---------------------------------------------------------------------------------------------
// 4. Cross-site requests with an identity header
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cross_site_state_changes_are_refused_when_a_proxy_authenticates() {
    let app = spawn_app_with(identity_admins).await;
    let post = |path: &str| {
        app.client
            .post(app.url(path))
            .header(IDENTITY, "ops@example.com")
    };

    let res = post("/v1beta1/admin/webhooks")
        .header("origin", EVIL)
        .json(&json!({"url": "http://127.0.0.1:9/evil"}))
        .send()
        .await
        .expect("request");
    assert_error(res, StatusCode::FORBIDDEN, "cross_origin").await;

    // What an HTML form can send without a preflight.
    for (content_type, body) in [
        (
            "application/x-www-form-urlencoded",
            "url=http%3A%2F%2F127.0.0.1%3A9%2Fform",
        ),
        ("text/plain", r#"{"url": "http://127.0.0.1:9/plain"}"#),
        (
            "multipart/form-data; boundary=x",
            "--x\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttp://127.0.0.1:9/multi\r\n--x--\r\n",
        ),
    ] {
        let res = post("/v1beta1/admin/webhooks")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_error(
            res,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    assert_eq!(webhooks(&app).await, Vec::<Value>::new(), "nothing created");

    // The admin page itself: its own origin, JSON.
    let res = post("/v1beta1/admin/webhooks")
        .header("origin", app.address.as_str())
        .json(&json!({"url": "http://127.0.0.1:9/page"}))
        .send()
        .await
        .expect("request");
    assert_json(res, StatusCode::OK).await;
    assert_eq!(webhooks(&app).await.len(), 1);

    let res = post("/v1beta1/admin/cron/retention/run")
        .header("origin", EVIL)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_error(res, StatusCode::FORBIDDEN, "cross_origin").await;
    let cron = app
        .get_json("/v1beta1/admin/cron/retention", StatusCode::OK)
        .await;
    assert_eq!(cron["cron"]["runs"], json!([]), "nothing ran: {cron}");
}

#[tokio::test]
async fn without_an_identity_header_a_bearer_request_may_carry_any_origin() {
    let app = spawn_app_with(local_delivery).await;
    let res = app
        .client
        .post(app.url("/v1beta1/admin/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", EVIL)
        .json(&json!({"url": "http://127.0.0.1:9/script"}))
        .send()
        .await
        .expect("request");
    assert_json(res, StatusCode::OK).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Credential headers are secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn credential_headers_are_sealed_redacted_and_still_sent() {
    let app = spawn_app_with(local_delivery).await;
    let rx = TestReceiver::ok().await;
    let shown = json!({"Authorization": "[redacted]", "X-Team": "ops"});
    let created = create_webhook(
        &app,
        json!({"url": rx.url("/creds"),
               "headers": {"Authorization": "Bearer hunter2-secret", "X-Team": "ops"}}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["headers"], shown);
    assert_eq!(webhooks(&app).await[0]["headers"], shown);
    let detail = app
        .get_json(&format!("/v1beta1/admin/webhooks/{id}"), StatusCode::OK)
        .await["webhook"]
        .clone();
    assert_eq!(detail["headers"], shown);

    publish(&app, event("app.user.created")).await;
    let seen = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(header(&seen[0].1, "authorization"), "Bearer hunter2-secret");
    assert_eq!(header(&seen[0].1, "x-team"), "ops");

    // The admin page sends the headers back as it shows them: the real value stays.
    let res = put(
        &app,
        &format!("/v1beta1/admin/webhooks/{id}"),
        &json!({"headers": detail["headers"]}),
    )
    .await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await["webhook"]["headers"],
        shown
    );
    publish(&app, event("app.user.updated")).await;
    let seen = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(header(&seen[1].1, "authorization"), "Bearer hunter2-secret");

    // "[redacted]" for a header with nothing stored has nothing to keep.
    let res = put(
        &app,
        &format!("/v1beta1/admin/webhooks/{id}"),
        &json!({"headers": {"X-Api-Key": "[redacted]"}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let detail = app
        .get_json(&format!("/v1beta1/admin/webhooks/{id}"), StatusCode::OK)
        .await["webhook"]
        .clone();
    assert_eq!(detail["headers"], shown, "a refused update changes nothing");

    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db_path.display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !contains(&bytes, b"hunter2-secret"),
            "the credential is readable in {path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Disabling cancels pending deliveries; recover brings them back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn disabling_cancels_pending_deliveries_and_recover_requeues_them() {
    let app = spawn_app_with(local_delivery).await;
    // Two failures (one per delivery), then the receiver is back.
    let rx = TestReceiver::start(vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(500),
        ResponseTemplate::new(200),
    ])
    .await;
    let before = now_rfc3339_plus(-1000);
    let w = create_webhook(
        &app,
        json!({"url": rx.url("/flaky"), "retry_schedule": ["1h"]}),
    )
    .await;
    let wid = w["id"].as_str().expect("id").to_string();
    publish(&app, event("app.user.created")).await;
    publish(&app, event("app.user.updated")).await;
    wait_until(
        Duration::from_secs(10),
        "both deliveries to have failed once and wait an hour",
        || async {
            let list = deliveries_of_webhook(&app, &wid).await;
            (list.len() == 2
                && list
                    .iter()
                    .all(|d| d["state"] == "pending" && d["attempts"] == 1))
            .then_some(())
        },
    )
    .await;

    let res = put(
        &app,
        &format!("/v1beta1/admin/webhooks/{wid}"),
        &json!({"state": "disabled"}),
    )
    .await;
    assert_json(res, StatusCode::OK).await;
    for d in deliveries_of_webhook(&app, &wid).await {
        assert_eq!(d["state"], "cancelled", "{d}");
        assert!(
            d["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("webhook_disabled")),
            "{d}"
        );
    }

    let res = put(
        &app,
        &format!("/v1beta1/admin/webhooks/{wid}"),
        &json!({"state": "enabled"}),
    )
    .await;
    assert_json(res, StatusCode::OK).await;
    let res = app
        .post(
            &format!("/v1beta1/admin/webhooks/{wid}/recover"),
            &json!({"since": before}),
        )
        .await;
    assert_eq!(
        assert_json(res, StatusCode::ACCEPTED).await,
        json!({"recovered": 2})
    );
    wait_until(
        Duration::from_secs(15),
        "both recovered deliveries to succeed",
        || async {
            let list = deliveries_of_webhook(&app, &wid).await;
            list.iter().all(|d| d["state"] == "succeeded").then_some(())
        },
    )
    .await;
    assert!(rx.requests().len() >= 4);
}

// ---------------------------------------------------------------------------------------------
// 7. Action filters: exact or prefix.*
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn action_filters_take_an_exact_action_or_a_prefix() {
    let app = spawn_app_with(local_delivery).await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/all")})).await;
    for action in [
        "app.user.created",
        "app.user.deleted",
        "app.username.changed",
        "app.org.created",
    ] {
        publish(&app, event(action)).await;
    }
    let actions = |v: &Value, key: &str| {
        let mut a: Vec<String> = v[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["action"].as_str().expect("action").to_string())
            .collect();
        a.sort();
        a
    };
    for (list, key) in [
        ("/v1beta1/admin/events", "events"),
        ("/v1beta1/admin/deliveries", "deliveries"),
    ] {
        let v = app
            .get_json(&format!("{list}?action=app.user.*"), StatusCode::OK)
            .await;
        assert_eq!(
            actions(&v, key),
            ["app.user.created", "app.user.deleted"],
            "{list}"
        );
        let v = app
            .get_json(&format!("{list}?action=app.user.created"), StatusCode::OK)
            .await;
        assert_eq!(actions(&v, key), ["app.user.created"], "{list}");
        // Neither SQL wildcards nor a bare prefix match anything.
        for filter in ["app.%25", "app.user._reated", "app.user"] {
            let v = app
                .get_json(&format!("{list}?action={filter}"), StatusCode::OK)
                .await;
            assert!(actions(&v, key).is_empty(), "{list}?action={filter}: {v}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Dedupe keys outlive inbound rows
// ---------------------------------------------------------------------------------------------

/// A captured Front request, to send again byte for byte.
struct Capture {
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Capture {
    /// A signed legacy rule webhook (HMAC-SHA1 of the body, no timestamp).
    fn rule(event_id: &str) -> Self {
        let event = crate::front::full_inbound(event_id, "msg_rule")["payload"].clone();
        let body = serde_json::to_vec(&event).expect("json");
        Self {
            path: "/webhooks/front/rules",
            headers: vec![("x-front-signature", sign_rule(&body))],
            body,
        }
    }

    /// A signed application webhook (its timestamp stays within the tolerance for the test).
    fn app(event_id: &str) -> Self {
        let body =
            serde_json::to_vec(&crate::front::full_inbound(event_id, "msg_app")).expect("json");
        let ts = now_ms_string();
        Self {
            path: "/webhooks/front",
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-front-signature", sign(&ts, &body)),
                ("x-front-request-timestamp", ts),
            ],
            body,
        }
    }

    async fn send(&self, app: &TestApp) -> Value {
        let mut req = app.client.post(app.url(self.path));
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let res = req.body(self.body.clone()).send().await.expect("request");
        assert_json(res, StatusCode::OK).await
    }
}

#[tokio::test]
async fn a_replayed_capture_is_a_duplicate_after_its_inbound_row_is_gone() {
    let app = spawn_app_with(|c| {
        front_config(c, None);
        c.retention.succeeded = Duration::from_secs(1);
    })
    .await;
    let captures = [
        Capture::rule("evt_captured_rule"),
        Capture::app("evt_captured_app"),
    ];
    for c in &captures {
        assert_eq!(c.send(&app).await, json!({"received": true}), "{}", c.path);
    }
    let inbound = || async {
        app.get_json("/v1beta1/admin/inbound?source=front", StatusCode::OK)
            .await["inbound"]
            .as_array()
            .expect("inbound")
            .clone()
    };
    let ids: Vec<String> = inbound()
        .await
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        wait_until(
            Duration::from_secs(10),
            &format!("inbound {id} to be processed"),
            || async {
                let v = app
                    .get_json(&format!("/v1beta1/admin/inbound/{id}"), StatusCode::OK)
                    .await;
                (v["inbound"]["state"] == "processed").then_some(())
            },
        )
        .await;
    }

    // Retention keeps processed rows 1 s: run it until the rows are past that and gone.
    wait_until(
        Duration::from_secs(20),
        "retention to delete the inbound rows",
        || async {
            let res = app
                .post("/v1beta1/admin/cron/retention/run", &json!({}))
                .await;
            let run = assert_json(res, StatusCode::ACCEPTED).await;
            let job = run["run"]["job_id"].as_str().expect("job id").to_string();
            app.wait_job(&job, "succeeded", Duration::from_secs(15))
                .await;
            inbound().await.is_empty().then_some(())
        },
    )
    .await;
    for id in &ids {
        let res = app.get(&format!("/v1beta1/admin/inbound/{id}")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{id}");
    }

    for c in &captures {
        assert_eq!(
            c.send(&app).await,
            json!({"received": true, "duplicate": true}),
            "{}",
            c.path
        );
    }
    assert_eq!(inbound().await, Vec::<Value>::new(), "no new inbound row");
}

// ---------------------------------------------------------------------------------------------
// 9. HEAD wherever GET
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn head_works_wherever_get_does() {
    let app = spawn_app().await;
    for (path, token) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/openapi.json", None),
        ("/admin", None),
        ("/v1beta1/admin/jobs", Some(ADMIN_TOKEN)),
    ] {
        let mut get = app.client.get(app.url(path));
        if let Some(t) = token {
            get = get.bearer_auth(t);
        }
        let get = get.send().await.expect("get");
        assert_eq!(get.status(), StatusCode::OK, "GET {path}");
        let content_type = get.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_ascii_lowercase();

        // Raw, so a body sent after the headers would show.
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let raw = raw_exchange(
            &app,
            format!(
                "HEAD {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
                host(&app)
            )
            .as_bytes(),
        )
        .await;
        let (head, body) = split_response(&raw);
        assert!(head.starts_with("http/1.1 200"), "HEAD {path}: {head}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "HEAD {path} has GET's content type {content_type}: {head}"
        );
        assert!(
            body.is_empty(),
            "HEAD {path} sent a body: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let res = app
        .client
        .put(app.url("/healthz"))
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

// ---------------------------------------------------------------------------------------------
// 10. Private files
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn the_database_its_journal_lock_and_key_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    app.enqueue(noop(json!({}))).await;
    let dir = app.db_path.parent().expect("dir").to_path_buf();
    for name in [
        "hookrelay.db",
        "hookrelay.db-wal",
        "hookrelay.db-shm",
        "hookrelay.db.lock",
        "encryption.key",
    ] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}

// ---------------------------------------------------------------------------------------------
// 11. A lost or wrong encryption key is refused
// ---------------------------------------------------------------------------------------------

fn key_config(dir: &Path) -> Config {
    let mut c = test_config(dir);
    local_delivery(&mut c);
    c
}

async fn build_error(cfg: Config) -> String {
    hookrelay::install_tls_provider();
    match Application::build(cfg).await {
        Ok(_) => panic!("the app started"),
        Err(e) => format!("{e:#}"),
    }
}

fn sealing_key_ids(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("db");
    let mut stmt = conn
        .prepare("SELECT DISTINCT key_id FROM webhook_secrets")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test]
async fn a_lost_encryption_key_is_refused_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_in(dir, key_config(&path)).await;
    create_webhook(&app, json!({"url": "http://127.0.0.1:9/sealed"})).await;
    let dir = app.shutdown().await;
    let key_file = path.join("encryption.key");
    let key = std::fs::read(&key_file).expect("generated key");
    let ids = sealing_key_ids(&path.join("hookrelay.db"));
    assert_eq!(ids.len(), 1, "{ids:?}");

    std::fs::remove_file(&key_file).expect("lose the key");
    let error = build_error(key_config(&path)).await;
    assert!(
        error.contains(&ids[0]) && error.contains("encryption.key"),
        "the error names the key id and the missing file: {error}"
    );
    assert!(!key_file.exists(), "no new key was generated");

    // Restored, it starts again.
    std::fs::write(&key_file, &key).expect("restore the key");
    let app = spawn_app_in(dir, key_config(&path)).await;
    assert_eq!(webhooks(&app).await.len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_different_key_is_refused_unless_the_old_one_is_listed_as_previous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_in(dir, key_config(&path)).await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/sealed")})).await;
    let dir = app.shutdown().await;
    let old = std::fs::read_to_string(path.join("encryption.key")).expect("generated key");
    let old = old.trim().to_string();
    let ids = sealing_key_ids(&path.join("hookrelay.db"));
    let new_key = "22".repeat(32);

    let mut cfg = key_config(&path);
    cfg.delivery.encryption_key = Some(Secret::new(new_key.clone()));
    let error = build_error(cfg).await;
    assert!(
        error.contains(&ids[0]),
        "the error names the key id: {error}"
    );
    assert!(
        !error.contains(&old) && !error.contains(&new_key),
        "{error}"
    );

    let mut cfg = key_config(&path);
    cfg.delivery.encryption_key = Some(Secret::new(new_key));
    cfg.delivery.previous_encryption_keys = vec![Secret::new(old)];
    let app = spawn_app_in(dir, cfg).await;
    // The old secret still opens: a delivery goes out.
    publish(&app, event("app.user.created")).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_database_without_sealed_secrets_gets_a_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_in(dir, key_config(&path)).await;
    let key_file = path.join("encryption.key");
    assert!(key_file.exists(), "a fresh database generates its key");
    let dir = app.shutdown().await;
    std::fs::remove_file(&key_file).expect("remove");
    let app = spawn_app_in(dir, key_config(&path)).await;
    assert!(key_file.exists(), "nothing sealed: a new key is fine");
    create_webhook(&app, json!({"url": "http://127.0.0.1:9/new"})).await;
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Body deadline
// ---------------------------------------------------------------------------------------------

async fn body_deadline_app() -> TestApp {
    spawn_app_with(|c| {
        front_config(c, None);
        c.server.body_timeout = Duration::from_secs(2);
    })
    .await
}

fn partial_request_head(app: &TestApp) -> String {
    partial_request_head_framed(app, "Content-Length: 100000")
}

fn partial_request_head_framed(app: &TestApp, framing: &str) -> String {
    format!(
        "POST /webhooks/front HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         X-Front-Request-Timestamp: {}\r\nX-Front-Signature: x\r\n{framing}\r\n\r\n",
        host(app),
        now_ms_string()
    )
}

/// Reads one response: its head, then the body its `Content-Length` or chunking says (or up to
/// the end of the connection). Returns it with the time it was complete.
async fn read_response(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(8), rd.read(&mut chunk))
            .await
            .expect("an answer within 8 s")
            .expect("read");
        out.extend_from_slice(&chunk[..n]);
        if n == 0 {
            return (out, Instant::now());
        }
        let Some(at) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&out[..at]).to_ascii_lowercase();
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        let complete = match length {
            Some(len) => out.len() >= at + 4 + len,
            None => head.contains("chunked") && out.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            return (out, Instant::now());
        }
    }
}

/// Sends the head with `framing`, then `part` of the body, and stalls: the answer must be a
/// 408 `request_timeout` at the deadline, and the connection closed after it.
async fn stall_and_expect_408(framing: &str, part: &[u8]) {
    let app = body_deadline_app().await;
    let mut stream = TcpStream::connect(host(&app)).await.expect("connect");
    stream
        .write_all(partial_request_head_framed(&app, framing).as_bytes())
        .await
        .expect("head");
    stream.write_all(part).await.expect("part");
    let started = Instant::now();
    let (raw, at) = read_response(&mut stream).await;
    let took = at - started;
    let (head, body) = split_response(&raw);
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert_eq!(raw_error_code(&body), "request_timeout");
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_secs(4),
        "answered after {took:?}"
    );
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("the connection is still open 5 s after the 408:\n{head}"))
        .expect("read");
    assert_eq!(n, 0, "the connection is closed");

    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK, "still serving");
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_its_connection_closed() {
    stall_and_expect_408("Content-Length: 100000", &[b'a'; 1000]).await;
}

#[tokio::test]
async fn a_stalled_chunked_body_gets_408_and_its_connection_closed() {
    // One 1000-byte chunk of a chunked body, then nothing.
    let mut part = b"3e8\r\n".to_vec();
    part.extend_from_slice(&[b'a'; 1000]);
    part.extend_from_slice(b"\r\n");
    stall_and_expect_408("Transfer-Encoding: chunked", &part).await;
}

#[tokio::test]
async fn a_trickled_body_meets_the_same_total_deadline() {
    let app = body_deadline_app().await;
    let stream = TcpStream::connect(host(&app)).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(partial_request_head(&app).as_bytes())
        .await
        .expect("head");
    let started = Instant::now();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&answered);
    // One byte every 500 ms, off the deadline's beat: never idle long enough for a per-read
    // timeout, so only a total deadline ends it.
    let trickle = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if wr.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        wr
    });
    let (raw, at) = read_response(&mut rd).await;
    answered.store(true, std::sync::atomic::Ordering::SeqCst);
    let took = at - started;
    let (head, body) = split_response(&raw);
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert_eq!(raw_error_code(&body), "request_timeout");
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_secs(4),
        "answered after {took:?}"
    );
    let _wr = trickle.await.expect("trickle");
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut rest))
        .await
        .expect("the server closes the connection");
    // Bytes the client sent after the server closed may turn its FIN into a reset.
    match closed {
        Ok(n) => assert_eq!(n, 0, "the connection is closed"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 13. Wrong shape vs malformed JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_shaped_json_is_invalid_payload_and_broken_json_invalid_json() {
    let app = spawn_app().await;
    let post_raw = |path: &'static str, body: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = post_raw("/v1beta1/admin/jobs", r#"{"kind": 5}"#)
        .await
        .expect("req");
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    let res = post_raw("/v1beta1/admin/jobs", r#"{"kind":"#)
        .await
        .expect("req");
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_json").await;
    let res = post_raw("/v1beta1/events", r#"{"action": ["app.user.created"]}"#)
        .await
        .expect("req");
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    let res = post_raw(
        "/v1beta1/events",
        r#"{"action": "app.user.created", "data": {"#,
    )
    .await
    .expect("req");
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_json").await;
}

// ---------------------------------------------------------------------------------------------
// 14. Work linear in body size
// ---------------------------------------------------------------------------------------------

/// `{"<500,000 × k>": [0, …250,000 zeros]}`: a long key over a long array (a path string
/// rebuilt per element would make this quadratic).
fn long_key_over_long_array() -> String {
    format!(
        "{{\"{}\":[{}]}}",
        "k".repeat(500_000),
        vec!["0"; 250_000].join(",")
    )
}

/// An object 10,000 levels deep, padded to about 1 MiB.
fn deep_nesting() -> String {
    format!(
        "{{\"pad\":\"{}\",\"deep\":{}{}}}",
        "p".repeat(1_000_000),
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
}

/// An object of 50,000 keys (about 1 MiB).
fn wide_object() -> String {
    let fields: Vec<String> = (0..50_000)
        .map(|i| format!("\"k{i:05}\":\"vvvvvvv\""))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Sends `body` and returns (status, time to the whole answer).
async fn timed(req: reqwest::RequestBuilder, body: String) -> (StatusCode, Duration) {
    assert!(body.len() <= MAX_BODY, "{} bytes", body.len());
    let started = Instant::now();
    let res = req
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    let took = started.elapsed();
    assert!(
        status != StatusCode::PAYLOAD_TOO_LARGE,
        "the test body is over the limit: {text}"
    );
    (status, took)
}

#[tokio::test]
async fn publishing_any_shape_up_to_the_limit_is_answered_quickly() {
    let app = spawn_app().await;
    let envelope = |metadata: String| {
        format!("{{\"action\":\"app.user.created\",\"data\":{{\"metadata\":{metadata}}}}}")
    };
    let post = || {
        app.client
            .post(app.url("/v1beta1/events"))
            .bearer_auth(PUBLISH_TOKEN)
    };
    for (shape, metadata, expected) in [
        (
            "long key over a long array",
            long_key_over_long_array(),
            StatusCode::ACCEPTED,
        ),
        (
            "10,000 levels deep",
            deep_nesting(),
            StatusCode::BAD_REQUEST,
        ),
        ("50,000 keys", wide_object(), StatusCode::ACCEPTED),
    ] {
        let (status, took) = timed(post(), envelope(metadata)).await;
        assert_eq!(status, expected, "{shape}");
        assert!(
            took < Duration::from_secs(1),
            "{shape}: answered after {took:?}"
        );
    }
}

#[tokio::test]
async fn front_webhooks_of_any_shape_are_answered_quickly() {
    let app = spawn_app_with(|c| front_config(c, None)).await;
    for (n, (shape, payload)) in [
        ("long key over a long array", long_key_over_long_array()),
        ("10,000 levels deep", deep_nesting()),
        ("50,000 keys", wide_object()),
    ]
    .into_iter()
    .enumerate()
    {
        // The payload's own fields, with an event id put in front.
        let payload = format!("{{\"id\":\"evt_shape{n}\",{}", &payload[1..]);
        let body = format!(
            "{{\"authorization\":{{\"id\":\"cmp_acme\"}},\"type\":\"inbound_received\",\"payload\":{payload}}}"
        );
        let ts = now_ms_string();
        let req = app
            .client
            .post(app.url("/webhooks/front"))
            .header("x-front-request-timestamp", &ts)
            .header("x-front-signature", sign(&ts, body.as_bytes()));
        let (status, took) = timed(req, body).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{shape}: {status}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{shape}: answered after {took:?}"
        );
    }
    // What was stored is processed (or fails) in the background without holding a worker.
    let inbound = app
        .get_json("/v1beta1/admin/inbound?source=front", StatusCode::OK)
        .await["inbound"]
        .as_array()
        .expect("inbound")
        .clone();
    for row in &inbound {
        let job = row["job_id"].as_str().expect("job id");
        wait_until(
            Duration::from_secs(20),
            &format!("the processing job of {} to have run", row["event_id"]),
            || async {
                let state = app.job(job).await["state"].clone();
                ["succeeded", "retrying", "dead"]
                    .contains(&state.as_str().unwrap_or_default())
                    .then_some(())
            },
        )
        .await;
    }
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK, "still serving");
}
