//! `retention`: deletes finished rows past `retention.*`, [`BATCH`] rows per transaction through
//! the writer, each table through its owner — succeeded and cancelled jobs, deliveries (their
//! attempts go with them) and processed inbound events after `retention.succeeded`; dead jobs,
//! failed deliveries and failed inbound events after `retention.failed`; events no delivery
//! refers to any more; old cron runs; inbound dedupe keys after 30 days (or the longest
//! retention). Never a full `VACUUM`: freed pages are reused.

use serde_json::{Map, Value, json};

use crate::clock::{self, Millis};
use crate::config::RetentionConfig;
use crate::delivery::store::DeliveryState;
use crate::jobs::JobState;
use crate::jobs::periodic::{TaskReport, TaskSpec};
use crate::store::{Store, StoreError, WriteTx};
use crate::{cron, delivery, events, inbound, jobs};

/// The periodic task.
pub const SPEC: TaskSpec = TaskSpec {
    name: "retention",
    kind: "cron.retention",
    default_schedule: "0 17 * * * *",
    describe: "delete finished jobs, deliveries, events, inbound events and rejected requests past retention.*",
};

/// Rows deleted per transaction: small enough that other writes wait at most a few
/// milliseconds behind one.
pub const BATCH: usize = 2000;

fn millis(d: std::time::Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `prune` in transactions of [`BATCH`] rows until fewer are left; returns (rows, transactions).
async fn in_batches<F>(store: &Store, prune: F) -> Result<(u64, u64), StoreError>
where
    F: Fn(&WriteTx<'_>) -> crate::sql::Result<usize> + Send + Sync + Clone + 'static,
{
    let (mut total, mut batches) = (0u64, 0u64);
    loop {
        let p = prune.clone();
        let n = store
            .writer()
            .write_wait(move |tx| Ok::<_, StoreError>(p(tx)?))
            .await?;
        total += n as u64;
        batches += 1;
        if n < BATCH {
            return Ok((total, batches));
        }
    }
}

/// One run.
///
/// # Errors
/// A storage error.
pub async fn run(
    store: &Store,
    retention: &RetentionConfig,
    longest_window: std::time::Duration,
) -> Result<TaskReport, StoreError> {
    let now = clock::now_ms();
    let ok = now - millis(retention.succeeded);
    let bad = now - millis(retention.failed);
    let mut detail = Map::new();
    let (mut total, mut batches) = (0u64, 0u64);
    let mut note = |table: &str, state: &str, n: u64, b: u64, detail: &mut Map<String, Value>| {
        total += n;
        batches += b;
        let e = detail.entry(table).or_insert_with(|| json!({}));
        e[state] = json!(n);
    };
    for (state, cutoff) in [
        (JobState::Succeeded, ok),
        (JobState::Cancelled, ok),
        (JobState::Dead, bad),
    ] {
        let (n, b) = in_batches(store, move |tx| {
            jobs::queue::prune(tx, state, cutoff, BATCH)
        })
        .await?;
        note("jobs", state.as_str(), n, b, &mut detail);
    }
    for (state, cutoff) in [
        (DeliveryState::Succeeded, ok),
        (DeliveryState::Cancelled, ok),
        (DeliveryState::Failed, bad),
    ] {
        let (n, b) = in_batches(store, move |tx| {
            delivery::store::prune(tx, state, cutoff, BATCH)
        })
        .await?;
        note("deliveries", state.as_str(), n, b, &mut detail);
    }
    for (state, cutoff) in [("processed", ok), ("failed", bad)] {
        let (n, b) = in_batches(store, move |tx| {
            inbound::store::prune(tx, state, cutoff, BATCH)
        })
        .await?;
        note("inbound_events", state, n, b, &mut detail);
    }
    let (tasks, b) = in_batches(store, move |tx| {
        crate::tasks::store::prune(tx, ok, bad, BATCH)
    })
    .await?;
    total += tasks;
    batches += b;
    detail.insert("tasks".into(), json!(tasks));
    // Dedupe keys outlive the inbound rows: at least 30 days, or the longest retention or
    // idempotency window.
    let keys_cutoff = now
        - millis(
            inbound::store::KEY_MEMORY
                .max(retention.succeeded)
                .max(retention.failed)
                .max(longest_window),
        );
    let (keys, b) = in_batches(store, move |tx| {
        inbound::store::forget_keys(tx, keys_cutoff, BATCH)
    })
    .await?;
    total += keys;
    batches += b;
    detail.insert("inbound_keys".into(), json!(keys));
    let rejected_cutoff = now - millis(retention.rejected);
    let (rejected, b) = in_batches(store, move |tx| {
        inbound::store::prune_rejected(tx, rejected_cutoff, BATCH)
    })
    .await?;
    total += rejected;
    batches += b;
    detail.insert("inbound_rejected".into(), json!(rejected));
    let (n, b) = delete_events(store, ok).await?;
    total += n;
    batches += b;
    detail.insert("events".into(), json!(n));
    let runs = store
        .writer()
        .write_wait(move |tx| Ok::<_, StoreError>(cron::store::prune(tx, ok, bad)?))
        .await?;
    total += runs as u64;
    detail.insert("cron_runs".into(), json!(runs));
    detail.insert("transactions".into(), json!(batches + 1));
    Ok(TaskReport {
        rows_affected: total,
        detail: Value::Object(detail),
    })
}

/// Deletes events older than `cutoff` that no delivery refers to any more, walking them in id
/// order so events kept for their deliveries are read once per run.
async fn delete_events(store: &Store, cutoff: Millis) -> Result<(u64, u64), StoreError> {
    let (mut total, mut batches) = (0u64, 0u64);
    let mut after = String::new();
    loop {
        let from = after.clone();
        let (n, last) = store
            .writer()
            .write_wait(move |tx| {
                let candidates = events::store::older_than(tx, cutoff, &from, BATCH)?;
                let referenced = delivery::store::referenced_events(tx, &candidates)?;
                let unreferenced: Vec<String> = candidates
                    .iter()
                    .filter(|id| !referenced.contains(id))
                    .cloned()
                    .collect();
                let n = events::store::delete(tx, &unreferenced)?;
                let last = (candidates.len() == BATCH)
                    .then(|| candidates.last().cloned())
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
