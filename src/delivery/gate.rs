//! Keeps failing endpoints from taking every job worker — and their backlog from costing writes.
//!
//! An endpoint whose latest attempt answered 2xx (within `delivery.timeout`: a success, however
//! slow) may have any number of attempts in flight. Any other one — new, failing, timing out,
//! trickling its answer, closing the connection — at most [`UNPROVEN_IN_FLIGHT`].
//!
//! A delivery to an endpoint at its cap is not attempted: its job is *parked* on the endpoint
//! (`jobs::Outcome::Park`, no attempt spent) and is not due again until an attempt to that
//! endpoint finishes and wakes the next one (`jobs::unpark`, in the same commit that records the
//! attempt), or the sweeper ([`super::send::sweep_parked`]) finds the endpoint idle. So however
//! many deliveries wait for a broken receiver, they hold at most two workers and cost writes in
//! proportion to the attempts made — waiting deliveries are not re-claimed in a loop.
//!
//! The state is per process and in memory: after a restart every endpoint starts unproven, the
//! sweeper wakes one parked job per idle endpoint, and its first 2xx lifts the cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{self, Millis};

/// Attempts in flight to an endpoint whose latest attempt did not answer 2xx.
pub const UNPROVEN_IN_FLIGHT: usize = 2;
/// The shortest time between two attempts to an endpoint not proven healthy: a receiver that
/// fails fast cannot make its backlog spin through attempts as fast as the CPU allows.
pub const MIN_SPACING: Duration = Duration::from_millis(100);
/// Parked deliveries woken at once for an endpoint proven healthy (each success then wakes two
/// more, so a recovered endpoint's backlog ramps up quickly without a thundering herd).
pub const PROVEN_BURST: usize = 32;

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    /// The latest attempt answered 2xx.
    proven: bool,
    /// Moving average of attempt time, in ms.
    latency_ms: f64,
    /// An endpoint not proven healthy starts no attempt before this time.
    next_start: Millis,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            in_flight: 0,
            proven: false,
            latency_ms: 0.0,
            next_start: 0,
        }
    }
}

impl Endpoint {
    fn cap(&self) -> usize {
        if self.proven {
            usize::MAX
        } else {
            UNPROVEN_IN_FLIGHT
        }
    }

    /// Between two attempts to an endpoint not proven healthy: its average attempt time spread
    /// over its cap, at least [`MIN_SPACING`] — about the pace it can take them.
    fn spacing(&self) -> Duration {
        let per_slot = self.latency_ms / 1000.0 / UNPROVEN_IN_FLIGHT as f64;
        Duration::from_secs_f64(per_slot.max(0.0)).max(MIN_SPACING)
    }
}

/// In-flight attempts and health per webhook (bounded by the number of webhooks).
#[derive(Debug, Default)]
pub struct Gate {
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

/// One attempt in flight; dropping it ends the attempt (also on panic or cancellation).
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    webhook_id: String,
}

/// What [`Gate::enter`] decided.
#[derive(Debug)]
pub enum Entry {
    Go(Pass),
    /// At its cap: park until an attempt to it finishes.
    Busy,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass for one attempt to `webhook_id`, or [`Entry::Busy`] when it is at its cap.
    #[must_use]
    pub fn enter(self: &Arc<Self>, webhook_id: &str) -> Entry {
        let mut endpoints = self.lock();
        let e = endpoints.entry(webhook_id.to_string()).or_default();
        let now = clock::now_ms();
        if e.in_flight < e.cap() && (e.proven || now >= e.next_start) {
            e.in_flight += 1;
            if !e.proven {
                e.next_start = clock::add(now, e.spacing());
            }
            return Entry::Go(Pass {
                gate: Arc::clone(self),
                webhook_id: webhook_id.to_string(),
            });
        }
        Entry::Busy
    }

    /// Attempts in flight to `webhook_id` (tests, metrics).
    #[must_use]
    pub fn in_flight(&self, webhook_id: &str) -> usize {
        self.lock().get(webhook_id).map_or(0, |e| e.in_flight)
    }

