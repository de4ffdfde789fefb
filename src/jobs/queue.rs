//! The `jobs` table — every statement on it. The rest of the program enqueues, claims, finishes
//! and lists jobs through these functions; none writes SQL on `jobs` itself.
//!
//! Every transition of a claimed job checks `state = 'running'` and the claim (`claim_seq`), so a
//! result can only land for the claim that ran.

use std::time::Duration;

use crate::sql::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{Enqueued, Job, JobFilter, JobRun, JobState, MAX_ATTEMPTS_LIMIT, NewJob};
use crate::clock::{self, Millis};
use crate::ids;
use crate::store::WriteTx;

/// Enqueues `job` in the caller's transaction; the workers are woken once it commits.
///
/// # Errors
/// A database error (the caller's whole command then rolls back).
pub fn enqueue(tx: &WriteTx<'_>, job: &NewJob) -> crate::sql::Result<Enqueued> {
    let now = clock::now_ms();
    let id = ids::new_id(ids::JOB);
    let payload = job.payload.to_string();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at,
                               idempotency_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            id,
            job.kind,
            payload,
            job.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT),
            // A time in the past means "now": it is due from its creation, and queue lag is
            // measured from run_at.
            job.run_at.map_or(now, |at| at.max(now)),
            job.idempotency_key,
            now
        ])?;
    if inserted == 1 {
        tx.wake_workers();
        return Ok(Enqueued { id, created: true });
    }
    let existing: String = tx
        .prepare_cached("SELECT id FROM jobs WHERE idempotency_key = ?1")?
        .query_row([&job.idempotency_key], |r| r.get(0))?;
    Ok(Enqueued {
        id: existing,
        created: false,
    })
}

/// Puts job `id` back in the queue, due now, with a fresh set of attempts — if it is in one of
/// the `from` states. Returns whether it was. (Operator retry, inbound replay.)
///
/// # Errors
/// A database error.
pub fn requeue(tx: &WriteTx<'_>, id: &str, from: &[JobState]) -> crate::sql::Result<bool> {
    let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let changed = tx
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'queued', attempt = 0, run_at = ?2, finished_at = NULL,
                    lease_until = NULL, lease_owner = NULL, parked_on = NULL, updated_at = ?2
             WHERE id = ?1 AND state IN ({})",
            states.join(", ")
        ))?
        .execute(params![id, clock::now_ms()])?;
    if changed == 1 {
        tx.wake_workers();
    }
    Ok(changed == 1)
}

/// Cancels job `id` if it is queued, retrying, running or dead. Returns whether it was.
/// A running handler finishes, but its result is discarded (its claim is gone).
///
/// # Errors
/// A database error.
pub fn cancel(tx: &WriteTx<'_>, id: &str) -> crate::sql::Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE jobs SET state = 'cancelled', lease_until = NULL, lease_owner = NULL,
                    parked_on = NULL, finished_at = ?2, updated_at = ?2
             WHERE id = ?1 AND state IN ('queued', 'retrying', 'running', 'dead')",
        )?
        .execute(params![id, clock::now_ms()])?;
    Ok(changed == 1)
}

const JOB_COLUMNS: &str =
    "id, kind, state, attempt, max_attempts, payload, idempotency_key, last_error,
     run_at, lease_until, lease_owner, created_at, updated_at, finished_at, parked_on";

fn job_from_row(r: &Row<'_>) -> crate::sql::Result<Job> {
    let state: String = r.get(2)?;
    let payload: String = r.get(5)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        state: JobState::parse(&state).unwrap_or(JobState::Dead),
        attempt: r.get(3)?,
        max_attempts: r.get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        idempotency_key: r.get(6)?,
        last_error: r.get(7)?,
        run_at: clock::to_rfc3339(r.get(8)?),
        lease_until: r.get::<_, Option<Millis>>(9)?.map(clock::to_rfc3339),
        lease_owner: r.get(10)?,
        created_at: clock::to_rfc3339(r.get(11)?),
        updated_at: clock::to_rfc3339(r.get(12)?),
        finished_at: r.get::<_, Option<Millis>>(13)?.map(clock::to_rfc3339),
        parked_on: r.get(14)?,
    })
}

