//! The admin page in a real browser: Debian's Chromium driven through chromedriver (WebDriver)
//! with fantoccini. The on-call story — sign in, create a webhook and read its secret once, open
//! a failing delivery and its attempts, retry it, run a cron task — and hostile payloads that must
//! show as text and never run.
//!
//! Chromium and chromedriver are required under `CI=true` (`.ci/run` installs them); locally,
//! without them, these tests are ignored with what to install (build.rs looks for them).
//! Screenshots of every view go to `target/screenshots/`; with `HOOKRELAY_DOCS_SCREENSHOT=1` the
//! delivery detail is also written to `docs/admin-deliveries.png` for the README.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::front::{front_config, post_front};
use crate::helpers::*;

/// How long to wait for something to show in the page.
const UI_WAIT: Duration = Duration::from_secs(15);

/// The flags the issue asks for: headless, no sandbox (root in CI), nothing talking to the network.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,800",
];

/// One browser at a time: the machine has two cores, and each test starts its own Chromium.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or `None` (with a note) when they are not installed — removed since
/// build.rs looked, or a test run with `--ignored`. Under CI their absence fails the test instead.
fn browser_binaries(what: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium = which("chromium").or_else(|| which("chromium-browser"));
    let driver = which("chromedriver");
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    let missing = [("chromium", &chromium), ("chromedriver", &driver)]
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(" and ");
    assert!(
        std::env::var("CI").is_err(),
        "{what} needs {missing}, which CI must install (.ci/run: apt-get install -y chromium chromium-driver)"
    );
    eprintln!(
        "SKIPPED {what}: {missing} not found; install them with `apt-get install chromium chromium-driver`"
    );
    None
}

