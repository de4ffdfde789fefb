//! Job workers: the dispatcher claims due jobs with a lease and runs up to `jobs.workers` of them
//! at once; each outcome is recorded in one transaction with the handler's own write.
//!
//! The dispatcher sleeps until something can be done — woken after any commit that enqueued or
//! rescheduled a job, when a worker slot frees, or when the next job becomes due — with a slow
//! poll only as a safety net. While jobs run, their leases are extended in one write every third
//! of the lease. On shutdown it stops claiming, lets running jobs finish within the grace period,
//! and gives the leases of the rest back (their attempt is not counted).

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{DeadJob, JobResult, JobRun, Outcome, Registry, backoff, on_dead, queue};
use crate::clock::{self, Millis};
use crate::store::{Store, StoreError, WriteTx};

/// The longest the dispatcher sleeps without checking for due jobs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Most jobs claimed in one statement.
pub const CLAIM_BATCH: usize = 64;
/// Wait after a failed claim before trying again.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Liveness of the dispatcher, read by `/readyz` and metrics.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    running: AtomicBool,
    /// `jobs.workers = 0`: no jobs run in this process.
    off: AtomicBool,
    heartbeat_ms: AtomicI64,
    in_flight: AtomicUsize,
    /// When the longest-waiting job this dispatcher holds in memory (claimed or handed off, not
    /// started) arrived; 0 when none waits.
    waiting_since_ms: AtomicI64,
}

impl WorkerHealth {
    /// Whether the dispatcher is running and looked around recently.
    #[must_use]
    pub fn is_alive(&self, now: Millis) -> bool {
        let stale_after = i64::try_from(POLL_INTERVAL.as_millis() * 5).unwrap_or(i64::MAX);
        self.running.load(Ordering::SeqCst)
            && now - self.heartbeat_ms.load(Ordering::SeqCst) < stale_after
    }

    /// Whether this process runs no jobs (`jobs.workers = 0`).
    #[must_use]
    pub fn is_off(&self) -> bool {
        self.off.load(Ordering::SeqCst)
    }

    /// Jobs running right now (claimed jobs waiting for a worker are not counted).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How long the longest-waiting job held in memory (claimed or handed off, its row
    /// `running`, not yet started) has waited: the database's queue lag does not see these.
    #[must_use]
    pub fn memory_wait(&self, now: Millis) -> Duration {
        match self.waiting_since_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(u64::try_from(now - since).unwrap_or(0)),
        }
    }

    fn beat(&self) {
        self.heartbeat_ms.store(clock::now_ms(), Ordering::SeqCst);
    }
}

/// Jobs held in memory waiting for a worker, in two lanes: those claimed from the database and
/// those handed off by this process. Workers take from the two in turn, so a burst handed off
/// cannot hold back what the database has due (retries, scheduled and other processes' jobs),
/// nor the other way round.
#[derive(Default)]
struct Ready {
    claimed: VecDeque<(Millis, JobRun)>,
    handed: VecDeque<(Millis, JobRun)>,
    /// Which lane goes first next time.
    handed_next: bool,
}

impl Ready {
    fn is_empty(&self) -> bool {
        self.claimed.is_empty() && self.handed.is_empty()
    }

    /// The next job, with when it began to wait.
    fn pop(&mut self) -> Option<(Millis, JobRun)> {
        let first_handed = self.handed_next;
        self.handed_next = !self.handed_next;
        let (first, second) = if first_handed {
            (&mut self.handed, &mut self.claimed)
        } else {
            (&mut self.claimed, &mut self.handed)
        };
        first.pop_front().or_else(|| second.pop_front())
    }

    /// When the longest-waiting job arrived; 0 when none waits.
    fn waiting_since(&self) -> Millis {
        [self.claimed.front(), self.handed.front()]
            .into_iter()
            .flatten()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or(0)
    }
}

/// Claims and runs jobs.
pub struct Dispatcher {
    store: Store,
    registry: Arc<Registry>,
    workers: usize,
    lease: Duration,
    wake: Arc<Notify>,
    /// Written to `lease_owner`, so an operator can tell which process holds a job.
    instance: String,
    health: Arc<WorkerHealth>,
    /// Jobs this process enqueued already claimed for it.
    handoff: Option<super::handoff::Receiver>,
}

