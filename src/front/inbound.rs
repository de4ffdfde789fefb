//! Inbound events: the `inbound_events` table and its admin API — list, detail with
//! the raw event, what was fetched and the processing job, and replay.
//!
//! States: `pending` (stored, processing queued or running) → `processed`, or `failed` with the
//! reason when the processing job ends without success.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::error::ApiError;
use crate::ids;
use crate::jobs::{self, JobState, NewJob};
use crate::http::{Endpoint, PAGE, Reply};
use crate::store::audit;
use crate::pagination::{self, PageQuery};
use crate::store::{Store, WriteTx};

/// Where an inbound event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `POST /webhooks/front`: application webhook, `{authorization, type, payload}` envelope.
    App,
    /// `POST /webhooks/front/rules`: legacy rule webhook, the body is the event.
    Rule,
    /// The `front_sync` cron ([`super::sync`]): an event Front's List Events API showed and no
    /// webhook delivered; the body is the event as listed.
    Sync,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Rule => "rule",
            Self::Sync => "sync",
        }
    }
}

/// An event to store.
#[derive(Debug)]
pub struct NewInbound {
    pub channel: Channel,
    pub external_id: String,
    pub event_type: String,
    pub company_id: Option<String>,
    pub raw_body: Vec<u8>,
    pub headers: Value,
}

/// Stores `event` and enqueues its processing job in the caller's transaction. Returns the new
/// id, or `None` when an event with the same external id is already stored (nothing is queued).
///
/// # Errors
/// A database error.
pub fn store(tx: &WriteTx<'_>, event: &NewInbound) -> rusqlite::Result<Option<String>> {
    let now = clock::now_ms();
    if !remember_key(tx, "front", &event.external_id, now)? {
        return Ok(None);
    }
    let id = ids::new_id(ids::INBOUND);
    let job = jobs::enqueue(
        tx,
        &NewJob::new(super::process::KIND, json!({"inbound_id": id}))
            .max_attempts(super::process::MAX_ATTEMPTS),
    )?;
    tx.prepare_cached(
        "INSERT INTO inbound_events (id, source, channel, external_id, event_type, company_id, state,
                                     raw_body, headers, job_id, received_at, updated_at)
         VALUES (?1, 'front', ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        id,
        event.channel.as_str(),
        event.external_id,
        event.event_type,
        event.company_id,
        event.raw_body,
        event.headers.to_string(),
        job.id,
        now
    ])?;
    Ok(Some(id))
}

/// How long dedupe keys are remembered at least, whatever the retention of inbound rows: a
/// captured request replayed after its row is gone is still a duplicate.
pub const KEY_MEMORY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Records `key` of `source` as seen; `false` when it was seen before (a duplicate).
///
/// # Errors
/// A database error.
pub fn remember_key(
    tx: &WriteTx<'_>,
    source: &str,
    key: &str,
    now: Millis,
) -> rusqlite::Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO inbound_keys (source, key, seen_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (source, key) DO NOTHING",
        )?
        .execute(params![source, key, now])?;
    Ok(inserted == 1)
}

/// Forgets up to `batch` dedupe keys first seen before `cutoff`. Returns how many.
///
/// # Errors
/// A database error.
pub fn forget_keys(tx: &WriteTx<'_>, cutoff: Millis, batch: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM inbound_keys WHERE (source, key) IN
           (SELECT source, key FROM inbound_keys INDEXED BY inbound_keys_seen WHERE seen_at < ?1 LIMIT ?2)",
    )?
    .execute(params![cutoff, i64::try_from(batch).unwrap_or(i64::MAX)])
}

/// What the processing job reads.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub channel: String,
    pub event_type: String,
    pub company_id: Option<String>,
    pub raw_body: Vec<u8>,
}

