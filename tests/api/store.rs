//! The single writer: group commit, back-pressure, and failures surfacing as 503.

use std::sync::Arc;
use std::time::Duration;

use hookrelay::config::Synchronous;
use hookrelay::store::{Store, StoreError, writer::QUEUE_CAPACITY};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Notify;

use crate::helpers::*;

fn open_store(dir: &std::path::Path) -> Store {
    let mut cfg = test_config(dir).database;
    cfg.synchronous = Synchronous::Full;
    hookrelay::app::open_store(&cfg, Arc::new(Notify::new())).expect("store opens")
}

async fn insert_kv(store: &Store, key: String) -> Result<(), StoreError> {
    store
        .writer()
        .write(move |tx| {
            tx.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?1, 'v', 0)",
                [&key],
            )?;
            Ok(())
        })
        .await
}

#[tokio::test]
async fn concurrent_writes_share_commits_and_are_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { insert_kv(&store, format!("k{i}")).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("write");
    }
    let stats = store.writer().stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    let commands = stats.commands.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(commands, 2000);
    assert!(
        commits < 2000,
        "group commit: {commands} commands in {commits} commits"
    );
    let n: i64 = store
        .read(|c| {
            c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
                .map_err(StoreError::from)
        })
        .await
        .expect("count");
    assert_eq!(n, 2000);
}

/// Holds the writer thread inside one command until the returned barrier is passed a second
/// time, so that everything sent meanwhile lands in the next batch.
async fn hold_writer(
    store: &Store,
    for_ms: u64,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let gate = Arc::new(std::sync::Barrier::new(2));
    let held = Arc::clone(&gate);
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .writer()
                .write(move |_tx| {
                    held.wait();
                    std::thread::sleep(Duration::from_millis(for_ms));
                    Ok::<_, StoreError>(())
                })
                .await
        })
    };
    tokio::task::spawn_blocking(move || gate.wait())
        .await
        .expect("writer is held");
    blocker
}

#[tokio::test]
async fn a_failing_command_rolls_back_only_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    insert_kv(&store, "dup".into()).await.expect("first");
    let blocker = hold_writer(&store, 200).await;
    let commits_before = store
        .writer()
        .stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let (a, b, c) = tokio::join!(
        insert_kv(&store, "a".into()),
        insert_kv(&store, "dup".into()),
        insert_kv(&store, "c".into())
    );
    blocker.await.expect("task").expect("blocker");
    let commits = store
        .writer()
        .stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - commits_before;
    assert_eq!(
        commits, 2,
        "the blocker's batch, then one batch with all three"
    );
    assert!(a.is_ok() && c.is_ok());
    assert!(matches!(b, Err(StoreError::Query(_))), "{b:?}");
    let keys = kv_keys(&store).await;
    assert_eq!(keys, ["a", "c", "dup"]);
}

async fn kv_keys(store: &Store) -> Vec<String> {
    store
        .read(|c| {
            let mut s = c.prepare_cached("SELECT key FROM kv ORDER BY key")?;
            let rows = s
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
        .expect("keys")
}

/// Inserts `key`, then fails when `fail_after_insert`; counts its runs in `runs`.
async fn insert_then(
    store: &Store,
    key: &'static str,
    fail_after_insert: bool,
    runs: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), StoreError> {
    store
        .writer()
        .write(move |tx| {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tx.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?1, 'v', 0)",
                [key],
            )?;
            if fail_after_insert {
                return Err(StoreError::Internal("failed after writing a row".into()));
            }
            Ok(())
        })
        .await
}