/// Most jobs handed off and waiting in memory for a worker. A burst the workers cannot keep up
/// with waits here, its rows already `running` under this process's lease, instead of being
/// queued and then claimed and read back one by one (two more statements per job); beyond it,
/// jobs are queued as usual. Jobs claimed from the database wait in a lane of their own, so
/// this never holds them back. Memory stays bounded: a memo (the data a handler would read
/// back) rides along only up to [`super::MEMO_MAX_BYTES`].
pub const HANDOFF_AHEAD: usize = 1024;

/// A job that waited in memory at least this long (ms) is checked before it starts: one
/// cancelled (or taken back) while it waited is not run. A cancel in the last moment before a
/// job starts is like one while it runs: the job runs and its result is discarded.
pub const RECHECK_AFTER_MS: Millis = 1_000;

/// A `lease_owner` for a new dispatcher: the process id and a random part.
#[must_use]
pub fn new_instance() -> String {
    format!("{}:{}", std::process::id(), ulid::Ulid::generate())
}

/// The claims this dispatcher holds: `(job id, claim_seq)`.
type Claims = Arc<Mutex<HashSet<(String, i64)>>>;

impl Dispatcher {
    /// A dispatcher over `store` running `registry`'s handlers. `wake` must be the notifier the
    /// store's writer signals after commits that enqueue jobs.
    #[must_use]
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        workers: usize,
        lease: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            registry,
            workers,
            lease,
            wake,
            instance: new_instance(),
            health: Arc::new(WorkerHealth::default()),
            handoff: None,
        }
    }

    /// Takes the jobs this process hands off (see [`super::Handoff`]); claims are then leased
    /// to the hand-off's owner.
    #[must_use]
    pub fn with_handoff(mut self, receiver: super::handoff::Receiver) -> Self {
        self.instance = receiver.handoff.owner().to_string();
        self.handoff = Some(receiver);
        self
    }

    /// The health this dispatcher reports.
    #[must_use]
    pub fn health(&self) -> Arc<WorkerHealth> {
        Arc::clone(&self.health)
    }

    /// Runs until `stop` is cancelled, then finishes or releases running jobs within `grace`.
    pub async fn run(mut self, stop: CancellationToken, grace: Duration) {
        self.health.running.store(true, Ordering::SeqCst);
        let mut handoff = self.handoff.take();
        if self.workers == 0 {
            // Ingest only: claim nothing, stay alive for /readyz until stopped.
            self.health.off.store(true, Ordering::SeqCst);
            tracing::warn!("jobs.workers = 0: this process runs no jobs; queued jobs wait");
            loop {
                self.health.beat();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
            self.health.running.store(false, Ordering::SeqCst);
            return;
        }
        let slots = Arc::new(Semaphore::new(self.workers));
        let slot_freed = Arc::new(Notify::new());
        let claims: Claims = Arc::default();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut extend = tokio::time::interval(self.lease / 3);
        extend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        extend.tick().await;

        // Claimed jobs waiting for a free worker. Claims run ahead of the workers (up to
        // `max(workers, 2 × CLAIM_BATCH)` jobs): while one claim commits, the workers run what
        // earlier ones brought, so a worker that frees up never waits for a commit round trip.
        // Claimed jobs hold a lease that is extended like a running job's.
        let mut ready = Ready::default();
        let mut claiming: Option<JoinHandle<Result<Vec<JobRun>, StoreError>>> = None;
        let mut want = 0;
        // Whether due jobs may be waiting: after a wake-up, a timer, or a full claim.
        let mut maybe_due = true;
        // After a failed claim, no new claim before this time (a fixed deadline, so that
        // wake-ups cannot keep pushing the retry back).
        let mut claim_blocked_until: Option<tokio::time::Instant> = None;

        loop {
            self.health.beat();
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "job task ended abnormally");
                }
            }
            while !ready.is_empty() {
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    break;
                };
                let Some((since, job)) = ready.pop() else {
                    break;
                };
                self.health.in_flight.fetch_add(1, Ordering::Relaxed);
                let run = RunOne {
                    store: self.store.clone(),
                    registry: Arc::clone(&self.registry),
                    claims: Arc::clone(&claims),
                    slot_freed: Arc::clone(&slot_freed),
                    health: Arc::clone(&self.health),
                };
                tasks.spawn(run.run(job, since, permit));
            }
            if claim_blocked_until.is_some_and(|t| tokio::time::Instant::now() >= t) {
                claim_blocked_until = None;
                maybe_due = true;
            }
            self.health
                .waiting_since_ms
                .store(ready.waiting_since(), Ordering::Relaxed);
            let running = self.workers - slots.available_permits();
            let ahead = self.workers.max(2 * CLAIM_BATCH);
            // Claims fill their own lane; what is handed off does not count against them.
            let room = (self.workers + ahead).saturating_sub(running + ready.claimed.len());
            if let Some(h) = &handoff {
                h.handoff
                    .set_budget(HANDOFF_AHEAD.saturating_sub(ready.handed.len()));
            }
            if claiming.is_none()
                && maybe_due
                && claim_blocked_until.is_none()
                && ready.claimed.len() < ahead
                && room > 0
            {
                want = room.min(CLAIM_BATCH);
                let (store, lease, owner) = (self.store.clone(), self.lease, self.instance.clone());
                claiming = Some(tokio::spawn(async move {
                    claim(&store, want, lease, &owner).await
                }));
            }
            let wait = if let Some(t) = claim_blocked_until {
                t.saturating_duration_since(tokio::time::Instant::now())
            } else if claiming.is_some() || room == 0 || ready.claimed.len() >= ahead {
                POLL_INTERVAL
            } else {
                // Nothing was due at the last claim: sleep until the next job is.
                self.until_next_due().await
            };
            tokio::select! {
                () = stop.cancelled() => break,
                claimed = async { claiming.as_mut().expect("guarded").await }, if claiming.is_some() => {
                    claiming = None;
                    match claimed {
                        Ok(Ok(jobs)) => {
                            maybe_due = jobs.len() == want;
                            if let Ok(mut c) = claims.lock() {
                                c.extend(jobs.iter().map(|j| (j.id.clone(), j.claim)));
                            }
                            let now = clock::now_ms();
                            ready.claimed.extend(jobs.into_iter().map(|j| (now, j)));
                        }
                        Ok(Err(e)) => {
                            claim_blocked_until = Some(tokio::time::Instant::now() + CLAIM_ERROR_BACKOFF);
                            tracing::warn!(error = %e, "claiming jobs failed; retrying shortly");
                        }
                        Err(e) => {
                            claim_blocked_until = Some(tokio::time::Instant::now() + CLAIM_ERROR_BACKOFF);
                            tracing::error!(error = %e, "the claim task failed");
                        }
                    }
                }
                () = self.wake.notified() => maybe_due = true,
                Some(job) = async { handoff.as_mut().expect("guarded").rx.recv().await }, if handoff.is_some() => {
                    let now = clock::now_ms();
                    // This one and what else arrived in the same commit.
                    let mut next = Some(job);
                    while let Some(job) = next {
                        if let Ok(mut c) = claims.lock() {
                            c.insert((job.id.clone(), job.claim));
                        }
                        ready.handed.push_back((now, job));
                        next = handoff.as_mut().and_then(|h| h.rx.try_recv().ok());
                    }
                }
                () = slot_freed.notified() => {}
                () = tokio::time::sleep(wait), if claiming.is_none() => maybe_due = true,
                _ = extend.tick() => extend_leases(&self.store, &claims, self.lease).await,
            }
        }
        // A claim still in flight: its jobs are held by us, so they must be released below.
        if let Some(pending) = claiming.take()
            && let Ok(Ok(jobs)) = pending.await
            && let Ok(mut c) = claims.lock()
        {
            c.extend(jobs.iter().map(|j| (j.id.clone(), j.claim)));
        }
        // Jobs handed off but not yet taken are ours too: released with the rest. (One committed
        // after this is taken back at the next start, like any job left running.)
        if let Some(mut h) = handoff.take() {
            h.handoff.set_budget(0);
            if let Ok(mut c) = claims.lock() {
                while let Ok(job) = h.rx.try_recv() {
                    c.insert((job.id, job.claim));
                }
            }
        }
        // Jobs claimed but never started are released with the unfinished ones.
        drop(ready);

        tracing::info!(
            running = self.health.in_flight(),
            grace = %humantime::format_duration(grace),
            "job workers stopping; letting running jobs finish"
        );
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = tokio::time::sleep_until(deadline) => break,
                _ = extend.tick() => extend_leases(&self.store, &claims, self.lease).await,
            }
        }
        if !tasks.is_empty() {
            tracing::warn!(
                unfinished = tasks.len(),
                "grace period over; releasing the leases of unfinished jobs"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let unfinished: Vec<(String, i64)> = claims
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        if !unfinished.is_empty() {
            match release(&self.store, unfinished).await {
                Ok(n) => tracing::info!(
                    released = n,
                    "leases released; these jobs run again at next start"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "releasing leases failed; they expire on their own")
                }
            }
        }
        self.health.running.store(false, Ordering::SeqCst);
    }

    async fn until_next_due(&self) -> Duration {
        match self
            .store
            .read(|c| super::next_due(c).map_err(StoreError::from))
            .await
        {
            Ok(Some(at)) => {
                let ms = u64::try_from(at - clock::now_ms()).unwrap_or(0).max(1);
                Duration::from_millis(ms).min(POLL_INTERVAL)
            }
            Ok(None) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next due job failed");
                CLAIM_ERROR_BACKOFF
            }
        }
    }
}

