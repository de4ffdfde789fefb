//! Keeps slow or failing endpoints from taking every job worker.
//!
//! An endpoint is *proven* once its latest attempt succeeded within [`SLOW_ATTEMPT`]. A proven
//! endpoint may have any number of attempts in flight; any other one — new, failing, timing out,
//! trickling its answer — at most [`UNPROVEN_IN_FLIGHT`]. A delivery to an endpoint at its cap
//! is not attempted: its job runs again after [`DEFER`] (plus jitter) without spending an
//! attempt. So however many deliveries wait for broken receivers, they hold at most
//! `UNPROVEN_IN_FLIGHT` workers per broken endpoint, and the rest keep delivering to healthy
//! ones at full rate.
//!
//! The state is per process and in memory: after a restart every endpoint starts unproven, and
//! one fast success lifts its cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Attempts in flight to one endpoint that is not proven healthy.
pub const UNPROVEN_IN_FLIGHT: usize = 2;
/// An attempt slower than this does not prove an endpoint healthy.
pub const SLOW_ATTEMPT: Duration = Duration::from_secs(1);
/// How long a delivery held back by the cap waits before it is tried again (plus up to half of
/// it in jitter).
pub const DEFER: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Endpoint {
    in_flight: usize,
    proven: bool,
}

/// In-flight attempts and health per webhook.
#[derive(Debug, Default)]
pub struct Gate {
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

/// One attempt in flight; dropping it ends the attempt.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    webhook_id: String,
}

impl Gate {
    /// A pass for one attempt to `webhook_id`, or `None` when it is at its cap.
    #[must_use]
    pub fn enter(self: &Arc<Self>, webhook_id: &str) -> Option<Pass> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let e = endpoints.entry(webhook_id.to_string()).or_default();
        if !e.proven && e.in_flight >= UNPROVEN_IN_FLIGHT {
            return None;
        }
        e.in_flight += 1;
        Some(Pass {
            gate: Arc::clone(self),
            webhook_id: webhook_id.to_string(),
        })
    }

    /// Attempts in flight to `webhook_id` (tests, metrics).
    #[must_use]
    pub fn in_flight(&self, webhook_id: &str) -> usize {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(webhook_id)
            .map_or(0, |e| e.in_flight)
    }
}

impl Pass {
    /// Records how the attempt went: `fast_success` proves the endpoint, anything else does not.
    pub fn finish(self, fast_success: bool) {
        let mut endpoints = self
            .gate
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = endpoints.get_mut(&self.webhook_id) {
            e.proven = fast_success;
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut endpoints = self
            .gate
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = endpoints.get_mut(&self.webhook_id) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.in_flight == 0 && !e.proven {
                endpoints.remove(&self.webhook_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unproven_endpoint_gets_two_attempts_in_flight_a_proven_one_any_number() {
        let gate = Arc::new(Gate::default());
        let a = gate.enter("wh_a").expect("first");
        let b = gate.enter("wh_a").expect("second");
        assert!(gate.enter("wh_a").is_none(), "unproven: capped at 2");
        assert!(
            gate.enter("wh_b").is_some(),
            "other endpoints are not affected"
        );
        a.finish(true);
        let many: Vec<Pass> = (0..20)
            .map(|_| gate.enter("wh_a").expect("proven"))
            .collect();
        assert_eq!(gate.in_flight("wh_a"), 21);
        drop(many);
        b.finish(false);
        assert_eq!(gate.in_flight("wh_a"), 0);
        let _c = gate.enter("wh_a").expect("one");
        let _d = gate.enter("wh_a").expect("two");
        assert!(
            gate.enter("wh_a").is_none(),
            "a failure (or slow success) caps it again"
        );
    }
}
