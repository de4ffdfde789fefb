//! Prefixed, time-sortable identifiers: `job_01J…`, `evt_01J…`, `dlv_01J…`.
//!
//! The part after the prefix is a ULID, so ids sort by creation time; list endpoints page on them.

use ulid::Ulid;

/// Id prefix of jobs.
pub const JOB: &str = "job";
/// Id prefix of audit records.
pub const AUDIT: &str = "aud";

/// A new id `<prefix>_<ULID>`.
#[must_use]
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Ulid::generate())
}

/// Whether `id` has the form `<prefix>_<ULID>`; used to answer 404 early for malformed ids.
#[must_use]
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| Ulid::from_string(ulid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_sort_by_time() {
        let a = new_id(JOB);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(JOB);
        assert!(a.starts_with("job_") && a.len() == 30);
        assert!(a < b);
        assert!(is_valid(JOB, &a));
        assert!(!is_valid(JOB, "job_nope"));
        assert!(!is_valid("evt", &a));
    }
}
