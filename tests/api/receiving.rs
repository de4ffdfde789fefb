//! The receiver guide, `docs/receiving.md`, checked. Every receiver it shows is a runnable file
//! under `tests/receivers/` that the guide embeds verbatim: Node (Express with `express.raw`),
//! Python (standard library), Go (`net/http`) and Rust (actix-web). Each gets real deliveries
//! from the app and must verify both `X-Signature` and the Standard Webhooks headers, refuse a
//! webhook whose secret it does not know, a stale timestamp and a changed body, and keep
//! verifying with the old secret while a rotation overlaps. `hookrelay verify`, which the guide
//! recommends for debugging, is checked against a saved real delivery.
//!
//! Node, Python and Go are required under `CI`; locally a missing tool's tests are ignored with
//! what to install (build.rs looks for the tools).

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[path = "../receivers/rust_receiver.rs"]
mod rust_receiver;

/// The guide, relative to the crate root.
const GUIDE: &str = "docs/receiving.md";

/// The receivers the guide must embed verbatim, relative to the crate root.
const RECEIVER_FILES: [&str; 4] = [
    "tests/receivers/node-express-raw.js",
    "tests/receivers/python_receiver.py",
    "tests/receivers/go/main.go",
    "tests/receivers/rust_receiver.rs",
];

/// A target name every receiver must read back after verifying: unicode and JSON escapes.
const TARGET_NAME: &str = "Zoë \"Q\" \\ 𝄞 \u{2028} ☃";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone, Copy)]
enum Lang {
    Node,
    Python,
    Go,
    Rust,
}

/// Whether `tool` runs (build.rs saw it, but it may be gone since, or the test was run with
/// `--ignored`); under CI its absence fails the test.
fn tool_or_skip(tool: &str, version_args: &[&str], install: &str, what: &str) -> bool {
    let ok = Command::new(tool)
        .args(version_args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "{what} needs `{tool}`, which CI must install (.ci/run: {install})"
        );
        eprintln!("SKIPPED {what}: `{tool}` is not installed ({install})");
    }
    ok
}

/// Whether everything `lang`'s receiver needs is installed (skip message printed if not).
fn available(lang: Lang) -> bool {
    match lang {
        Lang::Node => {
            if !tool_or_skip(
                "node",
                &["--version"],
                "apt-get install -y nodejs npm",
                "the Node receiver test",
            ) {
                return false;
            }
            if !root().join("tests/receivers/node_modules/express").exists() {
                assert!(
                    std::env::var("CI").is_err(),
                    "express is not installed: .ci/run must run `npm ci --prefix tests/receivers`"
                );
                eprintln!(
                    "SKIPPED the Node receiver test: run `npm ci --prefix tests/receivers` first"
                );
                return false;
            }
            true
        }
        Lang::Python => tool_or_skip(
            "python3",
            &["--version"],
            "apt-get install -y python3",
            "the Python receiver test",
        ),
        Lang::Go => tool_or_skip(
            "go",
            &["version"],
            "apt-get install -y golang-go",
            "the Go receiver test",
        ),
        Lang::Rust => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Running a receiver
// ---------------------------------------------------------------------------------------------

/// A receiver under test, listening on loopback at `url`.
struct Receiver {
    url: String,
    running: Running,
}

enum Running {
    Process {
        child: Child,
        log: Arc<Mutex<Vec<String>>>,
    },
    InProcess(actix_web::dev::ServerHandle),
}

impl Receiver {
    /// What the receiver printed so far (for failure messages).
    fn log(&self) -> String {
        match &self.running {
            Running::Process { log, .. } => log.lock().map(|l| l.join("\n")).unwrap_or_default(),
            Running::InProcess(_) => "(in-process: see the test's captured output)".into(),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        match &mut self.running {
            Running::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::InProcess(handle) => {
                // The stop command is sent at once; nothing needs to wait for it.
                drop(handle.stop(false));
            }
        }
    }
}

/// Collects a child's output lines into `log`, sending its `listening on http://ADDR` address.
fn collect_lines(
    out: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let (Some(tx), Some(addr)) = (&tx, line.strip_prefix("listening on http://")) {
                let _ = tx.send(addr.trim().to_string());
            }
            if let Ok(mut l) = log.lock() {
                l.push(line);
            }
        }
    });
}

