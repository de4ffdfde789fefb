//! `front_sync` against a fake Front API (wiremock): the events no webhook delivered are ingested
//! through the ingress's store path, the ones that did arrive queue nothing, and the cursor moves.

use hookrelay::clock::{self, Millis};
use hookrelay::config::{FrontConfig, Secret};
use hookrelay::front::client::{FrontClient, unix_seconds};
use hookrelay::front::sync::{self, SyncReport};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How far back a run may look (retention.succeeded in the app).
const LOOKBACK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

use crate::front::{API_TOKEN, front_config, full_inbound, post_front};
use crate::helpers::*;

/// A Front API client for the fake API, as the app builds it.
fn client_for(api: &MockServer) -> FrontClient {
    let mut cfg: FrontConfig = hookrelay::config::from_toml_str("")
        .expect("defaults")
        .front;
    cfg.api_token = Some(Secret::new(API_TOKEN));
    cfg.api_base_url = api.uri();
    FrontClient::new(&cfg).expect("client").expect("token set")
}

/// A full `inbound` event as the List Events API shows it, emitted `ago_secs` seconds ago.
fn listed(id: &str, ago_secs: f64) -> Value {
    let mut event = full_inbound(id, &format!("msg_{id}"))["payload"].clone();
    let now = clock::now_ms() as f64 / 1000.0;
    event["emitted_at"] = json!(((now - ago_secs) * 1000.0).round() / 1000.0);
    event
}

/// The application webhook Front would have delivered for `event`.
fn webhook_for(event: &Value) -> Value {
    json!({"authorization": {"id": "cmp_acme"}, "type": "inbound_received", "payload": event})
}

fn page(results: &[&Value], next: Option<String>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "_pagination": {"next": next},
        "_links": {"self": "https://acme.api.frontapp.com/events"},
        "_results": results,
    }))
}

async fn inbound_rows(app: &TestApp) -> Vec<Value> {
    app.get_json(
        "/v1beta1/admin/inbound?source=front&limit=500",
        StatusCode::OK,
    )
    .await["inbound"]
        .as_array()
        .expect("inbound list")
        .clone()
}

async fn process_jobs(app: &TestApp) -> Vec<Value> {
    app.get_json(
        "/v1beta1/admin/jobs?kind=front.process&limit=500",
        StatusCode::OK,
    )
    .await["jobs"]
        .as_array()
        .expect("job list")
        .clone()
}

async fn stored_cursor(app: &TestApp) -> Option<Millis> {
    use hookrelay::sql::OptionalExtension as _;
    read_db(&app.app_store, |c| {
        c.query_row(
            "SELECT value FROM kv WHERE key = ?1",
            hookrelay::sql::params![sync::CURSOR_KEY],
            |r| r.get::<_, String>(0),
        )
        .optional()
    })
    .await
    .map(|v| v.parse().expect("cursor is UNIX ms"))
}

/// The `q[after]` of each first-page `GET /events` the fake API received, in order.
async fn first_page_afters(api: &MockServer) -> Vec<String> {
    api.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/events")
        .filter(|r| !r.url.query_pairs().any(|(k, _)| k == "page_token"))
        .map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "q[after]")
                .map(|(_, v)| v.into_owned())
                .expect("q[after] sent")
        })
        .collect()
}

