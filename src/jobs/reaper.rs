//! Taking back jobs whose lease ran out (a worker that stalled or vanished): the `lease_reaper`
//! periodic task, and the safety net that sweeps directly when that task has not run within a
//! lease (it is `off`, scheduled slower than the lease, or its own job waits behind a backlog).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Registry;
use super::periodic::{TaskReport, TaskSpec};
use super::worker::{self, Sweep};
use crate::clock;
use crate::store::Store;

/// The periodic task.
pub const SPEC: TaskSpec = TaskSpec {
    name: "lease_reaper",
    kind: "cron.lease_reaper",
    default_schedule: "*/15 * * * * *",
    describe: "take back jobs whose lease ran out",
};

/// Sweeps expired leases.
pub struct Reaper {
    store: Store,
    /// The registry dead jobs go to; set once it is built (it holds this reaper's task).
    registry: OnceLock<Arc<Registry>>,
    /// When expired leases were last swept (by the task or the safety net).
    last_reaped: AtomicI64,
}

impl Reaper {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            store,
            registry: OnceLock::new(),
            last_reaped: AtomicI64::new(clock::now_ms()),
        }
    }

    /// The registry the reaper hands dead jobs to.
    pub fn set_registry(&self, registry: Arc<Registry>) {
        let _ = self.registry.set(registry);
    }

    /// One sweep: the `lease_reaper` task.
    ///
    /// # Errors
    /// A storage failure, as a sentence.
    pub async fn run(&self) -> Result<TaskReport, String> {
        let registry = self
            .registry
            .get()
            .cloned()
            .ok_or("the job registry is not ready yet")?;
        let n = worker::requeue_expired(&self.store, registry, Sweep::Expired)
            .await
            .map_err(|e| e.to_string())?;
        self.last_reaped.store(clock::now_ms(), Ordering::Relaxed);
        Ok(TaskReport {
            rows_affected: n as u64,
            detail: json!({"taken_back": n}),
        })
    }

    /// The safety net: every `lease`, if expired leases were not swept within the last `lease`,
    /// sweeps them directly — a job whose worker vanished must not stay `running`. Only while
    /// `leader` says this process runs the sweeps (with several replicas, the lease_reaper job
    /// may have run on another one: the warning is for a sweep that took something back).
    pub async fn safety_net(
        self: Arc<Self>,
        lease: Duration,
        leader: Arc<crate::store::leader::Leader>,
        stop: CancellationToken,
    ) {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut tick = tokio::time::interval(lease);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let since = clock::now_ms() - self.last_reaped.load(Ordering::Relaxed);
            if since < lease_ms || !leader.is_leader() {
                continue;
            }
            let Some(registry) = self.registry.get().cloned() else {
                continue;
            };
            match worker::requeue_expired(&self.store, registry, Sweep::Expired).await {
                Ok(0) if leader.check_every().is_some() => {
                    self.last_reaped.store(clock::now_ms(), Ordering::Relaxed);
                }
                Ok(n) => {
                    self.last_reaped.store(clock::now_ms(), Ordering::Relaxed);
                    tracing::warn!(
                        taken_back = n,
                        "the lease_reaper cron did not run within jobs.lease; swept expired leases directly"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "sweeping expired leases failed"),
            }
        }
    }
}
