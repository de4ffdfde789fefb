//! A schedule's tick times: a 5-field (or 6-field, with seconds) cron expression read as wall
//! time in an IANA time zone, with the daylight-saving rules of the contract:
//! - a wall time that does not exist that day (the spring-forward gap) ticks at the first
//!   instant after the gap;
//! - a wall time that occurs twice (the fall-back overlap) ticks once, at its first occurrence.
//!
//! `croner` matches the expression against the zone's wall clock; each matching wall time is
//! then placed on the timeline here, so the rules hold for fixed times and intervals alike
//! (`*/15 * * * *` ticks once at 03:00 for the gap's 02:00–02:45, and not again in the
//! repeated hour).

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed schedule expression in its zone.
#[derive(Debug, Clone)]
pub struct Ticks {
    cron: croner::Cron,
    tz: Tz,
}

impl Ticks {
    /// Parses `expr` (5 fields, or 6 with seconds first) in the IANA zone `timezone`.
    ///
    /// # Errors
    /// A message naming what is wrong with the expression or the zone.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if fields != 5 && fields != 6 {
            return Err(format!(
                "`{expr}` has {fields} fields; write 5 (minute hour day month weekday) or 6 (with seconds first)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a cron expression: {e}"))?;
        let tz: Tz = timezone.parse().map_err(|_| {
            format!(
                "`{timezone}` is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)"
            )
        })?;
        let ticks = Self { cron, tz };
        // A pattern that can never match (`0 0 30 2 *`) would make every later search run to
        // croner's limit; refuse it here, once.
        if ticks.next_after(Utc::now()).is_none() {
            return Err(format!(
                "`{expr}` never ticks (no date matches it); check the day of month and the month"
            ));
        }
        Ok(ticks)
    }

    /// The zone.
    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instant a wall time stands for: itself; its first occurrence when it occurs twice;
    /// the first instant after the gap when it does not exist.
    fn instant_of(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // In a gap: the clock jumped over `wall` at some instant within a few hours of
                // `wall` read as UTC; find the first instant whose wall time is past it.
                let guess = Utc.from_utc_datetime(&wall);
                let (mut lo, mut hi) = (guess - Duration::hours(26), guess + Duration::hours(26));
                let past = |t: DateTime<Utc>| t.with_timezone(&self.tz).naive_local() >= wall;
                if !past(hi) {
                    return None;
                }
                while hi - lo > Duration::seconds(1) {
                    let mid = lo + (hi - lo) / 2;
                    if past(mid) {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                Some(hi.with_timezone(&Utc).with_nanosecond(0).unwrap_or(hi))
            }
        }
    }

    /// The first tick strictly after `after`.
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall times are matched on the zone's clock (read as if it had no transitions), then
        // placed: a wall time already ticked at an earlier instant (an overlap's second pass, a
        // gap's snapped ticks) is not after `after` and is passed over.
        // Ticks fall on whole seconds: match from the second `after` falls in.
        let local = after.with_timezone(&self.tz).naive_local();
        let mut wall = Utc.from_utc_datetime(&local.with_nanosecond(0).unwrap_or(local));
        for _ in 0..10_000 {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let at = self.instant_of(wall.naive_utc())?;
            if at > after {
                return Some(at);
            }
        }
        None
    }

    /// The next `n` ticks strictly after `after`.
    #[must_use]
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut from = after;
        while out.len() < n {
            match self.next_after(from) {
                Some(t) => {
                    out.push(t);
                    from = t;
                }
                None => break,
            }
        }
        out
    }

    /// The ticks in `(after, until]`, at most `limit` (the latest kept when more were due:
    /// catching up after an outage runs the latest tick, not a burst).
    #[must_use]
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::with_capacity(limit.min(64));
        let mut from = after;
        while let Some(t) = self.next_after(from) {
            if t > until {
                break;
            }
            if out.len() == limit {
                out.pop_front();
            }
            out.push_back(t);
            from = t;
        }
        out.into()
    }

    /// The latest tick in `(after, until]`, found from `until` backwards in widening windows,
    /// so a schedule that ticks every second and was down for a month costs a minute's ticks,
    /// not a month's.
    #[must_use]
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        const WINDOWS: [i64; 5] = [60, 3600, 86_400, 40 * 86_400, 400 * 86_400];
        for secs in WINDOWS {
            let from = (until - Duration::seconds(secs)).max(after);
            if let Some(t) = self.between(from, until, 1).pop() {
                return Some(t);
            }
            if from == after {
                return None;
            }
        }
        self.between(after, until, 1).pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn ticks(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        Ticks::parse(expr, tz)
            .expect("valid")
            .next_n(utc(after), n)
            .iter()
            .map(|t| t.with_timezone(&tz.parse::<Tz>().expect("tz")).to_rfc3339())
            .collect()
    }

    /// Computed tick lists across the transitions, as wall times with their offsets.
    #[test]
    fn daylight_saving_transitions() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            // Berlin springs forward 2026-03-29 02:00 → 03:00: 02:30 does not exist that day and
            // runs at the first instant after the gap.
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                &[
                    "2026-03-28T02:30:00+01:00",
                    "2026-03-29T03:00:00+02:00",
                    "2026-03-30T02:30:00+02:00",
                ],
            ),
            // Berlin falls back 2026-10-25 03:00 → 02:00: 02:30 occurs twice and runs once, first.
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2026-10-23T12:00:00Z",
                &[
                    "2026-10-24T02:30:00+02:00",
                    "2026-10-25T02:30:00+02:00",
                    "2026-10-26T02:30:00+01:00",
                ],
            ),
            // An interval pattern through the overlap: each wall time once.
            (
                "0,30 1-3 * * *",
                "Europe/Berlin",
                "2026-10-24T22:00:00Z",
                &[
                    "2026-10-25T01:00:00+02:00",
                    "2026-10-25T01:30:00+02:00",
                    "2026-10-25T02:00:00+02:00",
                    "2026-10-25T02:30:00+02:00",
                    "2026-10-25T03:00:00+01:00",
                    "2026-10-25T03:30:00+01:00",
                ],
            ),
            // New York springs forward 2026-03-08 02:00 → 03:00: 02:15 runs at 03:00.
            (
                "15 * * * *",
                "America/New_York",
                "2026-03-08T05:30:00Z",
                &[
                    "2026-03-08T01:15:00-05:00",
                    "2026-03-08T03:00:00-04:00",
                    "2026-03-08T03:15:00-04:00",
                ],
            ),
            // Every 15 minutes across the gap: the gap's four wall times tick once, at 03:00.
            (
                "*/15 * * * *",
                "America/New_York",
                "2026-03-08T06:40:00Z",
                &[
                    "2026-03-08T01:45:00-05:00",
                    "2026-03-08T03:00:00-04:00",
                    "2026-03-08T03:15:00-04:00",
                ],
            ),
            // New York falls back 2026-11-01 02:00 → 01:00: 01:15 once, at its first occurrence.
            (
                "15 * * * *",
                "America/New_York",
                "2026-11-01T04:10:00Z",
                &[
                    "2026-11-01T00:15:00-04:00",
                    "2026-11-01T01:15:00-04:00",
                    "2026-11-01T02:15:00-05:00",
                ],
            ),
            // Looking from inside the repeated hour (a restart at 01:20 EST): 01:15 already ran
            // at its first occurrence; the next tick is 02:15.
            (
                "15 * * * *",
                "America/New_York",
                "2026-11-01T06:20:00Z",
                &["2026-11-01T02:15:00-05:00"],
            ),
            // A 30-minute offset zone (no daylight saving): wall time, not UTC.
            (
                "0 9 * * 1-5",
                "Asia/Kolkata",
                "2026-12-04T00:00:00Z",
                &["2026-12-04T09:00:00+05:30", "2026-12-07T09:00:00+05:30"],
            ),
            // Lord Howe shifts by 30 minutes (2026-04-05 02:00 → 01:30): 01:45 once.
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-03T12:00:00Z",
                &[
                    "2026-04-04T01:45:00+11:00",
                    "2026-04-05T01:45:00+11:00",
                    "2026-04-06T01:45:00+10:30",
                ],
            ),
            // Six fields: seconds first.
            (
                "*/20 0 9 * * *",
                "UTC",
                "2026-12-01T08:59:59Z",
                &[
                    "2026-12-01T09:00:00+00:00",
                    "2026-12-01T09:00:20+00:00",
                    "2026-12-01T09:00:40+00:00",
                ],
            ),
        ];
        for (expr, tz, after, want) in cases {
            assert_eq!(
                ticks(expr, tz, after, want.len()),
                *want,
                "{expr} in {tz} after {after}"
            );
        }
    }

    #[test]
    fn catching_up_keeps_the_latest_tick() {
        let t = Ticks::parse("0 * * * *", "UTC").expect("valid");
        let missed = t.between(utc("2026-12-01T00:30:00Z"), utc("2026-12-01T05:10:00Z"), 1);
        assert_eq!(missed, vec![utc("2026-12-01T05:00:00Z")]);
        assert_eq!(
            t.between(utc("2026-12-01T00:30:00Z"), utc("2026-12-01T05:10:00Z"), 10)
                .len(),
            5
        );
        assert!(
            t.between(utc("2026-12-01T05:00:00Z"), utc("2026-12-01T05:10:00Z"), 1)
                .is_empty()
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        assert!(
            Ticks::parse("0 0 30 2 *", "UTC")
                .unwrap_err()
                .contains("never ticks")
        );
        // Day of month and day of week together match either (as cron does): this one ticks.
        assert!(Ticks::parse("0 0 29 2 1", "UTC").is_ok());
        assert!(
            Ticks::parse("* * * *", "UTC")
                .unwrap_err()
                .contains("4 fields")
        );
        assert!(
            Ticks::parse("61 * * * *", "UTC")
                .unwrap_err()
                .contains("not a cron expression")
        );
        assert!(
            Ticks::parse("0 * * * *", "Europe/Atlantis")
                .unwrap_err()
                .contains("IANA")
        );
    }
}

