//! The `audit_log` table: who did what, when — admin actions, dead jobs, failed deliveries,
//! auto-disables. Records are written inside the transaction of the change they describe, so a
//! change and its record commit together. Every layer above records here; the admin API that
//! lists them is `ops::audit`.

use crate::sql::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use super::WriteTx;
use crate::clock::{self, Millis};
use crate::ids;

/// One record to write.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The caller's identity (`system` for the service itself).
    pub actor: &'a str,
    /// What happened, dotted: `job.dead`, `job.cancel`, `webhook.create`, …
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub detail: Value,
}

/// Writes `entry` in the caller's transaction.
///
/// # Errors
/// A database error.
pub fn record(tx: &WriteTx<'_>, entry: &Entry<'_>) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (id, at, actor, action, target_type, target_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ids::new_id(ids::AUDIT),
        clock::now_ms(),
        entry.actor,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.detail.to_string()
    ])?;
    Ok(())
}

/// A stored record.
#[derive(Debug, Serialize)]
pub struct Record {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub detail: Value,
}

/// Lists records newest first.
///
/// # Errors
/// A database error.
pub fn list(
    conn: &Connection,
    action: Option<&str>,
    target_id: Option<&str>,
    since: Option<Millis>,
    before: Option<&str>,
    limit: usize,
) -> crate::sql::Result<Vec<Record>> {
    let action = crate::pagination::ActionFilter::parse(action);
    let (target_id, before) = (target_id.map(str::to_string), before.map(str::to_string));
    crate::pagination::ListQuery::new()
        .action(&action)
        .filter("target_id = ?", &target_id)
        .filter("at >= ?", &since)
        .filter("id < ?", &before)
        .run(
            conn,
            "id, at, actor, action, target_type, target_id, detail",
            "audit_log",
            limit,
            |r| {
                let detail: String = r.get(6)?;
                Ok(Record {
                    id: r.get(0)?,
                    at: clock::to_rfc3339(r.get(1)?),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target_type: r.get(4)?,
                    target_id: r.get(5)?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                })
            },
        )
}
