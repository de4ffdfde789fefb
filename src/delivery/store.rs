//! The tables of outbound delivery — `webhooks`, `webhook_secrets`, `deliveries`,
//! `delivery_attempts` — and every statement on them. The routes, the send job, fan-out and the
//! endpoint-health task call these functions; none writes SQL of its own.
//!
//! A write that changes what fan-out or the send job cache about webhooks calls
//! [`webhooks_changed`], which bumps the cache generation once the transaction commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sql::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value, json};

use super::secrets::Sealed;
use super::sign::Algorithm;
use crate::clock::{self, Millis};
use crate::events::{EventRef, Subscriber};
use crate::ids;
use crate::jobs::{self, JobState, NewJob};
use crate::pagination::{ActionFilter, ListQuery};
use crate::store::WriteTx;

/// The job kind that sends a delivery.
pub const KIND: &str = "delivery.send";

/// The reason recorded on deliveries cancelled because their webhook was disabled; `recover`
/// re-queues those as well as failed ones.
pub const WEBHOOK_DISABLED: &str = "webhook_disabled: the webhook was disabled";

/// Where a delivery is in its life: `pending` (attempts remain) → `succeeded`, `failed` (out of
/// attempts, 410, an unusable webhook), or `cancelled` (webhook deleted or disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

impl DeliveryState {
    /// Every state, in life order.
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Every state's name (for the list filter).
    #[must_use]
    pub fn names() -> [&'static str; 4] {
        Self::ALL.map(Self::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// The cache generation
// ---------------------------------------------------------------------------------------------

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The generation of the webhook data: it changes after every committed write to webhooks or
/// their secrets, so a cache built at an older generation is stale.
#[must_use]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Marks the webhook data changed once `tx` commits, here and (on PostgreSQL) on every other
/// replica, whose listener calls [`webhooks_changed_elsewhere`].
///
/// # Errors
/// A database error.
pub fn webhooks_changed(tx: &WriteTx<'_>) -> crate::sql::Result<()> {
    crate::store::postgres::notify_changed(tx, WEBHOOKS_CHANGED)?;
    tx.on_commit(webhooks_changed_elsewhere);
    Ok(())
}

/// What [`webhooks_changed`] announces to the other replicas.
pub const WEBHOOKS_CHANGED: &str = "webhooks";

/// Makes every webhook cache stale (a replica changed the webhooks).
pub fn webhooks_changed_elsewhere() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

// ---------------------------------------------------------------------------------------------
// webhooks
// ---------------------------------------------------------------------------------------------

/// A webhook endpoint as stored (custom headers as stored: sensitive values sealed).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub description: String,
    pub subscribed_events: Vec<String>,
    pub headers: Map<String, Value>,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub signature_algorithm: Algorithm,
    pub retry_schedule: Option<Vec<String>>,
    /// Since when every attempt to it has failed (cleared by a 2xx); `None` while it works.
    pub failing_since: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str = "id, url, description, subscribed_events, headers, state, disabled_reason,
     signature_algorithm, retry_schedule, created_at, updated_at, failing_since";

fn webhook_row(r: &Row<'_>) -> crate::sql::Result<Webhook> {
    let subscribed: String = r.get(3)?;
    let headers: String = r.get(4)?;
    let algorithm: String = r.get(7)?;
    let schedule: Option<String> = r.get(8)?;
    Ok(Webhook {
        id: r.get(0)?,
        url: r.get(1)?,
        description: r.get(2)?,
        subscribed_events: serde_json::from_str(&subscribed).unwrap_or_default(),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        state: r.get(5)?,
        disabled_reason: r.get(6)?,
        signature_algorithm: algorithm.parse().unwrap_or_default(),
        retry_schedule: schedule.and_then(|s| serde_json::from_str(&s).ok()),
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        failing_since: r.get(11)?,
    })
}

/// Reads one webhook.
///
/// # Errors
/// A database error.
pub fn get(conn: &Connection, id: &str) -> crate::sql::Result<Option<Webhook>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"))?
        .query_row([id], webhook_row)
        .optional()
}

/// Webhooks newest first, at most `limit`.
///
/// # Errors
/// A database error.
pub fn list(
    conn: &Connection,
    state: Option<String>,
    before: Option<String>,
    limit: usize,
) -> crate::sql::Result<Vec<Webhook>> {
    ListQuery::new()
        .filter("state = ?", &state)
        .filter("id < ?", &before)
        .run(conn, COLUMNS, "webhooks", limit, webhook_row)
}

/// Every enabled webhook (for the fan-out cache).
///
/// # Errors
/// A database error.
pub fn enabled(conn: &Connection) -> crate::sql::Result<Vec<Webhook>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE state = 'enabled'"
    ))?;
    let rows = stmt.query_map([], webhook_row)?;
    rows.collect()
}

