//! The `delivery.send` job: one attempt to POST an event's envelope to one webhook, signed, and
//! the attempt recorded in the same commit that reschedules or finishes the delivery.
//!
//! Success is any 2xx within `delivery.timeout`. Anything else is retried on the webhook's
//! `retry_schedule` (else the global one): the first attempt is immediate, then one wait per
//! entry. A `Retry-After` on 429 or 503 replaces the next wait (at most an hour); 410 Gone ends
//! the delivery; a 3xx is a failure (redirects are not followed). Out of attempts, the delivery
//! is `failed` and the job dead (audit record `delivery.failed`).
//!
//! An attempt reads its delivery and the event's bytes; the webhook — URL, headers, opened
//! secrets — comes from the in-memory [`Webhooks`] snapshot.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::cache::Webhooks;
use super::client::{Answer, DeliveryClient, Failure};
use super::gate::{Entry, Gate, Wake};
use super::secrets::SigningSecret;
use super::sign::{self, Algorithm};
use super::store::{self, AttemptRow, DeliveryState, Next};
use super::webhooks;
use crate::clock::{self, Millis};
use crate::events::{self, Publisher};
use crate::jobs::{self, DeadJob, JobKind, JobResult, JobRun, Outcome};
use crate::store::audit;
use crate::store::{Store, StoreError, WriteTx};

/// The longest a `Retry-After` may delay the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Sends deliveries.
pub struct Sender {
    pub store: Store,
    pub client: DeliveryClient,
    /// The enabled webhooks, with their secrets opened.
    pub webhooks: Arc<Webhooks>,
    /// For `webhook.disabled`, when a webhook turns out unusable.
    pub publisher: Publisher,
    pub default_schedule: Vec<Duration>,
    /// Caps attempts in flight to endpoints not proven healthy.
    pub gate: Arc<Gate>,
}

/// The job kind, backed by `sender`.
#[must_use]
pub fn kind(sender: Arc<Sender>) -> JobKind {
    JobKind {
        name: store::KIND,
        handler: Arc::new(move |job| {
            let s = Arc::clone(&sender);
            Box::pin(async move { s.run(job).await })
        }),
        max_attempts: u32::try_from(crate::config::MAX_RETRY_SCHEDULE + 1).unwrap_or(11),
        operator_enqueueable: None,
        managed_by: Some("POST /v1beta1/admin/deliveries/{id}/retry, or delete the webhook"),
        on_dead: Some(Arc::new(on_dead)),
    }
}

/// A delivery job died: the delivery is failed (if nothing recorded that yet) and audited.
fn on_dead(tx: &WriteTx<'_>, dead: &DeadJob) -> crate::sql::Result<()> {
    let Some(id) = dead.payload.get("delivery_id").and_then(Value::as_str) else {
        return Ok(());
    };
    if let Some((webhook_id, event_id, action, attempts)) = store::fail_dead(tx, id, &dead.error)? {
        audit::record(
            tx,
            &audit::Entry {
                actor: "system",
                action: "delivery.failed",
                target_type: Some("delivery"),
                target_id: Some(id),
                detail: json!({
                    "webhook_id": webhook_id,
                    "event_id": event_id,
                    "action": action,
                    "attempts": attempts,
                    "error": dead.error,
                }),
            },
        )?;
    }
    Ok(())
}

/// `succeeded`, `http_4xx`-style for other statuses, or the error kind.
#[must_use]
pub fn outcome_label(a: &AttemptRow) -> String {
    match (a.status, a.error_kind) {
        (Some(s), _) if (200..300).contains(&s) => "succeeded".into(),
        (Some(s), _) => format!("http_{}xx", s / 100),
        (None, Some(kind)) => kind.into(),
        (None, None) => "error".into(),
    }
}

/// The attempt's rows, the endpoint's health, and the wake-up of the deliveries parked on it —
/// one commit.
fn record(
    tx: &WriteTx<'_>,
    delivery_id: &str,
    webhook_id: &str,
    a: &AttemptRow,
    next: Next,
    wake: Wake,
) -> crate::sql::Result<()> {
    // The attempt freed a place at this endpoint: wake the deliveries parked on it.
    jobs::unpark(tx, webhook_id, wake.count, wake.at)?;
    store::record_attempt(tx, delivery_id, a, next)?;
    store::note_attempt(tx, webhook_id, next == Next::Succeeded, a.at)
}

/// Seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn parse_retry_after(v: &str, now: Millis) -> Option<Duration> {
    let v = v.trim();
    let wait = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = clock::parse_http_date(v)?;
        Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What the attempt reads: the delivery, and (while it is pending) the event's bytes.
fn read(
    conn: &crate::sql::Connection,
    id: &str,
) -> crate::sql::Result<Option<(store::ToSend, Vec<u8>)>> {
    let Some(d) = store::to_send(conn, id)? else {
        return Ok(None);
    };
    let body = if d.state == DeliveryState::Pending.as_str() {
        events::store::body(conn, &d.event_id)?.unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some((d, body)))
}

impl Sender {
    async fn run(&self, job: JobRun) -> JobResult {
        let Some(delivery_id) = job
            .payload
            .get("delivery_id")
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return JobResult::fail("the job payload has no delivery_id");
        };
        // Deliveries created by this version carry their webhook: an endpoint at its cap is
        // known before anything is read, so a parked delivery costs one write and no read.
        let early_pass = match job.payload.get("webhook_id").and_then(Value::as_str) {
            Some(webhook_id) => match self.gate.enter(webhook_id) {
                Entry::Go(pass) => Some(pass),
                Entry::Busy => return park(webhook_id.to_string()),
            },
            None => None,
        };
        let handed = job
            .memo
            .as_ref()
            .and_then(|m| m.get::<store::Handed>())
            .filter(|h| h.delivery_id == delivery_id);
        let loaded = if let Some(h) = handed {
            Ok(Some((h.to_send.clone(), h.body.to_vec())))
        } else {
            // Point reads by key: done on this (job) thread rather than handed to the blocking pool.
            let id = delivery_id.clone();
            self.store
                .read_quick(move |c| read(c, &id).map_err(StoreError::from))
                .await
        };
        let (delivery, body) = match loaded {
            Ok(Some(l)) => l,
            Ok(None) => return JobResult::fail(format!("delivery {delivery_id} no longer exists")),
            Err(e) => return JobResult::retry(format!("reading delivery {delivery_id}: {e}")),
        };
        if delivery.state != DeliveryState::Pending.as_str() {
            return JobResult::succeeded();
        }
        let target = match self.webhooks.target_of(&delivery.webhook_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return self.not_enabled(delivery_id, delivery.webhook_id).await,
            Err(e) => return JobResult::retry(format!("reading the webhooks: {e}")),
        };
        // A failing endpoint holds at most a couple of workers; the rest park on it until an
        // attempt to it finishes.
        let pass = match early_pass {
            Some(pass) => pass,
            None => match self.gate.enter(&target.id) {
                Entry::Go(pass) => pass,
                Entry::Busy => return park(target.id.clone()),
            },
        };
        let sent_at = clock::now_ms();
        let secrets = match target.signing_at(sent_at) {
            Ok(s) => s,
            Err(reason) => return self.unusable(delivery_id, target.id.clone(), reason),
        };
        let custom_headers = match &target.headers {
            Ok(h) => h,
            Err(reason) => return self.unusable(delivery_id, target.id.clone(), reason.clone()),
        };
        let url = match &target.url {
            Ok(u) => u,
            Err(reason) => return self.unusable(delivery_id, target.id.clone(), reason.clone()),
        };

        let number = delivery.attempts + 1;
        let headers = build_headers(
            target.algorithm,
            custom_headers,
            &secrets,
            &delivery.event_id,
            &delivery_id,
            number,
            sent_at / 1000,
            &body,
        );
        let result = self.client.post(url, headers, body).await;