/// Everything one job run needs after the dispatcher handed it off.
struct RunOne {
    store: Store,
    registry: Arc<Registry>,
    claims: Claims,
    slot_freed: Arc<Notify>,
    health: Arc<WorkerHealth>,
}

impl RunOne {
    async fn run(self, job: JobRun, since: Millis, permit: tokio::sync::OwnedSemaphorePermit) {
        let span =
            tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempt);
        async move {
            if clock::now_ms() - since >= RECHECK_AFTER_MS && !self.still_held(&job).await {
                tracing::info!("cancelled or taken back while it waited for a worker; not run");
                crate::counters::job_finished(&job.kind, "claim_lost");
                drop(permit);
                self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.slot_freed.notify_one();
                self.forget(&job);
                return;
            }
            let kind = self.registry.get(&job.kind).cloned();
            let result = match kind {
                // Catch a panic both while the handler builds its future and while it runs.
                Some(k) => match std::panic::catch_unwind(AssertUnwindSafe(|| (k.handler)(job.clone()))) {
                    Ok(fut) => AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| JobResult::retry("the job handler panicked")),
                    Err(_) => JobResult::retry("the job handler panicked"),
                },
                None => JobResult::fail(format!(
                    "unknown job kind `{}`: no handler is registered for it in this version",
                    job.kind
                )),
            };
            let committed = self.record(&job, result).await;
            drop(permit);
            self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.slot_freed.notify_one();
            let outcome = match committed {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(recorded) => recorded.log(&job),
                Err(StoreError::Query(e)) => {
                    // The handler's own write failed and was rolled back: record a retry
                    // without it, so the job is not stuck until its lease runs out.
                    tracing::error!(error = %e, "the job's write failed; recording a retry instead");
                    let fallback = JobResult::retry(format!("recording the job's result failed: {e}"));
                    match self.record(&job, fallback).await {
                        Ok(pending) => match pending.await {
                            Ok(recorded) => recorded.log(&job),
                            Err(e) => tracing::error!(error = %e, "recording the job outcome failed; it runs again when its lease runs out"),
                        },
                        Err(e) => tracing::error!(error = %e, "recording the job outcome failed"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "recording the job outcome failed; it runs again when its lease runs out"),
            }
            self.forget(&job);
        }
        .instrument(span)
        .await;
    }