fn json_list(list: &[String]) -> String {
    json!(list).to_string()
}

/// Stores a new webhook.
///
/// # Errors
/// A database error (a duplicate url is a unique-constraint violation).
pub fn insert(tx: &WriteTx<'_>, w: &Webhook) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO webhooks (id, url, description, subscribed_events, headers, state,
                               signature_algorithm, retry_schedule, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        w.id,
        w.url,
        w.description,
        json_list(&w.subscribed_events),
        Value::Object(w.headers.clone()).to_string(),
        w.state,
        w.signature_algorithm.as_str(),
        w.retry_schedule.as_deref().map(json_list),
        w.created_at
    ])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Writes every field of `w` back; re-enabling clears `failing_since`.
///
/// # Errors
/// A database error (a duplicate url is a unique-constraint violation).
pub fn update(tx: &WriteTx<'_>, w: &Webhook, now: Millis) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE webhooks SET url = ?2, description = ?3, subscribed_events = ?4, headers = ?5, state = ?6,
                disabled_reason = ?7, signature_algorithm = ?8, retry_schedule = ?9, updated_at = ?10,
                failing_since = CASE WHEN ?6 = 'enabled' AND state = 'disabled' THEN NULL ELSE failing_since END
         WHERE id = ?1",
    )?
    .execute(params![
        w.id,
        w.url,
        w.description,
        json_list(&w.subscribed_events),
        Value::Object(w.headers.clone()).to_string(),
        w.state,
        w.disabled_reason,
        w.signature_algorithm.as_str(),
        w.retry_schedule.as_deref().map(json_list),
        now
    ])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Notes that webhook `id` changed at `now` (a rotated secret).
