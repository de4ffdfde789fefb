//! All SQL on `tasks`, `task_attempts` and `schedules`.
//!
//! A task is one row carried by one `task.call` job (as a delivery is): the row holds what to
//! call and the state people read, the job holds the lease and the retry clock. Every change of
//! state is written in the transaction that records its cause — the 202, an attempt, a cancel.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::sql::{Connection, OptionalExtension as _, Row, params};
use serde_json::{Map, Value, json};

use crate::clock::{self, Millis};
use crate::delivery::store::{ATTEMPT_COLUMNS, AttemptRow, Next, attempt_json};
use crate::jobs::{self, Handoff, JobState, NewJob};
use crate::pagination::ListQuery;
use crate::store::WriteTx;

/// The job kind that makes task calls.
pub const KIND: &str = "task.call";
/// The key scope of the tasks schedules create.
pub const SCHEDULE_SCOPE: &str = "schedule";

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its `run_at`.
    Scheduled,
    /// A call is being made.
    Running,
    /// A call failed; the next is scheduled.
    Retrying,
    Succeeded,
    /// Out of attempts, a 410, or a URL that may not be called.
    Failed,
    /// By an operator.
    Cancelled,
    /// A schedule's tick that came while its previous run was not finished (`overlap = skip`).
    Skipped,
}

impl TaskState {
    /// Every state, in life order.
    pub const ALL: [Self; 7] = [
        Self::Scheduled,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }

    /// Every state's name.
    #[must_use]
    pub fn names() -> [&'static str; 7] {
        Self::ALL.map(Self::as_str)
    }
}

/// A task to insert, built before the transaction.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub scheduled_for: Option<Millis>,
    pub url: String,
    pub method: String,
    /// As stored: sensitive values sealed.
    pub headers: Map<String, Value>,
    /// Compact JSON.
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub key_scope: Option<String>,
    pub idempotency_key: Option<String>,
    pub run_at: Millis,
    pub created_by: String,
}

/// What [`insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new task (and its job).
    Created,
    /// The key named this existing task; nothing was written.
    Existing(String),
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn schedule_json(waits: &[Duration]) -> String {
    json!(waits.iter().map(|d| ms(*d)).collect::<Vec<_>>()).to_string()
}

/// The task an idempotency key names, if any.
///
/// # Errors
/// A database error.
fn by_key(conn: &Connection, scope: &str, key: &str) -> crate::sql::Result<Option<String>> {
    conn.prepare_cached("SELECT id FROM tasks WHERE key_scope = ?1 AND idempotency_key = ?2")?
        .query_row(params![scope, key], |r| r.get(0))
        .optional()
}

/// Inserts `t` in `state` (`scheduled`, or `skipped` for a skipped tick, which gets no job),
/// unless its key names a task already. The job goes to this process's workers directly when
/// the task is due now.
///
/// # Errors
/// A database error.
pub fn insert(
    tx: &WriteTx<'_>,
    t: &NewTask,
    state: TaskState,
    handoff: Option<&Handoff>,
) -> crate::sql::Result<Inserted> {
    if let (Some(scope), Some(key)) = (&t.key_scope, &t.idempotency_key)
        && let Some(id) = by_key(tx, scope, key)?
    {
        return Ok(Inserted::Existing(id));
    }
    let now = clock::now_ms();
    let max_attempts = u32::try_from(t.retry_schedule.len() + 1).unwrap_or(u32::MAX);
    let finished = (state == TaskState::Skipped).then_some(now);
    tx.prepare_cached(
        "INSERT INTO tasks (id, name, schedule, scheduled_for, url, method, headers, body, timeout_ms,
                            retry_schedule, key_scope, idempotency_key, state, run_at, max_attempts,
                            created_by, created_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17, ?18)",
    )?
    .execute(params![
        t.id,
        t.name,
        t.schedule,
        t.scheduled_for,
        t.url,
        t.method,
        Value::Object(t.headers.clone()).to_string(),
        t.body,
        ms(t.timeout),
        schedule_json(&t.retry_schedule),
        t.key_scope,
        t.idempotency_key,
        state.as_str(),
        t.run_at,
        max_attempts,
        t.created_by,
        now,
        finished,
    ])?;
    if state != TaskState::Skipped {
        new_job(tx, &t.id, t.run_at, max_attempts, handoff)?;
    }
    Ok(Inserted::Created)
}

