//! The common end of every ingress route: a verified event stored with its processing job
//! ([`accept`]), and what ingress did with each request, per sender: refused requests recorded (at most
//! [`PER_MINUTE`] stored per sender per minute, the rest only counted, so a flood of forged
//! requests costs a bounded number of writes), and counts of received / duplicate / rejected
//! over the last hour and day for the sources view.
//!
//! The counts live in memory; at start they are filled from the stored rows of the last day
//! (events stored and refused requests recorded), so only duplicates and refusals beyond the
//! per-minute bound are forgotten by a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::HttpRequest;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{NewInbound, Processing, Rejection};
use crate::clock::{self, Millis};
use crate::error::ApiError;
use crate::jobs::Handoff;
use crate::store::{Store, StoreError};

/// Stored refused requests per sender per minute; beyond, only counted.
pub const PER_MINUTE: u32 = 60;
/// Bytes of a refused body kept.
pub const BODY_HEAD: usize = 512;
/// The sender refused requests to unknown source names are capped under, together.
pub const UNKNOWN: &str = "(unknown)";

const MINUTES: usize = 24 * 60;

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Received,
    Duplicate,
    Rejected,
}

#[derive(Debug, Clone)]
struct Ring {
    /// Per minute of the day: (the minute it counts, [received, duplicate, rejected]).
    minutes: Vec<(i64, [u32; 3])>,
    last_received: Option<Millis>,
    last_rejected: Option<Millis>,
    /// Refused requests stored in the current minute.
    stored_minute: i64,
    stored: u32,
    /// Refused requests not stored because of the bound.
    dropped: u64,
}

impl Default for Ring {
    fn default() -> Self {
        Self {
            minutes: vec![(-1, [0; 3]); MINUTES],
            last_received: None,
            last_rejected: None,
            stored_minute: -1,
            stored: 0,
            dropped: 0,
        }
    }
}

impl Ring {
    fn add(&mut self, now: Millis, outcome: Outcome) {
        let minute = now.div_euclid(60_000);
        let slot =
            &mut self.minutes[usize::try_from(minute.rem_euclid(MINUTES as i64)).unwrap_or(0)];
        if slot.0 != minute {
            *slot = (minute, [0; 3]);
        }
        slot.1[outcome as usize] += 1;
        match outcome {
            Outcome::Received => self.last_received = Some(now),
            Outcome::Rejected => self.last_rejected = Some(now),
            Outcome::Duplicate => {}
        }
    }

    fn add_n(&mut self, minute: i64, outcome: Outcome, n: u32) {
        let slot =
            &mut self.minutes[usize::try_from(minute.rem_euclid(MINUTES as i64)).unwrap_or(0)];
        if slot.0 != minute {
            *slot = (minute, [0; 3]);
        }
        slot.1[outcome as usize] += n;
    }

    fn sum(&self, now: Millis, minutes: i64) -> [u64; 3] {
        let current = now.div_euclid(60_000);
        let mut out = [0u64; 3];
        for (m, counts) in &self.minutes {
            if *m > current - minutes && *m <= current {
                for (o, c) in out.iter_mut().zip(counts) {
                    *o += u64::from(*c);
                }
            }
        }
        out
    }
}

/// Counts over a window.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

/// One sender's activity as this process saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Activity {
    pub last_hour: Counts,
    pub last_24h: Counts,
    pub last_received_at: Option<Millis>,
    pub last_rejected_at: Option<Millis>,
    /// Refused requests counted but not stored (over the per-minute bound), since start.
    pub rejected_not_stored: u64,
}

/// Ingress activity of every sender, and the refused-request recorder.
pub struct Ingress {
    store: Store,
    rings: Mutex<HashMap<String, Ring>>,
}