/// chromedriver's non-standard "read the browser log" command (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A chromedriver child process, a Chromium session on a fresh profile, and where screenshots go.
struct Browser {
    client: Client,
    driver: Child,
    profile: TempDir,
    shots: PathBuf,
    prefix: &'static str,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path, prefix: &'static str) -> Self {
        let port = free_port();
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(20), "chromedriver to be ready", || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let res = http.get(url).send().await.ok()?;
                let v: Value = res.json().await.ok()?;
                (v["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&base)
            .await
            .expect("a Chromium session through chromedriver");
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Self {
            client,
            driver,
            profile,
            shots,
            prefix,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Navigates inside the page by hash, as a click on a link would.
    async fn hash(&self, hash: &str) {
        self.client
            .execute("location.hash = arguments[0];", vec![json!(hash)])
            .await
            .expect("set hash");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` in the page: {e}"))
    }

    async fn find_xpath(&self, xpath: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no `{xpath}` in the page: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn click_button(&self, label: &str) {
        self.find_xpath(&format!(
            "//button[normalize-space()='{label}' and not(@disabled)]"
        ))
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click `{label}`: {e}"));
    }

    async fn click_link(&self, text: &str) {
        self.find_xpath(&format!("//a[normalize-space()='{text}']"))
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click link `{text}`: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// The visible text of the first `css`.
    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// Waits until the visible text of `css` contains `needle`; returns that text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + UI_WAIT;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot("failure").await;
                let view = match self.client.find(Locator::Css("body")).await {
                    Ok(el) => el.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!(
                    "`{css}` never showed `{needle}`; it shows: {text}\n\
                     the page ({}):\n{view}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no `css` is in the page.
    async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + UI_WAIT;
        while self.client.find(Locator::Css(css)).await.is_ok() {
            if Instant::now() >= deadline {
                let shot = self.screenshot("failure").await;
                panic!("`{css}` is still in the page ({})", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script `{script}`: {e}"))
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let file = self.shots.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&file, png).expect("write screenshot");
        file
    }

    /// Browser log entries (console, uncaught errors, CSP violations, failed loads) since the
    /// last call.
    async fn log(&self) -> Vec<Value> {
        match self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log")
        {
            Value::Array(entries) => entries,
            other => panic!("unexpected browser log: {other}"),
        }
    }

    /// Asserts the browser logged no error since the last look, except what `allowed` accepts.
    async fn assert_no_console_errors(&self, allowed: impl Fn(&Value) -> bool) {
        let errors: Vec<Value> = self
            .log()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .filter(|e| !allowed(e))
            .collect();
        assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    }

    async fn close(mut self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("closing the browser session: {e}");
        }
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium outlives a killed chromedriver; end the processes of this profile, by pid.
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&marker) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

/// The one expected log entry of a refused sign-in: Chromium reports the 401 of the check.
fn is_sign_in_401(e: &Value) -> bool {
    let msg = e["message"].as_str().unwrap_or_default();
    e["source"] == "network" && msg.contains("/v1beta1/admin/stats") && msg.contains("401")
}

async fn sign_in(b: &Browser, app: &TestApp) {
    b.goto(&app.url("/")).await;
    b.type_into("#signin-token", ADMIN_TOKEN).await;
    b.click("#signin-form button[type=submit]").await;
    b.wait_text("#view h1", "Overview").await;
}

fn sign(secret_hex: &str, body: &[u8]) -> String {
    let key = hex::decode(secret_hex).expect("hex secret");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------------

/// A cheap guard beside the browser tests: the page's script has no way to parse a string as
/// HTML or code, so nothing from a payload can become markup.
#[test]
fn the_admin_script_has_no_html_sinks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    for file in ["app.js", "index.html"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read static file");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "createContextualFragment",
            "srcdoc",
            "DOMParser",
        ] {
            assert!(!code.contains(sink), "{file} uses {sink}");
        }
    }
}

#[tokio::test]
#[cfg_attr(
    any(missing_chromium, missing_chromedriver),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn browser_on_call_story_from_sign_in_to_retry() {
    let _heavy = heavy().await;
    let Some((chromium, chromedriver)) = browser_binaries("the admin page browser test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    // No automatic retries: a failed first attempt stays failed until someone presses Retry.
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.delivery.retry_schedule = Vec::new();
    })
    .await;
    let rx = TestReceiver::start(vec![
        ResponseTemplate::new(500)
            .insert_header("x-request-id", "req_8f2c91")
            .set_body_json(json!({"error": "database is down", "request_id": "req_8f2c91"})),
        ResponseTemplate::new(200).set_body_json(json!({"received": true})),
    ])
    .await;
    let b = Browser::start(&chromium, &chromedriver, "story").await;

    // `/` redirects to the page, which asks for the token; a wrong one says so.
    b.goto(&app.url("/")).await;
    let url = b.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/admin", "{url}");
    b.find("#signin-token").await;
    b.screenshot("sign-in").await;
    b.type_into("#signin-token", "not-the-token").await;
    b.click("#signin-form button[type=submit]").await;
    b.wait_text("#signin-error", "Wrong token").await;
    assert!(b.find("#nav").await.is_displayed().await.is_ok_and(|d| !d));
    b.screenshot("sign-in-wrong-token").await;
    b.assert_no_console_errors(is_sign_in_401).await;

    b.type_into("#signin-token", ADMIN_TOKEN).await;
    b.click("#signin-form button[type=submit]").await;
    b.wait_text("#view h1", "Overview").await;
    let stored = b
        .eval("return sessionStorage.getItem('hookrelay.admin_token')")
        .await;
    assert_eq!(stored, ADMIN_TOKEN, "the token lives in sessionStorage");
    b.wait_text("#view", "queue depth").await;
    b.screenshot("overview-empty").await;

    // Create a webhook in the form; its secret is shown once, in both formats.
    b.click_link("Webhooks").await;
    b.wait_text("#view h1", "Webhooks").await;
    b.click_link("New webhook").await;
    b.type_into("#wh-url", &rx.url("/hooks/orders")).await;
    b.type_into("#wh-description", "Orders service").await;
    b.type_into("#wh-events", "app.user.*\napp.billing.*").await;
    b.type_into("#wh-headers", "X-Team: payments").await;
    b.screenshot("webhook-new").await;
    b.click("#webhook-create button[type=submit]").await;
    b.find("#secret-panel").await;
    let hex_secret = b
        .find("#secret-hex")
        .await
        .prop("value")
        .await
        .expect("value")
        .expect("a value");
    let whsec = b
        .find("#secret-whsec")
        .await
        .prop("value")
        .await
        .expect("value")
        .expect("a value");
    assert_eq!(hex_secret.len(), 64, "{hex_secret}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(whsec.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64");
    assert_eq!(hex::encode(raw), hex_secret, "both formats, one key");
    b.find_xpath("//button[normalize-space()='Copy hex']").await;
    b.find_xpath("//button[normalize-space()='Copy whsec_']")
        .await;
    b.screenshot("webhook-secret-once").await;
    let webhook_id = b
        .client
        .current_url()
        .await
        .expect("url")
        .fragment()
        .unwrap_or_default()
        .trim_start_matches("/webhooks/")
        .to_string();
    assert!(webhook_id.starts_with("wh_"), "{webhook_id}");
    // Shown once: the same view again has no secret.
    b.click_link("Webhooks").await;
    b.wait_text("#view", "Orders service").await;
    b.click_link(&rx.url("/hooks/orders")).await;
    b.wait_text("#view", "X-Team: payments").await;
    assert!(
        b.client.find(Locator::Css("#secret-panel")).await.is_err(),
        "the secret is shown only once"
    );

    // An event to the failing receiver: the delivery fails with the receiver's 500.
    let published = publish(
        &app,
        json!({"action": "app.user.created", "data": {
            "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
            "target": {"id": "user_xyz789", "type": "user", "name": "Jane Doe"},
            "org_id": "org_123abc", "metadata": {"plan": "team"}}}),
    )
    .await;
    let event_id = published["id"].as_str().expect("event id").to_string();
    let delivery = wait_until(UI_WAIT, "the delivery to fail", || async {
        let list = app
            .get_json(
                &format!("/v1beta1/admin/deliveries?event_id={event_id}"),
                StatusCode::OK,
            )
            .await;
        let d = list["deliveries"][0].clone();
        (d["state"] == "failed").then_some(d)
    })
    .await;
    let delivery_id = delivery["id"].as_str().expect("id").to_string();
    // The receiver got a delivery signed with the secret the page showed.
    let got = rx.wait_for(1, UI_WAIT).await;
    let signature = got[0]
        .1
        .headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        signature,
        format!("1={}", sign(&hex_secret, &got[0].1.body))
    );

    // Two clicks from opening the page: the overview lists the failure; one click opens it.
    b.click_link("Overview").await;
    b.wait_text("#view", &delivery_id).await;
    b.wait_text(".stats", "failed deliveries, last hour").await;
    b.screenshot("overview-failing").await;
    b.click_link(&delivery_id).await;
    let attempts = b.wait_text("#attempts", "database is down").await;
    assert!(attempts.contains("500"), "{attempts}");
    assert!(
        attempts.contains("req_8f2c91"),
        "response headers shown: {attempts}"
    );
    let page = b.text("#view").await;
    assert!(page.contains("failed"), "{page}");
    assert!(page.contains("Jane Doe"), "the envelope is shown: {page}");
    b.screenshot("delivery-failed").await;

    // The receiver is back (its script answers 200 now): Retry, and the page shows the success.
    b.click_button("Retry").await;
    b.wait_text(".title-row", "succeeded").await;
    let attempts = b.wait_text("#attempts", "200").await;
    assert!(
        attempts.contains("500"),
        "the failed attempt stays: {attempts}"
    );
    assert!(attempts.contains("received"), "{attempts}");
    // Tall enough to show both attempts with their bodies.
    b.client.set_window_size(1280, 1240).await.expect("resize");
    b.wait_text("#attempts", "database is down").await;
    let shot = b.screenshot("delivery-retried").await;
    b.client.set_window_size(1280, 800).await.expect("resize");
    if std::env::var("HOOKRELAY_DOCS_SCREENSHOT").is_ok() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs folder");
        std::fs::copy(&shot, docs.join("admin-deliveries.png")).expect("copy screenshot");
    }
    let d = app
        .get_json(
            &format!("/v1beta1/admin/deliveries/{delivery_id}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(d["delivery"]["state"], "succeeded", "{d}");

    // The deliveries list, filtered by webhook and state through the form; the hash keeps it.
    b.click_link("Deliveries").await;
    b.wait_text("#view", &delivery_id).await;
    b.find("#filter-webhook_id")
        .await
        .select_by_value(&webhook_id)
        .await
        .expect("select webhook");
    b.find("#filter-state")
        .await
        .select_by_value("succeeded")
        .await
        .expect("select state");
    b.click_button("Filter").await;
    b.wait_text("#view", &delivery_id).await;
    let url = b.client.current_url().await.expect("url");
    let fragment = url.fragment().unwrap_or_default();
    assert!(
        fragment.contains("state=succeeded") && fragment.contains(&webhook_id),
        "{url}"
    );
    b.screenshot("deliveries").await;

    // Back button: back to the unfiltered list, then the delivery.
    b.client.back().await.expect("back");
    b.client.back().await.expect("back");
    b.wait_text("#view h1", &format!("Delivery {delivery_id}"))
        .await;

    // The event and its deliveries.
    b.hash(&format!("#/events/{event_id}")).await;
    b.wait_text("#view", "user_xyz789").await;
    b.screenshot("event").await;

    // Send a test event from the webhook's page.
    b.hash(&format!("#/webhooks/{webhook_id}")).await;
    b.click_button("Send test event").await;
    b.wait_text("#view", "webhook.test").await;

    // Edit its subscriptions; rotate its secret (shown once again, with the next id).
    b.hash(&format!("#/webhooks/{webhook_id}")).await;
    b.wait_text("#view h1", "/hooks/orders").await;
    b.type_into(
        "#wh-events",
        "app.user.*\napp.billing.*\napp.organization.*",
    )
    .await;
    b.click("#webhook-edit button[type=submit]").await;
    b.wait_text("#flash", "Saved: subscribed_events").await;
    b.wait_text("#view .facts", "app.organization.*").await;
    b.click_button("Rotate secret").await;
    b.click_button("Rotate").await;
    b.wait_text("#secret-panel", "New signing secret (id 2)")
        .await;
    let w = app
        .get_json(
            &format!("/v1beta1/admin/webhooks/{webhook_id}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        w["webhook"]["subscribed_events"],
        json!(["app.user.*", "app.billing.*", "app.organization.*"])
    );
    assert_eq!(w["webhook"]["secrets"][0]["id"], "2", "{w}");
    b.screenshot("webhook").await;

    // Delete another webhook, after saying yes in the confirmation.
    let spare = TestReceiver::ok().await;
    let other = create_webhook(&app, json!({"url": spare.url("/spare")})).await;
    let other_id = other["id"].as_str().expect("id");
    b.hash(&format!("#/webhooks/{other_id}")).await;
    b.wait_text("#view h1", "/spare").await;
    b.click_button("Delete…").await;
    b.find("dialog[open]").await;
    b.screenshot("webhook-delete-confirm").await;
    b.click_button("Cancel").await;
    b.click_button("Delete…").await;
    b.click_button("Delete webhook").await;
    b.wait_text("#flash", "Deleted").await;
    b.wait_text("#view h1", "Webhooks").await;
    assert_error(
        app.get(&format!("/v1beta1/admin/webhooks/{other_id}"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Cron: run one now and see its run.
    b.click_link("Cron").await;
    b.wait_text("#view", "endpoint_health").await;
    b.find("button[data-cron=endpoint_health]")
        .await
        .click()
        .await
        .expect("run now");
    b.wait_text("#flash", "queued to run now").await;
    b.click_link("endpoint_health").await;
    let runs = b.wait_text("#view table", "succeeded").await;
    assert!(runs.contains("manual"), "{runs}");
    b.screenshot("cron-runs").await;
    b.click_link("Cron").await;
    b.wait_text("#view table", "succeeded").await;
    b.screenshot("cron").await;

    // Jobs, inbound and the audit log, which recorded what was done here.
    b.click_link("Jobs").await;
    b.wait_text("#view", "delivery.send").await;
    b.screenshot("jobs").await;
    b.click_link("Inbound").await;
    b.wait_text("#view h1", "Inbound").await;
    b.screenshot("inbound-empty").await;
    b.click_link("Audit log").await;
    let audit = b.wait_text("#view table", "delivery.retry").await;
    for action in ["webhook.create", "cron.run", "webhook.test"] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    b.screenshot("audit").await;
    b.click_link("Webhooks").await;
    b.wait_text("#view", "Orders service").await;
    b.screenshot("webhooks").await;

    // A narrow window: nothing wider than the window.
    b.client.set_window_size(420, 800).await.expect("resize");
    b.hash(&format!("#/deliveries/{delivery_id}")).await;
    b.wait_text("#attempts", "200").await;
    let overflow = b
        .eval("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "overflows by {overflow}px"
    );
    b.screenshot("delivery-narrow").await;
    b.client.set_window_size(1280, 800).await.expect("resize");

    // Keyboard: the first Tab lands on the skip link, and then the navigation.
    b.hash("#/").await;
    b.client.refresh().await.expect("reload");
    b.wait_text("#view h1", "Overview").await;
    let tab = char::from(Key::Tab);
    b.client
        .perform_actions(
            KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab }),
        )
        .await
        .expect("tab");
    let active = b
        .eval("return document.activeElement.textContent.trim()")
        .await;
    assert_eq!(active, "Skip to content");

    // Sign out forgets the token.
    b.click("#signout").await;
    b.find("#signin-token").await;
    let stored = b
        .eval("return sessionStorage.getItem('hookrelay.admin_token')")
        .await;
    assert_eq!(stored, Value::Null);

    b.assert_no_console_errors(|_| false).await;
    b.close().await;
}

/// A Front message and a published event whose fields hold markup, and a receiver answering
/// with markup: all of it must show literally, and none of it may run.
#[tokio::test]
#[cfg_attr(
    any(missing_chromium, missing_chromedriver),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn browser_hostile_payloads_render_as_text() {
    let _heavy = heavy().await;
    const IMG: &str = r#"<img src=x onerror="window.__xss=1;document.title='pwned'">"#;
    const SCRIPT: &str = "<script>window.__xss=2;document.title='pwned'</script>";
    const SVG: &str = r#"<svg onload="window.__xss=3"></svg>"#;
    let Some((chromium, chromedriver)) = browser_binaries("the admin page XSS test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;

    // Front's API answers the fetch of a preview's message with markup everywhere.
    let front = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/messages/msg_xss"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_links": {"self": "x"}, "id": "msg_xss", "type": "email", "is_inbound": true,
            "subject": SCRIPT, "blurb": SVG, "body": IMG, "author": null,
            "recipients": [{"handle": "mallory@example.com", "role": "from", "name": IMG}]
        })))
        .mount(&front)
        .await;
    Mock::given(method("GET"))
        .and(path("/conversations/cnv_xss"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_links": {"self": "x"}, "id": "cnv_xss", "subject": SCRIPT, "status": "unassigned"
        })))
        .mount(&front)
        .await;
    let app = spawn_app_with(|c| {
        local_delivery(c);
        front_config(c, Some(&front));
        c.delivery.retry_schedule = Vec::new();
    })
    .await;
    let rx = TestReceiver::start(vec![
        ResponseTemplate::new(500)
            .insert_header("x-evil", SVG)
            .set_body_string(format!("upstream said {IMG} and {SCRIPT}")),
    ])
    .await;
    let webhook = create_webhook(
        &app,
        json!({"url": rx.url("/hook"), "description": SCRIPT, "headers": {"X-Note": IMG}}),
    )
    .await;
    let webhook_id = webhook["id"].as_str().expect("id").to_string();

    // A published event with markup in every field a person reads.
    let published = publish(
        &app,
        json!({"action": "app.user.created", "data": {
            "actor": {"id": "user_1", "type": "user", "name": IMG},
            "target": {"id": "user_2", "type": "user", "name": SCRIPT},
            "org_id": "org_1", "metadata": {"note": SVG, "html": IMG}}}),
    )
    .await;
    let event_id = published["id"].as_str().expect("id").to_string();

    // A Front preview: the message is fetched from the API above.
    let body = json!({
        "authorization": {"id": "cmp_acme"},
        "type": "inbound_received",
        "payload": {
            "id": "evt_xss", "type": "inbound", "emitted_at": 1_694_046_470.93,
            "conversation": {"_links": {"self": format!("{}/conversations/cnv_xss", front.uri())}, "id": "cnv_xss"},
            "source": {"_meta": {"type": "inboxes"}, "data": {"id": "inb_3srbb", "name": SVG}},
            "target": {"_meta": {"type": "message"}, "_links": {"self": format!("{}/messages/msg_xss", front.uri())}, "id": "msg_xss"}
        }
    });
    assert_json(
        post_front(&app.client, &app.address, &body).await,
        StatusCode::OK,
    )
    .await;
    let inbound = wait_until(UI_WAIT, "the Front event to be processed", || async {
        let v = app.get_json("/v1beta1/admin/inbound", StatusCode::OK).await;
        let x = v["inbound"][0].clone();
        (x["state"] == "processed").then_some(x)
    })
    .await;
    let inbound_id = inbound["id"].as_str().expect("id").to_string();
    // Both events' deliveries have failed with the receiver's markup.
    let deliveries = wait_until(UI_WAIT, "two failed deliveries", || async {
        let v = app
            .get_json("/v1beta1/admin/deliveries?state=failed", StatusCode::OK)
            .await;
        let list = v["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some(list)
    })
    .await;
    let delivery_of = |event: &str| {
        deliveries
            .iter()
            .find(|d| d["event_id"] == event)
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("a delivery of {event}: {deliveries:?}"))
            .to_string()
    };
    let published_delivery = delivery_of(&event_id);
    let front_event = deliveries
        .iter()
        .find(|d| d["action"] == "front.inbound_received")
        .expect("the Front event's delivery");
    let front_delivery = front_event["id"].as_str().expect("id").to_string();
    let front_event_id = front_event["event_id"].as_str().expect("id").to_string();

    let b = Browser::start(&chromium, &chromedriver, "xss").await;
    sign_in(&b, &app).await;
    let title = b.eval("return document.title").await;

    let views = [
        ("overview", "#/".to_string(), published_delivery.clone()),
        (
            "xss-delivery",
            format!("#/deliveries/{published_delivery}"),
            "upstream said".into(),
        ),
        (
            "xss-front-delivery",
            format!("#/deliveries/{front_delivery}"),
            "msg_xss".into(),
        ),
        ("xss-event", format!("#/events/{event_id}"), "user_2".into()),
        (
            "xss-front-event",
            format!("#/events/{front_event_id}"),
            "msg_xss".into(),
        ),
        (
            "xss-inbound",
            format!("#/inbound/{inbound_id}"),
            "mallory@example.com".into(),
        ),
        ("xss-inbound-list", "#/inbound".into(), inbound_id.clone()),
        (
            "xss-webhook",
            format!("#/webhooks/{webhook_id}"),
            "X-Note".into(),
        ),
        ("xss-webhooks", "#/webhooks".into(), "every action".into()),
        (
            "xss-deliveries",
            "#/deliveries".into(),
            front_delivery.clone(),
        ),
        ("xss-audit", "#/audit".into(), "webhook.create".into()),
    ];
    for (name, hash, marker) in views {
        b.hash(&hash).await;
        b.wait_text("#view", &marker).await;
        // Give anything that would run a moment to run.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            b.eval("return typeof window.__xss").await,
            "undefined",
            "markup ran on {hash}"
        );
        let now_title = b.eval("return document.title").await;
        assert!(
            !now_title.as_str().unwrap_or_default().contains("pwned"),
            "the title changed on {hash}: {now_title}"
        );
        let counts = b
            .eval("return [document.querySelectorAll('#view img, #view svg, #view script, #view iframe').length, document.scripts.length]")
            .await;
        assert_eq!(counts, json!([0, 1]), "elements made from data on {hash}");
        b.screenshot(name).await;
    }
    assert_ne!(title, Value::Null);

    // The markup is there, as text.
    b.hash(&format!("#/deliveries/{published_delivery}")).await;
    b.wait_text("#attempts", "upstream said").await;
    let attempts = b.text("#attempts").await;
    assert!(
        attempts.contains(IMG) && attempts.contains(SCRIPT),
        "{attempts}"
    );
    assert!(
        attempts.contains(SVG),
        "the response header, as text: {attempts}"
    );
    let page = b
        .eval("return document.getElementById('view').textContent")
        .await;
    assert!(
        page.as_str()
            .unwrap_or_default()
            .contains("window.__xss=1;document.title='pwned'"),
        "{page}"
    );
    b.hash(&format!("#/inbound/{inbound_id}")).await;
    b.wait_text("#view", "mallory@example.com").await;
    let page = b
        .eval("return document.getElementById('view').textContent")
        .await;
    let page = page.as_str().unwrap_or_default();
    // JSON.stringify escapes the quotes inside the strings; the markup itself is intact.
    assert!(page.contains("<img src=x onerror="), "{page}");
    assert!(page.contains(SCRIPT), "{page}");
    assert!(page.contains("<svg onload="), "{page}");
    assert!(page.contains("Fetched from Front"), "{page}");
    b.screenshot("xss-inbound-detail").await;

    b.assert_no_console_errors(|_| false).await;
    b.close().await;
}

/// Stripe's scheme: hex HMAC-SHA256 keyed with the whole secret string, over `"{t}.{body}"`.
fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe source: the Sources view gives the URL to paste into Stripe and counts what came
/// and what was refused; the Rejected view shows a forged request, its markup as text, and
/// filters by cause; both link to each other and to the source's inbound events.
#[tokio::test]
#[cfg_attr(
    any(missing_chromium, missing_chromedriver),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn browser_sources_and_rejected_requests() {
    let _heavy = heavy().await;
    const SECRET: &str = "whsec_test_secret";
    const MARKUP: &str = "<img src=x onerror=alert(1)><b>bold</b>";
    const AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
    let Some((chromium, chromedriver)) = browser_binaries("the sources browser test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app_with(|c| {
        c.sources = hookrelay::config::from_toml_str(&format!(
            "[sources.stripe]\npreset = \"stripe\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap()
        .sources;
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;

    // One event signed as Stripe signs it, and one forged request carrying markup.
    let good = br#"{"id":"evt_browser_1","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;
    let res = app
        .client
        .post(app.url("/webhooks/in/stripe"))
        .header("Content-Type", "application/json")
        .header("User-Agent", AGENT)
        .header("Stripe-Signature", stripe_signature(SECRET, now, good))
        .body(good.to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true})
    );
    let forged_sig = stripe_signature("whsec_not_the_secret", now, MARKUP.as_bytes());
    let forged = format!("{{\"id\":\"evt_forged\",\"note\":\"{MARKUP}\"}}");
    let res = app
        .client
        .post(app.url("/webhooks/in/stripe"))
        .header("Content-Type", "text/html")
        .header("User-Agent", AGENT)
        .header("Stripe-Signature", &forged_sig)
        .body(forged.clone())
        .send()
        .await
        .expect("request");
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_signature").await;
    let rejected = wait_until(UI_WAIT, "the forged request to be recorded", || async {
        let v = app
            .get_json("/v1beta1/admin/rejected?source=stripe", StatusCode::OK)
            .await;
        v["rejected"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    wait_until(UI_WAIT, "the Stripe event to be processed", || async {
        let v = app
            .get_json("/v1beta1/admin/inbound?source=stripe", StatusCode::OK)
            .await;
        (v["inbound"][0]["state"] == "processed").then_some(())
    })
    .await;

    let b = Browser::start(&chromium, &chromedriver, "sources").await;
    sign_in(&b, &app).await;

    // Sources: the URL to paste into Stripe, and the counts.
    b.click_link("Sources").await;
    b.wait_text("#view h1", "Sources").await;
    let card = "#view [data-source=stripe]";
    let text = b.wait_text(card, "stripe").await;
    assert!(text.contains("enabled"), "{text}");
    let url = b
        .find("#source-stripe-url")
        .await
        .prop("value")
        .await
        .expect("value")
        .expect("a value");
    assert_eq!(url, app.url("/webhooks/in/stripe"));
    assert!(url.ends_with("/webhooks/in/stripe"), "{url}");
    let label = b.text("label[for=source-stripe-url]").await.to_lowercase();
    assert!(label.contains("url"), "the URL field has a label: {label}");
    b.find_xpath("//section[@data-source='stripe']//button[normalize-space()='Copy URL']")
        .await;
    for (count, want) in [
        ("hour-received", "1"),
        ("hour-duplicate", "0"),
        ("hour-rejected", "1"),
        ("day-received", "1"),
        ("day-rejected", "1"),
    ] {
        let got = b.text(&format!("{card} [data-count={count}]")).await;
        assert_eq!(got, want, "{count}");
    }
    let nav = b.text("#nav a[aria-current=page]").await;
    assert_eq!(nav, "Sources");
    b.screenshot("sources").await;

    // Its inbound events: the inbound view filtered by the source.
    b.find_xpath("//section[@data-source='stripe']//a[normalize-space()='Inbound events →']")
        .await
        .click()
        .await
        .expect("click inbound events");
    b.wait_text("#view h1", "Inbound events from stripe").await;
    let list = b.wait_text("#view table", "evt_browser_1").await;
    assert!(list.contains("payment_intent.succeeded"), "{list}");
    let url = b.client.current_url().await.expect("url");
    assert!(
        url.fragment().unwrap_or_default().contains("source=stripe"),
        "{url}"
    );
    b.screenshot("sources-inbound").await;

    // Its rejected requests: the forged one, its markup as text.
    b.client.back().await.expect("back");
    b.find_xpath("//section[@data-source='stripe']//a[normalize-space()='Rejected requests →']")
        .await
        .click()
        .await
        .expect("click rejected requests");
    b.wait_text("#view h1", "Rejected requests from stripe")
        .await;
    let row = format!("#view tr[data-rejected='{rejected}']");
    let text = b.wait_text(&row, "invalid_signature").await;
    for needle in [
        "POST /webhooks/in/stripe",
        "127.0.0.1",
        AGENT,
        "text/html",
        &format!("{} bytes", forged.len()),
        "stripe-signature",
        forged_sig.as_str(),
        "<b>bold</b>",
        MARKUP,
    ] {
        assert!(
            text.contains(needle),
            "`{needle}` missing in the row: {text}"
        );
    }
    let made = b
        .eval(&format!(
            "const row = document.querySelector(\"tr[data-rejected='{rejected}']\");\
             return [row.querySelectorAll('img, b').length, document.querySelectorAll('#view img, #view b').length, row.querySelector('pre').textContent]"
        ))
        .await;
    assert_eq!(made[0], 0, "elements made from the body: {made}");
    assert_eq!(made[1], 0, "elements made from the body: {made}");
    assert!(
        made[2].as_str().unwrap_or_default().contains("<b>bold</b>"),
        "{made}"
    );
    b.screenshot("rejected").await;

    // The cause filter, from the unfiltered list in the navigation.
    b.click_link("Rejected").await;
    b.wait_text("#view h1", "Rejected requests").await;
    b.wait_text("#view table", "invalid_signature").await;
    b.find("#filter-cause")
        .await
        .select_by_value("timestamp_out_of_range")
        .await
        .expect("select cause");
    b.click_button("Filter").await;
    b.wait_text("#view", "No rejected requests match.").await;
    let url = b.client.current_url().await.expect("url");
    assert!(
        url.fragment()
            .unwrap_or_default()
            .contains("cause=timestamp_out_of_range"),
        "{url}"
    );
    assert!(
        b.client
            .find(Locator::Css("#view tr.rejected"))
            .await
            .is_err()
    );
    b.find("#filter-cause")
        .await
        .select_by_value("invalid_signature")
        .await
        .expect("select cause");
    b.find("#filter-source")
        .await
        .select_by_value("stripe")
        .await
        .expect("select source");
    b.click_button("Filter").await;
    b.wait_text(&row, "invalid_signature").await;
    let url = b.client.current_url().await.expect("url");
    let fragment = url.fragment().unwrap_or_default();
    assert!(
        fragment.contains("cause=invalid_signature") && fragment.contains("source=stripe"),
        "{url}"
    );
    b.find("#filter-source")
        .await
        .select_by_value("front")
        .await
        .expect("select source");
    b.click_button("Filter").await;
    b.wait_text("#view", "No rejected requests match.").await;

    // A narrow window: the sources view fits.
    b.client.set_window_size(420, 800).await.expect("resize");
    b.hash("#/sources").await;
    b.wait_text(card, "stripe").await;
    let overflow = b
        .eval("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "overflows by {overflow}px"
    );
    b.screenshot("sources-narrow").await;
    b.client.set_window_size(1280, 800).await.expect("resize");

    b.assert_no_console_errors(|_| false).await;
    b.close().await;
}

/// Tasks and schedules: the Tasks view lists a succeeded and a failed task; the failed one's
/// detail shows its attempt and its markup as text, and Retry calls it again; a delayed task is
/// cancelled from the page, and a cancel that comes too late shows the API's 409. The Schedules
/// view shows a config schedule with its next five ticks; Pause, Resume and Run now work, and the
/// run appears in its detail, one click from its task.
#[tokio::test]
#[cfg_attr(
    any(missing_chromium, missing_chromedriver),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn browser_tasks_and_schedules() {
    let _heavy = heavy().await;
    const MARKUP: &str = "<img src=x onerror=alert(1)>";
    let Some((chromium, chromedriver)) = browser_binaries("the tasks browser test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let ok = TestReceiver::ok().await;
    // The failing task's receiver: a 500 carrying markup, then (after Retry) a 200.
    let flaky = TestReceiver::start(vec![
        ResponseTemplate::new(500).set_body_string(format!("upstream said {MARKUP}")),
        ResponseTemplate::new(200).set_body_string("invoice sent"),
    ])
    .await;
    let schedules = hookrelay::config::from_toml_str(&format!(
        "[schedules.calendar-sync]\ncron = \"0 * * * *\"\nurl = \"{}\"\nbody = {{ calendar = \"team\" }}\n",
        ok.url("/tasks/calendar-sync")
    ))
    .unwrap()
    .schedules;
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.schedules = schedules;
    })
    .await;
    let enqueue = |body: Value| {
        let app = &app;
        async move {
            let res = app.post("/v1beta1/tasks", &body).await;
            let t = assert_json(res, StatusCode::ACCEPTED).await;
            t["task"]["id"].as_str().expect("task id").to_string()
        }
    };
    let wait_state = |id: String, state: &'static str| {
        let app = &app;
        async move {
            wait_until(UI_WAIT, &format!("task {id} to be {state}"), || async {
                let v = app
                    .get_json(&format!("/v1beta1/admin/tasks/{id}"), StatusCode::OK)
                    .await;
                (v["task"]["state"] == state).then(|| v["task"].clone())
            })
            .await
        }
    };

    let done = enqueue(json!({
        "url": ok.url("/tasks/index-document"), "name": "index-document",
        "body": {"document_id": "doc_1"},
    }))
    .await;
    let failed = enqueue(json!({
        "url": flaky.url("/tasks/send-invoice"), "name": "send-invoice",
        "body": {"invoice": "inv_42", "note": MARKUP}, "retry_schedule": [],
        "headers": {"Authorization": "Bearer app-s3cr3t", "X-Team": "billing"},
    }))
    .await;
    let later =
        enqueue(json!({"url": ok.url("/tasks/reminder"), "name": "reminder", "delay": "1h"})).await;
    let too_late =
        enqueue(json!({"url": ok.url("/tasks/digest"), "name": "digest", "delay": "1h"})).await;
    wait_state(done.clone(), "succeeded").await;
    wait_state(failed.clone(), "failed").await;

    let b = Browser::start(&chromium, &chromedriver, "tasks").await;
    sign_in(&b, &app).await;

    // The list: both tasks, their state, call and answer.
    b.click_link("Tasks").await;
    b.wait_text("#view h1", "Tasks").await;
    let row = |id: &str| format!("#view tr[data-task='{id}']");
    let text = b.wait_text(&row(&done), "succeeded").await;
    for needle in [
        "index-document",
        "POST",
        "/tasks/index-document",
        "1 / ",
        "200",
    ] {
        assert!(text.contains(needle), "`{needle}` missing: {text}");
    }
    let text = b.wait_text(&row(&failed), "failed").await;
    for needle in ["send-invoice", "1 / 1", "500"] {
        assert!(text.contains(needle), "`{needle}` missing: {text}");
    }
    b.wait_text(&row(&later), "scheduled").await;
    assert_eq!(b.text("#nav a[aria-current=page]").await, "Tasks");
    b.screenshot("tasks").await;

    // Filtered by state through the form; the hash keeps it.
    b.find("#filter-state")
        .await
        .select_by_value("failed")
        .await
        .expect("select state");
    b.click_button("Filter").await;
    b.wait_gone(&row(&done)).await;
    b.wait_text(&row(&failed), "failed").await;
    let url = b.client.current_url().await.expect("url");
    assert!(
        url.fragment().unwrap_or_default().contains("state=failed"),
        "{url}"
    );
    b.type_into("#filter-name", "index-document").await;
    b.find("#filter-state")
        .await
        .select_by_value("")
        .await
        .expect("select state");
    b.click_button("Filter").await;
    b.wait_gone(&row(&failed)).await;
    b.wait_text(&row(&done), "succeeded").await;

    // The failed task: its attempt, its body and the receiver's answer, markup as text.
    b.hash(&format!("#/tasks/{failed}")).await;
    let attempts = b.wait_text("#attempts", "upstream said").await;
    assert!(attempts.contains("500"), "{attempts}");
    assert!(attempts.contains(MARKUP), "the answer, as text: {attempts}");
    b.wait_text(".title-row", "failed").await;
    let page = b.text("#view").await;
    for needle in [
        "send-invoice",
        "inv_42",
        "X-Team",
        "billing",
        "[redacted]",
        "none: one attempt only",
    ] {
        assert!(page.contains(needle), "`{needle}` missing: {page}");
    }
    assert!(!page.contains("app-s3cr3t"), "{page}");
    let made = b
        .eval(
            "return [document.querySelectorAll('#view img, #view script').length, \
             document.getElementById('view').textContent]",
        )
        .await;
    assert_eq!(made[0], 0, "elements made from the task's data");
    let text = made[1].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("\"note\": \"{MARKUP}\"")),
        "the body as pretty JSON text: {text}"
    );
    b.screenshot("task-failed").await;

    // Retry: a fresh attempt, and the receiver answers 200 this time.
    b.click("#retry-task").await;
    b.wait_text("#flash", "queued again").await;
    b.wait_text(".title-row", "succeeded").await;
    let attempts = b.wait_text("#attempts", "invoice sent").await;
    assert!(
        attempts.contains("upstream said"),
        "the failed attempt stays: {attempts}"
    );
    let t = wait_state(failed.clone(), "succeeded").await;
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(2), "{t}");
    // Tall enough to show both attempts.
    b.client.set_window_size(1280, 1300).await.expect("resize");
    b.wait_text("#attempts", "upstream said").await;
    b.screenshot("task-retried").await;
    b.client.set_window_size(1280, 800).await.expect("resize");

    // A task an hour out: cancelled from its page, after saying yes.
    b.hash(&format!("#/tasks/{later}")).await;
    b.wait_text(".title-row", "scheduled").await;
    b.wait_text("#view", "Next call").await;
    b.click("#cancel-task").await;
    b.find("dialog[open]").await;
    b.click_button("Cancel task").await;
    b.wait_text("#flash", "cancelled").await;
    b.wait_text(".title-row", "cancelled").await;
    wait_state(later.clone(), "cancelled").await;
    assert!(
        ok.requests()
            .iter()
            .all(|(_, r)| r.url.path() != "/tasks/reminder")
    );

    // Another, cancelled elsewhere while its page is open: Cancel shows the API's 409, over the
    // task's fresh state.
    b.hash(&format!("#/tasks/{too_late}")).await;
    b.wait_text(".title-row", "scheduled").await;
    assert_json(
        app.post(
            &format!("/v1beta1/admin/tasks/{too_late}/cancel"),
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    b.click("#cancel-task").await;
    b.click_button("Cancel task").await;
    let flash = b.wait_text("#flash", "not_cancellable").await;
    assert!(flash.contains("finished already"), "{flash}");
    assert!(flash.contains("409"), "{flash}");
    b.wait_text(".title-row", "cancelled").await;
    b.screenshot("task-cancel-409").await;

    // Schedules: calendar-sync from the config, active, with its next five ticks.
    b.click_link("Schedules").await;
    b.wait_text("#view h1", "Schedules").await;
    let srow = "#view tr[data-schedule='calendar-sync']";
    let text = b.wait_text(srow, "active").await;
    for needle in ["calendar-sync", "config", "0 * * * *", "UTC"] {
        assert!(text.contains(needle), "`{needle}` missing: {text}");
    }
    let next_runs =
        |css: &str| format!("return document.querySelectorAll(\"{css} .next-runs li\").length");
    assert_eq!(b.eval(&next_runs(srow)).await, 5);
    b.screenshot("schedules").await;

    // Pause: no next runs; Resume: active again.
    b.click_button("Pause").await;
    b.wait_text("#flash", "paused").await;
    b.wait_text(srow, "paused").await;
    assert_eq!(b.eval(&next_runs(srow)).await, 0);
    let v = app
        .get_json("/v1beta1/admin/schedules/calendar-sync", StatusCode::OK)
        .await;
    assert_eq!(v["schedule"]["state"], "paused", "{v}");
    b.screenshot("schedules-paused").await;
    b.click_button("Resume").await;
    b.wait_text("#flash", "resumed").await;
    b.wait_text(srow, "active").await;
    assert_eq!(b.eval(&next_runs(srow)).await, 5);

    // Run now: the run shows in the list and in the schedule's detail, linked to its task.
    b.click_button("Run now").await;
    b.wait_text("#flash", "runs once now").await;
    b.wait_text(srow, "succeeded").await;
    b.click_link("calendar-sync").await;
    b.wait_text("#view h1", "calendar-sync").await;
    let runs = b.wait_text("#runs", "succeeded").await;
    assert!(runs.contains("tsk_"), "{runs}");
    assert_eq!(b.eval(&next_runs("#view")).await, 5);
    let page = b.text("#view").await;
    for needle in [
        "0 * * * *",
        "/tasks/calendar-sync",
        "\"calendar\": \"team\"",
    ] {
        assert!(page.contains(needle), "`{needle}` missing: {page}");
    }
    let v = app
        .get_json("/v1beta1/admin/schedules/calendar-sync", StatusCode::OK)
        .await;
    let run = v["schedule"]["runs"][0]["id"]
        .as_str()
        .expect("a run")
        .to_string();
    b.screenshot("schedule").await;
    b.click_link(&run).await;
    b.wait_text("#view h1", &format!("Task {run}")).await;
    b.wait_text(".title-row", "succeeded").await;
    b.wait_text(".crumbs", "calendar-sync").await;
    b.wait_text("#attempts", "received").await;
    let got = ok.requests();
    assert!(
        got.iter()
            .any(|(_, r)| r.url.path() == "/tasks/calendar-sync"),
        "the app was called for the run"
    );
    b.screenshot("schedule-run").await;

    // The audit log recorded what was done here, linked to the task or schedule.
    b.click_link("Audit log").await;
    let audit = b.wait_text("#view table", "task.cancel").await;
    for action in [
        "task.retry",
        "schedule.pause",
        "schedule.resume",
        "schedule.run",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    b.find(&format!("#view a[href='#/tasks/{later}']")).await;
    b.find("#view a[href='#/schedules/calendar-sync']").await;

    // A narrow window: the task detail and the schedules list fit.
    b.client.set_window_size(420, 800).await.expect("resize");
    for (name, hash, marker) in [
        ("task-narrow", format!("#/tasks/{failed}"), "invoice sent"),
        (
            "schedules-narrow",
            "#/schedules".to_string(),
            "calendar-sync",
        ),
    ] {
        b.hash(&hash).await;
        b.wait_text("#view", marker).await;
        let overflow = b
            .eval("return document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{hash} overflows by {overflow}px"
        );
        b.screenshot(name).await;
    }
    b.client.set_window_size(1280, 800).await.expect("resize");

    // The one expected error in the log: Chromium reports the 409 of the late cancel.
    b.assert_no_console_errors(|e| {
        let msg = e["message"].as_str().unwrap_or_default();
        e["source"] == "network"
            && msg.contains(&format!("/tasks/{too_late}/cancel"))
            && msg.contains("409")
    })
    .await;
    b.close().await;
}
