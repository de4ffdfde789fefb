//! Cron on durable jobs.
//!
//! tokio-cron-scheduler only *ticks*. Each tick is one writer transaction that enqueues a job of
//! kind `cron.<name>` with idempotency key `cron:<name>:<tick time>` and records the run in
//! `cron_runs`, so:
//! - a tick that fires twice enqueues one job (the second finds the key, or the recorded tick);
//! - a tick that comes while the previous run of the same name is still queued or running is
//!   **skipped** and recorded as such (no overlap);
//! - at start, the latest tick missed while the process was down runs once (`catch_up`);
//! - with several replicas on one database, only the one holding the ticker lease
//!   ([`crate::store::leader`]) ticks; the one that takes it over runs the latest tick missed
//!   meanwhile, as at start;
//! - every run is recorded (scheduled time, start, end, outcome, rows affected, report, error).
//!
//! The scheduler has been reported to stop firing repeated jobs (its issue #113), so the last
//! tick of every schedule is kept in memory and [`Cron::overdue`] names the schedules overdue by
//! more than two periods: `/readyz` fails and `hookrelay_cron_overdue` rises.

pub mod routes;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Value, json};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::clock::{self, Millis};
use crate::config::Schedule;
use crate::jobs::periodic::{Periodic, TaskReport};
use crate::jobs::{self, DeadJob, JobKind, JobResult, JobRun, JobState, NewJob, Registry};
use crate::store::audit;
use crate::store::leader::Leader;
use crate::store::{Store, StoreError, WriteTx};
use store::{Run, last_ticks, latest_runs, recent_runs};

/// Prefix of the job kinds that run cron tasks: `cron.retention`, …
pub const KIND_PREFIX: &str = "cron.";
/// Attempts of one cron run (a transient failure is retried with backoff before the run fails).
pub const MAX_ATTEMPTS: u32 = 3;
/// Slack on top of two periods before a schedule counts as overdue.
const OVERDUE_SLACK: Duration = Duration::from_secs(2);
/// The longest one run of a task may take; a run that hangs fails then, so its schedule is
/// not blocked (every tick skipped) for longer.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Tries of one tick's write.
const TICK_ATTEMPTS: u32 = 3;
/// Runs shown with one cron entry.
pub const RUNS_SHOWN: usize = 20;

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler ticked.
    Schedule,
    /// At start, for the latest tick missed while the process was down.
    CatchUp,
    /// `POST /v1beta1/admin/cron/{name}/run`.
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::CatchUp => "catch_up",
            Self::Manual => "manual",
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticked {
    /// A job was enqueued and the run recorded as `queued`.
    Enqueued { run_id: i64, job_id: String },
    /// This tick was already taken (the scheduler fired twice): nothing was written.
    Duplicate,
    /// The previous run of this name is still queued or running: recorded as `skipped`.
    Skipped { run_id: i64, running_job: String },
}

/// The cron schedules, their ticker and their run records.
pub struct Cron {
    inner: Arc<Inner>,
    scheduler: tokio::sync::Mutex<Option<JobScheduler>>,
    /// Cancelled by [`Cron::stop`]: ends the watch for takeovers.
    stopped: tokio_util::sync::CancellationToken,
}

struct Inner {
    store: Store,
    schedules: BTreeMap<String, Schedule>,
    /// What each schedule's task does, for the admin views.
    descriptions: BTreeMap<String, &'static str>,
    /// Last tick seen per name (any outcome), or the time the ticker started.
    last_tick: Mutex<HashMap<String, Millis>>,
    /// Whether this process ticks (the only one on SQLite; the lease holder on PostgreSQL).
    leader: Arc<Leader>,
}