/// Loads the stored event `id`.
///
/// # Errors
/// A database error.
pub fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(
        "SELECT id, channel, event_type, company_id, raw_body FROM inbound_events WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(Stored {
            id: r.get(0)?,
            channel: r.get(1)?,
            event_type: r.get(2)?,
            company_id: r.get(3)?,
            raw_body: r.get(4)?,
        })
    })
    .optional()
}

/// Marks `id` processed, with what was fetched and the event published for it.
///
/// # Errors
/// A database error.
pub fn mark_processed(
    tx: &WriteTx<'_>,
    id: &str,
    fetched: &Value,
    event_id: &str,
) -> rusqlite::Result<()> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE inbound_events SET state = 'processed', fetched = ?2, event_id = ?3, error = NULL,
                processed_at = ?4, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, fetched.to_string(), event_id, now])?;
    Ok(())
}

/// Records the last processing error; the event stays `pending` while retries remain.
///
/// # Errors
/// A database error.
pub fn note_error(tx: &WriteTx<'_>, id: &str, error: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE inbound_events SET error = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, error, clock::now_ms()])?;
    Ok(())
}

/// Marks `id` failed with `error` (its processing job is dead).
///
/// # Errors
/// A database error.
pub fn mark_failed(tx: &WriteTx<'_>, id: &str, error: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE inbound_events SET state = 'failed', error = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, error, clock::now_ms()])?;
    Ok(())
}

/// An inbound event in a list.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub source: String,
    pub channel: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub company_id: Option<String>,
    pub state: String,
    pub error: Option<String>,
    pub job_id: Option<String>,
    pub received_at: String,
    pub processed_at: Option<String>,
}

const SUMMARY_COLUMNS: &str = "id, source, channel, external_id, event_type, company_id, state, error, job_id, received_at, processed_at";

fn summary(r: &Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: r.get(0)?,
        source: r.get(1)?,
        channel: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        company_id: r.get(5)?,
        state: r.get(6)?,
        error: r.get(7)?,
        job_id: r.get(8)?,
        received_at: clock::to_rfc3339(r.get(9)?),
        processed_at: r.get::<_, Option<Millis>>(10)?.map(clock::to_rfc3339),
    })
}

