//! Keeps failing endpoints from taking every job worker.
//!
//! An endpoint whose latest attempt answered 2xx (within `delivery.timeout`: a success, however
//! slow) may have any number of attempts in flight. Any other one — new, failing, timing out,
//! trickling its answer, closing the connection — at most [`UNPROVEN_IN_FLIGHT`].
//!
//! A delivery to an endpoint at its cap is not attempted: its job runs again later without
//! spending an attempt. The later time is the endpoint's next free *slot*: slots are handed out
//! one after another, spaced by the endpoint's average attempt time divided by the cap, so the
//! deliveries waiting for one endpoint come back at about the rate it can take them, and never
//! more than [`MAX_DEFER`] ahead (so they are not stranded for long once it answers again).
//! However many deliveries wait for broken receivers, they hold at most two workers per broken
//! endpoint; the rest of the workers keep delivering to the others at full rate.
//!
//! The state is per process and in memory: after a restart every endpoint starts unproven, and
//! its first 2xx lifts the cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{self, Millis};

/// Attempts in flight to an endpoint whose latest attempt did not answer 2xx.
pub const UNPROVEN_IN_FLIGHT: usize = 2;
/// The longest a delivery held back by the cap is deferred at once.
pub const MAX_DEFER: Duration = Duration::from_secs(10);
/// The shortest spacing of slots.
const MIN_SPACING: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    /// The latest attempt answered 2xx.
    proven: bool,
    /// Moving average of attempt time, in ms.
    latency_ms: f64,
    /// The latest slot handed out.
    next_slot: Millis,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            in_flight: 0,
            proven: false,
            latency_ms: 1000.0,
            next_slot: 0,
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
    /// At its cap: try again at this time.
    Wait(Millis),
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass for one attempt to `webhook_id`, or the time to come back when it is at its cap.
    #[must_use]
    pub fn enter(self: &Arc<Self>, webhook_id: &str) -> Entry {
        let mut endpoints = self.lock();
        if !endpoints.contains_key(webhook_id) {
            endpoints.insert(webhook_id.to_string(), Endpoint::default());
        }
        let Some(e) = endpoints.get_mut(webhook_id) else {
            return Entry::Wait(clock::now_ms());
        };
        if e.in_flight < e.cap() {
            e.in_flight += 1;
            return Entry::Go(Pass {
                gate: Arc::clone(self),
                webhook_id: webhook_id.to_string(),
            });
        }
        let now = clock::now_ms();
        let cap = u32::try_from(e.cap()).unwrap_or(u32::MAX).max(1);
        let spacing = Duration::from_secs_f64(e.latency_ms.max(1.0) / 1000.0 / f64::from(cap))
            .max(MIN_SPACING);
        let slot = clock::add(e.next_slot.max(now), spacing).min(clock::add(now, MAX_DEFER));
        e.next_slot = slot;
        Entry::Wait(slot)
    }

    /// Attempts in flight to `webhook_id` (tests, metrics).
    #[must_use]
    pub fn in_flight(&self, webhook_id: &str) -> usize {
        self.lock().get(webhook_id).map_or(0, |e| e.in_flight)
    }
}

impl Pass {
    /// Records how the attempt went: whether it got a 2xx, and how long it took.
    pub fn finish(self, success: bool, took: Duration) {
        let mut endpoints = self.gate.lock();
        if let Some(e) = endpoints.get_mut(&self.webhook_id) {
            e.proven = success;
            let ms = took.as_secs_f64() * 1000.0;
            e.latency_ms = 0.8 * e.latency_ms + 0.2 * ms;
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
            Entry::Wait(at) => panic!("expected a pass, got wait until {at}"),
        }
    }

    fn wait(e: Entry) -> Millis {
        match e {
            Entry::Wait(at) => at,
            Entry::Go(_) => panic!("expected to wait"),
        }
    }

    #[test]
    fn caps_follow_the_last_answer() {
        let gate = Arc::new(Gate::default());
        let a = go(gate.enter("wh_a"));
        let b = go(gate.enter("wh_a"));
        wait(gate.enter("wh_a"));
        let _other = go(gate.enter("wh_b"));
        a.finish(true, Duration::from_millis(2500));
        let many: Vec<Pass> = (0..20).map(|_| go(gate.enter("wh_a"))).collect();
        assert_eq!(gate.in_flight("wh_a"), 21, "a 2xx, however slow: no cap");
        drop(many);
        b.finish(false, Duration::from_secs(3));
        let _c = go(gate.enter("wh_a"));
        let _d = go(gate.enter("wh_a"));
        wait(gate.enter("wh_a"));
    }

    #[test]
    fn waiting_deliveries_get_successive_slots_within_ten_seconds() {
        let gate = Arc::new(Gate::default());
        let p1 = go(gate.enter("wh_a"));
        let p2 = go(gate.enter("wh_a"));
        // It times out at 3 s: slots spaced by its average attempt time over its cap of 2.
        p1.finish(false, Duration::from_secs(3));
        let _p3 = go(gate.enter("wh_a"));
        let now = clock::now_ms();
        let slots: Vec<Millis> = (0..200).map(|_| wait(gate.enter("wh_a"))).collect();
        assert!(slots.windows(2).all(|w| w[1] >= w[0]), "in order");
        assert!(
            slots[1] - slots[0] >= 500,
            "spaced by the endpoint's pace: {slots:?}"
        );
        assert!(
            slots.iter().all(|s| *s <= now + 11_000),
            "never more than ten seconds ahead"
        );
        drop(p2);
    }
}
