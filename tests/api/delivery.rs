//! Outbound delivery end to end: the webhook registry, publishing and fan-out, signatures checked
//! with independent code, retries, and the attempt log — against receivers on loopback.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::helpers::*;

fn user_created() -> Value {
    json!({"action": "app.user.created", "data": {
        "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
        "target": {"id": "user_xyz789", "type": "user", "name": "Jane Doe"},
        "org_id": "org_123abc",
        "metadata": {"email": "jane@example.com", "department": "Engineering"}
    }})
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn wait_delivery(app: &TestApp, id: &str, state: &str, within: Duration) -> Value {
    wait_until(within, &format!("delivery {id} to be {state}"), || async {
        let d = app
            .get_json(&format!("/v1beta1/admin/deliveries/{id}"), StatusCode::OK)
            .await["delivery"]
            .clone();
        (d["state"] == state).then_some(d)
    })
    .await
}

async fn deliveries_of(app: &TestApp, event_id: &str) -> Vec<Value> {
    app.get_json(
        &format!("/v1beta1/admin/deliveries?event_id={event_id}"),
        StatusCode::OK,
    )
    .await["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_crud_in_frontier_shapes() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let created = create_webhook(
        &app,
        json!({"url": rx.url("/hooks/users"), "description": "user events", "subscribed_events": ["app.user.created"],
               "headers": {"Authorization": "Bearer abc"}}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("wh_"));
    assert_eq!(created["state"], "enabled");
    assert_eq!(created["signature_algorithm"], "sha256");
    let secret = &created["secrets"][0];
    assert_eq!(secret["id"], "1");
    let hex_value = secret["value"].as_str().expect("value");
    assert_eq!(hex_value.len(), 64);
    assert!(
        hex_value
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let whsec = secret["standard_webhooks"].as_str().expect("whsec");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .expect("b64");
    assert_eq!(
        hex::encode(raw),
        hex_value,
        "both forms hold the same 32 bytes"
    );

    let got = app
        .get_json(&format!("/v1beta1/admin/webhooks/{id}"), StatusCode::OK)
        .await["webhook"]
        .clone();
    assert_eq!(got["secrets"][0]["id"], "1");
    assert!(
        got["secrets"][0].get("value").is_none(),
        "the secret is shown only once"
    );
    let list = app
        .get_json("/v1beta1/admin/webhooks", StatusCode::OK)
        .await;
    assert_eq!(list["webhooks"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(hex_value));

    // Partial update: only the fields sent change.
    let res = app
        .client
        .put(app.url(&format!("/v1beta1/admin/webhooks/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"state": "disabled"}))
        .send()
        .await
        .expect("put");
    let updated = assert_json(res, StatusCode::OK).await["webhook"].clone();
    assert_eq!(updated["state"], "disabled");
    assert_eq!(updated["description"], "user events");
    assert_eq!(updated["subscribed_events"], json!(["app.user.created"]));
    // A credential header is a secret: sealed at rest, never shown again.
    assert_eq!(updated["headers"], json!({"Authorization": "[redacted]"}));

    let res = app
        .client
        .delete(app.url(&format!("/v1beta1/admin/webhooks/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(assert_json(res, StatusCode::OK).await, json!({}));
    assert_error(
        app.get(&format!("/v1beta1/admin/webhooks/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=webhook.*&target_id={id}"),
            StatusCode::OK,
        )
        .await;
    let actions: Vec<&str> = logs["audit_logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["webhook.delete", "webhook.update", "webhook.create"]
    );
    assert_eq!(logs["audit_logs"][0]["actor"], "admin");
}

#[tokio::test]
async fn webhook_validation_errors() {
    let app = spawn_app().await; // https only, no private networks
    let bad = [
        (
            json!({"url": "not a url"}),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            json!({"url": "ftp://example.com/x"}),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            json!({"url": "http://example.com/x"}),
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
        ),
        (
            json!({"url": "https://10.0.0.5/x"}),
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
        ),
        (
            json!({"url": "https://169.254.169.254/latest"}),
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
        ),
        (
            json!({"url": "https://[::1]/x"}),
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"Content-Type": "text/plain"}}),
            StatusCode::BAD_REQUEST,
            "reserved_header",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"X-Signature": "1=abc"}}),
            StatusCode::BAD_REQUEST,
            "reserved_header",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"webhook-id": "x"}}),
            StatusCode::BAD_REQUEST,
            "reserved_header",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"Host": "evil"}}),
            StatusCode::BAD_REQUEST,
            "reserved_header",
        ),
        (
            json!({"url": "https://example.com/x", "headers": {"Content-Length": "1"}}),
            StatusCode::BAD_REQUEST,
            "reserved_header",
        ),
        (
            json!({"url": "https://example.com/x", "subscribed_events": ["App.User"]}),
            StatusCode::BAD_REQUEST,
            "invalid_event_type",
        ),
        (
            json!({"url": "https://example.com/x", "state": "paused"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"url": "https://example.com/x", "signature_algorithm": "md5"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"url": "https://example.com/x", "retry_schedule": ["soon"]}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"url": "https://example.com/x", "retry_schedule": ["1s","1s","1s","1s","1s","1s","1s","1s","1s","1s","1s"]}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"url": "https://example.com/x", "colour": "blue"}),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            json!({"description": "no url"}),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
    ];
    for (body, status, code) in bad {
        let res = app.post("/v1beta1/admin/webhooks", &body).await;
        assert_error(res, status, code).await;
    }
    let ok = create_webhook(&app, json!({"url": "https://example.com/x", "subscribed_events": ["app.user.*"], "signature_algorithm": "sha512_256", "retry_schedule": ["1s"]})).await;
    assert_eq!(ok["signature_algorithm"], "sha512_256");
    assert_eq!(ok["retry_schedule"], json!(["1s"]));
    let res = app
        .post(
            "/v1beta1/admin/webhooks",
            &json!({"url": "https://example.com/x"}),
        )
        .await;
    assert_error(res, StatusCode::CONFLICT, "already_exists").await;
    let id = ok["id"].as_str().expect("id");
    let res = app
        .client
        .put(app.url(&format!("/v1beta1/admin/webhooks/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": "http://example.com/x"}))
        .send()
        .await
        .expect("put");
    assert_error(res, StatusCode::BAD_REQUEST, "url_not_allowed").await;
    let res = app
        .client
        .put(app.url("/v1beta1/admin/webhooks/wh_nope"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"state": "enabled"}))
        .send()
        .await
        .expect("put");
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn fan_out_follows_subscriptions_and_skips_disabled_endpoints() {
    let app = delivery_app().await;
    let all = TestReceiver::ok().await;
    let users = TestReceiver::ok().await;
    let orgs = TestReceiver::ok().await;
    let off = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": all.url("/all")})).await;
    create_webhook(
        &app,
        json!({"url": users.url("/users"), "subscribed_events": ["app.user.*"]}),
    )
    .await;
    create_webhook(
        &app,
        json!({"url": orgs.url("/orgs"), "subscribed_events": ["app.organization.created"]}),
    )
    .await;
    create_webhook(&app, json!({"url": off.url("/off"), "state": "disabled"})).await;

    let first = publish(&app, user_created()).await;
    assert_eq!(first["deliveries"], 2);
    let second = publish(
        &app,
        json!({"action": "app.organization.created", "data": {}}),
    )
    .await;
    assert_eq!(second["deliveries"], 2);
    let third = publish(&app, json!({"action": "app.user.updated", "data": {}})).await;
    assert_eq!(third["deliveries"], 2);

    all.wait_for(3, Duration::from_secs(10)).await;
    users.wait_for(2, Duration::from_secs(10)).await;
    orgs.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(users.requests().len(), 2);
    assert_eq!(orgs.requests().len(), 1);
    assert!(
        off.requests().is_empty(),
        "a disabled endpoint gets nothing"
    );
}

