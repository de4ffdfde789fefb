//! The audit log: who did what, when — admin actions, dead jobs and (later) failed deliveries and
//! auto-disables. Records are written inside the transaction of the change they describe, so a
//! change and its record commit together.

use actix_web::{HttpResponse, web};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::error::ApiError;
use crate::ids;
use crate::pagination::{self, PageQuery};
use crate::store::{Store, WriteTx};

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
pub fn record(tx: &WriteTx<'_>, entry: &Entry<'_>) -> rusqlite::Result<()> {
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

/// Filters for [`list`].
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Exact action, or a prefix ending in `.*` (`job.*`).
    pub action: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339; only records at or after it.
    pub since: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
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
) -> rusqlite::Result<Vec<Record>> {
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

/// `GET /v1beta1/admin/audit-logs?action=&target_id=&since=&limit=&cursor=`
///
/// # Errors
/// 400 for a bad `since` or `limit`; storage errors.
pub async fn list_route(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let since = q
        .since
        .as_deref()
        .map(clock::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let before = q.page.cursor();
    let records = store
        .read(move |c| {
            list(
                c,
                q.action.as_deref(),
                q.target_id.as_deref(),
                since,
                before.as_deref(),
                limit + 1,
            )
            .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(records, limit, |r| &r.id);
    Ok(HttpResponse::Ok().json(serde_json::json!({"audit_logs": items, "next_cursor": next})))
}
