//! The sources' schemes (SPEC §10) against the providers' own libraries, so that they are not
//! only our reading of the docs: requests signed by npm `standardwebhooks`, `stripe` and
//! `@octokit/webhooks-methods` (`tests/receivers/sign-providers.js`) and by PyPI `slack_sdk` and
//! `standardwebhooks` (`tests/receivers/sign_providers.py`) go to the running app, which must
//! answer 200 `{"received": true}`; the same request with one byte of its body changed, and one
//! signed with another secret, get 401 `invalid_signature`. Each library also computes SPEC §10's
//! published vector for its preset, the one `src/sources/scheme.rs`'s unit tests carry.
//!
//! Node and its packages (`npm ci --prefix tests/receivers`) and the PyPI packages (in the venv
//! `.ci/run` makes, `target/schemathesis-venv`) are required under `CI`; locally a missing one's
//! tests are ignored with what to install (build.rs looks for them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::*;

/// The sources under test, one per preset, each with the secret of its SPEC §10 vector.
const SOURCES: &str = r#"
[sources.sw]
preset = "standard_webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[sources.stripe]
preset = "stripe"
secret = "whsec_test_secret"

[sources.github]
preset = "github"
secret = "It's a Secret to Everybody"

[sources.slack]
preset = "slack"
secret = "8f742231b10e8888abcd99yyyzzz85a5"
"#;

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid Standard Webhooks secret (base64 of other bytes).
const SW_OTHER_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNvdXJjZSdzIGtleQ==";
const STRIPE_SECRET: &str = "whsec_test_secret";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// Slack's own slash-command example body (SPEC §10's vector).
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The npm packages sign-providers.js loads.
const NPM_PACKAGES: [&str; 3] = ["standardwebhooks", "stripe", "@octokit/webhooks-methods"];

/// The test venv's Python (`.ci/run` makes it and installs the PyPI packages into it).
fn venv_python() -> PathBuf {
    root().join("target/schemathesis-venv/bin/python3")
}

/// Whether the npm libraries can run (build.rs saw them, but they may be gone since, or the test
/// was run with `--ignored`); under CI their absence fails the test.
pub(crate) fn npm_or_skip(what: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = root().join("tests/receivers/node_modules");
    let missing: Vec<&str> = NPM_PACKAGES
        .into_iter()
        .filter(|p| !modules.join(p).is_dir())
        .collect();
    if node && missing.is_empty() {
        return true;
    }
    let msg = if node {
        format!(
            "{what} needs npm packages {missing:?}: run `npm ci --prefix tests/receivers` \
             (.ci/run does)"
        )
    } else {
        format!("{what} needs Node.js (.ci/run: apt-get install -y nodejs npm)")
    };
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

/// Whether the PyPI libraries import in the test venv; under CI their absence fails the test.
fn pypi_or_skip(what: &str) -> bool {
    let ok = Command::new(venv_python())
        .args(["-c", "import slack_sdk, standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "{what} needs slack_sdk and standardwebhooks in target/schemathesis-venv: \
             python3 -m venv target/schemathesis-venv && target/schemathesis-venv/bin/pip \
             install slack_sdk==3.48.0 standardwebhooks==1.1.0 (.ci/run does)"
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// A request to sign: `{preset, secret, body, id?, timestamp?}` (no timestamp: the library's
/// or the script's "now").
fn to_sign(preset: &str, secret: &str, body: &str) -> Value {
    json!({"preset": preset, "secret": secret, "body": body})
}

/// A request as a provider's library signed it.
#[derive(Debug, Clone, Deserialize)]
struct Signed {
    preset: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Signed {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("the {} signer gave no {name}: {self:?}", self.preset))
    }
}

/// Runs a signing script (`cmd`, to which the requests are appended as one JSON argument).
fn sign_with(mut cmd: Command, requests: &[Value]) -> Vec<Signed> {
    let out = cmd
        .arg(Value::Array(requests.to_vec()).to_string())
        .current_dir(root().join("tests/receivers"))
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Vec<Signed> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a signed request ({e}): {l}"))
        })
        .collect();
    assert_eq!(
        signed.len(),
        requests.len(),
        "one line per request:\n{stdout}"
    );
    for (s, r) in signed.iter().zip(requests) {
        assert_eq!(s.preset, r["preset"].as_str().expect("preset"));
        assert_eq!(s.body, r["body"].as_str().expect("body"));
    }
    signed
}

/// Signs with the npm libraries (tests/receivers/sign-providers.js).
fn sign_npm(requests: &[Value]) -> Vec<Signed> {
    let mut cmd = Command::new("node");
    cmd.arg("sign-providers.js");
    sign_with(cmd, requests)
}

/// Signs with the PyPI libraries (tests/receivers/sign_providers.py, in the test venv).
fn sign_pypi(requests: &[Value]) -> Vec<Signed> {
    let mut cmd = Command::new(venv_python());
    cmd.arg("sign_providers.py");
    sign_with(cmd, requests)
}

/// The app with [`SOURCES`].
async fn app() -> TestApp {
    let sources = hookrelay::config::from_toml_str(SOURCES)
        .expect("the sources are valid")
        .sources;
    spawn_app_with(move |c| c.sources = sources).await
}

/// The body with its last ASCII letter or digit changed (a digit to the next, a letter to its
/// other case), so that it stays the same kind of JSON or form text.
fn tampered(body: &str) -> String {
    let mut bytes = body.as_bytes().to_vec();
    let i = bytes
        .iter()
        .rposition(u8::is_ascii_alphanumeric)
        .expect("the body has a letter or digit");
    bytes[i] = match bytes[i] {
        b @ b'0'..=b'8' => b + 1,
        b'9' => b'0',
        b => b ^ 0x20,
    };
    String::from_utf8(bytes).expect("still UTF-8")
}

/// POSTs `body` to source `source` with the signed headers, `extra` and a content type.
async fn send(
    app: &TestApp,
    source: &str,
    signed: &Signed,
    body: &str,
    content_type: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/webhooks/in/{source}")))
        .header("content-type", content_type);
    for (name, value) in signed
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(extra.iter().copied())
    {
        req = req.header(name, value);
    }
    req.body(body.to_string()).send().await.expect("request")
}

/// The library's request is accepted as is, and refused with one byte of its body changed.
async fn accepted_and_tampered_refused(
    app: &TestApp,
    source: &str,
    signed: &Signed,
    content_type: &str,
    extra: &[(&str, &str)],
) {
    let changed = tampered(&signed.body);
    assert_ne!(changed, signed.body);
    let res = send(app, source, signed, &changed, content_type, extra).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    let res = send(app, source, signed, &signed.body, content_type, extra).await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true}),
        "{} signed by the provider's library: {signed:?}",
        signed.preset
    );
}