/// Lists inbound events newest first.
///
/// # Errors
/// A database error.
pub fn list(
    conn: &Connection,
    source: Option<&str>,
    state: Option<&str>,
    before: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Summary>> {
    let (source, state, before) = (
        source.map(str::to_string),
        state.map(str::to_string),
        before.map(str::to_string),
    );
    crate::pagination::ListQuery::new()
        .filter("source = ?", &source)
        .filter("state = ?", &state)
        .filter("id < ?", &before)
        .run(conn, SUMMARY_COLUMNS, "inbound_events", limit, summary)
}

/// Parses stored JSON text, keeping it as a string when it is not JSON.
fn json_or_text(text: Option<String>) -> Value {
    text.map_or(Value::Null, |t| {
        serde_json::from_str(&t).unwrap_or(Value::String(t))
    })
}

/// One inbound event with everything an operator needs to see why it did or did not go out.
///
/// # Errors
/// A database error.
pub fn detail(conn: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, raw_body, headers, fetched, event_id FROM inbound_events WHERE id = ?1"
        ))?
        .query_row([id], |r| {
            let s = summary(r)?;
            let raw: Vec<u8> = r.get(11)?;
            Ok((s, raw, r.get::<_, String>(12)?, r.get::<_, Option<String>>(13)?, r.get::<_, Option<String>>(14)?))
        })
        .optional()?;
    let Some((s, raw, headers, fetched, event_id)) = row else {
        return Ok(None);
    };
    let job = match &s.job_id {
        Some(job_id) => jobs::get(conn, job_id)?,
        None => None,
    };
    // The event published for it, as subscribers receive it.
    let outbound = match &event_id {
        Some(e) => conn
            .prepare_cached("SELECT body FROM events WHERE id = ?1")?
            .query_row([e], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    let raw = serde_json::from_slice::<Value>(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("raw".into(), raw);
        m.insert("headers".into(), json_or_text(Some(headers)));
        m.insert("fetched".into(), json_or_text(fetched));
        m.insert("published_event_id".into(), json!(event_id));
        m.insert("outbound".into(), outbound);
        m.insert("job".into(), serde_json::to_value(job).unwrap_or_default());
    }
    Ok(Some(v))
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

/// `/v1beta1/admin/inbound…`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        ("source", "`front`"),
        ("state", "pending, processed or failed"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/inbound", "inbound", "received events, newest first", |r| r.to(list_route))
            .query(LIST)
            .reply(Reply::Json("`{inbound: [...], next_cursor}`")).keys(&["inbound", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/inbound/{id}", "inbound", "one received event: raw body, headers, what was fetched, the published event, its job", |r| r.to(detail_route))
            .reply(Reply::Json("`{inbound: {...}}`")).keys(&["inbound"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/inbound/{id}/replay", "inbound", "process it again (fetch and publish anew); 409 `already_pending` while it is being processed", |r| r.to(replay_route))
            .reply(Reply::Json("`{inbound: {...}}`, back to pending")).keys(&["inbound"]),
    ]
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    source: Option<String>,
    state: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_route(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let state = pagination::one_of("state", q.state, &["pending", "processed", "failed"])?;
    let source = q.source.filter(|s| !s.is_empty());
    let before = q.page.cursor();
    let items = store
        .read(move |c| {
            list(
                c,
                source.as_deref(),
                state.as_deref(),
                before.as_deref(),
                limit + 1,
            )
            .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |i| &i.id);
    Ok(HttpResponse::Ok().json(json!({"inbound": items, "next_cursor": next})))
}

async fn detail_route(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let found = store
        .read({
            let id = id.clone();
            move |c| detail(c, &id).map_err(ApiError::from)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("inbound event {id}")))?;
    Ok(HttpResponse::Ok().json(json!({"inbound": found})))
}

/// Processes an event again: back to `pending`, its job re-queued with a fresh set of attempts
/// (or a new job if retention removed the old one). 409 `already_pending` while it still runs.
async fn replay_route(
    Admin(caller): Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    store
        .writer()
        .write({
            let id = id.clone();
            move |tx| {
                let job_id: Option<String> = tx
                    .prepare_cached("SELECT job_id FROM inbound_events WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| ApiError::not_found(format!("inbound event {id}")))?;
                let job = match &job_id {
                    Some(j) => jobs::get(tx, j)?,
                    None => None,
                };
                let job_id = match job {
                    Some(job) => {
                        let finished = [JobState::Succeeded, JobState::Dead, JobState::Cancelled];
                        if !jobs::requeue(tx, &job.id, &finished)? {
                            return Err(ApiError::conflict(
                                "already_pending",
                                format!("inbound event {id} is still being processed (job {} is {})", job.id, job.state),
                            ));
                        }
                        job.id
                    }
                    None => {
                        jobs::enqueue(
                            tx,
                            &NewJob::new(super::process::KIND, json!({"inbound_id": id}))
                                .max_attempts(super::process::MAX_ATTEMPTS),
                        )?
                        .id
                    }
                };
                tx.prepare_cached(
                    "UPDATE inbound_events SET state = 'pending', error = NULL, job_id = ?2, updated_at = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, job_id, clock::now_ms()])?;
                audit::record(
                    tx,
                    &audit::Entry {
                        actor: &caller.identity,
                        action: "inbound.replay",
                        target_type: Some("inbound"),
                        target_id: Some(&id),
                        detail: json!({"job_id": job_id}),
                    },
                )?;
                Ok::<_, ApiError>(())
            }
        })
        .await?;
    let found = store
        .read(move |c| detail(c, &id).map_err(ApiError::from))
        .await?
        .ok_or_else(|| ApiError::internal("replayed inbound event vanished"))?;
    Ok(HttpResponse::Ok().json(json!({"inbound": found})))
}
