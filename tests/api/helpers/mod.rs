//! Test helpers: the real app on port 0 with its own temp database (in-process, or as a child
//! process for crash and signal tests), an HTTP client that speaks to it, and waiting on
//! conditions instead of sleeping.

mod postgres;
mod receiver;

pub use postgres::{PASSWORD as PG_PASSWORD, PgCluster};
pub use receiver::{TestReceiver, create_webhook, delivery_app, local_delivery, publish};

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookrelay::app::Application;
use hookrelay::config::{self, Config, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const PUBLISH_TOKEN: &str = "test-publish-token";
/// The key task calls are signed with in tests (the Standard Webhooks spec's example key).
pub const TASKS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The app under test, running in this process.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    /// The app's database settings (its SQLite file, or its PostgreSQL database).
    pub database: config::DatabaseConfig,
    pub app_store: hookrelay::store::Store,
    pub cron: std::sync::Arc<hookrelay::cron::Cron>,
    pub schedules: std::sync::Arc<hookrelay::tasks::schedules::Schedules>,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    dir: Option<TempDir>,
}

/// Sets cron schedule `name` (a 6-field expression or `off`).
pub fn set_cron(c: &mut Config, name: &str, expr: &str) {
    let schedule = config::parse_schedule(expr).expect("valid cron expression");
    c.cron.schedules.insert(name.to_string(), schedule);
}

/// A config for tests: port 0, temp database, known tokens, short grace.
pub fn test_config(dir: &Path) -> Config {
    let mut c = config::from_toml_str("").expect("defaults are valid");
    c.server.bind = "127.0.0.1:0".into();
    c.server.shutdown_grace = Duration::from_secs(5);
    c.database.path = dir.join("hookrelay.db");
    c.database.synchronous = config::Synchronous::Normal;
    c.auth.admin_token = Some(Secret::new(ADMIN_TOKEN));
    c.auth.publish_tokens = vec![Secret::new(PUBLISH_TOKEN)];
    c.tasks.signing_secret = Some(Secret::new(TASKS_SECRET));
    if let Some(url) = postgres_database(dir) {
        c.database.url = Some(Secret::new(url));
        c.database.pool_size = 2;
        c.delivery.encryption_key = Some(Secret::new(
            "6869686f6f6b72656c61792d746573742d6b65792d3332627974657321212121",
        ));
    }
    // No cron ticks in the middle of a test (their jobs would show up in job lists); a test
    // that needs a schedule sets it, and run-now works regardless.
    for spec in hookrelay::app::cron_specs() {
        c.cron
            .schedules
            .insert(spec.name.to_string(), config::Schedule::Off);
    }
    c
}

/// With `HOOKRELAY_TEST_POSTGRES` set to a server's URL (e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`), every test app runs on a new, empty
/// PostgreSQL database of that server instead of its own SQLite file.
fn postgres_database(dir: &Path) -> Option<String> {
    use sha2::Digest as _;
    let server = std::env::var("HOOKRELAY_TEST_POSTGRES").ok()?;
    // Named after the test's folder, so that a restart on the same folder finds its data.
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let name = format!("hookrelay_test_{}", &hex::encode(digest)[..20]);
    let url = server.clone();
    let db = name.clone();
    // The blocking client runs its own runtime: not on a test's async thread.
    std::thread::spawn(move || {
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .expect("look up the test database")
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .expect("create database");
        }
    })
    .join()
    .expect("create the test database");
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    Some(format!("{base}/{name}"))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    tweak(&mut cfg);
    spawn_app_in(dir, cfg).await
}

