//! The `db_maintenance` cron: `PRAGMA optimize` and a truncating WAL checkpoint, run on the
//! store's single write connection between two group commits, so they never compete with the
//! writer for the lock.
//!
//! It must never run a full `VACUUM` (it rewrites the whole file and blocks every write for as
//! long), and a checkpoint that readers keep from completing is a result to report, not a failure:
//! the next run, or SQLite's automatic checkpoints, catch up.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::sql::Connection;
use serde::Serialize;

use crate::store::{self, Store, StoreError};

/// How long the checkpoint waits for readers to move to the newest snapshot before it reports
/// `busy`. Short: every write of the process waits while it runs.
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The result of `PRAGMA wal_checkpoint(TRUNCATE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Readers or another checkpoint kept it from completing (not an error).
    pub busy: bool,
    /// Frames in the WAL when it ran (-1 when it could not tell).
    pub log_frames: i64,
    /// Frames copied into the database file (-1 when it could not tell).
    pub checkpointed_frames: i64,
}

/// What one maintenance run did.
#[derive(Debug, Serialize)]
pub struct Maintenance {
    pub db_bytes_before: u64,
    pub wal_bytes_before: u64,
    pub db_bytes_after: u64,
    pub wal_bytes_after: u64,
    pub checkpoint: Checkpoint,
    pub duration_ms: u64,
}

/// Runs `PRAGMA optimize` and `PRAGMA wal_checkpoint(TRUNCATE)` on the store's write connection.
///
/// # Errors
/// A database error from either statement, or [`StoreError::Closed`] when the writer has stopped.
/// A busy checkpoint is not an error: it is reported in [`Maintenance::checkpoint`].
#[tracing::instrument(skip_all)]
pub async fn run(store: &Store) -> Result<Maintenance, StoreError> {
    let db = store.path().to_path_buf();
    let report = store
        .writer()
        .run_outside_transaction(move |conn| maintain(conn, &db))
        .await?;
    tracing::info!(
        busy = report.checkpoint.busy,
        log_frames = report.checkpoint.log_frames,
        checkpointed_frames = report.checkpoint.checkpointed_frames,
        wal_bytes_before = report.wal_bytes_before,
        wal_bytes_after = report.wal_bytes_after,
        duration_ms = report.duration_ms,
        "database maintenance done"
    );
    Ok(report)
}

fn maintain(conn: &Connection, db: &Path) -> Result<Maintenance, StoreError> {
    let Some(conn) = conn.sqlite() else {
        return Err(StoreError::Internal(
            "database maintenance is for SQLite; PostgreSQL's autovacuum does its own".into(),
        ));
    };
    let started = Instant::now();
    let wal = store::wal_path(db);
    let db_bytes_before = file_len(db);
    let wal_bytes_before = file_len(&wal);
    conn.execute_batch("PRAGMA optimize")?;
    conn.busy_timeout(CHECKPOINT_BUSY_TIMEOUT)?;
    let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok(Checkpoint {
            busy: r.get::<_, i64>(0)? != 0,
            log_frames: r.get(1)?,
            checkpointed_frames: r.get(2)?,
        })
    });
    // Back to the normal wait before anything else can fail, whatever the checkpoint did.
    conn.busy_timeout(store::BUSY_TIMEOUT)?;
    let checkpoint = checkpoint?;
    Ok(Maintenance {
        db_bytes_before,
        wal_bytes_before,
        db_bytes_after: file_len(db),
        wal_bytes_after: file_len(&wal),
        checkpoint,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// A file's size, 0 when it is missing.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
