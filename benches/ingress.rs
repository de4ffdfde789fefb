//! Ingress benchmark, Front and an inbound source side by side: `cargo bench --bench ingress`.
//!
//! Starts the real `hookrelay serve` (optimized build) with `synchronous = full` and a `stripe`
//! source beside Front, then posts pre-signed, realistic webhooks over loopback — Front's
//! `inbound_received` and Stripe's `invoice.paid`, each through both phases:
//! 1. at a steady 1,000 events/s (the job workers keep up meanwhile) — latency percentiles;
//! 2. as fast as possible with 64 concurrent connections — verified and committed events/s and
//!    latency percentiles — driven by `wrk` when it is installed (it needs far less CPU than a
//!    Rust client, and the load generator shares the 2 cores), else by a built-in generator.
//!
//! Every event is unique, so each 200 is a stored event plus its processing job (the job
//! workers process them meanwhile, as in production). Signing happens before the clock starts.
//! `BENCH_EVENTS` sets the number of distinct events of the max-rate phase (default 200,000).
//! The last line is the source's max rate as a share of Front's, measured in the same run.

use std::process::Command;

mod common;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

const SECRET: &str = "bench-front-secret";
const STRIPE_SECRET: &str = "whsec_bench_stripe_secret";
const CONCURRENCY: usize = 64;

/// Which ingress a request goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Front,
    Stripe,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Self::Front => "/webhooks/front",
            Self::Stripe => "/webhooks/in/stripe",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Front => "Front",
            Self::Stripe => "stripe source",
        }
    }
}

/// A pre-signed request: two headers and the body.
struct Signed {
    headers: [(&'static str, String); 2],
    body: Vec<u8>,
}

/// A Stripe `invoice.paid` event of about the Front event's size.
fn stripe_event(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_bench_{i}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_700_000_000,
        "type": "invoice.paid",
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {
            "id": format!("in_{i}"), "object": "invoice", "amount_due": 2000, "amount_paid": 2000,
            "currency": "usd", "customer": "cus_bench", "customer_email": "jane@example.com",
            "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_bench",
            "lines": {"object": "list", "data": [{"id": "il_1", "amount": 2000, "description": "1 × Pro plan (at $20.00 / month)",
                      "period": {"start": 1_700_000_000, "end": 1_702_592_000}, "quantity": 1}],
                      "has_more": false, "total_count": 1},
            "status": "paid", "subscription": "sub_bench", "total": 2000
        }}
    }))
    .expect("json")
}

fn sign_stripe(range: std::ops::Range<usize>) -> Vec<Signed> {
    let t = chrono::Utc::now().timestamp().to_string();
    range
        .map(|i| {
            let body = stripe_event(i);
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).expect("key");
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(&body);
            Signed {
                headers: [
                    (
                        "stripe-signature",
                        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())),
                    ),
                    (
                        "user-agent",
                        "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
                    ),
                ],
                body,
            }
        })
        .collect()
}

fn sign(kind: Kind, range: std::ops::Range<usize>) -> Vec<Signed> {
    match kind {
        Kind::Front => sign_all(range),
        Kind::Stripe => sign_stripe(range),
    }
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
                headers: [
                    ("x-front-request-timestamp", timestamp.clone()),
                    (
                        "x-front-signature",
                        base64::engine::general_purpose::STANDARD
                            .encode(mac.finalize().into_bytes()),
                    ),
                ],
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
        .header(s.headers[0].0, &s.headers[0].1)
        .header(s.headers[1].0, &s.headers[1].1)
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
fn max_rate_wrk(
    wrk: &std::path::Path,
    kind: Kind,
    address: &str,
    n: usize,
    dir: &std::path::Path,
) -> f64 {
    use std::io::Write as _;
    let file = dir.join("requests.tsv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("requests file"));
    for s in sign(kind, 0..n) {
        for (name, value) in &s.headers {
            out.write_all(name.as_bytes()).expect("write");
            out.write_all(b"\t").expect("write");
            out.write_all(value.as_bytes()).expect("write");
            out.write_all(b"\t").expect("write");
        }
        out.write_all(&s.body).expect("write");
        out.write_all(b"\n").expect("write");
    }
    drop(out);
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        WRK_SCRIPT
            .replace("REQUESTS_FILE", file.to_str().expect("path"))
            .replace("REQUEST_PATH", kind.path()),
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
        "{}: max rate (wrk, 64 connections, 10 s): {} verified and committed events/s; p50 {}  p99 {}; {errors}",
        kind.name(),
        field("Requests/sec:"),
        field("50%"),
        field("99%")
    );
    field("Requests/sec:").parse().unwrap_or(0.0)
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
      local h1, v1, h2, v2, body = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)")
      table.insert(reqs, wrk.format("POST", "REQUEST_PATH", {["Content-Type"]="application/json",
        [h1]=v1, [h2]=v2}, body))
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

/// Waits (up to two minutes) until no job is queued: the processing of earlier phases is done.
async fn drain(client: &reqwest::Client, address: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let stats = common::stats(client, address).await;
        if stats["jobs"]["queue_depth"].as_u64() == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("(the job queue did not drain within 2 minutes)");
}

/// Phase 1 with the built-in generator (reqwest, 64 tasks).
async fn max_rate_builtin(client: &reqwest::Client, kind: Kind, url: &str, n: usize) -> f64 {
    let signed = Arc::new(sign(kind, 0..n));
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
        "{}: max rate (built-in, {CONCURRENCY} connections): {n} events in {:.2} s = {:.0} verified and committed events/s; {}",
        kind.name(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        common::percentiles(lat)
    );
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let server = common::Server::start(&format!(
        "[front]\nwebhook_secret = \"{SECRET}\"\n[sources.stripe]\npreset = \"stripe\"\nsecret = \"{STRIPE_SECRET}\"\n"
    ));
    let address = server.address.clone();
    hookrelay::install_tls_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");

    println!(
        "hookrelay ingress benchmark (Front and a stripe source): synchronous = full, {CONCURRENCY} connections, 2 cores shared with the load generator"
    );
    let wrk = which_wrk();
    if wrk.is_none() {
        println!(
            "(wrk not found: using the built-in load generator, which needs more CPU; `apt-get install wrk` for the lighter one)"
        );
    }
    let mut rates = Vec::new();
    for kind in [Kind::Front, Kind::Stripe] {
        let url = format!("{address}{}", kind.path());
        drain(&client, &address).await;
        // Warm up connections and the database.
        for s in &sign(kind, n..n + 500) {
            post(&client, &url, s).await;
        }
        let rate = 1000usize;
        let secs = 10;
        let signed = Arc::new(sign(kind, n + 1000..n + 1000 + rate * secs));
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
            "{}: steady {rate} events/s for {secs} s; {}",
            kind.name(),
            common::percentiles(lat)
        );
        // The job workers drain what came before, so each max-rate phase has the cores as the
        // other had them.
        drain(&client, &address).await;
        rates.push(match &wrk {
            Some(wrk) => max_rate_wrk(wrk, kind, &address, n, dir.path()),
            None => max_rate_builtin(&client, kind, &url, n).await,
        });
    }
    println!(
        "stripe source / Front max rate: {:.2} (target: within 10 %, ≥ 0.90)",
        rates[1] / rates[0].max(1.0)
    );

    drop(server);
}