#[cfg(test)]
mod latest_tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn latest_between_finds_the_latest_tick_cheaply() {
        let every_second = Ticks::parse("* * * * * *", "UTC").expect("valid");
        // A month down: the latest tick, found without walking the month.
        assert_eq!(
            every_second
                .latest_between(utc("2026-11-01T00:00:00Z"), utc("2026-12-01T10:00:00.500Z")),
            Some(utc("2026-12-01T10:00:00Z"))
        );
        let yearly = Ticks::parse("0 0 1 1 *", "Europe/Berlin").expect("valid");
        assert_eq!(
            yearly.latest_between(utc("2020-06-01T00:00:00Z"), utc("2026-12-01T00:00:00Z")),
            Some(utc("2025-12-31T23:00:00Z"))
        );
        assert_eq!(
            yearly.latest_between(utc("2026-06-01T00:00:00Z"), utc("2026-12-01T00:00:00Z")),
            None
        );
        // The bound is exclusive below, inclusive above.
        let hourly = Ticks::parse("0 * * * *", "UTC").expect("valid");
        assert_eq!(
            hourly.latest_between(utc("2026-12-01T10:00:00Z"), utc("2026-12-01T10:59:59Z")),
            None
        );
        assert_eq!(
            hourly.latest_between(utc("2026-12-01T09:59:59Z"), utc("2026-12-01T11:00:00Z")),
            Some(utc("2026-12-01T11:00:00Z"))
        );
    }
}
