//! `hookrelay serve` with `database.url`: the same service on a throwaway PostgreSQL cluster,
//! and several `serve` processes sharing one database. (The whole suite runs on PostgreSQL with
//! `HOOKRELAY_TEST_POSTGRES` set; see the README.)

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac as _};
use serde_json::json;

use crate::helpers::*;

fn on(pg: &PgCluster, db: &str) -> impl FnOnce(&mut hookrelay::config::Config) {
    let url = pg.url(db);
    move |c| {
        local_delivery(c);
        c.database.url = Some(hookrelay::config::Secret::new(url));
        c.database.pool_size = 2;
        c.delivery.encryption_key = Some(hookrelay::config::Secret::new(ENCRYPTION_KEY));
    }
}

/// `X-Signature: 1=<hex HMAC-SHA256(key, body)>`.
fn assert_signed(req: &wiremock::Request, key: &[u8]) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(&req.body);
    assert_eq!(
        req.headers
            .get("x-signature")
            .and_then(|v| v.to_str().ok())
            .expect("x-signature"),
        format!("1={}", hex::encode(mac.finalize().into_bytes()))
    );
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn serve_on_postgres_delivers_signed_events_and_keeps_them_across_a_restart() {
    let Some(pg) = PgCluster::start("serve_on_postgres") else {
        return;
    };
    pg.create_db("served").await;
    let app = spawn_app_with(on(&pg, "served")).await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(&app, json!({"url": rx.url("/hook")})).await;
    let key = hex::decode(wh["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    let published = publish(
        &app,
        json!({"action": "app.user.created", "data": {"org_id": "org_1"}}),
    )
    .await;
    let event_id = published["id"].as_str().expect("id").to_string();
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_signed(&req, &key);

    // The rows are in PostgreSQL, not in a SQLite file.
    let client = pg.connect("served").await;
    let delivered: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM deliveries WHERE event_id = $1 AND state = 'succeeded'",
            &[&event_id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(delivered, 1);
    assert!(!app.db_path.exists(), "a SQLite file was created");

    // After a restart the webhook, its secret and the history are still there.
    app.shutdown().await;
    let app = spawn_app_with(on(&pg, "served")).await;
    let event = app
        .get_json(
            &format!("/v1beta1/admin/events/{event_id}"),
            reqwest::StatusCode::OK,
        )
        .await;
    assert_eq!(event["event"]["id"], event_id.as_str(), "{event}");
    publish(
        &app,
        json!({"action": "app.user.created", "data": {"org_id": "org_2"}}),
    )
    .await;
    let (_, req) = rx.wait_for(2, Duration::from_secs(10)).await.remove(1);
    // The secret read back from PostgreSQL still signs.
    assert_signed(&req, &key);

    // Every session of the service is cut (a restarted server, a failover): it connects again
    // by itself, and publishing works after at most a failed try or two.
    let admin = pg.connect("postgres").await;
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'served' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate");
    assert!(cut >= 2, "only {cut} sessions were cut");
    let event = wait_until(
        Duration::from_secs(10),
        "a publish after the cut",
        || async {
            let res = app
                .post(
                    "/v1beta1/events",
                    &json!({"action": "app.user.created", "data": {"org_id": "org_3"}}),
                )
                .await;
            if res.status() == reqwest::StatusCode::ACCEPTED {
                res.json::<serde_json::Value>().await.ok()
            } else {
                None
            }
        },
    )
    .await;
    let (_, req) = rx.wait_for(3, Duration::from_secs(10)).await.remove(2);
    assert_eq!(
        req.headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        event["id"].as_str()
    );
}

const ENCRYPTION_KEY: &str = "6869686f6f6b72656c61792d746573742d6b65792d3332627974657321212121";

/// A `hookrelay serve` process on database `url`, in a folder of its own.
fn replica(dir: &std::path::Path, url: &str, extra: &str) -> ChildApp {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\
             [database]\nurl = \"{url}\"\npool_size = 2\n\
             [auth]\nadmin_token = \"{ADMIN_TOKEN}\"\npublish_tokens = [\"{PUBLISH_TOKEN}\"]\n\
             [delivery]\nencryption_key = \"{ENCRYPTION_KEY}\"\nallow_http = true\n\
             allow_private_networks = true\n\
             [tasks]\nsigning_secret = \"{TASKS_SECRET}\"\n{extra}\n"
        ),
    )
    .expect("write config");
    ChildApp::start(&config)
}