impl Cron {
    /// The schedules of the registered tasks (see [`schedules`]).
    #[must_use]
    pub fn new(
        store: Store,
        schedules: BTreeMap<String, Schedule>,
        periodic: &Periodic,
        leader: Arc<Leader>,
    ) -> Self {
        let descriptions = periodic
            .specs()
            .map(|s| (s.name.to_string(), s.describe))
            .collect();
        Self {
            inner: Arc::new(Inner {
                store,
                schedules,
                descriptions,
                last_tick: Mutex::default(),
                leader,
            }),
            scheduler: tokio::sync::Mutex::new(None),
            stopped: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Starts ticking, then runs the catch-up for ticks missed while the process was down.
    ///
    /// # Errors
    /// A storage error, or the scheduler failing to start.
    pub async fn start(&self) -> anyhow::Result<()> {
        let now = clock::now_ms();
        let scheduler = JobScheduler::new().await?;
        for (name, schedule) in &self.inner.schedules {
            let Schedule::Cron { expr, cron } = schedule else {
                continue;
            };
            let (inner, name, cron) = (Arc::clone(&self.inner), name.clone(), cron.clone());
            let job = Job::new_async(expr.as_str(), move |_id, _lock| {
                let (inner, name, cron) = (Arc::clone(&inner), name.clone(), cron.clone());
                Box::pin(async move {
                    // The scheduler fires at or after the tick: the tick is the latest one due.
                    let Some(at) = previous(&cron, clock::now_ms()) else {
                        return;
                    };
                    // Another replica ticks: this one only keeps its overdue watch quiet.
                    if !inner.leader.is_leader() {
                        inner.seen(&name, at);
                        return;
                    }
                    // A failed write (storage busy) is tried again; the tick's key keeps it single.
                    for attempt in 1..=TICK_ATTEMPTS {
                        match inner.tick(&name, at, Trigger::Schedule, None).await {
                            Ok(Ticked::Skipped { running_job, .. }) => {
                                tracing::warn!(
                                    cron = %name, job_id = %running_job,
                                    "cron tick skipped: the previous run is still queued or running"
                                );
                                return;
                            }
                            Ok(_) => return,
                            Err(e) if attempt < TICK_ATTEMPTS => {
                                tracing::warn!(cron = %name, error = %e, "cron tick failed; trying again");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            Err(e) => tracing::error!(cron = %name, error = %e, "cron tick failed"),
                        }
                    }
                })
            })?;
            scheduler.add(job).await?;
        }
        scheduler.start().await?;
        *self.scheduler.lock().await = Some(scheduler);
        for name in self.inner.schedules.keys() {
            self.inner.seen(name, now);
        }
        // A replica that takes the ticking over runs what was missed meanwhile (watched from
        // before the check below, so a takeover between the two is not lost).
        let mut leading = self.inner.leader.subscribe();
        leading.mark_unchanged();
        // After the ticker started, so no tick falls between the two; a double is deduplicated.
        if self.inner.leader.is_leader() {
            self.inner.catch_up().await?;
        }
        let (inner, stopped) = (Arc::clone(&self.inner), self.stopped.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => return,
                    changed = leading.changed() => if changed.is_err() { return },
                }
                if *leading.borrow_and_update()
                    && let Err(e) = inner.catch_up().await
                {
                    tracing::error!(error = %e, "catching up the ticks missed before this replica took over failed");
                }
            }
        });
        Ok(())
    }

