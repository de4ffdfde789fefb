//! Inbound sources end to end (SPEC §10): every preset signed the way its provider signs (our own
//! HMAC / Ed25519 code, checked first against the providers' published vectors), received at
//! `POST /webhooks/in/<name>`, processed by `source.process` and delivered to a test receiver as
//! `<name>.<type>`; the refusals through HTTP, the handshakes, duplicates, rotation and overrides,
//! the rejected log and its bound under a flood, replay, and the reserved namespaces.
//!
//! `/metrics` is one recorder for the whole test process: the flood test checks the growth of its
//! counter by at least its 500 (the per-app sources view gives the exact count).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use hookrelay::config::SourceConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Published vectors (SPEC §10)
// ---------------------------------------------------------------------------------------------

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &str = "Hello, World!";
const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: &str = "1531420618";
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const SHOPIFY_SECRET: &str = "test_secret_key";
const SHOPIFY_BODY: &str = r#"{"foo": "bar"}"#;
const SHOPIFY_SIG: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";

const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_T: i64 = 1_700_000_000;
const STRIPE_BODY: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
const STRIPE_V1: &str = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";

const PADDLE_SECRET: &str = "VALID_SECRET";
const PADDLE_TS: i64 = 1_698_796_800;
const PADDLE_BODY: &str = r#"{"data": "value"}"#;
const PADDLE_H1: &str = "28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261";

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &str = r#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// ---------------------------------------------------------------------------------------------
// Signing, independently of hookrelay's code
// ---------------------------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).expect("key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

fn now_s() -> i64 {
    hookrelay::clock::now_ms() / 1000
}

/// `Stripe-Signature: t=<t>,v1=<hex HMAC-SHA256(secret as UTF-8, "{t}.{body}")>`.
fn stripe_sig(secret: &str, t: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[format!("{t}.").as_bytes(), body]);
    format!("t={t},v1={}", hex::encode(mac))
}

/// `v1,<base64 HMAC-SHA256(base64 key after whsec_, "{id}.{ts}.{body}")>`.
fn standard_sig(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .expect("base64 key");
    let mac = hmac_sha256(&key, &[format!("{id}.{ts}.").as_bytes(), body]);
    format!("v1,{}", b64(&mac))
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
    )
}

fn shopify_sig(secret: &str, body: &[u8]) -> String {
    b64(&hmac_sha256(secret.as_bytes(), &[body]))
}

fn slack_sig(secret: &str, ts: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[format!("v0:{ts}:").as_bytes(), body]);
    format!("v0={}", hex::encode(mac))
}

fn linear_sig(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
}

fn paddle_sig(secret: &str, ts: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[format!("{ts}:").as_bytes(), body]);
    format!("ts={ts};h1={}", hex::encode(mac))
}

fn zendesk_sig(secret: &str, ts: &str, body: &[u8]) -> String {
    b64(&hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), body]))
}

fn intercom_sig(secret: &str, body: &[u8]) -> String {
    format!(
        "sha1={}",
        hex::encode(hmac_sha1(secret.as_bytes(), &[body]))
    )
}

fn discord_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn discord_public_key() -> String {
    hex::encode(discord_key().verifying_key().to_bytes())
}

/// `X-Signature-Ed25519`: hex Ed25519 over `"{timestamp}{body}"`.
fn discord_sig(ts: &str, body: &[u8]) -> String {
    let mut message = ts.as_bytes().to_vec();
    message.extend_from_slice(body);
    hex::encode(discord_key().sign(&message).to_bytes())
}

/// An RFC 3339 time `skew_s` seconds from now, to the second (`2026-12-02T03:00:00Z`).
fn rfc3339_s(skew_s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(skew_s))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn our_signers_reproduce_the_published_vectors() {
    assert_eq!(
        github_sig(GITHUB_SECRET, GITHUB_BODY.as_bytes()),
        GITHUB_SIG
    );
    assert_eq!(
        slack_sig(SLACK_SECRET, SLACK_TS, SLACK_BODY.as_bytes()),
        SLACK_SIG
    );
    assert_eq!(
        shopify_sig(SHOPIFY_SECRET, SHOPIFY_BODY.as_bytes()),
        SHOPIFY_SIG
    );
    assert_eq!(
        stripe_sig(STRIPE_SECRET, STRIPE_T, STRIPE_BODY.as_bytes()),
        format!("t={STRIPE_T},v1={STRIPE_V1}")
    );
    assert_eq!(
        paddle_sig(PADDLE_SECRET, PADDLE_TS, PADDLE_BODY.as_bytes()),
        format!("ts={PADDLE_TS};h1={PADDLE_H1}")
    );
    assert_eq!(
        standard_sig(SW_SECRET, SW_ID, SW_TS, SW_BODY.as_bytes()),
        SW_SIG
    );
}

// ---------------------------------------------------------------------------------------------
// The app, requests and events
// ---------------------------------------------------------------------------------------------

fn sources(toml: &str) -> BTreeMap<String, SourceConfig> {
    hookrelay::config::from_toml_str(toml)
        .unwrap_or_else(|e| panic!("invalid sources config ({e}):\n{toml}"))
        .sources
}

/// An app that delivers to loopback with the sources of `toml`.
async fn app_with_sources(toml: &str) -> TestApp {
    let s = sources(toml);
    spawn_app_with(move |c| {
        local_delivery(c);
        c.sources = s;
    })
    .await
}

/// Posts `body` to source `name` with `headers`.
async fn post_in(
    app: &TestApp,
    name: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(&format!("/webhooks/in/{name}")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body.into()).send().await.expect("request")
}

async fn accepted(res: reqwest::Response) {
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true})
    );
}

async fn duplicate(res: reqwest::Response) {
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true, "duplicate": true})
    );
}

/// Posts a JSON `body` to Stripe-scheme source `name` with `Stripe-Signature: sig`.
async fn post_stripe(
    app: &TestApp,
    name: &str,
    sig: &str,
    extra: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> reqwest::Response {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("stripe-signature", sig),
    ];
    headers.extend_from_slice(extra);
    post_in(app, name, &headers, body).await
}

/// Posts a JSON `body` to Discord source `name`, signed with [`discord_key`] at `ts`.
async fn post_discord(app: &TestApp, name: &str, ts: &str, body: &str) -> reqwest::Response {
    let sig = discord_sig(ts, body.as_bytes());
    post_in(
        app,
        name,
        &[
            ("content-type", "application/json"),
            ("x-signature-timestamp", ts),
            ("x-signature-ed25519", &sig),
        ],
        body,
    )
    .await
}

/// A receiver subscribed to `patterns`.
async fn subscribe(app: &TestApp, patterns: &[&str]) -> TestReceiver {
    let rx = TestReceiver::ok().await;
    create_webhook(
        app,
        json!({"url": rx.url("/in"), "subscribed_events": patterns}),
    )
    .await;
    rx
}

/// The first `n` events the receiver got, as JSON.
async fn events_at(rx: &TestReceiver, n: usize) -> Vec<Value> {
    rx.wait_for(n, WAIT)
        .await
        .iter()
        .map(|(_, r)| serde_json::from_slice(&r.body).expect("a JSON event"))
        .collect()
}

fn by_action<'a>(events: &'a [Value], action: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no `{action}` among {events:#?}"))
}

/// What a published source event must say.
struct Expect<'a> {
    name: &'a str,
    preset: &'a str,
    action: &'a str,
    id: &'a str,
    raw_type: &'a str,
    org_id: Option<&'a str>,
    /// Headers that must not be in `metadata.headers` (the signature's).
    never: &'a [&'a str],
}