/// Two `serve` processes on one new database of a throwaway cluster.
/// (Bind every field: one left to `..` is dropped at once, the cluster with it.)
struct Replicas {
    pg: PgCluster,
    a: ChildApp,
    b: ChildApp,
    _dirs: [tempfile::TempDir; 2],
}

impl Replicas {
    async fn start(test: &str, extra: &str) -> Option<Self> {
        let pg = PgCluster::start(test)?;
        pg.create_db("shared").await;
        let url = pg.url("shared");
        let dirs = [
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        ];
        let a = replica(dirs[0].path(), &url, extra);
        let b = replica(dirs[1].path(), &url, extra);
        Some(Self {
            pg,
            a,
            b,
            _dirs: dirs,
        })
    }
}

async fn admin(
    app: &ChildApp,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    assert_json(res, reqwest::StatusCode::OK).await
}

/// Publishes through `app`; the event id when it was acked.
async fn publish_to(app: &ChildApp, n: usize) -> Option<String> {
    let res = app
        .client
        .post(format!("{}/v1beta1/events", app.address))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&json!({"action": "app.user.created", "data": {"org_id": format!("org_{n}")}}))
        .send()
        .await
        .ok()?;
    if res.status() != reqwest::StatusCode::ACCEPTED {
        return None;
    }
    let body: serde_json::Value = res.json().await.ok()?;
    body["id"].as_str().map(str::to_string)
}

