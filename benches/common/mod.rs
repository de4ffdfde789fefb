//! Shared by the benchmarks: the real `hookrelay serve` (optimized build) as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The throwaway PostgreSQL cluster of the tests (initdb and pg_ctl in a temp dir).
#[allow(dead_code)] // not every benchmark runs on PostgreSQL
#[path = "../../tests/api/helpers/postgres.rs"]
pub mod postgres;

const ENCRYPTION_KEY: &str = "686f6f6b72656c61792d62656e63682d6b65792d33322d627974657321212121";
const TASKS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A loopback port nothing listens on.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running server; killed when dropped, however the benchmark ends.
pub struct Server {
    child: Child,
    pub address: String,
    /// The database file.
    #[allow(dead_code)] // not every benchmark reads it
    pub db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `hookrelay serve` on a free port with a fresh database under `target/`, the admin
    /// token `bench`, `synchronous = full`, and `extra` appended to the config file.
    pub fn start(extra: &str) -> Self {
        Self::start_with("", extra)
    }

    /// As [`Server::start`], with `server_keys` added to the `[server]` table.
    pub fn start_with(server_keys: &str, extra: &str) -> Self {
        Self::start_on(None, server_keys, extra)
    }

    /// As [`Server::start_with`], on the PostgreSQL database `url` when given (with the keys
    /// PostgreSQL needs), else on a fresh SQLite file.
    pub fn start_on(url: Option<&str>, server_keys: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = dir.path().join("config.toml");
        let database = match url {
            None => format!(
                "[database]\npath = {:?}\nsynchronous = \"full\"\n",
                dir.path().join("bench.db")
            ),
            Some(url) => format!(
                "[database]\nurl = \"{url}\"\n[tasks]\nsigning_secret = \"{TASKS_SECRET}\"\n"
            ),
        };
        // `extra` may have its own [delivery] table: the key goes in with it, or alone.
        let extra = match url {
            Some(_) if extra.contains("[delivery]\n") => extra.replacen(
                "[delivery]\n",
                &format!("[delivery]\nencryption_key = \"{ENCRYPTION_KEY}\"\n"),
                1,
            ),
            Some(_) => format!("{extra}\n[delivery]\nencryption_key = \"{ENCRYPTION_KEY}\"\n"),
            None => extra.to_string(),
        };
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:0\"\n{server_keys}\n{database}\
                 [auth]\nadmin_token = \"bench\"\n{extra}\n",
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,hookrelay::app=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookrelay");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().expect("hookrelay exited").expect("log line");
            if let Some(i) = line.find("listening on http://") {
                break line[i + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            address,
            db: dir.path().join("bench.db"),
            _dir: dir,
        }
    }

    /// The server's process id.
    #[allow(dead_code)] // not every benchmark reads it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "p50 … p99 … max …" of a set of latencies.
#[allow(dead_code)] // not every benchmark reports latencies
pub fn percentiles(mut lat: Vec<std::time::Duration>) -> String {
    if lat.is_empty() {
        return "no samples".into();
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(0.999).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    )
}

/// A minimal receiver on loopback (actix-web, one worker): counts requests, answers 200.
/// Returns its port.
#[allow(dead_code)] // not every benchmark delivers
pub fn start_receiver(count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                let count = std::sync::Arc::clone(&count);
                // Reads the body, as a real receiver does (actix closes connections whose
                // request body was left unread, which would defeat connection reuse).
                actix_web::App::new().default_service(actix_web::web::to(
                    move |body: actix_web::web::Bytes| {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = body.len();
                        async { actix_web::HttpResponse::Ok().body("ok") }
                    },
                ))
            })
            .workers(1)
            .listen(listener)
            .expect("listen")
            .run()
            .await
            .expect("receiver");
        });
    });
    port
}

/// `GET /v1beta1/admin/stats` of a server started by [`Server::start`] (admin token `bench`).
#[allow(dead_code)] // not every benchmark reads the stats
pub async fn stats(client: &reqwest::Client, address: &str) -> serde_json::Value {
    client
        .get(format!("{address}/v1beta1/admin/stats"))
        .bearer_auth("bench")
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json")
}

/// The CPU time (user + system) process `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat`.
#[allow(dead_code)] // not every benchmark measures CPU
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / if per_sec > 0 { per_sec as f64 } else { 100.0 }
}

/// CPU seconds (user + system) per thread name of process `pid` so far, from
/// `/proc/<pid>/task/*/stat`; threads of one name (the HTTP workers, the read pool) are summed.
#[allow(dead_code)] // not every benchmark breaks CPU down
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = if per_sec > 0 { per_sec as f64 } else { 100.0 };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // Thread names differ only by a trailing number (`r2d2-worker-3`): grouped without it.
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        *out.entry(name).or_insert(0.0) += ticks as f64 / per_sec;
    }
    out
}

