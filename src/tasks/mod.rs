//! Tasks and schedules: HTTP calls hookrelay makes for the app, later and on schedules.
//!
//! Groundwork only so far: [`ticks`], the pure computation of a schedule's tick times in its
//! time zone with the daylight-saving rules. The task API, the call job, schedules' storage and
//! ticker, and the admin views are not built yet.

pub mod ticks;
