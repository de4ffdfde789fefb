//! Keeps slow or failing endpoints from taking every job worker.
//!
//! Each endpoint is in one of three states, by its latest attempt:
//! - **healthy** — answered 2xx within [`SLOW_ATTEMPT`]: any number of attempts in flight;
//! - **slow** — answered 2xx, but slower: at most [`SLOW_IN_FLIGHT`];
//! - **unproven** — new, failing, timing out, trickling its answer: at most
//!   [`UNPROVEN_IN_FLIGHT`].
//!
//! A delivery to an endpoint at its cap is not attempted: its job runs again later without
//! spending an attempt. The later time is the endpoint's next free *slot*: slots are handed out
//! one after another, spaced by the endpoint's average attempt time divided by its cap, so the
//! deliveries waiting for one endpoint come back at about the rate it can take them — each once,
//! not all of them every few seconds — and never more than [`MAX_DEFER`] ahead (so they are not
//! stranded when it recovers). However many deliveries wait for broken receivers, they hold at
//! most a couple of workers per broken endpoint and cost about one job run per slot; the rest of
//! the workers keep delivering to healthy endpoints at full rate.
//!
//! The state is per process and in memory: after a restart every endpoint starts unproven, and
//! one fast success lifts its cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{self, Millis};

/// Attempts in flight to an endpoint that is not known to answer 2xx.
pub const UNPROVEN_IN_FLIGHT: usize = 2;
/// Attempts in flight to an endpoint that answers 2xx, but slowly.
pub const SLOW_IN_FLIGHT: usize = 8;
/// An attempt slower than this makes an endpoint *slow*, not healthy.
pub const SLOW_ATTEMPT: Duration = Duration::from_secs(1);
/// The longest a delivery held back by the cap is deferred at once.
pub const MAX_DEFER: Duration = Duration::from_secs(60);
/// The shortest spacing of slots.
const MIN_SPACING: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Unproven,
    Slow,
    Healthy,
}

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    health: Health,
    /// Moving average of attempt time, in ms.
    latency_ms: f64,
    /// The latest slot handed out.
    next_slot: Millis,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            in_flight: 0,
            health: Health::Unproven,
            latency_ms: 1000.0,
            next_slot: 0,
        }
    }
}

impl Endpoint {
    fn cap(&self) -> usize {
        match self.health {
            Health::Unproven => UNPROVEN_IN_FLIGHT,
            Health::Slow => SLOW_IN_FLIGHT,
            Health::Healthy => usize::MAX,
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
        let e = endpoints.entry(webhook_id.to_string()).or_default();
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
            e.health = match (success, took < SLOW_ATTEMPT) {
                (true, true) => Health::Healthy,
                (true, false) => Health::Slow,
                (false, _) => Health::Unproven,
            };
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
        a.finish(true, Duration::from_millis(5));
        let many: Vec<Pass> = (0..20).map(|_| go(gate.enter("wh_a"))).collect();
        assert_eq!(gate.in_flight("wh_a"), 21, "healthy: no cap");
        drop(many);
        b.finish(true, Duration::from_millis(1500));
        let slow: Vec<Pass> = (0..SLOW_IN_FLIGHT)
            .map(|_| go(gate.enter("wh_a")))
            .collect();
        wait(gate.enter("wh_a"));
        drop(slow);
        go(gate.enter("wh_a")).finish(false, Duration::from_secs(3));
        let _c = go(gate.enter("wh_a"));
        let _d = go(gate.enter("wh_a"));
        wait(gate.enter("wh_a"));
    }

    #[test]
    fn waiting_deliveries_get_successive_slots_within_a_minute() {
        let gate = Arc::new(Gate::default());
        let p1 = go(gate.enter("wh_a"));
        let p2 = go(gate.enter("wh_a"));
        // It times out at 3 s: slots spaced by its average attempt time over its cap of 2.
        p1.finish(false, Duration::from_secs(3));
        let now = clock::now_ms();
        let slots: Vec<Millis> = (0..200).map(|_| wait(gate.enter("wh_a"))).collect();
        assert!(slots.windows(2).all(|w| w[1] >= w[0]), "in order");
        assert!(
            slots[1] - slots[0] >= 500,
            "spaced by the endpoint's pace: {slots:?}"
        );
        assert!(
            slots.iter().all(|s| *s <= now + 61_000),
            "never more than a minute ahead"
        );
        drop(p2);
    }
}