    /// How many parked deliveries to wake for an endpoint with nothing in flight: up to its cap
    /// ([`PROVEN_BURST`] when proven). None while an attempt is in flight — its end wakes the next.
    #[must_use]
    pub fn to_wake_when_idle(&self, webhook_id: &str) -> usize {
        let endpoints = self.lock();
        match endpoints.get(webhook_id) {
            Some(e) if e.in_flight > 0 => 0,
            Some(e) if e.proven => PROVEN_BURST,
            _ => UNPROVEN_IN_FLIGHT,
        }
    }
}

/// Which parked deliveries a finished attempt wakes: how many, and when they are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub count: usize,
    pub at: Millis,
}

impl Pass {
    /// Records whether the attempt got a 2xx and how long it took; returns which parked
    /// deliveries of this endpoint it should wake: two, now, after a success (a recovering
    /// endpoint ramps up); one, at the endpoint's next start, after a failure (it keeps at most
    /// its cap busy, at its pace).
    pub fn finish(self, success: bool, took: Duration) -> Wake {
        let mut endpoints = self.gate.lock();
        let now = clock::now_ms();
        let Some(e) = endpoints.get_mut(&self.webhook_id) else {
            return Wake { count: 1, at: now };
        };
        e.proven = success;
        let ms = took.as_secs_f64() * 1000.0;
        e.latency_ms = if e.latency_ms == 0.0 {
            ms
        } else {
            0.8 * e.latency_ms + 0.2 * ms
        };
        if success {
            Wake { count: 2, at: now }
        } else {
            Wake {
                count: 1,
                at: e.next_start.max(now),
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(e) = self.gate.lock().get_mut(&self.webhook_id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(e: Entry) -> Pass {
        match e {
            Entry::Go(p) => p,
            Entry::Busy => panic!("expected a pass"),
        }
    }

    fn busy(e: Entry) {
        assert!(matches!(e, Entry::Busy), "expected to be at the cap");
    }

    #[test]
    fn caps_follow_the_last_answer() {
        let gate = Arc::new(Gate::default());
        let a = go(gate.enter("wh_a"));
        std::thread::sleep(MIN_SPACING);
        let b = go(gate.enter("wh_a"));
        std::thread::sleep(MIN_SPACING);
        busy(gate.enter("wh_a")); // at its cap of two
        let _other = go(gate.enter("wh_b"));
        assert_eq!(
            a.finish(true, Duration::from_millis(5)).count,
            2,
            "a success wakes two"
        );
        let many: Vec<Pass> = (0..20).map(|_| go(gate.enter("wh_a"))).collect();
        assert_eq!(gate.in_flight("wh_a"), 21, "a 2xx, however slow: no cap");
        drop(many);
        let wake = b.finish(false, Duration::from_millis(400));
        assert_eq!(wake.count, 1, "a failure wakes one");
        std::thread::sleep(MIN_SPACING);
        let _c = go(gate.enter("wh_a"));
        busy(gate.enter("wh_a")); // paced: not before the next start
        assert!(wake.at <= clock::now_ms() + 1000);
    }

    #[test]
    fn failing_endpoints_are_paced() {
        let gate = Arc::new(Gate::default());
        let a = go(gate.enter("wh_a"));
        busy(gate.enter("wh_a")); // within MIN_SPACING of the first start
        let wake = a.finish(false, Duration::from_millis(1));
        assert!(wake.at >= clock::now_ms(), "woken at its next start");
        std::thread::sleep(MIN_SPACING);
        let _b = go(gate.enter("wh_a"));
    }

    #[test]
    fn idle_endpoints_are_woken_up_to_their_cap() {
        let gate = Arc::new(Gate::default());
        assert_eq!(gate.to_wake_when_idle("wh_new"), UNPROVEN_IN_FLIGHT);
        let p = go(gate.enter("wh_a"));
        assert_eq!(gate.to_wake_when_idle("wh_a"), 0, "its end wakes the next");
        p.finish(true, Duration::from_millis(1));
        assert_eq!(gate.to_wake_when_idle("wh_a"), PROVEN_BURST);
    }
}
