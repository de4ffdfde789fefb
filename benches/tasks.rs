//! Tasks benchmark: `cargo bench --bench tasks`.
//!
//! Starts the real `hookrelay serve` (optimized build, `synchronous = full`, `jobs.workers` as
//! shipped unless `BENCH_WORKERS` is set, `[tasks] allowed_urls` holding the receiver's prefix)
//! and a minimal receiver on loopback (actix-web, one worker, as `benches/common`) that answers
//! 200 at once and notes, for every call, its `x-hookrelay-task` and the wall-clock time it
//! arrived. Two measurements, each on a fresh server with an empty database:
//! 1. **Throughput**: `BENCH_TASKS` (default 20,000) tasks due now, enqueued with
//!    `POST /v1beta1/tasks` by 64 concurrent clients as fast as they are acked: the enqueue rate
//!    (tasks/s acked), the completed rate (tasks/s from the first enqueue to the last call the
//!    receiver saw, and to the moment the admin API lists no task `scheduled`, `running` or
//!    `retrying`), and the server's CPU time per task (utime + stime of the server process from
//!    `/proc/<pid>/stat`, as `benches/pipeline.rs`);
//! 2. **Latency from `run_at` to the call**: `BENCH_TASK_RATE` × `BENCH_TASK_SECS` (default
//!    1,000 × 10) tasks enqueued ahead of time, with `run_at` spread evenly so that
//!    `BENCH_TASK_RATE` come due every second, the first one `BENCH_LEAD_SECS` after enqueueing
//!    starts (default: twice the time phase 1 took to enqueue as many, plus 3 s, so enqueueing is
//!    over before the first comes due). For each call: its arrival at the receiver minus its
//!    task's `run_at` (from the 202 answer); p50, p90, p99, max, per second of `run_at` too, and
//!    the target p99 ≤ 50 ms. Afterwards (off the clock) each task's recorded attempt time splits
//!    the latency into "due → attempt started" (dispatcher, claim and start commits) and
//!    "attempt started → received" (the HTTP call).
//!
//! Bodies are built before the clock starts and the 64 pooled connections are opened
//! beforehand with `/healthz`. The receiver and the clients run in this process on the same
//! cores as the server; this process's own CPU time during phase 2 is printed so one can see
//! that the receiver is not the bottleneck.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

mod common;

use common::{Api, cpu_secs};

const CONCURRENCY: usize = 64;
/// Target: p99 of (call arrival − run_at) at 1,000 due tasks/s.
const TARGET_P99_MS: f64 = 50.0;

/// Wall-clock microseconds since the UNIX epoch (the clock `run_at` is on).
fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What the receiver saw: every call's task id and arrival time (µs since the epoch).
#[derive(Default)]
struct Calls {
    count: AtomicU64,
    seen: Mutex<Vec<(String, i64)>>,
}

impl Calls {
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Everything seen so far, emptied.
    fn take(&self) -> Vec<(String, i64)> {
        std::mem::take(&mut *self.seen.lock().expect("calls"))
    }
}