    /// Whether this process ticks the crons and schedules and runs the sweeps.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.inner.leader.is_leader()
    }

    /// The built-in schedule names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.inner.schedules.keys()
    }

    /// Stops ticking (shutdown, and tests simulating a scheduler that stopped firing).
    pub async fn stop(&self) {
        self.stopped.cancel();
        if let Some(mut s) = self.scheduler.lock().await.take()
            && let Err(e) = s.shutdown().await
        {
            tracing::warn!(error = %e, "stopping the cron scheduler failed");
        }
    }

    /// One tick of `name` at `at` (what the scheduler does; public for tests).
    ///
    /// # Errors
    /// A storage error.
    pub async fn tick(
        &self,
        name: &str,
        at: Millis,
        trigger: Trigger,
    ) -> Result<Ticked, StoreError> {
        self.inner.tick(name, at, trigger, None).await
    }

    /// Runs `name` now (also when its schedule is `off`), audited as `actor`'s. `None` for an
    /// unknown name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn run_now(&self, name: &str, actor: &str) -> Result<Option<Ticked>, StoreError> {
        if !self.inner.schedules.contains_key(name) {
            return Ok(None);
        }
        self.inner
            .tick(name, clock::now_ms(), Trigger::Manual, Some(actor))
            .await
            .map(Some)
    }

    /// The schedules overdue by more than two periods: `(name, since when a tick is missing)`.
    #[must_use]
    pub fn overdue(&self, now: Millis) -> Vec<(String, Millis)> {
        let last = self
            .inner
            .last_tick
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (name, schedule) in &self.inner.schedules {
            let (Schedule::Cron { cron, .. }, Some(&seen)) = (schedule, last.get(name)) else {
                continue;
            };
            let mut due = Vec::with_capacity(3);
            let mut t = seen;
            while due.len() < 3 {
                match next(cron, t) {
                    Some(n) => {
                        due.push(n);
                        t = n;
                    }
                    None => break,
                }
            }
            if let (Some(&first), Some(&third)) = (due.first(), due.get(2))
                && clock::add(third, OVERDUE_SLACK) < now
            {
                out.push((name.clone(), first));
            }
        }
        out
    }

    /// Every schedule with its last run and next tick, for the API.
    ///
    /// # Errors
    /// A storage error.
    pub async fn list(&self) -> Result<Vec<Value>, StoreError> {
        let runs = self
            .inner
            .store
            .read(|c| latest_runs(c).map_err(StoreError::from))
            .await?;
        let now = clock::now_ms();
        let overdue: HashMap<String, Millis> = self.overdue(now).into_iter().collect();
        Ok(self
            .inner
            .schedules
            .iter()
            .map(|(name, schedule)| {
                self.entry(name, schedule, runs.get(name), overdue.get(name), now)
            })
            .collect())
    }

    /// One schedule with its recent runs; `None` for an unknown name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn get(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let Some(schedule) = self.inner.schedules.get(name) else {
            return Ok(None);
        };
        let owned = name.to_string();
        let runs = self
            .inner
            .store
            .read(move |c| recent_runs(c, &owned, RUNS_SHOWN).map_err(StoreError::from))
            .await?;
        let now = clock::now_ms();
        let overdue: HashMap<String, Millis> = self.overdue(now).into_iter().collect();
        let mut entry = self.entry(name, schedule, runs.first(), overdue.get(name), now);
        entry["runs"] = json!(runs);
        Ok(Some(entry))
    }

    fn entry(
        &self,
        name: &str,
        schedule: &Schedule,
        last: Option<&Run>,
        overdue_since: Option<&Millis>,
        now: Millis,
    ) -> Value {
        let next_run = match schedule {
            Schedule::Off => None,
            Schedule::Cron { cron, .. } => next(cron, now),
        };
        json!({
            "name": name,
            "schedule": schedule.as_str(),
            "enabled": !matches!(schedule, Schedule::Off),
            "description": self.inner.descriptions.get(name).copied().unwrap_or_default(),
            "last_run": last,
            "next_run_at": next_run.map(clock::to_rfc3339),
            "overdue": overdue_since.is_some(),
            "overdue_since": overdue_since.map(|t| clock::to_rfc3339(*t)),
        })
    }
}

impl Inner {
    /// For every schedule that ticked before, the latest tick since its last recorded one, run
    /// once (a fresh install starts on the next tick).
    async fn catch_up(&self) -> Result<(), StoreError> {
        let now = clock::now_ms();
        let recorded = self
            .store
            .read(|c| last_ticks(c).map_err(StoreError::from))
            .await?;
        for (name, schedule) in &self.schedules {
            let Schedule::Cron { cron, .. } = schedule else {
                continue;
            };
            let Some(last) = recorded.get(name).copied() else {
                continue;
            };
            if let Some(missed) = previous(cron, now).filter(|m| *m > last) {
                match self.tick(name, missed, Trigger::CatchUp, None).await {
                    Ok(t) => {
                        tracing::info!(cron = %name, tick = %clock::to_rfc3339(missed), outcome = ?t, "ran a tick missed while no process ticked");
                    }
                    Err(e) => {
                        tracing::error!(cron = %name, error = %e, "catching up a missed tick failed");
                    }
                }
            }
        }
        Ok(())
    }

    fn seen(&self, name: &str, at: Millis) {
        let mut last = self
            .last_tick
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let e = last.entry(name.to_string()).or_insert(at);
        *e = (*e).max(at);
    }

