//! Deliveries: one per (event, webhook), each carried by a `delivery.send` job, and every attempt
//! recorded. Fan-out, cancel, recover, and the deliveries admin API.
//!
//! States: `pending` (attempts remain) → `succeeded`, `failed` (out of attempts, 410, or an
//! unusable webhook), or `cancelled` (webhook deleted or disabled).

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::webhooks;
use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::error::ApiError;
use crate::ids;
use crate::jobs::{self, JobState, NewJob};
use crate::http::{Endpoint, PAGE, Reply};
use crate::store::audit;
use crate::pagination::{self, PageQuery};
use crate::store::{Store, WriteTx};

/// The job kind that sends a delivery.
pub const KIND: &str = "delivery.send";

/// The reason recorded on deliveries cancelled because their webhook was disabled; `recover`
/// re-queues those as well as failed ones.
pub const WEBHOOK_DISABLED: &str = "webhook_disabled: the webhook was disabled";

/// What fan-out needs to know about a published event.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub id: &'a str,
    pub action: &'a str,
    pub created_at: Millis,
}

/// A webhook an event goes to, and how many retries it gets.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub webhook_id: String,
    pub retries: usize,
}

/// Every enabled webhook subscribed to `action` (or only `only`, whatever its subscriptions).
/// `default_retries` is the length of the global `delivery.retry_schedule`.
///
/// # Errors
/// A database error.
pub fn subscribers(
    conn: &Connection,
    action: &str,
    only: Option<&str>,
    default_retries: usize,
) -> rusqlite::Result<Vec<Subscriber>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, subscribed_events, retry_schedule FROM webhooks
         WHERE state = 'enabled' AND (?1 IS NULL OR id = ?1)",
    )?;
    let rows = stmt.query_map([only], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (webhook_id, subs, schedule) = row?;
        if only.is_none()
            && !webhooks::subscribed(
                &serde_json::from_str::<Vec<String>>(&subs).unwrap_or_default(),
                action,
            )
        {
            continue;
        }
        let retries = schedule
            .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
            .map_or(default_retries, |s| s.len());
        out.push(Subscriber {
            webhook_id,
            retries,
        });
    }
    Ok(out)
}

