//! Hostile-input benchmark: `cargo bench --bench hostile`.
//!
//! Starts the real `hookrelay serve` (optimized build) and measures what attacks cost it:
//! 1. RSS of the server and latency of healthy requests (a signed Front webhook and `/healthz`)
//!    while N connections hold stalled request bodies (headers and half of a
//!    `max_body_bytes` body, then nothing), for N = 0, 500, 2,000 (`BENCH_STALLED` overrides the
//!    largest);
//! 2. how long the worst-shaped 1 MiB bodies take to be answered: a long key over a wide array,
//!    deep nesting, a wide object, one long string, each as a publish and as a Front webhook;
//! 3. the writes a backlog of 10,000 deliveries to a dead endpoint (connection refused) and to
//!    a hanging one (accepts, never answers) causes per second, next to the attempts made
//!    (`BENCH_BACKLOG` overrides 10,000). The target is writes in proportion to attempts, not to
//!    the backlog.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

mod common;

const SECRET: &str = "bench-front-secret";
const MAX_BODY: usize = 1 << 20;

fn sign(ts: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{ts}:").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn front_event(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "authorization": {"id": "cmp_bench"},
        "type": "inbound_received",
        "payload": {"id": format!("evt_bench_{n}"), "type": "inbound",
                    "target": {"_meta": {"type": "message"}, "data": {"id": format!("msg_{n}"), "body": "hello"}}}
    }))
    .expect("json")
}

