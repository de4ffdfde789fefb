//! Jobs enqueued by this process for work it can start at once go to its own dispatcher already
//! claimed: the row is inserted `running`, leased to this process, and the job is handed over in
//! memory once the transaction commits — no claim statement, no second write of the row.
//!
//! A job is handed off only while the dispatcher has room (a budget it refreshes as it runs);
//! otherwise it is enqueued `queued` as usual. Nothing is lost if the process dies with jobs
//! handed off: their rows are `running` with a lease, so the next start (or another sweep)
//! takes them back like any job whose worker stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Enqueued, JobRun, Memo, NewJob, queue};
use crate::clock;
use crate::store::WriteTx;

/// The sending side, handed to what enqueues on the hot paths (ingress, fan-out).
#[derive(Clone)]
pub struct Handoff {
    inner: Arc<Inner>,
}

struct Inner {
    /// Jobs the dispatcher can take now; may dip below zero briefly.
    budget: AtomicIsize,
    tx: mpsc::UnboundedSender<JobRun>,
    lease: Duration,
    owner: String,
}

/// The dispatcher's side.
pub struct Receiver {
    pub(super) rx: mpsc::UnboundedReceiver<JobRun>,
    pub(super) handoff: Handoff,
}

impl Handoff {
    /// A hand-off for a dispatcher whose claims are owned by `owner` and leased for `lease`.
    #[must_use]
    pub fn new(lease: Duration, owner: String) -> (Self, Receiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handoff = Self {
            inner: Arc::new(Inner {
                budget: AtomicIsize::new(0),
                tx,
                lease,
                owner,
            }),
        };
        let receiver = Receiver {
            rx,
            handoff: handoff.clone(),
        };
        (handoff, receiver)
    }

    /// Who claims are leased to (`lease_owner`).
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Sets how many more jobs the dispatcher can take (called by the dispatcher).
    pub(super) fn set_budget(&self, n: usize) {
        self.inner
            .budget
            .store(isize::try_from(n).unwrap_or(isize::MAX), Ordering::Release);
    }

    fn reserve(&self) -> bool {
        if self.inner.budget.fetch_sub(1, Ordering::AcqRel) > 0 {
            true
        } else {
            self.inner.budget.fetch_add(1, Ordering::AcqRel);
            false
        }
    }

    /// Enqueues `job` in the caller's transaction — claimed by this process and handed to its
    /// dispatcher after the commit when it can run now and the dispatcher has room, else
    /// queued for any worker.
    ///
    /// # Errors
    /// A database error (the caller's whole command then rolls back).
    pub fn enqueue(&self, tx: &WriteTx<'_>, job: &NewJob) -> crate::sql::Result<Enqueued> {
        self.enqueue_with(tx, job, || None)
    }

    /// As [`Handoff::enqueue`], and a run handed off carries `memo()` to its handler
    /// ([`JobRun::memo`]); `memo` is not called when the job is queued.
    ///
    /// # Errors
    /// A database error.
    pub fn enqueue_with(
        &self,
        tx: &WriteTx<'_>,
        job: &NewJob,
        memo: impl FnOnce() -> Option<Memo>,
    ) -> crate::sql::Result<Enqueued> {
        if job.run_at.is_some() || job.idempotency_key.is_some() || !self.reserve() {
            return queue::enqueue(tx, job);
        }
        let now = clock::now_ms();
        let mut run = queue::insert_claimed(
            tx,
            job,
            clock::add(now, self.inner.lease),
            &self.inner.owner,
            now,
        )?;
        run.memo = memo();
        let id = run.id.clone();
        let sender = self.inner.tx.clone();
        // Handed over only if the row committed; a rolled-back command's job never existed.
        tx.on_commit(move || {
            let _ = sender.send(run);
        });
        Ok(Enqueued { id, created: true })
    }
}

/// Enqueues through `handoff` when there is one, else as a plain queued job.
///
/// # Errors
/// A database error.
pub fn enqueue(
    tx: &WriteTx<'_>,
    handoff: Option<&Handoff>,
    job: &NewJob,
) -> crate::sql::Result<Enqueued> {
    enqueue_with(tx, handoff, job, || None)
}

/// As [`enqueue`], with a memo for a run handed off ([`Handoff::enqueue_with`]).
///
/// # Errors
/// A database error.
pub fn enqueue_with(
    tx: &WriteTx<'_>,
    handoff: Option<&Handoff>,
    job: &NewJob,
    memo: impl FnOnce() -> Option<Memo>,
) -> crate::sql::Result<Enqueued> {
    match handoff {
        Some(h) => h.enqueue_with(tx, job, memo),
        None => queue::enqueue(tx, job),
    }
}
