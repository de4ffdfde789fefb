//! Full-pipeline benchmark: `cargo bench --bench pipeline`.
//!
//! Starts the real `hookrelay serve` (optimized build, `synchronous = full`, `jobs.workers` as
//! shipped unless `BENCH_WORKERS` is set, a Front `webhook_secret`, no Front API token) with one
//! webhook subscribed to everything, pointing at the minimal receiver of `benches/common`, and
//! measures three pipelines, each on a fresh server with an empty database:
//! 1. **Front → delivered**: `BENCH_EVENTS` (default 50,000) unique, signed, full Front
//!    `inbound_received` application webhooks (message with its body, conversation, recipients:
//!    `front.process` needs no API fetch), posted by 64 concurrent posters; timed from the first
//!    post to the moment the last resulting delivery is recorded as succeeded — the receiver has
//!    seen them all, the admin API lists no pending delivery and no pending inbound event;
//! 2. **publish → delivered**: as many events through `POST /v1beta1/events`, 64 concurrent
//!    publishers, timed the same way;
//! 3. **publish, Front-sized → delivered**: as 2, but each event carries what `front.process`
//!    publishes for the Front event of 1 (the Front event, its message and conversation in
//!    `metadata`, about ten times the size of 2's). Not a target: the ratio of 1 to 3 shows what
//!    the second durable stage costs apart from the size of the payload.
//!
//! 4. **the databases side by side**: Front → delivered for `BENCH_DB_EVENTS` (default 20,000)
//!    on SQLite, on PostgreSQL with one `serve` and with two sharing the database (the posts
//!    split over both), in one run; PostgreSQL is a throwaway cluster on the same cores with its
//!    own durability (`fsync`, `synchronous_commit = on`; `BENCH_PG_SETTINGS` adds settings),
//!    skipped with a note without it. `BENCH_ONLY_DATABASES=1` runs only this part.
//!
//! For each of 1–3 it prints events/s end to end, the ingest rate alone and the server's CPU time per
//! event (utime + stime of the server process from `/proc/<pid>/stat`, from the first post to the
//! last delivery — the load generator and the receiver run in this process and are not counted),
//! then the two targets: Front → delivered ≥ 0.8 × publish → delivered, and ≤ 150 µs of server
//! CPU per Front event end to end. Bodies are built and signed before the clock starts, and the
//! 64 pooled connections are opened beforehand with `/healthz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

mod common;

use common::{Api, cpu_secs};

const SECRET: &str = "bench-front-secret";
const CONCURRENCY: usize = 64;
/// Target: Front → delivered at least this fraction of publish → delivered.
const TARGET_RATIO: f64 = 0.8;
/// Target: at most this much server CPU per Front event, end to end.
const TARGET_CPU_US: f64 = 150.0;

/// One prepared request: the body, and for Front its timestamp and signature.
struct Prepared {
    body: Vec<u8>,
    signed: Option<(String, String)>,
}

/// A full `inbound_received` application webhook, as `tests/api/front.rs::full_inbound`.
fn front_event(i: usize) -> Vec<u8> {
    let event_id = format!("evt_pipe_{i}");
    let msg_id = format!("msg_pipe_{i}");
    serde_json::to_vec(&json!({
        "authorization": {"id": "cmp_acme"},
        "type": "inbound_received",
        "payload": {
            "_links": {"self": format!("https://acme.api.frontapp.com/events/{event_id}")},
            "id": event_id,
            "type": "inbound",
            "emitted_at": 1_694_046_470.93,
            "conversation": {
                "_links": {"self": "https://acme.api.frontapp.com/conversations/cnv_55"},
                "id": "cnv_55",
                "subject": "Refund for order #1234",
                "status": "unassigned",
                "assignee": null,
                "tags": [],
                "is_private": false
            },
            "source": {
                "_meta": {"type": "inboxes"},
                "data": [{"_links": {"self": "https://acme.api.frontapp.com/inboxes/inb_3srbb"}, "id": "inb_3srbb", "name": "Support"}]
            },
            "target": {
                "_meta": {"type": "message"},
                "data": {
                    "_links": {"self": format!("https://acme.api.frontapp.com/messages/{msg_id}"),
                               "related": {"conversation": "https://acme.api.frontapp.com/conversations/cnv_55"}},
                    "id": msg_id,
                    "type": "email",
                    "is_inbound": true,
                    "created_at": 1_694_046_470.5,
                    "blurb": "Hi, I would like a refund…",
                    "body": "<p>Hi, I would like a refund for order #1234.</p>",
                    "text": "Hi, I would like a refund for order #1234.",
                    "author": null,
                    "recipients": [
                        {"_links": {"related": {"contact": "https://acme.api.frontapp.com/contacts/crd_77"}},
                         "handle": "jane@example.com", "name": "Jane Doe", "role": "from"},
                        {"_links": {"related": {"contact": null}}, "handle": "support@acme.test", "name": null, "role": "to"}
                    ],
                    "attachments": [],
                    "metadata": {}
                }
            }
        }
    }))
    .expect("json")
}