    /// Whether the job's claim is still held; true when that cannot be read (the run then goes
    /// ahead, and its result is discarded if the claim was lost).
    async fn still_held(&self, job: &JobRun) -> bool {
        let (id, claim) = (job.id.clone(), job.claim);
        self.store
            .read_quick(move |c| super::queue::holds_claim(c, &id, claim).map_err(StoreError::from))
            .await
            .unwrap_or(true)
    }

    /// Drops the job's claim from those whose leases this dispatcher extends.
    fn forget(&self, job: &JobRun) {
        if let Ok(mut c) = self.claims.lock() {
            c.remove(&(job.id.clone(), job.claim));
        }
    }

    /// Queues the outcome's transaction; the returned future resolves after its commit.
    async fn record(
        &self,
        job: &JobRun,
        result: JobResult,
    ) -> Result<impl Future<Output = Result<Recorded, StoreError>> + use<>, StoreError> {
        let registry = Arc::clone(&self.registry);
        let job = job.clone();
        let jitter: f64 = rand::random();
        self.store
            .writer()
            .submit_wait(move |tx| {
                finish(
                    tx,
                    &registry,
                    &job,
                    &result.outcome,
                    result.write.as_deref(),
                    jitter,
                )
            })
            .await
    }
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Succeeded,
    Retrying {
        at: Millis,
    },
    Dead {
        error: String,
    },
    Rescheduled {
        at: Millis,
    },
    /// Parked until something wakes it.
    Parked,
    /// The claim was no longer held (cancelled, or the lease ran out and the job was taken back):
    /// nothing was written.
    ClaimLost,
}

