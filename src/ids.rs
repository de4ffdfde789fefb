//! Prefixed, time-sortable identifiers: `job_01J…`, `evt_01J…`, `dlv_01J…`.
//!
//! The part after the prefix is a ULID, so ids sort by creation time; list endpoints page on them.

use std::sync::{Mutex, PoisonError};

use ulid::{Generator, Ulid};

/// One generator for the process, so ids made in the same millisecond still sort in creation
/// order (lists page on ids, newest first).
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// Id prefix of jobs.
pub const JOB: &str = "job";
/// Id prefix of received (inbound) events.
pub const INBOUND: &str = "rcv";
/// Id prefix of published events.
pub const EVENT: &str = "evt";
/// Id prefix of webhook endpoints.
pub const WEBHOOK: &str = "wh";
/// Id prefix of deliveries.
pub const DELIVERY: &str = "dlv";
/// Id prefix of audit records.
pub const AUDIT: &str = "aud";
/// Id prefix of rejected inbound requests.
pub const REJECTED: &str = "rej";

/// A new id `<prefix>_<ULID>`.
#[must_use]
pub fn new_id(prefix: &str) -> String {
    let ulid = GENERATOR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .generate()
        // Only after 2^80 ids in one millisecond; a plain random ULID is still unique.
        .unwrap_or_else(|_| Ulid::generate());
    format!("{prefix}_{ulid}")
}

/// The smallest id with `prefix` made at `at` (ms): every id made before `at` sorts below it.
#[must_use]
pub fn time_bound(prefix: &str, at: i64) -> String {
    let ms = u64::try_from(at).unwrap_or(0);
    format!("{prefix}_{}", Ulid::from_parts(ms, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_sort_by_creation() {
        let millis = || {
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
            )
            .unwrap_or(0)
        };
        // Read the clock right before `a` is made: generating the other ids may take longer
        // than a millisecond on a busy machine.
        let now = millis();
        let a = new_id(JOB);
        let ids: Vec<String> = (0..1000).map(|_| new_id(JOB)).collect();
        assert!(a.starts_with("job_") && a.len() == 30);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "monotonic within a millisecond"
        );
        assert!(time_bound(JOB, now - 1) < a, "made before: below the bound");
        assert!(
            time_bound(JOB, now + 1000) > a,
            "made after: above the bound"
        );
    }
}