fn new_job(
    tx: &WriteTx<'_>,
    task_id: &str,
    run_at: Millis,
    max_attempts: u32,
    handoff: Option<&Handoff>,
) -> crate::sql::Result<()> {
    let mut job = NewJob::new(KIND, json!({"task_id": task_id})).max_attempts(max_attempts);
    if run_at > clock::now_ms() {
        job = job.run_at(run_at);
    }
    let enqueued = match handoff {
        Some(h) => h.enqueue(tx, &job)?,
        None => jobs::enqueue(tx, &job)?,
    };
    tx.prepare_cached("UPDATE tasks SET job_id = ?2 WHERE id = ?1")?
        .execute(params![task_id, enqueued.id])?;
    Ok(())
}

/// What a call needs, read as the call starts.
#[derive(Debug, Clone)]
pub struct ToCall {
    pub url: String,
    pub method: String,
    pub headers: Map<String, Value>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    /// Attempts made before this one.
    pub attempts: i64,
    pub schedule: Option<String>,
    pub scheduled_for: Option<Millis>,
}

fn durations(text: &str) -> Vec<Duration> {
    serde_json::from_str::<Vec<u64>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(Duration::from_millis)
        .collect()
}

/// Marks task `id` `running` and reads what to call — `None` when it is not waiting for a call
/// (cancelled, finished, or gone).
///
/// # Errors
/// A database error.
pub fn start(tx: &WriteTx<'_>, id: &str) -> crate::sql::Result<Option<ToCall>> {
    tx.prepare_cached(
        "UPDATE tasks SET state = 'running', updated_at = ?2
         WHERE id = ?1 AND state IN ('scheduled', 'retrying', 'running')
         RETURNING url, method, headers, body, timeout_ms, retry_schedule, attempts, schedule, scheduled_for",
    )?
    .query_row(params![id, clock::now_ms()], |r| {
        let headers: String = r.get(2)?;
        let timeout: i64 = r.get(4)?;
        let schedule: String = r.get(5)?;
        Ok(ToCall {
            url: r.get(0)?,
            method: r.get(1)?,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: r.get(3)?,
            timeout: Duration::from_millis(u64::try_from(timeout).unwrap_or(0)),
            retry_schedule: durations(&schedule),
            attempts: r.get(6)?,
            schedule: r.get(7)?,
            scheduled_for: r.get(8)?,
        })
    })
    .optional()
}

/// Records attempt `a` of task `id` and moves the task to `next` (unless an operator cancelled
/// it meanwhile: the attempt is recorded, the task stays cancelled).
///
/// # Errors
/// A database error.
pub fn record_attempt(
    tx: &WriteTx<'_>,
    id: &str,
    a: &AttemptRow,
    next: Next,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO task_attempts (task_id, attempt, at, status, latency_ms, response_headers,
                                    response_headers_truncated, response_body, error_kind, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        a.number,
        a.at,
        a.status,
        a.latency_ms,
        a.headers.as_ref().map(Value::to_string),
        a.headers_truncated,
        a.body,
        a.error_kind,
        a.error,
    ])?;
    let now = clock::now_ms();
    let (state, run_at, finished) = match next {
        Next::Succeeded => (TaskState::Succeeded, None, Some(now)),
        Next::Failed => (TaskState::Failed, None, Some(now)),
        Next::RetryAt(at) => (TaskState::Retrying, Some(at), None),
    };
    tx.prepare_cached(
        "UPDATE tasks SET attempts = ?2, last_status = ?3, last_error = ?4,
                state = CASE WHEN state = 'cancelled' THEN state ELSE ?5 END,
                run_at = COALESCE(?6, run_at), finished_at = COALESCE(finished_at, ?7), updated_at = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        a.number,
        a.status,
        a.error,
        state.as_str(),
        run_at,
        finished,
        now
    ])?;
    Ok(())
}

/// Task `id` fails without a call recorded (its URL may not be called, its headers cannot be
/// opened): the task is `failed` with `error`.
///
/// # Errors
/// A database error.
pub fn fail(tx: &WriteTx<'_>, id: &str, error: &str) -> crate::sql::Result<()> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE tasks SET state = 'failed', last_error = ?2, finished_at = ?3, updated_at = ?3
         WHERE id = ?1 AND state IN ('scheduled', 'running', 'retrying')",
    )?
    .execute(params![id, error, now])?;
    Ok(())
}

