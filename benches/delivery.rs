//! Outbound delivery benchmark: `cargo bench --bench delivery`.
//!
//! Starts the real `hookrelay serve` (optimized build, `synchronous = full`) and a minimal
//! receiver answering 200 (actix-web, one worker), both on this machine, then:
//! 1. publishes `BENCH_EVENTS` events (default 50,000) to one webhook with 64 concurrent
//!    publishers and measures end-to-end deliveries/s — from the first publish to the last
//!    delivery recorded as succeeded, every attempt recorded;
//! 2. publishes at a steady 1,000 events/s for 10 s and reports publish latency;
//! 3. fan-out: 1,000 events to 50 webhooks (50,000 deliveries).
//!
//! 4. databases side by side: `BENCH_DB_EVENTS` events (default 20,000) to one webhook on
//!    SQLite, on PostgreSQL with one replica, and on PostgreSQL with two replicas sharing the
//!    database (publishers split over both), in the same run; PostgreSQL is a throwaway cluster
//!    on this machine (`initdb`/`pg_ctl`, `synchronous_commit = on`), skipped with a note
//!    without it. `BENCH_ONLY_DATABASES=1` runs only this part.
//!
//! `BENCH_WORKERS` sets `jobs.workers` (default 16, as shipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

const CONCURRENCY: usize = 64;

