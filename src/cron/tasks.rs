//! The built-in cron tasks: retention, lease_reaper, endpoint_health, front_sync,
//! db_maintenance, backup. Each returns a [`TaskReport`] that is stored with its run.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rusqlite::params;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Millis};
use crate::config::Config;
use crate::delivery::webhooks;
use crate::front::{self, client::FrontClient};
use crate::ids;
use crate::jobs::Registry;
use crate::jobs::worker::{self, Sweep};
use crate::ops::{backup, maintenance};
use crate::store::{Store, StoreError};

/// The built-in task names, as in `cron.<name>`.
pub const NAMES: [&str; 6] = [
    "retention",
    "lease_reaper",
    "endpoint_health",
    "front_sync",
    "db_maintenance",
    "backup",
];

/// Rows deleted per retention transaction: small enough that other writes wait at most a few
/// milliseconds behind one.
pub const RETENTION_BATCH: usize = 2000;

/// The job kind that runs task `name`.
#[must_use]
pub fn kind_name(name: &str) -> &'static str {
    match name {
        "retention" => "cron.retention",
        "lease_reaper" => "cron.lease_reaper",
        "endpoint_health" => "cron.endpoint_health",
        "front_sync" => "cron.front_sync",
        "db_maintenance" => "cron.db_maintenance",
        "backup" => "cron.backup",
        _ => "cron.unknown",
    }
}

/// One line on what task `name` does.
#[must_use]
pub fn describe(name: &str) -> &'static str {
    match name {
        "retention" => {
            "delete finished jobs, deliveries, events and inbound events past retention.*"
        }
        "lease_reaper" => "take back jobs whose lease ran out",
        "endpoint_health" => {
            "disable webhooks whose deliveries all failed for delivery.auto_disable_after"
        }
        "front_sync" => "list Front events since the last seen one and ingest any that were missed",
        "db_maintenance" => "PRAGMA optimize and a WAL checkpoint",
        "backup" => "snapshot the database into backup.dir, keeping backup.keep files",
        _ => "",
    }
}

/// What a run did: stored with the run, `rows_affected` also in its own column.
#[derive(Debug, Clone, Default)]
pub struct TaskReport {
    pub rows_affected: u64,
    pub detail: Value,
}

/// Everything the tasks need.
pub struct Tasks {
    store: Store,
    config: Config,
    /// The client `front.process` uses: one request budget for both.
    front: Option<Arc<FrontClient>>,
    /// For `webhook.disabled`.
    publisher: crate::events::Publisher,
    registry: OnceLock<Arc<Registry>>,
    /// When expired leases were last swept (by the cron or the safety net).
    last_reaped: AtomicI64,
}

impl Tasks {
    #[must_use]
    pub fn new(
        store: Store,
        config: Config,
        front: Option<Arc<FrontClient>>,
        publisher: crate::events::Publisher,
    ) -> Self {
        Self {
            store,
            config,
            front,
            publisher,
            registry: OnceLock::new(),
            last_reaped: AtomicI64::new(clock::now_ms()),
        }
    }

    /// The registry the lease reaper hands dead jobs to; set once it is built.
    pub fn set_registry(&self, registry: Arc<Registry>) {
        let _ = self.registry.set(registry);
    }

    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs task `name` once.
    ///
    /// # Errors
    /// What went wrong, as a sentence.
    pub async fn run(&self, name: &str) -> Result<TaskReport, String> {
        match name {
            "retention" => self.retention().await.map_err(|e| e.to_string()),
            "lease_reaper" => self.lease_reaper().await,
            "endpoint_health" => self.endpoint_health().await.map_err(|e| e.to_string()),
            "front_sync" => self.front_sync().await,
            "db_maintenance" => self.db_maintenance().await,
            "backup" => self.backup().await,
            other => Err(format!("there is no cron task `{other}`")),
        }
    }