///
/// # Errors
/// A database error.
pub fn touch(tx: &WriteTx<'_>, id: &str, now: Millis) -> crate::sql::Result<()> {
    tx.prepare_cached("UPDATE webhooks SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Deletes webhook `id` (its secrets go with it).
///
/// # Errors
/// A database error.
pub fn delete(tx: &WriteTx<'_>, id: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
        .execute([id])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Disables webhook `id` with `reason` if it is enabled; returns its url if it was.
///
/// # Errors
/// A database error.
pub fn disable(
    tx: &WriteTx<'_>,
    id: &str,
    reason: &str,
    now: Millis,
) -> crate::sql::Result<Option<String>> {
    let url = tx
        .prepare_cached(
            "UPDATE webhooks SET state = 'disabled', disabled_reason = ?2, updated_at = ?3
             WHERE id = ?1 AND state = 'enabled' RETURNING url",
        )?
        .query_row(params![id, reason, now], |r| r.get(0))
        .optional()?;
    if url.is_some() {
        webhooks_changed(tx)?;
    }
    Ok(url)
}

/// Endpoint health after an attempt: a success clears `failing_since` (writing only when it
/// was set, so a healthy endpoint costs one index lookup); a failure sets it if unset and notes
/// the latest failure. Not a change the caches care about.
///
/// # Errors
/// A database error.
pub fn note_attempt(
    tx: &WriteTx<'_>,
    webhook_id: &str,
    succeeded: bool,
    at: Millis,
) -> crate::sql::Result<()> {
    if succeeded {
        tx.prepare_cached(
            "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )?
        .execute_later([webhook_id])?;
    } else {
        tx.prepare_cached(
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?2), last_failure_at = ?2 WHERE id = ?1",
        )?
        .execute_later(params![webhook_id, at])?;
    }
    Ok(())
}

/// Enabled webhooks whose attempts have all failed since at least `cutoff`, and that still
/// failed `span` after that: `(id, failing_since)`.
///
/// # Errors
/// A database error.
pub fn failing_since(
    conn: &Connection,
    cutoff: Millis,
    span: Millis,
) -> crate::sql::Result<Vec<(String, Millis)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, failing_since FROM webhooks
         WHERE state = 'enabled' AND failing_since IS NOT NULL AND failing_since <= ?1
           AND last_failure_at - failing_since >= ?2",
    )?;
    let rows = stmt.query_map(params![cutoff, span], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Every webhook's id and stored headers (re-encryption, the key inventory).
///
/// # Errors
/// A database error.
pub fn all_headers(conn: &Connection) -> crate::sql::Result<Vec<(String, Map<String, Value>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, headers FROM webhooks")?;
    let rows = stmt.query_map([], |r| {
        let text: String = r.get(1)?;
        Ok((r.get(0)?, serde_json::from_str(&text).unwrap_or_default()))
    })?;
    rows.collect()
}

/// Replaces the stored headers of webhook `id` (re-encryption).
///
/// # Errors
/// A database error.
pub fn set_headers(
    tx: &WriteTx<'_>,
    id: &str,
    headers: &Map<String, Value>,
) -> crate::sql::Result<()> {
    tx.prepare_cached("UPDATE webhooks SET headers = ?2 WHERE id = ?1")?
        .execute(params![id, Value::Object(headers.clone()).to_string()])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Webhooks per state, and how many enabled ones are failing (stats).
///
/// # Errors
/// A database error.
pub fn webhook_counts(conn: &Connection) -> crate::sql::Result<(StateCounts, u64)> {
    let by_state = count_by(
        conn,
        "SELECT state, COUNT(*) FROM webhooks GROUP BY state",
        [],
    )?;
    let failing: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM webhooks WHERE state = 'enabled' AND failing_since IS NOT NULL",
        )?
        .query_row([], |r| r.get(0))?;
    Ok((by_state, u64::try_from(failing).unwrap_or(0)))
}

fn count_by(
    conn: &Connection,
    sql: &str,
    p: impl crate::sql::Params,
) -> crate::sql::Result<StateCounts> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| {
        Ok((
            r.get::<_, String>(0)?,
            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        ))
    })?;
    rows.collect()
}

// ---------------------------------------------------------------------------------------------
// webhook_secrets
// ---------------------------------------------------------------------------------------------

/// A secret's public face: `{id, created_at, expires_at}`, newest first.
///
/// # Errors
/// A database error.
pub fn secret_summaries(conn: &Connection, webhook_id: &str) -> crate::sql::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, created_at, expires_at FROM webhook_secrets WHERE webhook_id = ?1 ORDER BY seq DESC",
    )?;
    let rows = stmt.query_map([webhook_id], |r| {
        let seq: i64 = r.get(0)?;
        Ok(json!({
            "id": seq.to_string(),
            "created_at": clock::to_rfc3339(r.get(1)?),
            "expires_at": r.get::<_, Option<Millis>>(2)?.map(clock::to_rfc3339),
        }))
    })?;
    rows.collect()
}

/// Stores sealed secret number `seq` of `webhook_id`.
///
/// # Errors
/// A database error.
pub fn insert_secret(
    tx: &WriteTx<'_>,
    webhook_id: &str,
    seq: i64,
    sealed: &Sealed,
    now: Millis,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO webhook_secrets (webhook_id, seq, key_id, nonce, ciphertext, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        webhook_id,
        seq,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
        now
    ])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// Ends the secrets of `webhook_id` still signing after `at` at `at`; returns the next seq.
///
/// # Errors
/// A database error.
pub fn expire_secrets(tx: &WriteTx<'_>, webhook_id: &str, at: Millis) -> crate::sql::Result<i64> {
    tx.prepare_cached(
        "UPDATE webhook_secrets SET expires_at = ?2
         WHERE webhook_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )?
    .execute(params![webhook_id, at])?;
    webhooks_changed(tx)?;
    tx.prepare_cached(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM webhook_secrets WHERE webhook_id = ?1",
    )?
    .query_row([webhook_id], |r| r.get(0))
}

/// The secrets of `webhook_id` that sign at `now` or later: `(seq, sealed, expires_at)`,
/// newest first.
///
/// # Errors
/// A database error.
pub fn signing_secrets(
    conn: &Connection,
    webhook_id: &str,
    now: Millis,
) -> crate::sql::Result<Vec<(i64, Sealed, Option<Millis>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, key_id, nonce, ciphertext, expires_at FROM webhook_secrets
         WHERE webhook_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY seq DESC",
    )?;
    let rows = stmt.query_map(params![webhook_id, now], |r| {
        Ok((
            r.get(0)?,
            Sealed {
                key_id: r.get(1)?,
                nonce: r.get(2)?,
                ciphertext: r.get(3)?,
            },
            r.get(4)?,
        ))
    })?;
    rows.collect()
}