/// Spawns a receiver process with `PORT=0` and waits for the address it prints.
async fn spawn_receiver(mut cmd: Command, secret: &str, whsec: &str, what: &str) -> Receiver {
    let mut child = cmd
        .env("WEBHOOK_SECRET", secret)
        .env("WEBHOOK_SECRET_WHSEC", whsec)
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start the {what}: {e}"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    collect_lines(
        child.stdout.take().expect("stdout"),
        Arc::clone(&log),
        Some(tx),
    );
    collect_lines(child.stderr.take().expect("stderr"), Arc::clone(&log), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(addr) = rx.try_recv() {
            break addr;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            // Let the readers catch the last lines.
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!(
                "the {what} exited ({status}) before listening; output:\n{}",
                log.lock().map(|l| l.join("\n")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the {what} did not print its address within 30 s; output:\n{}",
            log.lock().map(|l| l.join("\n")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    Receiver {
        url: format!("http://{addr}/webhooks/hookrelay"),
        running: Running::Process { child, log },
    }
}

/// `go build`s the Go receiver into the target folder, offline, and returns the binary.
async fn build_go_receiver() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = tmp.join("hookrelay-go-receiver");
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(root().join("tests/receivers/go"))
        .env("GOCACHE", tmp.join("go-cache"))
        .env("GOPATH", tmp.join("go-path"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of tests/receivers/go failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Starts `lang`'s receiver knowing the secret `secret` (hex) / `whsec` (its `whsec_` form).
async fn start_receiver(lang: Lang, secret: &str, whsec: &str) -> Receiver {
    let dir = root().join("tests/receivers");
    match lang {
        Lang::Node => {
            let mut cmd = Command::new("node");
            cmd.arg(dir.join("node-express-raw.js"));
            spawn_receiver(cmd, secret, whsec, "Node receiver").await
        }
        Lang::Python => {
            let mut cmd = Command::new("python3");
            cmd.arg(dir.join("python_receiver.py"));
            spawn_receiver(cmd, secret, whsec, "Python receiver").await
        }
        Lang::Go => {
            let cmd = Command::new(build_go_receiver().await);
            spawn_receiver(cmd, secret, whsec, "Go receiver").await
        }
        Lang::Rust => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let secret = rust_receiver::Secret::new(secret, whsec).expect("secret forms");
            let server = rust_receiver::serve(listener, secret).expect("serve");
            let handle = server.handle();
            tokio::spawn(server);
            Receiver {
                url: format!("http://{addr}/webhooks/hookrelay"),
                running: Running::InProcess(handle),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The app side
// ---------------------------------------------------------------------------------------------

async fn update_webhook(app: &TestApp, id: &str, body: Value) {
    let res = app
        .client
        .put(app.url(&format!("/v1beta1/admin/webhooks/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_json(res, StatusCode::OK).await;
}

fn event_with(metadata: Value) -> Value {
    json!({"action": "app.user.created", "data": {
        "actor": {"id": "user_1", "type": "user", "name": "a@example.com"},
        "target": {"id": "user_2", "type": "user", "name": TARGET_NAME},
        "org_id": "org_1",
        "metadata": metadata
    }})
}

/// Metadata with unicode, escapes and floats: bodies a careless receiver would re-encode.
fn tricky_metadata() -> [Value; 3] {
    [
        json!({"floats": [1.0, 1.5, -0.0, 0.1, 2.5e-7, 1e21, 1.234_567_890_123_456_7e300, 1_694_046_470.93]}),
        json!({"text": "quote \" backslash \\ slash / newline \n tab \t bell \u{7} del \u{7f} sep \u{2028}\u{2029} é ☃ 𝄞 <script>alert(1)</script>"}),
        json!({"2": "b", "1": "a", "x": {"10": 1, "9": 2.50, "y": null}, "emoji": "👩‍💻", "ints": [0, -1, 9_007_199_254_740_991_u64]}),
    ]
}

/// Waits until every delivery of `event_id` has settled, returning their details (with attempts).
async fn settled_deliveries(app: &TestApp, event_id: &str, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        &format!("the {n} deliveries of {event_id} to settle"),
        || async {
            let list = app
                .get_json(
                    &format!("/v1beta1/admin/deliveries?event_id={event_id}"),
                    StatusCode::OK,
                )
                .await["deliveries"]
                .as_array()
                .expect("deliveries")
                .clone();
            if list.len() != n || list.iter().any(|d| d["state"] == "pending") {
                return None;
            }
            let mut details = Vec::new();
            for d in &list {
                let id = d["id"].as_str().expect("id");
                details.push(
                    app.get_json(&format!("/v1beta1/admin/deliveries/{id}"), StatusCode::OK)
                        .await["delivery"]
                        .clone(),
                );
            }
            Some(details)
        },
    )
    .await
}

/// The receiver's JSON answer to a delivery's last attempt.
fn answer_of(delivery: &Value) -> Value {
    let attempts = delivery["attempts"].as_array().expect("attempts");
    let body = attempts.last().expect("an attempt")["response_body"]
        .as_str()
        .unwrap_or_else(|| panic!("no response body: {delivery}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {body}"))
}

fn verified_answer(secret_id: &str, event_id: &str) -> Value {
    json!({
        "verified": ["x-signature", "webhook-signature"],
        "secret_id": secret_id,
        "webhook_id": event_id,
        "action": "app.user.created",
        "target": TARGET_NAME,
    })
}

// ---------------------------------------------------------------------------------------------
// Forged requests straight to a receiver
// ---------------------------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn x_sig(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, &[body]))
}

fn std_sig(key: &[u8], msg_id: &str, ts: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(key, &[format!("{msg_id}.{ts}.").as_bytes(), body]);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// One request signed by the test itself, and what the receiver must answer.
struct Forged {
    what: &'static str,
    body: String,
    x_signature: String,
    /// `webhook-timestamp` and `webhook-signature`, or none of the `webhook-*` headers.
    standard: Option<(i64, String)>,
    /// `None`: accepted; else the reason of the 401.
    refusal: Option<&'static str>,
}

/// What each receiver must accept and refuse, and why, sent straight to it.
async fn check_forged_requests(rx: &Receiver, key: &[u8], lang: Lang) {
    let other_key = [7u8; 32];
    let msg_id = "evt_forged";
    let body = serde_json::to_string(&json!({
        "id": msg_id, "created_at": "2024-03-03T10:30:00.000Z", "action": "app.user.created",
        "data": {"target": {"id": "user_2", "type": "user", "name": TARGET_NAME}, "source": "frontier", "metadata": {}}
    }))
    .expect("json");
    let b = body.as_bytes();
    let now = hookrelay::clock::now_ms() / 1000;
    let (old, ahead) = (now - 6 * 60, now + 6 * 60);
    let good_x = format!("1={}", x_sig(key, b));
    let good_std = Some((now, std_sig(key, msg_id, now, b)));
    let case =
        |what, body: &str, x_signature: &str, standard: &Option<(i64, String)>, refusal| Forged {
            what,
            body: body.to_string(),
            x_signature: x_signature.to_string(),
            standard: standard.clone(),
            refusal,
        };
    let cases = [
        case("everything right", &body, &good_x, &good_std, None),
        case(
            "a rotation: the known secret is the second entry of each header",
            &body,
            &format!("2={},{good_x}", x_sig(&other_key, b)),
            &Some((
                now,
                format!(
                    "{} {}",
                    std_sig(&other_key, msg_id, now, b),
                    std_sig(key, msg_id, now, b)
                ),
            )),
            None,
        ),
        case(
            "the body changed after signing",
            &body.replace("Zoë", "Zoe"),
            &good_x,
            &good_std,
            Some("no x-signature entry matches"),
        ),
        case(
            "X-Signature by another key",
            &body,
            &format!("1={}", x_sig(&other_key, b)),
            &good_std,
            Some("no x-signature entry matches"),
        ),
        case(
            "webhook-signature by another key",
            &body,
            &good_x,
            &Some((now, std_sig(&other_key, msg_id, now, b))),
            Some("no webhook-signature matches"),
        ),
        case(
            "webhook-timestamp changed after signing",
            &body,
            &good_x,
            &Some((now - 1, std_sig(key, msg_id, now, b))),
            Some("no webhook-signature matches"),
        ),
        case(
            "webhook-timestamp 6 minutes old (a replay)",
            &body,
            &good_x,
            &Some((old, std_sig(key, msg_id, old, b))),
            Some("webhook-timestamp is too far from now"),
        ),
        case(
            "webhook-timestamp 6 minutes ahead",
            &body,
            &good_x,
            &Some((ahead, std_sig(key, msg_id, ahead, b))),
            Some("webhook-timestamp is too far from now"),
        ),
        case(
            "no webhook-* headers",
            &body,
            &good_x,
            &None,
            Some("missing webhook-* headers"),
        ),
    ];
    let client = reqwest::Client::new();
    for Forged {
        what,
        body,
        x_signature,
        standard,
        refusal,
    } in cases
    {
        let mut req = client
            .post(&rx.url)
            .header("content-type", "application/json")
            .header("x-signature", x_signature);
        if let Some((ts, signature)) = standard {
            req = req
                .header("webhook-id", msg_id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature);
        }
        let res = req.body(body).send().await.expect("send");
        let status = res.status();
        let text = res.text().await.expect("body");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{lang:?} receiver, {what}: answer is not JSON ({e}): {text}")
        });
        match refusal {
            None => {
                assert_eq!(status, StatusCode::OK, "{lang:?} receiver, {what}: {text}");
                assert_eq!(answer, verified_answer("1", msg_id), "{lang:?}, {what}");
            }
            Some(reason) => {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{lang:?} receiver must refuse: {what}; it answered {text}"
                );
                assert_eq!(answer, json!({"error": reason}), "{lang:?}, {what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The story, for each language
// ---------------------------------------------------------------------------------------------

async fn a_receiver_verifies_real_deliveries(lang: Lang) {
    if !available(lang) {
        return;
    }
    let app = spawn_app_with(|c| {
        local_delivery(c);
        // Room for a first request to a cold interpreter on a busy machine.
        c.delivery.timeout = Duration::from_secs(10);
    })
    .await;
    // The receiver needs the secret, and the webhook its URL: create the webhooks disabled,
    // start the receiver with the first one's secret, then point both at it.
    let wh = create_webhook(
        &app,
        json!({"url": "http://127.0.0.1:9/later", "state": "disabled", "retry_schedule": []}),
    )
    .await;
    let other = create_webhook(
        &app,
        json!({"url": "http://127.0.0.1:9/later-too", "state": "disabled", "retry_schedule": []}),
    )
    .await;
    let wh_id = wh["id"].as_str().expect("id").to_string();
    let other_id = other["id"].as_str().expect("id").to_string();
    let secret = wh["secrets"][0]["value"].as_str().expect("hex");
    let whsec = wh["secrets"][0]["standard_webhooks"]
        .as_str()
        .expect("whsec");
    let key = hex::decode(secret).expect("hex");
    let rx = start_receiver(lang, secret, whsec).await;
    update_webhook(&app, &wh_id, json!({"url": rx.url, "state": "enabled"})).await;
    // A second endpoint on the same receiver, with a secret the receiver does not know.
    update_webhook(
        &app,
        &other_id,
        json!({"url": format!("{}?other=1", rx.url), "state": "enabled"}),
    )
    .await;

    for metadata in tricky_metadata() {
        let event = publish(&app, event_with(metadata)).await;
        let event_id = event["id"].as_str().expect("id");
        for d in settled_deliveries(&app, event_id, 2).await {
            if d["webhook_id"] == wh_id.as_str() {
                assert_eq!(
                    d["state"],
                    "succeeded",
                    "the {lang:?} receiver refused a real delivery: {d}\nreceiver output:\n{}",
                    rx.log()
                );
                assert_eq!(d["last_status"], 200);
                assert_eq!(answer_of(&d), verified_answer("1", event_id), "{d}");
            } else {
                assert_eq!(d["webhook_id"], other_id.as_str());
                assert_eq!(d["state"], "failed", "a wrong secret must be refused: {d}");
                assert_eq!(d["last_status"], 401, "{d}");
                assert_eq!(
                    answer_of(&d),
                    json!({"error": "no x-signature entry matches"})
                );
            }
        }
    }

    // Rotation: while the overlap lasts every delivery carries `2=…,1=…` and two `v1,…`
    // entries; the receiver, which knows only the old secret, still verifies.
    let rotated = assert_json(
        app.post(
            &format!("/v1beta1/admin/webhooks/{wh_id}/secrets"),
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rotated["webhook"]["secrets"][0]["id"], "2");
    let event = publish(
        &app,
        event_with(json!({"after": "rotation", "sum": 0.300_000_000_000_000_04})),
    )
    .await;
    let event_id = event["id"].as_str().expect("id");
    let mine = settled_deliveries(&app, event_id, 2)
        .await
        .into_iter()
        .find(|d| d["webhook_id"] == wh_id.as_str())
        .expect("delivery");
    assert_eq!(
        mine["state"],
        "succeeded",
        "the {lang:?} receiver with the old secret refused a delivery during the rotation: \
         {mine}\nreceiver output:\n{}",
        rx.log()
    );
    assert_eq!(answer_of(&mine), verified_answer("1", event_id));

    check_forged_requests(&rx, &key, lang).await;
}

#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn node_express_receiver_verifies_real_deliveries() {
    a_receiver_verifies_real_deliveries(Lang::Node).await;
}

#[tokio::test]
#[cfg_attr(missing_python3, ignore = "needs python3: apt-get install python3")]
async fn python_receiver_verifies_real_deliveries() {
    a_receiver_verifies_real_deliveries(Lang::Python).await;
}

#[tokio::test]
#[cfg_attr(missing_go, ignore = "needs Go: apt-get install golang-go")]
async fn go_receiver_verifies_real_deliveries() {
    let _heavy = heavy().await;
    a_receiver_verifies_real_deliveries(Lang::Go).await;
}

#[tokio::test]
async fn rust_receiver_verifies_real_deliveries() {
    a_receiver_verifies_real_deliveries(Lang::Rust).await;
}

// ---------------------------------------------------------------------------------------------
// hookrelay verify, as the guide tells people debugging a receiver to use it
// ---------------------------------------------------------------------------------------------

/// `hookrelay verify --secret S --signature X < body`: (exit code, stdout).
fn hookrelay_verify(secret: &str, signature: &str, body: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["verify", "--secret", secret, "--signature", signature])
        .stdin(std::fs::File::open(body).expect("body file"))
        .env_remove("HOOKRELAY_CONFIG")
        .output()
        .expect("run hookrelay verify");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn hookrelay_verify_checks_a_saved_delivery() {
    let app = delivery_app().await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(&app, json!({"url": rx.url("/debug")})).await;
    let id = wh["id"].as_str().expect("id");
    let secret = wh["secrets"][0]["value"].as_str().expect("hex").to_string();
    let whsec = wh["secrets"][0]["standard_webhooks"]
        .as_str()
        .expect("whsec")
        .to_string();
    let [metadata, ..] = tricky_metadata();
    publish(&app, event_with(metadata)).await;
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let header = |req: &wiremock::Request, name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .expect("header")
            .to_string()
    };
    let signature = header(&req, "x-signature");
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body.json");
    std::fs::write(&body, &req.body).expect("save body");

    let (code, out) = hookrelay_verify(&secret, &signature, &body);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature verifies"), "{out}");
    let (code, out) = hookrelay_verify(&whsec, &signature, &body);
    assert_eq!(code, 0, "the whsec_ form is the same key: {out}");

    let wrong = "ab".repeat(32);
    let (code, out) = hookrelay_verify(&wrong, &signature, &body);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does NOT verify"), "{out}");
    // It prints what the signature would be with that secret, to compare with the header.
    assert!(
        out.contains(&x_sig(&hex::decode(&wrong).expect("hex"), &req.body)),
        "{out}"
    );

    // A body changed by a parser and re-serializer (pretty-printed here) no longer verifies.
    let parsed: Value = serde_json::from_slice(&req.body).expect("json");
    let pretty = dir.path().join("pretty.json");
    std::fs::write(&pretty, serde_json::to_vec_pretty(&parsed).expect("json")).expect("write");
    let (code, _) = hookrelay_verify(&secret, &signature, &pretty);
    assert_eq!(code, 1);

    // During a rotation the header has two entries; the old secret still verifies.
    app.post(&format!("/v1beta1/admin/webhooks/{id}/secrets"), &json!({}))
        .await;
    publish(&app, event_with(json!({"n": 2}))).await;
    let (_, req) = rx.wait_for(2, Duration::from_secs(10)).await.remove(1);
    let signature = header(&req, "x-signature");
    assert!(
        signature.starts_with("2=") && signature.contains(",1="),
        "{signature}"
    );
    std::fs::write(&body, &req.body).expect("save body");
    let (code, out) = hookrelay_verify(&secret, &signature, &body);
    assert_eq!(code, 0, "{out}");
}

// ---------------------------------------------------------------------------------------------
// The guide shows exactly the code that is tested
// ---------------------------------------------------------------------------------------------

/// The guide's embedded files: every `<!-- embed: PATH -->` line followed by a fenced block.
fn embedded_blocks(guide: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- embed: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{GUIDE}: `{line}` must be followed by a ``` block, not `{fence}`"
        );
        let mut code = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        blocks.push((path.to_string(), code));
    }
    blocks
}

#[test]
fn the_guide_embeds_the_tested_receivers_verbatim() {
    let guide = std::fs::read_to_string(root().join(GUIDE)).expect("read the guide");
    let blocks = embedded_blocks(&guide);
    for file in RECEIVER_FILES {
        let on_disk = std::fs::read_to_string(root().join(file)).expect("read receiver");
        let shown: Vec<&String> = blocks
            .iter()
            .filter(|(p, _)| p == file)
            .map(|(_, c)| c)
            .collect();
        assert_eq!(
            shown.len(),
            1,
            "{GUIDE} must embed {file} once (<!-- embed: {file} --> then a ``` block)"
        );
        if *shown[0] != on_disk {
            let line = shown[0]
                .lines()
                .zip(on_disk.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "the length".to_string(), |i| format!("line {}", i + 1));
            panic!("{GUIDE}'s copy of {file} differs from the file at {line}: copy the file in");
        }
    }
    for (path, _) in &blocks {
        assert!(
            RECEIVER_FILES.contains(&path.as_str()),
            "{GUIDE} embeds {path}, which no test runs"
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split("## Verifying a delivery or a task call on the receiving side")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's verifying section");
    assert!(
        section.contains("(docs/receiving.md)"),
        "the README's verifying section links the guide"
    );
}

#[test]
#[cfg_attr(missing_python3, ignore = "needs python3: apt-get install python3")]
fn the_guides_flask_and_fastapi_adapters_are_valid_python() {
    if !available(Lang::Python) {
        return;
    }
    let guide = std::fs::read_to_string(root().join(GUIDE)).expect("read the guide");
    let mut snippets = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "<!-- python-snippet -->" {
            assert_eq!(lines.next(), Some("```python"), "{GUIDE}: a python block");
            let code: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            snippets.push(code.join("\n") + "\n");
        }
    }
    assert_eq!(snippets.len(), 2, "the Flask and FastAPI snippets");
    for code in snippets {
        assert!(code.contains("from python_receiver import InvalidSignature, verify"));
        let mut child = Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), code.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("python3");
        assert!(
            out.status.success(),
            "{GUIDE}: a Python snippet does not parse:\n{code}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