/// Says why skipped task `id` did not run: `running`, the schedule's previous run, was not
/// finished.
///
/// # Errors
/// A database error.
pub fn note_skipped(tx: &WriteTx<'_>, id: &str, running: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("UPDATE tasks SET last_error = ?2 WHERE id = ?1")?
        .execute(params![
            id,
            format!("skipped: the previous run {running} was not finished (overlap = skip)")
        ])?;
    Ok(())
}

/// A failed task, as the error handler reports it.
#[derive(Debug, Clone)]
pub struct Failed {
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub url: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// The job of task `id` died: the task is `failed` (if nothing recorded that yet — a run that
/// crashed on its last attempt) and returned for the error handler; `None` if the task is gone
/// or was finished otherwise (cancelled, succeeded).
///
/// # Errors
/// A database error.
pub fn fail_dead(tx: &WriteTx<'_>, id: &str, error: &str) -> crate::sql::Result<Option<Failed>> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE tasks SET state = 'failed', last_error = COALESCE(last_error, ?2),
                finished_at = COALESCE(finished_at, ?3), updated_at = ?3
         WHERE id = ?1 AND state IN ('scheduled', 'running', 'retrying', 'failed')
         RETURNING name, schedule, url, attempts, last_status, last_error",
    )?
    .query_row(params![id, error, now], |r| {
        Ok(Failed {
            name: r.get(0)?,
            schedule: r.get(1)?,
            url: r.get(2)?,
            attempts: r.get(3)?,
            last_status: r.get(4)?,
            last_error: r.get(5)?,
        })
    })
    .optional()
}

/// Cancels task `id`: `Ok(None)` if there is no such task, `Ok(Some(false))` if it is finished
/// already. A running call is not cut off: its answer is recorded, and nothing more is called.
///
/// # Errors
/// A database error.
pub fn cancel(tx: &WriteTx<'_>, id: &str) -> crate::sql::Result<Option<bool>> {
    let Some((state, job_id)) = state_and_job(tx, id)? else {
        return Ok(None);
    };
    if !matches!(state.as_str(), "scheduled" | "running" | "retrying") {
        return Ok(Some(false));
    }
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE tasks SET state = 'cancelled', finished_at = ?2, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    // A call in flight keeps its job, so that its answer is recorded as an attempt; the job
    // then finds the task cancelled and calls no more. A waiting task's job is cancelled.
    if let Some(job) = job_id
        && state != "running"
    {
        jobs::cancel(tx, &job)?;
    }
    Ok(Some(true))
}