/// Every stored secret: `(webhook_id, seq, sealed)` (re-encryption).
///
/// # Errors
/// A database error.
pub fn all_secrets(conn: &Connection) -> crate::sql::Result<Vec<(String, i64, Sealed)>> {
    let mut stmt = conn
        .prepare_cached("SELECT webhook_id, seq, key_id, nonce, ciphertext FROM webhook_secrets")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            Sealed {
                key_id: r.get(2)?,
                nonce: r.get(3)?,
                ciphertext: r.get(4)?,
            },
        ))
    })?;
    rows.collect()
}

/// Replaces secret `seq` of `webhook_id` with `sealed` (re-encryption).
///
/// # Errors
/// A database error.
pub fn reseal_secret(
    tx: &WriteTx<'_>,
    webhook_id: &str,
    seq: i64,
    sealed: &Sealed,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE webhook_secrets SET key_id = ?3, nonce = ?4, ciphertext = ?5 WHERE webhook_id = ?1 AND seq = ?2",
    )?
    .execute(params![webhook_id, seq, sealed.key_id, sealed.nonce, sealed.ciphertext])?;
    webhooks_changed(tx)?;
    Ok(())
}

/// The distinct ids of the keys that sealed stored secrets.
///
/// # Errors
/// A database error.
pub fn secret_key_ids(conn: &Connection) -> crate::sql::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT key_id FROM webhook_secrets")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

// ---------------------------------------------------------------------------------------------
// deliveries
// ---------------------------------------------------------------------------------------------

/// Creates a delivery and its job for each subscriber of the (already stored) event.
///
/// # Errors
/// A database error.
pub fn create(
    tx: &WriteTx<'_>,
    event: EventRef<'_>,
    subscribers: &[Subscriber],
    handoff: Option<&jobs::Handoff>,
) -> crate::sql::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (id, event_id, webhook_id, action, state, max_attempts, job_id, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7, ?7)",
    )?;
    for s in subscribers {
        let id = ids::new_id(ids::DELIVERY);
        let max_attempts = u32::try_from(s.retries + 1).unwrap_or(u32::MAX);
        // A first attempt handed off at once gets its row and the body in memory, not by a read.
        let job = jobs::handoff::enqueue_with(
            tx,
            handoff,
            &NewJob::new(KIND, json!({"delivery_id": id, "webhook_id": s.webhook_id}))
                .max_attempts(max_attempts),
            || {
                jobs::Memo::bounded(event.body.len(), || Handed {
                    delivery_id: id.clone(),
                    to_send: ToSend {
                        state: DeliveryState::Pending.as_str().to_string(),
                        attempts: 0,
                        event_id: event.id.to_string(),
                        webhook_id: s.webhook_id.clone(),
                    },
                    body: Arc::clone(event.body),
                })
            },
        )?;
        insert.execute_later(params![
            id,
            event.id,
            s.webhook_id,
            event.action,
            max_attempts,
            job.id,
            event.created_at
        ])?;
    }
    Ok(())
}

/// Cancels the pending deliveries of `webhook_id` and their jobs. Returns how many.
///
/// # Errors
/// A database error.
pub fn cancel_pending(
    tx: &WriteTx<'_>,
    webhook_id: &str,
    reason: &str,
) -> crate::sql::Result<usize> {
    let now = clock::now_ms();
    let job_ids: Vec<Option<String>> = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', last_error = ?2, finished_at = ?3, updated_at = ?3,
                    next_attempt_at = NULL
             WHERE webhook_id = ?1 AND state = 'pending' RETURNING job_id",
        )?
        .query_map(params![webhook_id, reason, now], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for job_id in job_ids.iter().flatten() {
        jobs::cancel(tx, job_id)?;
    }
    Ok(job_ids.len())
}