fn ids(rows: &[Value], channel: &str) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .filter(|r| r["channel"] == channel)
        .map(|r| r["event_id"].as_str().expect("event id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn sync_ingests_exactly_the_events_no_webhook_delivered() {
    let api = MockServer::start().await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;

    // Two events arrive by webhook; three never do; one is too young to call missing.
    let delivered_a = listed("evt_sync_a", 600.0);
    let missed_1 = listed("evt_sync_m1", 590.0);
    let delivered_b = listed("evt_sync_b", 580.0);
    let missed_2 = listed("evt_sync_m2", 570.0);
    let missed_3 = listed("evt_sync_m3", 560.0);
    let young = listed("evt_sync_young", 5.0);
    for event in [&delivered_a, &delivered_b] {
        let res = post_front(&app.client, &app.address, &webhook_for(event)).await;
        assert_eq!(
            assert_json(res, StatusCode::OK).await,
            json!({"received": true})
        );
    }

    // Front lists all six, oldest first, over two pages.
    let page2 = format!("{}/events?page_token=p2", api.uri());
    Mock::given(method("GET"))
        .and(path("/events"))
        .and(query_param("page_token", "p2"))
        .respond_with(page(&[&missed_3, &young], None))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/events"))
        .and(query_param("limit", "15"))
        .and(query_param("sort_order", "asc"))
        .respond_with(page(
            &[&delivered_a, &missed_1, &delivered_b, &missed_2],
            Some(page2),
        ))
        .mount(&api)
        .await;

    let client = client_for(&api);
    let started = clock::now_ms();
    let report = sync::run(&app.app_store, Some(&client), LOOKBACK)
        .await
        .expect("sync runs");
    assert_eq!(report.pages, 2, "{report:?}");
    assert_eq!(report.fetched, 6, "{report:?}");
    assert_eq!(report.ingested, 3, "{report:?}");
    assert_eq!(report.rows_affected(), 3);
    assert_eq!(report.already_stored, 2, "{report:?}");
    assert_eq!(report.deferred, 1, "{report:?}");
    assert_eq!(
        report.ingested_ids,
        ["evt_sync_m1", "evt_sync_m2", "evt_sync_m3"]
    );
    assert_eq!(report.stopped_early, None);
    assert_eq!(report.skipped_reason, None);

    // Exactly the missed events were stored, each with one processing job; the delivered ones
    // queued nothing more.
    let rows = inbound_rows(&app).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(ids(&rows, "app"), ["evt_sync_a", "evt_sync_b"]);
    assert_eq!(
        ids(&rows, "sync"),
        ["evt_sync_m1", "evt_sync_m2", "evt_sync_m3"]
    );
    let jobs = process_jobs(&app).await;
    assert_eq!(
        jobs.len(),
        5,
        "one front.process job per stored event: {jobs:?}"
    );
    for row in &rows {
        let job_id = row["job_id"].as_str().expect("job id");
        assert!(jobs.iter().any(|j| j["id"] == job_id), "{row}");
    }

    // A synced event is processed like a delivered one, with the company of the stored events.
    let m1 = rows
        .iter()
        .find(|r| r["event_id"] == "evt_sync_m1")
        .expect("m1 row");
    let detail = wait_until(
        std::time::Duration::from_secs(10),
        "the synced event to be processed",
        || async {
            let v = app
                .get_json(
                    &format!("/v1beta1/admin/inbound/{}", m1["id"].as_str().expect("id")),
                    StatusCode::OK,
                )
                .await["inbound"]
                .clone();
            (v["state"] == "processed").then_some(v)
        },
    )
    .await;
    assert_eq!(detail["type"], "inbound_received");
    assert_eq!(detail["company_id"], "cmp_acme");
    assert_eq!(detail["headers"]["via"], "front_sync");
    assert_eq!(detail["raw"]["id"], "evt_sync_m1", "stored as listed");
    assert_eq!(detail["outbound"]["action"], "front.inbound_received");
    assert_eq!(detail["outbound"]["data"]["org_id"], "cmp_acme");

    // The first run looked an hour back, less the overlap; the listing was read to its end, so
    // the cursor is the window's end, past every listed event but the young one.
    let afters = first_page_afters(&api).await;
    assert_eq!(afters.len(), 1);
    let first_after: f64 = afters[0].parse().expect("seconds");
    let expected = (started - 3_660_000) as f64 / 1000.0;
    assert!(
        (first_after - expected).abs() < 5.0,
        "q[after] = {first_after}, expected about {expected}"
    );
    let cursor = stored_cursor(&app).await.expect("cursor stored");
    assert_eq!(report.cursor, Some(clock::to_rfc3339(cursor)));
    assert_eq!(report.cursor, report.before);
    let emitted = |e: &Value| (e["emitted_at"].as_f64().expect("emitted_at") * 1000.0) as Millis;
    assert!(cursor > emitted(&missed_3) && cursor < emitted(&young));

    // A second run asks from the cursor less the overlap, and ingests nothing.
    let again: SyncReport = sync::run(&app.app_store, Some(&client), LOOKBACK)
        .await
        .expect("second run");
    assert_eq!(again.ingested, 0, "{again:?}");
    assert_eq!(again.already_stored, 5, "{again:?}");
    assert_eq!(again.deferred, 1, "{again:?}");
    let afters = first_page_afters(&api).await;
    assert_eq!(afters.len(), 2);
    assert_eq!(afters[1], unix_seconds(cursor - 60_000));
    assert_eq!(inbound_rows(&app).await.len(), 5);
    assert_eq!(process_jobs(&app).await.len(), 5, "nothing new queued");
    assert!(stored_cursor(&app).await.expect("cursor") >= cursor);

    // A webhook that arrives late for a synced event is a duplicate.
    let res = post_front(&app.client, &app.address, &webhook_for(&missed_2)).await;
    assert_eq!(
        assert_json(res, StatusCode::OK).await,
        json!({"received": true, "duplicate": true})
    );
    assert_eq!(process_jobs(&app).await.len(), 5);
}

#[tokio::test]
async fn without_an_api_token_the_sync_is_skipped() {
    let app = spawn_app().await;
    let cfg = hookrelay::config::from_toml_str("")
        .expect("defaults")
        .front;
    let client = FrontClient::new(&cfg).expect("builds");
    assert!(client.is_none(), "no token, no client");
    let report = sync::run(&app.app_store, client.as_ref(), LOOKBACK)
        .await
        .expect("skipping is not an error");
    assert!(
        report
            .skipped_reason
            .as_deref()
            .is_some_and(|r| r.contains("front.api_token")),
        "{report:?}"
    );
    assert_eq!((report.pages, report.ingested), (0, 0));
    assert_eq!(stored_cursor(&app).await, None);
}

#[tokio::test]
async fn a_next_page_on_a_foreign_host_is_not_followed() {
    let api = MockServer::start().await;
    let foreign = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(page(&[], None))
        .expect(0)
        .mount(&foreign)
        .await;
    let app = spawn_app_with(|c| front_config(c, Some(&api))).await;
    let first = listed("evt_fx_1", 300.0);
    let second = listed("evt_fx_2", 200.0);
    // `localhost` is not the base URL's host nor on the allowlist: the token may not go there.
    let foreign_next = format!(
        "{}/events?page_token=p2",
        foreign.uri().replace("127.0.0.1", "localhost")
    );
    Mock::given(method("GET"))
        .and(path("/events"))
        .respond_with(page(&[&first, &second], Some(foreign_next)))
        .expect(1)
        .mount(&api)
        .await;

    let report = sync::run(&app.app_store, Some(&client_for(&api)), LOOKBACK)
        .await
        .expect("sync runs");
    assert_eq!(report.pages, 1, "{report:?}");
    assert_eq!(report.ingested, 2, "{report:?}");
    assert!(
        report
            .stopped_early
            .as_deref()
            .is_some_and(|r| r.contains("not followed")),
        "{report:?}"
    );
    assert!(
        foreign
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the foreign host got a request"
    );
    // The rest of the listing was not read: the cursor stops at the newest event seen.
    let newest = (second["emitted_at"].as_f64().expect("emitted_at") * 1000.0).floor() as Millis;
    assert_eq!(stored_cursor(&app).await, Some(newest));
}

#[tokio::test]
async fn a_rate_limit_ends_the_run_early_and_a_failure_is_an_error() {
    let app = spawn_app().await;

    let limited = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/events"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .expect(1)
        .mount(&limited)
        .await;
    let report = sync::run(&app.app_store, Some(&client_for(&limited)), LOOKBACK)
        .await
        .expect("a rate limit is not a failure");
    assert_eq!((report.pages, report.ingested), (0, 0));
    assert!(
        report
            .stopped_early
            .as_deref()
            .is_some_and(|r| r.contains("rate limit")),
        "{report:?}"
    );
    assert_eq!(stored_cursor(&app).await, None, "the cursor did not move");

    let broken = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"oops": true})))
        .mount(&broken)
        .await;
    let err = sync::run(&app.app_store, Some(&client_for(&broken)), LOOKBACK)
        .await
        .expect_err("not an event list");
    assert!(err.contains("_results"), "{err}");
    assert_eq!(stored_cursor(&app).await, None);
}