        let schedule: &[Duration] = target.schedule.as_deref().unwrap_or(&self.default_schedule);
        let retries_left = !job.is_last_attempt() && (job.attempt as usize) <= schedule.len();
        let scheduled_wait = schedule
            .get(job.attempt as usize - 1)
            .copied()
            .unwrap_or_default();
        let (attempt, verdict) = judge(number, sent_at, result);
        let latency = Duration::from_millis(u64::try_from(attempt.latency_ms).unwrap_or(0));
        let wake = pass.finish(matches!(verdict, Verdict::Delivered), latency);
        let webhook_id = target.id.clone();
        let event_id = delivery.event_id;
        crate::counters::delivery_attempt(&outcome_label(&attempt), latency);
        let (result, next) = match verdict {
            Verdict::Delivered => {
                tracing::debug!(%delivery_id, %event_id, %webhook_id, status = ?attempt.status, "delivered");
                (JobResult::succeeded(), Next::Succeeded)
            }
            Verdict::Gone(error) => {
                tracing::info!(%delivery_id, %event_id, %webhook_id, "receiver answered 410 Gone; no more attempts");
                (JobResult::fail(error), Next::Failed)
            }
            Verdict::Retry { error, retry_after } if retries_left => {
                let wait = retry_after.map_or(scheduled_wait, |ra| ra.min(MAX_RETRY_AFTER));
                let at = clock::add(clock::now_ms(), wait);
                tracing::info!(%delivery_id, %event_id, %webhook_id, %error, retry_in = %humantime::format_duration(wait), "delivery attempt failed; will retry");
                (
                    JobResult::from(Outcome::Retry {
                        error,
                        after: Some(wait),
                    }),
                    Next::RetryAt(at),
                )
            }
            Verdict::Retry { error, .. } => {
                tracing::warn!(%delivery_id, %event_id, %webhook_id, %error, "delivery failed: out of attempts");
                (JobResult::fail(error), Next::Failed)
            }
        };
        if !matches!(next, Next::RetryAt(_)) {
            crate::counters::delivery_finished(next.state().as_str());
        }
        result.with_write(Box::new(move |tx| {
            record(tx, &delivery_id, &webhook_id, &attempt, next, wake)
        }))
    }

    /// The delivery's webhook is not in the enabled snapshot: deleted, or disabled.
    async fn not_enabled(&self, delivery_id: String, webhook_id: String) -> JobResult {
        let found = {
            let id = webhook_id.clone();
            self.store
                .read_quick(move |c| store::get(c, &id).map_err(StoreError::from))
                .await
        };
        let reason = match found {
            Ok(None) => "the webhook was deleted",
            Ok(Some(w)) if w.state != "enabled" => store::WEBHOOK_DISABLED,
            // Enabled after all (changed a moment ago): try again shortly.
            Ok(Some(_)) => {
                return Outcome::RunAgainAt {
                    at: clock::add(clock::now_ms(), Duration::from_secs(1)),
                    reason: "the webhook changed while this delivery was read".into(),
                }
                .into();
            }
            Err(e) => return JobResult::retry(format!("reading webhook {webhook_id}: {e}")),
        };
        JobResult::succeeded().with_write(Box::new(move |tx| {
            store::settle(tx, &delivery_id, DeliveryState::Cancelled, reason)
        }))
    }

    /// The webhook itself cannot be delivered to: disable it with the reason (audit record and
    /// `webhook.disabled` event) and fail this delivery. Other webhooks are not affected.
    fn unusable(&self, delivery_id: String, webhook_id: String, reason: String) -> JobResult {
        tracing::error!(%webhook_id, %reason, "webhook cannot be delivered to; disabling it");
        let message = format!("webhook {webhook_id} was disabled: {reason}");
        let write_message = message.clone();
        let publisher = self.publisher.clone();
        JobResult::fail(message).with_write(Box::new(move |tx| {
            webhooks::disable(tx, &publisher, &webhook_id, &reason)?;
            store::settle(tx, &delivery_id, DeliveryState::Failed, &write_message)
        }))
    }
}

/// How an attempt went (deliveries and task calls alike).
pub enum Verdict {
    /// A 2xx.
    Delivered,
    /// 410 Gone: no more attempts.
    Gone(String),
    /// Anything else; `retry_after` from a 429's or 503's `Retry-After`, capped at
    /// [`MAX_RETRY_AFTER`].
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
}