/// Checks the event's envelope against `x` (SPEC §10) and returns `data.metadata`.
fn check_event(e: &Value, x: &Expect<'_>) -> Value {
    assert_eq!(e["action"], x.action, "{e:#}");
    assert!(
        e["id"].as_str().is_some_and(|i| i.starts_with("evt_")),
        "{e:#}"
    );
    let d = &e["data"];
    assert_eq!(
        d["actor"],
        json!({"id": x.name, "type": "source", "name": x.preset}),
        "{e:#}"
    );
    assert_eq!(
        d["target"],
        json!({"id": x.id, "type": "event", "name": x.raw_type}),
        "{e:#}"
    );
    assert_eq!(d["source"], x.name, "{e:#}");
    assert_eq!(d["org_id"], json!(x.org_id), "{e:#}");
    let m = &d["metadata"];
    assert!(
        m["inbound_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("rcv_")),
        "{e:#}"
    );
    assert!(m["received_at"].is_string(), "{e:#}");
    let headers = m["headers"].as_object().expect("metadata.headers object");
    for h in x.never {
        assert!(
            !headers.contains_key(*h),
            "metadata.headers holds the signature header {h}: {e:#}"
        );
    }
    for k in headers.keys() {
        assert_eq!(k, &k.to_ascii_lowercase(), "header names lowercased: {e:#}");
    }
    m.clone()
}

async fn inbound_of(app: &TestApp, source: &str) -> Vec<Value> {
    app.get_json(
        &format!("/v1beta1/admin/inbound?source={source}&limit=500"),
        StatusCode::OK,
    )
    .await["inbound"]
        .as_array()
        .expect("inbound list")
        .clone()
}

async fn rejected(app: &TestApp, query: &str) -> Vec<Value> {
    app.get_json(
        &format!("/v1beta1/admin/rejected?limit=500&{query}"),
        StatusCode::OK,
    )
    .await["rejected"]
        .as_array()
        .expect("rejected list")
        .clone()
}

/// Waits until the rejected list for `query` holds `n` rows.
async fn wait_rejected(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    wait_until(WAIT, &format!("{n} rejected rows for {query}"), || async {
        let rows = rejected(app, query).await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

async fn source_view(app: &TestApp, name: &str) -> Value {
    let all = app.get_json("/v1beta1/admin/sources", StatusCode::OK).await;
    all["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {all:#}"))
        .clone()
}

/// The value of `hookrelay_ingress_total{source, outcome}` (0 when not yet counted).
async fn ingress_metric(app: &TestApp, source: &str, outcome: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let (s, o) = (
        format!("source=\"{source}\""),
        format!("outcome=\"{outcome}\""),
    );
    text.lines()
        .filter(|l| l.starts_with("hookrelay_ingress_total{") && l.contains(&s) && l.contains(&o))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// 1. Every preset end to end
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn standard_webhooks_with_webhook_and_svix_headers() {
    let app = app_with_sources(&format!(
        "[sources.recall]\npreset = \"standard_webhooks\"\nsecret = \"{SW_SECRET}\"\norg_id = \"org_acme\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["recall.*"]).await;
    let ts = now_s();
    let t = ts.to_string();
    let sig = standard_sig(SW_SECRET, SW_ID, ts, SW_BODY.as_bytes());
    accepted(
        post_in(
            &app,
            "recall",
            &[
                ("content-type", "application/json"),
                ("webhook-id", SW_ID),
                ("webhook-timestamp", &t),
                ("webhook-signature", &sig),
            ],
            SW_BODY,
        )
        .await,
    )
    .await;
    // Svix's names, several signatures of which one matches, big integers either way of ±2^53.
    let body = r#"{"type":"bot.status_change","data":{"bot_id":"b1","big":12345678901234567890,"neg":-12345678901234567890,"small":2432232314,"note":"id \"12345678901234567890\" 9007199254740993","float":12345678901234567890.5}}"#;
    let id = "msg_svix_2";
    let sig = format!(
        "v1,bm90IHRoaXMgb25l {} v2,bm90IHRoaXMgb25l",
        standard_sig(SW_SECRET, id, ts, body.as_bytes())
    );
    accepted(
        post_in(
            &app,
            "recall",
            &[
                ("content-type", "application/json"),
                ("svix-id", id),
                ("svix-timestamp", &t),
                ("svix-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;

    let events = events_at(&rx, 2).await;
    let never = ["webhook-signature", "svix-signature"];
    let m = check_event(
        by_action(&events, "recall.received"),
        &Expect {
            name: "recall",
            preset: "standard_webhooks",
            action: "recall.received",
            id: SW_ID,
            raw_type: "",
            org_id: Some("org_acme"),
            never: &never,
        },
    );
    assert_eq!(m["body"], json!({"test": 2_432_232_314_u64}));
    assert_eq!(m["headers"]["webhook-id"], SW_ID);
    assert_eq!(m["headers"]["webhook-timestamp"], t);
    let m = check_event(
        by_action(&events, "recall.bot.status_change"),
        &Expect {
            name: "recall",
            preset: "standard_webhooks",
            action: "recall.bot.status_change",
            id,
            raw_type: "bot.status_change",
            org_id: Some("org_acme"),
            never: &never,
        },
    );
    assert_eq!(m["body"]["data"]["big"], "12345678901234567890");
    assert_eq!(m["body"]["data"]["neg"], "-12345678901234567890");
    assert_eq!(m["body"]["data"]["small"], 2_432_232_314_u64);
    assert_eq!(
        m["body"]["data"]["note"], "id \"12345678901234567890\" 9007199254740993",
        "digits inside a string stay as they are"
    );
    // A fraction is a number, not an integer to keep (written the JavaScript way).
    assert!(
        m["body"]["data"]["float"]
            .as_f64()
            .is_some_and(|f| (f - 1.234_567_890_123_456_8e19).abs() < 1e4),
        "{m}"
    );
    assert_eq!(m["headers"]["svix-id"], id);
}

#[tokio::test]
async fn github_pull_request_opened_and_the_published_vector() {
    let app = app_with_sources(&format!(
        "[sources.github]\npreset = \"github\"\nsecret = \"{GITHUB_SECRET}\"\norg_id = \"org_gh\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["github.*"]).await;
    // The published vector as is: no timestamp in GitHub's scheme.
    accepted(
        post_in(
            &app,
            "github",
            &[
                ("content-type", "text/plain"),
                ("x-github-event", "ping"),
                ("x-github-delivery", "d-vector"),
                ("x-hub-signature-256", GITHUB_SIG),
            ],
            GITHUB_BODY,
        )
        .await,
    )
    .await;
    let body =
        r#"{"action":"opened","number":7,"pull_request":{"id":9007199254740993,"title":"Fix"}}"#;
    let sig = github_sig(GITHUB_SECRET, body.as_bytes());
    accepted(
        post_in(
            &app,
            "github",
            &[
                ("content-type", "application/json"),
                ("user-agent", "GitHub-Hookshot/abc123"),
                ("x-github-event", "pull_request"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-github-hook-id", "42"),
                ("x-hub-signature-256", &sig),
            ],
            body,
        )
        .await,
    )
    .await;

    let events = events_at(&rx, 2).await;
    let never = ["x-hub-signature-256", "x-hub-signature"];
    let m = check_event(
        by_action(&events, "github.ping"),
        &Expect {
            name: "github",
            preset: "github",
            action: "github.ping",
            id: "d-vector",
            raw_type: "ping",
            org_id: Some("org_gh"),
            never: &never,
        },
    );
    assert_eq!(m["body"], GITHUB_BODY, "a body that is not JSON is text");
    let m = check_event(
        by_action(&events, "github.pull_request.opened"),
        &Expect {
            name: "github",
            preset: "github",
            action: "github.pull_request.opened",
            id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            raw_type: "pull_request.opened",
            org_id: Some("org_gh"),
            never: &never,
        },
    );
    assert_eq!(m["body"]["pull_request"]["id"], "9007199254740993");
    assert_eq!(m["body"]["number"], 7);
    assert_eq!(m["headers"]["x-github-event"], "pull_request");
    assert_eq!(m["headers"]["x-github-hook-id"], "42");
    assert_eq!(m["headers"]["user-agent"], "GitHub-Hookshot/abc123");
}

#[tokio::test]
async fn stripe_vector_body_and_a_typed_event() {
    let app = app_with_sources(&format!(
        "[sources.stripe]\npreset = \"stripe\"\nsecret = \"{STRIPE_SECRET}\"\norg_id = \"org_st\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["stripe.*"]).await;
    let sig = stripe_sig(STRIPE_SECRET, now_s(), STRIPE_BODY.as_bytes());
    accepted(
        post_in(
            &app,
            "stripe",
            &[
                ("content-type", "application/json"),
                ("stripe-signature", &sig),
            ],
            STRIPE_BODY,
        )
        .await,
    )
    .await;
    let body = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.payment_succeeded","data":{"object":{"amount_paid":2000,"big":-9007199254740993}}}"#;
    let sig = stripe_sig(STRIPE_SECRET, now_s(), body.as_bytes());
    accepted(
        post_in(
            &app,
            "stripe",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("stripe-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;

    let events = events_at(&rx, 2).await;
    let never = ["stripe-signature"];
    let m = check_event(
        by_action(&events, "stripe.received"),
        &Expect {
            name: "stripe",
            preset: "stripe",
            action: "stripe.received",
            id: "evt_test_webhook",
            raw_type: "",
            org_id: Some("org_st"),
            never: &never,
        },
    );
    assert_eq!(
        m["body"],
        json!({"id": "evt_test_webhook", "object": "event"})
    );
    let m = check_event(
        by_action(&events, "stripe.invoice.payment_succeeded"),
        &Expect {
            name: "stripe",
            preset: "stripe",
            action: "stripe.invoice.payment_succeeded",
            id: "evt_1NG8Du2eZvKYlo2CUI79vXWy",
            raw_type: "invoice.payment_succeeded",
            org_id: Some("org_st"),
            never: &never,
        },
    );
    assert_eq!(m["body"]["data"]["object"]["amount_paid"], 2000);
    assert_eq!(m["body"]["data"]["object"]["big"], "-9007199254740993");
}

#[tokio::test]
async fn shopify_orders_create_for_a_source_named_shop() {
    let app = app_with_sources(&format!(
        "[sources.shop]\npreset = \"shopify\"\nsecret = \"{SHOPIFY_SECRET}\"\norg_id = \"org_shop\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["shop.*"]).await;
    accepted(
        post_in(
            &app,
            "shop",
            &[
                ("content-type", "application/json"),
                ("x-shopify-topic", "orders/create"),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("x-shopify-shop-domain", "acme.myshopify.com"),
                ("x-shopify-api-version", "2024-07"),
                ("x-shopify-hmac-sha256", SHOPIFY_SIG),
            ],
            SHOPIFY_BODY,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 1).await;
    let m = check_event(
        &events[0],
        &Expect {
            name: "shop",
            preset: "shopify",
            action: "shop.orders_create",
            id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            raw_type: "orders/create",
            org_id: Some("org_shop"),
            never: &["x-shopify-hmac-sha256"],
        },
    );
    assert_eq!(m["body"], json!({"foo": "bar"}));
    assert_eq!(m["headers"]["x-shopify-topic"], "orders/create");
    assert_eq!(m["headers"]["x-shopify-shop-domain"], "acme.myshopify.com");
    assert_eq!(m["headers"]["x-shopify-api-version"], "2024-07");
}

#[tokio::test]
async fn slack_form_body_and_event_callback() {
    let app = app_with_sources(&format!(
        "[sources.slack]\npreset = \"slack\"\nsecret = \"{SLACK_SECRET}\"\norg_id = \"org_sl\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["slack.*"]).await;
    let ts = now_s().to_string();
    let sig = slack_sig(SLACK_SECRET, &ts, SLACK_BODY.as_bytes());
    accepted(
        post_in(
            &app,
            "slack",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
            ],
            SLACK_BODY,
        )
        .await,
    )
    .await;
    let body = r#"{"token":"z","team_id":"T1","type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi","ts":"1515449522.000016"}}"#;
    let sig = slack_sig(SLACK_SECRET, &ts, body.as_bytes());
    accepted(
        post_in(
            &app,
            "slack",
            &[
                ("content-type", "application/json"),
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
                ("x-slack-retry-num", "1"),
            ],
            body,
        )
        .await,
    )
    .await;

    let events = events_at(&rx, 2).await;
    let never = ["x-slack-signature"];
    let key = sha256_key(SLACK_BODY.as_bytes());
    let m = check_event(
        by_action(&events, "slack.received"),
        &Expect {
            name: "slack",
            preset: "slack",
            action: "slack.received",
            id: &key,
            raw_type: "",
            org_id: Some("org_sl"),
            never: &never,
        },
    );
    let form = m["body"].as_object().expect("a form body is an object");
    assert_eq!(form["command"], "/webhook-collect");
    assert_eq!(form["team_id"], "T1DC2JH3J");
    assert_eq!(form["text"], "");
    assert_eq!(
        form["response_url"],
        "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"
    );
    assert_eq!(form.len(), 11, "{form:?}");
    assert_eq!(m["headers"]["x-slack-request-timestamp"], ts);
    let m = check_event(
        by_action(&events, "slack.app_mention"),
        &Expect {
            name: "slack",
            preset: "slack",
            action: "slack.app_mention",
            id: "Ev08MFMKH6",
            raw_type: "app_mention",
            org_id: Some("org_sl"),
            never: &never,
        },
    );
    assert_eq!(m["body"]["event"]["text"], "hi");
    assert_eq!(m["headers"]["x-slack-retry-num"], "1");
}

#[tokio::test]
async fn linear_issue_create() {
    let app = app_with_sources(
        "[sources.linear]\npreset = \"linear\"\nsecret = \"lin_wh_secret\"\norg_id = \"org_lin\"\n",
    )
    .await;
    let rx = subscribe(&app, &["linear.*"]).await;
    let body = format!(
        r#"{{"action":"create","type":"Issue","data":{{"id":"iss_1","title":"Bug"}},"url":"https://linear.app/x","webhookTimestamp":{},"webhookId":"wh_1"}}"#,
        hookrelay::clock::now_ms()
    );
    let sig = linear_sig("lin_wh_secret", body.as_bytes());
    accepted(
        post_in(
            &app,
            "linear",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("linear-delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72"),
                ("linear-event", "Issue"),
                ("linear-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 1).await;
    let m = check_event(
        &events[0],
        &Expect {
            name: "linear",
            preset: "linear",
            action: "linear.issue.create",
            id: "234d1a4e-b617-4388-90fe-adc3633d6b72",
            raw_type: "Issue.create",
            org_id: Some("org_lin"),
            never: &["linear-signature"],
        },
    );
    assert_eq!(m["body"]["data"]["id"], "iss_1");
    assert_eq!(m["headers"]["linear-event"], "Issue");
    assert_eq!(
        m["headers"]["linear-delivery"],
        "234d1a4e-b617-4388-90fe-adc3633d6b72"
    );
}

#[tokio::test]
async fn paddle_vector_body_and_a_typed_event() {
    let app = app_with_sources(&format!(
        "[sources.paddle]\npreset = \"paddle\"\nsecret = \"{PADDLE_SECRET}\"\norg_id = \"org_pd\"\n"
    ))
    .await;
    let rx = subscribe(&app, &["paddle.*"]).await;
    let sig = paddle_sig(PADDLE_SECRET, now_s(), PADDLE_BODY.as_bytes());
    accepted(
        post_in(
            &app,
            "paddle",
            &[
                ("content-type", "application/json"),
                ("paddle-signature", &sig),
            ],
            PADDLE_BODY,
        )
        .await,
    )
    .await;
    let body = r#"{"event_id":"evt_01h8441jx8x9m9c5z3w0hbrnbv","event_type":"transaction.completed","occurred_at":"2023-08-21T11:57:47.390028Z","data":{"id":"txn_01"}}"#;
    let sig = paddle_sig(PADDLE_SECRET, now_s(), body.as_bytes());
    accepted(
        post_in(
            &app,
            "paddle",
            &[
                ("content-type", "application/json"),
                ("paddle-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 2).await;
    let never = ["paddle-signature"];
    let key = sha256_key(PADDLE_BODY.as_bytes());
    let m = check_event(
        by_action(&events, "paddle.received"),
        &Expect {
            name: "paddle",
            preset: "paddle",
            action: "paddle.received",
            id: &key,
            raw_type: "",
            org_id: Some("org_pd"),
            never: &never,
        },
    );
    assert_eq!(m["body"], json!({"data": "value"}));
    let m = check_event(
        by_action(&events, "paddle.transaction.completed"),
        &Expect {
            name: "paddle",
            preset: "paddle",
            action: "paddle.transaction.completed",
            id: "evt_01h8441jx8x9m9c5z3w0hbrnbv",
            raw_type: "transaction.completed",
            org_id: Some("org_pd"),
            never: &never,
        },
    );
    assert_eq!(m["body"]["data"]["id"], "txn_01");
}

#[tokio::test]
async fn zendesk_with_an_rfc3339_timestamp() {
    let app = app_with_sources(
        "[sources.zendesk]\npreset = \"zendesk\"\nsecret = \"dGhpc19zZWNyZXQ\"\norg_id = \"org_zd\"\n",
    )
    .await;
    let rx = subscribe(&app, &["zendesk.*"]).await;
    let ts = rfc3339_s(0);
    let body = r#"{"type":"zen:event-type:ticket.created","account_id":10,"id":"cbe4028c","detail":{"id":"35436","subject":"Help"}}"#;
    let sig = zendesk_sig("dGhpc19zZWNyZXQ", &ts, body.as_bytes());
    accepted(
        post_in(
            &app,
            "zendesk",
            &[
                ("content-type", "application/json"),
                ("x-zendesk-webhook-id", "01GTRD8D"),
                ("x-zendesk-webhook-invocation-id", "8350205582"),
                ("x-zendesk-webhook-signature-timestamp", &ts),
                ("x-zendesk-webhook-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 1).await;
    let m = check_event(
        &events[0],
        &Expect {
            name: "zendesk",
            preset: "zendesk",
            action: "zendesk.zen_event_type_ticket.created",
            id: "8350205582",
            raw_type: "zen:event-type:ticket.created",
            org_id: Some("org_zd"),
            never: &["x-zendesk-webhook-signature"],
        },
    );
    assert_eq!(m["body"]["detail"]["id"], "35436");
    assert_eq!(m["headers"]["x-zendesk-webhook-id"], "01GTRD8D");
    assert_eq!(m["headers"]["x-zendesk-webhook-signature-timestamp"], ts);
}

#[tokio::test]
async fn intercom_with_sha1() {
    let app = app_with_sources(
        "[sources.intercom]\npreset = \"intercom\"\nsecret = \"ic_client_secret\"\norg_id = \"org_ic\"\n",
    )
    .await;
    let rx = subscribe(&app, &["intercom.*"]).await;
    let body = r#"{"type":"notification_event","topic":"conversation.user.created","id":"notif_ccd8a4d0","app_id":"a1","data":{"item":{"type":"conversation","id":"147"}}}"#;
    let sig = intercom_sig("ic_client_secret", body.as_bytes());
    accepted(
        post_in(
            &app,
            "intercom",
            &[
                ("content-type", "application/json"),
                ("x-hub-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 1).await;
    let m = check_event(
        &events[0],
        &Expect {
            name: "intercom",
            preset: "intercom",
            action: "intercom.conversation.user.created",
            id: "notif_ccd8a4d0",
            raw_type: "conversation.user.created",
            org_id: Some("org_ic"),
            never: &["x-hub-signature"],
        },
    );
    assert_eq!(m["body"]["data"]["item"]["id"], "147");
}

#[tokio::test]
async fn discord_ed25519_webhook_event() {
    let app = app_with_sources(&format!(
        "[sources.discord]\npreset = \"discord\"\npublic_key = \"{}\"\norg_id = \"org_dc\"\n",
        discord_public_key()
    ))
    .await;
    let rx = subscribe(&app, &["discord.*"]).await;
    let body = r#"{"version":1,"application_id":"1234560123453231555","type":1,"event":{"type":"APPLICATION_AUTHORIZED","timestamp":"2024-10-18T14:42:53.064834","data":{"user":{"id":"9007199254740993"},"guild_id":9007199254740993}}}"#;
    let ts = now_s().to_string();
    let sig = discord_sig(&ts, body.as_bytes());
    accepted(
        post_in(
            &app,
            "discord",
            &[
                ("content-type", "application/json"),
                ("x-signature-timestamp", &ts),
                ("x-signature-ed25519", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 1).await;
    let key = sha256_key(body.as_bytes());
    let m = check_event(
        &events[0],
        &Expect {
            name: "discord",
            preset: "discord",
            action: "discord.application_authorized",
            id: &key,
            raw_type: "APPLICATION_AUTHORIZED",
            org_id: Some("org_dc"),
            never: &["x-signature-ed25519"],
        },
    );
    assert_eq!(m["body"]["event"]["data"]["guild_id"], "9007199254740993");
    assert_eq!(m["body"]["event"]["data"]["user"]["id"], "9007199254740993");
    assert_eq!(m["headers"]["x-signature-timestamp"], ts);
}

#[tokio::test]
async fn generic_hmac_with_a_template_and_a_timestamp_header() {
    let app = app_with_sources(
        r#"[sources.acme]
preset = "hmac"
secret = "acme-secret"
signature_header = "X-Acme-Signature"
algorithm = "sha512"
encoding = "base64"
signature_prefix = "v1="
signed = "{timestamp}.{header:X-Acme-Id}.{body}"
timestamp_header = "X-Acme-Timestamp"
timestamp_unit = "ms"
"#,
    )
    .await;
    let rx = subscribe(&app, &["acme.*"]).await;
    let body = r#"{"id":"acme_evt_1","type":"Order Shipped","order":{"id":12}}"#;
    let ts = hookrelay::clock::now_ms().to_string();
    let mac = hmac_sha512(
        b"acme-secret",
        &[format!("{ts}.req-77.").as_bytes(), body.as_bytes()],
    );
    let sig = format!("v1={}", b64(&mac));
    accepted(
        post_in(
            &app,
            "acme",
            &[
                ("content-type", "application/json"),
                ("x-acme-id", "req-77"),
                ("x-acme-timestamp", &ts),
                ("x-acme-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    // The template's header is signed: another X-Acme-Id with the same signature is refused.
    assert_error(
        post_in(
            &app,
            "acme",
            &[
                ("content-type", "application/json"),
                ("x-acme-id", "req-78"),
                ("x-acme-timestamp", &ts),
                ("x-acme-signature", &sig),
            ],
            body,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
    )
    .await;
    let events = events_at(&rx, 1).await;
    let m = check_event(
        &events[0],
        &Expect {
            name: "acme",
            preset: "hmac",
            action: "acme.order_shipped",
            id: "acme_evt_1",
            raw_type: "Order Shipped",
            org_id: None,
            never: &["x-acme-signature"],
        },
    );
    assert_eq!(m["body"]["order"]["id"], 12);
    assert_eq!(m["headers"]["x-acme-timestamp"], ts);
}

#[tokio::test]
async fn token_sources_in_authorization_or_their_own_header() {
    let app = app_with_sources(
        "[sources.hooks]\npreset = \"token\"\nsecret = \"tok-secret-1\"\norg_id = \"org_tk\"\n\
         [sources.hooks2]\npreset = \"token\"\nsecret = \"tok-secret-2\"\nheader = \"X-Webhook-Token\"\n",
    )
    .await;
    let rx = subscribe(&app, &["hooks.*", "hooks2.*"]).await;
    let body = r#"{"id":"tk_1","type":"build.finished"}"#;
    accepted(
        post_in(
            &app,
            "hooks",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer tok-secret-1"),
            ],
            body,
        )
        .await,
    )
    .await;
    let body2 = r#"{"id":"tk_2","type":"deploy"}"#;
    accepted(
        post_in(
            &app,
            "hooks2",
            &[
                ("content-type", "application/json"),
                ("x-webhook-token", "tok-secret-2"),
            ],
            body2,
        )
        .await,
    )
    .await;
    let events = events_at(&rx, 2).await;
    let m = check_event(
        by_action(&events, "hooks.build.finished"),
        &Expect {
            name: "hooks",
            preset: "token",
            action: "hooks.build.finished",
            id: "tk_1",
            raw_type: "build.finished",
            org_id: Some("org_tk"),
            never: &["authorization"],
        },
    );
    assert_eq!(m["body"]["type"], "build.finished");
    check_event(
        by_action(&events, "hooks2.deploy"),
        &Expect {
            name: "hooks2",
            preset: "token",
            action: "hooks2.deploy",
            id: "tk_2",
            raw_type: "deploy",
            org_id: None,
            never: &["x-webhook-token", "authorization"],
        },
    );
    for e in &events {
        let text = e.to_string();
        assert!(
            !text.contains("tok-secret-1") && !text.contains("tok-secret-2"),
            "a token in the event: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Refusals through HTTP
// ---------------------------------------------------------------------------------------------

/// Sources that refuse, and a small body limit.
async fn refusing_app() -> TestApp {
    let toml = format!(
        "[sources.payments]\npreset = \"stripe\"\nsecret = \"whsec_neg\"\n\
         [sources.gh]\npreset = \"github\"\nsecret = \"gh-secret\"\n\
         [sources.sl]\npreset = \"slack\"\nsecret = \"sl-secret\"\n\
         [sources.sw]\npreset = \"standard_webhooks\"\nsecret = \"{SW_SECRET}\"\n\
         [sources.lin]\npreset = \"linear\"\nsecret = \"lin-secret\"\n\
         [sources.pad]\npreset = \"paddle\"\nsecret = \"pad-secret\"\n\
         [sources.zd]\npreset = \"zendesk\"\nsecret = \"zd-secret\"\n\
         [sources.ic]\npreset = \"intercom\"\nsecret = \"ic-secret\"\n\
         [sources.shop]\npreset = \"shopify\"\nsecret = \"shop-secret\"\n\
         [sources.dc]\npreset = \"discord\"\npublic_key = \"{}\"\n\
         [sources.tok]\npreset = \"token\"\nsecret = \"tok-secret\"\n\
         [sources.off]\npreset = \"stripe\"\nsecret = \"whsec_off\"\nenabled = false\n",
        discord_public_key()
    );
    let s = sources(&toml);
    spawn_app_with(move |c| {
        c.sources = s;
        c.server.max_body_bytes = 4096;
    })
    .await
}

async fn refused(res: reqwest::Response, status: StatusCode, code: &str, what: &str) {
    let got = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "{what}: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    assert_eq!(v["error"]["code"], code, "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message: {v}"
    );
}

#[tokio::test]
async fn missing_empty_truncated_and_wrong_signatures_are_401() {
    let app = refusing_app().await;
    let json_ct = ("content-type", "application/json");
    let body = r#"{"id":"evt_neg","type":"charge.succeeded"}"#;
    let good = stripe_sig("whsec_neg", now_s(), body.as_bytes());
    // The good one minus its last hex digit (odd length) and minus its last 8 (short MAC).
    let odd = &good[..good.len() - 1];
    let short = &good[..good.len() - 8];
    let wrong = stripe_sig("whsec_other", now_s(), body.as_bytes());
    let other_body = stripe_sig("whsec_neg", now_s(), b"{}");
    let no_t = good.split_once(',').expect("t,v1").1.to_string();
    for (what, sig) in [
        ("stripe: missing", None),
        ("stripe: empty", Some("")),
        ("stripe: odd truncated", Some(odd)),
        ("stripe: short truncated", Some(short)),
        ("stripe: wrong secret", Some(wrong.as_str())),
        ("stripe: other body", Some(other_body.as_str())),
        ("stripe: no t=", Some(no_t.as_str())),
        ("stripe: garbage", Some("t=abc,v1=zz")),
    ] {
        let mut headers = vec![json_ct];
        if let Some(s) = sig {
            headers.push(("stripe-signature", s));
        }
        refused(
            post_in(&app, "payments", &headers, body).await,
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            what,
        )
        .await;
    }

    let gh_body = br#"{"action":"opened"}"#;
    let gh_good = github_sig("gh-secret", gh_body);
    let gh_wrong_prefix = gh_good.replacen("sha256=", "sha1=", 1);
    let gh_wrong = github_sig("gh-other", gh_body);
    for (what, sig) in [
        ("github: missing", None),
        ("github: empty", Some("")),
        ("github: prefix only", Some("sha256=")),
        ("github: truncated", Some(&gh_good[..40])),
        ("github: wrong prefix", Some(gh_wrong_prefix.as_str())),
        ("github: wrong secret", Some(gh_wrong.as_str())),
    ] {
        let mut headers = vec![json_ct, ("x-github-event", "pull_request")];
        if let Some(s) = sig {
            headers.push(("x-hub-signature-256", s));
        }
        refused(
            post_in(&app, "gh", &headers, &gh_body[..]).await,
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            what,
        )
        .await;
    }

    // Standard Webhooks: a wrong version, a wrong key, Stripe's way of using the key.
    let ts = now_s();
    let t = ts.to_string();
    let sw_good = standard_sig(SW_SECRET, "msg_1", ts, body.as_bytes());
    let v2 = sw_good.replacen("v1,", "v2,", 1);
    let sw_wrong = standard_sig(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "msg_1",
        ts,
        body.as_bytes(),
    );
    let as_string = format!(
        "v1,{}",
        b64(&hmac_sha256(
            SW_SECRET.as_bytes(),
            &[format!("msg_1.{ts}.").as_bytes(), body.as_bytes()]
        ))
    );
    for (what, sig) in [
        ("standard: missing", None),
        ("standard: empty", Some("")),
        ("standard: v2", Some(v2.as_str())),
        ("standard: wrong key", Some(sw_wrong.as_str())),
        ("standard: key as a string", Some(as_string.as_str())),
    ] {
        let mut headers = vec![
            json_ct,
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", t.as_str()),
        ];
        if let Some(s) = sig {
            headers.push(("webhook-signature", s));
        }
        refused(
            post_in(&app, "sw", &headers, body).await,
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            what,
        )
        .await;
    }
    // The id is signed: the good signature with another id does not verify.
    refused(
        post_in(
            &app,
            "sw",
            &[
                json_ct,
                ("webhook-id", "msg_2"),
                ("webhook-timestamp", &t),
                ("webhook-signature", &sw_good),
            ],
            body,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "standard: another id",
    )
    .await;

    // Slack without its timestamp header; Shopify, Intercom, Paddle, Zendesk wrong.
    let sl = slack_sig("sl-secret", &t, body.as_bytes());
    refused(
        post_in(&app, "sl", &[json_ct, ("x-slack-signature", &sl)], body).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "slack: no timestamp header",
    )
    .await;
    let shop = shopify_sig("shop-other", body.as_bytes());
    refused(
        post_in(
            &app,
            "shop",
            &[
                json_ct,
                ("x-shopify-topic", "orders/create"),
                ("x-shopify-hmac-sha256", &shop),
            ],
            body,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "shopify: wrong secret",
    )
    .await;
    let ic_as_sha256 = format!(
        "sha1={}",
        hex::encode(hmac_sha256(b"ic-secret", &[body.as_bytes()]))
    );
    refused(
        post_in(
            &app,
            "ic",
            &[json_ct, ("x-hub-signature", &ic_as_sha256)],
            body,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "intercom: sha256 where sha1 is expected",
    )
    .await;
    let pad = paddle_sig("pad-other", ts, body.as_bytes());
    refused(
        post_in(&app, "pad", &[json_ct, ("paddle-signature", &pad)], body).await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "paddle: wrong secret",
    )
    .await;
    let zts = rfc3339_s(0);
    let zd = zendesk_sig("zd-other", &zts, body.as_bytes());
    refused(
        post_in(
            &app,
            "zd",
            &[
                json_ct,
                ("x-zendesk-webhook-signature-timestamp", &zts),
                ("x-zendesk-webhook-signature", &zd),
            ],
            body,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "zendesk: wrong secret",
    )
    .await;

    // Discord: missing, not hex, another key's signature.
    let other_key = SigningKey::from_bytes(&[9u8; 32]);
    let mut msg = t.as_bytes().to_vec();
    msg.extend_from_slice(body.as_bytes());
    let foreign = hex::encode(other_key.sign(&msg).to_bytes());
    for (what, sig) in [
        ("discord: missing", None),
        ("discord: not hex", Some("zz")),
        ("discord: another key", Some(foreign.as_str())),
    ] {
        let mut headers = vec![json_ct, ("x-signature-timestamp", t.as_str())];
        if let Some(s) = sig {
            headers.push(("x-signature-ed25519", s));
        }
        refused(
            post_in(&app, "dc", &headers, body).await,
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            what,
        )
        .await;
    }

    // Token: missing, empty, wrong, a prefix of the right one.
    for (what, value) in [
        ("token: missing", None),
        ("token: empty bearer", Some("Bearer ")),
        ("token: wrong", Some("Bearer tok-secreT")),
        ("token: prefix", Some("Bearer tok-sec")),
    ] {
        let mut headers = vec![json_ct];
        if let Some(v) = value {
            headers.push(("authorization", v));
        }
        refused(
            post_in(&app, "tok", &headers, body).await,
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            what,
        )
        .await;
    }

    let all = app
        .get_json("/v1beta1/admin/inbound?limit=500", StatusCode::OK)
        .await;
    assert_eq!(all["inbound"], json!([]), "nothing refused was stored");
}

#[tokio::test]
async fn stale_and_future_timestamps_are_401_timestamp_out_of_range() {
    let app = refusing_app().await;
    let json_ct = ("content-type", "application/json");
    let body = r#"{"id":"evt_ts","type":"charge.succeeded"}"#;
    for skew in [-360, 360] {
        let ts = now_s() + skew;
        let t = ts.to_string();
        let what = |p: &str| format!("{p} at {skew:+}s");

        let sig = stripe_sig("whsec_neg", ts, body.as_bytes());
        refused(
            post_in(
                &app,
                "payments",
                &[json_ct, ("stripe-signature", &sig)],
                body,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("stripe"),
        )
        .await;
        let sig = standard_sig(SW_SECRET, "msg_ts", ts, body.as_bytes());
        refused(
            post_in(
                &app,
                "sw",
                &[
                    json_ct,
                    ("webhook-id", "msg_ts"),
                    ("webhook-timestamp", &t),
                    ("webhook-signature", &sig),
                ],
                body,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("standard webhooks"),
        )
        .await;
        let sig = slack_sig("sl-secret", &t, body.as_bytes());
        refused(
            post_in(
                &app,
                "sl",
                &[
                    json_ct,
                    ("x-slack-request-timestamp", &t),
                    ("x-slack-signature", &sig),
                ],
                body,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("slack"),
        )
        .await;
        let sig = paddle_sig("pad-secret", ts, body.as_bytes());
        refused(
            post_in(&app, "pad", &[json_ct, ("paddle-signature", &sig)], body).await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("paddle"),
        )
        .await;
        let zts = rfc3339_s(skew);
        let sig = zendesk_sig("zd-secret", &zts, body.as_bytes());
        refused(
            post_in(
                &app,
                "zd",
                &[
                    json_ct,
                    ("x-zendesk-webhook-signature-timestamp", &zts),
                    ("x-zendesk-webhook-signature", &sig),
                ],
                body,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("zendesk"),
        )
        .await;
        let sig = discord_sig(&t, body.as_bytes());
        refused(
            post_in(
                &app,
                "dc",
                &[
                    json_ct,
                    ("x-signature-timestamp", &t),
                    ("x-signature-ed25519", &sig),
                ],
                body,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("discord"),
        )
        .await;
        // Linear's tolerance is 60 s, its timestamp in the body, in ms.
        let lin = format!(
            r#"{{"type":"Issue","action":"create","webhookTimestamp":{}}}"#,
            hookrelay::clock::now_ms() + skew / 4 * 1000
        );
        let sig = linear_sig("lin-secret", lin.as_bytes());
        refused(
            post_in(&app, "lin", &[json_ct, ("linear-signature", &sig)], lin).await,
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            &what("linear (skew / 4)"),
        )
        .await;
    }
    // Linear without webhookTimestamp.
    let lin = r#"{"type":"Issue","action":"create"}"#;
    let sig = linear_sig("lin-secret", lin.as_bytes());
    refused(
        post_in(&app, "lin", &[json_ct, ("linear-signature", &sig)], lin).await,
        StatusCode::UNAUTHORIZED,
        "timestamp_out_of_range",
        "linear without webhookTimestamp",
    )
    .await;
    let all = app
        .get_json("/v1beta1/admin/inbound?limit=500", StatusCode::OK)
        .await;
    assert_eq!(all["inbound"], json!([]), "nothing refused was stored");
}

#[tokio::test]
async fn invalid_payload_unknown_disabled_and_too_large() {
    let app = refusing_app().await;
    // Linear reads its timestamp from the body: a signed body that is not JSON is 400.
    let junk = "{not json";
    let sig = linear_sig("lin-secret", junk.as_bytes());
    refused(
        post_in(
            &app,
            "lin",
            &[
                ("content-type", "application/json"),
                ("linear-signature", &sig),
            ],
            junk,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
        "linear: not JSON",
    )
    .await;

    let body = r#"{"id":"evt_x","type":"x"}"#;
    let sig = stripe_sig("whsec_off", now_s(), body.as_bytes());
    for (what, name) in [
        ("unknown", "nope"),
        ("disabled", "off"),
        ("not a source name", "Front"),
    ] {
        refused(
            post_in(
                &app,
                name,
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &sig),
                ],
                body,
            )
            .await,
            StatusCode::NOT_FOUND,
            "source_not_found",
            what,
        )
        .await;
    }

    let huge = format!(r#"{{"id":"evt_huge","pad":"{}"}}"#, "a".repeat(8192));
    let sig = stripe_sig("whsec_neg", now_s(), huge.as_bytes());
    refused(
        post_in(
            &app,
            "payments",
            &[
                ("content-type", "application/json"),
                ("stripe-signature", &sig),
            ],
            huge,
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "too large",
    )
    .await;
    let all = app
        .get_json("/v1beta1/admin/inbound?limit=500", StatusCode::OK)
        .await;
    assert_eq!(all["inbound"], json!([]), "nothing refused was stored");
    // Each refusal is in the rejected log with its cause.
    let rows = wait_rejected(&app, "", 5).await;
    let causes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap_or_default(),
                r["cause"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for want in [
        ("lin", "invalid_payload"),
        ("(unknown)", "source_not_found"),
        ("off", "source_not_found"),
        ("payments", "payload_too_large"),
    ] {
        assert!(causes.contains(&want), "{want:?} not in {causes:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Handshakes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slack_url_verification_and_discord_pings_are_answered_and_not_stored() {
    let app = app_with_sources(&format!(
        "[sources.sl]\npreset = \"slack\"\nsecret = \"{SLACK_SECRET}\"\n\
         [sources.dc]\npreset = \"discord\"\npublic_key = \"{}\"\n",
        discord_public_key()
    ))
    .await;
    let ts = now_s().to_string();
    let challenge =
        r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"abc","type":"url_verification"}"#;
    let sig = slack_sig(SLACK_SECRET, &ts, challenge.as_bytes());
    let res = post_in(
        &app,
        "sl",
        &[
            ("content-type", "application/json"),
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sig),
        ],
        challenge,
    )
    .await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"challenge": "abc"})
    );
    let no_challenge = r#"{"type":"url_verification"}"#;
    let sig = slack_sig(SLACK_SECRET, &ts, no_challenge.as_bytes());
    refused(
        post_in(
            &app,
            "sl",
            &[
                ("content-type", "application/json"),
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
            ],
            no_challenge,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
        "a url_verification without its challenge",
    )
    .await;
    // Verified before it is answered.
    refused(
        post_in(
            &app,
            "sl",
            &[
                ("content-type", "application/json"),
                ("x-slack-request-timestamp", &ts),
            ],
            challenge,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "an unsigned challenge",
    )
    .await;

    let ping = r#"{"type":1}"#;
    let sig = discord_sig(&ts, ping.as_bytes());
    let res = post_in(
        &app,
        "dc",
        &[
            ("content-type", "application/json"),
            ("x-signature-timestamp", &ts),
            ("x-signature-ed25519", &sig),
        ],
        ping,
    )
    .await;
    assert_eq!(assert_json(res, StatusCode::OK).await, json!({"type": 1}));
    let event_ping = r#"{"version":1,"application_id":"123","type":0}"#;
    let sig = discord_sig(&ts, event_ping.as_bytes());
    let res = post_in(
        &app,
        "dc",
        &[
            ("content-type", "application/json"),
            ("x-signature-timestamp", &ts),
            ("x-signature-ed25519", &sig),
        ],
        event_ping,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.expect("body").is_empty());
    refused(
        post_in(
            &app,
            "dc",
            &[
                ("content-type", "application/json"),
                ("x-signature-timestamp", &ts),
                ("x-signature-ed25519", &discord_sig(&ts, b"{}")),
            ],
            ping,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "a ping signed for another body",
    )
    .await;

    assert!(inbound_of(&app, "sl").await.is_empty());
    assert!(inbound_of(&app, "dc").await.is_empty());
    let jobs = app
        .get_json("/v1beta1/admin/jobs?kind=source.process", StatusCode::OK)
        .await;
    assert_eq!(jobs["jobs"], json!([]), "no job for a handshake");
}

// ---------------------------------------------------------------------------------------------
// 4. Duplicates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_same_stripe_event_twice_is_stored_and_delivered_once() {
    let app =
        app_with_sources("[sources.stripe]\npreset = \"stripe\"\nsecret = \"whsec_dupe\"\n").await;
    let rx = subscribe(&app, &["stripe.*"]).await;
    let body = r#"{"id":"evt_dupe","object":"event","type":"charge.succeeded"}"#;
    let duplicates_before = ingress_metric(&app, "stripe", "duplicate").await;
    // A retry carries a fresh signature.
    let first = stripe_sig("whsec_dupe", now_s() - 30, body.as_bytes());
    accepted(post_stripe(&app, "stripe", &first, &[], body).await).await;
    let second = stripe_sig("whsec_dupe", now_s(), body.as_bytes());
    duplicate(post_stripe(&app, "stripe", &second, &[], body).await).await;

    rx.wait_for(1, WAIT).await;
    let rows = inbound_of(&app, "stripe").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["event_id"], "evt_dupe");
    let jobs = app
        .get_json("/v1beta1/admin/jobs?kind=source.process", StatusCode::OK)
        .await;
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(1),
        "one job: {jobs}"
    );
    // One event published, so one delivery now and ever.
    let events = app
        .get_json("/v1beta1/admin/events?action=stripe.*", StatusCode::OK)
        .await;
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    assert_eq!(rx.requests().len(), 1);
    assert!(
        ingress_metric(&app, "stripe", "duplicate").await - duplicates_before >= 1.0,
        "duplicates counted in /metrics"
    );
    let view = source_view(&app, "stripe").await;
    assert_eq!(
        view["last_hour"],
        json!({"received": 1, "duplicate": 1, "rejected": 0}),
        "{view}"
    );
}

#[tokio::test]
async fn without_an_id_the_body_hash_is_the_key() {
    let app = app_with_sources(&format!(
        "[sources.dc]\npreset = \"discord\"\npublic_key = \"{}\"\n\
         [sources.plain]\npreset = \"token\"\nsecret = \"plain-token\"\nidempotency = \"/meta/id\"\n",
        discord_public_key()
    ))
    .await;
    let event = r#"{"version":1,"application_id":"1","type":1,"event":{"type":"ENTITLEMENT_CREATE","data":{}}}"#;
    accepted(post_discord(&app, "dc", &(now_s() - 5).to_string(), event).await).await;
    duplicate(post_discord(&app, "dc", &now_s().to_string(), event).await).await;
    let rows = inbound_of(&app, "dc").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["event_id"], sha256_key(event.as_bytes()));

    let auth = ("authorization", "Bearer plain-token");
    let ct = ("content-type", "application/json");
    let a = r#"{"type":"x","other":1}"#;
    accepted(post_in(&app, "plain", &[ct, auth], a).await).await;
    duplicate(post_in(&app, "plain", &[ct, auth], a).await).await;
    let b = r#"{"type":"x","other":2}"#;
    accepted(post_in(&app, "plain", &[ct, auth], b).await).await;
    let rows = inbound_of(&app, "plain").await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let keys: Vec<&str> = rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
    assert!(
        keys.contains(&sha256_key(a.as_bytes()).as_str()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&sha256_key(b.as_bytes()).as_str()),
        "{keys:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Rotation and overrides
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rotated_secrets_and_overridden_type_and_id() {
    let app = app_with_sources(
        "[sources.billing]\npreset = \"stripe\"\nsecrets = [\"old\", \"new\"]\n\
         event_type = \"header:X-Kind\"\nidempotency = \"/meta/id\"\n\
         [sources.patient]\npreset = \"stripe\"\nsecret = \"whsec_patient\"\ntolerance = \"10m\"\n",
    )
    .await;
    let rx = subscribe(&app, &["billing.*"]).await;
    // The same Stripe id in each: the override, not `/id`, keys them.
    let body =
        |n: u32| format!(r#"{{"id":"evt_same","type":"ignored.type","meta":{{"id":"m-{n}"}}}}"#);
    let b1 = body(1);
    let sig = stripe_sig("old", now_s(), b1.as_bytes());
    accepted(post_stripe(&app, "billing", &sig, &[("x-kind", "Order.Created")], b1).await).await;
    let b2 = body(2);
    let sig = stripe_sig("new", now_s(), b2.as_bytes());
    accepted(post_stripe(&app, "billing", &sig, &[("x-kind", "Order.Paid")], b2).await).await;
    // Several v1, one of them right.
    let b3 = body(3);
    let t = now_s();
    let good = stripe_sig("new", t, b3.as_bytes());
    let wrong = stripe_sig("other", t, b3.as_bytes());
    let both = format!("{wrong},v1={}", good.split_once(",v1=").expect("v1").1);
    accepted(post_stripe(&app, "billing", &both, &[("x-kind", "Order Refunded")], b3).await).await;
    let b4 = body(4);
    refused(
        post_stripe(
            &app,
            "billing",
            &stripe_sig("other", now_s(), b4.as_bytes()),
            &[("x-kind", "Order.Created")],
            b4,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "a secret not in secrets",
    )
    .await;

    // `tolerance` widens the window, both ways.
    for (n, skew) in [(1, -360), (2, 360)] {
        let b = format!(r#"{{"id":"evt_patient_{n}","type":"x"}}"#);
        let sig = stripe_sig("whsec_patient", now_s() + skew, b.as_bytes());
        accepted(post_stripe(&app, "patient", &sig, &[], b).await).await;
    }
    let b = r#"{"id":"evt_patient_3","type":"x"}"#;
    let sig = stripe_sig("whsec_patient", now_s() - 660, b.as_bytes());
    refused(
        post_stripe(&app, "patient", &sig, &[], b).await,
        StatusCode::UNAUTHORIZED,
        "timestamp_out_of_range",
        "beyond a 10m tolerance",
    )
    .await;

    let events = events_at(&rx, 3).await;
    for (action, id, raw) in [
        ("billing.order.created", "m-1", "Order.Created"),
        ("billing.order.paid", "m-2", "Order.Paid"),
        ("billing.order_refunded", "m-3", "Order Refunded"),
    ] {
        let m = check_event(
            by_action(&events, action),
            &Expect {
                name: "billing",
                preset: "stripe",
                action,
                id,
                raw_type: raw,
                org_id: None,
                never: &["stripe-signature"],
            },
        );
        assert_eq!(m["headers"]["x-kind"], raw);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The rejected log and the sources view
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rejected_requests_are_kept_and_sources_are_listed_without_secrets() {
    const TOKEN: &str = "tok-super-secret-value";
    let s = sources(&format!(
        "[sources.payments]\npreset = \"stripe\"\nsecret = \"whsec_rejected_secret\"\norg_id = \"org_p\"\n\
         [sources.tok]\npreset = \"token\"\nsecret = \"{TOKEN}\"\n"
    ));
    let app = spawn_app_with(move |c| {
        c.sources = s;
        c.front.webhook_secret = Some(hookrelay::config::Secret::new("front-secret-value"));
    })
    .await;
    let ua = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
    let body = format!(r#"{{"id":"evt_rej","pad":"{}"}}"#, "é".repeat(500));
    assert!(body.len() > 1000);
    let res = post_in(
        &app,
        "payments",
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("user-agent", ua),
            ("stripe-signature", "t=123,v1=deadbeef"),
        ],
        body.clone(),
    )
    .await;
    refused(res, StatusCode::UNAUTHORIZED, "invalid_signature", "bad").await;
    let rows = wait_rejected(&app, "source=payments&cause=invalid_signature", 1).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert!(
        r["id"].as_str().is_some_and(|i| i.starts_with("rej_")),
        "{r}"
    );
    assert_eq!(r["source"], "payments");
    assert_eq!(r["cause"], "invalid_signature");
    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    assert!(r["at"].is_string(), "{r}");
    assert_eq!(r["peer"], "127.0.0.1");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/webhooks/in/payments");
    assert_eq!(r["content_type"], "application/json; charset=utf-8");
    assert_eq!(r["content_length"], body.len());
    assert_eq!(r["user_agent"], ua);
    assert_eq!(
        r["signature"],
        json!({"stripe-signature": "t=123,v1=deadbeef"})
    );
    assert_eq!(r["body_head_bytes"], 512);
    assert_eq!(
        r["body_head"],
        &*String::from_utf8_lossy(&body.as_bytes()[..512]),
        "the first 512 bytes only"
    );

    // A stale one is another cause.
    let stale = stripe_sig("whsec_rejected_secret", now_s() - 3600, b"{}");
    refused(
        post_in(&app, "payments", &[("stripe-signature", &stale)], "{}").await,
        StatusCode::UNAUTHORIZED,
        "timestamp_out_of_range",
        "stale",
    )
    .await;
    let rows = wait_rejected(&app, "source=payments&cause=timestamp_out_of_range", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["signature"]["stripe-signature"], stale);
    assert_eq!(
        rejected(&app, "source=payments&cause=invalid_signature")
            .await
            .len(),
        1,
        "the cause filter"
    );

    // `since`: only what was refused at or after it.
    let since_ms = hookrelay::clock::now_ms() + 1;
    let since = hookrelay::clock::to_rfc3339(since_ms);
    tokio::time::sleep(Duration::from_millis(10)).await; // the clock past `since`, not a wait for the app
    refused(
        post_in(
            &app,
            "payments",
            &[("stripe-signature", "t=1,v1=00")],
            "later",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "later",
    )
    .await;
    wait_rejected(&app, "source=payments&cause=invalid_signature", 2).await;
    let later = rejected(&app, &format!("source=payments&since={since}")).await;
    assert_eq!(later.len(), 1, "{later:#?}");
    assert_eq!(later[0]["body_head"], "later");
    let future = hookrelay::clock::to_rfc3339(hookrelay::clock::now_ms() + 60_000);
    assert!(
        rejected(&app, &format!("source=payments&since={future}"))
            .await
            .is_empty()
    );
    assert_eq!(
        rejected(&app, "source=payments&since=2000-01-01T00:00:00Z")
            .await
            .len(),
        3
    );
    assert_error(
        app.get("/v1beta1/admin/rejected?since=yesterday").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/rejected?cause=bogus").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;

    // A token source: neither the presented token nor the real one is kept.
    refused(
        post_in(
            &app,
            "tok",
            &[("authorization", "Bearer tok-guessed-value")],
            "{}",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "wrong token",
    )
    .await;
    let rows = wait_rejected(&app, "source=tok", 1).await;
    assert_eq!(rows[0]["signature"], json!({}), "{}", rows[0]);
    let text = rows[0].to_string();
    assert!(
        !text.contains("tok-guessed-value") && !text.contains(TOKEN),
        "{text}"
    );

    // A name not configured is kept under `(unknown)`, the path showing the name asked.
    refused(
        post_in(&app, "nope", &[], "{}").await,
        StatusCode::NOT_FOUND,
        "source_not_found",
        "unknown",
    )
    .await;
    let rows = wait_rejected(&app, "cause=source_not_found", 1).await;
    assert_eq!(rows[0]["source"], "(unknown)");
    assert_eq!(rows[0]["path"], "/webhooks/in/nope");

    // Front's refusals too.
    let ts = hookrelay::clock::now_ms().to_string();
    let res = app
        .client
        .post(app.url("/webhooks/front"))
        .header("content-type", "application/json")
        .header("x-front-request-timestamp", &ts)
        .header("x-front-signature", "bm90IGEgc2lnbmF0dXJl")
        .body(r#"{"type":"inbound_received"}"#)
        .send()
        .await
        .expect("request");
    refused(res, StatusCode::UNAUTHORIZED, "invalid_signature", "front").await;
    let rows = wait_rejected(&app, "source=front", 1).await;
    assert_eq!(rows[0]["cause"], "invalid_signature");
    assert_eq!(rows[0]["path"], "/webhooks/front");
    assert_eq!(
        rows[0]["signature"],
        json!({"x-front-signature": "bm90IGEgc2lnbmF0dXJl", "x-front-request-timestamp": ts})
    );
    assert_eq!(rows[0]["body_head"], r#"{"type":"inbound_received"}"#);

    // One received and one duplicate beside the three refused.
    let good = r#"{"id":"evt_ok","type":"charge.succeeded"}"#;
    for _ in 0..2 {
        let sig = stripe_sig("whsec_rejected_secret", now_s(), good.as_bytes());
        let res = post_in(&app, "payments", &[("stripe-signature", &sig)], good).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let all = app.get_json("/v1beta1/admin/sources", StatusCode::OK).await;
    let text = all.to_string();
    for secret in ["whsec_rejected_secret", TOKEN] {
        assert!(
            !text.contains(secret),
            "a secret in the sources view: {text}"
        );
    }
    let names: Vec<&str> = all["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["payments", "tok"], "Front is not a source: {all}");
    let p = source_view(&app, "payments").await;
    assert_eq!(p["preset"], "stripe");
    assert_eq!(p["path"], "/webhooks/in/payments");
    let counts = json!({"received": 1, "duplicate": 1, "rejected": 3});
    assert_eq!(p["last_hour"], counts, "{p}");
    assert_eq!(p["last_24h"], counts, "{p}");
    assert!(p["last_received_at"].is_string(), "{p}");
    assert!(p["last_rejected_at"].is_string(), "{p}");
    let t = source_view(&app, "tok").await;
    assert_eq!(t["preset"], "token");
    assert_eq!(t["path"], "/webhooks/in/tok");
    assert_eq!(
        t["last_hour"],
        json!({"received": 0, "duplicate": 0, "rejected": 1}),
        "{t}"
    );
    assert!(t["last_received_at"].is_null(), "{t}");
    // Nor in the rejected log.
    let text = json!(rejected(&app, "").await).to_string();
    for secret in ["whsec_rejected_secret", TOKEN, "front-secret-value"] {
        assert!(
            !text.contains(secret),
            "a secret in the rejected log: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 7. The bound under a flood
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_flood_of_500_bad_requests_stores_at_most_60_a_minute_and_counts_all() {
    let _heavy = heavy().await;
    let app =
        app_with_sources("[sources.stripe]\npreset = \"stripe\"\nsecret = \"whsec_flood\"\n").await;
    let before = ingress_metric(&app, "stripe", "invalid_signature").await;
    let body = r#"{"id":"evt_flood","type":"charge.succeeded"}"#;
    let sig = stripe_sig("whsec_forged", now_s(), body.as_bytes());
    let url = app.url("/webhooks/in/stripe");
    let start_minute = hookrelay::clock::now_ms() / 60_000;
    let mut set = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..500 {
        let (client, url, sig, sem) = (
            app.client.clone(),
            url.clone(),
            sig.clone(),
            std::sync::Arc::clone(&sem),
        );
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("permit");
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .header("stripe-signature", sig)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status();
            let text = res.text().await.map_err(|e| format!("body: {e}"))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            Ok::<_, String>((
                status,
                v["error"]["code"].as_str().unwrap_or_default().to_string(),
            ))
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.expect("task"));
    }
    let end_minute = hookrelay::clock::now_ms() / 60_000;
    assert_eq!(answers.len(), 500);
    for answer in &answers {
        assert_eq!(
            answer.as_ref().map(|(s, c)| (*s, c.as_str())),
            Ok((StatusCode::UNAUTHORIZED, "invalid_signature"))
        );
    }

    let view = source_view(&app, "stripe").await;
    assert_eq!(view["last_hour"]["rejected"], 500, "{view}");
    assert_eq!(view["last_24h"]["rejected"], 500, "{view}");
    let not_stored = view["rejected_not_stored"]
        .as_u64()
        .expect("rejected_not_stored");
    // What was chosen to be stored is decided as each is answered; the writes follow.
    let stored = usize::try_from(500 - not_stored).expect("count");
    let rows = wait_rejected(&app, "source=stripe", stored).await;
    let minutes = usize::try_from(end_minute - start_minute + 1).expect("minutes");
    assert!(
        (60..=60 * minutes).contains(&rows.len()),
        "{} rows stored over {minutes} started minute(s), {not_stored} only counted",
        rows.len()
    );
    assert_eq!(rows.len(), stored);
    assert!(
        rows.iter().all(|r| r["cause"] == "invalid_signature"),
        "{rows:#?}"
    );
    // The rejected list pages through them all.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1beta1/admin/rejected?source=stripe&limit=25&cursor={c}"),
            None => "/v1beta1/admin/rejected?source=stripe&limit=25".to_string(),
        };
        let page = app.get_json(&path, StatusCode::OK).await;
        paged.extend(
            page["rejected"]
                .as_array()
                .expect("rejected")
                .iter()
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, rows, "pages of 25 are the whole list, newest first");
    // `/metrics` is one recorder for the whole test process, and other tests (the browser's
    // Rejected view) refuse requests to sources named `stripe` too: at least all 500 here.
    let after = ingress_metric(&app, "stripe", "invalid_signature").await;
    assert!(
        after - before >= 500.0,
        "hookrelay_ingress_total{{source=\"stripe\",outcome=\"invalid_signature\"}} went from {before} to {after}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Replay
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_processed_source_event_replayed_is_published_again() {
    let app =
        app_with_sources("[sources.stripe]\npreset = \"stripe\"\nsecret = \"whsec_replay\"\n")
            .await;
    let rx = subscribe(&app, &["stripe.*"]).await;
    let body = r#"{"id":"evt_replay","object":"event","type":"customer.created"}"#;
    let sig = stripe_sig("whsec_replay", now_s(), body.as_bytes());
    accepted(
        post_in(
            &app,
            "stripe",
            &[
                ("content-type", "application/json"),
                ("stripe-signature", &sig),
            ],
            body,
        )
        .await,
    )
    .await;
    let first = events_at(&rx, 1).await.remove(0);
    let id = first["data"]["metadata"]["inbound_id"]
        .as_str()
        .expect("inbound_id")
        .to_string();
    let detail = wait_until(WAIT, "the inbound event processed", || async {
        let d = app
            .get_json(&format!("/v1beta1/admin/inbound/{id}"), StatusCode::OK)
            .await["inbound"]
            .clone();
        (d["state"] == "processed" && d["job"]["state"] == "succeeded").then_some(d)
    })
    .await;
    assert_eq!(detail["source"], "stripe");
    assert_eq!(detail["published_event_id"], first["id"]);

    let res = app
        .post(&format!("/v1beta1/admin/inbound/{id}/replay"), &json!({}))
        .await;
    let replayed = assert_json(res, StatusCode::OK).await;
    assert_eq!(replayed["inbound"]["id"], id.as_str());
    let events = events_at(&rx, 2).await;
    let second = &events[1];
    assert_eq!(second["action"], "stripe.customer.created");
    assert_eq!(second["data"]["target"], first["data"]["target"]);
    assert_eq!(second["data"]["metadata"]["inbound_id"], id.as_str());
    assert_eq!(
        second["data"]["metadata"]["body"],
        first["data"]["metadata"]["body"]
    );
    let detail = wait_until(WAIT, "the replay processed", || async {
        let d = app
            .get_json(&format!("/v1beta1/admin/inbound/{id}"), StatusCode::OK)
            .await["inbound"]
            .clone();
        (d["state"] == "processed" && d["job"]["state"] == "succeeded").then_some(d)
    })
    .await;
    assert_eq!(detail["published_event_id"], second["id"]);
    assert_eq!(inbound_of(&app, "stripe").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. A source's namespace is reserved
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publishing_into_a_sources_namespace_is_refused() {
    let app =
        app_with_sources("[sources.stripe]\npreset = \"stripe\"\nsecret = \"whsec_reserved\"\n")
            .await;
    for body in [
        json!({"action": "stripe.x", "data": {}}),
        json!({"action": "stripe.charge.succeeded", "data": {"source": "app"}}),
        json!({"action": "app.charge.succeeded", "data": {"source": "stripe"}}),
    ] {
        assert_error(
            app.post("/v1beta1/events", &body).await,
            StatusCode::BAD_REQUEST,
            "reserved_action",
        )
        .await;
        let res = app
            .client
            .post(app.url("/v1beta1/events"))
            .bearer_auth(PUBLISH_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_error(res, StatusCode::BAD_REQUEST, "reserved_action").await;
    }
    // Namespaces of sources not configured here stay the publisher's.
    publish(
        &app,
        json!({"action": "paddle.x", "data": {"source": "paddle"}}),
    )
    .await;
    publish(
        &app,
        json!({"action": "app.x", "data": {"source": "frontier"}}),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// More of SPEC §10: verify before parsing, bodies that are not JSON, the other causes, retention
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn only_linear_and_handshakes_need_a_json_body() {
    let app = app_with_sources(&format!(
        "[sources.st]\npreset = \"stripe\"\nsecret = \"whsec_text\"\n\
         [sources.gh]\npreset = \"github\"\nsecret = \"gh-form\"\n\
         [sources.lin]\npreset = \"linear\"\nsecret = \"lin-text\"\n\
         [sources.dc]\npreset = \"discord\"\npublic_key = \"{}\"\n",
        discord_public_key()
    ))
    .await;
    let rx = subscribe(&app, &["st.*", "gh.*"]).await;
    // A Stripe body that is not JSON is stored and published as text.
    let text = "not json at all";
    let sig = stripe_sig("whsec_text", now_s(), text.as_bytes());
    accepted(
        post_in(
            &app,
            "st",
            &[("content-type", "text/plain"), ("stripe-signature", &sig)],
            text,
        )
        .await,
    )
    .await;
    // GitHub's form-encoded deliveries: an object of the fields.
    let form = "payload=%7B%22action%22%3A%22opened%22%7D&extra=a+b";
    let sig = github_sig("gh-form", form.as_bytes());
    accepted(
        post_in(
            &app,
            "gh",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-github-event", "push"),
                ("x-github-delivery", "d-form"),
                ("x-hub-signature-256", &sig),
            ],
            form,
        )
        .await,
    )
    .await;
    // Verify before parsing: a Linear body that is not JSON with a wrong signature is 401.
    refused(
        post_in(
            &app,
            "lin",
            &[
                ("content-type", "application/json"),
                ("linear-signature", &linear_sig("lin-other", b"{nope")),
            ],
            "{nope",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "linear: wrong signature on a body that is not JSON",
    )
    .await;
    // Discord's handshakes need the body: signed but not JSON is 400.
    refused(
        post_discord(&app, "dc", &now_s().to_string(), "{nope").await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
        "discord: not JSON",
    )
    .await;

    let events = events_at(&rx, 2).await;
    let key = sha256_key(text.as_bytes());
    let m = check_event(
        by_action(&events, "st.received"),
        &Expect {
            name: "st",
            preset: "stripe",
            action: "st.received",
            id: &key,
            raw_type: "",
            org_id: None,
            never: &["stripe-signature"],
        },
    );
    assert_eq!(m["body"], text);
    let m = check_event(
        by_action(&events, "gh.push"),
        &Expect {
            name: "gh",
            preset: "github",
            action: "gh.push",
            id: "d-form",
            raw_type: "push",
            org_id: None,
            never: &["x-hub-signature-256"],
        },
    );
    assert_eq!(
        m["body"],
        json!({"payload": "{\"action\":\"opened\"}", "extra": "a b"})
    );
    assert!(inbound_of(&app, "dc").await.is_empty());
    assert!(inbound_of(&app, "lin").await.is_empty());
}

#[tokio::test]
async fn invented_source_names_share_one_bound() {
    let app =
        app_with_sources("[sources.known]\npreset = \"stripe\"\nsecret = \"whsec_k\"\n").await;
    let start_minute = hookrelay::clock::now_ms() / 60_000;
    for n in 0..100 {
        refused(
            post_in(&app, &format!("invented{n}"), &[], "{}").await,
            StatusCode::NOT_FOUND,
            "source_not_found",
            "invented",
        )
        .await;
    }
    let end_minute = hookrelay::clock::now_ms() / 60_000;
    // A refusal after them all, as a barrier: once its row is in, theirs are.
    refused(
        post_in(&app, "known", &[("stripe-signature", "t=1,v1=00")], "{}").await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "barrier",
    )
    .await;
    wait_rejected(&app, "source=known", 1).await;
    let rows = wait_rejected(&app, "cause=source_not_found", 60).await;
    let minutes = usize::try_from(end_minute - start_minute + 1).expect("minutes");
    assert!(
        rows.len() <= 60 * minutes,
        "{} rows for 100 invented names over {minutes} minute(s)",
        rows.len()
    );
    assert!(
        rows.iter().all(|r| r["source"] == "(unknown)"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/webhooks/in/invented"))),
        "kept under one sender, with the names asked in the path"
    );
}

#[tokio::test]
async fn front_without_a_secret_is_recorded_as_not_configured() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/webhooks/front"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let rows = wait_rejected(&app, "source=front&cause=not_configured", 1).await;
    assert_eq!(rows[0]["path"], "/webhooks/front");
    assert_eq!(rows[0]["body_head"], "{}");
}

#[tokio::test]
async fn rejected_rows_are_kept_for_retention_rejected() {
    let app = spawn_app_with(|c| c.retention.rejected = Duration::from_secs(3600)).await;
    let now = hookrelay::clock::now_ms();
    write_db(&app.app_store, move |conn| {
        for (name, at) in [("old", now - 2 * 3_600_000), ("recent", now - 600_000)] {
            let id = format!(
                "rej_{}",
                ulid::Ulid::from_parts(u64::try_from(at).expect("positive"), 1)
            );
            conn.execute(
                "INSERT INTO inbound_rejected (id, source, cause, message, at, method, path, signature, body_head)
                 VALUES (?1, ?2, 'invalid_signature', 'm', ?3, 'POST', '/webhooks/in/x', '{}', ?4)",
                hookrelay::sql::params![id, name, at, b"{}".to_vec()],
            )?;
        }
        Ok(())
    })
    .await;
    assert_eq!(rejected(&app, "").await.len(), 2);
    let res = app
        .post("/v1beta1/admin/cron/retention/run", &json!({}))
        .await;
    assert_json(res, StatusCode::ACCEPTED).await;
    let rows = wait_until(WAIT, "retention to remove the old row", || async {
        let rows = rejected(&app, "").await;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    assert_eq!(rows[0]["source"], "recent");
}

#[tokio::test]
async fn the_signature_and_timestamp_headers_are_kept_with_a_refusal() {
    let app = app_with_sources(&format!(
        "[sources.sl]\npreset = \"slack\"\nsecret = \"sl-kept\"\n\
         [sources.sw]\npreset = \"standard_webhooks\"\nsecret = \"{SW_SECRET}\"\n\
         [sources.dc]\npreset = \"discord\"\npublic_key = \"{}\"\n",
        discord_public_key()
    ))
    .await;
    let stale = (now_s() - 3600).to_string();
    let sig = slack_sig("sl-kept", &stale, b"{}");
    refused(
        post_in(
            &app,
            "sl",
            &[
                ("x-slack-request-timestamp", &stale),
                ("x-slack-signature", &sig),
            ],
            "{}",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "timestamp_out_of_range",
        "slack stale",
    )
    .await;
    let rows = wait_rejected(&app, "source=sl", 1).await;
    assert_eq!(
        rows[0]["signature"],
        json!({"x-slack-signature": sig, "x-slack-request-timestamp": stale})
    );
    let now = now_s().to_string();
    refused(
        post_in(
            &app,
            "sw",
            &[
                ("svix-id", "msg_k"),
                ("svix-timestamp", &now),
                ("svix-signature", "v1,AAAA"),
            ],
            "{}",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "svix wrong",
    )
    .await;
    let rows = wait_rejected(&app, "source=sw", 1).await;
    assert_eq!(
        rows[0]["signature"],
        json!({"svix-signature": "v1,AAAA", "svix-timestamp": now})
    );
    refused(
        post_in(
            &app,
            "dc",
            &[
                ("x-signature-timestamp", &now),
                ("x-signature-ed25519", "00"),
            ],
            "{}",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "discord wrong",
    )
    .await;
    let rows = wait_rejected(&app, "source=dc", 1).await;
    assert_eq!(
        rows[0]["signature"],
        json!({"x-signature-ed25519": "00", "x-signature-timestamp": now})
    );
}

#[tokio::test]
async fn after_a_restart_the_sources_view_reads_the_last_times_from_the_database() {
    let toml = "[sources.restarted]\npreset = \"stripe\"\nsecret = \"whsec_restart\"\n";
    let app = app_with_sources(toml).await;
    let body = r#"{"id":"evt_restart","type":"charge.succeeded"}"#;
    let sig = stripe_sig("whsec_restart", now_s(), body.as_bytes());
    accepted(post_stripe(&app, "restarted", &sig, &[], body).await).await;
    refused(
        post_stripe(&app, "restarted", "t=1,v1=00", &[], "{}").await,
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "bad",
    )
    .await;
    let stored = wait_rejected(&app, "source=restarted", 1).await;
    let before = source_view(&app, "restarted").await;
    let dir = app.shutdown().await;

    let mut cfg = test_config(dir.path());
    local_delivery(&mut cfg);
    cfg.sources = sources(toml);
    let app = spawn_app_in(dir, cfg).await;
    let after = source_view(&app, "restarted").await;
    let ms =
        |v: &Value| hookrelay::clock::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339");
    // The stored times (this process counted them a moment after their commit).
    assert!(
        (ms(&after["last_received_at"]) - ms(&before["last_received_at"])).abs() < 1000,
        "{before} / {after}"
    );
    assert_eq!(after["last_rejected_at"], stored[0]["at"], "{after}");
    // The counts of the last hour and day are read back from the stored rows.
    for window in ["last_hour", "last_24h"] {
        assert_eq!(after[window]["received"], 1, "{after}");
        assert_eq!(after[window]["rejected"], 1, "{after}");
    }
    // The dedupe key outlives the restart.
    let sig = stripe_sig("whsec_restart", now_s(), body.as_bytes());
    duplicate(post_stripe(&app, "restarted", &sig, &[], body).await).await;
    assert_eq!(inbound_of(&app, "restarted").await.len(), 1);
}

#[tokio::test]
async fn hostile_shapes_are_answered_and_processed_in_linear_time() {
    let app =
        app_with_sources("[sources.st]\npreset = \"stripe\"\nsecret = \"whsec_shapes\"\n").await;
    let limit = 1_048_576;
    let deep = format!("{}{}", "[".repeat(limit / 2 - 8), "]".repeat(limit / 2 - 8));
    let deep_in_type = format!(
        r#"{{"id":"evt_deep2","type":{}{}}}"#,
        "{\"a\":".repeat(limit / 8),
        "}".repeat(limit / 8)
    );
    let mut wide = String::from(r#"{"id":"evt_wide","type":"wide""#);
    let mut n = 0;
    while wide.len() < limit - 64 {
        wide.push_str(&format!(r#","k{n}":123456789012345678901"#));
        n += 1;
    }
    wide.push('}');
    let long_key = format!(
        r#"{{"id":"evt_long","{}":1,"type":"long"}}"#,
        "k".repeat(limit - 64)
    );
    for (what, body) in [
        ("deep", &deep),
        ("deep where the type is", &deep_in_type),
        ("wide with big integers", &wide),
        ("a long key", &long_key),
    ] {
        assert!(body.len() <= limit, "{what}: {}", body.len());
        let sig = stripe_sig("whsec_shapes", now_s(), body.as_bytes());
        let started = std::time::Instant::now();
        let res = post_stripe(&app, "st", &sig, &[], body.clone()).await;
        let took = started.elapsed();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{what}: {}",
            res.text().await.unwrap_or_default()
        );
        // Well under a second in a release build; a debug build on a shared machine gets room,
        // while anything worse than linear would take minutes.
        assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    }
    let rows = wait_until(WAIT, "the four processed", || async {
        let rows = inbound_of(&app, "st").await;
        (rows.len() == 4 && rows.iter().all(|r| r["state"] != "pending")).then_some(rows)
    })
    .await;
    for r in &rows {
        assert_eq!(r["state"], "processed", "{r}");
    }
    let wide_row = rows
        .iter()
        .find(|r| r["event_id"] == "evt_wide")
        .expect("wide");
    let detail = app
        .get_json(
            &format!(
                "/v1beta1/admin/inbound/{}",
                wide_row["id"].as_str().expect("id")
            ),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        detail["inbound"]["outbound"]["data"]["metadata"]["body"]["k0"], "123456789012345678901",
        "big integers as strings"
    );
}

/// A request verified by its `svix-` headers is keyed by the `svix-id` that was signed, not by a
/// `webhook-id` header beside it that nothing signed: otherwise one captured request, replayed
/// within the tolerance with a new `webhook-id` each time, is a new event each time.
#[tokio::test]
async fn standard_webhooks_dedupes_by_the_id_that_was_signed() {
    let app = app_with_sources(&format!(
        "[sources.recall]\npreset = \"standard_webhooks\"\nsecret = \"{SW_SECRET}\"\n"
    ))
    .await;
    let body = r#"{"type":"bot.done","data":{}}"#;
    let ts = now_s();
    let t = ts.to_string();
    let sig = standard_sig(SW_SECRET, "msg_signed", ts, body.as_bytes());
    let post = |stray: &'static str| {
        let (t, sig) = (t.clone(), sig.clone());
        let app = &app;
        async move {
            post_in(
                app,
                "recall",
                &[
                    ("content-type", "application/json"),
                    ("svix-id", "msg_signed"),
                    ("svix-timestamp", &t),
                    ("svix-signature", &sig),
                    ("webhook-id", stray),
                ],
                body,
            )
            .await
        }
    };
    accepted(post("stray-1").await).await;
    let rows = inbound_of(&app, "recall").await;
    assert_eq!(
        rows[0]["event_id"], "msg_signed",
        "the id is the signed svix-id: {rows:#?}"
    );
    duplicate(post("stray-2").await).await;
    assert_eq!(inbound_of(&app, "recall").await.len(), 1);
}

#[tokio::test]
async fn a_captured_github_request_replayed_with_a_new_delivery_id_is_a_duplicate() {
    let app = app_with_sources("[sources.gh]\npreset = \"github\"\nsecret = \"gh-secret\"\n").await;
    let body = r#"{"action":"opened","number":7}"#;
    let sig = github_sig("gh-secret", body.as_bytes());
    let send = |delivery: &'static str| {
        let (app, sig) = (&app, sig.clone());
        async move {
            post_in(
                app,
                "gh",
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", &sig),
                    ("x-github-event", "pull_request"),
                    ("x-github-delivery", delivery),
                ],
                body,
            )
            .await
        }
    };
    accepted(send("d-original").await).await;
    // X-GitHub-Delivery is not signed: the same signed body under another id is a replay.
    duplicate(send("d-forged").await).await;
    assert_eq!(inbound_of(&app, "gh").await.len(), 1);
    // A different event (another body) with its own id is new.
    let other = r#"{"action":"closed","number":7}"#;
    let res = post_in(
        &app,
        "gh",
        &[
            ("content-type", "application/json"),
            (
                "x-hub-signature-256",
                &github_sig("gh-secret", other.as_bytes()),
            ),
            ("x-github-event", "pull_request"),
            ("x-github-delivery", "d-next"),
        ],
        other,
    )
    .await;
    accepted(res).await;
    assert_eq!(inbound_of(&app, "gh").await.len(), 2);
}

#[tokio::test]
async fn a_disabled_sources_refusals_are_its_own() {
    let app = app_with_sources(
        "[sources.off]\npreset = \"stripe\"\nsecret = \"whsec_off\"\nenabled = false\n",
    )
    .await;
    refused(
        post_in(&app, "off", &[], "{}").await,
        StatusCode::NOT_FOUND,
        "source_not_found",
        "disabled",
    )
    .await;
    let rows = wait_rejected(&app, "source=off", 1).await;
    assert_eq!(rows[0]["cause"], "source_not_found");
}

/// The README's example per preset is a valid configuration as written (placeholders aside:
/// a `secret_file` path is given as a file that exists, Discord's key as a real one).
#[test]
fn the_readme_examples_per_preset_are_valid_configuration() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### One example per preset")
        .nth(1)
        .expect("the README has the per-preset examples")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "a-secret\n").expect("write");
    let mut presets = Vec::new();
    for block in section.split("```toml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let toml: String = block
            .lines()
            .map(|l| {
                if l.starts_with("secret_file") {
                    format!("secret_file = {:?}", secret_file.display().to_string())
                } else if l.starts_with("public_key") {
                    format!("public_key = \"{}\"", discord_public_key())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = hookrelay::config::from_toml_str(&toml)
            .unwrap_or_else(|e| panic!("README example does not load: {e}\n{toml}"));
        assert_eq!(cfg.sources.len(), 1, "{toml}");
        presets.extend(cfg.sources.values().map(|s| s.preset.clone()));
    }
    presets.sort();
    let mut all: Vec<String> = hookrelay::config::sources::PRESETS
        .iter()
        .map(|p| (*p).to_string())
        .collect();
    all.sort();
    assert_eq!(presets, all, "one example per preset");
}
