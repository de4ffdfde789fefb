//! Admin API for cron: list, one schedule with its recent runs, run now.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{Cron, Ticked};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::http::{Endpoint, Reply};

/// The cron routes.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/cron", "cron", "every built-in schedule with its last run and next tick", |r| r.to(list))
            .reply(Reply::Json("`{cron: [...], next_cursor: null}`")).keys(&["cron", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/cron/{name}", "cron", "one schedule with its last 20 runs", |r| r.to(detail))
            .reply(Reply::Json("`{cron: {..., runs: [...]}}`")).keys(&["cron"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/cron/{name}/run", "cron", "run it now (also when its schedule is `off`); 409 `cron_running` while a run is queued or running", |r| r.to(run))
            .status(202)
            .reply(Reply::Json("`{run: {...}, cron: {...}}`")).keys(&["run", "cron"]),
    ]
}

async fn list(_admin: Admin, cron: web::Data<Cron>) -> Result<HttpResponse, ApiError> {
    let entries = cron.list().await?;
    Ok(HttpResponse::Ok().json(json!({"cron": entries, "next_cursor": null})))
}

fn unknown(name: &str, cron: &Cron) -> ApiError {
    ApiError::not_found(format!(
        "cron task `{name}` (known: {})",
        cron.names().cloned().collect::<Vec<_>>().join(", ")
    ))
}

async fn detail(
    _admin: Admin,
    cron: web::Data<Cron>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entry = cron
        .get(&name)
        .await?
        .ok_or_else(|| unknown(&name, &cron))?;
    Ok(HttpResponse::Ok().json(json!({"cron": entry})))
}

async fn run(
    Admin(caller): Admin,
    cron: web::Data<Cron>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    match cron.run_now(&name, &caller.identity).await? {
        None => Err(unknown(&name, &cron)),
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
            let entry = cron
                .get(&name)
                .await?
                .ok_or_else(|| unknown(&name, &cron))?;
            Ok(HttpResponse::build(StatusCode::ACCEPTED).json(json!({
                "run": {"id": run_id, "name": name, "job_id": job_id, "state": "queued", "trigger": "manual"},
                "cron": entry,
            })))
        }
    }
}
