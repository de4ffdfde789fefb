//! Front ingress benchmark: `cargo bench --bench ingress`.
//!
//! Starts the real `hookrelay serve` (optimized build) with `synchronous = full`, then posts
//! pre-signed, realistic `inbound_received` webhooks over loopback:
//! 1. at a steady 1,000 events/s (the job workers keep up meanwhile) — latency percentiles;
//! 2. as fast as possible with 64 concurrent connections — verified and committed events/s and
//!    latency percentiles — driven by `wrk` when it is installed (it needs far less CPU than a
//!    Rust client, and the load generator shares the 2 cores), else by a built-in generator.
//!
//! Every event is unique, so each 200 is a stored event plus its processing job (the job
//! workers process them meanwhile, as in production). Signing happens before the clock starts.
//! `BENCH_EVENTS` sets the number of distinct events of the max-rate phase (default 200,000).

use std::process::Command;

mod common;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

const SECRET: &str = "bench-front-secret";
const CONCURRENCY: usize = 64;

struct Signed {
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

fn event(i: usize) -> Vec<u8> {
    let event_id = format!("evt_bench_{i}");
    serde_json::to_vec(&json!({
        "authorization": {"id": "cmp_bench"},
        "type": "inbound_received",
        "payload": {
            "_links": {"self": format!("https://acme.api.frontapp.com/events/{event_id}")},
            "id": event_id,
            "type": "inbound",
            "emitted_at": 1_694_046_470.93,
            "conversation": {"_links": {"self": "https://acme.api.frontapp.com/conversations/cnv_55"},
                             "id": "cnv_55", "subject": "Refund for order #1234", "status": "unassigned"},
            "source": {"_meta": {"type": "inboxes"}, "data": [{"id": "inb_3srbb", "name": "Support"}]},
            "target": {"_meta": {"type": "message"}, "data": {
                "_links": {"self": format!("https://acme.api.frontapp.com/messages/msg_{i}")},
                "id": format!("msg_{i}"), "type": "email", "is_inbound": true, "author": null,
                "blurb": "Hi, I would like a refund…",
                "body": "<p>Hi, I would like a refund for order #1234. It arrived broken.</p>",
                "recipients": [{"handle": "jane@example.com", "name": "Jane Doe", "role": "from"},
                               {"handle": "support@acme.test", "role": "to"}]
            }}
        }
    }))
    .expect("json")
}

fn sign_all(range: std::ops::Range<usize>) -> Vec<Signed> {
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    range
        .map(|i| {
            let body = event(i);
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(timestamp.as_bytes());
            mac.update(b":");
            mac.update(&body);
            Signed {
                timestamp: timestamp.clone(),
                signature: base64::engine::general_purpose::STANDARD
                    .encode(mac.finalize().into_bytes()),
                body,
            }
        })
        .collect()
}

async fn post(client: &reqwest::Client, url: &str, s: &Signed) -> Duration {
    let started = Instant::now();
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-front-request-timestamp", &s.timestamp)
        .header("x-front-signature", &s.signature)
        .body(s.body.clone())
        .send()
        .await
        .expect("request");
    let status = res.status();
    let _ = res.bytes().await;
    assert_eq!(status, reqwest::StatusCode::OK, "every event is acked");
    started.elapsed()
}

fn which_wrk() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("wrk"))
        .find(|p| p.is_file())
}

/// Phase 1 with wrk (C, light on CPU): 64 connections, 2 threads, 10 s, replaying pre-signed
/// unique events from a file through a Lua script that counts non-200 answers.
fn max_rate_wrk(wrk: &std::path::Path, address: &str, n: usize, dir: &std::path::Path) {
    use std::io::Write as _;
    let file = dir.join("requests.tsv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("requests file"));
    for s in sign_all(0..n) {
        out.write_all(s.timestamp.as_bytes()).expect("write");
        out.write_all(b"\t").expect("write");
        out.write_all(s.signature.as_bytes()).expect("write");
        out.write_all(b"\t").expect("write");
        out.write_all(&s.body).expect("write");
        out.write_all(b"\n").expect("write");
    }
    drop(out);
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        WRK_SCRIPT.replace("REQUESTS_FILE", file.to_str().expect("path")),
    )
    .expect("script");
    let output = Command::new(wrk)
        .args(["-t2", "-c64", "-d10s", "--latency", "-s"])
        .arg(&script)
        .arg(address)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let errors = text
        .lines()
        .find(|l| l.starts_with("non-200:"))
        .unwrap_or("non-200: ?")
        .to_string();
    println!(
        "max rate (wrk, 64 connections, 10 s): {} verified and committed events/s; p50 {}  p99 {}; {errors}",
        field("Requests/sec:"),
        field("50%"),
        field("99%")
    );
}

/// Each wrk thread replays its share of the pre-signed requests, each once.
const WRK_SCRIPT: &str = r#"
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  reqs = {}
  local n = 0
  for line in io.lines("REQUESTS_FILE") do
    if n % 2 == tid then
      local ts, sig, body = line:match("([^\t]*)\t([^\t]*)\t(.*)")
      table.insert(reqs, wrk.format("POST", "/webhooks/front", {["Content-Type"]="application/json",
        ["x-front-request-timestamp"]=ts, ["x-front-signature"]=sig}, body))
    end
    n = n + 1
  end
  idx = 0
end
function request()
  idx = idx + 1
  if idx > #reqs then
    -- Ran out of unique events: repeats are answered as duplicates, still verified and committed.
    idx = 1
  end
  return reqs[idx]
end
non200 = 0
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("non-200: %d\n", summary.errors.status))
end
"#;

/// Phase 1 with the built-in generator (reqwest, 64 tasks).
async fn max_rate_builtin(client: &reqwest::Client, url: &str, n: usize) {
    let signed = Arc::new(sign_all(0..n));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (client, url, signed) = (client.clone(), url.to_string(), Arc::clone(&signed));
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n / CONCURRENCY + 1);
                for s in signed.iter().skip(t).step_by(CONCURRENCY) {
                    lat.push(post(&client, &url, s).await);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    println!(
        "max rate (built-in, {CONCURRENCY} connections): {n} events in {:.2} s = {:.0} verified and committed events/s; {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        common::percentiles(lat)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let server = common::Server::start(&format!("[front]\nwebhook_secret = \"{SECRET}\"\n"));
    let address = server.address.clone();
    let url = format!("{address}/webhooks/front");
    hookrelay::install_tls_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");

    println!(
        "hookrelay Front ingress benchmark: synchronous = full, {CONCURRENCY} connections, 2 cores shared with the load generator"
    );
    // Warm up connections and the database.
    for s in &sign_all(n..n + 500) {
        post(&client, &url, s).await;
    }

    let rate = 1000usize;
    let secs = 10;
    let signed = Arc::new(sign_all(n + 1000..n + 1000 + rate * secs));
    let interval = Duration::from_micros(1_000_000 / rate as u64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(rate * secs);
    for i in 0..rate * secs {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let (client, url, signed) = (client.clone(), url.clone(), Arc::clone(&signed));
        tasks.push(tokio::spawn(async move {
            post(&client, &url, &signed[i]).await
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        lat.push(t.await.expect("task"));
    }
    println!(
        "steady:     {rate} events/s for {secs} s; {}",
        common::percentiles(lat)
    );

    match which_wrk() {
        Some(wrk) => max_rate_wrk(&wrk, &address, n, dir.path()),
        None => {
            println!(
                "(wrk not found: using the built-in load generator, which needs more CPU; `apt-get install wrk` for the lighter one)"
            );
            max_rate_builtin(&client, &url, n).await;
        }
    }

    drop(server);
}