fn state_and_job(
    conn: &Connection,
    id: &str,
) -> crate::sql::Result<Option<(String, Option<String>)>> {
    conn.prepare_cached("SELECT state, job_id FROM tasks WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Queues finished task `id` again with a fresh set of attempts (the attempt log goes on):
/// `Ok(None)` if there is no such task, `Ok(Some(false))` if it is not finished.
///
/// # Errors
/// A database error.
pub fn retry(
    tx: &WriteTx<'_>,
    id: &str,
    handoff: Option<&Handoff>,
) -> crate::sql::Result<Option<bool>> {
    let Some((state, job_id)) = state_and_job(tx, id)? else {
        return Ok(None);
    };
    if !matches!(
        state.as_str(),
        "succeeded" | "failed" | "cancelled" | "skipped"
    ) {
        return Ok(Some(false));
    }
    let now = clock::now_ms();
    let max_attempts: u32 = tx
        .prepare_cached(
            "UPDATE tasks SET state = 'scheduled', run_at = ?2, finished_at = NULL, updated_at = ?2
             WHERE id = ?1 RETURNING max_attempts",
        )?
        .query_row(params![id, now], |r| r.get(0))?;
    let finished = [JobState::Succeeded, JobState::Dead, JobState::Cancelled];
    let (requeued, live) = match &job_id {
        Some(j) => {
            let requeued = jobs::requeue(tx, j, &finished)?;
            let live =
                !requeued && jobs::get(tx, j)?.is_some_and(|job| !finished.contains(&job.state));
            (requeued, live)
        }
        None => (false, false),
    };
    // A job still live (a call in flight when the task was cancelled) carries on; a task never
    // gets a second one. A job gone (retention) is replaced.
    if !requeued && !live {
        new_job(tx, id, now, max_attempts, handoff)?;
    }
    Ok(Some(true))
}

const COLUMNS: &str = "id, name, schedule, scheduled_for, url, method, headers, body, timeout_ms,
     retry_schedule, idempotency_key, state, run_at, attempts, max_attempts, last_status,
     last_error, created_by, created_at, updated_at, finished_at, job_id";

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A task as the API shows it (headers as stored: the caller shows them redacted).
fn task_row(r: &Row<'_>) -> crate::sql::Result<Value> {
    let headers: String = r.get(6)?;
    let body: Option<Vec<u8>> = r.get(7)?;
    let timeout: i64 = r.get(8)?;
    let schedule: String = r.get(9)?;
    let at = |i: usize| -> crate::sql::Result<Option<String>> {
        Ok(r.get::<_, Option<Millis>>(i)?.map(clock::to_rfc3339))
    };
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "name": r.get::<_, Option<String>>(1)?,
        "schedule": r.get::<_, Option<String>>(2)?,
        "scheduled_for": at(3)?,
        "url": r.get::<_, String>(4)?,
        "method": r.get::<_, String>(5)?,
        "headers": serde_json::from_str::<Value>(&headers).unwrap_or_else(|_| json!({})),
        "body": body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        "timeout": human(Duration::from_millis(u64::try_from(timeout).unwrap_or(0))),
        "retry_schedule": durations(&schedule).into_iter().map(human).collect::<Vec<_>>(),
        "idempotency_key": r.get::<_, Option<String>>(10)?,
        "state": r.get::<_, String>(11)?,
        "run_at": at(12)?,
        "attempt_count": r.get::<_, i64>(13)?,
        "max_attempts": r.get::<_, i64>(14)?,
        "last_status": r.get::<_, Option<i64>>(15)?,
        "last_error": r.get::<_, Option<String>>(16)?,
        "created_by": r.get::<_, String>(17)?,
        "created_at": at(18)?,
        "updated_at": at(19)?,
        "finished_at": at(20)?,
        "job_id": r.get::<_, Option<String>>(21)?,
    }))
}

/// One task.
///
/// # Errors
/// A database error.
pub fn get(conn: &Connection, id: &str) -> crate::sql::Result<Option<Value>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task_row)
        .optional()
}

/// Every attempt of task `id`, first first.
///
/// # Errors
/// A database error.
pub fn attempts(conn: &Connection, id: &str) -> crate::sql::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE task_id = ?1 ORDER BY attempt"
    ))?;
    let rows = stmt.query_map([id], attempt_json)?;
    rows.collect()
}

/// Filters of the task list.
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub before: Option<String>,
}

/// Tasks, newest first.
///
/// # Errors
/// A database error.
pub fn list(conn: &Connection, f: &TaskFilter, limit: usize) -> crate::sql::Result<Vec<Value>> {
    ListQuery::new()
        .filter("state = ?", &f.state)
        .filter("name = ?", &f.name)
        .filter("schedule = ?", &f.schedule)
        .filter("id < ?", &f.before)
        .run(conn, COLUMNS, "tasks", limit, task_row)
}

/// The newest run of `schedule` that is still `scheduled`, `running` or `retrying`.
///
/// # Errors
/// A database error.
pub fn active_run(conn: &Connection, schedule: &str) -> crate::sql::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT id FROM tasks WHERE schedule = ?1 AND state IN ('scheduled', 'running', 'retrying')
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row([schedule], |r| r.get(0))
    .optional()
}

/// The newest run of `schedule`.
///
/// # Errors
/// A database error.
pub fn last_run(conn: &Connection, schedule: &str) -> crate::sql::Result<Option<Value>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE schedule = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([schedule], task_row)
    .optional()
}

/// Task counts per state (stats and metrics).
///
/// # Errors
/// A database error.
pub fn count_by_state(conn: &Connection) -> crate::sql::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
    })?;
    rows.collect()
}

/// Whose headers a sealed map is: they are sealed for this owner (the additional data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOwner {
    Task(String),
    Schedule(String),
}

impl HeaderOwner {
    /// The additional data the values are sealed with.
    #[must_use]
    pub fn aad(&self) -> String {
        match self {
            Self::Task(id) => id.clone(),
            Self::Schedule(name) => format!("schedule:{name}"),
        }
    }
}