fn event(i: usize) -> Value {
    json!({"action": "app.user.created", "data": {
        "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
        "target": {"id": format!("user_{i}"), "type": "user", "name": "Jane Doe"},
        "org_id": "org_123abc",
        "metadata": {"email": "jane@example.com", "department": "Engineering", "seq": i}
    }})
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth("bench")
            .json(body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn webhook(&self, url: &str) {
        let (status, body) = self
            .post("/v1beta1/admin/webhooks", &json!({"url": url}))
            .await;
        assert_eq!(status, 200, "create webhook: {body}");
    }

    async fn publish(&self, i: usize) -> Duration {
        let started = Instant::now();
        let (status, body) = self.post("/v1beta1/events", &event(i)).await;
        assert_eq!(status, 202, "publish: {body}");
        started.elapsed()
    }

    /// Deliveries recorded as succeeded (from the admin API's pending count).
    async fn pending(&self) -> usize {
        let res = self
            .client
            .get(format!(
                "{}/v1beta1/admin/deliveries?state=pending&limit=1",
                self.base
            ))
            .bearer_auth("bench")
            .send()
            .await
            .expect("request");
        let v: Value = res.json().await.expect("json");
        v["deliveries"].as_array().map_or(0, Vec::len)
    }
}

async fn publish_all(api: &Arc<Api>, n: usize) {
    publish_through(std::slice::from_ref(api), n).await;
}

/// Publishes `n` events, the publishers spread over `apis` (one per replica).
async fn publish_through(apis: &[Arc<Api>], n: usize) {
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let api = Arc::clone(&apis[t % apis.len()]);
            tokio::spawn(async move {
                for i in (t..n).step_by(CONCURRENCY) {
                    api.publish(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher");
    }
}

/// Waits until the receiver has `target` requests and nothing is pending; returns when the
/// receiver saw the last one.
async fn drain(api: &Api, received: &AtomicU64, target: u64) -> Instant {
    let mut last_change = Instant::now();
    let mut last = 0;
    loop {
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now >= target && api.pending().await == 0 {
            return last_change;
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(60),
            "deliveries stalled at {now}/{target}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    hookrelay::install_tls_provider();
    let received = Arc::new(AtomicU64::new(0));
    let port = common::start_receiver(Arc::clone(&received));
    let receiver = format!("http://127.0.0.1:{port}/hook");

    // jobs.workers as shipped unless BENCH_WORKERS says otherwise.
    let workers = std::env::var("BENCH_WORKERS").unwrap_or_else(|_| "16".into());
    let server = common::Server::start(&format!(
        "[delivery]\nallow_http = true\nallow_private_networks = true\n[jobs]\nworkers = {workers}\n"
    ));
    let api = Arc::new(Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client"),
        base: server.address.clone(),
    });
    println!(
        "hookrelay delivery benchmark: synchronous = full, receiver and publishers on the same 2 cores"
    );
    if std::env::var("BENCH_ONLY_DATABASES").is_ok() {
        drop(server);
        databases(&workers).await;
        return;
    }
    api.webhook(&receiver).await;

    // 1. Throughput to one webhook.
    let started = Instant::now();
    publish_all(&api, n).await;
    let published = started.elapsed();
    let at_publish_end = received.load(Ordering::Relaxed);
    let last = drain(&api, &received, n as u64).await;
    let total = last - started;
    let drain_rate = (n as u64 - at_publish_end) as f64 / (total - published).as_secs_f64();
    println!(
        "one webhook: {n} events published in {:.2} s ({:.0}/s); all {n} delivered in {:.2} s = {:.0} deliveries/s end to end \
         ({at_publish_end} during publishing, then {drain_rate:.0}/s once publishing ended)",
        published.as_secs_f64(),
        n as f64 / published.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );

    // 2. Publish latency at a steady 1,000 events/s.
    let rate = 1000usize;
    let secs = 10;
    let interval = Duration::from_micros(1_000_000 / rate as u64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(rate * secs);
    for i in 0..rate * secs {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move { api.publish(n + i).await }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        lat.push(t.await.expect("task"));
    }
    println!(
        "publish latency at {rate} events/s for {secs} s (deliveries running): {}",
        common::percentiles(lat)
    );
    drain(&api, &received, (n + rate * secs) as u64).await;

    // 3. Fan-out: 1 event to 50 webhooks.
    for i in 1..50 {
        api.webhook(&format!("{receiver}?n={i}")).await;
    }
    let events = 1000;
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut lat = Vec::with_capacity(events);
    for chunk in (0..events).collect::<Vec<_>>().chunks(CONCURRENCY) {
        let futs: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let api = Arc::clone(&api);
                tokio::spawn(async move { api.publish(n + rate * secs + i).await })
            })
            .collect();
        for f in futs {
            lat.push(f.await.expect("publish"));
        }
    }
    let last = drain(&api, &received, before + 50 * events as u64).await;
    let total = last - started;
    println!(
        "fan-out: {events} events x 50 webhooks = {} deliveries in {:.2} s = {:.0} deliveries/s; publish {}",
        50 * events,
        total.as_secs_f64(),
        (50 * events) as f64 / total.as_secs_f64(),
        common::percentiles(lat)
    );
    drop(server);
    databases(&workers).await;
}

fn api(server: &common::Server) -> Arc<Api> {
    Arc::new(Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client"),
        base: server.address.clone(),
    })
}

/// `n` events to one webhook through `servers` (all on one database): deliveries/s from the
/// first publish to the last delivery.
async fn one_webhook_rate(servers: &[common::Server], n: usize) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let port = common::start_receiver(Arc::clone(&received));
    let apis: Vec<Arc<Api>> = servers.iter().map(api).collect();
    apis[0]
        .webhook(&format!("http://127.0.0.1:{port}/hook"))
        .await;
    // Every replica has seen the webhook before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    publish_through(&apis, n).await;
    let last = drain(&apis[0], &received, n as u64).await;
    n as f64 / (last - started).as_secs_f64()
}

/// Part 4: the same load on SQLite, PostgreSQL, and two PostgreSQL replicas.
async fn databases(workers: &str) {
    let extra = format!(
        "[delivery]\nallow_http = true\nallow_private_networks = true\n[jobs]\nworkers = {workers}\n"
    );
    common::databases("events to one webhook", &extra, async |servers, n| {
        one_webhook_rate(servers, n).await
    })
    .await;
}