async fn post_front(client: &reqwest::Client, base: &str, body: Vec<u8>) -> (u16, Duration) {
    let ts = hookrelay::clock::now_ms().to_string();
    let started = Instant::now();
    let res = client
        .post(format!("{base}/webhooks/front"))
        .header("content-type", "application/json")
        .header("x-front-request-timestamp", &ts)
        .header("x-front-signature", sign(&ts, &body))
        .body(body)
        .send()
        .await
        .expect("front post");
    let status = res.status().as_u16();
    let _ = res.bytes().await;
    (status, started.elapsed())
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Sums every sample of a metric family in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

async fn stalled_bodies(client: &reqwest::Client) {
    let largest: usize = std::env::var("BENCH_STALLED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("\n== stalled bodies (max_body_bytes = 1 MiB, half of it sent, body_timeout 60 s)");
    println!(
        "{:>10}  {:>9}  {:>26}",
        "stalled", "RSS MiB", "healthy requests (50 each)"
    );
    for n in [0, 500, largest] {
        let server = common::Server::start_with(
            &format!("body_timeout = \"60s\"\nmax_connections = {}", n + 1000),
            &format!("[front]\nwebhook_secret = \"{SECRET}\"\n[jobs]\nworkers = 0"),
        );
        let addr = server.address.trim_start_matches("http://").to_string();
        let _ = post_front(client, &server.address, front_event(0)).await;
        let mut held = Vec::with_capacity(n);
        let half = vec![b'a'; MAX_BODY / 2];
        for _ in 0..n {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let head = format!(
                "POST /webhooks/front HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {MAX_BODY}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("head");
            s.write_all(&half).await.expect("half a body");
            held.push(s);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut lat = Vec::new();
        for i in 0..50 {
            let (status, took) = post_front(client, &server.address, front_event(i + 1)).await;
            assert_eq!(status, 200);
            lat.push(took);
            let started = Instant::now();
            let res = client
                .get(format!("{}/healthz", server.address))
                .send()
                .await
                .expect("healthz");
            assert_eq!(res.status(), 200);
            lat.push(started.elapsed());
        }
        println!(
            "{n:>10}  {:>9.1}  {}",
            rss_mib(server.pid()),
            common::percentiles(lat)
        );
        drop(held);
    }
}

/// The shapes that were slow once, each 1 MiB.
fn shapes() -> Vec<(&'static str, String)> {
    let long_key = "k".repeat(520_000);
    let wide_array = format!("{{\"{long_key}\":[{}0]}}", "0,".repeat(262_000));
    let deep = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
    let mut wide_object = String::from("{");
    let mut i = 0;
    while wide_object.len() < MAX_BODY - 200 {
        if i > 0 {
            wide_object.push(',');
        }
        wide_object.push_str(&format!("\"k{i}\":{i}"));
        i += 1;
    }
    wide_object.push('}');
    let long_string = format!("\"{}\"", "x".repeat(MAX_BODY - 200));
    vec![
        ("long key over a wide array", wide_array),
        ("nesting 500,000 deep", deep),
        ("wide object", wide_object),
        ("one long string", long_string),
    ]
}

async fn worst_bodies(client: &reqwest::Client) {
    println!("\n== worst-shaped bodies (~1 MiB each): time to the answer");
    let server = common::Server::start(&format!(
        "[front]\nwebhook_secret = \"{SECRET}\"\n[jobs]\nworkers = 0"
    ));
    for (name, metadata) in shapes() {
        let publish = format!(
            "{{\"action\":\"app.user.created\",\"data\":{{\"metadata\":{{\"x\":{metadata}}}}}}}"
        );
        let size = publish.len();
        let started = Instant::now();
        let res = client
            .post(format!("{}/v1beta1/events", server.address))
            .bearer_auth("bench")
            .header("content-type", "application/json")
            .body(publish)
            .send()
            .await
            .expect("publish");
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        let took = started.elapsed();
        let front = format!(
            "{{\"authorization\":{{\"id\":\"cmp_x\"}},\"type\":\"inbound_received\",\"payload\":{{\"id\":\"evt_{}\",\"x\":{metadata}}}}}",
            name.len()
        );
        let (front_status, front_took) =
            post_front(client, &server.address, front.into_bytes()).await;
        println!(
            "{name:<28} {:>5} KiB  publish {status} in {:>7.1} ms   front {front_status} in {:>7.1} ms",
            size / 1024,
            took.as_secs_f64() * 1e3,
            front_took.as_secs_f64() * 1e3
        );
    }
}

/// A listener that accepts connections and never answers.
fn hanging_endpoint() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

async fn backlog(client: &reqwest::Client) {
    let n: usize = std::env::var("BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("\n== a backlog of {n} deliveries to one broken endpoint (delivery.timeout 3 s)");
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for (kind, port) in [
        ("dead (refused)", dead_port),
        ("hanging", hanging_endpoint()),
    ] {
        let server = common::Server::start(
            "[delivery]\nallow_http = true\nallow_private_networks = true\n\
             retry_schedule = [\"1m\", \"1m\", \"1m\"]",
        );
        let base = server.address.clone();
        let res = client
            .post(format!("{base}/v1beta1/admin/webhooks"))
            .bearer_auth("bench")
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hook")}))
            .send()
            .await
            .expect("webhook");
        assert_eq!(res.status(), 200);
        // Publish in waves of 500 so the write queue is never refused.
        let mut statuses = Vec::new();
        for wave in (0..n).collect::<Vec<_>>().chunks(500) {
            let got = futures_util::future::join_all(wave.iter().map(|i| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    client
                        .post(format!("{base}/v1beta1/events"))
                        .bearer_auth("bench")
                        .json(
                            &json!({"action": "app.user.created", "data": {"metadata": {"i": i}}}),
                        )
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            }))
            .await;
            statuses.extend(got);
        }
        assert!(statuses.iter().all(|s| *s == 202), "every publish acked");
        // The backlog settles (first attempts fail, the rest park), then a quiet window.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let before = scrape(client, &base).await;
        let window = Duration::from_secs(20);
        tokio::time::sleep(window).await;
        let after = scrape(client, &base).await;
        let secs = window.as_secs_f64();
        let writes = (metric(&after, "hookrelay_writer_batch_size_sum")
            - metric(&before, "hookrelay_writer_batch_size_sum"))
            / secs;
        let commits = (metric(&after, "hookrelay_writer_batch_size_count")
            - metric(&before, "hookrelay_writer_batch_size_count"))
            / secs;
        let attempts = (metric(&after, "hookrelay_delivery_attempts_total")
            - metric(&before, "hookrelay_delivery_attempts_total"))
            / secs;
        let jobs = (metric(&after, "hookrelay_jobs_finished_total")
            - metric(&before, "hookrelay_jobs_finished_total"))
            / secs;
        println!(
            "{kind:<16} write commands {writes:>8.1}/s  commits {commits:>7.1}/s  attempts {attempts:>6.1}/s  job runs {jobs:>7.1}/s  ({:.1} writes per attempt)",
            if attempts > 0.0 {
                writes / attempts
            } else {
                writes
            }
        );
    }
}

#[tokio::main]
async fn main() {
    hookrelay::install_tls_provider();
    // Short idle time: a pooled connection the server closed (keep-alive) must not be reused.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    stalled_bodies(&client).await;
    worst_bodies(&client).await;
    backlog(&client).await;
}
