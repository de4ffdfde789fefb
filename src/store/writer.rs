//! The single writer: one thread owns the only write connection and applies every write of the
//! process, many callers per transaction (group commit).
//!
//! Callers send a closure over a bounded channel and wait for its answer. The thread takes the
//! first waiting command and whatever else is already queued, up to [`MAX_BATCH`] in all, runs
//! them inside one `BEGIN IMMEDIATE … COMMIT` and answers every caller only after the commit
//! returned. With `synchronous = FULL` that is one fsync for the whole batch instead of one per
//! request.
//!
//! One failing command rolls back only itself, at no cost to the batches where nothing fails:
//! commands run without savepoints first (a savepoint copies every page a command touches into
//! its sub-journal, which was a quarter of the writer's time). A command that fails before it
//! changed a row needs no undo. Only when one fails (or panics) after changing rows is the whole
//! transaction rolled back and the batch run again with each command in its own savepoint. So
//! a command may run twice, and only its last run counts: commands are `Fn`, and what they do
//! besides SQL must be safe to repeat (ids drawn afresh are; [`WriteTx::on_commit`] hooks of a
//! run that was rolled back are dropped with it).
//!
//! On PostgreSQL, where every statement is a round trip, the commands of a batch run with
//! their `execute_later` writes queued ([`crate::sql::Statement::execute_later`]): they go out
//! with the next statement that needs an answer, or before the commit. A queued write that
//! fails makes the run dirty as a failed command does, and the rerun with savepoints queues
//! nothing, so the failure reaches its own command.
//!
//! Maintenance that cannot run inside a transaction (a WAL checkpoint) goes through
//! [`Writer::run_outside_transaction`]: the thread runs it between two batches, so it never
//! competes with the writer for the database.
//!
//! It must never: run a network call or anything slow inside a command (commands are plain
//! synchronous closures over a `Connection`), answer before the commit, or queue without bound —
//! when the channel is full, [`Writer::write`] answers [`StoreError::Busy`] at once.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sql::{self, Connection};
use tokio::sync::{Notify, mpsc, oneshot};

use super::StoreError;
use crate::clock::{self, Millis};

/// Most commands applied in one transaction.
pub const MAX_BATCH: usize = 512;
/// A batch smaller than this waits [`LINGER`] for company before it commits.
pub const LINGER_BELOW: usize = 8;
/// How long a small batch waits for more commands.
pub const LINGER: Duration = Duration::from_micros(250);
/// Commands that may wait for the writer before new ones are refused with `storage_busy`.
pub const QUEUE_CAPACITY: usize = 8192;

type Command = Box<dyn Cmd>;
type Direct = Box<dyn FnOnce(&Connection) + Send>;

