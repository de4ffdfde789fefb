//! `endpoint_health`: disables every enabled webhook whose attempts have all failed over at
//! least `delivery.auto_disable_after` — failing since longer than that, and still failing at the
//! end of it (one failure followed by silence is not enough). A success resets the clock (see
//! `super::send`).

use std::time::Duration;

use serde_json::json;

use super::{store, webhooks};
use crate::clock;
use crate::events::Publisher;
use crate::jobs::periodic::{TaskReport, TaskSpec};
use crate::store::{Store, StoreError};

/// The periodic task.
pub const SPEC: TaskSpec = TaskSpec {
    name: "endpoint_health",
    kind: "cron.endpoint_health",
    default_schedule: "0 */5 * * * *",
    describe: "disable webhooks whose deliveries all failed for delivery.auto_disable_after",
};

/// One run.
///
/// # Errors
/// A storage error.
pub async fn run(
    store: &Store,
    publisher: &Publisher,
    after: Duration,
) -> Result<TaskReport, StoreError> {
    let publisher = publisher.clone();
    let span = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let disabled = store
        .writer()
        .write_wait(move |tx| {
            let now = clock::now_ms();
            let mut disabled = Vec::new();
            for (id, since) in store::failing_since(tx, now - span, span)? {
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
