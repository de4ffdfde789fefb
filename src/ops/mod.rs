//! Operations: the audit log and stats APIs, online backups and database maintenance. (Cron
//! lives in `crate::cron`.)

pub mod audit;
pub mod backup;
pub mod maintenance;
pub mod stats;

use actix_web::http::Method;

use crate::http::{Endpoint, PAGE, Reply};

/// The operations routes under `/v1beta1/admin`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const AUDIT: &[(&str, &str)] = &[
        ("action", "exact action, or a prefix ending in `.*`"),
        ("target_id", "only records about this id"),
        ("since", "RFC 3339: at or after"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/audit-logs", "operations", "audit records newest first: admin actions, failed deliveries, dead jobs, auto-disables", |r| r.to(audit::list_route))
            .query(AUDIT)
            .reply(Reply::Json("`{audit_logs: [...], next_cursor}`")).keys(&["audit_logs", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/stats", "operations", "counts by state, queue depth, oldest queued age, deliveries and failures in the last hour", |r| r.to(stats::route))
            .reply(Reply::Json("`{jobs, deliveries, inbound, webhooks, cron}`")).keys(&["jobs", "deliveries", "inbound", "webhooks", "cron"]),
    ]
}
