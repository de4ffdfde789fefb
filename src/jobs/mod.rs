//! The durable job queue.
//!
//! A job is a row in `jobs`: `queued → running → succeeded`, or `running → retrying → running …`
//! ending `dead` when out of attempts; an operator may `cancel` it. Work is enqueued with
//! [`enqueue`] *inside the caller's write transaction* (transactional outbox), so a request's data
//! and the job that processes it commit together. Workers ([`worker::Dispatcher`]) claim due jobs
//! in batches with a lease, extend the lease while the handler runs, and record the outcome — plus
//! whatever the handler asked to write — in one transaction. A lease that runs out puts the job
//! back. A job out of attempts goes to the one error handler ([`on_dead`]): log, audit record, and
//! the hooks capabilities register (e.g. publishing `system.job.dead`).
//!
//! This module must never run a handler inside a write transaction, or let a handler's write
//! land for a claim it no longer holds (every transition checks `state = 'running'` and the
//! attempt number of the claim).

pub mod backoff;
pub mod handoff;
pub mod noop;
pub mod periodic;
pub mod queue;
pub mod reaper;
pub mod routes;
pub mod worker;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

pub use handoff::Handoff;
pub use queue::{
    PARKED_RUN_AT, cancel, enqueue, get, list, next_due, oldest_due_wait, parked, requeue, unpark,
};

use crate::clock::Millis;
use crate::store::WriteTx;
use crate::store::audit;

/// Attempts a job gets unless its kind or the caller says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// The most attempts a job may be given.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The name stored in the database and shown on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or requested state name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// When it may run first; `None` = now.
    pub run_at: Option<Millis>,
    /// At most one job per key exists; enqueueing an existing key returns that job instead.
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
}

impl NewJob {
    /// A job of `kind` that may run now, with the default number of attempts.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            run_at: None,
            idempotency_key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the earliest run time.
    #[must_use]
    pub fn run_at(mut self, at: Millis) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the number of attempts.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.clamp(1, MAX_ATTEMPTS_LIMIT);
        self
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// `false` when the idempotency key named an existing job, which is returned instead.
    pub created: bool,
}

/// A job as stored, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    pub last_error: Option<String>,
    pub run_at: String,
    pub lease_until: Option<String>,
    pub lease_owner: Option<String>,
    /// What a parked job waits for (e.g. the webhook id of a busy endpoint); its `run_at` is
    /// then far ahead until that wakes it.
    pub parked_on: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

/// Filters for [`list`].
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Only jobs with an id below this one (the page cursor).
    pub before: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Handlers and the registry
// ---------------------------------------------------------------------------------------------

/// A claimed job, as its handler sees it.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Which claim this run is (`claim_seq`): every outcome is recorded only for this claim.
    pub claim: i64,
    /// What the enqueuer handed along in memory, on a run handed off at once
    /// ([`Handoff::enqueue_with`]); `None` on a run claimed from the table.
    pub memo: Option<Memo>,
}

/// A value handed to a job's handler in memory with its run, so that it need not read back
/// what the enqueuing transaction just wrote. Only a shortcut: the handler reads the table
/// when there is none (a run after a restart, a retry, a replay).
///
/// Made by [`Memo::bounded`], which carries data only up to [`MEMO_MAX_BYTES`]: up to
/// [`worker::HANDOFF_AHEAD`] runs may wait in memory with theirs.
#[derive(Clone)]
pub struct Memo(Arc<dyn std::any::Any + Send + Sync>);

/// The largest body a [`Memo`] carries; a larger one is read back by its handler. Bounds the
/// memory of the runs waiting in memory to about 1,024 × 64 KiB = 64 MiB, whatever
/// `max_body_bytes` is.
pub const MEMO_MAX_BYTES: usize = 64 * 1024;

impl Memo {
    /// A memo of `make()`, whose body is `bytes` long; none when that is over
    /// [`MEMO_MAX_BYTES`] (the handler then reads the data back).
    #[must_use]
    pub fn bounded<T: std::any::Any + Send + Sync>(
        bytes: usize,
        make: impl FnOnce() -> T,
    ) -> Option<Self> {
        (bytes <= MEMO_MAX_BYTES).then(|| Self(Arc::new(make())))
    }

    /// The value, if it is a `T`.
    #[must_use]
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo(..)")
    }
}

impl JobRun {
    /// Whether a failure now would make the job dead.
    #[must_use]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// A write that lands in the same transaction as the job's outcome, and only if the claim is
/// still held.
pub type OutcomeWrite = Box<OutcomeWriteFn>;

/// The function of an [`OutcomeWrite`]: `Fn`, as the writer may run a command twice.
pub type OutcomeWriteFn = dyn Fn(&WriteTx<'_>) -> crate::sql::Result<()> + Send;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Failed; try again after `after` (default: [`backoff::backoff`]) if attempts remain,
    /// else dead.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Failed in a way retrying cannot fix: dead now.
    Fail { error: String },
    /// Not failed, not done: run again at `at` without spending an attempt (rate limits).
    RunAgainAt { at: Millis, reason: String },
    /// Not failed, not done, and nothing to do until something else happens: park the job on
    /// `on` (e.g. a busy endpoint) without spending an attempt. It is not due again until
    /// [`unpark`] wakes it — a parked backlog costs no writes while it waits.
    Park { on: String, reason: String },
}

/// A handler's answer: the outcome, and optionally a write to commit with it.
pub struct JobResult {
    pub outcome: Outcome,
    pub write: Option<OutcomeWrite>,
}

impl JobResult {
    /// Succeeded, nothing else to write.
    #[must_use]
    pub fn succeeded() -> Self {
        Self::from(Outcome::Succeeded)
    }