/// The headers of every task and schedule that holds any, with their owner (the key inventory
/// at start, `keys reencrypt`).
///
/// # Errors
/// A database error.
pub fn all_headers(
    conn: &Connection,
) -> crate::sql::Result<Vec<(HeaderOwner, Map<String, Value>)>> {
    let mut out = Vec::new();
    for (table, key) in [("tasks", "id"), ("schedules", "name")] {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {key}, headers FROM {table} WHERE headers != '{{}}'"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (owner, text) = row?;
            if let Ok(Value::Object(m)) = serde_json::from_str(&text) {
                let owner = if table == "tasks" {
                    HeaderOwner::Task(owner)
                } else {
                    HeaderOwner::Schedule(owner)
                };
                out.push((owner, m));
            }
        }
    }
    Ok(out)
}

/// Replaces the stored headers of `owner`.
///
/// # Errors
/// A database error.
pub fn set_headers(
    tx: &WriteTx<'_>,
    owner: &HeaderOwner,
    headers: &Map<String, Value>,
) -> crate::sql::Result<()> {
    let text = Value::Object(headers.clone()).to_string();
    match owner {
        HeaderOwner::Task(id) => tx
            .prepare_cached("UPDATE tasks SET headers = ?2 WHERE id = ?1")?
            .execute(params![id, text])?,
        HeaderOwner::Schedule(name) => tx
            .prepare_cached("UPDATE schedules SET headers = ?2 WHERE name = ?1")?
            .execute(params![name, text])?,
    };
    Ok(())
}