/// Runs `insert_then` for each of `cmds` (key, fail after inserting) in one batch behind a held
/// writer; their results and how often each ran.
async fn one_batch(
    store: &Store,
    cmds: [(&'static str, bool); 3],
) -> (Vec<Result<(), StoreError>>, Vec<usize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let blocker = hold_writer(store, 200).await;
    let runs: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let [(k0, f0), (k1, f1), (k2, f2)] = cmds;
    let (r0, r1, r2) = tokio::join!(
        insert_then(store, k0, f0, Arc::clone(&runs[0])),
        insert_then(store, k1, f1, Arc::clone(&runs[1])),
        insert_then(store, k2, f2, Arc::clone(&runs[2])),
    );
    blocker.await.expect("task").expect("blocker");
    let counts = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    (vec![r0, r1, r2], counts)
}

#[tokio::test]
async fn a_command_failing_after_it_wrote_leaves_no_row_and_its_neighbours_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let (results, runs) = one_batch(&store, [("a", false), ("bad", true), ("c", false)]).await;
    assert!(results[0].is_ok(), "the command before it committed");
    assert!(results[2].is_ok(), "the command after it committed");
    assert!(
        matches!(results[1], Err(StoreError::Internal(_))),
        "{results:?}"
    );
    assert_eq!(
        kv_keys(&store).await,
        ["a", "c"],
        "the failed command's row is gone"
    );
    // The batch ran once without savepoints, was rolled back at the dirty failure (before
    // `c` ran) and ran again with a savepoint per command.
    assert_eq!(runs, [2, 2, 1]);
}

#[tokio::test]
async fn a_command_failing_before_it_wrote_does_not_run_its_batch_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    insert_kv(&store, "dup".into()).await.expect("first");
    let (results, runs) = one_batch(&store, [("a", false), ("dup", false), ("c", false)]).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Query(_))),
        "{results:?}"
    );
    assert_eq!(kv_keys(&store).await, ["a", "c", "dup"]);
    assert_eq!(
        runs,
        [1, 1, 1],
        "a failed statement changed nothing: no second run"
    );
}

/// Inserts each of `keys` with `execute_later` (on PostgreSQL queued to go out with the next
/// statement that needs an answer); then counts them with `count` (an immediate query).
async fn insert_later(
    store: &Store,
    keys: &'static [&'static str],
    count: bool,
) -> Result<i64, StoreError> {
    store
        .writer()
        .write(move |tx| {
            for key in keys {
                tx.prepare_cached("INSERT INTO kv (key, value, updated_at) VALUES (?1, 'v', 0)")?
                    .execute_later([key])?;
            }
            if !count {
                return Ok(-1);
            }
            let placeholders = vec!["?"; keys.len()].join(", ");
            let n = tx.query_row(
                &format!("SELECT COUNT(*) FROM kv WHERE key IN ({placeholders})"),
                hookrelay::sql::params_from_iter(keys.iter()),
                |r| r.get(0),
            )?;
            Ok(n)
        })
        .await
}

#[tokio::test]
async fn writes_queued_to_go_out_together_are_seen_in_order_and_fail_only_their_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    insert_kv(&store, "dup".into()).await.expect("first");
    let blocker = hold_writer(&store, 200).await;
    let (a, b, c) = tokio::join!(
        insert_later(&store, &["a1", "a2"], true),
        insert_later(&store, &["b1", "dup"], false),
        insert_later(&store, &["c"], false),
    );
    blocker.await.expect("task").expect("blocker");
    assert_eq!(
        a.expect("the first command committed"),
        2,
        "a query sees the rows its command queued before it"
    );
    assert!(
        matches!(b, Err(StoreError::Query(_))),
        "the queued duplicate fails its own command: {b:?}"
    );
    c.expect("the command after it committed");
    assert_eq!(
        kv_keys(&store).await,
        ["a1", "a2", "c", "dup"],
        "the failed command's first row is rolled back with it"
    );
}

