//! `hookrelay copy-db --to postgres://…` into a throwaway PostgreSQL cluster: every table and row
//! arrives as it was, a target with rows is refused, and a database a `serve` holds is not
//! copied.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_postgres::types::Type;

use crate::helpers::*;

/// One value, as either database holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

type Rows = Vec<Vec<Cell>>;

/// Every table of the SQLite file, each with its rows sorted.
fn sqlite_rows(db: &std::path::Path) -> HashMap<String, Rows> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .map(|r| r.expect("row"))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn.prepare(&format!("SELECT * FROM {t}")).expect("select");
            let n = stmt.column_count();
            let mut rows: Rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Cell::Null,
                                rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                                rusqlite::types::ValueRef::Real(v) => Cell::Text(v.to_string()),
                                rusqlite::types::ValueRef::Text(v) => {
                                    Cell::Text(String::from_utf8_lossy(v).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(v) => Cell::Bytes(v.to_vec()),
                            })
                        })
                        .collect()
                })
                .expect("rows")
                .map(|r| r.expect("row"))
                .collect();
            rows.sort();
            (t, rows)
        })
        .collect()
}

/// The same tables in PostgreSQL, columns in SQLite's order.
async fn postgres_rows(
    client: &tokio_postgres::Client,
    like: &HashMap<String, Rows>,
    db: &std::path::Path,
) -> HashMap<String, Rows> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut out = HashMap::new();
    for table in like.keys() {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("columns")
            .map(|r| r.expect("row"))
            .collect();
        let rows = client
            .query(&format!("SELECT {} FROM {table}", columns.join(", ")), &[])
            .await
            .unwrap_or_else(|e| panic!("reading {table} from PostgreSQL: {e}"));
        let mut cells: Rows = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match *r.columns()[i].type_() {
                        Type::INT8 => r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                        Type::TEXT => r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text),
                        Type::BYTEA => r
                            .get::<_, Option<Vec<u8>>>(i)
                            .map_or(Cell::Null, Cell::Bytes),
                        ref other => panic!("{table}: unexpected type {other}"),
                    })
                    .collect()
            })
            .collect();
        cells.sort();
        out.insert(table.clone(), cells);
    }
    out
}