/// Deletes finished tasks (and their attempts): succeeded, cancelled and skipped ones finished
/// before `succeeded_before`, failed ones before `failed_before`; at most `limit`.
///
/// # Errors
/// A database error.
pub fn prune(
    tx: &WriteTx<'_>,
    succeeded_before: Millis,
    failed_before: Millis,
    limit: usize,
) -> crate::sql::Result<usize> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "DELETE FROM tasks WHERE id IN (
             SELECT id FROM tasks
             WHERE (state IN ('succeeded', 'cancelled', 'skipped') AND finished_at < ?1)
                OR (state = 'failed' AND finished_at < ?2)
             LIMIT ?3)",
    )?
    .execute(params![succeeded_before, failed_before, limit])
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchedule {
    pub name: String,
    /// `config` or `api`.
    pub origin: String,
    pub cron: String,
    pub timezone: String,
    pub url: String,
    pub method: String,
    /// Sensitive values sealed (API schedules; config ones keep theirs in the config).
    pub headers: Map<String, Value>,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub retry_schedule: Option<Vec<Duration>>,
    pub overlap: String,
    pub catch_up: String,
    pub enabled: bool,
    pub paused: bool,
    pub last_tick: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const SCHEDULE_COLUMNS: &str =
    "name, origin, cron, timezone, url, method, headers, body, timeout_ms,
     retry_schedule, overlap, catch_up, enabled, paused, last_tick, created_at, updated_at";

fn schedule_row(r: &Row<'_>) -> crate::sql::Result<StoredSchedule> {
    let headers: String = r.get(6)?;
    let timeout: Option<i64> = r.get(8)?;
    let retry: Option<String> = r.get(9)?;
    Ok(StoredSchedule {
        name: r.get(0)?,
        origin: r.get(1)?,
        cron: r.get(2)?,
        timezone: r.get(3)?,
        url: r.get(4)?,
        method: r.get(5)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(7)?,
        timeout: timeout.map(|t| Duration::from_millis(u64::try_from(t).unwrap_or(0))),
        retry_schedule: retry.as_deref().map(durations),
        overlap: r.get(10)?,
        catch_up: r.get(11)?,
        enabled: r.get(12)?,
        paused: r.get(13)?,
        last_tick: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

/// Every schedule, by name.
///
/// # Errors
/// A database error.
pub fn schedules(conn: &Connection) -> crate::sql::Result<BTreeMap<String, StoredSchedule>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules"))?;
    let rows = stmt.query_map([], schedule_row)?;
    rows.map(|r| r.map(|s| (s.name.clone(), s))).collect()
}

/// One schedule.
///
/// # Errors
/// A database error.
pub fn schedule(conn: &Connection, name: &str) -> crate::sql::Result<Option<StoredSchedule>> {
    conn.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"
    ))?
    .query_row([name], schedule_row)
    .optional()
}

/// What a change to the schedules announces to the other replicas (on PostgreSQL), whose
/// listener reloads them.
pub const SCHEDULES_CHANGED: &str = "schedules";

/// Inserts or replaces a schedule; its last tick only moves forward. (SQLite's scalar `MAX` is
/// PostgreSQL's `GREATEST`.)
macro_rules! put_schedule {
    ($greatest:literal) => {
        concat!(
                "INSERT INTO schedules (name, origin, cron, timezone, url, method, headers, body, timeout_ms,
                                retry_schedule, overlap, catch_up, enabled, paused, last_tick,
                                created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (name) DO UPDATE SET
             origin = excluded.origin, cron = excluded.cron, timezone = excluded.timezone,
             url = excluded.url, method = excluded.method, headers = excluded.headers,
             body = excluded.body, timeout_ms = excluded.timeout_ms,
             retry_schedule = excluded.retry_schedule, overlap = excluded.overlap,
             catch_up = excluded.catch_up, enabled = excluded.enabled,
             last_tick = ",
            $greatest,
            "(COALESCE(schedules.last_tick, 0), COALESCE(excluded.last_tick, 0)),
             updated_at = excluded.updated_at"
        )
    };
}
const PUT_SCHEDULE: &str = put_schedule!("MAX");
const PUT_SCHEDULE_POSTGRES: &str = put_schedule!("GREATEST");

/// Writes `s`: its definition, and its last tick if that is later than the stored one (an
/// existing row keeps its `paused`).
///
/// # Errors
/// A database error.
pub fn put_schedule(tx: &WriteTx<'_>, s: &StoredSchedule) -> crate::sql::Result<()> {
    crate::store::postgres::notify_changed(tx, SCHEDULES_CHANGED)?;
    tx.prepare_cached(tx.dialect_sql(PUT_SCHEDULE, PUT_SCHEDULE_POSTGRES))?
        .execute(params![
            s.name,
            s.origin,
            s.cron,
            s.timezone,
            s.url,
            s.method,
            Value::Object(s.headers.clone()).to_string(),
            s.body,
            s.timeout.map(ms),
            s.retry_schedule.as_deref().map(schedule_json),
            s.overlap,
            s.catch_up,
            s.enabled,
            s.paused,
            s.last_tick,
            s.created_at,
            s.updated_at,
        ])?;
    Ok(())
}

/// Deletes schedule `name` (its runs stay); whether it existed.
///
/// # Errors
/// A database error.
pub fn delete_schedule(tx: &WriteTx<'_>, name: &str) -> crate::sql::Result<bool> {
    crate::store::postgres::notify_changed(tx, SCHEDULES_CHANGED)?;
    Ok(tx
        .prepare_cached("DELETE FROM schedules WHERE name = ?1")?
        .execute([name])?
        == 1)
}

/// Pauses or resumes `name`. Resuming moves its last tick to `now`, so ticks missed while
/// paused do not run. Whether it exists.
///
/// # Errors
/// A database error.
pub fn set_paused(
    tx: &WriteTx<'_>,
    name: &str,
    paused: bool,
    now: Millis,
) -> crate::sql::Result<bool> {
    crate::store::postgres::notify_changed(tx, SCHEDULES_CHANGED)?;
    Ok(tx
        .prepare_cached(tx.dialect_sql(
            "UPDATE schedules SET paused = ?2, updated_at = ?3,
                    last_tick = CASE WHEN ?2 = 1 THEN last_tick ELSE MAX(COALESCE(last_tick, 0), ?3) END
             WHERE name = ?1",
            "UPDATE schedules SET paused = ?2, updated_at = ?3,
                    last_tick = CASE WHEN ?2 = 1::BIGINT THEN last_tick ELSE GREATEST(COALESCE(last_tick, 0), ?3) END
             WHERE name = ?1",
        ))?
        .execute(params![name, paused, now])?
        == 1)
}

/// Takes tick `at` of `name`: moves its last tick there if it is later than the last one
/// taken and the schedule is enabled and not paused. `false` when this tick (or a later one)
/// was taken already — by a scheduler that fired twice, or another replica — or the schedule
/// was paused or disabled meanwhile.
///
/// # Errors
/// A database error.
pub fn take_tick(tx: &WriteTx<'_>, name: &str, at: Millis) -> crate::sql::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE schedules SET last_tick = ?2
             WHERE name = ?1 AND (last_tick IS NULL OR last_tick < ?2) AND enabled = 1 AND paused = 0",
        )?
        .execute(params![name, at])?
        == 1)
}