    async fn tick(
        &self,
        name: &str,
        at: Millis,
        trigger: Trigger,
        actor: Option<&str>,
    ) -> Result<Ticked, StoreError> {
        let owned = name.to_string();
        let actor = actor.map(str::to_string);
        let ticked = self
            .store
            .writer()
            .write_wait(move |tx| {
                let ticked = tick(tx, &owned, at, trigger)?;
                if let (Some(actor), Ticked::Enqueued { job_id, .. }) = (&actor, &ticked) {
                    audit::record(
                        tx,
                        &audit::Entry {
                            actor,
                            action: "cron.run",
                            target_type: Some("cron"),
                            target_id: Some(&owned),
                            detail: json!({"job_id": job_id}),
                        },
                    )?;
                }
                Ok::<_, StoreError>(ticked)
            })
            .await?;
        // A tick counts as seen when it started a run (or was already taken). Skipped ticks do
        // not: a run that hangs then shows up as an overdue schedule.
        if trigger != Trigger::Manual && !matches!(ticked, Ticked::Skipped { .. }) {
            self.seen(name, at);
        }
        if let Ticked::Skipped { .. } = ticked {
            crate::counters::cron_run(name, "skipped");
        }
        Ok(ticked)
    }
}

/// The tick transaction.
fn tick(tx: &WriteTx<'_>, name: &str, at: Millis, trigger: Trigger) -> Result<Ticked, StoreError> {
    let now = clock::now_ms();
    if trigger != Trigger::Manual && store::tick_taken(tx, name, at)? {
        return Ok(Ticked::Duplicate);
    }
    if let Some(running_job) = active_job(tx, name)? {
        let run_id = store::insert_skipped(
            tx,
            name,
            at,
            trigger.as_str(),
            &format!("skipped: the previous run (job {running_job}) is still queued or running"),
            now,
        )?;
        return Ok(Ticked::Skipped {
            run_id,
            running_job,
        });
    }
    let key = match trigger {
        Trigger::Manual => format!("cron:{name}:manual:{}", clock::to_rfc3339(at)),
        Trigger::Schedule | Trigger::CatchUp => format!("cron:{name}:{}", clock::to_rfc3339(at)),
    };
    let job = NewJob::new(
        format!("{KIND_PREFIX}{name}"),
        json!({"name": name, "scheduled_at": clock::to_rfc3339(at), "trigger": trigger.as_str()}),
    )
    .idempotency_key(key)
    .max_attempts(MAX_ATTEMPTS);
    let enqueued = jobs::enqueue(tx, &job)?;
    if !enqueued.created {
        return Ok(Ticked::Duplicate);
    }
    let run_id = store::insert_queued(tx, name, at, trigger.as_str(), &enqueued.id, now)?;
    Ok(Ticked::Enqueued {
        run_id,
        job_id: enqueued.id,
    })
}

/// The job of a queued or running run of `name`, if its job is still live. A run whose job
/// ended without recording (cancelled by an operator) is closed here.
fn active_job(tx: &WriteTx<'_>, name: &str) -> crate::sql::Result<Option<String>> {
    let open = store::open_runs(tx, name)?;
    let mut live = None;
    for (run_id, job_id) in open {
        let state = jobs::queue::state_of(tx, &job_id)?;
        match state {
            Some(JobState::Queued | JobState::Running | JobState::Retrying) => live = Some(job_id),
            other => {
                let why = match other {
                    Some(JobState::Cancelled) => "the job was cancelled",
                    None => "the job no longer exists",
                    Some(_) => "the job ended without recording the run",
                };
                store::fail_run(tx, run_id, why, clock::now_ms())?;
            }
        }
    }
    Ok(live)
}

/// `ms` as a time, in whole seconds (croner keeps sub-seconds; ticks are on whole seconds).
fn to_datetime(ms: Millis) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(ms.div_euclid(1000), 0).single()
}

