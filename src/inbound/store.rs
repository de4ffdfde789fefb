//! The `inbound_events`, `inbound_keys` and `inbound_rejected` tables — every statement on them.

use crate::sql::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::{NewInbound, Processing, RejectedRow, Rejection, Stored, Summary};
use crate::clock::{self, Millis};
use crate::ids;
use crate::jobs::{self, NewJob};
use crate::store::WriteTx;

/// Stores `event` and enqueues its processing job (`processing`) in the caller's transaction.
/// Returns the new id, or `None` when the sender's id was seen before (nothing is queued).
///
/// # Errors
/// A database error.
pub fn store(
    tx: &WriteTx<'_>,
    event: &NewInbound,
    processing: Processing,
    handoff: Option<&jobs::Handoff>,
) -> crate::sql::Result<Option<String>> {
    let now = clock::now_ms();
    // The event id is a duplicate while its row exists (the unique index) and, after retention
    // deleted the row, while [`prune`]'s copy in `inbound_keys` lasts: two lookups on the hot
    // path instead of one more row and index entry per event.
    if seen(tx, event.source, &event.external_id)? {
        return Ok(None);
    }
    if let Some(key) = &event.body_key
        && !remember_key(tx, event.source, key, now)?
    {
        return Ok(None);
    }
    let id = ids::new_id(ids::INBOUND);
    // A run handed off at once gets the event in memory instead of reading it back.
    let job = jobs::handoff::enqueue_with(
        tx,
        handoff,
        &NewJob::new(processing.kind, json!({"inbound_id": id}))
            .max_attempts(processing.max_attempts),
        || {
            jobs::Memo::bounded(event.raw_body.len(), || Stored {
                id: id.clone(),
                channel: event.channel.as_str().to_string(),
                event_type: event.event_type.clone(),
                company_id: event.company_id.clone(),
                raw_body: event.raw_body.clone(),
                source: event.source.to_string(),
                external_id: event.external_id.clone(),
                headers: event.headers.clone(),
                received_at: now,
            })
        },
    )?;
    tx.prepare_cached(
        "INSERT INTO inbound_events (id, source, channel, external_id, event_type, company_id, state,
                                     raw_body, headers, job_id, received_at, updated_at)
         VALUES (?1, ?10, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute_later(params![
        id,
        event.channel.as_str(),
        event.external_id,
        event.event_type,
        event.company_id,
        event.raw_body,
        event.headers,
        job.id,
        now,
        event.source
    ])?;
    Ok(Some(id))
}

/// How long dedupe keys are remembered at least, whatever the retention of inbound rows: a
/// captured request replayed after its row is gone is still a duplicate.
pub const KEY_MEMORY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Whether event id `external_id` of `source` is stored, or was and is still remembered.
///
/// # Errors
/// A database error.
fn seen(tx: &WriteTx<'_>, source: &str, external_id: &str) -> crate::sql::Result<bool> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM inbound_events WHERE source = ?1 AND external_id = ?2)
             OR EXISTS (SELECT 1 FROM inbound_keys WHERE source = ?1 AND key = ?2)",
    )?
    .query_row(params![source, external_id], |r| r.get(0))
}