/// A published event, as in `benches/delivery.rs`.
fn publish_event(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": "app.user.created", "data": {
        "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
        "target": {"id": format!("user_{i}"), "type": "user", "name": "Jane Doe"},
        "org_id": "org_123abc",
        "metadata": {"email": "jane@example.com", "department": "Engineering", "seq": i}
    }}))
    .expect("json")
}

/// What `front.process` publishes for `front_event(i)`: the same `data` shape and size.
fn front_sized_event(i: usize) -> Vec<u8> {
    let front: serde_json::Value = serde_json::from_slice(&front_event(i)).expect("json");
    let event = &front["payload"];
    let message = &event["target"]["data"];
    serde_json::to_vec(&json!({"action": "app.message.received", "data": {
        "actor": {"id": "crd_77", "type": "contact", "name": "Jane Doe", "email": "jane@example.com"},
        "target": {"id": message["id"], "type": "message", "name": "Refund for order #1234"},
        "org_id": "cmp_acme",
        "metadata": {"event": event, "message": message, "conversation": event["conversation"], "history": []}
    }}))
    .expect("json")
}

fn sign_front(n: usize) -> Vec<Prepared> {
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    (0..n)
        .map(|i| {
            let body = front_event(i);
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(timestamp.as_bytes());
            mac.update(b":");
            mac.update(&body);
            let signature =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            Prepared {
                body,
                signed: Some((timestamp.clone(), signature)),
            }
        })
        .collect()
}

fn prepare_publish(n: usize, body: fn(usize) -> Vec<u8>) -> Vec<Prepared> {
    (0..n)
        .map(|i| Prepared {
            body: body(i),
            signed: None,
        })
        .collect()
}

impl Api {
    async fn webhook(&self, url: &str) {
        let res = self
            .client
            .post(format!("{}/v1beta1/admin/webhooks", self.base))
            .bearer_auth("bench")
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "create webhook");
    }

    async fn send(&self, path: &str, p: Prepared, expect: u16) -> Duration {
        let started = Instant::now();
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        req = match p.signed {
            Some((ts, sig)) => req
                .header("x-front-request-timestamp", ts)
                .header("x-front-signature", sig),
            None => req.bearer_auth("bench"),
        };
        let res = req.body(p.body).send().await.expect("request");
        let status = res.status().as_u16();
        let body = res.bytes().await.unwrap_or_default();
        assert_eq!(
            status,
            expect,
            "POST {path}: {}",
            String::from_utf8_lossy(&body)
        );
        started.elapsed()
    }
}

/// A server started as the benchmark wants it, its client, and its webhook.
async fn start(receiver: &str) -> (common::Server, Arc<Api>) {
    let workers = std::env::var("BENCH_WORKERS")
        .map(|w| format!("[jobs]\nworkers = {w}\n"))
        .unwrap_or_default();
    let server = common::Server::start(&format!(
        "[front]\nwebhook_secret = \"{SECRET}\"\n\
         [delivery]\nallow_http = true\nallow_private_networks = true\n{workers}"
    ));
    let api = Arc::new(Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client"),
        base: server.address.clone(),
    });
    api.webhook(receiver).await;
    api.warm(CONCURRENCY).await;
    (server, api)
}

