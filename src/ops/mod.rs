//! Operations: the audit log and stats APIs, online backups and database maintenance. (Cron
//! lives in `crate::cron`.)

pub mod audit;
pub mod backup;
pub mod maintenance;
pub mod stats;

use actix_web::web;

use crate::error::resource;

/// Mounts the operations routes under `/v1beta1/admin`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1beta1/admin/audit-logs").route(web::get().to(audit::list_route)))
        .service(resource("/v1beta1/admin/stats").route(web::get().to(stats::route)));
}