/// Reads one job.
///
/// # Errors
/// A database error.
pub fn get(conn: &crate::sql::Connection, id: &str) -> crate::sql::Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_from_row)
        .optional()
}

/// Lists jobs newest first, at most `limit`.
///
/// # Errors
/// A database error.
pub fn list(
    conn: &crate::sql::Connection,
    filter: &JobFilter,
    limit: usize,
) -> crate::sql::Result<Vec<Job>> {
    let state = filter.state.map(JobState::as_str);
    crate::pagination::ListQuery::new()
        .filter("state = ?", &state)
        .filter("kind = ?", &filter.kind)
        .filter("id < ?", &filter.before)
        .run(conn, JOB_COLUMNS, "jobs", limit, job_from_row)
}

/// How long the oldest due job (queued or retrying, `run_at` passed) has been waiting, if any.
///
/// # Errors
/// A database error.
pub fn oldest_due_wait(
    conn: &crate::sql::Connection,
    now: Millis,
) -> crate::sql::Result<Option<Duration>> {
    let min: Option<Millis> = conn
        .prepare_cached(
            "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying') AND run_at <= ?1",
        )?
        .query_row([now], |r| r.get(0))?;
    Ok(min.map(|m| Duration::from_millis(u64::try_from(now - m).unwrap_or(0))))
}

/// When the next queued or retrying job becomes due (may be in the past).
///
/// # Errors
/// A database error.
pub fn next_due(conn: &crate::sql::Connection) -> crate::sql::Result<Option<Millis>> {
    conn.prepare_cached(
        "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying')",
    )?
    .query_row([], |r| r.get(0))
}

/// `run_at` of a parked job: never due on its own (9999-12-31, which still formats as a time).
pub const PARKED_RUN_AT: Millis = 253_402_300_799_000;

/// Wakes up to `n` jobs parked on `key`, oldest first: due at `at` (or now, if earlier).
/// Returns how many.
///
/// # Errors
/// A database error.
pub fn unpark(tx: &WriteTx<'_>, key: &str, n: usize, at: Millis) -> crate::sql::Result<usize> {
    // Found first, then woken by id: `id IN (SELECT … LIMIT n)` would build a temporary table
    // on every call, and this runs after every delivery attempt, nearly always finding none.
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM jobs INDEXED BY jobs_parked
             WHERE parked_on = ?1 AND state IN ('queued', 'retrying') ORDER BY id LIMIT ?2",
        )?
        .query_map(params![key, i64::try_from(n).unwrap_or(i64::MAX)], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let now = clock::now_ms();
    let mut wake = tx.prepare_cached(
        "UPDATE jobs SET run_at = ?2, parked_on = NULL, updated_at = ?3 WHERE id = ?1",
    )?;
    let mut woken = 0;
    for id in &ids {
        woken += wake.execute(params![id, at.max(now), now])?;
    }
    if woken > 0 {
        tx.wake_workers();
    }
    Ok(woken)
}

/// Every key that has jobs parked on it, with how many.
///
/// # Errors
/// A database error.
pub fn parked(conn: &crate::sql::Connection) -> crate::sql::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT parked_on, COUNT(*) FROM jobs INDEXED BY jobs_parked
         WHERE parked_on IS NOT NULL AND state IN ('queued', 'retrying') GROUP BY parked_on",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|r| r.map(|(k, n)| (k, u64::try_from(n).unwrap_or(0))))
        .collect()
}