/// What one pipeline measured.
struct Measured {
    /// End-to-end events/s.
    rate: f64,
    /// Server CPU per event, µs.
    cpu_us: f64,
}

/// Sends every prepared request with [`CONCURRENCY`] tasks, then waits for the deliveries;
/// prints and returns the figures.
async fn run(
    label: &str,
    server: &common::Server,
    api: &Arc<Api>,
    received: &AtomicU64,
    path: &'static str,
    expect: u16,
    prepared: Vec<Prepared>,
) -> Measured {
    let n = prepared.len();
    let mut shares: Vec<Vec<Prepared>> = (0..CONCURRENCY).map(|_| Vec::new()).collect();
    for (i, p) in prepared.into_iter().enumerate() {
        shares[i % CONCURRENCY].push(p);
    }
    let base_count = received.load(Ordering::Relaxed);
    let target = base_count + n as u64;
    let pid = server.pid();

    let cpu_start = cpu_secs(pid);
    let threads_start = common::thread_cpu(pid);
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let api = Arc::clone(api);
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(share.len());
                for p in share {
                    lat.push(api.send(path, p, expect).await);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("poster"));
    }
    let ingested = started.elapsed();
    let cpu_ingest = cpu_secs(pid) - cpu_start;
    let during = received.load(Ordering::Relaxed) - base_count;

    // Wait for the last delivery to be recorded: the receiver has them all, nothing is pending.
    let mut last = received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let (finished, cpu_end, threads_end) = loop {
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now >= target
            && api
                .empty(
                    "/v1beta1/admin/deliveries?state=pending&limit=1",
                    "deliveries",
                )
                .await
            && api
                .empty("/v1beta1/admin/inbound?state=pending&limit=1", "inbound")
                .await
        {
            break (Instant::now(), cpu_secs(pid), common::thread_cpu(pid));
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(120),
            "{label}: deliveries stalled at {}/{n}",
            now - base_count
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let total = finished - started;
    let cpu = cpu_end - cpu_start;

    // Nothing failed on the way (checked after the clock stopped).
    for (path, key) in [
        (
            "/v1beta1/admin/deliveries?state=failed&limit=1",
            "deliveries",
        ),
        ("/v1beta1/admin/inbound?state=failed&limit=1", "inbound"),
    ] {
        assert!(api.empty(path, key).await, "{label}: {path} is not empty");
    }

    let rate = n as f64 / total.as_secs_f64();
    let cpu_us = cpu / n as f64 * 1e6;
    println!("\n== {label}: {n} events, {CONCURRENCY} concurrent posters");
    println!(
        "ingest:      {:.2} s = {:.0} events/s acked; ack latency {}",
        ingested.as_secs_f64(),
        n as f64 / ingested.as_secs_f64(),
        common::percentiles(lat)
    );
    println!(
        "end to end:  {:.2} s = {rate:.0} events/s delivered ({during} delivered while ingesting, the rest {:.0}/s after)",
        total.as_secs_f64(),
        (n as u64 - during.min(n as u64)) as f64 / (total - ingested).as_secs_f64().max(1e-9)
    );
    println!(
        "server CPU:  {cpu:.2} s = {cpu_us:.0} µs per event end to end ({:.0} µs per event during ingest); on average {:.2} cores busy",
        cpu_ingest / n as f64 * 1e6,
        cpu / total.as_secs_f64()
    );
    println!(
        "by thread:   {}",
        common::per_thread(&threads_start, &threads_end, n)
    );
    Measured { rate, cpu_us }
}

/// Front → delivered through `servers` (the posts split over them), events/s end to end.
async fn front_rate(
    servers: &[common::Server],
    received: &AtomicU64,
    receiver: &str,
    n: usize,
) -> f64 {
    let apis: Vec<Arc<Api>> = servers
        .iter()
        .map(|s| {
            Arc::new(Api {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(CONCURRENCY)
                    .build()
                    .expect("client"),
                base: s.address.clone(),
            })
        })
        .collect();
    apis[0].webhook(receiver).await;
    for api in &apis {
        api.warm(CONCURRENCY / apis.len()).await;
    }
    // Every replica has seen the webhook before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut shares: Vec<Vec<Prepared>> = (0..CONCURRENCY).map(|_| Vec::new()).collect();
    for (i, p) in sign_front(n).into_iter().enumerate() {
        shares[i % CONCURRENCY].push(p);
    }
    let target = received.load(Ordering::Relaxed) + n as u64;
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let api = Arc::clone(&apis[i % apis.len()]);
            tokio::spawn(async move {
                for p in share {
                    api.send("/webhooks/front", p, 200).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("poster");
    }
    let mut last = received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now >= target
            && apis[0]
                .empty(
                    "/v1beta1/admin/deliveries?state=pending&limit=1",
                    "deliveries",
                )
                .await
            && apis[0]
                .empty("/v1beta1/admin/inbound?state=pending&limit=1", "inbound")
                .await
        {
            break;
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(120),
            "databases: deliveries stalled at {now} of {target}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Last part: Front → delivered on SQLite, on PostgreSQL with one `serve`, and with two
/// sharing the database, in one run (see `common::databases`).
async fn databases(received: &AtomicU64, receiver: &str) {
    let workers = std::env::var("BENCH_WORKERS")
        .map(|w| format!("[jobs]\nworkers = {w}\n"))
        .unwrap_or_default();
    let extra = format!(
        "[front]\nwebhook_secret = \"{SECRET}\"\n\
         [delivery]\nallow_http = true\nallow_private_networks = true\n{workers}"
    );
    common::databases("Front events → delivered", &extra, async |servers, n| {
        front_rate(servers, received, receiver, n).await
    })
    .await;
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
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
    let workers = std::env::var("BENCH_WORKERS").map_or_else(
        |_| "default (16)".to_string(),
        |w| format!("{w} (BENCH_WORKERS)"),
    );
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "hookrelay pipeline benchmark: synchronous = full, jobs.workers = {workers}, one webhook subscribed to everything;\n\
         the receiver (actix-web, 1 worker) and the load generator run in this process on the same {cores} cores as the server;\n\
         server CPU is utime + stime of the server process only (/proc/<pid>/stat); each phase on a fresh server and database"
    );

    if std::env::var("BENCH_ONLY_DATABASES").is_ok() {
        databases(&received, &receiver).await;
        return;
    }
    // Each phase on a fresh server and database.
    let phase = async |label: &str, path: &'static str, expect: u16, prepared: Vec<Prepared>| {
        let (server, api) = start(&receiver).await;
        let measured = run(label, &server, &api, &received, path, expect, prepared).await;
        drop(server);
        measured
    };
    let front = phase("Front → delivered", "/webhooks/front", 200, sign_front(n)).await;
    let publish = phase(
        "publish → delivered",
        "/v1beta1/events",
        202,
        prepare_publish(n, publish_event),
    )
    .await;
    let sized = phase(
        "publish, Front-sized → delivered",
        "/v1beta1/events",
        202,
        prepare_publish(n, front_sized_event),
    )
    .await;

    // The targets.
    let ratio = front.rate / publish.rate;
    println!("\n== targets");
    println!(
        "Front → delivered / publish → delivered = {:.0} / {:.0} = {ratio:.2}  (target ≥ {TARGET_RATIO:.2}): {}",
        front.rate,
        publish.rate,
        verdict(ratio >= TARGET_RATIO)
    );
    println!(
        "server CPU per Front event end to end = {:.0} µs  (target ≤ {TARGET_CPU_US:.0} µs; publish → delivered: {:.0} µs): {}",
        front.cpu_us,
        publish.cpu_us,
        verdict(front.cpu_us <= TARGET_CPU_US)
    );
    println!(
        "not a target — Front → delivered / publish, Front-sized → delivered = {:.0} / {:.0} = {:.2}; CPU {:.0} vs {:.0} µs per event",
        front.rate,
        sized.rate,
        front.rate / sized.rate,
        front.cpu_us,
        sized.cpu_us
    );
    databases(&received, &receiver).await;
}