/// Creates a delivery and its job for each subscriber of the (already stored) event.
///
/// # Errors
/// A database error.
pub fn create(
    tx: &WriteTx<'_>,
    event: EventRef<'_>,
    subscribers: &[Subscriber],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (id, event_id, webhook_id, action, state, max_attempts, job_id, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7, ?7)",
    )?;
    for s in subscribers {
        let id = ids::new_id(ids::DELIVERY);
        let max_attempts = u32::try_from(s.retries + 1).unwrap_or(u32::MAX);
        let job = jobs::enqueue(
            tx,
            &NewJob::new(KIND, json!({"delivery_id": id, "webhook_id": s.webhook_id}))
                .max_attempts(max_attempts),
        )?;
        insert.execute(params![
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
pub fn cancel_pending(tx: &WriteTx<'_>, webhook_id: &str, reason: &str) -> rusqlite::Result<usize> {
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

/// Puts delivery `id` back to `pending` with its job re-queued (fresh attempts). Returns false
/// when it is still pending.
fn requeue(tx: &WriteTx<'_>, id: &str, job_id: Option<&str>) -> rusqlite::Result<bool> {
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
        let max_attempts: u32 = tx
            .prepare_cached("SELECT max_attempts FROM deliveries WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let job = jobs::enqueue(
            tx,
            &NewJob::new(KIND, json!({"delivery_id": id})).max_attempts(max_attempts),
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
) -> rusqlite::Result<usize> {
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
pub fn last_for_webhook(conn: &Connection, webhook_id: &str) -> rusqlite::Result<Value> {
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

const COLUMNS: &str =
    "id, event_id, webhook_id, action, state, attempts, max_attempts, job_id, next_attempt_at,
     last_status, last_error, created_at, updated_at, finished_at";

fn summary(r: &Row<'_>) -> rusqlite::Result<Value> {
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
pub fn for_event(conn: &Connection, event_id: &str) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([event_id], summary)?;
    rows.collect()
}

fn attempts(conn: &Connection, delivery_id: &str) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at, status, latency_ms, response_headers, response_body, error_kind, error,
                response_headers_truncated
         FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map([delivery_id], |r| {
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
    })?;
    rows.collect()
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

/// `/v1beta1/admin/deliveries…`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        ("webhook_id", "only this webhook's"),
        ("state", "pending, succeeded, failed or cancelled"),
        ("action", "exact action, or a prefix ending in `.*`"),
        ("event_id", "only this event's"),
        ("since", "RFC 3339: created at or after"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/deliveries", "deliveries", "deliveries, newest first", |r| r.to(list))
            .query(LIST)
            .reply(Reply::Json("`{deliveries: [...], next_cursor}`")).keys(&["deliveries", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/deliveries/{id}", "deliveries", "one delivery with its envelope and every attempt (status, latency, response headers, first 4 KiB of the body, or the error)", |r| r.to(detail))
            .reply(Reply::Json("`{delivery: {..., attempts: [...]}}`")).keys(&["delivery"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/deliveries/{id}/retry", "deliveries", "queue it again with a fresh set of attempts; 409 `already_pending`", |r| r.to(retry))
            .status(202)
            .reply(Reply::Json("`{delivery: {...}}`")).keys(&["delivery"]),
    ]
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    webhook_id: Option<String>,
    state: Option<String>,
    action: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let nonempty = |o: Option<String>| o.filter(|s| !s.is_empty());
    let state = pagination::one_of(
        "state",
        q.state,
        &["pending", "succeeded", "failed", "cancelled"],
    )?;
    let since = nonempty(q.since)
        .as_deref()
        .map(clock::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let (webhook_id, action, event_id, before) = (
        nonempty(q.webhook_id),
        pagination::ActionFilter::parse(q.action.as_deref()),
        nonempty(q.event_id),
        q.page.cursor(),
    );
    let items = store
        .read(move |c| {
            pagination::ListQuery::new()
                .filter("webhook_id = ?", &webhook_id)
                .filter("state = ?", &state)
                .action(&action)
                .filter("event_id = ?", &event_id)
                .filter("created_at >= ?", &since)
                .filter("id < ?", &before)
                .run(c, COLUMNS, "deliveries", limit + 1, summary)
                .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({"deliveries": items, "next_cursor": next})))
}

/// One delivery with its envelope and every attempt.
///
/// # Errors
/// A database error.
pub fn detail_json(c: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    let Some(mut v) = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"))?
        .query_row([id], summary)
        .optional()?
    else {
        return Ok(None);
    };
    let event_id = v["event_id"].as_str().unwrap_or_default().to_string();
    let body: Option<Vec<u8>> = c
        .prepare_cached("SELECT body FROM events WHERE id = ?1")?
        .query_row([&event_id], |r| r.get(0))
        .optional()?;
    v["payload"] = body
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    v["attempt_count"] = v["attempts"].take();
    v["attempts"] = json!(attempts(c, id)?);
    if let Some(w) = webhooks::get(c, v["webhook_id"].as_str().unwrap_or_default())? {
        v["webhook_url"] = json!(w.url);
    }
    Ok(Some(v))
}

async fn detail(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .read(move |c| {
            detail_json(c, &id)?.ok_or_else(|| ApiError::not_found(format!("delivery {id}")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"delivery": v})))
}

async fn retry(
    Admin(caller): Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .writer()
        .write(move |tx| {
            let (job_id, webhook_id): (Option<String>, String) = tx
                .prepare_cached("SELECT job_id, webhook_id FROM deliveries WHERE id = ?1")?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| ApiError::not_found(format!("delivery {id}")))?;
            if webhooks::get(tx, &webhook_id)?.is_none() {
                return Err(ApiError::conflict(
                    "webhook_deleted",
                    format!("the webhook of delivery {id} was deleted"),
                ));
            }
            if !requeue(tx, &id, job_id.as_deref())? {
                return Err(ApiError::conflict(
                    "already_pending",
                    format!("delivery {id} is still pending"),
                ));
            }
            audit::record(
                tx,
                &audit::Entry {
                    actor: &caller.identity,
                    action: "delivery.retry",
                    target_type: Some("delivery"),
                    target_id: Some(&id),
                    detail: json!({"webhook_id": webhook_id}),
                },
            )?;
            Ok::<_, ApiError>(detail_json(tx, &id)?)
        })
        .await?;
    Ok(HttpResponse::Accepted().json(json!({"delivery": v})))
}
