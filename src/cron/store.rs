//! The `cron_runs` table — every statement on it: one row per tick (or manual run), what was
//! scheduled, when it ran and how it went.

use std::collections::HashMap;

use crate::sql::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::clock::{self, Millis};
use crate::store::WriteTx;

/// A recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub name: String,
    pub scheduled_at: String,
    pub trigger: String,
    pub state: String,
    pub job_id: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub rows_affected: Option<i64>,
    pub detail: Option<Value>,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = "id, name, scheduled_at, trigger, state, job_id, started_at, finished_at, rows_affected, detail, error";

fn run_row(r: &crate::sql::Row<'_>) -> crate::sql::Result<Run> {
    let started: Option<Millis> = r.get(6)?;
    let finished: Option<Millis> = r.get(7)?;
    Ok(Run {
        id: r.get(0)?,
        name: r.get(1)?,
        scheduled_at: clock::to_rfc3339(r.get(2)?),
        trigger: r.get(3)?,
        state: r.get(4)?,
        job_id: r.get(5)?,
        started_at: started.map(clock::to_rfc3339),
        finished_at: finished.map(clock::to_rfc3339),
        duration_ms: started.zip(finished).map(|(s, f)| f - s),
        rows_affected: r.get(8)?,
        detail: r
            .get::<_, Option<String>>(9)?
            .and_then(|d| serde_json::from_str(&d).ok()),
        error: r.get(10)?,
    })
}

/// The latest run of every name.
pub fn latest_runs(c: &Connection) -> crate::sql::Result<HashMap<String, Run>> {
    let mut out = HashMap::new();
    let names: Vec<String> = c
        .prepare_cached("SELECT DISTINCT name FROM cron_runs")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        if let Some(run) = recent_runs(c, &name, 1)?.into_iter().next() {
            out.insert(name, run);
        }
    }
    Ok(out)
}

/// The latest `n` runs of `name`, newest first.
pub fn recent_runs(c: &Connection, name: &str, n: usize) -> crate::sql::Result<Vec<Run>> {
    c.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM cron_runs INDEXED BY cron_runs_tick WHERE name = ?1
         ORDER BY scheduled_at DESC, id DESC LIMIT ?2"
    ))?
    .query_map(params![name, i64::try_from(n).unwrap_or(i64::MAX)], run_row)?
    .collect()
}

/// The latest tick recorded for every name (manual runs are not ticks).
pub fn last_ticks(c: &Connection) -> crate::sql::Result<HashMap<String, Millis>> {
    c.prepare_cached(
        "SELECT name, MAX(scheduled_at) FROM cron_runs WHERE trigger != 'manual' GROUP BY name",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Whether the tick of `name` at `at` is already recorded (a scheduler firing twice).
///
/// # Errors
/// A database error.
pub fn tick_taken(conn: &Connection, name: &str, at: Millis) -> crate::sql::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM cron_runs WHERE name = ?1 AND scheduled_at = ?2 AND trigger != 'manual')",
    )?
    .query_row(params![name, at], |r| r.get(0))
}

/// Records a skipped tick; returns the run id.
///
/// # Errors
/// A database error.
pub fn insert_skipped(
    tx: &WriteTx<'_>,
    name: &str,
    at: Millis,
    trigger: &str,
    why: &str,
    now: Millis,
) -> crate::sql::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO cron_runs (name, scheduled_at, trigger, state, error, created_at, finished_at)
         VALUES (?1, ?2, ?3, 'skipped', ?4, ?5, ?5) RETURNING id",
    )?
    .query_row(params![name, at, trigger, why, now], |r| r.get(0))
}

/// Records a queued run carried by `job_id`; returns the run id.
///
/// # Errors
/// A database error.
pub fn insert_queued(
    tx: &WriteTx<'_>,
    name: &str,
    at: Millis,
    trigger: &str,
    job_id: &str,
    now: Millis,
) -> crate::sql::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO cron_runs (name, scheduled_at, trigger, state, job_id, created_at)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5) RETURNING id",
    )?
    .query_row(params![name, at, trigger, job_id, now], |r| r.get(0))
}

/// The queued or running runs of `name` with a job: `(run id, job id)`.
///
/// # Errors
/// A database error.
pub fn open_runs(conn: &Connection, name: &str) -> crate::sql::Result<Vec<(i64, String)>> {
    conn.prepare_cached(
        "SELECT id, job_id FROM cron_runs INDEXED BY cron_runs_active
         WHERE name = ?1 AND state IN ('queued', 'running') AND job_id IS NOT NULL",
    )?
    .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Closes run `id` as failed with `why`.
///
/// # Errors
/// A database error.
pub fn fail_run(tx: &WriteTx<'_>, id: i64, why: &str, now: Millis) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE cron_runs SET state = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, why, now])?;
    Ok(())
}

/// The run carried by `job_id` started at `at`.
///
/// # Errors
/// A database error.
pub fn mark_running(tx: &WriteTx<'_>, job_id: &str, at: Millis) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE cron_runs SET state = 'running', started_at = ?2 WHERE job_id = ?1 AND state IN ('queued', 'running')",
    )?
    .execute(params![job_id, at])?;
    Ok(())
}

/// The run carried by `job_id` ended: `succeeded` with its report, or `failed` with the error.
///
/// # Errors
/// A database error.
pub fn finish(
    tx: &WriteTx<'_>,
    job_id: &str,
    rows: Option<u64>,
    detail: Option<&Value>,
    error: Option<&str>,
    now: Millis,
) -> crate::sql::Result<()> {
    let state = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    tx.prepare_cached(
        "UPDATE cron_runs SET state = ?2, finished_at = ?3, rows_affected = ?4, detail = ?5, error = ?6
         WHERE job_id = ?1",
    )?
    .execute(params![
        job_id,
        state,
        now,
        rows.and_then(|r| i64::try_from(r).ok()),
        detail.map(Value::to_string),
        error
    ])?;
    Ok(())
}

/// Notes the latest error of a run that will be retried.
///
/// # Errors
/// A database error.
pub fn note_error(tx: &WriteTx<'_>, job_id: &str, error: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("UPDATE cron_runs SET error = ?2 WHERE job_id = ?1")?
        .execute(params![job_id, error])?;
    Ok(())
}

/// A run whose job died without recording it: closed as failed.
///
/// # Errors
/// A database error.
pub fn close_dead(
    tx: &WriteTx<'_>,
    job_id: &str,
    error: &str,
    now: Millis,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE cron_runs SET state = 'failed', error = ?2, finished_at = ?3
         WHERE job_id = ?1 AND state IN ('queued', 'running')",
    )?
    .execute(params![job_id, error, now])?;
    Ok(())
}

/// Deletes finished runs older than `ok` (succeeded, skipped) or `bad` (failed), keeping the
/// latest tick of each name (catch-up at start compares with it). Returns how many.
///
/// # Errors
/// A database error.
pub fn prune(tx: &WriteTx<'_>, ok: Millis, bad: Millis) -> crate::sql::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM cron_runs
         WHERE ((state IN ('succeeded', 'skipped') AND created_at < ?1)
                OR (state = 'failed' AND created_at < ?2))
           AND id NOT IN (SELECT MAX(id) FROM cron_runs WHERE trigger != 'manual' GROUP BY name)",
    )?
    .execute(params![ok, bad])
}
