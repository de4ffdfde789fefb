//! The `delivery.send` job: one attempt to POST an event's envelope to one webhook, signed, and
//! the attempt recorded in the same commit that reschedules or finishes the delivery.
//!
//! Success is any 2xx within `delivery.timeout`. Anything else is retried on the webhook's
//! `retry_schedule` (else the global one): the first attempt is immediate, then one wait per
//! entry. A `Retry-After` on 429 or 503 replaces the next wait (at most an hour); 410 Gone ends
//! the delivery; a 3xx is a failure (redirects are not followed). Out of attempts, the delivery
//! is `failed` and the job dead (audit record `delivery.failed`).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};
use url::Url;

use super::client::{Answer, DeliveryClient, Failure};
use super::gate::{Entry, Gate, Wake};
use super::secrets::{Keyring, Sealed, SigningSecret};
use super::sign::{self, Algorithm};
use super::{deliveries, webhooks};
use crate::clock::{self, Millis};
use crate::jobs::{self, DeadJob, JobKind, JobResult, JobRun, Outcome};
use crate::store::audit;
use crate::store::{Store, StoreError, WriteTx};

/// The longest a `Retry-After` may delay the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Sends deliveries.
pub struct Sender {
    pub store: Store,
    pub client: DeliveryClient,
    pub keyring: Arc<Keyring>,
    pub default_schedule: Vec<Duration>,
    /// Caps attempts in flight to endpoints not proven healthy.
    pub gate: Arc<Gate>,
}

