//! The `leases` table: which process does the work one process at a time must do — ticking
//! crons and schedules, and the lease safety net — and the lease it holds for it. Each try is
//! a short transaction of its own between the writer's batches, so the row is locked for one
//! statement and no replica's writes wait on another's.
//!
//! On SQLite one process holds the database (its lock file), so it always leads and the table is
//! not used. On PostgreSQL several replicas share the database: each tries every
//! [`Leader::check_every`] to take or renew the lease row, one wins, and a replica that stops
//! gives it up (another takes over at its next try) or, killed, lets it run out (another takes
//! over within `jobs.lease`: the lease is two thirds of it, tried every sixth). The lease's time is
//! the database server's clock, so replicas' clocks need not agree; a leader stops believing it
//! leads one try before its lease runs out, so two never tick at once. (Should they, for a
//! moment, the tick keys still keep each tick single.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::sql::{Connection, Dialect, OptionalExtension as _, params};

/// The lease's name: ticking and sweeps are one lease, so they move together.
const TICKER: &str = "ticker";

/// Leadership of this process: whether it ticks crons and schedules and runs the sweeps.
pub struct Leader {
    /// `None`: the only process on its database (SQLite), always leading.
    shared: Option<Shared>,
    leading: watch::Sender<bool>,
}

struct Shared {
    holder: String,
    /// How long a taken lease lasts.
    term: Duration,
    /// How often the lease is taken or renewed.
    every: Duration,
    base: Instant,
    /// Until when (ms after `base`) this process leads; 0: it does not.
    until: AtomicU64,
}

impl Leader {
    /// The only process on its database: it always leads.
    #[must_use]
    pub fn sole() -> Self {
        Self {
            shared: None,
            leading: watch::Sender::new(true),
        }
    }

    /// One of the replicas sharing a database, known as `holder`, with `jobs.lease` = `lease`.
    /// It leads once [`Leader::run`] has taken the lease.
    #[must_use]
    pub fn replica(holder: String, lease: Duration) -> Self {
        let every = (lease / 6).clamp(Duration::from_millis(100), Duration::from_secs(10));
        Self {
            shared: Some(Shared {
                holder,
                term: (lease * 2 / 3).max(every * 3),
                every,
                base: Instant::now(),
                until: AtomicU64::new(0),
            }),
            leading: watch::Sender::new(false),
        }
    }

    /// The leadership `store`'s database calls for: sole on SQLite, a replica on PostgreSQL.
    #[must_use]
    pub fn for_store(store: &Store, holder: String, lease: Duration) -> Self {
        match store.dialect() {
            Dialect::Sqlite => Self::sole(),
            Dialect::Postgres => Self::replica(holder, lease),
        }
    }

    /// Whether this process leads now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        match &self.shared {
            None => true,
            Some(s) => millis(s.base.elapsed()) < s.until.load(Ordering::Acquire),
        }
    }

    /// How often a replica tries to take the lease (none for the sole process).
    #[must_use]
    pub fn check_every(&self) -> Option<Duration> {
        self.shared.as_ref().map(|s| s.every)
    }

    /// Changes to "this process leads" (true when it takes the lease, false when it loses it).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Takes and renews the lease until `stop` (then see [`Leader::give_up`]). Does nothing for
    /// the sole process.
    pub async fn run(&self, store: Store, stop: CancellationToken) {
        let Some(s) = &self.shared else {
            return;
        };
        let mut tick = tokio::time::interval(s.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let started = s.base.elapsed();
            let (holder, term) = (s.holder.clone(), millis(s.term));
            // Its own short transaction between two batches, not a command in one: the row
            // lock is held for this statement only, so no replica's writer waits for another's
            // batch, and a try that cannot get the row soon fails instead of waiting.
            let take = store.writer().run_outside_transaction(move |conn| {
                conn.transaction(SHORT_TRANSACTION, |c| take(c, TICKER, &holder, term))
                    .map_err(StoreError::from)
            });
            // No longer than this process may still believe it leads: past that it has lost.
            let wait = match s.until.load(Ordering::Acquire).checked_sub(millis(started)) {
                Some(left) if left > 0 => Duration::from_millis(left),
                _ => s.every,
            };
            match tokio::time::timeout(wait, take).await {
                Ok(Ok(true)) => {
                    // One try short of the lease, measured from before it was asked for.
                    let until = started + s.term.saturating_sub(s.every);
                    s.until.store(millis(until), Ordering::Release);
                }
                Ok(Ok(false)) => s.until.store(0, Ordering::Release),
                // Kept until it runs out: a brief outage does not move the ticking.
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the ticker lease failed"),
                Err(_) => {
                    tracing::warn!("renewing the ticker lease took too long");
                    s.until.store(0, Ordering::Release);
                }
            }
            self.announce();
        }
    }

    /// Tells the subscribers when what [`Leader::is_leader`] says changed.
    fn announce(&self) {
        let now = self.is_leader();
        if now != *self.leading.borrow() {
            if now {
                tracing::info!("this replica now ticks crons and schedules and runs the sweeps");
            } else {
                tracing::info!("this replica no longer ticks crons and schedules");
            }
            self.leading.send_replace(now);
        }
    }

    /// Gives the lease up (at shutdown, after [`Leader::run`] returned), so that another
    /// replica takes it at its next try instead of when it runs out.
    pub async fn give_up(&self, store: &Store) {
        let Some(s) = &self.shared else {
            return;
        };
        s.until.store(0, Ordering::Release);
        self.announce();
        // Whatever this process believed: the row is deleted only if it is still its own.
        let holder = s.holder.clone();
        let given = store
            .writer()
            .run_outside_transaction(move |conn| {
                conn.transaction(SHORT_TRANSACTION, |c| give_up(c, TICKER, &holder))
                    .map_err(StoreError::from)
            })
            .await;
        if let Err(e) = given {
            tracing::warn!(error = %e, "giving up the ticker lease failed; another replica takes over when it runs out");
        }
    }
}

/// A transaction of its own that waits at most a moment for a row lock.
const SHORT_TRANSACTION: &str = "BEGIN; SET LOCAL lock_timeout = '500ms'";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Takes lease `name` for `holder` for `term_ms` (on the database server's clock) if it is free,
/// run out or already `holder`'s. Whether `holder` holds it now. PostgreSQL only.
fn take(tx: &Connection, name: &str, holder: &str, term_ms: u64) -> crate::sql::Result<bool> {
    let term = i64::try_from(term_ms).unwrap_or(i64::MAX);
    let got: Option<String> = tx
        .prepare_cached(
            "INSERT INTO leases AS l (name, holder, expires_at)
             VALUES (?1, ?2, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE l.holder = excluded.holder
                OR l.expires_at < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
             RETURNING holder",
        )?
        .query_row(params![name, holder, term], |r| r.get(0))
        .optional()?;
    Ok(got.is_some())
}

/// Gives up lease `name` if `holder` holds it, so another replica takes it at its next try.
fn give_up(tx: &Connection, name: &str, holder: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?
        .execute(params![name, holder])?;
    Ok(())
}
