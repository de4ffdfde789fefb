//! Schedules: one task per tick from `[schedules.<name>]` and from the API — the tick key that
//! keeps a double tick single, overlap, catch-up across a restart (no double, no burst),
//! pause/resume/run now, and the schedules API. Tick computation across daylight saving is a
//! pure function with its own table-driven tests (`hookrelay::clock::ticks`).

use std::time::Duration;

use hookrelay::config::{Config, ScheduleDef};
use hookrelay::tasks::schedules::{Ticked, Trigger};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{
    PUBLISH_TOKEN, TestApp, TestReceiver, assert_error, assert_json, local_delivery, read_db,
    spawn_app_in, test_config,
};
use crate::tasks::{signed, task};

/// `[schedules.<name>]` from TOML (as a user writes it).
fn schedule(name: &str, body: &str) -> (String, ScheduleDef) {
    let c = hookrelay::config::from_toml_str(&format!("[schedules.{name}]\n{body}"))
        .expect("valid schedule");
    c.schedules.into_iter().next().expect("one schedule")
}

fn with_schedules(c: &mut Config, schedules: Vec<(String, ScheduleDef)>) {
    local_delivery(c);
    c.schedules.extend(schedules);
}

async fn app_with(schedules: Vec<(String, ScheduleDef)>) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    with_schedules(&mut cfg, schedules);
    spawn_app_in(dir, cfg).await
}

async fn runs(app: &TestApp, name: &str) -> Vec<Value> {
    app.get_json(
        &format!("/v1beta1/admin/tasks?schedule={name}&limit=500"),
        StatusCode::OK,
    )
    .await["tasks"]
        .as_array()
        .expect("tasks")
        .clone()
}

fn header<'a>(req: &'a wiremock::Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn ms(v: &Value) -> i64 {
    hookrelay::clock::parse_rfc3339(v.as_str().expect("time")).expect("rfc3339")
}

#[tokio::test]
async fn a_config_schedule_calls_the_app_once_per_tick_with_its_headers() {
    let receiver = TestReceiver::ok().await;
    let app = app_with(vec![schedule(
        "heartbeat",
        &format!(
            "cron = \"* * * * * *\"\nurl = \"{}\"\nbody = {{ check = \"stale-heartbeats\" }}\nheaders = {{ X-Job = \"upkeep\" }}\n",
            receiver.url("/tasks/heartbeat")
        ),
    )])
    .await;
    let reqs = receiver.wait_for(3, Duration::from_secs(10)).await;
    let mut ticks = Vec::new();
    for (_, req) in &reqs {
        assert_eq!(header(req, "x-hookrelay-schedule"), "heartbeat");
        assert_eq!(header(req, "x-job"), "upkeep");
        assert_eq!(
            serde_json::from_slice::<Value>(&req.body).expect("json"),
            json!({"check": "stale-heartbeats"})
        );
        assert!(signed(
            header(req, "webhook-id"),
            header(req, "webhook-timestamp"),
            &req.body,
            header(req, "webhook-signature")
        ));
        let at = header(req, "x-hookrelay-scheduled-for").to_string();
        assert!(at.ends_with(".000Z"), "a tick is a whole second: {at}");
        ticks.push(at);
    }
    let mut unique = ticks.clone();
    unique.dedup();
    assert_eq!(unique, ticks, "a tick ran twice: {ticks:?}");

    let ready = app.get_json("/readyz", StatusCode::OK).await;
    assert_eq!(ready["checks"]["schedules"], "ok", "{ready}");
    let list = app
        .get_json("/v1beta1/admin/schedules", StatusCode::OK)
        .await;
    let s = &list["schedules"][0];
    assert_eq!(s["name"], "heartbeat");
    assert_eq!(s["origin"], "config");
    assert_eq!(s["state"], "active");
    assert_eq!(s["timezone"], "UTC");
    let next = s["next_runs"].as_array().expect("next_runs");
    assert_eq!(next.len(), 5);
    assert!(
        next.windows(2).all(|w| ms(&w[1]) - ms(&w[0]) == 1000),
        "{next:?}"
    );
    assert!(s["last_run"]["id"].is_string(), "{s}");

    let runs = runs(&app, "heartbeat").await;
    let first = runs.last().expect("a run");
    let tick = first["scheduled_for"].as_str().expect("tick");
    assert_eq!(
        first["idempotency_key"],
        format!("schedule:heartbeat:{tick}").as_str()
    );
    assert_eq!(first["name"], "heartbeat");
    assert_eq!(first["created_by"], "schedule");

    // Config schedules are changed in the config, not through the API.
    let put = app
        .client
        .put(app.url("/v1beta1/schedules/heartbeat"))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&json!({"cron": "0 * * * *"}))
        .send()
        .await
        .expect("request");
    assert_error(put, StatusCode::CONFLICT, "managed_by_config").await;
    let del = app
        .client
        .delete(app.url("/v1beta1/schedules/heartbeat"))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .expect("request");
    assert_error(del, StatusCode::CONFLICT, "managed_by_config").await;
}