/// The attempt row and the verdict of attempt `number`, made at `at`, that ended in `result`.
#[must_use]
pub fn judge(number: i64, at: Millis, result: Result<Answer, Failure>) -> (AttemptRow, Verdict) {
    match result {
        Ok(a) => {
            let verdict = match a.status {
                200..=299 => Verdict::Delivered,
                410 => Verdict::Gone("the receiver answered 410 Gone".into()),
                s @ 300..=399 => Verdict::Retry {
                    error: format!(
                        "HTTP {s}: redirects are not followed (location: {})",
                        crate::redact::url(
                            a.headers
                                .get("location")
                                .and_then(Value::as_str)
                                .unwrap_or("none")
                        )
                    ),
                    retry_after: None,
                },
                s => Verdict::Retry {
                    error: format!("HTTP {s}"),
                    retry_after: if s == 429 || s == 503 {
                        a.retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, clock::now_ms()))
                    } else {
                        None
                    },
                },
            };
            let error = match &verdict {
                Verdict::Delivered => None,
                Verdict::Gone(e) | Verdict::Retry { error: e, .. } => Some(e.clone()),
            };
            (
                AttemptRow {
                    number,
                    at,
                    status: Some(a.status),
                    latency_ms: i64::try_from(a.latency.as_millis()).unwrap_or(i64::MAX),
                    headers: Some(a.headers),
                    headers_truncated: a.headers_truncated,
                    body: Some(a.body),
                    error_kind: error.as_ref().map(|_| "http"),
                    error,
                },
                verdict,
            )
        }
        Err(f) => {
            let error = format!("{}: {}", f.kind.as_str(), f.message);
            (
                AttemptRow {
                    number,
                    at,
                    status: None,
                    latency_ms: i64::try_from(f.latency.as_millis()).unwrap_or(i64::MAX),
                    headers: None,
                    headers_truncated: false,
                    body: None,
                    error_kind: Some(f.kind.as_str()),
                    error: Some(error.clone()),
                },
                Verdict::Retry {
                    error,
                    retry_after: None,
                },
            )
        }
    }
}

/// A receiver's own headers (a webhook's, a task's), as sent: names or values that are not
/// valid HTTP are left out (they are refused where they are set).
#[must_use]
pub fn custom_headers(custom: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in custom {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    h
}

/// The request headers of one attempt.
#[allow(clippy::too_many_arguments)] // one attempt's values, each used once
fn build_headers(
    algorithm: Algorithm,
    custom: &[(String, String)],
    secrets: &[(u32, &SigningSecret)],
    event_id: &str,
    delivery_id: &str,
    attempt: i64,
    timestamp: i64,
    body: &[u8],
) -> HeaderMap {
    let mut h = custom_headers(custom);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let keys: Vec<(u32, &[u8])> = secrets
        .iter()
        .map(|(id, s)| (*id, s.bytes().as_slice()))
        .collect();
    let set = |h: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(
        &mut h,
        "x-signature",
        sign::x_signature(algorithm, &keys, body),
    );
    set(&mut h, "webhook-id", event_id.to_string());
    set(&mut h, "webhook-timestamp", timestamp.to_string());
    let raw: Vec<&[u8]> = keys.iter().map(|(_, k)| *k).collect();
    set(
        &mut h,
        "webhook-signature",
        sign::standard_signatures(&raw, event_id, timestamp, body),
    );
    set(&mut h, "x-hookrelay-delivery", delivery_id.to_string());
    set(&mut h, "x-hookrelay-attempt", attempt.to_string());
    h
}

/// Parks a delivery on its busy endpoint, without spending an attempt.
fn park(webhook_id: String) -> JobResult {
    tracing::debug!(%webhook_id, "endpoint at its cap; parking");
    JobResult::from(Outcome::Park {
        on: webhook_id,
        reason: "waiting: this endpoint's latest attempt failed and it already has as many attempts in flight as it may".into(),
    })
}

/// How often [`sweep_parked`] looks for idle endpoints with parked deliveries.
pub const PARK_SWEEP: Duration = Duration::from_secs(2);

/// Wakes deliveries parked on an endpoint that has nothing in flight — after a restart (the gate
/// starts empty), or when the attempt that should have woken them ended without recording (a
/// crash, a lost claim) or raced with their parking. One read per sweep, a write only when an
/// endpoint needs waking: the cost follows the endpoints, not the backlog.
pub async fn sweep_parked(
    store: Store,
    gate: Arc<Gate>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(PARK_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let parked = match store
            .read(|c| jobs::parked(c).map_err(StoreError::from))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading parked deliveries failed");
                continue;
            }
        };
        let wake: Vec<(String, usize)> = parked
            .into_iter()
            .map(|(key, _)| {
                let n = gate.to_wake_when_idle(&key);
                (key, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if wake.is_empty() {
            continue;
        }
        let result = store
            .writer()
            .write_wait(move |tx| {
                let mut n = 0;
                for (key, count) in &wake {
                    n += jobs::unpark(tx, key, *count, clock::now_ms())?;
                }
                Ok::<_, StoreError>(n)
            })
            .await;
        match result {
            Ok(n) => tracing::debug!(woken = n, "woke deliveries parked on idle endpoints"),
            Err(e) => tracing::warn!(error = %e, "waking parked deliveries failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