/// Inserts `job` already claimed by `owner` until `lease_until` (its first attempt under way),
/// for the dispatcher of this process to run at once. Returns the claim.
///
/// # Errors
/// A database error.
pub fn insert_claimed(
    tx: &WriteTx<'_>,
    job: &NewJob,
    lease_until: Millis,
    owner: &str,
    now: Millis,
) -> crate::sql::Result<JobRun> {
    let id = ids::new_id(ids::JOB);
    let max_attempts = job.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT);
    tx.prepare_cached(
        "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, lease_until,
                           lease_owner, claim_seq, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'running', 1, ?4, ?5, ?6, ?7, 1, ?5, ?5)",
    )?
    .execute_later(params![
        id,
        job.kind,
        job.payload.to_string(),
        max_attempts,
        now,
        lease_until,
        owner
    ])?;
    Ok(JobRun {
        id,
        kind: job.kind.clone(),
        payload: job.payload.clone(),
        attempt: 1,
        max_attempts,
        claim: 1,
        memo: None,
    })
}

/// Records a claimed job's success. Returns whether the claim was still held.
///
/// # Errors
/// A database error.
pub fn succeed(tx: &WriteTx<'_>, job: &JobRun, now: Millis) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET state = 'succeeded', lease_until = NULL, lease_owner = NULL,
                    updated_at = ?3, finished_at = ?3
             WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
        )?
        .execute(params![job.id, job.claim, now])?
        == 1)
}

/// Records a failed attempt that runs again at `at`. Returns whether the claim was held.
///
/// # Errors
/// A database error.
pub fn retry(
    tx: &WriteTx<'_>,
    job: &JobRun,
    at: Millis,
    error: &str,
    now: Millis,
) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET state = 'retrying', run_at = ?3, last_error = ?4, lease_until = NULL,
                    lease_owner = NULL, updated_at = ?5
             WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
        )?
        .execute(params![job.id, job.claim, at, error, now])?
        == 1)
}

/// Makes a claimed job dead. Returns whether the claim was held.
///
/// # Errors
/// A database error.
pub fn kill(tx: &WriteTx<'_>, job: &JobRun, error: &str, now: Millis) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET state = 'dead', last_error = ?3, lease_until = NULL, lease_owner = NULL,
                    updated_at = ?4, finished_at = ?4
             WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
        )?
        .execute(params![job.id, job.claim, error, now])?
        == 1)
}

/// Puts a claimed job back, due at `at`, without spending its attempt. Returns whether the
/// claim was held.
///
/// # Errors
/// A database error.
pub fn reschedule(
    tx: &WriteTx<'_>,
    job: &JobRun,
    at: Millis,
    reason: &str,
    now: Millis,
) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET state = CASE WHEN attempt > 1 THEN 'retrying' ELSE 'queued' END,
                    attempt = attempt - 1, run_at = ?3, last_error = ?4, lease_until = NULL,
                    lease_owner = NULL, updated_at = ?5
             WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
        )?
        .execute(params![job.id, job.claim, at, reason, now])?
        == 1)
}

/// Parks a claimed job on `key` without spending its attempt: not due until [`unpark`] wakes it.
/// Returns whether the claim was held.
///
/// # Errors
/// A database error.
pub fn park(
    tx: &WriteTx<'_>,
    job: &JobRun,
    key: &str,
    reason: &str,
    now: Millis,
) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET state = CASE WHEN attempt > 1 THEN 'retrying' ELSE 'queued' END,
                    attempt = attempt - 1, run_at = ?3, parked_on = ?4, last_error = ?5,
                    lease_until = NULL, lease_owner = NULL, updated_at = ?6
             WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
        )?
        .execute(params![job.id, job.claim, PARKED_RUN_AT, key, reason, now])?
        == 1)
}

