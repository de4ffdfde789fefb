//! Backups and maintenance: `hookrelay backup DEST` beside a running `hookrelay serve` that takes
//! writes, the `backup` cron's rotation, and the `db_maintenance` checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookrelay::ops::{backup, maintenance};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn event(n: usize, padding: usize) -> Value {
    json!({"action": "app.user.created", "data": {
        "actor": {"id": format!("user_{n}"), "type": "user", "name": "backup test"},
        "target": {"id": "user_xyz789", "type": "user", "name": "Jane Doe"},
        "org_id": "org_123abc",
        "metadata": {"n": n, "padding": "x".repeat(padding)}
    }})
}

/// Publishes through a child app; the event id when acked (202).
async fn publish_child(
    client: &reqwest::Client,
    base: &str,
    body: Value,
) -> Result<String, String> {
    let res = client
        .post(format!("{base}/v1beta1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let text = res.text().await.map_err(|e| e.to_string())?;
    if status != StatusCode::ACCEPTED {
        return Err(format!("{status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no id in {text}"))
}

/// Opens a snapshot on its own and checks it is whole: integrity, one file, current schema.
fn open_snapshot(path: &Path) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the snapshot opens");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "delete", "a single-file rollback-journal database");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(
        version,
        hookrelay::store::latest_version(&hookrelay::app::schema()) as i64
    );
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serve_takes_writes_holds_every_acked_event_and_restores() {
    const WRITERS: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let app = ChildApp::start(&config);

    // Some bulk first (~1.5 MB), so that the copy takes a moment while the writers run.
    let client = reqwest::Client::new();
    for chunk in (0..400).collect::<Vec<_>>().chunks(16) {
        let futs = chunk
            .iter()
            .map(|&n| publish_child(&client, &app.address, event(n, 4000)));
        for r in futures_util::future::join_all(futs).await {
            r.expect("bulk publish acked");
        }
    }

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked, failures, stop) =
                (Arc::clone(&acked), Arc::clone(&failures), Arc::clone(&stop));
            let (client, base) = (client.clone(), app.address.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match publish_child(&client, &base, event(10_000 * (w + 1) + n, 200)).await {
                        Ok(id) => acked.lock().expect("lock").push(id),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "the writers to get going",
        || async { (acked.lock().expect("lock").len() >= 50).then_some(()) },
    )
    .await;

    // Everything acked up to here must be in the snapshot.
    let acked_before = acked.lock().expect("lock").clone();
    let dest = dir.path().join("snapshots/during-writes.db");
    let out = {
        let (cwd, dest, config) = (dir.path().to_path_buf(), dest.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            run_bin(
                &cwd,
                &[
                    "backup",
                    dest.to_str().expect("path"),
                    "--config",
                    config.to_str().expect("path"),
                ],
                &[],
            )
        })
        .await
        .expect("backup task")
    };
    let after_backup = acked.lock().expect("lock").len();
    // The server kept taking writes: more are acked after the backup finished.
    wait_until(
        Duration::from_secs(30),
        "writes to go on after the backup",
        || async { (acked.lock().expect("lock").len() >= after_backup + 50).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(dest.to_str().expect("path")) && stdout.contains("integrity_check ok"),
        "{stdout}"
    );
    assert!(
        after_backup > acked_before.len(),
        "writes were acked while the backup ran ({} before, {after_backup} after)",
        acked_before.len()
    );
    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "writes failed during the backup: {failures:?}"
    );
    let mut siblings: Vec<_> = std::fs::read_dir(dest.parent().expect("parent"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    siblings.sort();
    assert_eq!(siblings, vec![std::ffi::OsString::from("during-writes.db")]);

    let conn = open_snapshot(&dest);
    let total: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert!(total >= 400 + acked_before.len() as i64, "{total}");
    let mut stmt = conn
        .prepare("SELECT 1 FROM events WHERE id = ?1")
        .expect("prepare");
    for id in &acked_before {
        assert!(
            stmt.exists([id]).expect("query"),
            "event {id}, acked before the backup started, is missing from the snapshot"
        );
    }
    drop(stmt);
    drop(conn);
    drop(app);

    // Restore: the snapshot as the database of a fresh install starts and serves its events.
    let restored = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&dest, restored.path().join("hookrelay.db")).expect("copy");
    let config = write_child_config(restored.path(), "");
    let app = ChildApp::start(&config);
    let res = app
        .client
        .get(format!(
            "{}/v1beta1/admin/events/{}",
            app.address, acked_before[0]
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    publish_child(&client, &app.address, event(1, 10))
        .await
        .expect("the restored database takes writes");
}

#[test]
fn backup_refuses_existing_files_the_database_itself_and_a_missing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state/hookrelay.db");
    let env = [("HOOKRELAY_DATABASE__PATH", db.to_str().expect("path"))];
    let missing = run_bin(dir.path(), &["backup", "copy.db"], &env);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no database at") && err.contains("database.path"),
        "{err}"
    );
    assert!(!db.exists(), "a backup never creates the database");

    let out = run_bin(dir.path(), &["migrate"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let taken = dir.path().join("taken.db");
    std::fs::write(&taken, "do not overwrite").expect("write");
    let out = run_bin(dir.path(), &["backup", "taken.db"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("taken.db already exists") && err.contains("never overwrites"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&taken).expect("read"),
        "do not overwrite"
    );

    let out = run_bin(dir.path(), &["backup", "state/../state/hookrelay.db"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the database itself"), "{err}");

    // A relative DEST is relative to the working folder; its folder is created.
    let out = run_bin(dir.path(), &["backup", "new/copy.db"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(open_snapshot(&dir.path().join("new/copy.db")));

    assert_eq!(
        run_bin(dir.path(), &["backup"], &env).status.code(),
        Some(2)
    );
    let help = run_bin(dir.path(), &["backup", "--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--config") && text.contains("DEST"), "{text}");
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_and_leave_other_files_alone() {
    let app = spawn_app().await;
    for n in 0..20 {
        publish(&app, event(n, 100)).await;
    }
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().join("backups");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("hookrelay-manual.db"), "mine").expect("write");
    std::fs::write(dir.join("notes.txt"), "mine").expect("write");

    let (db, d) = (app.db_path.clone(), dir.clone());
    let runs = tokio::task::spawn_blocking(move || {
        (0..4)
            .map(|_| backup::scheduled(&db, &d, 2).expect("scheduled backup"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("task");
    let written: Vec<_> = runs.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        runs.iter().map(|r| r.removed.clone()).collect::<Vec<_>>(),
        vec![
            vec![],
            vec![],
            vec![written[0].clone()],
            vec![written[1].clone()]
        ]
    );
    assert!(runs.iter().all(|r| r.rows_affected() == 1 && r.bytes > 0));
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    left.sort();
    let mut want = vec![
        dir.join("hookrelay-manual.db"),
        dir.join("notes.txt"),
        written[2].clone(),
        written[3].clone(),
    ];
    want.sort();
    assert_eq!(left, want);
    let name = written[3]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        name.starts_with("hookrelay-") && name.ends_with("Z.db") && name.contains('T'),
        "{name}"
    );
    let conn = open_snapshot(&written[3]);
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 20);
}

#[tokio::test]
async fn maintenance_checkpoints_the_wal_and_reports_a_blocked_checkpoint_as_busy() {
    let app = spawn_app().await;
    for n in 0..200 {
        publish(&app, event(n, 500)).await;
    }
    let m = maintenance::run(&app.app_store).await.expect("maintenance");
    assert!(m.db_bytes_before > 0 && m.wal_bytes_before > 0, "{m:?}");
    assert!(
        !m.checkpoint.busy,
        "an idle server does not block it: {m:?}"
    );
    assert_eq!(
        m.checkpoint.log_frames, m.checkpoint.checkpointed_frames,
        "{m:?}"
    );
    assert_eq!(m.wal_bytes_after, 0, "the WAL is truncated: {m:?}");
    assert!(m.db_bytes_after > 0, "{m:?}");

    // A reader that holds an old snapshot (a long backup) keeps the checkpoint from completing:
    // reported, not an error.
    let reader = rusqlite::Connection::open(&app.db_path).expect("open");
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("read");
    for n in 200..220 {
        publish(&app, event(n, 500)).await;
    }
    let m = maintenance::run(&app.app_store).await.expect("maintenance");
    assert!(m.checkpoint.busy, "{m:?}");
    assert!(m.wal_bytes_after > 0, "{m:?}");
    reader.execute_batch("COMMIT").expect("end");
    drop(reader);

    // The writer works on, and the next run catches up.
    publish(&app, event(999, 10)).await;
    let m = maintenance::run(&app.app_store).await.expect("maintenance");
    assert!(!m.checkpoint.busy && m.wal_bytes_after == 0, "{m:?}");
    let json = serde_json::to_value(&m).expect("serialize");
    assert!(json["checkpoint"]["log_frames"].is_i64(), "{json}");
}