/// The CPU per event of each thread group between two [`thread_cpu`] readings, busiest first:
/// `writer 120 µs, jobs 80 µs, …`.
#[allow(dead_code)] // not every benchmark breaks CPU down
pub fn per_thread(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    events: usize,
) -> String {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(name, secs)| {
            let used = secs - before.get(name).copied().unwrap_or(0.0);
            (name.clone(), used / events as f64 * 1e6)
        })
        .filter(|(_, us)| *us >= 0.5)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.iter()
        .map(|(name, us)| format!("{name} {us:.0} µs"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The admin API of a server started by [`Server::start`] (admin token `bench`).
#[allow(dead_code)] // not every benchmark reads the admin API
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

#[allow(dead_code)] // not every benchmark reads the admin API
impl Api {
    /// `GET path` as admin, asserting a 2xx; the JSON body.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth("bench")
            .send()
            .await
            .expect("request");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("json")
    }

    /// Opens `n` pooled connections (with `/healthz`) before the clock starts.
    pub async fn warm(self: &std::sync::Arc<Self>, n: usize) {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let api = std::sync::Arc::clone(self);
                tokio::spawn(async move {
                    let res = api
                        .client
                        .get(format!("{}/healthz", api.base))
                        .send()
                        .await
                        .expect("healthz");
                    let _ = res.bytes().await;
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("warm");
        }
    }

    /// Whether the list at `path` (`…?limit=1`) under `key` is empty.
    pub async fn empty(&self, path: &str, key: &str) -> bool {
        self.get(path).await[key]
            .as_array()
            .is_none_or(Vec::is_empty)
    }
}

/// Whether `BENCH_PG_TOP` asks for the statements that took database `db`'s time; if so, turns
/// on `pg_stat_statements` there (the server needs
/// `BENCH_PG_SETTINGS='-c shared_preload_libraries=pg_stat_statements'`).
#[allow(dead_code)]
pub async fn top_statements_wanted(pg: &postgres::PgCluster, db: &str) -> bool {
    if std::env::var("BENCH_PG_TOP").is_err() {
        return false;
    }
    pg.connect(db)
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect(
            "BENCH_PG_TOP needs BENCH_PG_SETTINGS='-c shared_preload_libraries=pg_stat_statements'",
        );
    true
}

/// Prints the statements that took database `db`'s time, most first (`BENCH_PG_TOP`).
#[allow(dead_code)]
pub async fn print_top_statements(pg: &postgres::PgCluster, db: &str) {
    let rows = pg
        .connect(db)
        .await
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
             ORDER BY total_exec_time DESC LIMIT 15",
            &[&db],
        )
        .await
        .expect("pg_stat_statements");
    println!("PostgreSQL, database {db}: statements by total time (calls, total ms, mean µs):");
    for r in rows {
        let (calls, total, mean, query): (i64, f64, f64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("  {calls:>8} {total:>9.0} {:>7.0}  {query}", mean * 1000.0);
    }
}

/// The last part of the delivery and pipeline benchmarks: `rate` (events/s end to end for
/// `BENCH_DB_EVENTS` events, default 20,000, through the servers given) on SQLite, on
/// PostgreSQL with one `serve`, and with two sharing the database, in one run, printed side by
/// side under `heading`. PostgreSQL is a throwaway cluster with its own durability, as a server
/// runs it (fsync and synchronous_commit on); `BENCH_PG_SETTINGS` adds server settings
/// (`-c name=value …`), `BENCH_PG_TOP` prints where its time went.
#[allow(dead_code)]
pub async fn databases(heading: &str, extra: &str, rate: impl AsyncFn(&[Server], usize) -> f64) {
    let n: usize = std::env::var("BENCH_DB_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sqlite = {
        let server = Server::start(extra);
        rate(std::slice::from_ref(&server), n).await
    };
    let settings = std::env::var("BENCH_PG_SETTINGS").unwrap_or_default();
    let Some(pg) =
        postgres::PgCluster::start_with("the PostgreSQL part of the benchmark", &settings)
    else {
        println!(
            "databases: SQLite {sqlite:.0} events/s; PostgreSQL skipped (apt-get install postgresql)"
        );
        return;
    };
    pg.create_db("one").await;
    pg.create_db("two").await;
    let top = top_statements_wanted(&pg, "one").await;
    let one = {
        let server = Server::start_on(Some(&pg.url("one")), "", extra);
        rate(std::slice::from_ref(&server), n).await
    };
    if top {
        print_top_statements(&pg, "one").await;
    }
    let two = {
        let servers = [
            Server::start_on(Some(&pg.url("two")), "", extra),
            Server::start_on(Some(&pg.url("two")), "", extra),
        ];
        rate(&servers, n).await
    };
    println!("\n== databases, {n} {heading}, same run (events/s end to end):");
    println!("  SQLite                      {sqlite:>8.0}");
    println!(
        "  PostgreSQL, one replica     {one:>8.0}   {:.2} x SQLite (target >= 0.5)",
        one / sqlite
    );
    println!(
        "  PostgreSQL, two replicas    {two:>8.0}   {:.2} x one replica (target >= 1.0)",
        two / one
    );
}