/// A request the library signed with a secret that is not the source's.
async fn other_secret_refused(
    app: &TestApp,
    source: &str,
    signed: &Signed,
    content_type: &str,
    extra: &[(&str, &str)],
) {
    let res = send(app, source, signed, &signed.body, content_type, extra).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_signature").await;
}

/// Standard Webhooks, npm `standardwebhooks` (`new Webhook(secret).sign(msgId, date, payload)`):
/// its signature of SPEC §10's vector is the vector; what it signs now is accepted under the
/// `webhook-` names and the `svix-` ones (a body with non-ASCII text, so the signed bytes are
/// UTF-8 on both sides); a changed body or another secret is refused.
#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn npm_standardwebhooks_signs_what_the_standard_webhooks_preset_accepts() {
    if !npm_or_skip("the npm standardwebhooks test") {
        return;
    }
    let vector = r#"{"test": 2432232314}"#;
    let signed = sign_npm(&[
        json!({"preset": "standard_webhooks", "secret": SW_SECRET, "body": vector,
               "id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "timestamp": 1_614_265_330}),
        to_sign(
            "standard_webhooks",
            SW_SECRET,
            r#"{"type":"user.created","data":{"id":"usr_1","name":"Zoë ☃ 𝄞","n":1000}}"#,
        ),
        to_sign(
            "standard_webhooks",
            SW_SECRET,
            r#"{"type":"bot.status_change","data":{"bot_id":"b_2","code":"done"}}"#,
        ),
        to_sign("standard_webhooks", SW_OTHER_SECRET, r#"{"type":"x.y"}"#),
    ]);
    assert_eq!(
        signed[0].header("webhook-signature"),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let app = app().await;
    accepted_and_tampered_refused(&app, "sw", &signed[1], JSON, &[]).await;
    let svix = Signed {
        headers: signed[2]
            .headers
            .iter()
            .map(|(n, v)| (n.replacen("webhook-", "svix-", 1), v.clone()))
            .collect(),
        ..signed[2].clone()
    };
    accepted_and_tampered_refused(&app, "sw", &svix, JSON, &[]).await;
    other_secret_refused(&app, "sw", &signed[3], JSON, &[]).await;
}

/// Stripe, npm `stripe` (`stripe.webhooks.generateTestHeaderString({payload, secret})`): with
/// `timestamp: 1700000000` it computes our unit vector (`v1=d95c6b74…`, the key being the whole
/// `whsec_…` string); the header it makes now is accepted; a changed body or another secret is
/// refused.
#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn npm_stripe_signs_what_the_stripe_preset_accepts() {
    if !npm_or_skip("the npm stripe test") {
        return;
    }
    let vector = r#"{"id":"evt_test_webhook","object":"event"}"#;
    let body = r#"{"id":"evt_1PqLive","object":"event","type":"payment_intent.succeeded","data":{"object":{"amount":1000,"description":"Zoë ☃"}}}"#;
    let signed = sign_npm(&[
        json!({"preset": "stripe", "secret": STRIPE_SECRET, "body": vector,
               "timestamp": 1_700_000_000}),
        to_sign("stripe", STRIPE_SECRET, body),
        to_sign("stripe", "whsec_another_secret", body),
    ]);
    assert_eq!(
        signed[0].header("stripe-signature"),
        "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990",
        "the stripe library disagrees with our unit vector"
    );
    let app = app().await;
    accepted_and_tampered_refused(&app, "stripe", &signed[1], JSON, &[]).await;
    other_secret_refused(&app, "stripe", &signed[2], JSON, &[]).await;
}

/// GitHub, npm `@octokit/webhooks-methods` (`sign(secret, payload)`): it computes SPEC §10's
/// vector (`Hello, World!`); what it signs is accepted with GitHub's event and delivery headers;
/// a changed body or another secret is refused.
#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn npm_octokit_signs_what_the_github_preset_accepts() {
    if !npm_or_skip("the npm @octokit/webhooks-methods test") {
        return;
    }
    let body = r#"{"action":"opened","issue":{"number":1000,"title":"Zoë ☃"},"repository":{"full_name":"o/r"}}"#;
    let signed = sign_npm(&[
        to_sign("github", GITHUB_SECRET, "Hello, World!"),
        to_sign("github", GITHUB_SECRET, body),
        to_sign("github", "not the secret", body),
    ]);
    assert_eq!(
        signed[0].header("x-hub-signature-256"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let app = app().await;
    let extra = [
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    accepted_and_tampered_refused(&app, "github", &signed[1], JSON, &extra).await;
    other_secret_refused(&app, "github", &signed[2], JSON, &extra).await;
}

/// Slack, PyPI `slack_sdk` (`SignatureVerifier(secret).generate_signature(timestamp=…, body=…)`):
/// it computes SPEC §10's vector (Slack's slash-command example at 1531420618); what it signs
/// now is accepted, a form-encoded slash command and a JSON `event_callback` alike; a signed
/// `url_verification` is answered with its challenge; a changed body or another secret is
/// refused.
#[tokio::test]
#[cfg_attr(
    missing_python_packages,
    ignore = "needs slack_sdk and standardwebhooks in target/schemathesis-venv: python3 -m venv target/schemathesis-venv && target/schemathesis-venv/bin/pip install slack_sdk==3.48.0 standardwebhooks==1.1.0"
)]
async fn pypi_slack_sdk_signs_what_the_slack_preset_accepts() {
    if !pypi_or_skip("the slack_sdk test") {
        return;
    }
    let event = r#"{"type":"event_callback","team_id":"T1DC2JH3J","event_id":"Ev1000","event":{"type":"message","text":"Zoë ☃ 𝄞"}}"#;
    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let handshake = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge,
                           "type": "url_verification"})
    .to_string();
    let signed = sign_pypi(&[
        json!({"preset": "slack", "secret": SLACK_SECRET, "body": SLACK_BODY,
               "timestamp": 1_531_420_618}),
        to_sign("slack", SLACK_SECRET, SLACK_BODY),
        to_sign("slack", SLACK_SECRET, event),
        to_sign("slack", SLACK_SECRET, &handshake),
        to_sign("slack", "not the secret", event),
    ]);
    assert_eq!(
        signed[0].header("x-slack-signature"),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
    let app = app().await;
    accepted_and_tampered_refused(&app, "slack", &signed[1], FORM, &[]).await;
    accepted_and_tampered_refused(&app, "slack", &signed[2], JSON, &[]).await;
    let res = send(&app, "slack", &signed[3], &signed[3].body, JSON, &[]).await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"challenge": challenge})
    );
    other_secret_refused(&app, "slack", &signed[4], JSON, &[]).await;
}