/// The job kind, backed by `sender`.
#[must_use]
pub fn kind(sender: Arc<Sender>) -> JobKind {
    JobKind {
        name: deliveries::KIND,
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
fn on_dead(tx: &WriteTx<'_>, dead: &DeadJob) -> rusqlite::Result<()> {
    let Some(id) = dead.payload.get("delivery_id").and_then(Value::as_str) else {
        return Ok(());
    };
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE deliveries SET state = 'failed', last_error = COALESCE(last_error, ?2), next_attempt_at = NULL,
                finished_at = ?3, updated_at = ?3
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, dead.error, now])?;
    let row: Option<(String, String, String, i64)> = tx
        .prepare_cached(
            "SELECT webhook_id, event_id, action, attempts FROM deliveries WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    if let Some((webhook_id, event_id, action, attempts)) = row {
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

/// Everything one attempt needs, read in one go.
struct Loaded {
    state: String,
    attempts: i64,
    event_id: String,
    body: Vec<u8>,
    webhook: Option<Target>,
}

struct Target {
    id: String,
    url: String,
    headers: Map<String, Value>,
    enabled: bool,
    algorithm: Algorithm,
    schedule: Option<Vec<String>>,
    secrets: Vec<(i64, Sealed)>,
}

fn load(
    conn: &rusqlite::Connection,
    delivery_id: &str,
    now: Millis,
) -> rusqlite::Result<Option<Loaded>> {
    let row = conn
        .prepare_cached(
            "SELECT d.state, d.attempts, d.event_id, e.body, w.id, w.url, w.headers, w.state, w.signature_algorithm,
                    w.retry_schedule
             FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = ?1",
        )?
        .query_row([delivery_id], |r| {
            let webhook = match r.get::<_, Option<String>>(4)? {
                Some(id) => Some(Target {
                    id,
                    url: r.get(5)?,
                    headers: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    enabled: r.get::<_, String>(7)? == "enabled",
                    algorithm: r.get::<_, String>(8)?.parse().unwrap_or_default(),
                    schedule: r.get::<_, Option<String>>(9)?.and_then(|s| serde_json::from_str(&s).ok()),
                    secrets: Vec::new(),
                }),
                None => None,
            };
            Ok(Loaded {
                state: r.get(0)?,
                attempts: r.get(1)?,
                event_id: r.get(2)?,
                body: r.get(3)?,
                webhook,
            })
        })
        .optional()?;
    let Some(mut loaded) = row else {
        return Ok(None);
    };
    if let Some(w) = &mut loaded.webhook {
        w.secrets = conn
            .prepare_cached(
                "SELECT seq, key_id, nonce, ciphertext FROM webhook_secrets
                 WHERE webhook_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY seq DESC",
            )?
            .query_map(params![w.id, now], |r| {
                Ok((r.get(0)?, Sealed { key_id: r.get(1)?, nonce: r.get(2)?, ciphertext: r.get(3)? }))
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(Some(loaded))
}

/// One attempt, as recorded.
struct Attempt {
    number: i64,
    at: Millis,
    status: Option<u16>,
    latency_ms: i64,
    headers: Option<Value>,
    /// The response's headers were over the cap; `headers` holds the first of them.
    headers_truncated: bool,
    body: Option<Vec<u8>>,
    error_kind: Option<&'static str>,
    error: Option<String>,
}

impl Attempt {
    /// `succeeded`, `http_4xx`-style for other statuses, or the error kind.
    fn outcome_label(&self) -> String {
        match (self.status, self.error_kind) {
            (Some(s), _) if (200..300).contains(&s) => "succeeded".into(),
            (Some(s), _) => format!("http_{}xx", s / 100),
            (None, Some(kind)) => kind.into(),
            (None, None) => "error".into(),
        }
    }
}

/// Where the delivery goes after an attempt.
enum Next {
    Succeeded,
    RetryAt(Millis),
    Failed,
}

fn record(
    tx: &WriteTx<'_>,
    delivery_id: &str,
    webhook_id: &str,
    a: &Attempt,
    next: &Next,
    wake: Wake,
) -> rusqlite::Result<()> {
    // The attempt freed a place at this endpoint: wake the deliveries parked on it.
    jobs::unpark(tx, webhook_id, wake.count, wake.at)?;
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms, response_headers, response_body,
                                        error_kind, error, response_headers_truncated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        delivery_id,
        a.number,
        a.at,
        a.status,
        a.latency_ms,
        a.headers.as_ref().map(Value::to_string),
        a.body,
        a.error_kind,
        a.error,
        a.headers_truncated
    ])?;
    let now = clock::now_ms();
    let (state, next_at, finished) = match next {
        Next::Succeeded => ("succeeded", None, Some(now)),
        Next::RetryAt(at) => ("pending", Some(*at), None),
        Next::Failed => ("failed", None, Some(now)),
    };
    tx.prepare_cached(
        "UPDATE deliveries SET attempts = ?2, last_status = ?3, last_error = ?4, state = ?5, next_attempt_at = ?6,
                finished_at = ?7, updated_at = ?8
         WHERE id = ?1",
    )?
    .execute(params![delivery_id, a.number, a.status, a.error, state, next_at, finished, now])?;
    if finished.is_some() {
        crate::counters::delivery_finished(state);
    }
    // Endpoint health (`endpoint_health` cron): since when every attempt failed, and the latest
    // failure. A success writes only when it clears them, so a healthy endpoint costs one
    // index lookup per attempt.
    if matches!(next, Next::Succeeded) {
        tx.prepare_cached(
            "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )?
        .execute([webhook_id])?;
    } else {
        tx.prepare_cached(
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?2), last_failure_at = ?2 WHERE id = ?1",
        )?
        .execute(params![webhook_id, a.at])?;
    }
    Ok(())
}

fn settle(tx: &WriteTx<'_>, delivery_id: &str, state: &str, reason: &str) -> rusqlite::Result<()> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?2, last_error = ?3, next_attempt_at = NULL, finished_at = ?4, updated_at = ?4
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![delivery_id, state, reason, now])?;
    Ok(())
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
        let now = clock::now_ms();
        // A point read by key: done on this (job) thread rather than handed to the blocking pool.
        let loaded = {
            let id = delivery_id.clone();
            self.store
                .read_quick(move |c| load(c, &id, now).map_err(StoreError::from))
                .await
        };
        let loaded = match loaded {
            Ok(Some(l)) => l,
            Ok(None) => return JobResult::fail(format!("delivery {delivery_id} no longer exists")),
            Err(e) => return JobResult::retry(format!("reading delivery {delivery_id}: {e}")),
        };
        if loaded.state != "pending" {
            return JobResult::succeeded();
        }
        let Some(target) = loaded.webhook else {
            return JobResult::succeeded().with_write(Box::new(move |tx| {
                settle(tx, &delivery_id, "cancelled", "the webhook was deleted")
            }));
        };
        if !target.enabled {
            return JobResult::succeeded().with_write(Box::new(move |tx| {
                settle(tx, &delivery_id, "cancelled", deliveries::WEBHOOK_DISABLED)
            }));
        }
        // A failing endpoint holds at most a couple of workers; the rest park on it until an
        // attempt to it finishes.
        let pass = match early_pass {
            Some(pass) => pass,
            None => match self.gate.enter(&target.id) {
                Entry::Go(pass) => pass,
                Entry::Busy => return park(target.id),
            },
        };
        let secrets = match self.open_secrets(&target) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => {
                return self.unusable(
                    delivery_id,
                    target.id,
                    "the webhook has no active signing secret".into(),
                );
            }
            Err(reason) => return self.unusable(delivery_id, target.id, reason),
        };
        let custom_headers = match super::headers::open(&self.keyring, &target.id, &target.headers)
        {
            Ok(h) => h,
            Err(reason) => return self.unusable(delivery_id, target.id, reason),
        };
        let url = match Url::parse(&target.url) {
            Ok(u) => u,
            Err(e) => {
                return self.unusable(
                    delivery_id,
                    target.id,
                    format!("its url cannot be parsed: {e}"),
                );
            }
        };

        let number = loaded.attempts + 1;
        let sent_at = clock::now_ms();
        let headers = build_headers(
            target.algorithm,
            &custom_headers,
            &secrets,
            &loaded.event_id,
            &delivery_id,
            number,
            sent_at / 1000,
            &loaded.body,
        );
        let result = self.client.post(&url, headers, loaded.body).await;

        let own = target
            .schedule
            .as_deref()
            .and_then(|s| crate::config::parse_retry_schedule(s).ok());
        let schedule: &[Duration] = own.as_deref().unwrap_or(&self.default_schedule);
        let retries_left = !job.is_last_attempt() && (job.attempt as usize) <= schedule.len();
        let scheduled_wait = schedule
            .get(job.attempt as usize - 1)
            .copied()
            .unwrap_or_default();
        let (attempt, verdict) = judge(number, sent_at, result);
        let wake = pass.finish(
            matches!(verdict, Verdict::Delivered),
            Duration::from_millis(u64::try_from(attempt.latency_ms).unwrap_or(u64::MAX)),
        );
        let webhook_id = target.id;
        let event_id = loaded.event_id;
        crate::counters::delivery_attempt(
            &attempt.outcome_label(),
            Duration::from_millis(u64::try_from(attempt.latency_ms).unwrap_or(0)),
        );
        match verdict {
            Verdict::Delivered => {
                tracing::debug!(%delivery_id, %event_id, %webhook_id, status = ?attempt.status, "delivered");
                JobResult::succeeded().with_write(Box::new(move |tx| {
                    record(
                        tx,
                        &delivery_id,
                        &webhook_id,
                        &attempt,
                        &Next::Succeeded,
                        wake,
                    )
                }))
            }
            Verdict::Gone(error) => {
                tracing::info!(%delivery_id, %event_id, %webhook_id, "receiver answered 410 Gone; no more attempts");
                JobResult::fail(error).with_write(Box::new(move |tx| {
                    record(tx, &delivery_id, &webhook_id, &attempt, &Next::Failed, wake)
                }))
            }
            Verdict::Retry { error, retry_after } if retries_left => {
                let wait = retry_after.map_or(scheduled_wait, |ra| ra.min(MAX_RETRY_AFTER));
                let at = clock::add(clock::now_ms(), wait);
                tracing::info!(%delivery_id, %event_id, %webhook_id, %error, retry_in = %humantime::format_duration(wait), "delivery attempt failed; will retry");
                JobResult::from(Outcome::Retry {
                    error,
                    after: Some(wait),
                })
                .with_write(Box::new(move |tx| {
                    record(
                        tx,
                        &delivery_id,
                        &webhook_id,
                        &attempt,
                        &Next::RetryAt(at),
                        wake,
                    )
                }))
            }
            Verdict::Retry { error, .. } => {
                tracing::warn!(%delivery_id, %event_id, %webhook_id, %error, "delivery failed: out of attempts");
                JobResult::fail(error).with_write(Box::new(move |tx| {
                    record(tx, &delivery_id, &webhook_id, &attempt, &Next::Failed, wake)
                }))
            }
        }
    }

    /// The active secrets that decrypt. One that does not (an old secret in its overlap, say)
    /// is skipped with an error log; only when none decrypts is it the webhook's failure.
    fn open_secrets(&self, target: &Target) -> Result<Vec<(u32, SigningSecret)>, String> {
        let mut opened = Vec::new();
        let mut failures = Vec::new();
        for (seq, sealed) in &target.secrets {
            match self.keyring.open(sealed, &format!("{}:{seq}", target.id)) {
                Ok(s) => opened.push((u32::try_from(*seq).unwrap_or(0), s)),
                Err(e) => {
                    failures.push(format!("its signing secret {seq} cannot be decrypted: {e}"))
                }
            }
        }
        if opened.is_empty() && !failures.is_empty() {
            return Err(failures.join("; "));
        }
        for f in &failures {
            tracing::error!(webhook_id = %target.id, "{f}; signing with the other secrets");
        }
        Ok(opened)
    }

    /// The webhook itself cannot be delivered to: disable it with the reason (audit record and
    /// `webhook.disabled` event) and fail this delivery. Other webhooks are not affected.
    fn unusable(&self, delivery_id: String, webhook_id: String, reason: String) -> JobResult {
        tracing::error!(%webhook_id, %reason, "webhook cannot be delivered to; disabling it");
        let default_retries = self.default_schedule.len();
        let message = format!("webhook {webhook_id} was disabled: {reason}");
        let write_message = message.clone();
        JobResult::fail(message).with_write(Box::new(move |tx| {
            webhooks::disable(tx, &webhook_id, &reason, default_retries)?;
            settle(tx, &delivery_id, "failed", &write_message)
        }))
    }
}

/// How an attempt went.
enum Verdict {
    Delivered,
    Gone(String),
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
}

fn judge(number: i64, at: Millis, result: Result<Answer, Failure>) -> (Attempt, Verdict) {
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
                Attempt {
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
                Attempt {
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

/// The request headers of one attempt.
#[allow(clippy::too_many_arguments)] // one attempt's values, each used once
fn build_headers(
    algorithm: Algorithm,
    custom: &[(String, String)],
    secrets: &[(u32, SigningSecret)],
    event_id: &str,
    delivery_id: &str,
    attempt: i64,
    timestamp: i64,
    body: &[u8],
) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in custom {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
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