#[tokio::test]
async fn deliveries_carry_both_signatures_and_verify_independently() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(
        &app,
        json!({"url": rx.url("/hook"), "headers": {"X-Custom": "yes"}}),
    )
    .await;
    let key = hex::decode(wh["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    let published = publish(&app, user_created()).await;
    let event_id = published["id"].as_str().expect("id");
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);

    assert_eq!(header(&req, "content-type"), "application/json");
    assert_eq!(
        header(&req, "user-agent"),
        format!("hookrelay/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(header(&req, "x-custom"), "yes");
    assert_eq!(header(&req, "x-hookrelay-attempt"), "1");
    assert!(header(&req, "x-hookrelay-delivery").starts_with("dlv_"));
    assert_eq!(header(&req, "webhook-id"), event_id);

    // X-Signature: 1=<hex HMAC-SHA256(key, body)>
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(&req.body);
    assert_eq!(
        header(&req, "x-signature"),
        format!("1={}", hex::encode(mac.finalize().into_bytes()))
    );

    // Standard Webhooks: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>
    let ts = header(&req, "webhook-timestamp");
    let age = hookrelay::clock::now_ms() / 1000 - ts.parse::<i64>().expect("ts");
    assert!((0..=10).contains(&age));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{event_id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(header(&req, "webhook-signature"), want);

    let body: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(body["id"], event_id);
    assert_eq!(body["action"], "app.user.created");
    assert_eq!(body["data"]["source"], "frontier");
    assert_eq!(body["data"]["target"]["name"], "Jane Doe");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["id", "created_at", "action", "data"]);
    let data_keys: Vec<&String> = body["data"].as_object().expect("object").keys().collect();
    assert_eq!(
        data_keys,
        ["actor", "target", "org_id", "source", "metadata"]
    );
    let created = body["created_at"].as_str().expect("time");
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
}

#[tokio::test]
async fn sha512_256_signatures_for_frontiers_go_verifier() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(
        &app,
        json!({"url": rx.url("/go"), "signature_algorithm": "sha512_256"}),
    )
    .await;
    let key = hex::decode(wh["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    publish(&app, user_created()).await;
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let mut mac = Hmac::<sha2::Sha512_256>::new_from_slice(&key).expect("key");
    mac.update(&req.body);
    assert_eq!(
        header(&req, "x-signature"),
        format!("1={}", hex::encode(mac.finalize().into_bytes()))
    );
}

#[tokio::test]
async fn the_default_retry_timeline_is_0_3_6_12_seconds() {
    let app = delivery_app().await;
    let rx = TestReceiver::start(vec![ResponseTemplate::new(500).set_body_string("boom")]).await;
    create_webhook(&app, json!({"url": rx.url("/down")})).await;
    let event = publish(&app, user_created()).await;
    let seen = rx.wait_for(4, Duration::from_secs(40)).await;
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    for (gap, want) in gaps.iter().zip([3u64, 6, 12]) {
        let want = Duration::from_secs(want);
        assert!(
            *gap >= want - Duration::from_millis(50) && *gap <= want + Duration::from_millis(1500),
            "gaps {gaps:?}"
        );
    }
    let attempts: Vec<&str> = seen
        .iter()
        .map(|(_, r)| header(r, "x-hookrelay-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    let bodies: Vec<&Vec<u8>> = seen.iter().map(|(_, r)| &r.body).collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the body is identical on every attempt"
    );

    let id = deliveries_of(&app, event["id"].as_str().expect("id")).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let d = wait_delivery(&app, &id, "failed", Duration::from_secs(5)).await;
    assert_eq!(d["attempt_count"], 4);
    let log = d["attempts"].as_array().expect("attempts");
    assert_eq!(log.len(), 4);
    assert_eq!(log[3]["status"], 500);
    assert_eq!(log[3]["response_body"], "boom");
    let audit = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=delivery.failed&target_id={id}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        audit["audit_logs"].as_array().expect("logs").len(),
        1,
        "a failed delivery is audited"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 4, "no fifth attempt");
}

#[tokio::test]
async fn retries_stop_at_the_first_2xx_and_follow_the_webhooks_schedule() {
    let app = delivery_app().await;
    let rx = TestReceiver::start(vec![
        ResponseTemplate::new(502),
        ResponseTemplate::new(500),
        ResponseTemplate::new(204),
    ])
    .await;
    create_webhook(
        &app,
        json!({"url": rx.url("/flaky"), "retry_schedule": ["200ms", "400ms", "10s"]}),
    )
    .await;
    let event = publish(&app, user_created()).await;
    let seen = rx.wait_for(3, Duration::from_secs(10)).await;
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps[0] >= Duration::from_millis(150) && gaps[1] >= Duration::from_millis(350),
        "{gaps:?}"
    );
    let id = deliveries_of(&app, event["id"].as_str().expect("id")).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let d = wait_delivery(&app, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(d["attempt_count"], 3);
    assert_eq!(d["last_status"], 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 3);
}

#[tokio::test]
async fn gone_redirect_timeout_and_retry_after() {
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.delivery.timeout = Duration::from_millis(500);
    })
    .await;
    let gone = TestReceiver::start(vec![ResponseTemplate::new(410)]).await;
    let landing = TestReceiver::ok().await;
    let redirect = TestReceiver::start(vec![
        ResponseTemplate::new(302).insert_header("location", landing.url("/landed").as_str()),
    ])
    .await;
    let slow = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
    ])
    .await;
    let limited = TestReceiver::start(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        ResponseTemplate::new(200),
    ])
    .await;
    let schedule = json!(["30s", "30s"]);
    for (rx, path) in [
        (&gone, "/gone"),
        (&redirect, "/redirect"),
        (&slow, "/slow"),
        (&limited, "/limited"),
    ] {
        create_webhook(
            &app,
            json!({"url": rx.url(path), "retry_schedule": schedule}),
        )
        .await;
    }
    let event = publish(&app, user_created()).await;
    assert_eq!(event["deliveries"], 4);

    // 410 ends the delivery after one attempt.
    gone.wait_for(1, Duration::from_secs(5)).await;
    // A redirect is a failure and is not followed.
    redirect.wait_for(1, Duration::from_secs(5)).await;
    // Retry-After: 1 replaces the 30 s wait.
    let seen = limited.wait_for(2, Duration::from_secs(8)).await;
    let gap = seen[1].0 - seen[0].0;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(5),
        "Retry-After gap {gap:?}"
    );

    let states = wait_until(Duration::from_secs(10), "final states", || async {
        let list = deliveries_of(&app, event["id"].as_str().expect("id")).await;
        let mut details = Vec::new();
        for d in &list {
            details.push(
                app.get_json(
                    &format!(
                        "/v1beta1/admin/deliveries/{}",
                        d["id"].as_str().expect("id")
                    ),
                    StatusCode::OK,
                )
                .await["delivery"]
                    .clone(),
            );
        }
        // Every delivery has made its first attempt (and the rate-limited one its second).
        let settled = details
            .iter()
            .all(|d| d["attempt_count"].as_i64().unwrap_or(0) >= 1)
            && details.iter().any(|d| d["state"] == "succeeded");
        settled.then_some(details)
    })
    .await;
    let find = |rx: &TestReceiver| {
        states
            .iter()
            .find(|d| {
                d["webhook_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&rx.server.uri()))
            })
            .cloned()
            .expect("delivery")
    };
    let g = find(&gone);
    assert_eq!(g["state"], "failed");
    assert_eq!(g["last_status"], 410);
    let r = find(&redirect);
    assert_eq!(r["state"], "pending", "a 3xx is a retryable failure");
    assert!(
        r["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("redirect"),
        "{r}"
    );
    assert!(
        landing.requests().is_empty(),
        "the redirect was not followed"
    );
    let s = find(&slow);
    assert_eq!(s["attempts"][0]["error_kind"], "timeout", "{s}");
    let l = find(&limited);
    assert_eq!(l["state"], "succeeded");
    assert_eq!(l["attempts"][0]["status"], 429);
    assert_eq!(l["attempts"][0]["response_headers"]["retry-after"], "1");
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_overlap() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(&app, json!({"url": rx.url("/rot")})).await;
    let id = wh["id"].as_str().expect("id");
    let old = hex::decode(wh["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    let rotated = assert_json(
        app.post(&format!("/v1beta1/admin/webhooks/{id}/secrets"), &json!({}))
            .await,
        StatusCode::OK,
    )
    .await["webhook"]
        .clone();
    assert_eq!(rotated["secrets"][0]["id"], "2");
    let new = hex::decode(rotated["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    assert_eq!(rotated["secrets"][1]["id"], "1");
    assert!(rotated["secrets"][1].get("value").is_none());
    assert!(rotated["secrets"][1]["expires_at"].is_string());

    publish(&app, user_created()).await;
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let sig = |key: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
        mac.update(&req.body);
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(
        header(&req, "x-signature"),
        format!("2={},1={}", sig(&new), sig(&old)),
        "newest first"
    );
    assert_eq!(header(&req, "webhook-signature").split(' ').count(), 2);

    // Ending the overlap now leaves only the new secret.
    app.post(
        &format!("/v1beta1/admin/webhooks/{id}/secrets"),
        &json!({"overlap": "0s"}),
    )
    .await;
    publish(&app, user_created()).await;
    let seen = rx.wait_for(2, Duration::from_secs(10)).await;
    assert!(header(&seen[1].1, "x-signature").starts_with("3="));
    assert!(!header(&seen[1].1, "x-signature").contains(','));
}

#[tokio::test]
async fn recover_requeues_failed_deliveries_in_range() {
    let app = delivery_app().await;
    let rx = TestReceiver::start(vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(500),
        ResponseTemplate::new(200),
    ])
    .await;
    let wh = create_webhook(&app, json!({"url": rx.url("/r"), "retry_schedule": []})).await;
    let id = wh["id"].as_str().expect("id");
    let since = now_rfc3339_plus(-1000);
    let a = publish(&app, user_created()).await;
    let b = publish(&app, user_created()).await;
    for e in [&a, &b] {
        let d = deliveries_of(&app, e["id"].as_str().expect("id")).await[0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        wait_delivery(&app, &d, "failed", Duration::from_secs(10)).await;
    }
    let res = app
        .post(
            &format!("/v1beta1/admin/webhooks/{id}/recover"),
            &json!({"since": since}),
        )
        .await;
    assert_eq!(assert_json(res, StatusCode::ACCEPTED).await["recovered"], 2);
    for e in [&a, &b] {
        let d = deliveries_of(&app, e["id"].as_str().expect("id")).await[0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let done = wait_delivery(&app, &d, "succeeded", Duration::from_secs(10)).await;
        assert_eq!(done["attempt_count"], 2);
    }
    let res = app
        .post(
            &format!("/v1beta1/admin/webhooks/{id}/recover"),
            &json!({"since": since}),
        )
        .await;
    assert_eq!(assert_json(res, StatusCode::ACCEPTED).await["recovered"], 0);
}

#[tokio::test]
async fn a_delivery_can_be_retried_by_hand() {
    let app = delivery_app().await;
    let rx =
        TestReceiver::start(vec![ResponseTemplate::new(503), ResponseTemplate::new(200)]).await;
    create_webhook(&app, json!({"url": rx.url("/m"), "retry_schedule": []})).await;
    let e = publish(&app, user_created()).await;
    let d = deliveries_of(&app, e["id"].as_str().expect("id")).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_delivery(&app, &d, "failed", Duration::from_secs(10)).await;
    let res = app
        .post(&format!("/v1beta1/admin/deliveries/{d}/retry"), &json!({}))
        .await;
    assert_json(res, StatusCode::ACCEPTED).await;
    let res = app
        .post(&format!("/v1beta1/admin/deliveries/{d}/retry"), &json!({}))
        .await;
    let status = res.status();
    assert!(status == StatusCode::CONFLICT || status == StatusCode::ACCEPTED);
    // 409 while the first retry is still pending; 202 (one more send) if it already succeeded.
    let attempts = if status == StatusCode::ACCEPTED { 3 } else { 2 };
    let done = wait_until(Duration::from_secs(10), "the retried delivery", || async {
        let v = wait_delivery(&app, &d, "succeeded", Duration::from_secs(10)).await;
        (v["attempts"].as_array().map(Vec::len) == Some(attempts)).then_some(v)
    })
    .await;
    assert_eq!(done["attempts"].as_array().expect("log").len(), attempts);
    // Its job is the delivery's: the jobs API points at the delivery instead of changing it.
    let job_id = done["job_id"].as_str().expect("job");
    let res = app
        .post(&format!("/v1beta1/admin/jobs/{job_id}/cancel"), &json!({}))
        .await;
    let err = assert_error(res, StatusCode::CONFLICT, "managed_job").await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/deliveries/")
    );
    let logs = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=delivery.retry&target_id={d}"),
            StatusCode::OK,
        )
        .await;
    assert!(!logs["audit_logs"].as_array().expect("logs").is_empty());
}

#[tokio::test]
async fn publishing_is_idempotent_and_validated() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": rx.url("/i")})).await;
    let mut body = user_created();
    body["id"] = json!("order-42-created");
    let first = publish(&app, body.clone()).await;
    let res = app.post("/v1beta1/events", &body).await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        first,
        "same id, same answer"
    );
    rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests().len(), 1, "nothing new delivered");

    // A publish token may publish, but nothing else.
    let res = app
        .client
        .post(app.url("/v1beta1/events"))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&user_created())
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = app
        .client
        .post(app.url("/v1beta1/events"))
        .json(&user_created())
        .send()
        .await
        .expect("post");
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;

    for bad in [
        json!({"action": "App.User", "data": {}}),
        json!({"action": "app", "data": {}}),
        json!({"action": "app.user.created", "data": []}),
        json!({"action": "app.user.created", "data": {"extra": 1}}),
        json!({"action": "app.user.created", "data": {"actor": "me"}}),
        json!({"action": "app.user.created", "data": {"metadata": {"big": 9_007_199_254_740_993u64}}}),
        json!({"action": "app.user.created", "data": {}, "id": ""}),
    ] {
        assert_error(
            app.post("/v1beta1/events", &bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        )
        .await;
    }
    assert_error(
        app.post("/v1beta1/events", &json!({"data": {}})).await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
    )
    .await;
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(&app, json!({"url": rx.url("/enc")})).await;
    let secret = wh["secrets"][0]["value"].as_str().expect("hex").to_string();
    let raw = hex::decode(&secret).expect("hex");
    publish(&app, user_created()).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let dir = app.db_path.parent().expect("dir").to_path_buf();
    for entry in std::fs::read_dir(&dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("hookrelay.db"))
        {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "hex secret in {}",
                path.display()
            );
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
                "raw secret in {}",
                path.display()
            );
        }
    }
    let key_file = dir.join("encryption.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key_file)
                .expect("key file")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}