/// `(job_id, webhook_id)` of delivery `id`.
///
/// # Errors
/// A database error.
pub fn job_and_webhook(
    conn: &Connection,
    id: &str,
) -> crate::sql::Result<Option<(Option<String>, String)>> {
    conn.prepare_cached("SELECT job_id, webhook_id FROM deliveries WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Puts delivery `id` back to `pending` with its job re-queued (fresh attempts). Returns false
/// when it is still pending.
///
/// # Errors
/// A database error.
pub fn requeue(tx: &WriteTx<'_>, id: &str, job_id: Option<&str>) -> crate::sql::Result<bool> {
    let now = clock::now_ms();
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 'pending', finished_at = NULL, next_attempt_at = ?2, updated_at = ?2
             WHERE id = ?1 AND state != 'pending'",
        )?
        .execute(params![id, now])?;
    if changed == 0 {
        return Ok(false);
    }
    let finished = [JobState::Succeeded, JobState::Dead, JobState::Cancelled];
    let (requeued, live) = match job_id {
        Some(j) => {
            let requeued = jobs::requeue(tx, j, &finished)?;
            let live =
                !requeued && jobs::get(tx, j)?.is_some_and(|job| !finished.contains(&job.state));
            (requeued, live)
        }
        None => (false, false),
    };
    // A job that is somehow still live carries on; never give a delivery a second one.
    if !requeued && !live {
        // The job is gone (retention) or unusable: give the delivery a new one.
        let (max_attempts, webhook_id): (u32, String) = tx
            .prepare_cached("SELECT max_attempts, webhook_id FROM deliveries WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let job = jobs::enqueue(
            tx,
            &NewJob::new(KIND, json!({"delivery_id": id, "webhook_id": webhook_id}))
                .max_attempts(max_attempts),
        )?;
        tx.prepare_cached("UPDATE deliveries SET job_id = ?2 WHERE id = ?1")?
            .execute(params![id, job.id])?;
    }
    Ok(true)
}

/// Re-queues the failed deliveries of `webhook_id` created in `[since, until)`, and those
/// cancelled because the webhook was disabled. Returns how many.
///
/// # Errors
/// A database error.
pub fn recover(
    tx: &WriteTx<'_>,
    webhook_id: &str,
    since: Millis,
    until: Millis,
) -> crate::sql::Result<usize> {
    let failed: Vec<(String, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, job_id FROM deliveries
             WHERE webhook_id = ?1 AND created_at >= ?2 AND created_at < ?3
               AND (state = 'failed' OR (state = 'cancelled' AND last_error = ?4))",
        )?
        .query_map(params![webhook_id, since, until, WEBHOOK_DISABLED], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for (id, job_id) in &failed {
        if requeue(tx, id, job_id.as_deref())? {
            n += 1;
        }
    }
    Ok(n)
}

/// The newest delivery of a webhook, for lists: `{id, state, last_status, at}` or null.
///
/// # Errors
/// A database error.
pub fn last_for_webhook(conn: &Connection, webhook_id: &str) -> crate::sql::Result<Value> {
    Ok(conn
        .prepare_cached(
            "SELECT id, state, last_status, last_error, updated_at FROM deliveries
             WHERE webhook_id = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([webhook_id], |r| {
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "state": r.get::<_, String>(1)?,
                "last_status": r.get::<_, Option<i64>>(2)?,
                "last_error": r.get::<_, Option<String>>(3)?,
                "at": clock::to_rfc3339(r.get(4)?),
            }))
        })
        .optional()?
        .unwrap_or(Value::Null))
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, webhook_id, action, state, attempts, max_attempts, job_id, next_attempt_at,
     last_status, last_error, created_at, updated_at, finished_at";

fn summary(r: &Row<'_>) -> crate::sql::Result<Value> {
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "event_id": r.get::<_, String>(1)?,
        "webhook_id": r.get::<_, String>(2)?,
        "action": r.get::<_, String>(3)?,
        "state": r.get::<_, String>(4)?,
        "attempts": r.get::<_, i64>(5)?,
        "max_attempts": r.get::<_, i64>(6)?,
        "job_id": r.get::<_, Option<String>>(7)?,
        "next_attempt_at": r.get::<_, Option<Millis>>(8)?.map(clock::to_rfc3339),
        "last_status": r.get::<_, Option<i64>>(9)?,
        "last_error": r.get::<_, Option<String>>(10)?,
        "created_at": clock::to_rfc3339(r.get(11)?),
        "updated_at": clock::to_rfc3339(r.get(12)?),
        "finished_at": r.get::<_, Option<Millis>>(13)?.map(clock::to_rfc3339),
    }))
}