/// Records `key` of `source` as seen; `false` when it was seen before (a duplicate). Only
/// sources' body keys are written on the way in; event ids are kept by [`prune`].
///
/// # Errors
/// A database error.
fn remember_key(
    tx: &WriteTx<'_>,
    source: &str,
    key: &str,
    now: Millis,
) -> crate::sql::Result<bool> {
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
pub fn forget_keys(tx: &WriteTx<'_>, cutoff: Millis, batch: usize) -> crate::sql::Result<usize> {
    tx.prepare_cached(
        // A key whose event is still stored stays: forgetting it would turn a resend into a
        // clash with that row instead of a duplicate.
        "DELETE FROM inbound_keys WHERE (source, key) IN
           (SELECT k.source, k.key FROM inbound_keys k INDEXED BY inbound_keys_seen
            WHERE k.seen_at < ?1
              AND NOT EXISTS (SELECT 1 FROM inbound_events e WHERE e.source = k.source AND e.external_id = k.key)
            LIMIT ?2)",
    )?
    .execute(params![cutoff, i64::try_from(batch).unwrap_or(i64::MAX)])
}

/// Loads the stored event `id`.
///
/// # Errors
/// A database error.
pub fn load(conn: &Connection, id: &str) -> crate::sql::Result<Option<Stored>> {
    conn.prepare_cached(
        "SELECT id, channel, event_type, company_id, raw_body, source, external_id, headers, received_at
         FROM inbound_events WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(Stored {
            id: r.get(0)?,
            channel: r.get(1)?,
            event_type: r.get(2)?,
            company_id: r.get(3)?,
            raw_body: r.get(4)?,
            source: r.get(5)?,
            external_id: r.get(6)?,
            headers: r.get(7)?,
            received_at: r.get(8)?,
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
    fetched: &str,
    event_id: &str,
) -> crate::sql::Result<()> {
    let now = clock::now_ms();
    tx.prepare_cached(
        "UPDATE inbound_events SET state = 'processed', fetched = ?2, event_id = ?3, error = NULL,
                processed_at = ?4, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute_later(params![id, fetched, event_id, now])?;
    Ok(())
}

/// Records the last processing error; the event stays `pending` while retries remain.
///
/// # Errors
/// A database error.
pub fn note_error(tx: &WriteTx<'_>, id: &str, error: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("UPDATE inbound_events SET error = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute_later(params![id, error, clock::now_ms()])?;
    Ok(())
}

/// Marks `id` failed with `error` (its processing job is dead).
///
/// # Errors
/// A database error.
pub fn mark_failed(tx: &WriteTx<'_>, id: &str, error: &str) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE inbound_events SET state = 'failed', error = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute_later(params![id, error, clock::now_ms()])?;
    Ok(())
}

const SUMMARY_COLUMNS: &str = "id, source, channel, external_id, event_type, company_id, state, error, job_id, received_at, processed_at";

fn summary(r: &Row<'_>) -> crate::sql::Result<Summary> {
    Ok(Summary {
        id: r.get(0)?,
        source: r.get(1)?,
        channel: r.get(2)?,
        external_id: r.get(3)?,
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
) -> crate::sql::Result<Vec<Summary>> {
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
pub fn detail(conn: &Connection, id: &str) -> crate::sql::Result<Option<Value>> {
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
        Some(e) => crate::events::store::body(conn, e)?
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

/// `(job_id, source)` of inbound event `id`.
///
/// # Errors
/// A database error.
pub fn job_and_source(
    conn: &Connection,
    id: &str,
) -> crate::sql::Result<Option<(Option<String>, String)>> {
    conn.prepare_cached("SELECT job_id, source FROM inbound_events WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Back to `pending` with processing job `job_id` (replay).
///
/// # Errors
/// A database error.
pub fn mark_pending(tx: &WriteTx<'_>, id: &str, job_id: &str) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "UPDATE inbound_events SET state = 'pending', error = NULL, job_id = ?2, updated_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![id, job_id, clock::now_ms()])?;
    Ok(())
}

/// The company id of `source`'s most recent stored event that has one (Front's `org_id`).
///
/// # Errors
/// A database error.
pub fn latest_company(conn: &Connection, source: &str) -> crate::sql::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT company_id FROM inbound_events
         WHERE source = ?1 AND company_id IS NOT NULL ORDER BY id DESC LIMIT 1",
    )?
    .query_row([source], |r| r.get(0))
    .optional()
}

/// Inbound events per state (stats).
///
/// # Errors
/// A database error.
pub fn counts(conn: &Connection) -> crate::sql::Result<Vec<(String, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT state, COUNT(*) FROM inbound_events GROUP BY state")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        ))
    })?;
    rows.collect()
}

/// Deletes up to `batch` inbound events in `state` finished before `cutoff` (retention).
/// Their event ids stay remembered as dedupe keys (until [`forget_keys`]). Returns how many.
///
/// # Errors
/// A database error.
pub fn prune(
    tx: &WriteTx<'_>,
    state: &str,
    cutoff: Millis,
    batch: usize,
) -> crate::sql::Result<usize> {
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM inbound_events
             WHERE state = ?1 AND id < ?2 AND COALESCE(processed_at, updated_at) < ?3
             ORDER BY id LIMIT ?4",
        )?
        .query_map(
            params![
                state,
                ids::time_bound(ids::INBOUND, cutoff),
                cutoff,
                i64::try_from(batch).unwrap_or(i64::MAX)
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut remember = tx.prepare_cached(
        "INSERT INTO inbound_keys (source, key, seen_at)
         SELECT source, external_id, received_at FROM inbound_events WHERE id = ?1
         ON CONFLICT (source, key) DO NOTHING",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM inbound_events WHERE id = ?1")?;
    let mut n = 0;
    for id in &ids {
        remember.execute([id])?;
        n += delete.execute([id])?;
    }
    Ok(n)
}

/// Stores one refused request.
///
/// # Errors
/// A database error.
pub fn insert_rejected(tx: &WriteTx<'_>, r: &Rejection) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO inbound_rejected (id, source, cause, message, at, peer, method, path, content_type,
                                       content_length, user_agent, signature, body_head)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        ids::new_id(ids::REJECTED),
        r.source,
        r.cause,
        r.message,
        r.at,
        r.peer,
        r.method,
        r.path,
        r.content_type,
        r.content_length.and_then(|n| i64::try_from(n).ok()),
        r.user_agent,
        r.signature.to_string(),
        r.body_head
    ])?;
    Ok(())
}

/// Refused requests newest first, filtered by source, cause and time.
///
/// # Errors
/// A database error.
pub fn list_rejected(
    conn: &Connection,
    source: Option<&str>,
    cause: Option<&str>,
    since: Option<Millis>,
    before: Option<&str>,
    limit: usize,
) -> crate::sql::Result<Vec<RejectedRow>> {
    let (source, cause, before) = (
        source.map(str::to_string),
        cause.map(str::to_string),
        before.map(str::to_string),
    );
    let since = since.map(|t| ids::time_bound(ids::REJECTED, t));
    crate::pagination::ListQuery::new()
        .filter("source = ?", &source)
        .filter("cause = ?", &cause)
        .filter("id >= ?", &since)
        .filter("id < ?", &before)
        .run(
            conn,
            "id, source, cause, message, at, peer, method, path, content_type, content_length, user_agent, signature, body_head",
            "inbound_rejected",
            limit,
            |r| {
                let head: Vec<u8> = r.get(12)?;
                Ok(RejectedRow {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    cause: r.get(2)?,
                    message: r.get(3)?,
                    at: clock::to_rfc3339(r.get(4)?),
                    peer: r.get(5)?,
                    method: r.get(6)?,
                    path: r.get(7)?,
                    content_type: r.get(8)?,
                    content_length: r.get::<_, Option<i64>>(9)?.and_then(|n| u64::try_from(n).ok()),
                    user_agent: r.get(10)?,
                    signature: json_or_text(Some(r.get(11)?)),
                    body_head: String::from_utf8_lossy(&head).into_owned(),
                    body_head_bytes: head.len(),
                })
            },
        )
}

/// The time of `source`'s latest refused request.
///
/// # Errors
/// A database error.
pub fn last_rejected(conn: &Connection, source: &str) -> crate::sql::Result<Option<Millis>> {
    conn.prepare_cached(
        "SELECT at FROM inbound_rejected WHERE source = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([source], |r| r.get(0))
    .optional()
}

/// The time `source`'s latest stored event was received.
///
/// # Errors
/// A database error.
pub fn last_received(conn: &Connection, source: &str) -> crate::sql::Result<Option<Millis>> {
    conn.prepare_cached(
        "SELECT received_at FROM inbound_events INDEXED BY inbound_source WHERE source = ?1
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row([source], |r| r.get(0))
    .optional()
}

/// Deletes up to `batch` refused requests older than `cutoff` (retention). Returns how many.
///
/// # Errors
/// A database error.
pub fn prune_rejected(tx: &WriteTx<'_>, cutoff: Millis, batch: usize) -> crate::sql::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM inbound_rejected WHERE id IN (
             SELECT id FROM inbound_rejected WHERE id < ?1 ORDER BY id LIMIT ?2)",
    )?
    .execute(params![
        ids::time_bound(ids::REJECTED, cutoff),
        i64::try_from(batch).unwrap_or(i64::MAX)
    ])
}

/// Per sender and minute of the last day since `since`: how many events were stored
/// (`inbound_events`) and how many refused requests recorded (`inbound_rejected`), as
/// `(source, minute since the epoch, received, rejected)`. Reads the id ranges only.
///
/// # Errors
/// A database error.
pub fn minutes_since(
    conn: &Connection,
    since: Millis,
) -> crate::sql::Result<Vec<(String, i64, u64, u64)>> {
    let mut out = Vec::new();
    for (sql, bound, received) in [
        (
            "SELECT source, received_at / 60000, COUNT(*) FROM inbound_events WHERE id >= ?1 GROUP BY 1, 2",
            ids::time_bound(ids::INBOUND, since),
            true,
        ),
        (
            "SELECT source, at / 60000, COUNT(*) FROM inbound_rejected WHERE id >= ?1 GROUP BY 1, 2",
            ids::time_bound(ids::REJECTED, since),
            false,
        ),
    ] {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map([bound], |r| {
            let n = u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, n))
        })?;
        for row in rows {
            let (source, minute, n) = row?;
            out.push(if received {
                (source, minute, n, 0)
            } else {
                (source, minute, 0, n)
            });
        }
    }
    Ok(out)
}