/// Runs `hookrelay copy-db --to URL` with the config in `dir`, expecting a refusal; its stderr.
fn copy_db_refused(dir: &std::path::Path, to: &str) -> String {
    let config = dir.join("config.toml");
    let out = run_bin(
        dir,
        &[
            "copy-db",
            "--config",
            config.to_str().expect("utf-8"),
            "--to",
            to,
        ],
        &[],
    );
    assert!(!out.status.success(), "copy-db to {to} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn copy_db_moves_every_row_into_an_empty_postgres_database() {
    let Some(pg) = PgCluster::start("copy_db_moves_every_row_into_an_empty_postgres_database")
    else {
        return;
    };
    pg.create_db("moved").await;

    // A database with history: a delivered event, a failed delivery, a finished job, webhooks
    // with their encrypted secrets, audit records.
    let ok = TestReceiver::ok().await;
    let failing = TestReceiver::start(vec![wiremock::ResponseTemplate::new(500)]).await;
    let app = delivery_app().await;
    create_webhook(
        &app,
        json!({"url": ok.url("/ok"), "subscribed_events": ["app.user.created"]}),
    )
    .await;
    create_webhook(
        &app,
        json!({"url": failing.url("/fails"), "subscribed_events": ["app.user.created"], "retry_schedule": []}),
    )
    .await;
    publish(
        &app,
        json!({"action": "app.user.created", "data": {"target": {"id": "user_1"}}}),
    )
    .await;
    ok.wait_for(1, Duration::from_secs(10)).await;
    wait_until(
        Duration::from_secs(10),
        "the failing delivery to fail",
        || async {
            let failed = app
                .get_json("/v1beta1/admin/deliveries?state=failed", StatusCode::OK)
                .await;
            (failed["deliveries"].as_array().map(Vec::len) == Some(1)).then_some(())
        },
    )
    .await;
    let job = app.enqueue(noop(json!({}))).await;
    app.wait_job(&job, "succeeded", Duration::from_secs(5))
        .await;
    let dir = app.shutdown().await;
    let db = dir.path().join("hookrelay.db");
    let config = write_child_config(dir.path(), "");
    let config = config.to_str().expect("utf-8");

    // The password from $PGPASSWORD, as psql takes it, rather than on the command line.
    let out = run_bin(
        dir.path(),
        &[
            "copy-db",
            "--config",
            config,
            "--to",
            &pg.url_without_password("moved"),
        ],
        &[("PGPASSWORD", PG_PASSWORD)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "copy-db failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("delivery_attempts"), "{stdout}");

    let client = pg.connect("moved").await;
    let before = sqlite_rows(&db);
    let after = postgres_rows(&client, &before, &db).await;
    for (table, rows) in &before {
        assert_eq!(&after[table], rows, "table {table} arrived as it was");
    }
    for table in [
        "webhooks",
        "webhook_secrets",
        "events",
        "deliveries",
        "delivery_attempts",
        "jobs",
        "audit_log",
    ] {
        assert!(
            !before[table].is_empty(),
            "the test database has {table} rows"
        );
    }
    // Identity columns go on after the highest id copied.
    let next: i64 = client
        .query_one(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, latency_ms)
             SELECT id, 99, 0, 0 FROM deliveries LIMIT 1 RETURNING id",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    let highest = before["delivery_attempts"]
        .iter()
        .filter_map(|r| match r[0] {
            Cell::Int(i) => Some(i),
            _ => None,
        })
        .max()
        .expect("attempts");
    assert_eq!(next, highest + 1);

    // A target with rows is refused, and nothing in it changes.
    let stderr = copy_db_refused(dir.path(), &pg.url("moved"));
    assert!(stderr.contains("not empty"), "{stderr}");
    let events: i64 = client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 1);
}

#[tokio::test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
)]
async fn copy_db_refuses_a_database_in_use_and_an_old_schema() {
    let Some(pg) = PgCluster::start("copy_db_refuses_a_database_in_use_and_an_old_schema") else {
        return;
    };
    pg.create_db("target").await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write_child_config(dir.path(), "");
    let config = config.to_str().expect("utf-8");
    let db = dir.path().join("hookrelay.db");
    assert!(
        run_bin(dir.path(), &["migrate", "--config", config], &[])
            .status
            .success()
    );

    // As `serve` holds it.
    let lock = hookrelay::app::lock_database(&db).expect("lock");
    let stderr = copy_db_refused(dir.path(), &pg.url("target"));
    assert!(stderr.contains("stop `hookrelay serve` first"), "{stderr}");
    drop(lock);

    // A file an older binary left: migrate it first.
    let version: i64 = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("read the version");
    rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", version - 1)
        .expect("downgrade the version");
    let stderr = copy_db_refused(dir.path(), &pg.url("target"));
    assert!(
        stderr.contains("run `hookrelay migrate` on it first"),
        "{stderr}"
    );
    rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", version)
        .expect("restore the version");

    // Not a PostgreSQL URL; and a password in the URL is never printed.
    let stderr = copy_db_refused(dir.path(), "mysql://u:hunter2@h/db");
    assert!(stderr.contains("postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A wrong password: refused by the server, and never printed.
    let stderr = copy_db_refused(
        dir.path(),
        &format!("postgres://hookrelay:hunter2@127.0.0.1:{}/target", pg.port),
    );
    assert!(stderr.contains("connecting to"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // TLS is not spoken: a URL that requires it is refused with that reason.
    let stderr = copy_db_refused(dir.path(), &format!("{}?sslmode=require", pg.url("target")));
    assert!(stderr.contains("without TLS"), "{stderr}");
    assert!(!stderr.contains(PG_PASSWORD), "{stderr}");
}
