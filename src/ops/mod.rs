//! Operations: the audit log and its API, online backups and database maintenance. (Stats, cron
//! and the other admin read APIs join here.)

pub mod audit;
pub mod backup;
pub mod maintenance;

use actix_web::web;

use crate::error::resource;

/// Mounts the operations routes under `/v1beta1/admin`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1beta1/admin/audit-logs").route(web::get().to(audit::list_route)));
}
