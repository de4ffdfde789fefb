//! Chaos: `kill -9` of `hookrelay serve` at random moments while Front webhooks and published
//! events stream in; after each kill it is restarted. At the end, a receiver must have got every
//! event that was acked (at least once; duplicates are counted, not failures).
//!
//! CI runs a small version (3 kills). The long one: `CHAOS_KILLS=20 cargo test --test
//! api chaos -- --nocapture`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::helpers::*;

/// What an event is known by at the receiver: `pub:<evt id>` for published ones (the publish
/// answer names it), `front:<Front event id>` for Front ones (in `data.metadata.event.id`).
fn key_of(envelope: &Value) -> Option<String> {
    match envelope["data"]["source"].as_str() {
        Some("front") => envelope["data"]["metadata"]["event"]["id"]
            .as_str()
            .map(|id| format!("front:{id}")),
        _ => envelope["id"].as_str().map(|id| format!("pub:{id}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acked_event() {
    let _heavy = heavy().await;
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let receiver = TestReceiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_child_config(
        dir.path(),
        &format!(
            "[front]\nwebhook_secret = \"{}\"\n\
             [delivery]\nallow_http = true\nallow_private_networks = true\nretry_schedule = [\"200ms\", \"500ms\", \"1s\", \"2s\"]\n",
            crate::front::SECRET
        ),
    );
    // One fixed port, so the senders find the server again after each restart.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    let mut app = ChildApp::start(&config);
    let res = app
        .post(
            "/v1beta1/admin/webhooks",
            &json!({"url": receiver.url("/hook")}),
        )
        .await
        .expect("create webhook");
    assert!(res.status().is_success(), "{}", res.status());
    let base = app.address.clone();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..4 {
        let (acked, stop, base) = (Arc::clone(&acked), Arc::clone(&stop), base.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let acked_key =
                    if s % 2 == 0 {
                        let event_id = format!("evt_chaos_{s}_{n}");
                        let body = crate::front::full_inbound(&event_id, &format!("msg_{s}_{n}"));
                        match crate::front::post_front_result(&client, &base, &body).await {
                            Ok(r) if r.status().is_success() => Some(format!("front:{event_id}")),
                            _ => None,
                        }
                    } else {
                        let res = client
                        .post(format!("{base}/v1beta1/events"))
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({"action": "app.user.created", "id": format!("chaos_{s}_{n}"),
                                      "data": {"metadata": {"n": n}}}))
                        .send()
                        .await;
                        match res {
                            Ok(r) if r.status().is_success() => r
                                .json::<Value>()
                                .await
                                .ok()
                                .and_then(|v| v["id"].as_str().map(|id| format!("pub:{id}"))),
                            _ => None,
                        }
                    };
                match acked_key {
                    Some(k) => acked.lock().expect("lock").push(k),
                    // Down (being killed or restarting): try again shortly.
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    for _ in 0..kills {
        let wait = 300 + rand::random::<u64>() % 1200;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        app.signal(Signal::SIGKILL);
        app.wait_exit(Duration::from_secs(5));
        drop(app);
        app = ChildApp::start(&config);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "the load ran: {} acked", acked.len());

    let counts = wait_until(
        Duration::from_secs(90),
        "every acked event at the receiver",
        || async {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for (_, req) in receiver.requests() {
                if let Some(k) = serde_json::from_slice::<Value>(&req.body)
                    .ok()
                    .as_ref()
                    .and_then(key_of)
                {
                    *counts.entry(k).or_default() += 1;
                }
            }
            acked
                .iter()
                .all(|k| counts.contains_key(k))
                .then_some(counts)
        },
    )
    .await;
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "chaos: {kills} kills, {} events acked, 0 lost, {duplicates} duplicate deliveries, {} distinct events delivered",
        acked.len(),
        counts.len()
    );
}

/// A raw TCP receiver that reads a request and then misbehaves: `trickle` answers one body byte
/// every 500 ms (slowloris in reverse), otherwise it closes the connection mid-response.
async fn raw_receiver(trickle: bool) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                if trickle {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                        .await;
                    for _ in 0..100 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if sock.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                } else {
                    let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                    let _ = sock.shutdown().await;
                }
            });
        }
    });
    format!("http://{addr}/hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_receivers_do_not_slow_delivery_to_healthy_ones() {
    let _heavy = heavy().await;
    use wiremock::ResponseTemplate;
    let app = spawn_app_with(|c| {
        local_delivery(c);
        c.delivery.timeout = Duration::from_secs(2);
    })
    .await;
    let good = TestReceiver::ok().await;
    let failing = TestReceiver::start(vec![ResponseTemplate::new(500)]).await;
    let hanging = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
    ])
    .await;
    let huge = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_body_bytes(vec![b'a'; 1 << 20]),
    ])
    .await;
    let trickle = raw_receiver(true).await;
    let hangup = raw_receiver(false).await;
    create_webhook(
        &app,
        json!({"url": good.url("/hook"), "retry_schedule": ["1s", "1s"]}),
    )
    .await;
    let events = 200;
    // Baseline: the healthy receiver alone.
    let alone = publish_and_time(&app, &good, 0, events, events).await;
    for url in [
        failing.url("/hook"),
        hanging.url("/hook"),
        huge.url("/hook"),
        trickle,
        hangup,
    ] {
        create_webhook(&app, json!({"url": url, "retry_schedule": ["1s", "1s"]})).await;
    }
    let beside_broken = publish_and_time(&app, &good, events, events, 2 * events).await;
    println!(
        "{events} deliveries to the healthy receiver: {alone:?} alone, {beside_broken:?} beside five broken ones"
    );
    // Without the gate, the 400 attempts to the two receivers that never finish in time would
    // hold all 16 workers for 2 s each: about 50 s before the healthy one got everything.
    assert!(
        beside_broken < alone * 4 + Duration::from_secs(5),
        "the healthy receiver slowed down: {beside_broken:?} beside broken receivers, {alone:?} alone"
    );
    // The broken ones were tried too, a few at a time.
    assert!(!failing.requests().is_empty() && !hanging.requests().is_empty());
    assert!(!huge.requests().is_empty());
}

/// Publishes `events` events (numbered from `first`) and returns how long until `receiver` has
/// seen `total` requests.
async fn publish_and_time(
    app: &TestApp,
    receiver: &TestReceiver,
    first: usize,
    events: usize,
    total: usize,
) -> Duration {
    let started = std::time::Instant::now();
    let mut publishes = Vec::new();
    for n in first..first + events {
        let (client, url) = (app.client.clone(), app.url("/v1beta1/events"));
        publishes.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"action": "app.user.created", "data": {"metadata": {"n": n}}}))
                .send()
                .await
                .expect("publish")
                .status()
        }));
    }
    for p in publishes {
        assert!(p.await.expect("task").is_success());
    }
    receiver.wait_for(total, Duration::from_secs(60)).await;
    started.elapsed()
}