/// The deliveries of one event, oldest first.
///
/// # Errors
/// A database error.
pub fn for_event(conn: &Connection, event_id: &str) -> crate::sql::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([event_id], summary)?;
    rows.collect()
}

/// Filters of the deliveries list.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub webhook_id: Option<String>,
    pub state: Option<String>,
    pub action: ActionFilter,
    pub event_id: Option<String>,
    pub since: Option<Millis>,
    pub before: Option<String>,
}

/// Deliveries newest first, at most `limit`.
///
/// # Errors
/// A database error.
pub fn list_deliveries(
    conn: &Connection,
    f: &DeliveryFilter,
    limit: usize,
) -> crate::sql::Result<Vec<Value>> {
    ListQuery::new()
        .filter("webhook_id = ?", &f.webhook_id)
        .filter("state = ?", &f.state)
        .action(&f.action)
        .filter("event_id = ?", &f.event_id)
        .filter("created_at >= ?", &f.since)
        .filter("id < ?", &f.before)
        .run(conn, DELIVERY_COLUMNS, "deliveries", limit, summary)
}

/// One delivery's summary.
///
/// # Errors
/// A database error.
pub fn delivery(conn: &Connection, id: &str) -> crate::sql::Result<Option<Value>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"
    ))?
    .query_row([id], summary)
    .optional()
}

/// What one attempt needs of its delivery.
#[derive(Debug, Clone)]
pub struct ToSend {
    pub state: String,
    pub attempts: i64,
    pub event_id: String,
    pub webhook_id: String,
}

/// What a delivery created and handed off at once carries to its first attempt: what
/// [`to_send`] and the event's body would read back.
#[derive(Debug, Clone)]
pub struct Handed {
    pub delivery_id: String,
    pub to_send: ToSend,
    pub body: Arc<[u8]>,
}

/// Reads what the send job needs of delivery `id`.
///
/// # Errors
/// A database error.
pub fn to_send(conn: &Connection, id: &str) -> crate::sql::Result<Option<ToSend>> {
    conn.prepare_cached(
        "SELECT state, attempts, event_id, webhook_id FROM deliveries WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(ToSend {
            state: r.get(0)?,
            attempts: r.get(1)?,
            event_id: r.get(2)?,
            webhook_id: r.get(3)?,
        })
    })
    .optional()
}

/// Ends a pending delivery in `state` (`cancelled`, `failed`) with `reason`.
///
/// # Errors
/// A database error.
pub fn settle(
    tx: &WriteTx<'_>,
    delivery_id: &str,
    state: DeliveryState,
    reason: &str,
) -> crate::sql::Result<()> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?2, last_error = ?3, next_attempt_at = NULL, finished_at = ?4, updated_at = ?4
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![delivery_id, state.as_str(), reason, now])?;
    Ok(())
}

/// A delivery whose job died is failed (unless something already ended it); returns
/// `(webhook_id, event_id, action, attempts)` for the audit record.
///
/// # Errors
/// A database error.
pub fn fail_dead(
    tx: &WriteTx<'_>,
    id: &str,
    error: &str,
) -> crate::sql::Result<Option<(String, String, String, i64)>> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE deliveries SET state = 'failed', last_error = COALESCE(last_error, ?2), next_attempt_at = NULL,
                finished_at = ?3, updated_at = ?3
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, error, now])?;
    tx.prepare_cached(
        "SELECT webhook_id, event_id, action, attempts FROM deliveries WHERE id = ?1",
    )?
    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    .optional()
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub number: i64,
    pub at: Millis,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub headers: Option<Value>,
    /// The response's headers were over the cap; `headers` holds the first of them.
    pub headers_truncated: bool,
    pub body: Option<Vec<u8>>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(Millis),
    Failed,
}

impl Next {
    /// The delivery state it leaves.
    #[must_use]
    pub fn state(self) -> DeliveryState {
        match self {
            Self::Succeeded => DeliveryState::Succeeded,
            Self::RetryAt(_) => DeliveryState::Pending,
            Self::Failed => DeliveryState::Failed,
        }
    }
}