/// One caller's command: run once or twice (see the module doc), then answered once.
trait Cmd: Send {
    /// Runs the command in `tx` and keeps its result; whether it succeeded.
    fn run(&mut self, tx: &WriteTx<'_>) -> bool;
    /// Answers the caller with the last run's result, or with `commit`'s error when that run
    /// succeeded but its transaction did not commit.
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Call<F, T, E> {
    f: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Cmd for Call<F, T, E>
where
    F: Fn(&WriteTx<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, tx: &WriteTx<'_>) -> bool {
        // The result of an earlier run (rolled back) is dropped before this one starts.
        self.result = None;
        let result = (self.f)(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (self.result, commit) {
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(E::from(e)),
            (Some(Err(e)), _) => Err(e),
            (None, Ok(())) => Err(E::from(StoreError::Internal(
                "the command was answered without running".into(),
            ))),
        };
        let _ = self.reply.send(out);
    }
}

enum Msg {
    Cmd(Command),
    /// Runs on the bare connection between batches.
    Direct(Direct),
    Stop,
}

/// What [`drain`] stopped at.
enum Drained {
    /// The queue is empty (or the batch is full).
    Empty,
    /// A [`Msg::Direct`], to run after the batch.
    Direct(Direct),
    Stop,
}

/// The transaction a write command runs in.
///
/// Derefs to the connection; everything done through it commits together with the rest of the
/// batch, or not at all.
pub struct WriteTx<'c> {
    conn: &'c Connection,
    wake_workers: Cell<bool>,
    /// Run after the commit, for the commands that were kept (a rolled-back command's are
    /// dropped with it).
    after_commit: std::cell::RefCell<Vec<AfterCommit>>,
}

/// Something to do once a transaction has committed (e.g. invalidate a cache).
pub type AfterCommit = Box<dyn FnOnce() + Send>;

impl<'c> WriteTx<'c> {
    /// A write transaction the caller opened itself on `conn`, for tools that run with the
    /// server stopped (`hookrelay keys reencrypt`): the same owner functions apply, nobody is
    /// woken, and [`WriteTx::on_commit`] hooks are dropped (no cache lives in such a process).
    #[must_use]
    pub fn over(conn: &'c Connection) -> Self {
        Self {
            conn,
            wake_workers: Cell::new(false),
            after_commit: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Asks for the job workers to be woken once this transaction has committed.
    pub fn wake_workers(&self) {
        self.wake_workers.set(true);
    }

    /// Runs `f` once this transaction has committed — not if it, or this command, rolls back.
    /// For invalidating what a write made stale; `f` runs on the writer thread and must be
    /// quick.
    pub fn on_commit(&self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.borrow_mut().push(Box::new(f));
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Counters the writer keeps about itself (for `/readyz`, metrics and the benchmark), and
/// whether its latest transaction committed ([`WriterStats::write_failure`]).
#[derive(Debug, Default)]
pub struct WriterStats {
    alive: AtomicBool,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Commands applied in committed transactions.
    pub commands: AtomicU64,
    /// Transactions that failed to begin or commit.
    pub failures: AtomicU64,
    /// When the writes began to fail (ms since the epoch): the first failed transaction after
    /// the last commit. 0 while the latest transaction committed (or none was attempted yet).
    failing_since: AtomicI64,
    /// Why the latest failed transaction failed; meaningful while `failing_since` is set.
    last_failure: Mutex<String>,
}

/// Writes are failing: the latest transaction the writer attempted failed, and none has
/// committed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// When the first of the failed transactions failed (ms since the epoch).
    pub since: Millis,
    /// Why the latest one failed (SQLite's message).
    pub reason: String,
}

impl WriterStats {
    /// `Some` while writes fail: the latest transaction attempted failed to begin or to commit,
    /// and none has committed since. A write refused because the queue is full
    /// ([`StoreError::Busy`]) is never attempted, so it does not count; neither does a command
    /// whose own error was rolled back inside a transaction that then committed.
    #[must_use]
    pub fn write_failure(&self) -> Option<WriteFailure> {
        let since = self.failing_since.load(Ordering::Acquire);
        (since != 0).then(|| WriteFailure {
            since,
            reason: self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        })
    }

    /// Records a committed transaction: writes work.
    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.failing_since.store(0, Ordering::Release);
    }

    /// Records a transaction that failed to begin or to commit.
    fn failed(&self, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        reason.clone_into(
            &mut self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // Keeps the start of a run of failures; 0 means "committing", so never store it.
        let _ = self.failing_since.compare_exchange(
            0,
            clock::now_ms().max(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

struct AliveGuard<'a>(&'a AtomicBool);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Cheap-to-clone handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must already be configured and migrated.
    /// `wake` is notified after every commit in which a command called
    /// [`WriteTx::wake_workers`].
    ///
    /// # Errors
    /// If the OS cannot start a thread.
    pub fn start(conn: Connection, wake: Arc<Notify>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(WriterStats::default());
        stats.alive.store(true, Ordering::SeqCst);
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("hookrelay-writer".into())
            .spawn(move || {
                // Cleared on the way out, panics included.
                let _alive = AliveGuard(&thread_stats.alive);
                run(conn, rx, &wake, &thread_stats);
            })?;
        Ok(Self {
            tx,
            stats,
            thread: Arc::new(std::sync::Mutex::new(Some(handle))),
        })
    }

    /// Runs `f` in the next group-committed transaction and returns its result once committed.
    /// Refuses at once with [`StoreError::Busy`] when the queue is full: request handlers answer
    /// 503 `storage_busy` instead of queueing without bound.
    ///
    /// # Errors
    /// `f`'s own error (its changes are rolled back), or [`StoreError::Busy`],
    /// [`StoreError::Unavailable`] (the transaction could not commit) or [`StoreError::Closed`].
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (cmd, rx) = command(f);
        match self.tx.try_send(Msg::Cmd(cmd)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(StoreError::Busy.into()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed.into()),
        }
        await_reply(rx).await
    }

    /// As [`Writer::write`], but waits for room in the queue instead of refusing: for background
    /// work (job completion, sweeps), where waiting is the right back-pressure.
    ///
    /// # Errors
    /// As [`Writer::write`], except never [`StoreError::Busy`].
    pub async fn write_wait<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (cmd, rx) = command(f);
        if self.tx.send(Msg::Cmd(cmd)).await.is_err() {
            return Err(StoreError::Closed.into());
        }
        await_reply(rx).await
    }

    /// Queues `f` (waiting for room) and returns as soon as it is queued, with a future that
    /// resolves once its transaction committed. Lets a caller release a resource (a worker slot)
    /// without waiting for the fsync, while the commit still happens before anything relies on it.
    ///
    /// # Errors
    /// [`StoreError::Closed`] when the writer has stopped; the returned future as [`Writer::write`].
    pub async fn submit_wait<T, E, F>(
        &self,
        f: F,
    ) -> Result<impl std::future::Future<Output = Result<T, E>> + Send + use<T, E, F>, E>
    where
        F: Fn(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (cmd, rx) = command(f);
        if self.tx.send(Msg::Cmd(cmd)).await.is_err() {
            return Err(StoreError::Closed.into());
        }
        Ok(await_reply(rx))
    }

    /// Runs `f` on the write connection with no transaction open, after the commands queued
    /// before it have committed and before any queued after it. For statements that cannot run
    /// inside a transaction (`PRAGMA wal_checkpoint`): running them here instead of on another
    /// connection means they never wait for, or block on, the writer's lock. `f` must be short;
    /// every write of the process waits for it. A transaction `f` leaves open is rolled back.
    ///
    /// # Errors
    /// `f`'s error; [`StoreError::Closed`] when the writer has stopped; [`StoreError::Internal`]
    /// when `f` panicked.
    pub async fn run_outside_transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let direct: Direct = Box::new(move |conn| {
            let out = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
                tracing::error!("a direct writer command panicked");
                Err(StoreError::Internal("the command panicked".into()).into())
            });
            let _ = tx.send(out);
        });
        if self.tx.send(Msg::Direct(direct)).await.is_err() {
            return Err(StoreError::Closed.into());
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    /// Whether the writer thread is still running.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.stats.alive.load(Ordering::SeqCst)
    }

    /// The writer's counters.
    #[must_use]
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Lets queued commands finish, stops the thread and closes the connection. Later writes
    /// answer [`StoreError::Closed`].
    pub async fn stop(&self) {
        let _ = self.tx.send(Msg::Stop).await;
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn command<T, E, F>(f: F) -> (Command, oneshot::Receiver<Result<T, E>>)
where
    F: Fn(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let cmd: Command = Box::new(Call {
        f,
        result: None,
        reply,
    });
    (cmd, rx)
}

async fn await_reply<T, E: From<StoreError>>(rx: oneshot::Receiver<Result<T, E>>) -> Result<T, E> {
    // A dropped reply means the command never committed: its transaction failed before it ran,
    // it panicked (logged by the writer), or the writer stopped.
    rx.await.unwrap_or_else(|_| {
        Err(
            StoreError::Unavailable("the write was not applied; its transaction failed".into())
                .into(),
        )
    })
}

/// Takes what is already queued, up to [`MAX_BATCH`] in all, stopping early at a
/// [`Msg::Direct`] (which must wait for this batch) or a [`Msg::Stop`].
fn drain(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Command>) -> Drained {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Cmd(c)) => batch.push(c),
            Ok(Msg::Direct(d)) => return Drained::Direct(d),
            Ok(Msg::Stop) => return Drained::Stop,
            Err(_) => return Drained::Empty,
        }
    }
    Drained::Empty
}

/// Runs a [`Msg::Direct`] on the bare connection; rolls back a transaction it left open.
fn run_direct(conn: &Connection, direct: Direct) {
    // Outside a batch every statement runs at once, whatever way the last batch ended.
    conn.defer_writes(false);
    direct(conn);
    match conn.sqlite() {
        Some(c) if !c.is_autocommit() => {
            tracing::warn!("a direct writer command left a transaction open; rolling it back");
            let _ = conn.execute_batch("ROLLBACK");
        }
        Some(_) => {}
        // PostgreSQL does not say whether one is open; a ROLLBACK without one only warns.
        None => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, wake: &Notify, stats: &WriterStats) {
    let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH);
    let mut previous = 0;
    loop {
        match rx.blocking_recv() {
            Some(Msg::Cmd(c)) => batch.push(c),
            Some(Msg::Direct(d)) => {
                run_direct(&conn, d);
                continue;
            }
            Some(Msg::Stop) | None => break,
        }
        let mut next = drain(&mut rx, &mut batch);
        if matches!(next, Drained::Empty) && previous > 1 && batch.len() < LINGER_BELOW {
            // Callers are arriving concurrently but this batch is small: give its neighbours a
            // moment, so that one fsync and one wake-up serve several of them. A lone caller
            // (the previous batch had one command) never waits.
            std::thread::sleep(LINGER);
            next = drain(&mut rx, &mut batch);
        }
        previous = batch.len();
        run_batch(&mut conn, &mut batch, wake, stats);
        match next {
            Drained::Empty => {}
            Drained::Direct(d) => run_direct(&conn, d),
            Drained::Stop => break,
        }
    }
    // Answer anything that raced with Stop rather than leaving callers hanging. Direct commands
    // are dropped: their callers get `Closed`.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Cmd(c) = msg {
            batch.push(c);
        }
    }
    if !batch.is_empty() {
        run_batch(&mut conn, &mut batch, wake, stats);
    }
    let Some(conn) = conn.into_sqlite() else {
        return;
    };
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the write connection failed");
    }
}