impl Recorded {
    fn log(&self, job: &JobRun) {
        let outcome = match self {
            Self::Succeeded => "succeeded",
            Self::Retrying { .. } => "retrying",
            Self::Dead { .. } => "dead",
            Self::Rescheduled { .. } => "rescheduled",
            Self::Parked => "parked",
            Self::ClaimLost => "claim_lost",
        };
        crate::counters::job_finished(&job.kind, outcome);
        match self {
            Self::Succeeded => tracing::debug!("job succeeded"),
            Self::Retrying { at } => {
                tracing::info!(retry_at = %clock::to_rfc3339(*at), "job failed; will retry")
            }
            Self::Dead { error } => tracing::error!(
                job_id = %job.id, kind = %job.kind, attempts = job.attempt, %error,
                "job is dead: out of attempts or failed permanently"
            ),
            Self::Rescheduled { at } => {
                tracing::info!(run_at = %clock::to_rfc3339(*at), "job rescheduled without spending an attempt")
            }
            Self::Parked => tracing::debug!("job parked without spending an attempt"),
            Self::ClaimLost => tracing::warn!(
                "job finished after its claim was lost (cancelled or lease expired); result discarded"
            ),
        }
    }
}

/// Records `outcome` for the claim `(job.id, job.claim)`, applies `write` and the dead-job
/// effects, all in `tx`.
fn finish(
    tx: &WriteTx<'_>,
    registry: &Registry,
    job: &JobRun,
    outcome: &Outcome,
    write: Option<&super::OutcomeWriteFn>,
    jitter: f64,
) -> Result<Recorded, StoreError> {
    let now = clock::now_ms();
    let (held, recorded) = match outcome {
        Outcome::Succeeded => (queue::succeed(tx, job, now)?, Recorded::Succeeded),
        Outcome::Retry { error, after } if !job.is_last_attempt() => {
            let wait = after.unwrap_or_else(|| backoff::backoff(job.attempt, jitter));
            let at = clock::add(now, wait);
            (
                queue::retry(tx, job, at, error, now)?,
                Recorded::Retrying { at },
            )
        }
        Outcome::Retry { error, .. } | Outcome::Fail { error } => (
            queue::kill(tx, job, error, now)?,
            Recorded::Dead {
                error: error.clone(),
            },
        ),
        Outcome::RunAgainAt { at, reason } => (
            queue::reschedule(tx, job, *at, reason, now)?,
            Recorded::Rescheduled { at: *at },
        ),
        Outcome::Park { on, reason } => (queue::park(tx, job, on, reason, now)?, Recorded::Parked),
    };
    if !held {
        return Ok(Recorded::ClaimLost);
    }
    if let Some(w) = write {
        w(tx)?;
    }
    match &recorded {
        Recorded::Dead { error } => on_dead(
            tx,
            registry,
            &DeadJob {
                id: job.id.clone(),
                kind: job.kind.clone(),
                payload: job.payload.clone(),
                attempt: job.attempt,
                error: error.clone(),
            },
        )?,
        Recorded::Retrying { .. } | Recorded::Rescheduled { .. } => tx.wake_workers(),
        Recorded::Succeeded | Recorded::Parked | Recorded::ClaimLost => {}
    }
    Ok(recorded)
}

