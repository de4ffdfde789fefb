//! `GET /v1beta1/admin/sources`: each source as an operator needs it when "the provider says
//! it sent it": the path to give the provider, what came in and what was refused. Never a secret.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::Sources;
use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::inbound::ingress::Ingress;
use crate::inbound::store as inbound;
use crate::store::Store;

pub(super) async fn list(
    _admin: Admin,
    sources: web::Data<Sources>,
    ingress: web::Data<Ingress>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let names = sources.names();
    // What this process did not see since it started is read from the stored rows.
    let stored = store
        .read(move |c| {
            names
                .iter()
                .map(|n| Ok((inbound::last_received(c, n)?, inbound::last_rejected(c, n)?)))
                .collect::<crate::sql::Result<Vec<_>>>()
                .map_err(ApiError::from)
        })
        .await?;
    let items: Vec<_> = sources
        .iter()
        .zip(stored)
        .map(|(s, (received, rejected))| {
            let a = ingress.activity(s.name);
            let last_received = a.last_received_at.or(received).map(clock::to_rfc3339);
            let last_rejected = a.last_rejected_at.or(rejected).map(clock::to_rfc3339);
            json!({
                "name": s.name,
                "preset": s.config.preset,
                "enabled": s.config.enabled,
                "path": s.path(),
                "org_id": s.config.org_id,
                "secrets": s.config.secrets.len(),
                "last_hour": a.last_hour,
                "last_24h": a.last_24h,
                "rejected_not_stored": a.rejected_not_stored,
                "last_received_at": last_received,
                "last_rejected_at": last_rejected,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"sources": items})))
}