/// Claims up to `n` due jobs, oldest due first, for `owner` until `lease_until`.
///
/// # Errors
/// A database error.
pub fn claim(
    tx: &WriteTx<'_>,
    n: usize,
    lease_until: Millis,
    owner: &str,
    now: Millis,
) -> crate::sql::Result<Vec<JobRun>> {
    // On PostgreSQL several replicas claim at once: each skips the rows another is claiming
    // instead of waiting for them (SQLite has one writer).
    let mut stmt = tx.prepare_cached(tx.dialect_sql(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, claim_seq = claim_seq + 1,
                lease_until = ?1,
                lease_owner = ?2, updated_at = ?3
         WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_due
                      WHERE state IN ('queued', 'retrying') AND run_at <= ?3
                      ORDER BY run_at LIMIT ?4)
         RETURNING id, kind, payload, attempt, max_attempts, claim_seq",
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, claim_seq = claim_seq + 1,
                lease_until = ?1,
                lease_owner = ?2, updated_at = ?3
         WHERE id IN (SELECT id FROM jobs
                      WHERE state IN ('queued', 'retrying') AND run_at <= ?3
                      ORDER BY run_at LIMIT ?4 FOR UPDATE SKIP LOCKED)
         RETURNING id, kind, payload, attempt, max_attempts, claim_seq",
    ))?;
    let rows = stmt.query_map(
        params![lease_until, owner, now, i64::try_from(n).unwrap_or(1)],
        |r| {
            let payload: String = r.get(2)?;
            Ok(JobRun {
                id: r.get(0)?,
                kind: r.get(1)?,
                payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
                attempt: r.get(3)?,
                max_attempts: r.get(4)?,
                claim: r.get(5)?,
                memo: None,
            })
        },
    )?;
    rows.collect()
}

/// Whether claim `claim` of job `id` is still held: the job is `running` under that claim (not
/// cancelled, finished or taken back since).
///
/// # Errors
/// A database error.
pub fn holds_claim(conn: &Connection, id: &str, claim: i64) -> crate::sql::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM jobs WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
    )?
    .query_row(params![id, claim], |_| Ok(()))
    .optional()
    .map(|found| found.is_some())
}

/// Pushes the lease of every claim in `held` to `until`.
///
/// # Errors
/// A database error.
pub fn extend(tx: &WriteTx<'_>, held: &[(String, i64)], until: Millis) -> crate::sql::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE jobs SET lease_until = ?1 WHERE id = ?2 AND claim_seq = ?3 AND state = 'running'",
    )?;
    for (id, claim) in held {
        stmt.execute(params![until, id, claim])?;
    }
    Ok(())
}

/// Gives claims back without counting their attempt (graceful shutdown). Returns how many.
///
/// # Errors
/// A database error.
pub fn release(tx: &WriteTx<'_>, held: &[(String, i64)], now: Millis) -> crate::sql::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "UPDATE jobs SET state = CASE WHEN attempt > 1 THEN 'retrying' ELSE 'queued' END,
                attempt = attempt - 1, run_at = ?3, lease_until = NULL, lease_owner = NULL,
                updated_at = ?3
         WHERE id = ?1 AND claim_seq = ?2 AND state = 'running'",
    )?;
    let mut n = 0;
    for (id, claim) in held {
        n += stmt.execute(params![id, claim, now])?;
    }
    if n > 0 {
        tx.wake_workers();
    }
    Ok(n)
}

/// A running job taken back by [`take_back`]: `(id, kind, payload, attempt, state now)`.
pub type TakenBack = (String, String, String, u32, JobState);