    async fn lease_reaper(&self) -> Result<TaskReport, String> {
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

    /// The safety net under `lease_reaper`: every `lease`, if expired leases were not swept
    /// within the last `lease` (the cron is `off`, slower than the lease, or its job waits behind
    /// a backlog), sweeps them directly — a job whose worker vanished must not stay `running`.
    pub async fn lease_safety_net(self: Arc<Self>, lease: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(lease);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let since = clock::now_ms() - self.last_reaped.load(Ordering::Relaxed);
            if since < millis(lease) {
                continue;
            }
            let Some(registry) = self.registry.get().cloned() else {
                continue;
            };
            match worker::requeue_expired(&self.store, registry, Sweep::Expired).await {
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

    /// Disables every enabled webhook whose attempts have all failed over at least
    /// `delivery.auto_disable_after`: failing since longer than that, and still failing at the
    /// end of it (one failure followed by silence is not enough). A success resets the clock;
    /// see `delivery::send`.
    async fn endpoint_health(&self) -> Result<TaskReport, StoreError> {
        let after = self.config.delivery.auto_disable_after;
        let publisher = self.publisher.clone();
        let disabled = self
            .store
            .writer()
            .write_wait(move |tx| {
                let now = clock::now_ms();
                let cutoff = now - millis(after);
                let failing: Vec<(String, Millis)> = tx
                    .prepare_cached(
                        "SELECT id, failing_since FROM webhooks
                         WHERE state = 'enabled' AND failing_since IS NOT NULL AND failing_since <= ?1
                           AND last_failure_at - failing_since >= ?2",
                    )?
                    .query_map(params![cutoff, millis(after)], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut disabled = Vec::new();
                for (id, since) in failing {
                    let reason = format!(
                        "every delivery attempt since {} failed (delivery.auto_disable_after = {})",
                        clock::to_rfc3339(since),
                        humantime::format_duration(after)
                    );
                    if webhooks::disable(tx, &publisher, &id, &reason)? {
                        disabled.push(json!({"id": id, "failing_since": clock::to_rfc3339(since)}));
                    }
                }
                Ok::<_, StoreError>(disabled)
            })
            .await?;
        for w in &disabled {
            tracing::warn!(webhook = %w["id"], "webhook disabled: all deliveries failed for delivery.auto_disable_after");
        }
        Ok(TaskReport {
            rows_affected: disabled.len() as u64,
            detail: json!({"disabled": disabled}),
        })
    }

    /// Deletes finished rows past `retention.*`, [`RETENTION_BATCH`] rows per transaction.
    async fn retention(&self) -> Result<TaskReport, StoreError> {
        let now = clock::now_ms();
        let ok = now - millis(self.config.retention.succeeded);
        let bad = now - millis(self.config.retention.failed);
        let mut detail = serde_json::Map::new();
        let mut total = 0u64;
        let mut batches = 0u64;
        for (table, prefix, state, cutoff) in [
            ("jobs", ids::JOB, "succeeded", ok),
            ("jobs", ids::JOB, "cancelled", ok),
            ("jobs", ids::JOB, "dead", bad),
            ("deliveries", ids::DELIVERY, "succeeded", ok),
            ("deliveries", ids::DELIVERY, "cancelled", ok),
            ("deliveries", ids::DELIVERY, "failed", bad),
            ("inbound_events", ids::INBOUND, "processed", ok),
            ("inbound_events", ids::INBOUND, "failed", bad),
        ] {
            let (n, b) = self.delete_finished(table, prefix, state, cutoff).await?;
            total += n;
            batches += b;
            let e = detail.entry(table).or_insert_with(|| json!({}));
            e[state] = json!(n);
        }
        // Dedupe keys outlive the inbound rows: at least 30 days, or the longest retention.
        let keys_cutoff = now
            - millis(
                crate::inbound::store::KEY_MEMORY
                    .max(self.config.retention.succeeded)
                    .max(self.config.retention.failed),
            );
        let mut keys = 0u64;
        loop {
            let n = self
                .store
                .writer()
                .write_wait(move |tx| {
                    Ok::<_, StoreError>(crate::inbound::store::forget_keys(
                        tx,
                        keys_cutoff,
                        RETENTION_BATCH,
                    )?)
                })
                .await?;
            keys += n as u64;
            batches += 1;
            if n < RETENTION_BATCH {
                break;
            }
        }
        total += keys;
        detail.insert("inbound_keys".into(), json!(keys));
        let (events, b) = self.delete_events(ok).await?;
        total += events;
        batches += b;
        detail.insert("events".into(), json!(events));
        let runs = self
            .store
            .writer()
            .write_wait(move |tx| {
                Ok::<_, StoreError>(tx
                    .prepare_cached(
                        "DELETE FROM cron_runs
                         WHERE ((state IN ('succeeded', 'skipped') AND created_at < ?1)
                                OR (state = 'failed' AND created_at < ?2))
                           -- the latest tick of each name is what catch-up at start compares with
                           AND id NOT IN (SELECT MAX(id) FROM cron_runs WHERE trigger != 'manual' GROUP BY name)",
                    )?
                    .execute(params![ok, bad])?)
            })
            .await?;
        total += runs as u64;
        detail.insert("cron_runs".into(), json!(runs));
        detail.insert("transactions".into(), json!(batches + 1));
        Ok(TaskReport {
            rows_affected: total,
            detail: Value::Object(detail),
        })
    }

    /// Deletes rows of `table` in `state` that finished before `cutoff`, in batches; for
    /// deliveries, their attempts go in the same transaction. Returns (rows, transactions).
    async fn delete_finished(
        &self,
        table: &'static str,
        prefix: &'static str,
        state: &'static str,
        cutoff: Millis,
    ) -> Result<(u64, u64), StoreError> {
        // Ids sort by creation time and nothing finishes before it is created, so the id bound
        // lets the (state, id) index skip every younger row.
        let id_bound = ids::time_bound(prefix, cutoff);
        let finished = match table {
            "inbound_events" => "COALESCE(processed_at, updated_at)",
            _ => "COALESCE(finished_at, updated_at)",
        };
        let select = format!(
            "SELECT id FROM {table} WHERE state = ?1 AND id < ?2 AND {finished} < ?3 ORDER BY id LIMIT ?4"
        );
        let (mut total, mut batches) = (0u64, 0u64);
        loop {
            let select = select.clone();
            let id_bound = id_bound.clone();
            let n = self
                .store
                .writer()
                .write_wait(move |tx| {
                    let ids: Vec<String> = tx
                        .prepare_cached(&select)?
                        .query_map(
                            params![state, id_bound, cutoff, RETENTION_BATCH as i64],
                            |r| r.get(0),
                        )?
                        .collect::<Result<_, _>>()?;
                    let mut delete =
                        tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?;
                    let mut attempts = if table == "deliveries" {
                        Some(tx.prepare_cached(
                            "DELETE FROM delivery_attempts WHERE delivery_id = ?1",
                        )?)
                    } else {
                        None
                    };
                    for id in &ids {
                        if let Some(a) = attempts.as_mut() {
                            a.execute([id])?;
                        }
                        delete.execute([id])?;
                    }
                    Ok::<_, StoreError>(ids.len())
                })
                .await?;
            total += n as u64;
            batches += 1;
            if n < RETENTION_BATCH {
                return Ok((total, batches));
            }
        }
    }

    /// Deletes events older than `cutoff` that no delivery refers to any more.
    async fn delete_events(&self, cutoff: Millis) -> Result<(u64, u64), StoreError> {
        let id_bound = ids::time_bound(ids::EVENT, cutoff);
        let (mut total, mut batches) = (0u64, 0u64);
        // Keyset over ids, so events kept for their failed deliveries are read once per run.
        let mut after = String::new();
        loop {
            let (bound, from) = (id_bound.clone(), after.clone());
            let (n, last) = self
                .store
                .writer()
                .write_wait(move |tx| {
                    let candidates: Vec<(String, bool)> = tx
                        .prepare_cached(
                            "SELECT id, EXISTS (SELECT 1 FROM deliveries WHERE event_id = events.id)
                             FROM events WHERE id > ?1 AND id < ?2 AND created_at < ?3 ORDER BY id LIMIT ?4",
                        )?
                        .query_map(params![from, bound, cutoff, RETENTION_BATCH as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
                    let mut n = 0usize;
                    for (id, referenced) in &candidates {
                        if !referenced {
                            n += delete.execute([id])?;
                        }
                    }
                    let last = (candidates.len() == RETENTION_BATCH)
                        .then(|| candidates.last().map(|(id, _)| id.clone()))
                        .flatten();
                    Ok::<_, StoreError>((n, last))
                })
                .await?;
            total += n as u64;
            batches += 1;
            match last {
                Some(l) => after = l,
                None => return Ok((total, batches)),
            }
        }
    }

    async fn front_sync(&self) -> Result<TaskReport, String> {
        let report = front::sync::run(
            &self.store,
            self.front.as_deref(),
            self.config.retention.succeeded,
        )
        .await?;
        Ok(TaskReport {
            rows_affected: report.rows_affected(),
            detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
        })
    }

    async fn db_maintenance(&self) -> Result<TaskReport, String> {
        let report = maintenance::run(&self.store)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TaskReport {
            rows_affected: 0,
            detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
        })
    }

    /// A snapshot into `backup.dir` (relative to the working directory, like `database.path`),
    /// keeping the newest `backup.keep`. The copy runs on a blocking thread with its own
    /// read-only connection, so writes go on meanwhile.
    async fn backup(&self) -> Result<TaskReport, String> {
        let db = self.store.path().to_path_buf();
        let (dir, keep) = (self.config.backup.dir.clone(), self.config.backup.keep);
        let report = tokio::task::spawn_blocking(move || backup::scheduled(&db, &dir, keep))
            .await
            .map_err(|e| format!("the backup task failed: {e}"))?
            .map_err(|e| crate::error::chain(&e))?;
        tracing::info!(path = %report.path.display(), bytes = report.bytes, removed = report.removed.len(), "backup written");
        Ok(TaskReport {
            rows_affected: report.rows_affected(),
            detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
        })
    }
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