impl Ingress {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            store,
            rings: Mutex::new(HashMap::new()),
        }
    }

    /// Fills the counts from the stored rows of the last day (at start).
    ///
    /// # Errors
    /// A database error.
    pub async fn load(&self) -> Result<(), StoreError> {
        let since = clock::now_ms() - 86_400_000;
        let rows = self
            .store
            .read(move |c| super::store::minutes_since(c, since).map_err(StoreError::from))
            .await?;
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (source, minute, received, rejected) in rows {
            let ring = rings.entry(source).or_default();
            for (outcome, n) in [(Outcome::Received, received), (Outcome::Rejected, rejected)] {
                if n > 0 {
                    ring.add_n(minute, outcome, u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
        }
        Ok(())
    }

    /// Counts a stored or duplicate request of `source`.
    pub fn count(&self, source: &str, outcome: Outcome) {
        let now = clock::now_ms();
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match rings.get_mut(source) {
            Some(r) => r.add(now, outcome),
            None => rings
                .entry(source.to_string())
                .or_default()
                .add(now, outcome),
        }
    }

    /// Counts and (within the bound) stores a refused request. `known` is false for a source
    /// name that is not configured: those share one bound, so inventing names does not lift it.
    /// The write is not waited for: the refusal is answered at once.
    pub fn reject(&self, rejection: Rejection, known: bool) {
        let now = rejection.at;
        let store_it = {
            let mut rings = self
                .rings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = if known {
                rejection.source.as_str()
            } else {
                UNKNOWN
            };
            let ring = rings.entry(key.to_string()).or_default();
            ring.add(now, Outcome::Rejected);
            let minute = now.div_euclid(60_000);
            if ring.stored_minute != minute {
                ring.stored_minute = minute;
                ring.stored = 0;
            }
            if ring.stored < PER_MINUTE {
                ring.stored += 1;
                true
            } else {
                ring.dropped += 1;
                false
            }
        };
        if !store_it {
            return;
        }
        let writer = self.store.writer().clone();
        actix_web::rt::spawn(async move {
            let source = rejection.source.clone();
            let result = writer
                .write(move |tx| {
                    super::store::insert_rejected(tx, &rejection).map_err(StoreError::from)
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(%source, error = %e, "could not record a rejected request");
            }
        });
    }

    /// `source`'s activity since this process started.
    #[must_use]
    pub fn activity(&self, source: &str) -> Activity {
        let now = clock::now_ms();
        let rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(r) = rings.get(source) else {
            return Activity::default();
        };
        let counts = |c: [u64; 3]| Counts {
            received: c[0],
            duplicate: c[1],
            rejected: c[2],
        };
        Activity {
            last_hour: counts(r.sum(now, 60)),
            last_24h: counts(r.sum(now, MINUTES as i64)),
            last_received_at: r.last_received,
            last_rejected_at: r.last_rejected,
            rejected_not_stored: r.dropped,
        }
    }
}

/// Stores a verified `event` with its processing job in one group commit and answers: 200
/// `{"received": true}`, or with `"duplicate": true` when its key was seen before (nothing queued).
/// Counted in `/metrics` and in `ingress`'s activity under `event.source`.
///
/// # Errors
/// 503 `storage_busy` / `storage_unavailable`.
pub async fn accept(
    store: &Store,
    handoff: &actix_web::web::Data<Handoff>,
    ingress: &Ingress,
    event: NewInbound,
    processing: Processing,
) -> Result<actix_web::HttpResponse, ApiError> {
    let source = event.source;
    let external_id = event.external_id.clone();
    let handoff = handoff.clone();
    let stored = store
        .writer()
        .write(move |tx| {
            super::store::store(tx, &event, processing, Some(handoff.get_ref()))
                .map_err(StoreError::from)
        })
        .await
        .map_err(|e| {
            let error = ApiError::from(e);
            crate::counters::ingress(source, error.code());
            error
        })?;
    Ok(match stored {
        Some(id) => {
            crate::counters::ingress(source, "accepted");
            ingress.count(source, Outcome::Received);
            tracing::info!(inbound_id = %id, %source, sender_event_id = %external_id, "inbound event stored");
            actix_web::HttpResponse::Ok().json(serde_json::json!({"received": true}))
        }
        None => {
            crate::counters::ingress(source, "duplicate");
            ingress.count(source, Outcome::Duplicate);
            tracing::info!(%source, sender_event_id = %external_id, "inbound event already stored; duplicate ignored");
            actix_web::HttpResponse::Ok()
                .json(serde_json::json!({"received": true, "duplicate": true}))
        }
    })
}

/// The cause a refusal is recorded with, or `None` for an answer that is not a refusal of the
/// request (storage trouble, a handshake).
#[must_use]
pub fn cause_of(error: &ApiError) -> Option<&'static str> {
    Some(match error.code() {
        "invalid_signature" => "invalid_signature",
        "timestamp_out_of_range" => "timestamp_out_of_range",
        "source_not_found" => "source_not_found",
        "payload_too_large" => "payload_too_large",
        "invalid_payload" => "invalid_payload",
        c if c.ends_with("not_configured") => "not_configured",
        _ => return None,
    })
}

/// Records `error` as a refusal of `req` (when it is one: see [`cause_of`]) and hands it back.
pub fn refused(
    ingress: &Ingress,
    req: &HttpRequest,
    source: &'static str,
    known: bool,
    error: ApiError,
    signature_headers: &[&str],
    body: &[u8],
) -> ApiError {
    if let Some(cause) = cause_of(&error) {
        crate::counters::ingress(if known { source } else { UNKNOWN }, cause);
        // Refusals to names not configured are kept under one sender, so invented names
        // neither lift the bound nor mix into a real sender's list; the path shows the name.
        let shown = if known { source } else { UNKNOWN };
        ingress.reject(
            describe(req, shown, cause, error.message(), signature_headers, body),
            known,
        );
    }
    error
}

/// A [`Rejection`] of `req` to `source`: the request's particulars, the values of
/// `signature_headers` (never a token), the first bytes of `body`.
#[must_use]
pub fn describe(
    req: &HttpRequest,
    source: &str,
    cause: &str,
    message: &str,
    signature_headers: &[&str],
    body: &[u8],
) -> Rejection {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect::<String>())
    };
    let mut signature = Map::new();
    for name in signature_headers {
        if let Some(v) = header(name) {
            signature.insert((*name).to_string(), Value::String(v));
        }
    }
    Rejection {
        source: source.to_string(),
        cause: cause.to_string(),
        message: message.to_string(),
        at: clock::now_ms(),
        peer: req.peer_addr().map(|a| a.ip().to_string()),
        method: req.method().to_string(),
        path: req.path().chars().take(512).collect(),
        content_type: header("content-type"),
        content_length: header("content-length").and_then(|v| v.trim().parse().ok()),
        user_agent: header("user-agent"),
        signature: Value::Object(signature),
        body_head: body[..body.len().min(BODY_HEAD)].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_only_their_minutes() {
        let mut r = Ring::default();
        let t0 = 1_700_000_000_000;
        r.add(t0, Outcome::Received);
        r.add(t0 + 1, Outcome::Duplicate);
        r.add(t0 + 2 * 3_600_000, Outcome::Rejected);
        assert_eq!(r.sum(t0 + 2 * 3_600_000, 60), [0, 0, 1]);
        assert_eq!(r.sum(t0 + 2 * 3_600_000, MINUTES as i64), [1, 1, 1]);
        // A day later the slot of t0 counts a new minute.
        r.add(t0 + 86_400_000, Outcome::Received);
        assert_eq!(r.sum(t0 + 86_400_000, MINUTES as i64), [1, 0, 1]);
    }
}
