//! Attacks on the running binary (a child `hookrelay serve`, so its memory can be read): stalled
//! request bodies by the thousand, and a connection cap that holds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::front::{SECRET, full_inbound, post_front};
use crate::helpers::*;

/// Resident memory of `pid` in bytes (Linux `/proc`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Opens a connection and sends a request's headers announcing `announced` body bytes, then
/// `sent` of them, and stalls.
async fn stall(addr: &str, announced: usize, sent: usize) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /webhooks/front HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         x-front-request-timestamp: 1\r\nx-front-signature: x\r\nContent-Length: {announced}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(&vec![b'a'; sent]).await?;
    Ok(s)
}

/// A child config with Front's secret and `server_keys` added to its `[server]` table.
fn server_config(dir: &std::path::Path, server_keys: &str) -> std::path::PathBuf {
    let config = write_child_config(dir, &format!("[front]\nwebhook_secret = \"{SECRET}\""));
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replacen("[server]\n", &format!("[server]\n{server_keys}"), 1),
    )
    .expect("config");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_stalled_bodies_leave_the_server_serving_within_bounded_memory() {
    let _heavy = heavy().await;
    const CONNECTIONS: usize = 2000;
    const MAX_BODY: usize = 64 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = server_config(
        dir.path(),
        &format!("max_body_bytes = {MAX_BODY}\nbody_timeout = \"6s\"\nmax_connections = 4096\n"),
    );
    let app = ChildApp::start(&config);
    let addr = app.address.trim_start_matches("http://").to_string();
    let pid = app.child.id();
    // Warm up: the first requests allocate what every request shares.
    let res = post_front(
        &app.client,
        &app.address,
        &full_inbound("evt_warm", "msg_warm"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let idle = rss(pid);

    let sent_each = MAX_BODY / 2;
    let mut stalled = Vec::with_capacity(CONNECTIONS);
    for chunk in 0..CONNECTIONS / 100 {
        let opened =
            futures_util::future::join_all((0..100).map(|_| stall(&addr, MAX_BODY, sent_each)))
                .await;
        for s in opened {
            stalled.push(s.unwrap_or_else(|e| panic!("connection in batch {chunk}: {e}")));
        }
    }
    // Let the server read what was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Healthy requests still answer, fast.
    let started = Instant::now();
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let res = post_front(
        &app.client,
        &app.address,
        &full_inbound("evt_during", "msg_during"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "healthy requests took {took:?} beside {CONNECTIONS} stalled bodies"
    );

    // Memory: what the stalled bodies hold is bounded by the limits. Each connection buffers at
    // most what it sent, twice (the read buffer and the body being collected), plus a fixed
    // per-connection overhead; so a bound derived from the config is
    // connections × (2 × max_body_bytes + 64 KiB) — here, with half bodies sent, well within it.
    let during = rss(pid);
    let per_connection = 2 * MAX_BODY as u64 + 64 * 1024;
    let bound = idle + CONNECTIONS as u64 * per_connection;
    println!(
        "hostile: idle RSS {} MiB, with {CONNECTIONS} stalled bodies of {} KiB {} MiB (bound {} MiB); healthy requests answered in {took:?}",
        idle >> 20,
        sent_each >> 10,
        during >> 20,
        bound >> 20
    );
    assert!(during < bound, "RSS {during} over the bound {bound}");

    // At the deadline every stalled request is answered 408 and its connection closed.
    let mut answers = Vec::new();
    for mut s in stalled.drain(..).take(20) {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "the stalled connection was not closed at the deadline"
        );
        answers.push(String::from_utf8_lossy(&buf).into_owned());
    }
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
        assert!(a.contains("request_timeout"), "{a}");
    }
    let after = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("healthz");
    assert_eq!(after.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_frees() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = server_config(dir.path(), "max_connections = 40\nbody_timeout = \"3s\"\n");
    let app = ChildApp::start(&config);
    let addr = app.address.trim_start_matches("http://").to_string();
    // Fill every slot with a stalled body.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(stall(&addr, 1000, 10).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("served once a slot frees");
    let waited = started.elapsed();
    assert_eq!(res.status(), 200);
    println!("hostile: the 41st connection waited {waited:?} for a slot");
    assert!(
        waited >= Duration::from_millis(1500),
        "the cap of 40 connections did not hold: served after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    drop(stalled);
}
