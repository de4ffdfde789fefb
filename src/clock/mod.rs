//! Wall-clock time as stored (UNIX milliseconds in SQLite) and as shown on the wire (RFC 3339 UTC
//! with millisecond precision and a `Z`).

pub mod ticks;

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the UNIX epoch, the unit of every time column in the database.
pub type Millis = i64;

/// The current time in UNIX milliseconds.
#[must_use]
pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

/// Formats stored milliseconds as RFC 3339 UTC, e.g. `2024-03-03T10:30:00.000Z`.
#[must_use]
pub fn to_rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time (any offset) into UNIX milliseconds.
///
/// # Errors
/// Returns the parser's message when `s` is not RFC 3339.
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

/// Parses an HTTP date (`Retry-After: Tue, 14 Nov 2023 22:13:40 GMT`) into UNIX milliseconds.
#[must_use]
pub fn parse_http_date(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Adds a duration to a time in milliseconds, saturating instead of overflowing.
#[must_use]
pub fn add(ms: Millis, d: std::time::Duration) -> Millis {
    ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(to_rfc3339(1_709_461_800_000), "2024-03-03T10:30:00.000Z");
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_any_offset() {
        assert_eq!(parse_rfc3339("2024-03-03T10:30:00Z"), Ok(1_709_461_800_000));
        assert_eq!(
            parse_rfc3339("2024-03-03T11:30:00+01:00"),
            Ok(1_709_461_800_000)
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