/// The latest occurrence at or before `at`.
fn previous(cron: &croner::Cron, at: Millis) -> Option<Millis> {
    cron.find_previous_occurrence(&to_datetime(at)?, true)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The first occurrence after `at`.
fn next(cron: &croner::Cron, at: Millis) -> Option<Millis> {
    cron.find_next_occurrence(&to_datetime(at)?, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

// ---------------------------------------------------------------------------------------------
// The jobs that run the tasks
// ---------------------------------------------------------------------------------------------

/// Every registered task's schedule: what `[cron]` configures, else the task's default.
///
/// # Errors
/// A `cron.<name>` that names no registered task (with the list of tasks), or a default that
/// does not parse (a programming error).
pub fn schedules(
    configured: &BTreeMap<String, Schedule>,
    periodic: &Periodic,
) -> Result<BTreeMap<String, Schedule>, String> {
    if let Some(unknown) = configured.keys().find(|n| periodic.spec(n).is_none()) {
        let known: Vec<&str> = periodic.specs().map(|s| s.name).collect();
        return Err(format!(
            "`cron.{unknown}` is not a cron task; the tasks are {}",
            known.join(", ")
        ));
    }
    periodic
        .specs()
        .map(|spec| {
            let schedule = match configured.get(spec.name) {
                Some(s) => s.clone(),
                None => crate::config::parse_schedule(spec.default_schedule)
                    .map_err(|e| format!("the default schedule of {}: {e}", spec.name))?,
            };
            Ok((spec.name.to_string(), schedule))
        })
        .collect()
}

/// Registers one job kind per registered task (`cron.<name>`), run by `periodic`.
pub fn register(registry: &mut Registry, store: &Store, periodic: &Arc<Periodic>) {
    for spec in periodic.specs() {
        let (p, store, name) = (Arc::clone(periodic), store.clone(), spec.name);
        registry.register(JobKind {
            name: spec.kind,
            handler: Arc::new(move |job| {
                let (p, store) = (Arc::clone(&p), store.clone());
                Box::pin(async move { run_job(&store, &p, name, job).await })
            }),
            max_attempts: MAX_ATTEMPTS,
            operator_enqueueable: None,
            managed_by: Some("POST /v1beta1/admin/cron/{name}/run"),
            on_dead: Some(Arc::new(on_dead)),
        });
    }
}

async fn run_job(store: &Store, periodic: &Periodic, name: &'static str, job: JobRun) -> JobResult {
    let started = clock::now_ms();
    let job_id = job.id.clone();
    let marked = store
        .writer()
        .write_wait(move |tx| Ok::<_, StoreError>(store::mark_running(tx, &job_id, started)?))
        .await;
    if let Err(e) = marked {
        return JobResult::retry(format!(
            "recording the start of cron run {name} failed: {e}"
        ));
    }
    let result = match tokio::time::timeout(TASK_TIMEOUT, periodic.run(name)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the run did not finish within {}",
            humantime::format_duration(TASK_TIMEOUT)
        )),
    };
    let job_id = job.id.clone();
    match result {
        Ok(report) => {
            crate::counters::cron_run(name, "succeeded");
            // A run that changed nothing (the lease reaper every 15 s, mostly) is not news.
            if report.rows_affected > 0 {
                tracing::info!(
                    cron = name,
                    rows_affected = report.rows_affected,
                    "cron run finished"
                );
            } else {
                tracing::debug!(cron = name, "cron run finished; nothing to do");
            }
            JobResult::succeeded()
                .with_write(Box::new(move |tx| finish_run(tx, &job_id, Ok(&report))))
        }
        Err(error) if job.is_last_attempt() => {
            crate::counters::cron_run(name, "failed");
            tracing::error!(cron = name, %error, "cron run failed");
            let recorded = error.clone();
            JobResult::fail(error)
                .with_write(Box::new(move |tx| finish_run(tx, &job_id, Err(&recorded))))
        }
        Err(error) => {
            tracing::warn!(cron = name, %error, "cron run failed; retrying");
            let recorded = error.clone();
            JobResult::retry(error).with_write(Box::new(move |tx| {
                store::note_error(tx, &job_id, &recorded)
            }))
        }
    }
}

fn finish_run(
    tx: &WriteTx<'_>,
    job_id: &str,
    result: Result<&TaskReport, &String>,
) -> crate::sql::Result<()> {
    let now = clock::now_ms();
    match result {
        Ok(r) => store::finish(
            tx,
            job_id,
            Some(r.rows_affected),
            Some(&r.detail),
            None,
            now,
        ),
        Err(e) => store::finish(tx, job_id, None, None, Some(e.as_str()), now),
    }
}

/// A cron job died without recording its run (its lease ran out on the last attempt): close it.
fn on_dead(tx: &WriteTx<'_>, dead: &DeadJob) -> crate::sql::Result<()> {
    store::close_dead(tx, &dead.id, &dead.error, clock::now_ms())
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 4,
        sql: include_str!("migrations/0004_cron_runs.sql"),
    },
    crate::store::Migration {
        version: 8,
        sql: include_str!("migrations/0008_checks.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_cron_runs.sql"),
}];