/// Runs a parameterless statement: on SQLite through the statement cache (savepoints and
/// transaction control run several times per batch, and parsing them each time showed in
/// profiles), on PostgreSQL as a simple query.
fn exec(conn: &Connection, sql: &str) -> sql::Result<()> {
    match conn.sqlite() {
        Some(c) => c
            .prepare_cached(sql)?
            .execute([])
            .map(|_| ())
            .map_err(Into::into),
        None => conn.execute_batch(sql),
    }
}

/// Commits the batch. PostgreSQL answers `COMMIT` of a transaction that a failed statement
/// aborted with a silent rollback, so a statement runs first that fails in that state: a
/// command that swallowed its own error cannot turn into an ack of nothing.
///
/// With `wake_workers` that statement is the `NOTIFY` that wakes the workers of every replica
/// (PostgreSQL delivers it with the commit): jobs another replica enqueued do not wait for a
/// poll.
fn commit(conn: &Connection, wake_workers: bool) -> sql::Result<()> {
    if conn.dialect() == sql::Dialect::Postgres {
        if wake_workers {
            exec(conn, WAKE_REPLICAS)?;
        } else {
            exec(conn, "SELECT 1")?;
        }
    }
    exec(conn, "COMMIT")
}

/// The notification [`commit`] sends when a batch enqueued jobs: [`JOBS_CHANGED`] on
/// [`CHANGES_CHANNEL`] (a test keeps the three in step).
///
/// [`JOBS_CHANGED`]: super::postgres::JOBS_CHANGED
/// [`CHANGES_CHANNEL`]: super::postgres::CHANGES_CHANNEL
pub(crate) const WAKE_REPLICAS: &str = "SELECT pg_notify('hookrelay_changes', 'jobs')::TEXT";