    /// Retry with the default backoff.
    pub fn retry(error: impl Into<String>) -> Self {
        Self::from(Outcome::Retry {
            error: error.into(),
            after: None,
        })
    }

    /// Dead now.
    pub fn fail(error: impl Into<String>) -> Self {
        Self::from(Outcome::Fail {
            error: error.into(),
        })
    }

    /// Attaches a write committed with the outcome.
    #[must_use]
    pub fn with_write(mut self, write: OutcomeWrite) -> Self {
        self.write = Some(write);
        self
    }
}

impl From<Outcome> for JobResult {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            write: None,
        }
    }
}

/// Runs one job.
pub type HandlerFn = Arc<dyn Fn(JobRun) -> BoxFuture<'static, JobResult> + Send + Sync>;
/// Runs inside the transaction that makes a job of this kind dead.
pub type DeadHookFn = Arc<dyn Fn(&WriteTx<'_>, &DeadJob) -> crate::sql::Result<()> + Send + Sync>;
/// Checks an operator-supplied payload before it is enqueued.
pub type ValidateFn = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// A job kind: its handler and how it may be used.
#[derive(Clone)]
pub struct JobKind {
    pub name: &'static str,
    pub handler: HandlerFn,
    /// Attempts for jobs of this kind when the enqueuer does not say.
    pub max_attempts: u32,
    /// Whether `POST /v1beta1/admin/jobs` may enqueue it; its payload is then checked by
    /// `validate`.
    pub operator_enqueueable: Option<ValidateFn>,
    /// Kind-specific effects of death (e.g. marking an inbound event failed).
    pub on_dead: Option<DeadHookFn>,
    /// For jobs that carry another record's state (a delivery, an inbound event): where to
    /// retry or cancel that record instead. The jobs API refuses to change such jobs directly,
    /// which would leave the record out of step.
    pub managed_by: Option<&'static str>,
}

/// A job that has just become dead.
#[derive(Debug, Clone)]
pub struct DeadJob {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    pub attempt: u32,
    pub error: String,
}

/// Every known job kind, plus hooks that run for every dead job.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, JobKind>,
    dead_hooks: Vec<DeadHookFn>,
}

impl Registry {
    /// A registry with the built-in diagnostic kind `system.noop`.
    #[must_use]
    pub fn with_builtins() -> Self {
        let mut r = Self::default();
        r.register(noop::kind());
        r
    }

    /// Adds a kind.
    ///
    /// # Panics
    /// When a kind of that name is already registered (a programming error caught at start).
    pub fn register(&mut self, kind: JobKind) {
        let name = kind.name;
        assert!(
            self.kinds.insert(name, kind).is_none(),
            "job kind {name} registered twice"
        );
    }

    /// Adds a hook run for every job that becomes dead, inside that transaction.
    pub fn on_any_dead(&mut self, hook: DeadHookFn) {
        self.dead_hooks.push(hook);
    }

    /// The kind called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&JobKind> {
        self.kinds.get(name)
    }

    /// Every registered kind's name.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.kinds.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// `(kind, where to act instead)` for kinds whose jobs the jobs API must not change.
    #[must_use]
    pub fn managed_kinds(&self) -> Vec<(&'static str, &'static str)> {
        self.kinds
            .values()
            .filter_map(|k| k.managed_by.map(|via| (k.name, via)))
            .collect()
    }

    /// Names of the kinds an operator may enqueue.
    #[must_use]
    pub fn operator_kinds(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .kinds
            .values()
            .filter(|k| k.operator_enqueueable.is_some())
            .map(|k| k.name)
            .collect();
        v.sort_unstable();
        v
    }
}

/// The one error handler: runs in the transaction that made `job` dead. Writes an audit record,
/// then the kind's own hook and every registered hook. If any of them fails, their changes are
/// rolled back and the failure is logged: the job is dead either way, so one broken hook can
/// never wedge the queue. The "job is dead" log line is written by the caller after the commit.
///
/// # Errors
/// Only if the savepoint around the hooks cannot be managed (the transaction is then broken).
pub fn on_dead(tx: &WriteTx<'_>, registry: &Registry, job: &DeadJob) -> crate::sql::Result<()> {
    tx.execute_batch("SAVEPOINT dead_hooks")?;
    match run_dead_hooks(tx, registry, job) {
        Ok(()) => tx.execute_batch("RELEASE dead_hooks"),
        Err(e) => {
            tracing::error!(job_id = %job.id, kind = %job.kind, error = %e,
                "the dead-job handler failed; the job is dead without its audit record and hooks");
            tx.execute_batch("ROLLBACK TO dead_hooks; RELEASE dead_hooks")
        }
    }
}

fn run_dead_hooks(tx: &WriteTx<'_>, registry: &Registry, job: &DeadJob) -> crate::sql::Result<()> {
    audit::record(
        tx,
        &audit::Entry {
            actor: "system",
            action: "job.dead",
            target_type: Some("job"),
            target_id: Some(&job.id),
            detail: serde_json::json!({
                "kind": job.kind,
                "attempts": job.attempt,
                "error": job.error,
            }),
        },
    )?;
    if let Some(hook) = registry.get(&job.kind).and_then(|k| k.on_dead.as_ref()) {
        hook(tx, job)?;
    }
    for hook in &registry.dead_hooks {
        hook(tx, job)?;
    }
    Ok(())
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 1,
        sql: include_str!("migrations/0001_jobs.sql"),
    },
    crate::store::Migration {
        version: 5,
        sql: include_str!("migrations/0005_parked.sql"),
    },
    crate::store::Migration {
        version: 8,
        sql: include_str!("migrations/0008_checks.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_jobs.sql"),
}];
