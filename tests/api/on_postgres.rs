//! `hookrelay serve` with `database.url`: the same service on a throwaway PostgreSQL cluster.
//! (The whole suite runs there with `HOOKRELAY_TEST_POSTGRES` set; see the README.)

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac as _};
use serde_json::json;

use crate::helpers::*;

fn on(pg: &PgCluster, db: &str) -> impl FnOnce(&mut hookrelay::config::Config) {
    let url = pg.url(db);
    move |c| {
        local_delivery(c);
        c.database.url = Some(hookrelay::config::Secret::new(url));
        c.database.pool_size = 2;
        c.delivery.encryption_key = Some(hookrelay::config::Secret::new(
            "6869686f6f6b72656c61792d746573742d6b65792d3332627974657321212121",
        ));
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

    // A second serve on the same database is refused while the first runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut second = test_config(dir.path());
    on(&pg, "served")(&mut second);
    let refused = hookrelay::app::Application::build(second)
        .await
        .err()
        .expect("a second serve is refused");
    assert!(
        refused.to_string().contains("another hookrelay serve"),
        "{refused:#}"
    );
    assert!(!refused.to_string().contains(PG_PASSWORD), "{refused:#}");

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
}