/// Claims up to `n` due jobs for `lease`, in one statement.
async fn claim(
    store: &Store,
    n: usize,
    lease: Duration,
    owner: &str,
) -> Result<Vec<JobRun>, StoreError> {
    let owner = owner.to_string();
    store
        .writer()
        .write_wait(move |tx| {
            let now = clock::now_ms();
            Ok(queue::claim(tx, n, clock::add(now, lease), &owner, now)?)
        })
        .await
}

/// Pushes the lease of every running claim forward.
async fn extend_leases(store: &Store, claims: &Claims, lease: Duration) {
    let held: Vec<(String, i64)> = claims
        .lock()
        .map(|c| c.iter().cloned().collect())
        .unwrap_or_default();
    if held.is_empty() {
        return;
    }
    let result = store
        .writer()
        .write_wait(move |tx| {
            queue::extend(tx, &held, clock::add(clock::now_ms(), lease))?;
            Ok::<_, StoreError>(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "extending job leases failed");
    }
}

/// Gives claims back without counting their attempt (graceful shutdown).
async fn release(store: &Store, held: Vec<(String, i64)>) -> Result<usize, StoreError> {
    store
        .writer()
        .write_wait(move |tx| Ok(queue::release(tx, &held, clock::now_ms())?))
        .await
}

/// Which running jobs [`requeue_expired`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Those whose lease ran out.
    Expired,
    /// All of them: at start, every running job belongs to a process that is gone.
    AllRunning,
}

/// Takes back running jobs whose worker is gone; returns how many.
///
/// - [`Sweep::Expired`]: a lease ran out while this process runs — the worker stalled or its
///   task died. That counts as a failed attempt: `retrying`, or `dead` through the error handler
///   when out of attempts, so a job that wedges its worker cannot loop forever.
/// - [`Sweep::AllRunning`], at start: the previous process stopped (crash, `kill -9`, power
///   loss) while these jobs ran. They did not fail, so the attempt is given back and each runs
///   again (an interrupted job runs again: acked work is never lost).
///
/// # Errors
/// A storage error.
pub async fn requeue_expired(
    store: &Store,
    registry: Arc<Registry>,
    sweep: Sweep,
) -> Result<usize, StoreError> {
    let (count, dead, reason) = store
        .writer()
        .write_wait(move |tx| {
            let now = clock::now_ms();
            let reason = match sweep {
                Sweep::Expired => "the lease ran out: the worker stopped or stalled",
                Sweep::AllRunning => "the process stopped while the job was running; it runs again",
            };
            let rows = queue::take_back(tx, sweep == Sweep::AllRunning, reason, now)?;
            let mut dead = Vec::new();
            for (id, kind, payload, attempt, state) in &rows {
                if *state == super::JobState::Dead {
                    let job = DeadJob {
                        id: id.clone(),
                        kind: kind.clone(),
                        payload: serde_json::from_str(payload).unwrap_or_default(),
                        attempt: *attempt,
                        error: reason.to_string(),
                    };
                    on_dead(tx, &registry, &job)?;
                    dead.push(job);
                }
            }
            Ok::<_, StoreError>((rows.len(), dead, reason))
        })
        .await?;
    if count > 0 {
        tracing::warn!(count, %reason, "running jobs taken back");
    }
    for job in dead {
        tracing::error!(job_id = %job.id, kind = %job.kind, attempts = job.attempt, "job is dead: {reason}");
    }
    Ok(count)
}