/// Standard Webhooks, PyPI `standardwebhooks` (`Webhook(secret).sign(msg_id, timestamp, data)`):
/// the same as the npm one, from the Python library: the vector, a request signed now accepted,
/// a changed body or another secret refused.
#[tokio::test]
#[cfg_attr(
    missing_python_packages,
    ignore = "needs slack_sdk and standardwebhooks in target/schemathesis-venv: python3 -m venv target/schemathesis-venv && target/schemathesis-venv/bin/pip install slack_sdk==3.48.0 standardwebhooks==1.1.0"
)]
async fn pypi_standardwebhooks_signs_what_the_standard_webhooks_preset_accepts() {
    if !pypi_or_skip("the PyPI standardwebhooks test") {
        return;
    }
    let vector = r#"{"test": 2432232314}"#;
    let body = r#"{"type":"invoice.paid","data":{"id":"in_1","total":1000,"memo":"Zoë ☃ 𝄞"}}"#;
    let signed = sign_pypi(&[
        json!({"preset": "standard_webhooks", "secret": SW_SECRET, "body": vector,
               "id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "timestamp": 1_614_265_330}),
        to_sign("standard_webhooks", SW_SECRET, body),
        to_sign("standard_webhooks", SW_OTHER_SECRET, body),
    ]);
    assert_eq!(
        signed[0].header("webhook-signature"),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let app = app().await;
    accepted_and_tampered_refused(&app, "sw", &signed[1], JSON, &[]).await;
    other_secret_refused(&app, "sw", &signed[2], JSON, &[]).await;
}