/// Opens the batch's transaction: on SQLite `IMMEDIATE`, taking the write lock at once.
fn begin(conn: &Connection) -> sql::Result<()> {
    exec(conn, conn.dialect_sql("BEGIN IMMEDIATE", "BEGIN"))
}

/// Rows changed so far on SQLite; `None` on PostgreSQL, where any failed statement aborts the
/// transaction, so a failed command always leaves it dirty.
fn total_changes(conn: &Connection) -> Option<u64> {
    conn.sqlite().map(rusqlite::Connection::total_changes)
}

/// Whether no transaction is open: SQLite rolls a whole transaction back by itself on some
/// failures (disk full, I/O error); a PostgreSQL transaction ends only with its connection.
fn outside_transaction(conn: &Connection) -> bool {
    match conn.sqlite() {
        Some(c) => c.is_autocommit(),
        None => conn.postgres().is_some_and(|c| c.borrow().is_closed()),
    }
}

fn rollback_command(conn: &Connection) -> sql::Result<()> {
    exec(conn, "ROLLBACK TO cmd")?;
    exec(conn, "RELEASE cmd")
}

/// How a command's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    Failed,
    Panicked,
}

/// What running a batch's commands came to.
enum Applied {
    /// Every command ran; `Ran` per command, in order.
    All(Vec<Ran>),
    /// Without savepoints, a command failed (or panicked) after it changed rows: the
    /// transaction must be rolled back and the batch run again, each command in a savepoint.
    Dirty,
    /// The transaction cannot go on, for `reason`; the commands in `ran` ran, the rest did not.
    Aborted { ran: Vec<Ran>, reason: String },
}

