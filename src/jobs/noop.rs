//! `system.noop`: the built-in diagnostic job, for tests, benchmarks and operators checking that
//! workers run. Payload `{"sleep_ms": n, "fail_times": k, "snooze_until": "<RFC 3339>"}`, all
//! optional: it waits `sleep_ms`, fails its first `k` attempts, and before `snooze_until` asks to
//! run again then without spending an attempt.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{JobKind, JobResult, JobRun, Outcome};
use crate::clock;

/// The kind's name.
pub const KIND: &str = "system.noop";
/// The longest sleep a payload may ask for.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    snooze_until: Option<String>,
}

fn parse(v: &Value) -> Result<(Payload, Option<i64>), String> {
    let p: Payload = if v.is_null() {
        Payload::default()
    } else {
        serde_json::from_value(v.clone())
            .map_err(|e| format!("invalid system.noop payload: {e}"))?
    };
    if Duration::from_millis(p.sleep_ms) > MAX_SLEEP {
        return Err(format!("sleep_ms may be at most {}", MAX_SLEEP.as_millis()));
    }
    let snooze = p
        .snooze_until
        .as_deref()
        .map(clock::parse_rfc3339)
        .transpose()?;
    Ok((p, snooze))
}

async fn run(job: JobRun) -> JobResult {
    let (p, snooze_until) = match parse(&job.payload) {
        Ok(p) => p,
        Err(e) => return JobResult::fail(e),
    };
    if let Some(at) = snooze_until
        && clock::now_ms() < at
    {
        return Outcome::RunAgainAt {
            at,
            reason: "snoozing until snooze_until".into(),
        }
        .into();
    }
    if p.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
    }
    if job.attempt <= p.fail_times {
        return JobResult::retry(format!(
            "failing on purpose: attempt {} of the first {} that fail",
            job.attempt, p.fail_times
        ));
    }
    JobResult::succeeded()
}

/// The kind, operator-enqueueable.
#[must_use]
pub fn kind() -> JobKind {
    JobKind {
        name: KIND,
        handler: Arc::new(|job| Box::pin(run(job))),
        max_attempts: super::DEFAULT_MAX_ATTEMPTS,
        operator_enqueueable: Some(Arc::new(|v| parse(v).map(|_| ()))),
        on_dead: None,
        managed_by: None,
    }
}