#[tokio::test]
async fn a_tick_that_fires_twice_makes_one_task() {
    let receiver = TestReceiver::ok().await;
    let app = app_with(vec![schedule(
        "nightly",
        &format!(
            "cron = \"0 3 * * *\"\nurl = \"{}\"",
            receiver.url("/nightly")
        ),
    )])
    .await;
    let tick = hookrelay::clock::now_ms() / 1000 * 1000 + 250_000;
    let first = app
        .schedules
        .tick("nightly", tick, Trigger::Schedule)
        .await
        .expect("tick");
    assert!(matches!(first, Ticked::Run { .. }), "{first:?}");
    for _ in 0..3 {
        let again = app
            .schedules
            .tick("nightly", tick, Trigger::Schedule)
            .await
            .expect("tick");
        assert_eq!(again, Ticked::Duplicate);
    }
    // An older tick than the last one taken is refused as well.
    let older = app
        .schedules
        .tick("nightly", tick - 60_000, Trigger::Schedule)
        .await
        .expect("tick");
    assert_eq!(older, Ticked::Duplicate);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(runs(&app, "nightly").await.len(), 1);
}

#[tokio::test]
async fn overlap_skip_records_skipped_ticks_and_allow_runs_them() {
    let slow = TestReceiver::start(vec![
        ResponseTemplate::new(200).set_delay(Duration::from_secs(5)),
    ])
    .await;
    let app = app_with(vec![
        schedule(
            "reindex",
            &format!("cron = \"* * * * * *\"\nurl = \"{}\"", slow.url("/skip")),
        ),
        schedule(
            "fanout",
            &format!(
                "cron = \"* * * * * *\"\nurl = \"{}\"\noverlap = \"allow\"",
                slow.url("/allow")
            ),
        ),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    app.post("/v1beta1/admin/schedules/reindex/pause", &json!({}))
        .await;
    app.post("/v1beta1/admin/schedules/fanout/pause", &json!({}))
        .await;
    let skip = runs(&app, "reindex").await;
    let skipped: Vec<_> = skip.iter().filter(|t| t["state"] == "skipped").collect();
    let called: Vec<_> = skip.iter().filter(|t| t["state"] != "skipped").collect();
    assert_eq!(
        called.len(),
        1,
        "overlap = skip ran more than one at a time: {skip:?}"
    );
    assert!(skipped.len() >= 2, "{skip:?}");
    assert!(
        skipped[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("previous run")),
        "{skipped:?}"
    );
    let allow = runs(&app, "fanout").await;
    assert!(allow.len() >= 3, "{allow:?}");
    assert!(allow.iter().all(|t| t["state"] != "skipped"), "{allow:?}");
    // The allowed runs were in flight together.
    let paths: Vec<String> = slow
        .requests()
        .iter()
        .map(|(_, r)| r.url.path().to_string())
        .collect();
    assert!(
        paths.iter().filter(|p| *p == "/allow").count() >= 3,
        "{paths:?}"
    );
}

#[tokio::test]
async fn pause_resume_and_run_now() {
    let receiver = TestReceiver::ok().await;
    let app = app_with(vec![schedule(
        "sync",
        &format!(
            "cron = \"* * * * * *\"\nurl = \"{}\"",
            receiver.url("/sync")
        ),
    )])
    .await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let paused = app
        .post("/v1beta1/admin/schedules/sync/pause", &json!({}))
        .await;
    let paused = assert_json(paused, StatusCode::OK).await;
    assert_eq!(paused["schedule"]["state"], "paused");
    assert_eq!(paused["schedule"]["next_runs"], json!([]));
    // A tick in flight when the pause landed may still arrive; then nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = receiver.requests().len();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        receiver.requests().len(),
        before,
        "a paused schedule ticked"
    );

    // Run now works while paused, once.
    let run = app
        .post("/v1beta1/admin/schedules/sync/run", &json!({}))
        .await;
    let run = assert_json(run, StatusCode::ACCEPTED).await;
    assert_eq!(run["task"]["schedule"], "sync");
    assert_eq!(run["task"]["created_by"], "manual");
    receiver.wait_for(before + 1, Duration::from_secs(5)).await;
    let audit = app
        .get_json("/v1beta1/admin/audit-logs", StatusCode::OK)
        .await;
    let text = audit.to_string();
    assert!(
        text.contains("schedule.pause") && text.contains("schedule.run"),
        "{text}"
    );

    // Resuming does not run the ticks missed while paused: it ticks on from the next one.
    let resumed = app
        .post("/v1beta1/admin/schedules/sync/resume", &json!({}))
        .await;
    let resumed = assert_json(resumed, StatusCode::OK).await;
    assert_eq!(resumed["schedule"]["state"], "active");
    let resumed_at = hookrelay::clock::now_ms();
    let reqs = receiver.wait_for(before + 2, Duration::from_secs(5)).await;
    let tick =
        hookrelay::clock::parse_rfc3339(header(&reqs[before + 1].1, "x-hookrelay-scheduled-for"))
            .expect("tick");
    assert!(tick > resumed_at - 1000, "resume ran a tick from the pause");
    let missing = app
        .post("/v1beta1/admin/schedules/nope/pause", &json!({}))
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_restart_neither_doubles_a_tick_nor_bursts_the_missed_ones() {
    let receiver = TestReceiver::ok().await;
    let schedules = vec![
        schedule(
            "latest",
            &format!(
                "cron = \"* * * * * *\"\nurl = \"{}\"",
                receiver.url("/latest")
            ),
        ),
        schedule(
            "none",
            &format!(
                "cron = \"* * * * * *\"\nurl = \"{}\"\ncatch_up = \"none\"",
                receiver.url("/none")
            ),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    with_schedules(&mut cfg, schedules);
    let app = spawn_app_in(dir, cfg.clone()).await;
    receiver.wait_for(2, Duration::from_secs(5)).await;
    let dir = app.shutdown().await;
    let stopped_at = hookrelay::clock::now_ms();
    let seen_before = receiver.requests().len();
    let before_latest: Vec<i64> = ticks_of(&receiver, "/latest");
    // Down for four ticks.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let restarted_at = hookrelay::clock::now_ms();
    let app = spawn_app_in(dir, cfg).await;
    let spawned_at = hookrelay::clock::now_ms();
    // Give it two ticks after the restart.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    app.post("/v1beta1/admin/schedules/latest/pause", &json!({}))
        .await;
    app.post("/v1beta1/admin/schedules/none/pause", &json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.requests().len() > seen_before);

    let latest = ticks_of(&receiver, "/latest");
    let mut unique = latest.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), latest.len(), "a tick ran twice: {latest:?}");
    let last_before = before_latest.iter().copied().max().unwrap_or(0);
    let window = |lo: i64, hi: i64| -> Vec<i64> {
        latest
            .iter()
            .copied()
            .filter(|t| *t > lo && *t <= hi)
            .collect()
    };
    // The ticks due while down are not run one by one...
    assert_eq!(
        window(last_before, restarted_at - 1000),
        Vec::<i64>::new(),
        "a burst of missed ticks ran (stopped {stopped_at}, restarted {restarted_at}): {latest:?}"
    );
    // ...but the latest of them runs once (catch_up = latest), at start.
    assert!(
        !window(restarted_at - 1000, spawned_at).is_empty(),
        "the latest missed tick did not run: {latest:?} (restarted {restarted_at})"
    );

    let none = ticks_of(&receiver, "/none");
    let before_none = none
        .iter()
        .copied()
        .filter(|t| *t <= stopped_at)
        .max()
        .unwrap_or(0);
    assert!(
        !none.iter().any(|t| *t > before_none && *t <= restarted_at),
        "catch_up = none ran a missed tick: {none:?} (restarted {restarted_at})"
    );
    assert!(
        none.iter().any(|t| *t > restarted_at),
        "it ticks on after the restart: {none:?}"
    );
}

fn ticks_of(receiver: &TestReceiver, path: &str) -> Vec<i64> {
    receiver
        .requests()
        .iter()
        .filter(|(_, r)| r.url.path() == path)
        .map(|(_, r)| {
            hookrelay::clock::parse_rfc3339(header(r, "x-hookrelay-scheduled-for")).expect("tick")
        })
        .collect()
}

#[tokio::test]
async fn schedules_made_through_the_api() {
    let receiver = TestReceiver::ok().await;
    let app = app_with(vec![]).await;
    let publish = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = app
            .client
            .request(method, app.url(path))
            .bearer_auth(PUBLISH_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let created = publish(
        reqwest::Method::POST,
        "/v1beta1/schedules",
        Some(json!({
            "name": "calendar-sync",
            "cron": "0 * * * *",
            "timezone": "Asia/Kolkata",
            "url": receiver.url("/tasks/calendar-sync"),
            "headers": {"Authorization": "Bearer cal-s3cr3t"},
            "body": {"full": false},
        })),
    )
    .await
    .expect("request");
    let created = assert_json(created, StatusCode::CREATED).await;
    let s = &created["schedule"];
    assert_eq!(s["origin"], "api");
    assert_eq!(s["headers"]["Authorization"], "[redacted]");
    assert_eq!(s["overlap"], "skip");
    assert_eq!(s["catch_up"], "latest");
    // Hourly at :00 in a +05:30 zone: every tick is at :30 UTC.
    let next = s["next_runs"].as_array().expect("next");
    assert_eq!(next.len(), 5);
    assert!(
        next.iter()
            .all(|t| t.as_str().is_some_and(|t| t.ends_with(":30:00.000Z"))),
        "{next:?}"
    );

    let dup = publish(
        reqwest::Method::POST,
        "/v1beta1/schedules",
        Some(json!({"name": "calendar-sync", "cron": "0 * * * *", "url": receiver.url("/x")})),
    )
    .await
    .expect("request");
    assert_error(dup, StatusCode::CONFLICT, "already_exists").await;
    for bad in [
        json!({"name": "Bad Name", "cron": "0 * * * *", "url": receiver.url("/x")}),
        json!({"name": "b", "cron": "0 * *", "url": receiver.url("/x")}),
        json!({"name": "b", "cron": "0 * * * *", "timezone": "Mars/Olympus", "url": receiver.url("/x")}),
        json!({"name": "b", "cron": "0 * * * *", "url": receiver.url("/x"), "overlap": "queue"}),
    ] {
        let res = publish(
            reqwest::Method::POST,
            "/v1beta1/schedules",
            Some(bad.clone()),
        )
        .await
        .expect("request");
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;
    }
    let private = publish(
        reqwest::Method::POST,
        "/v1beta1/schedules",
        Some(json!({"name": "b", "cron": "0 * * * *", "url": "https://10.0.0.1/"})),
    )
    .await
    .expect("request");
    // local_delivery allows private networks; with it off, this is url_not_allowed (tasks tests).
    assert_eq!(private.status(), StatusCode::CREATED);

    // A partial update: the cron changes, the header (sent back redacted) is kept.
    let updated = publish(
        reqwest::Method::PUT,
        "/v1beta1/schedules/calendar-sync",
        Some(json!({"cron": "* * * * * *", "headers": {"Authorization": "[redacted]"}})),
    )
    .await
    .expect("request");
    let updated = assert_json(updated, StatusCode::OK).await;
    assert_eq!(updated["schedule"]["cron"], "* * * * * *");
    assert_eq!(updated["schedule"]["timezone"], "Asia/Kolkata");
    let reqs = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(header(&reqs[0].1, "authorization"), "Bearer cal-s3cr3t");
    assert_eq!(header(&reqs[0].1, "x-hookrelay-schedule"), "calendar-sync");

    // `null` clears a field: no body, and the call can become a GET.
    let cleared = publish(
        reqwest::Method::PUT,
        "/v1beta1/schedules/calendar-sync",
        Some(json!({"method": "GET", "body": null, "timeout": "5s"})),
    )
    .await
    .expect("request");
    let cleared = assert_json(cleared, StatusCode::OK).await;
    assert_eq!(cleared["schedule"]["method"], "GET");
    assert_eq!(cleared["schedule"]["body"], Value::Null);
    assert_eq!(cleared["schedule"]["timeout"], "5s");
    let kept = publish(
        reqwest::Method::PUT,
        "/v1beta1/schedules/calendar-sync",
        Some(json!({"timeout": null})),
    )
    .await
    .expect("request");
    let kept = assert_json(kept, StatusCode::OK).await;
    assert_eq!(
        kept["schedule"]["timeout"],
        Value::Null,
        "back to tasks.timeout"
    );
    assert_eq!(
        kept["schedule"]["method"], "GET",
        "fields not sent keep their value"
    );
    let detail = app
        .get_json("/v1beta1/admin/schedules/calendar-sync", StatusCode::OK)
        .await;
    let run_id = detail["schedule"]["runs"][0]["id"]
        .as_str()
        .expect("run")
        .to_string();
    let deleted = publish(
        reqwest::Method::DELETE,
        "/v1beta1/schedules/calendar-sync",
        None,
    )
    .await
    .expect("request");
    assert_json(deleted, StatusCode::OK).await;
    let gone = app.get("/v1beta1/admin/schedules/calendar-sync").await;
    assert_error(gone, StatusCode::NOT_FOUND, "not_found").await;
    // Its runs stay readable.
    assert_eq!(task(&app, &run_id).await["schedule"], "calendar-sync");
    let again = publish(
        reqwest::Method::DELETE,
        "/v1beta1/schedules/calendar-sync",
        None,
    )
    .await
    .expect("request");
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;
    // A publish token manages schedules, but the admin views are the admin's.
    let list = publish(reqwest::Method::GET, "/v1beta1/admin/schedules", None)
        .await
        .expect("request");
    assert_error(list, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn api_schedules_survive_a_restart_and_config_ones_follow_the_config() {
    let receiver = TestReceiver::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    with_schedules(
        &mut cfg,
        vec![schedule(
            "old",
            &format!("cron = \"0 3 * * *\"\nurl = \"{}\"", receiver.url("/old")),
        )],
    );
    let app = spawn_app_in(dir, cfg.clone()).await;
    let created = app
        .post(
            "/v1beta1/schedules",
            &json!({"name": "weekly", "cron": "0 9 * * 1", "timezone": "America/New_York", "url": receiver.url("/weekly")}),
        )
        .await;
    assert_json(created, StatusCode::CREATED).await;
    app.post("/v1beta1/admin/schedules/weekly/pause", &json!({}))
        .await;
    let dir = app.shutdown().await;
    cfg.schedules.clear();
    let app = spawn_app_in(dir, cfg).await;
    let list = app
        .get_json("/v1beta1/admin/schedules", StatusCode::OK)
        .await;
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["weekly"], "{list}");
    assert_eq!(list["schedules"][0]["state"], "paused");
}

/// `enabled = false` does not tick; switching it on (or changing its cron) runs no tick from
/// before the change. An API schedule's credential header is sealed at rest.
#[tokio::test]
async fn a_disabled_schedule_switched_on_starts_from_the_next_tick() {
    let receiver = TestReceiver::ok().await;
    let app = app_with(vec![]).await;
    let created = app
        .post(
            "/v1beta1/schedules",
            &json!({
                "name": "digest",
                "cron": "* * * * * *",
                "url": receiver.url("/digest"),
                "enabled": false,
                "headers": {"X-Api-Key": "digest-s3cr3t"},
            }),
        )
        .await;
    let created = assert_json(created, StatusCode::CREATED).await;
    assert_eq!(created["schedule"]["state"], "disabled");
    assert_eq!(created["schedule"]["headers"]["X-Api-Key"], "[redacted]");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(receiver.requests().is_empty(), "a disabled schedule ticked");
    let stored: String = read_db(&app.app_store, |c| {
        c.query_row(
            "SELECT headers FROM schedules WHERE name = 'digest'",
            hookrelay::sql::params![],
            |r| r.get(0),
        )
    })
    .await;
    assert!(
        !stored.contains("digest-s3cr3t"),
        "stored in the clear: {stored}"
    );

    let switched_at = hookrelay::clock::now_ms();
    let on = app
        .client
        .put(app.url("/v1beta1/schedules/digest"))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        assert_json(on, StatusCode::OK).await["schedule"]["state"],
        "active"
    );
    let reqs = receiver.wait_for(1, Duration::from_secs(5)).await;
    let first = hookrelay::clock::parse_rfc3339(header(&reqs[0].1, "x-hookrelay-scheduled-for"))
        .expect("tick");
    assert!(
        first > switched_at - 1000,
        "a tick from the disabled stretch ran: {first} (switched on at {switched_at})"
    );
    assert_eq!(header(&reqs[0].1, "x-api-key"), "digest-s3cr3t");
}