/// Runs `batch` in the open transaction: plainly, or with `isolate` each command in its own
/// savepoint. A command that failed has its changes undone (nothing to undo when it failed
/// before changing a row; else its savepoint, or [`Applied::Dirty`] without one) and its
/// [`WriteTx::on_commit`] hooks dropped.
fn apply(wtx: &WriteTx<'_>, batch: &mut [Command], isolate: bool) -> Applied {
    let mut ran = Vec::with_capacity(batch.len());
    for cmd in batch.iter_mut() {
        if isolate && let Err(e) = exec(wtx, "SAVEPOINT cmd") {
            return Applied::Aborted {
                ran,
                reason: e.to_string(),
            };
        }
        let hooks_before = wtx.after_commit.borrow().len();
        let changes_before = total_changes(wtx);
        let outcome = match catch_unwind(AssertUnwindSafe(|| cmd.run(wtx))) {
            Ok(true) => Ran::Ok,
            Ok(false) => Ran::Failed,
            Err(_) => {
                tracing::error!("a write command panicked; its changes were rolled back");
                Ran::Panicked
            }
        };
        if !isolate && wtx.take_deferred_failure() {
            if let Some(reason) = wtx.take_storage_failure() {
                // The database itself failed (see below): running the batch again would not
                // help. Nothing commits, so no hook runs.
                ran.push(outcome);
                return Applied::Aborted { ran, reason };
            }
            // A statement queued by an earlier command failed when this one's went out: the
            // transaction is lost, and which command broke it is found by running each alone.
            return Applied::Dirty;
        }
        if outcome == Ran::Ok {
            ran.push(outcome);
            if isolate && let Err(e) = exec(wtx, "RELEASE cmd") {
                return Applied::Aborted {
                    ran,
                    reason: e.to_string(),
                };
            }
            continue;
        }
        wtx.after_commit.borrow_mut().truncate(hooks_before);
        if let Some(reason) = wtx.take_storage_failure() {
            // The database cannot take writes (PostgreSQL read-only, out of disk, shutting
            // down): the whole batch fails and the writer says so, as when SQLite cannot begin.
            ran.push(outcome);
            return Applied::Aborted { ran, reason };
        }
        if outside_transaction(wtx) {
            // SQLite rolled the whole transaction back (disk full, I/O error).
            ran.push(outcome);
            return Applied::Aborted {
                ran,
                reason: "the transaction was rolled back by the database".into(),
            };
        }
        if !isolate {
            if outcome == Ran::Panicked
                || changes_before.is_none()
                || total_changes(wtx) != changes_before
            {
                return Applied::Dirty;
            }
            // It failed before changing anything: there is nothing to undo.
            ran.push(outcome);
            continue;
        }
        ran.push(outcome);
        if let Err(e) = rollback_command(wtx) {
            return Applied::Aborted {
                ran,
                reason: e.to_string(),
            };
        }
    }
    // What the last commands queued goes out now, so that its failure is still a command's.
    if let Err(e) = wtx.flush_deferred() {
        if let Some(reason) = wtx.take_storage_failure() {
            return Applied::Aborted { ran, reason };
        }
        tracing::debug!(error = %e, "a queued statement failed; the batch runs again, each command alone");
        return Applied::Dirty;
    }
    Applied::All(ran)
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Command>, wake: &Notify, stats: &WriterStats) {
    let started = Instant::now();
    let n = batch.len();
    let mut isolate = false;
    let (applied, wake_workers, after_commit) = loop {
        match conn.reconnect_if_closed() {
            Ok(true) => tracing::warn!("the database connection was lost; connected again"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "the database connection was lost and cannot be opened again")
            }
        }
        if let Err(e) = begin(conn) {
            if conn.dialect() == sql::Dialect::Postgres {
                // Whatever state the session was left in, the next batch starts clean.
                let _ = conn.execute_batch("ROLLBACK");
            }
            // Recorded before any caller hears of it, so `/readyz` agrees with the 503 they answer.
            stats.failed(&e.to_string());
            tracing::error!(error = %e, commands = n, "cannot begin a write transaction");
            fail_all(batch.drain(..), &e.to_string());
            return;
        }
        // A failure noted before this batch (a read, a direct command) is not this batch's.
        let _ = conn.take_storage_failure();
        let _ = conn.take_deferred_failure();
        // On PostgreSQL, writes whose answer nobody reads go out together (see
        // `Statement::execute_later`); a command run alone runs each statement at once.
        conn.defer_writes(!isolate);
        let wtx = WriteTx {
            conn,
            wake_workers: Cell::new(false),
            after_commit: std::cell::RefCell::new(Vec::new()),
        };
        match apply(&wtx, batch, isolate) {
            Applied::Dirty => {
                // Everything this run did is undone, its hooks with it; the batch runs again,
                // this time each command in its own savepoint.
                drop(wtx);
                conn.discard_deferred();
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    stats.failed(&e.to_string());
                    tracing::error!(error = %e, commands = n, "cannot roll back a write transaction");
                    fail_all(batch.drain(..), &e.to_string());
                    return;
                }
                isolate = true;
            }
            applied => break (applied, wtx.wake_workers.get(), wtx.after_commit.take()),
        }
    };
    conn.defer_writes(false);
    let (ran, aborted) = match applied {
        Applied::All(ran) => (ran, None),
        Applied::Aborted { ran, reason } => {
            conn.discard_deferred();
            (ran, Some(reason))
        }
        Applied::Dirty => unreachable!("a dirty run is run again"),
    };
    let outcome = match aborted {
        Some(reason) => {
            if !outside_transaction(conn) {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(reason)
        }
        None => commit(conn, wake_workers).map_err(|e| {
            if !outside_transaction(conn) {
                let _ = conn.execute_batch("ROLLBACK");
            }
            e.to_string()
        }),
    };
    // `ran` first: the zip stops without taking a command that never ran.
    let mut cmds = batch.drain(..);
    let answered = ran.iter().zip(cmds.by_ref());
    match outcome {
        Ok(()) => {
            stats.committed();
            stats
                .commands
                .fetch_add(ran.len() as u64, Ordering::Relaxed);
            crate::counters::writer_commit(ran.len(), started.elapsed());
            for f in after_commit {
                f();
            }
            if wake_workers {
                wake.notify_one();
            }
            for (how, cmd) in answered {
                // A panicked command's caller hears `Unavailable` from its dropped reply.
                if *how != Ran::Panicked {
                    cmd.answer(Ok(()));
                }
            }
        }
        Err(reason) => {
            stats.failed(&reason);
            tracing::error!(%reason, commands = n, "write transaction failed; every caller in it is told");
            for (how, cmd) in answered {
                if *how != Ran::Panicked {
                    cmd.answer(Err(StoreError::Unavailable(reason.clone())));
                }
            }
        }
    }
    fail_all(cmds, "an earlier command in the same transaction failed it");
}

/// Drops commands that never ran; each caller is answered `Unavailable` by [`await_reply`].
fn fail_all(cmds: impl Iterator<Item = Command>, reason: &str) {
    let dropped = cmds.count();
    if dropped > 0 {
        tracing::warn!(%reason, dropped, "write commands not applied");
    }
}
