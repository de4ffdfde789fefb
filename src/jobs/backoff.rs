//! Retry timing for jobs: exponential backoff with jitter, as a pure function.

use std::time::Duration;

/// Wait before the first retry, before jitter.
pub const BASE: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const CAP: Duration = Duration::from_secs(3600);

/// How long to wait after failed attempt number `attempt` (1-based) before the next one.
///
/// The nominal wait doubles with every attempt (`BASE`, `2×BASE`, `4×BASE`, …, at most `CAP`);
/// "equal jitter" then picks a point in its upper half, `nominal × (1 + jitter) / 2`, so retries
/// of many jobs that failed together spread out but never come sooner than half the nominal wait.
/// `jitter` is a random number in `[0, 1]`, passed in so the function stays pure.
#[must_use]
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    let nominal = BASE.saturating_mul(1u32 << exp).min(CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    nominal.mul_f64((1.0 + jitter) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let table = [
            (1, 0.0, 500),
            (1, 1.0, 1_000),
            (2, 1.0, 2_000),
            (3, 0.5, 3_000),
            (4, 1.0, 8_000),
            (12, 1.0, 2_048_000),
            (13, 1.0, 3_600_000),
            (40, 1.0, 3_600_000),
            (40, 0.0, 1_800_000),
        ];
        for (attempt, jitter, millis) in table {
            assert_eq!(
                backoff(attempt, jitter),
                Duration::from_millis(millis),
                "attempt {attempt} jitter {jitter}"
            );
        }
    }

    #[test]
    fn attempt_zero_and_bad_jitter_are_safe() {
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(1, f64::NAN), Duration::from_millis(500));
        assert_eq!(backoff(1, 7.0), Duration::from_secs(1));
    }
}