#[tokio::test]
async fn a_panicking_command_fails_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let blocker = hold_writer(&store, 200).await;
    let panicking = store.writer().write(|tx| {
        tx.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES ('p', 'v', 0)",
            [],
        )?;
        panic!("a bug in a write command");
        #[allow(unreachable_code)]
        Ok::<_, StoreError>(())
    });
    let (p, ok) = tokio::join!(panicking, insert_kv(&store, "fine".into()));
    blocker.await.expect("task").expect("blocker");
    assert!(matches!(p, Err(StoreError::Unavailable(_))), "{p:?}");
    ok.expect("the other command in the batch committed");
    assert!(store.writer().is_alive());
    let keys = kv_keys(&store).await;
    assert_eq!(
        keys,
        ["fine"],
        "the panicking command's insert was rolled back"
    );
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    // Hold the writer thread inside one command while the queue fills up.
    let blocker = hold_writer(&store, 300).await;
    let mut pending = Vec::new();
    let mut busy = 0;
    for i in 0..QUEUE_CAPACITY + 100 {
        let store = store.clone();
        let fut = async move { insert_kv(&store, format!("q{i}")).await };
        pending.push(tokio::spawn(fut));
    }
    for p in pending {
        if matches!(p.await.expect("task"), Err(StoreError::Busy)) {
            busy += 1;
        }
    }
    blocker.await.expect("task").expect("blocker");
    assert!(busy >= 100, "at least the overflow was refused, got {busy}");
}

#[tokio::test]
async fn a_full_disk_answers_storage_unavailable_and_stores_nothing() {
    let app = spawn_app().await;
    // Cap the database at its current size: the next page it needs fails like a full disk.
    app.app_store
        .writer()
        .write(|tx| {
            let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("cap size");
    let mut saw_503 = false;
    let mut acked = Vec::new();
    for _ in 0..500 {
        let res = app
            .post("/v1beta1/admin/jobs", &noop(json!({"sleep_ms": 0})))
            .await;
        match res.status() {
            StatusCode::CREATED => acked
                .push(res.json::<serde_json::Value>().await.expect("json")["job"]["id"].clone()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    res.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"5"[..])
                );
                assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
                saw_503 = true;
                break;
            }
            other => panic!(
                "unexpected {other}: {}",
                res.text().await.unwrap_or_default()
            ),
        }
    }
    assert!(saw_503, "the capped database filled up");
    // Everything that was acked is stored.
    for id in acked {
        let id = id.as_str().expect("id");
        let res = app.get(&format!("/v1beta1/admin/jobs/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_command_outside_the_transaction_runs_after_earlier_writes_and_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    // 200 writes queued (not yet committed), then a direct command behind them.
    let mut queued = Vec::new();
    for i in 0..200 {
        let key = format!("k{i}");
        let committed = store
            .writer()
            .submit_wait(move |tx| {
                tx.execute(
                    "INSERT INTO kv (key, value, updated_at) VALUES (?1, 'v', 0)",
                    [&key],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .expect("queued");
        queued.push(committed);
    }
    let (autocommit, seen): (bool, i64) = store
        .writer()
        .run_outside_transaction(|conn| {
            let n = conn.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?;
            Ok::<_, StoreError>((conn.sqlite().expect("sqlite").is_autocommit(), n))
        })
        .await
        .expect("direct command");
    assert!(autocommit, "no transaction is open around it");
    assert_eq!(seen, 200, "it runs after every write queued before it");
    for committed in queued {
        committed.await.expect("write");
    }

    // A panic or a transaction left open fails only that command; the writer goes on.
    let panicked = store
        .writer()
        .run_outside_transaction(|_| -> Result<(), StoreError> { panic!("boom") })
        .await;
    assert!(
        matches!(panicked, Err(StoreError::Internal(_))),
        "{panicked:?}"
    );
    store
        .writer()
        .run_outside_transaction(|conn| {
            conn.execute_batch(
                "BEGIN; INSERT INTO kv (key, value, updated_at) VALUES ('left-open', 'v', 0);",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("direct command");
    insert_kv(&store, "after".into())
        .await
        .expect("writer still works");
    let keys: Vec<String> = store
        .read(|c| {
            let mut s =
                c.prepare_cached("SELECT key FROM kv WHERE key IN ('left-open', 'after')")?;
            s.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)
        })
        .await
        .expect("read");
    assert_eq!(
        keys,
        vec!["after".to_string()],
        "the open transaction was rolled back"
    );
}
