//! `GET /v1beta1/admin/audit-logs`: the audit log, newest first, filtered by action (exact or
//! `prefix.*`), target and time.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::pagination::{self, PageQuery};
use crate::store::{Store, audit::list};

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