/// How many times the receiver got each event (`webhook-id`) on `path`.
fn received(rx: &TestReceiver, path: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (_, req) in rx.requests() {
        if req.url.path() == path
            && let Some(id) = req.headers.get("webhook-id").and_then(|v| v.to_str().ok())
        {
            *seen.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

async fn wait_received(rx: &TestReceiver, path: &str, ids: &HashSet<String>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = received(rx, path);
        if ids.iter().all(|id| got.contains_key(id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acked events reached the receiver within {within:?}",
            ids.iter().filter(|id| got.contains_key(*id)).count(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn two_replicas_share_one_database_deliver_each_event_once_and_see_each_others_changes() {
    let _heavy = heavy().await;
    // Both tick the same cron every second: each tick must run once across the two.
    let Some(Replicas { pg, a, b, .. }) =
        Replicas::start("two_replicas", "[cron]\nendpoint_health = \"* * * * * *\"").await
    else {
        return;
    };
    let rx = TestReceiver::ok().await;
    let wh = admin(
        &a,
        reqwest::Method::POST,
        "/v1beta1/admin/webhooks",
        Some(json!({"url": rx.url("/hook")})),
    )
    .await;
    let webhook_id = wh["webhook"]["id"].as_str().expect("id").to_string();

    // 2,000 events, half through each replica, 16 at a time.
    let started = Instant::now();
    let mut acked = HashSet::new();
    for chunk in (0..2000).collect::<Vec<usize>>().chunks(16) {
        let sent = futures_util::future::join_all(chunk.iter().map(|&n| {
            let app = if n % 2 == 0 { &a } else { &b };
            publish_to(app, n)
        }))
        .await;
        for id in sent {
            acked.insert(id.expect("both replicas ack"));
        }
    }
    wait_received(&rx, "/hook", &acked, Duration::from_secs(60)).await;
    let got = received(&rx, "/hook");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(got.len(), 2000);
    eprintln!(
        "2,000 events through two replicas delivered in {:?}",
        started.elapsed()
    );

    // Both replicas took part in delivering (each counts its own attempts).
    for (name, app) in [("a", &a), ("b", &b)] {
        let metrics = app
            .client
            .get(format!("{}/metrics", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let attempts: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("hookrelay_delivery_attempts_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(attempts > 0.0, "replica {name} delivered nothing");
    }
    let client = pg.connect("shared").await;

    // A change made through one replica is used by the other within 5 s.
    admin(
        &a,
        reqwest::Method::PUT,
        &format!("/v1beta1/admin/webhooks/{webhook_id}"),
        Some(json!({"url": rx.url("/moved")})),
    )
    .await;
    let changed = Instant::now();
    let id = publish_to(&b, 5000).await.expect("acked");
    let one: HashSet<String> = [id.clone()].into();
    wait_received(&rx, "/moved", &one, Duration::from_secs(5)).await;
    assert!(
        !received(&rx, "/hook").contains_key(&id),
        "the other replica still used the old url"
    );
    eprintln!(
        "the change reached the other replica within {:?}",
        changed.elapsed()
    );

    // The cron ticks every second: wait for a few runs (the events may have gone by in less).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ran: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM cron_runs WHERE name = 'endpoint_health' AND state <> 'skipped'",
                &[],
            )
            .await
            .expect("ticks")
            .get(0);
        if ran >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ran} ticks ran within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every cron tick ran once: one replica ticks (not even a `skipped` record of the other).
    let doubled = per_tick(
        &client,
        "SELECT scheduled_at, COUNT(*) FROM cron_runs WHERE name = 'endpoint_health'
         GROUP BY scheduled_at HAVING COUNT(*) > 1",
    )
    .await;
    assert!(doubled.is_empty(), "ticks run twice: {doubled:?}");
}

/// Whether `app` says in `/metrics` that it ticks (`hookrelay_leader 1`); `None` when it
/// does not answer.
async fn leads(app: &ChildApp) -> Option<bool> {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text.lines().find(|l| l.starts_with("hookrelay_leader "))?;
    Some(line.ends_with(" 1"))
}

/// Waits until exactly one of `apps` leads; its index and how long that took.
async fn one_leader(apps: &[&ChildApp], within: Duration) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        let mut leading = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            if leads(app).await == Some(true) {
                leading.push(i);
            }
        }
        if let [one] = leading[..] {
            return (one, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "no single leader within {within:?}: {leading:?} lead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(tick, records)` rows of a `SELECT tick, COUNT(*) … GROUP BY tick ORDER BY tick`.
async fn per_tick(client: &tokio_postgres::Client, sql: &str) -> Vec<(i64, i64)> {
    client
        .query(sql, &[])
        .await
        .expect("ticks")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The ticks of `endpoint_health` recorded, in order, each with how many records it has.
async fn ticks(client: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    per_tick(
        client,
        "SELECT scheduled_at, COUNT(*) FROM cron_runs WHERE name = 'endpoint_health'
         GROUP BY scheduled_at ORDER BY scheduled_at",
    )
    .await
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn one_replica_ticks_and_another_takes_over_when_it_stops_or_dies() {
    let _heavy = heavy().await;
    // jobs.lease = 3s: a dead ticker's lease runs out within it. A cron and a schedule tick
    // every second.
    let rx = TestReceiver::ok().await;
    let extra = format!(
        "[jobs]\nlease = \"3s\"\n[cron]\nendpoint_health = \"* * * * * *\"\n\
         [schedules.beat]\ncron = \"* * * * * *\"\nurl = \"{}\"\n",
        rx.url("/beat")
    );
    let extra = extra.as_str();
    let Some(Replicas {
        pg,
        mut a,
        mut b,
        _dirs,
    }) = Replicas::start("ticker_takeover", extra).await
    else {
        return;
    };
    let client = pg.connect("shared").await;
    let (first, _) = one_leader(&[&a, &b], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Still one leader, and no tick recorded twice.
    assert_eq!(one_leader(&[&a, &b], Duration::ZERO).await.0, first);
    let before = ticks(&client).await;
    assert!(before.len() >= 2, "only {} ticks: {before:?}", before.len());
    assert!(before.iter().all(|(_, n)| *n == 1), "{before:?}");

    // The ticking replica stops: it gives the lease up, and the other takes it at its next try.
    let (ticker, other) = if first == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // (Measured from the signal: faster than the lease could run out, 2 s, plus a try.)
    let holder = format!("{}:", ticker.pid());
    ticker.signal(nix::sys::signal::Signal::SIGTERM);
    let (_, took) = one_leader(&[other], Duration::from_millis(1500)).await;
    eprintln!("after a stop, the other replica ticked within {took:?}");
    assert!(ticker.wait_exit(Duration::from_secs(15)).success());
    let held: Vec<String> = client
        .query("SELECT holder FROM leases", &[])
        .await
        .expect("leases")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        held.iter().all(|h| !h.starts_with(&holder)),
        "the stopped replica still holds a lease: {held:?}"
    );

    // A third replica joins and waits; the ticking one is killed: its lease runs out and the
    // newcomer takes over within jobs.lease.
    let third_dir = tempfile::tempdir().expect("c");
    let third = replica(third_dir.path(), &pg.url("shared"), extra);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        leads(&third).await,
        Some(false),
        "the newcomer took the lease"
    );
    assert_eq!(leads(other).await, Some(true));
    other.signal(nix::sys::signal::Signal::SIGKILL);
    let killed_at = Instant::now();
    let (_, took) = one_leader(&[&third], Duration::from_secs(4)).await;
    assert!(
        killed_at.elapsed() <= Duration::from_secs(3),
        "taken over after {:?}, beyond jobs.lease",
        killed_at.elapsed()
    );
    eprintln!("after a kill -9, the waiting replica ticked within {took:?}");

    // The ticks go on, each once; the gaps are no longer than the takeovers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = ticks(&client).await;
    assert!(
        after.iter().all(|(_, n)| *n == 1),
        "a tick ran twice: {after:?}"
    );
    let newest = after.last().expect("ticks").0;
    assert!(
        newest > before.last().expect("ticks").0 + 5_000,
        "no ticks after the takeovers: {after:?}"
    );
    let gaps: Vec<i64> = after.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|g| *g <= 4_000),
        "a gap longer than a takeover: {gaps:?}"
    );

    // The schedule likewise: one task per tick, and its ticks went on after both takeovers.
    let beats = per_tick(
        &client,
        "SELECT scheduled_for, COUNT(*) FROM tasks WHERE schedule = 'beat'
         GROUP BY scheduled_for ORDER BY scheduled_for",
    )
    .await;
    assert!(
        beats.iter().all(|(_, n)| *n == 1),
        "a schedule tick ran twice: {beats:?}"
    );
    assert!(
        beats.last().expect("beats").0 > before.last().expect("ticks").0 + 5_000,
        "the schedule stopped at a takeover: {beats:?}"
    );
    let calls = rx
        .requests()
        .iter()
        .filter(|(_, r)| r.url.path() == "/beat")
        .count();
    assert!(
        calls >= beats.len() - 2,
        "{calls} calls for {} ticks",
        beats.len()
    );
    drop(third);
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn kill_9_of_one_replica_loses_no_acked_event() {
    let _heavy = heavy().await;
    // Short leases, so the survivor takes back the dead replica's jobs soon.
    let Some(Replicas {
        pg: _pg,
        a,
        b,
        _dirs,
    }) = Replicas::start(
        "kill_9_of_one_replica",
        "[jobs]\nlease = \"3s\"\n[cron]\nlease_reaper = \"* * * * * *\"",
    )
    .await
    else {
        return;
    };
    // A slow receiver, so that deliveries are in flight on both when one dies.
    let rx = TestReceiver::start(vec![
        wiremock::ResponseTemplate::new(200).set_delay(Duration::from_millis(50)),
    ])
    .await;
    admin(
        &a,
        reqwest::Method::POST,
        "/v1beta1/admin/webhooks",
        Some(json!({"url": rx.url("/hook")})),
    )
    .await;
    let mut acked = HashSet::new();
    for n in 0..600 {
        if n == 300 {
            b.signal(nix::sys::signal::Signal::SIGKILL);
        }
        let app = if n % 2 == 0 { &a } else { &b };
        if let Some(id) = publish_to(app, n).await {
            acked.insert(id);
        }
    }
    assert!(acked.len() >= 450, "only {} acked", acked.len());
    wait_received(&rx, "/hook", &acked, Duration::from_secs(60)).await;
    drop(b);
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn migrate_and_keys_reencrypt_work_on_postgres() {
    let Some(pg) = PgCluster::start("migrate_and_keys_reencrypt_on_postgres") else {
        return;
    };
    pg.create_db("keys").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |key: &str, previous: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = \"{}\"\n[delivery]\nencryption_key = \"{key}\"\n\
                 previous_encryption_keys = [{previous}]\n[tasks]\nsigning_secret = \"{TASKS_SECRET}\"\n",
                pg.url("keys")
            ),
        )
        .expect("config");
        path
    };
    let old = ENCRYPTION_KEY;
    let new = "6e65772d6b65792d666f722d686f6f6b72656c61792d746573742d3332212121";
    let path = config(old, "");
    let path = path.to_str().expect("utf-8");

    let out = run_bin(dir.path(), &["migrate", "--config", path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("schema migrated from version 0 to"),
        "{stdout}"
    );
    assert!(!stdout.contains(PG_PASSWORD), "{stdout}");
    assert!(
        !dir.path().join("data").exists(),
        "migrate on PostgreSQL made a SQLite folder"
    );

    // A webhook sealed with the old key, then the key rotated and its secret re-encrypted.
    let app = spawn_app_with(on(&pg, "keys")).await;
    let rx = TestReceiver::ok().await;
    let wh = create_webhook(&app, json!({"url": rx.url("/hook")})).await;
    let key = hex::decode(wh["secrets"][0]["value"].as_str().expect("hex")).expect("hex");
    app.shutdown().await;
    let path = config(new, &format!("\"{old}\""));
    let path = path.to_str().expect("utf-8");
    let out = run_bin(dir.path(), &["keys", "reencrypt", "--config", path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("re-encrypted 1 secret(s)"), "{stdout}");

    // Only the new key now: the secret still signs.
    let app = spawn_app_with(|c| {
        on(&pg, "keys")(c);
        c.delivery.encryption_key = Some(hookrelay::config::Secret::new(new));
    })
    .await;
    publish(
        &app,
        json!({"action": "app.user.created", "data": {"org_id": "org_1"}}),
    )
    .await;
    let (_, req) = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_signed(&req, &key);
}

/// The tests the PostgreSQL pass leaves out (tests/api/sqlite_only.txt) exist, each with a
/// reason: a renamed test must not drop out of the list and run nowhere, nor linger in it.
#[test]
fn the_sqlite_only_list_names_tests_that_exist() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let list = std::fs::read_to_string(dir.join("sqlite_only.txt")).expect("sqlite_only.txt");
    let (mut names, mut listed) = (0, Vec::new());
    for line in list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, why) = line
            .split_once(char::is_whitespace)
            .expect("a name and a reason");
        assert!(!why.trim().is_empty(), "{name} has no reason");
        let (module, test) = name.split_once("::").expect("module::test");
        let source = std::fs::read_to_string(dir.join(format!("{module}.rs")))
            .unwrap_or_else(|e| panic!("{name}: tests/api/{module}.rs: {e}"));
        assert!(
            source.contains(&format!("fn {test}()")),
            "{name} is listed in sqlite_only.txt but is not a test"
        );
        listed.push(name.to_string());
        names += 1;
    }
    assert!(names > 0);
    // `--skip` matches substrings: no other test may contain a listed name.
    for entry in std::fs::read_dir(&dir).expect("tests/api") {
        let path = entry.expect("entry").path();
        let (Some(module), Some("rs")) = (
            path.file_stem().and_then(|m| m.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        let source = std::fs::read_to_string(&path).expect("read");
        for line in source.lines() {
            let Some(rest) = line
                .trim_start()
                .strip_prefix("async fn ")
                .or_else(|| line.trim_start().strip_prefix("fn "))
            else {
                continue;
            };
            let Some((f, _)) = rest.split_once('(') else {
                continue;
            };
            let full = format!("{module}::{f}");
            for name in &listed {
                assert!(
                    full == *name || !full.contains(name.as_str()),
                    "skipping {name} would also skip {full}"
                );
            }
        }
    }
}
