//! The `events` and `event_types` tables — every statement on them.

use crate::sql::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

use super::Prepared;
use crate::clock::{self, Millis};
use crate::ids;
use crate::pagination::{ActionFilter, ListQuery};
use crate::store::WriteTx;

/// The event a publisher's idempotency key named: `(id, deliveries)`. Events stored before
/// keys were scoped (no publisher) answer for their key whoever asks.
///
/// # Errors
/// A database error.
pub fn find_by_key(
    conn: &Connection,
    key: &str,
    publisher: Option<&str>,
) -> crate::sql::Result<Option<(String, u32)>> {
    conn.prepare_cached(
        "SELECT id, deliveries FROM events
         WHERE idempotency_key = ?1 AND (publisher = ?2 OR publisher IS NULL)",
    )?
    .query_row(params![key, publisher], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

/// Stores a prepared event with its delivery count and, with `catalog`, notes its action in
/// the catalog (the first time wins; the caller skips it for actions it knows are noted).
///
/// # Errors
/// A database error.
pub fn insert(
    tx: &WriteTx<'_>,
    p: &Prepared,
    deliveries: u32,
    catalog: bool,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (id, idempotency_key, publisher, action, source, body, deliveries, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute_later(params![
        p.id,
        p.idempotency_key,
        p.publisher,
        p.action.as_str(),
        p.source,
        &p.body[..],
        deliveries,
        p.created_at
    ])?;
    if catalog {
        tx.prepare_cached(
            "INSERT INTO event_types (action, first_seen) VALUES (?1, ?2) ON CONFLICT (action) DO NOTHING",
        )?
        .execute_later(params![p.action.as_str(), p.created_at])?;
    }
    Ok(())
}

/// The envelope bytes of event `id` (what every attempt sends).
///
/// # Errors
/// A database error.
pub fn body(conn: &Connection, id: &str) -> crate::sql::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT body FROM events WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

const SUMMARY: &str = "id, action, source, deliveries, idempotency_key, created_at";

fn summary(r: &Row<'_>) -> crate::sql::Result<Value> {
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "action": r.get::<_, String>(1)?,
        "source": r.get::<_, String>(2)?,
        "deliveries": r.get::<_, i64>(3)?,
        "idempotency_key": r.get::<_, Option<String>>(4)?,
        "created_at": clock::to_rfc3339(r.get(5)?),
    }))
}

/// Events newest first, at most `limit`.
///
/// # Errors
/// A database error.
pub fn list(
    conn: &Connection,
    action: &ActionFilter,
    since: Option<Millis>,
    before: Option<String>,
    limit: usize,
) -> crate::sql::Result<Vec<Value>> {
    ListQuery::new()
        .action(action)
        .filter("created_at >= ?", &since)
        .filter("id < ?", &before)
        .run(conn, SUMMARY, "events", limit, summary)
}

/// One event's summary with its envelope as `payload`.
///
/// # Errors
/// A database error.
pub fn get(conn: &Connection, id: &str) -> crate::sql::Result<Option<Value>> {
    conn.prepare_cached(&format!("SELECT {SUMMARY}, body FROM events WHERE id = ?1"))?
        .query_row([id], |r| {
            let mut v = summary(r)?;
            let body: Vec<u8> = r.get(6)?;
            v["payload"] = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Ok(v)
        })
        .optional()
}

/// Every action published so far, with when it was first seen.
///
/// # Errors
/// A database error.
pub fn seen_actions(conn: &Connection) -> crate::sql::Result<Vec<(String, Millis)>> {
    let mut stmt =
        conn.prepare_cached("SELECT action, first_seen FROM event_types ORDER BY action")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Up to `batch` ids of events created before `cutoff`, after `after` in id order (retention
/// walks them; it keeps those deliveries still refer to).
///
/// # Errors
/// A database error.
pub fn older_than(
    conn: &Connection,
    cutoff: Millis,
    after: &str,
    batch: usize,
) -> crate::sql::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM events WHERE id > ?1 AND id < ?2 AND created_at < ?3 ORDER BY id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            after,
            ids::time_bound(ids::EVENT, cutoff),
            cutoff,
            i64::try_from(batch).unwrap_or(i64::MAX)
        ],
        |r| r.get(0),
    )?;
    rows.collect()
}

/// Deletes the events `ids`. Returns how many.
///
/// # Errors
/// A database error.
pub fn delete(tx: &WriteTx<'_>, ids: &[String]) -> crate::sql::Result<usize> {
    let mut stmt = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute([id])?;
    }
    Ok(n)
}