/// Starts the app on an existing folder (e.g. one whose database a test prepared).
pub async fn spawn_app_in(dir: TempDir, cfg: Config) -> TestApp {
    hookrelay::install_tls_provider();
    // Errors the app logs show up in a failing test's output (RUST_LOG raises the level).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let db_path = cfg.database.path.clone();
    let database = cfg.database.clone();
    let app = Application::build(cfg).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let app_store = app.store().clone();
    let cron = app.cron();
    let schedules = app.schedules();
    let handle = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db_path,
        database,
        app_store,
        cron,
        schedules,
        stop,
        handle: Some(handle),
        dir: Some(dir),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GET as admin, asserting the status, returning the JSON body.
    pub async fn get_json(&self, path: &str, status: StatusCode) -> Value {
        let res = self.get(path).await;
        assert_json(res, status).await
    }

    /// Enqueues a job through the admin API and returns its id.
    pub async fn enqueue(&self, body: Value) -> String {
        let res = self.post("/v1beta1/admin/jobs", &body).await;
        let v = assert_json(res, StatusCode::CREATED).await;
        v["job"]["id"].as_str().expect("job id").to_string()
    }

    pub async fn job(&self, id: &str) -> Value {
        self.get_json(&format!("/v1beta1/admin/jobs/{id}"), StatusCode::OK)
            .await["job"]
            .clone()
    }

    /// Waits until job `id` is in `state`, returning it.
    pub async fn wait_job(&self, id: &str, state: &str, within: Duration) -> Value {
        wait_until(within, &format!("job {id} to be {state}"), || async {
            let job = self.job(id).await;
            (job["state"] == state).then_some(job)
        })
        .await
    }

    /// Shuts the app down gracefully and waits for it; returns its folder (kept until dropped).
    pub async fn shutdown(mut self) -> TempDir {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("app task").expect("app stopped cleanly");
        }
        self.dir.take().expect("folder")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Asserts the status and that the body is JSON; returns it.
pub async fn assert_json(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts an error response: status, `{"error": {"code", "message"}}` shape and code.
pub async fn assert_error(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let v = assert_json(res, status).await;
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {v}"
    );
    v
}

/// `/readyz`'s status and body.
pub async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

/// Polls `check` until it yields a value, failing the test after `within`.
pub async fn wait_until<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn now_rfc3339_plus(ms: i64) -> String {
    hookrelay::clock::to_rfc3339(hookrelay::clock::now_ms() + ms)
}

pub fn noop(payload: Value) -> Value {
    json!({"kind": "system.noop", "payload": payload})
}

// ---------------------------------------------------------------------------------------------
// The binary as a child process
// ---------------------------------------------------------------------------------------------

pub const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");

/// Runs the binary to completion with `args` and extra env, from `cwd`.
pub fn run_bin(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("FRONT_API_TOKEN")
        .env_remove("FRONT_WEBHOOK_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookrelay")
}

/// `hookrelay serve` in a child process with a config file in `dir`.
pub struct ChildApp {
    pub child: Child,
    pub address: String,
    pub client: reqwest::Client,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A loopback port nothing listens on (for a server a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes a config file for a child process into `dir` and returns its path.
pub fn write_child_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let db = dir.join("hookrelay.db");
    std::fs::write(
        &path,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\
             [database]\npath = {db:?}\n\
             [auth]\nadmin_token = \"{ADMIN_TOKEN}\"\n{extra}\n"
        ),
    )
    .expect("write config");
    path
}

impl ChildApp {
    /// Starts `hookrelay serve --config <config>` and waits for its listening line.
    pub fn start(config: &Path) -> Self {
        hookrelay::install_tls_provider();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("HOOKRELAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookrelay serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(i) = line.find("listening on http://") {
                    let addr = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
                if let Ok(mut l) = log2.lock() {
                    l.push(line);
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "hookrelay serve did not start; log: {:?}",
                    log.lock().map(|l| l.clone())
                )
            });
        Self {
            child,
            address,
            client: reqwest::Client::new(),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("send signal");
    }

    /// Waits for the process to exit, returning its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(format!("{}{}", self.address, path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
    }
}

impl Drop for ChildApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts jobs by state straight from a database file.
/// `system.noop` jobs by state (the service's own cron jobs are not counted).
pub fn job_states(db: &Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare("SELECT state, COUNT(*) FROM jobs WHERE kind = 'system.noop' GROUP BY state")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// Runs `f` in one write transaction on a running app's database, through hookrelay's own
/// query interface: the same SQL (`?N` placeholders) runs on SQLite and on PostgreSQL (with
/// `HOOKRELAY_TEST_POSTGRES`).
pub async fn write_db<T: Send + 'static>(
    store: &hookrelay::store::Store,
    f: impl Fn(&hookrelay::sql::Connection) -> hookrelay::sql::Result<T> + Send + 'static,
) -> T {
    store
        .writer()
        .write_wait(move |tx| f(tx).map_err(hookrelay::store::StoreError::from))
        .await
        .expect("write to the test database")
}

/// Runs `f` on a read connection of a running app's database (see [`write_db`]).
pub async fn read_db<T: Send + 'static>(
    store: &hookrelay::store::Store,
    f: impl FnOnce(&hookrelay::sql::Connection) -> hookrelay::sql::Result<T> + Send + 'static,
) -> T {
    store
        .read(move |c| f(c).map_err(hookrelay::store::StoreError::from))
        .await
        .expect("read the test database")
}

/// Runs `f` in one write transaction on the database of `cfg` while no app runs on it
/// (migrating it first, as `hookrelay migrate` does).
pub async fn write_offline<T: Send + 'static>(
    cfg: &config::DatabaseConfig,
    f: impl Fn(&hookrelay::sql::Connection) -> hookrelay::sql::Result<T> + Send + 'static,
) -> T {
    let cfg = cfg.clone();
    let store = tokio::task::spawn_blocking(move || {
        hookrelay::app::open_store(&cfg, std::sync::Arc::new(tokio::sync::Notify::new()))
    })
    .await
    .expect("open task")
    .expect("open the test database");
    let out = write_db(&store, f).await;
    store.writer().stop().await;
    out
}

/// Tests that load the machine (thousands of connections, `kill -9` loops) or measure timing
/// beside other load take this, so they run one at a time rather than skewing each other.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}