/// The receiver: actix-web with one worker, as `common::start_receiver`, answering 200 at once;
/// notes each call's `x-hookrelay-task` and arrival time. Returns its port.
fn start_receiver(calls: Arc<Calls>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                let calls = Arc::clone(&calls);
                // Reads the body, as a real receiver does (actix closes connections whose
                // request body was left unread).
                actix_web::App::new().default_service(actix_web::web::to(
                    move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                        let at = now_us();
                        let _ = body.len();
                        let id = req
                            .headers()
                            .get("x-hookrelay-task")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        calls.seen.lock().expect("calls").push((id, at));
                        calls.count.fetch_add(1, Ordering::Relaxed);
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

/// One acked task.
struct Acked {
    id: String,
    /// `run_at` of the 202 answer, ms since the epoch.
    run_at_ms: i64,
    /// How long the 202 took.
    latency: Duration,
}

impl Api {
    /// Whether no task is `scheduled`, `running` or `retrying`.
    async fn all_finished(&self) -> bool {
        for state in ["scheduled", "running", "retrying"] {
            if !self
                .empty(
                    &format!("/v1beta1/admin/tasks?state={state}&limit=1"),
                    "tasks",
                )
                .await
            {
                return false;
            }
        }
        true
    }

    /// The writer's totals from `/metrics`: group commits, commands in them, seconds spent
    /// committing.
    async fn writer(&self) -> Writer {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Writer {
            commits: value("hookrelay_writer_commit_seconds_count"),
            commands: value("hookrelay_writer_batch_size_sum"),
            commit_secs: value("hookrelay_writer_commit_seconds_sum"),
        }
    }

    /// `POST /v1beta1/tasks` with a prepared body; expects 202.
    async fn enqueue(&self, body: Vec<u8>) -> Acked {
        let started = Instant::now();
        let res = self
            .client
            .post(format!("{}/v1beta1/tasks", self.base))
            .bearer_auth("bench")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap_or_default();
        let latency = started.elapsed();
        assert_eq!(
            status,
            202,
            "POST /v1beta1/tasks: {}",
            String::from_utf8_lossy(&bytes)
        );
        let v: Value = serde_json::from_slice(&bytes).expect("task json");
        let task = &v["task"];
        assert_eq!(task["state"], "scheduled", "a new task: {task}");
        let run_at = task["run_at"].as_str().expect("run_at");
        Acked {
            id: task["id"].as_str().expect("id").to_string(),
            run_at_ms: chrono::DateTime::parse_from_rfc3339(run_at)
                .expect("run_at is RFC 3339")
                .timestamp_millis(),
            latency,
        }
    }
}

/// Totals of the single writer (group commit), from `/metrics`.
#[derive(Clone, Copy)]
struct Writer {
    commits: f64,
    commands: f64,
    commit_secs: f64,
}

impl Writer {
    /// "… commits, … commands" between `self` and `later`, per task of `n`.
    fn since(self, later: Self, n: usize) -> String {
        let commits = later.commits - self.commits;
        let commands = later.commands - self.commands;
        format!(
            "{commits:.0} group commits ({:.2} per task, {:.2} ms each on average), {commands:.0} write commands ({:.2} per task)",
            commits / n as f64,
            (later.commit_secs - self.commit_secs) / commits.max(1.0) * 1e3,
            commands / n as f64
        )
    }
}

/// A fresh server calling `receiver`, with its client warmed.
async fn start(receiver_prefix: &str) -> (common::Server, Arc<Api>) {
    let workers = std::env::var("BENCH_WORKERS")
        .map(|w| format!("[jobs]\nworkers = {w}\n"))
        .unwrap_or_default();
    let server = common::Server::start(&format!(
        "[tasks]\nallowed_urls = [\"{receiver_prefix}\"]\n{workers}"
    ));
    let api = Arc::new(Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client"),
        base: server.address.clone(),
    });
    api.warm(CONCURRENCY).await;
    (server, api)
}

/// A task body: a call to `url` with a small JSON body, due at `run_at` (else now).
fn task_body(url: &str, i: usize, run_at: Option<&str>) -> Vec<u8> {
    let mut v = json!({
        "url": url,
        "body": {"job": "index-document", "document_id": format!("doc_{i}"), "org_id": "org_123abc", "seq": i},
    });
    if let Some(t) = run_at {
        v["run_at"] = json!(t);
    }
    serde_json::to_vec(&v).expect("json")
}

/// Sends every body with [`CONCURRENCY`] clients; returns the acked tasks in no order.
async fn enqueue_all(api: &Arc<Api>, bodies: Vec<Vec<u8>>) -> Vec<Acked> {
    let mut shares: Vec<Vec<Vec<u8>>> = (0..CONCURRENCY).map(|_| Vec::new()).collect();
    for (i, b) in bodies.into_iter().enumerate() {
        shares[i % CONCURRENCY].push(b);
    }
    let clients: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let api = Arc::clone(api);
            tokio::spawn(async move {
                let mut acked = Vec::with_capacity(share.len());
                for b in share {
                    acked.push(api.enqueue(b).await);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.expect("client"));
    }
    acked
}

/// p50, p90, p99, max (and min, count) of a set of values in µs.
struct Summary {
    count: usize,
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(values: &mut [i64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let pct = |p: f64| {
            values[((values.len() as f64 * p) as usize).min(values.len() - 1)] as f64 / 1e3
        };
        Some(Self {
            count: values.len(),
            min: values[0] as f64 / 1e3,
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: values[values.len() - 1] as f64 / 1e3,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (min {:.1} ms, {} samples)",
            self.p50, self.p90, self.p99, self.max, self.min, self.count
        )
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Phase 1: `n` tasks due now, as fast as they are acked. Returns the enqueue rate (tasks/s).
async fn throughput(n: usize, calls: &Arc<Calls>, prefix: &str, url: &str) -> f64 {
    let (server, api) = start(prefix).await;
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| task_body(url, i, None)).collect();
    calls.take();
    let base = calls.count();
    let pid = server.pid();

    let writer_start = api.writer().await;
    let cpu_start = cpu_secs(pid);
    let started_us = now_us();
    let started = Instant::now();
    let acked = enqueue_all(&api, bodies).await;
    let enqueued = started.elapsed();
    let cpu_enqueue = cpu_secs(pid) - cpu_start;
    let during = calls.count() - base;

    // Wait for every call, then for the admin API to list no unfinished task.
    let mut last = calls.count();
    let mut last_change = Instant::now();
    let (finished, cpu_end) = loop {
        let now = calls.count();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now - base >= n as u64 && api.all_finished().await {
            break (started.elapsed(), cpu_secs(pid));
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(120),
            "throughput: calls stalled at {}/{n}",
            now - base
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let cpu = cpu_end - cpu_start;
    let writer_end = api.writer().await;

    // Off the clock: every task succeeded, each called once.
    let seen = calls.take();
    let last_call_us = seen.iter().map(|(_, at)| *at).max().unwrap_or(started_us);
    let to_last_call = Duration::from_micros(u64::try_from(last_call_us - started_us).unwrap_or(0));
    let ids: std::collections::HashSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    let called: std::collections::HashSet<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    let stats = common::stats(&api.client, &server.address).await;
    let tasks = &stats["tasks"]["by_state"];
    assert!(
        api.empty("/v1beta1/admin/tasks?state=failed&limit=1", "tasks")
            .await,
        "throughput: some task failed: {tasks}"
    );

    let lat: Vec<Duration> = acked.iter().map(|a| a.latency).collect();
    let enqueue_rate = n as f64 / enqueued.as_secs_f64();
    println!("\n== 1. throughput: {n} tasks due now, {CONCURRENCY} concurrent clients");
    println!(
        "enqueue:     {:.2} s = {enqueue_rate:.0} tasks/s acked (202); ack latency {}",
        enqueued.as_secs_f64(),
        common::percentiles(lat)
    );
    println!(
        "completed:   last call received after {:.2} s = {:.0} tasks/s; all tasks succeeded after {:.2} s = {:.0} tasks/s \
         (from the first enqueue; {during} calls received while enqueueing)",
        to_last_call.as_secs_f64(),
        n as f64 / to_last_call.as_secs_f64(),
        finished.as_secs_f64(),
        n as f64 / finished.as_secs_f64()
    );
    println!(
        "server CPU:  {cpu:.2} s = {:.0} µs per task end to end ({:.0} µs per task during enqueue); on average {:.2} cores busy",
        cpu / n as f64 * 1e6,
        cpu_enqueue / n as f64 * 1e6,
        cpu / finished.as_secs_f64()
    );
    println!("writer:      {}", writer_start.since(writer_end, n));
    println!(
        "check:       {} calls for {} distinct tasks (all {n} acked called: {}); stats tasks.by_state = {tasks}",
        seen.len(),
        called.len(),
        ids.iter().all(|id| called.contains(id))
    );
    drop(server);
    enqueue_rate
}

/// Phase 2: `rate` tasks due per second for `secs` seconds, enqueued ahead; the latency from
/// `run_at` to the call. Returns the p99 in ms.
async fn latency(
    rate: usize,
    secs: usize,
    lead: Duration,
    calls: &Arc<Calls>,
    prefix: &str,
    url: &str,
) -> Option<f64> {
    let total = rate * secs;
    let (server, api) = start(prefix).await;
    let pid = server.pid();
    calls.take();
    let base = calls.count();

    // run_at of task i: first + i/rate s, to the millisecond.
    let enqueue_start_us = now_us();
    let first_ms = (enqueue_start_us + i64::try_from(lead.as_micros()).unwrap_or(i64::MAX))
        .div_euclid(1000)
        .div_euclid(1000)
        * 1000
        + 1000; // on a whole second
    let run_at_of = |i: usize| first_ms + i64::try_from(i * 1000 / rate).unwrap_or(0);
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(run_at_of(i))
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            task_body(url, i, Some(&t))
        })
        .collect();

    let writer_enqueue = api.writer().await;
    let started = Instant::now();
    let acked = enqueue_all(&api, bodies).await;
    let enqueued = started.elapsed();
    let enqueue_end_us = now_us();
    let writer_enqueued = api.writer().await;
    let margin_ms = first_ms - enqueue_end_us / 1000;
    println!(
        "\n== 2. latency from run_at to the call: {total} tasks, {rate} due per second for {secs} s"
    );
    println!(
        "enqueue:     {total} tasks with run_at ahead in {:.2} s ({:.0}/s; ack latency {}); finished {:.2} s before the first run_at{}",
        enqueued.as_secs_f64(),
        total as f64 / enqueued.as_secs_f64(),
        common::percentiles(acked.iter().map(|a| a.latency).collect()),
        margin_ms as f64 / 1e3,
        if margin_ms < 0 {
            "  — WARNING: enqueueing ran into the due window; raise BENCH_LEAD_SECS"
        } else {
            ""
        }
    );
    let run_at: HashMap<String, i64> = acked.iter().map(|a| (a.id.clone(), a.run_at_ms)).collect();
    assert!(
        acked
            .iter()
            .all(|a| (first_ms..=run_at_of(total - 1)).contains(&a.run_at_ms)),
        "a 202 answered a run_at outside the window asked for"
    );

    // Through the due window: CPU of the server and of this process (receiver, idle clients).
    let wait_until = |ms: i64| {
        let d = Duration::from_micros(u64::try_from(ms * 1000 - now_us()).unwrap_or(0));
        tokio::time::sleep(d)
    };
    wait_until(first_ms).await;
    let writer_start = api.writer().await;
    let cpu_server_start = cpu_secs(pid);
    let cpu_self_start = cpu_secs(std::process::id());
    let window_start = Instant::now();
    let last_run_at = run_at_of(total - 1);
    let mut last = calls.count();
    let mut last_change = Instant::now();
    loop {
        let now = calls.count();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now - base >= total as u64 {
            break;
        }
        if now_us() / 1000 > last_run_at && last_change.elapsed() > Duration::from_secs(30) {
            println!(
                "calls stalled at {}/{total} 30 s after the last run_at",
                now - base
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let window = window_start.elapsed();
    let cpu_server = cpu_secs(pid) - cpu_server_start;
    let cpu_self = cpu_secs(std::process::id()) - cpu_self_start;
    let writer_end = api.writer().await;
    let seen = calls.take();
    let early = seen.iter().filter(|(_, at)| *at < first_ms * 1000).count();

    // arrival − run_at, per call (the first call of each task), and per second of run_at.
    let mut first_call: HashMap<&str, i64> = HashMap::new();
    for (id, at) in &seen {
        first_call.entry(id.as_str()).or_insert(*at);
    }
    let mut all = Vec::with_capacity(seen.len());
    let mut per_second: Vec<Vec<i64>> = vec![Vec::new(); secs + 1];
    for (id, at) in &first_call {
        let Some(r) = run_at.get(*id) else { continue };
        let d = at - r * 1000;
        all.push(d);
        let s = usize::try_from((r - first_ms) / 1000)
            .unwrap_or(0)
            .min(secs);
        per_second[s].push(d);
    }
    let unknown = first_call
        .keys()
        .filter(|id| !run_at.contains_key(**id))
        .count();
    println!(
        "received:    {} calls for {} distinct tasks of {total} ({} calls arrived before the first run_at, {unknown} for unknown ids)",
        seen.len(),
        first_call.len(),
        early
    );
    let summary = Summary::of(&mut all);
    match &summary {
        Some(s) => println!("arrival − run_at: {}", s.line()),
        None => println!("arrival − run_at: no samples"),
    }
    for (s, v) in per_second.iter_mut().enumerate() {
        if let Some(sum) = Summary::of(v) {
            println!("  run_at second {s:>2}: {}", sum.line());
        }
    }
    println!(
        "CPU in the due window ({:.2} s): server {cpu_server:.2} s = {:.0} µs per task, {:.2} cores busy; \
         this process (receiver, clients idle) {cpu_self:.2} s = {:.2} cores busy",
        window.as_secs_f64(),
        cpu_server / total as f64 * 1e6,
        cpu_server / window.as_secs_f64(),
        cpu_self / window.as_secs_f64()
    );

    println!(
        "writer while enqueueing: {}\nwriter in the due window: {}",
        writer_enqueue.since(writer_enqueued, total),
        writer_start.since(writer_end, total)
    );

    // Off the clock: split each latency at the attempt's recorded start time (`at`, ms).
    let mut dispatch = Vec::with_capacity(total);
    let mut call = Vec::with_capacity(total);
    let ids: Vec<String> = first_call.keys().map(|s| (*s).to_string()).collect();
    let mut fetches = futures_util::stream::iter(ids.into_iter().map(|id| {
        let api = Arc::clone(&api);
        async move {
            let v = api.get(&format!("/v1beta1/admin/tasks/{id}")).await;
            let at = v["task"]["attempts"][0]["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            (id, at)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some((id, at)) = fetches.next().await {
        if let (Some(at), Some(r), Some(arrived)) =
            (at, run_at.get(&id), first_call.get(id.as_str()))
        {
            dispatch.push((at - r) * 1000);
            call.push(arrived - at * 1000);
        }
    }
    if let (Some(d), Some(c)) = (Summary::of(&mut dispatch), Summary::of(&mut call)) {
        println!(
            "split (attempt time is whole ms):\n  run_at → attempt started (dispatcher wake-up, claim, start commit): {}\n  attempt started → received (HTTP call): {}",
            d.line(),
            c.line()
        );
    }
    drop(server);
    summary.map(|s| s.p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env_num("BENCH_TASKS", 20_000);
    let rate: usize = env_num("BENCH_TASK_RATE", 1_000).max(1);
    let secs: usize = env_num("BENCH_TASK_SECS", 10).max(1);
    hookrelay::install_tls_provider();
    let calls = Arc::new(Calls::default());
    let port = start_receiver(Arc::clone(&calls));
    let prefix = format!("http://127.0.0.1:{port}/");
    let url = format!("{prefix}tasks/index-document");
    let workers = std::env::var("BENCH_WORKERS").map_or_else(
        |_| "default (16)".to_string(),
        |w| format!("{w} (BENCH_WORKERS)"),
    );
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "hookrelay tasks benchmark: synchronous = full, jobs.workers = {workers}, tasks.allowed_urls = [\"{prefix}\"];\n\
         the receiver (actix-web, 1 worker, answers 200 at once) and the clients run in this process on the same {cores} cores as the server;\n\
         server CPU is utime + stime of the server process only (/proc/<pid>/stat); each phase on a fresh server and database"
    );

    // 1. Throughput.
    let enqueue_rate = throughput(n, &calls, &prefix, &url).await;

    // 2. Latency at `rate` due per second, enqueued ahead.
    let total = rate * secs;
    let lead = std::env::var("BENCH_LEAD_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or_else(
            || Duration::from_secs_f64(2.0 * total as f64 / enqueue_rate.max(1.0) + 3.0),
            Duration::from_secs_f64,
        );
    let p99 = latency(rate, secs, lead, &calls, &prefix, &url).await;

    println!("\n== target");
    match p99 {
        Some(p) => println!(
            "p99 of (call arrival − run_at) at {rate} due tasks/s = {p:.1} ms  (target ≤ {TARGET_P99_MS:.0} ms): {}",
            if p <= TARGET_P99_MS { "PASS" } else { "MISS" }
        ),
        None => println!("p99 of (call arrival − run_at): no calls received: MISS"),
    }
}