#[tokio::test]
async fn an_undecryptable_secret_disables_only_its_webhook() {
    let app = delivery_app().await;
    let good = TestReceiver::ok().await;
    let broken = TestReceiver::ok().await;
    create_webhook(&app, json!({"url": good.url("/good")})).await;
    let bad = create_webhook(&app, json!({"url": broken.url("/broken")})).await;
    let bad_id = bad["id"].as_str().expect("id").to_string();
    // Corrupt the stored ciphertext, as a lost key or a damaged row would.
    app.app_store
        .writer()
        .write({
            let bad_id = bad_id.clone();
            move |tx| {
                tx.execute(
                    "UPDATE webhook_secrets SET ciphertext = ?2 WHERE webhook_id = ?1",
                    hookrelay::sql::params![bad_id, vec![0u8; 48]],
                )?;
                Ok::<_, hookrelay::store::StoreError>(())
            }
        })
        .await
        .expect("corrupt");
    publish(&app, user_created()).await;
    good.wait_for(1, Duration::from_secs(10)).await;
    let w = wait_until(
        Duration::from_secs(10),
        "the broken webhook to be disabled",
        || async {
            let w = app
                .get_json(&format!("/v1beta1/admin/webhooks/{bad_id}"), StatusCode::OK)
                .await["webhook"]
                .clone();
            (w["state"] == "disabled").then_some(w)
        },
    )
    .await;
    assert!(
        w["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be decrypted"),
        "{w}"
    );
    assert!(broken.requests().is_empty());
    let audit = app
        .get_json(
            &format!("/v1beta1/admin/audit-logs?action=webhook.disabled&target_id={bad_id}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(audit["audit_logs"].as_array().expect("logs").len(), 1);
    let events = app
        .get_json(
            "/v1beta1/admin/events?action=webhook.disabled",
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        events["events"].as_array().expect("events").len(),
        1,
        "a webhook.disabled event was published"
    );
    // The good endpoint keeps receiving.
    publish(&app, user_created()).await;
    good.wait_for(3, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_ssrf_guard_refuses_localhost() {
    let app = spawn_app_with(|c| c.delivery.allow_http = true).await;
    let rx = TestReceiver::ok().await;
    let url = rx.url("/internal").replace("127.0.0.1", "localhost");
    create_webhook(&app, json!({"url": url, "retry_schedule": []})).await;
    let e = publish(&app, user_created()).await;
    let d = deliveries_of(&app, e["id"].as_str().expect("id")).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let done = wait_delivery(&app, &d, "failed", Duration::from_secs(10)).await;
    assert_eq!(
        done["attempts"][0]["error_kind"], "refused_by_policy",
        "{done}"
    );
    assert!(
        rx.requests().is_empty(),
        "nothing reached the private address"
    );
}

#[tokio::test]
async fn deleting_a_webhook_cancels_its_queued_deliveries() {
    let app = delivery_app().await;
    let rx = TestReceiver::start(vec![ResponseTemplate::new(500)]).await;
    let wh = create_webhook(&app, json!({"url": rx.url("/x"), "retry_schedule": ["1h"]})).await;
    let e = publish(&app, user_created()).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let id = wh["id"].as_str().expect("id");
    let res = app
        .client
        .delete(app.url(&format!("/v1beta1/admin/webhooks/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::OK);
    let d = deliveries_of(&app, e["id"].as_str().expect("id")).await;
    assert_eq!(d[0]["state"], "cancelled", "still readable, as cancelled");
    let job = app.job(d[0]["job_id"].as_str().expect("job")).await;
    assert_eq!(job["state"], "cancelled");
}

/// The catalog notes each action once, with when it was first published, however often it
/// is published again.
#[tokio::test]
async fn the_catalog_keeps_the_first_publication_of_each_action() {
    let app = delivery_app().await;
    let first_seen = |types: &Value, action: &str| {
        let found: Vec<Value> = types["event_types"]
            .as_array()
            .expect("types")
            .iter()
            .filter(|t| t["action"] == action)
            .map(|t| t["first_seen"].clone())
            .collect();
        assert_eq!(found.len(), 1, "{action} listed once: {types}");
        found[0].clone()
    };
    publish(&app, json!({"action": "custom.first.thing", "data": {}})).await;
    let before = app
        .get_json("/v1beta1/admin/event-types", StatusCode::OK)
        .await;
    let first = first_seen(&before, "custom.first.thing");
    assert!(first.is_string(), "{before}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..3 {
        publish(&app, json!({"action": "custom.first.thing", "data": {}})).await;
    }
    publish(&app, json!({"action": "custom.second.thing", "data": {}})).await;
    let after = app
        .get_json("/v1beta1/admin/event-types", StatusCode::OK)
        .await;
    assert_eq!(first_seen(&after, "custom.first.thing"), first);
    let second = first_seen(&after, "custom.second.thing");
    assert!(second.as_str() > first.as_str(), "{first} then {second}");
}

#[tokio::test]
async fn test_events_go_to_one_endpoint_and_the_catalog_lists_actions() {
    let app = delivery_app().await;
    let a = TestReceiver::ok().await;
    let b = TestReceiver::ok().await;
    let wa = create_webhook(&app, json!({"url": a.url("/a")})).await;
    create_webhook(&app, json!({"url": b.url("/b")})).await;
    let id = wa["id"].as_str().expect("id");
    let res = app
        .post(&format!("/v1beta1/admin/webhooks/{id}/test"), &json!({}))
        .await;
    let sent = assert_json(res, StatusCode::ACCEPTED).await;
    assert_eq!(sent["deliveries"], 1);
    let (_, req) = a.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let body: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(body["action"], "webhook.test");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.requests().is_empty());

    publish(&app, json!({"action": "custom.thing.happened", "data": {}})).await;
    let types = app
        .get_json("/v1beta1/admin/event-types", StatusCode::OK)
        .await["event_types"]
        .clone();
    let actions: Vec<&str> = types
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["action"].as_str())
        .collect();
    for want in [
        "app.user.created",
        "app.billing.entitlement.checked",
        "front.inbound_received",
        "front.tag_removed",
        "system.job.dead",
        "custom.thing.happened",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let ev = app
        .get_json(
            &format!("/v1beta1/admin/events/{}", sent["id"].as_str().expect("id")),
            StatusCode::OK,
        )
        .await["event"]
        .clone();
    assert_eq!(ev["payload"]["action"], "webhook.test");
    assert_eq!(ev["deliveries"].as_array().expect("list").len(), 1);
    assert_error(
        app.get("/v1beta1/admin/events/evt_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_front_event_is_published_with_the_full_message() {
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.front.webhook_secret = Some(Secret::new(crate::front::SECRET));
    })
    .await;
    let rx = TestReceiver::ok().await;
    create_webhook(
        &app,
        json!({"url": rx.url("/front"), "subscribed_events": ["front.*"]}),
    )
    .await;
    let res = crate::front::post_front(
        &app.client,
        &app.address,
        &crate::front::full_inbound("evt_e2e", "msg_e2e"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let body: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(body["action"], "front.inbound_received");
    assert_eq!(body["data"]["source"], "front");
    assert_eq!(body["data"]["org_id"], "cmp_acme");
    assert_eq!(body["data"]["actor"]["email"], "jane@example.com");
    assert_eq!(
        body["data"]["metadata"]["message"]["body"],
        "<p>Hi, I would like a refund for order #1234.</p>"
    );
    assert_eq!(
        body["data"]["metadata"]["event"]["emitted_at"],
        1_694_046_470.93
    );
    let inbound =
        app.get_json("/v1beta1/admin/inbound", StatusCode::OK).await["inbound"][0].clone();
    let detail = app
        .get_json(
            &format!(
                "/v1beta1/admin/inbound/{}",
                inbound["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await["inbound"]
        .clone();
    assert_eq!(detail["published_event_id"], body["id"]);
}
