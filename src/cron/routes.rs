//! Admin API for cron (SPEC §7): list, one schedule with its recent runs, run now.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{Cron, Ticked};
use crate::auth::Admin;
use crate::error::{ApiError, resource};

/// Mounts the cron routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1beta1/admin/cron").route(web::get().to(list)))
        .service(resource("/v1beta1/admin/cron/{name}").route(web::get().to(detail)))
        .service(resource("/v1beta1/admin/cron/{name}/run").route(web::post().to(run)));
}

async fn list(_admin: Admin, cron: web::Data<Cron>) -> Result<HttpResponse, ApiError> {
    let entries = cron.list().await?;
    Ok(HttpResponse::Ok().json(json!({"cron": entries, "next_cursor": null})))
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "cron task `{name}` (known: {})",
        super::tasks::NAMES.join(", ")
    ))
}

async fn detail(
    _admin: Admin,
    cron: web::Data<Cron>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entry = cron.get(&name).await?.ok_or_else(|| unknown(&name))?;
    Ok(HttpResponse::Ok().json(json!({"cron": entry})))
}

async fn run(
    Admin(caller): Admin,
    cron: web::Data<Cron>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    match cron.run_now(&name, &caller.identity).await? {
        None => Err(unknown(&name)),
        Some(Ticked::Skipped { running_job, .. }) => Err(ApiError::conflict(
            "cron_running",
            format!(
                "{name} is already queued or running (job {running_job}); wait for it to finish"
            ),
        )),
        Some(Ticked::Duplicate) => Err(ApiError::conflict(
            "cron_running",
            format!("{name} was just asked to run; try again in a moment"),
        )),
        Some(Ticked::Enqueued { run_id, job_id }) => {
            let entry = cron.get(&name).await?.ok_or_else(|| unknown(&name))?;
            Ok(HttpResponse::build(StatusCode::ACCEPTED).json(json!({
                "run": {"id": run_id, "name": name, "job_id": job_id, "state": "queued", "trigger": "manual"},
                "cron": entry,
            })))
        }
    }
}