/// Takes back running jobs: those whose lease ran out (`all = false`; the attempt counts, and
/// a job out of attempts becomes dead), or all of them (`all = true`, at start: the attempt is
/// given back). Returns the jobs taken back.
///
/// # Errors
/// A database error.
pub fn take_back(
    tx: &WriteTx<'_>,
    all: bool,
    reason: &str,
    now: Millis,
) -> crate::sql::Result<Vec<TakenBack>> {
    let sql = if all {
        "UPDATE jobs INDEXED BY jobs_leased SET
            state = CASE WHEN attempt > 1 THEN 'retrying' ELSE 'queued' END,
            attempt = attempt - 1,
            run_at = ?1, lease_until = NULL, lease_owner = NULL, last_error = ?2, updated_at = ?1
         WHERE state = 'running'
         RETURNING id, kind, payload, attempt, state"
    } else {
        "UPDATE jobs INDEXED BY jobs_leased SET
            state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'retrying' END,
            finished_at = CASE WHEN attempt >= max_attempts THEN ?1 ELSE NULL END,
            run_at = ?1, lease_until = NULL, lease_owner = NULL, last_error = ?2, updated_at = ?1
         WHERE state = 'running' AND lease_until < ?1
         RETURNING id, kind, payload, attempt, state"
    };
    let rows: Vec<TakenBack> = tx
        .prepare_cached(sql)?
        .query_map(params![now, reason], |r| {
            let state: String = r.get(4)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                JobState::parse(&state).unwrap_or(JobState::Dead),
            ))
        })?
        .collect::<Result<_, _>>()?;
    if rows.iter().any(|r| r.4 != JobState::Dead) {
        tx.wake_workers();
    }
    Ok(rows)
}

/// The state of job `id`, if it exists.
///
/// # Errors
/// A database error.
pub fn state_of(conn: &Connection, id: &str) -> crate::sql::Result<Option<JobState>> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(state.and_then(|s| JobState::parse(&s)))
}

/// Jobs per `(kind, state)` for the given states.
///
/// # Errors
/// A database error.
pub fn count_by_kind(
    conn: &Connection,
    states: &[JobState],
) -> crate::sql::Result<Vec<(String, JobState, u64)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, COUNT(*) FROM jobs INDEXED BY jobs_state WHERE state = ?1 GROUP BY kind",
    )?;
    for state in states {
        for row in stmt.query_map([state.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (kind, n) = row?;
            out.push((kind, *state, u64::try_from(n).unwrap_or(0)));
        }
    }
    Ok(out)
}

/// Jobs per state (every state present), for stats.
///
/// # Errors
/// A database error.
pub fn count_by_state(conn: &Connection) -> crate::sql::Result<Vec<(JobState, u64)>> {
    let mut counts: Vec<(JobState, u64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (state, n) = row?;
        if let Some(entry) =
            JobState::parse(&state).and_then(|s| counts.iter_mut().find(|(c, _)| *c == s))
        {
            entry.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(counts)
}

/// `(waiting, due)`: jobs queued or retrying, and those of them whose `run_at` has passed.
///
/// # Errors
/// A database error.
pub fn depth(conn: &Connection, now: Millis) -> crate::sql::Result<(u64, u64)> {
    let count = |sql: &str, p: &[&dyn crate::sql::Param]| -> crate::sql::Result<u64> {
        conn.prepare_cached(sql)?
            .query_row(p, |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    Ok((
        count(
            "SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying')",
            &[],
        )?,
        count(
            "SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying') AND run_at <= ?1",
            &[&now],
        )?,
    ))
}

/// Deletes up to `batch` jobs in `state` that finished before `cutoff` (retention). Returns how
/// many.
///
/// # Errors
/// A database error.
pub fn prune(
    tx: &WriteTx<'_>,
    state: JobState,
    cutoff: Millis,
    batch: usize,
) -> crate::sql::Result<usize> {
    // Ids sort by creation time and nothing finishes before it is created, so the id bound lets
    // the (state, id) index skip every younger row.
    tx.prepare_cached(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs WHERE state = ?1 AND id < ?2 AND COALESCE(finished_at, updated_at) < ?3
             ORDER BY id LIMIT ?4)",
    )?
    .execute(params![
        state.as_str(),
        ids::time_bound(ids::JOB, cutoff),
        cutoff,
        i64::try_from(batch).unwrap_or(i64::MAX)
    ])
}