/// Records attempt `a` of delivery `delivery_id` and moves the delivery to `next`.
///
/// # Errors
/// A database error.
pub fn record_attempt(
    tx: &WriteTx<'_>,
    delivery_id: &str,
    a: &AttemptRow,
    next: Next,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms, response_headers, response_body,
                                        error_kind, error, response_headers_truncated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute_later(params![
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
    let (next_at, finished) = match next {
        Next::Succeeded | Next::Failed => (None, Some(now)),
        Next::RetryAt(at) => (Some(at), None),
    };
    tx.prepare_cached(
        "UPDATE deliveries SET attempts = ?2, last_status = ?3, last_error = ?4, state = ?5, next_attempt_at = ?6,
                finished_at = ?7, updated_at = ?8
         WHERE id = ?1",
    )?
    .execute_later(params![
        delivery_id,
        a.number,
        a.status,
        a.error,
        next.state().as_str(),
        next_at,
        finished,
        now
    ])?;
    Ok(())
}

/// The columns [`attempt_json`] reads, in its order (delivery and task attempts alike).
pub const ATTEMPT_COLUMNS: &str =
    "attempt, at, status, latency_ms, response_headers, response_body,
     error_kind, error, response_headers_truncated";

/// One attempt row (selected as [`ATTEMPT_COLUMNS`]) as the API shows it.
///
/// # Errors
/// A column of the wrong type.
pub fn attempt_json(r: &crate::sql::Row<'_>) -> crate::sql::Result<Value> {
    let headers: Option<String> = r.get(4)?;
    let body: Option<Vec<u8>> = r.get(5)?;
    Ok(json!({
        "attempt": r.get::<_, i64>(0)?,
        "at": clock::to_rfc3339(r.get(1)?),
        "status": r.get::<_, Option<i64>>(2)?,
        "latency_ms": r.get::<_, i64>(3)?,
        "response_headers": headers.and_then(|h| serde_json::from_str::<Value>(&h).ok()),
        // The receiver sent more than 16 KiB of headers; the first of them are kept.
        "response_headers_truncated": r.get::<_, bool>(8)?,
        "response_body": body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        "error_kind": r.get::<_, Option<String>>(6)?,
        "error": r.get::<_, Option<String>>(7)?,
    }))
}

/// Every attempt of a delivery, oldest first.
///
/// # Errors
/// A database error.
pub fn attempts(conn: &Connection, delivery_id: &str) -> crate::sql::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt"
    ))?;
    let rows = stmt.query_map([delivery_id], attempt_json)?;
    rows.collect()
}

/// Counts per state.
pub type StateCounts = Vec<(String, u64)>;

/// Deliveries per state; created since `since` per state; failed since `since` (stats).
///
/// # Errors
/// A database error.
pub fn delivery_counts(
    conn: &Connection,
    since: Millis,
) -> crate::sql::Result<(StateCounts, StateCounts, u64)> {
    let by_state = count_by(
        conn,
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state",
        [],
    )?;
    // Ids sort by creation time: the recent ones are an id range.
    let recent = count_by(
        conn,
        "SELECT state, COUNT(*) FROM deliveries WHERE id >= ?1 GROUP BY state",
        [ids::time_bound(ids::DELIVERY, since)],
    )?;
    let failed: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_state WHERE state = 'failed' AND finished_at >= ?1",
        )?
        .query_row([since], |r| r.get(0))?;
    Ok((by_state, recent, u64::try_from(failed).unwrap_or(0)))
}

/// Deletes up to `batch` deliveries in `state` that finished before `cutoff` — their attempts
/// go with them (`ON DELETE CASCADE`). Returns how many.
///
/// # Errors
/// A database error.
pub fn prune(
    tx: &WriteTx<'_>,
    state: DeliveryState,
    cutoff: Millis,
    batch: usize,
) -> crate::sql::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM deliveries WHERE id IN (
             SELECT id FROM deliveries WHERE state = ?1 AND id < ?2 AND COALESCE(finished_at, updated_at) < ?3
             ORDER BY id LIMIT ?4)",
    )?
    .execute(params![
        state.as_str(),
        ids::time_bound(ids::DELIVERY, cutoff),
        cutoff,
        i64::try_from(batch).unwrap_or(i64::MAX)
    ])
}

/// Which of `event_ids` deliveries still refer to (retention keeps those events).
///
/// # Errors
/// A database error.
pub fn referenced_events(
    conn: &Connection,
    event_ids: &[String],
) -> crate::sql::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)")?;
    let mut out = Vec::new();
    for id in event_ids {
        if stmt.query_row([id], |r| r.get::<_, bool>(0))? {
            out.push(id.clone());
        }
    }
    Ok(out)
}
