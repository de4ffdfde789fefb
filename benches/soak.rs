//! Soak run: `cargo bench --bench soak` (10 minutes; `SOAK_SECS` changes it).
//!
//! Starts the real `hookrelay serve` (optimized, `synchronous = full`) with retention cut to one
//! minute and the `retention` and `db_maintenance` crons every minute, a receiver answering 200,
//! and one webhook subscribed to everything; then sends signed Front webhooks and publishes
//! events at a steady rate (`SOAK_RATE` each per second, default 100), so every second brings
//! `2 × SOAK_RATE` stored events, their jobs and deliveries. Every 30 s it prints the database
//! and WAL size, the server's RSS and row counts, and at the end whether size and RSS levelled
//! off (the last third of the run within 15 % of the middle third) instead of growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

mod common;

const SECRET: &str = "soak-front-secret";
const SAMPLE_EVERY: Duration = Duration::from_secs(30);

fn front_event(i: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "authorization": {"id": "cmp_soak"},
        "type": "inbound_received",
        "payload": {
            "id": format!("evt_soak_{i}"),
            "type": "inbound",
            "emitted_at": 1_694_046_470.93,
            "conversation": {"id": "cnv_55", "subject": "Refund for order #1234", "status": "unassigned"},
            "target": {"_meta": {"type": "message"}, "data": {
                "id": format!("msg_{i}"), "type": "email", "is_inbound": true,
                "blurb": "Hi, I would like a refund…",
                "body": "<p>Hi, I would like a refund for order #1234. It arrived broken.</p>",
            }}
        }
    }))
    .expect("json")
}

async fn send_front(client: &reqwest::Client, base: &str, i: u64) -> bool {
    let body = front_event(i);
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    client
        .post(format!("{base}/webhooks/front"))
        .header("x-front-request-timestamp", timestamp)
        .header("x-front-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn publish(client: &reqwest::Client, base: &str, i: u64) -> bool {
    client
        .post(format!("{base}/v1beta1/events"))
        .bearer_auth("bench")
        .json(&json!({"action": "app.user.created", "data": {
            "actor": {"id": "user_abc123", "type": "user", "name": "admin@example.com"},
            "target": {"id": format!("user_{i}"), "type": "user", "name": "Jane Doe"},
            "metadata": {"seq": i}
        }}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn file_len(path: &std::path::Path, suffix: &str) -> u64 {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn sum(v: &Value) -> i64 {
    v.as_object()
        .map(|m| m.values().filter_map(Value::as_i64).sum())
        .unwrap_or(0)
}

struct Sample {
    db: u64,
    rss: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env("SOAK_SECS", 600);
    let rate = env("SOAK_RATE", 100).max(1);
    hookrelay::install_tls_provider();
    let received = Arc::new(AtomicU64::new(0));
    let port = common::start_receiver(Arc::clone(&received));
    let server = common::Server::start(&format!(
        "[front]\nwebhook_secret = \"{SECRET}\"\n\
         [delivery]\nallow_http = true\nallow_private_networks = true\n\
         [retention]\nsucceeded = \"1m\"\nfailed = \"2m\"\n\
         [cron]\nretention = \"0 * * * * *\"\ndb_maintenance = \"30 * * * * *\"\n"
    ));
    let base = server.address.clone();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1beta1/admin/webhooks"))
        .bearer_auth("bench")
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook")}))
        .send()
        .await
        .expect("create webhook");
    assert!(res.status().is_success(), "webhook: {}", res.status());
    println!(
        "hookrelay soak: {secs} s, {rate} Front webhooks/s + {rate} published events/s, retention 1 min (cron every minute), synchronous = full"
    );
    println!(
        "{:>6} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>10} {:>7}",
        "t (s)",
        "db MiB",
        "wal MiB",
        "RSS MiB",
        "jobs",
        "deliveries",
        "inbound",
        "delivered",
        "errors"
    );

    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let load = {
        let (client, base, sent, errors) = (
            client.clone(),
            base.clone(),
            Arc::clone(&sent),
            Arc::clone(&errors),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                i += 1;
                let (client, base, errors) = (client.clone(), base.clone(), Arc::clone(&errors));
                sent.fetch_add(2, Ordering::Relaxed);
                tokio::spawn(async move {
                    let (a, b) =
                        tokio::join!(send_front(&client, &base, i), publish(&client, &base, i));
                    errors.fetch_add(u64::from(!a) + u64::from(!b), Ordering::Relaxed);
                });
            }
        })
    };

    let mut samples = Vec::new();
    let mut next = started + SAMPLE_EVERY;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let stats: Value = common::stats(&client, &base).await;
        let s = Sample {
            db: file_len(&server.db, ""),
            rss: rss_kib(server.pid()),
        };
        println!(
            "{:>6} {:>10.1} {:>10.1} {:>9.1} {:>9} {:>10} {:>9} {:>10} {:>7}",
            started.elapsed().as_secs(),
            s.db as f64 / 1_048_576.0,
            file_len(&server.db, "-wal") as f64 / 1_048_576.0,
            s.rss as f64 / 1024.0,
            sum(&stats["jobs"]["by_state"]),
            sum(&stats["deliveries"]["by_state"]),
            sum(&stats["inbound"]["by_state"]),
            received.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
        );
        samples.push(s);
        next += SAMPLE_EVERY;
        if next > deadline + SAMPLE_EVERY {
            break;
        }
    }
    load.await.expect("load");
    let n = samples.len();
    if n >= 3 {
        let third = n / 3;
        let mid =
            |f: fn(&Sample) -> u64| samples[third..2 * third].iter().map(f).max().unwrap_or(0);
        let last = |f: fn(&Sample) -> u64| samples[2 * third..].iter().map(f).max().unwrap_or(0);
        for (what, f) in [
            ("database size", (|s: &Sample| s.db) as fn(&Sample) -> u64),
            ("RSS", |s: &Sample| s.rss),
        ] {
            let (m, l) = (mid(f), last(f));
            let growth = if m == 0 {
                0.0
            } else {
                (l as f64 / m as f64 - 1.0) * 100.0
            };
            println!(
                "{what}: max {:.1} MiB in the middle third, {:.1} MiB in the last third ({growth:+.1} %) — {}",
                m as f64 / 1_048_576.0 * if what == "RSS" { 1024.0 } else { 1.0 },
                l as f64 / 1_048_576.0 * if what == "RSS" { 1024.0 } else { 1.0 },
                if growth <= 15.0 {
                    "levelled off"
                } else {
                    "STILL GROWING"
                }
            );
        }
    }
    println!(
        "sent {} requests, {} not acked; {} deliveries received",
        sent.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed)
    );
}
