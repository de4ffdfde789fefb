//! Admin API for jobs: list, detail, operator enqueue, retry, cancel.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{JobFilter, JobState, MAX_ATTEMPTS_LIMIT, NewJob, Registry};
use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::http::{Endpoint, PAGE, Reply};
use crate::pagination::{self, PageQuery};
use crate::store::audit;
use crate::store::{Store, WriteTx};

/// The jobs routes.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        (
            "state",
            "queued, running, retrying, succeeded, dead or cancelled",
        ),
        ("kind", "a job kind, e.g. `delivery.send`"),
        PAGE[0],
        PAGE[1],
    ];
    let one = Reply::Json("`{job: {...}}`");
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/jobs", "jobs", "jobs, newest first", |r| r.to(list))
            .query(LIST)
            .reply(Reply::Json("`{jobs: [...], next_cursor}`")).keys(&["jobs", "next_cursor"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/jobs", "jobs", "enqueue a job of an operator kind (`system.noop`); 200 with the existing job when the idempotency key is taken; other kinds 400 `kind_not_allowed`", |r| r.to(create))
            .body(|| json!({
                "type": "object",
                "required": ["kind"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"type": "string", "examples": ["system.noop"]},
                    "payload": {"type": "object"},
                    "run_at": {"type": "string", "format": "date-time"},
                    "idempotency_key": {"type": "string"},
                    "max_attempts": {"type": "integer", "minimum": 1}
                }
            }))
            .status(201)
            .also(200)
            .reply(one)
            .keys(&["job"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/jobs/{id}", "jobs", "one job", |r| r.to(detail))
            .reply(one)
            .keys(&["job"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/jobs/{id}/retry", "jobs", "a dead or cancelled job, queued again with a fresh set of attempts; else 409", |r| r.to(retry))
            .reply(one)
            .keys(&["job"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/jobs/{id}/cancel", "jobs", "cancel a queued, retrying, running or dead job; else 409", |r| r.to(cancel))
            .reply(one)
            .keys(&["job"]),
    ]
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("state must be one of queued, running, retrying, succeeded, dead, cancelled; not `{s}`"),
            )
        })?),
    };
    let filter = JobFilter {
        state,
        kind: q.kind.filter(|k| !k.is_empty()),
        before: q.page.cursor(),
    };
    let jobs = store
        .read(move |c| super::list(c, &filter, limit + 1).map_err(ApiError::from))
        .await?;
    let (jobs, next) = pagination::finish(jobs, limit, |j| &j.id);
    Ok(HttpResponse::Ok().json(json!({"jobs": jobs, "next_cursor": next})))
}

async fn detail(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let job = store
        .read({
            let id = id.clone();
            move |c| super::get(c, &id).map_err(ApiError::from)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    Ok(HttpResponse::Ok().json(json!({"job": job})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    kind: String,
    #[serde(default)]
    payload: Value,
    run_at: Option<String>,
    idempotency_key: Option<String>,
    max_attempts: Option<u32>,
}

async fn create(
    Admin(caller): Admin,
    store: web::Data<Store>,
    registry: web::Data<Registry>,
    body: web::Json<CreateJob>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let kind = registry
        .get(&body.kind)
        .filter(|k| k.operator_enqueueable.is_some())
        .ok_or_else(|| {
            ApiError::bad_request(
                "kind_not_allowed",
                format!(
                    "`{}` cannot be enqueued by an operator; allowed kinds: {}",
                    body.kind,
                    registry.operator_kinds().join(", ")
                ),
            )
        })?;
    if let Some(validate) = &kind.operator_enqueueable {
        validate(&body.payload).map_err(|m| ApiError::bad_request("invalid_payload", m))?;
    }
    let max_attempts = body.max_attempts.unwrap_or(kind.max_attempts);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    let mut job = NewJob::new(kind.name, body.payload).max_attempts(max_attempts);
    if let Some(at) = body.run_at.as_deref() {
        job = job.run_at(
            clock::parse_rfc3339(at).map_err(|m| ApiError::bad_request("invalid_request", m))?,
        );
    }
    if let Some(key) = body.idempotency_key.filter(|k| !k.is_empty()) {
        job = job.idempotency_key(key);
    }
    let (created, stored) = store
        .writer()
        .write(move |tx| {
            let e = super::enqueue(tx, &job)?;
            if e.created {
                audit::record(
                    tx,
                    &audit::Entry {
                        actor: &caller.identity,
                        action: "job.enqueue",
                        target_type: Some("job"),
                        target_id: Some(&e.id),
                        detail: json!({"kind": job.kind}),
                    },
                )?;
            }
            let stored = super::get(tx, &e.id)?
                .ok_or_else(|| ApiError::internal("enqueued job vanished"))?;
            Ok::<_, ApiError>((e.created, stored))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({"job": stored})))
}

/// An operator's change to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    /// Dead or cancelled → queued, with a fresh set of attempts.
    Retry,
    /// Anything unfinished (or dead) → cancelled; a running handler's result is then discarded.
    Cancel,
}

/// Applies an operator transition with an audit record, or 409 `invalid_state`.
async fn transition(
    store: &Store,
    registry: &Registry,
    caller: String,
    id: String,
    action: Transition,
) -> Result<HttpResponse, ApiError> {
    let managed: Vec<(&'static str, &'static str)> = registry.managed_kinds();
    let (allowed_from, done, audit_action) = match action {
        Transition::Retry => ("dead or cancelled", "retried", "job.retry"),
        Transition::Cancel => (
            "queued, retrying, running or dead",
            "cancelled",
            "job.cancel",
        ),
    };
    let job = store
        .writer()
        .write(move |tx: &WriteTx<'_>| {
            if let Some(job) = super::get(tx, &id)?
                && let Some((_, via)) = managed.iter().find(|(k, _)| *k == job.kind)
            {
                return Err(ApiError::conflict(
                    "managed_job",
                    format!(
                        "job {id} ({}) carries the state of another record; use {via}",
                        job.kind
                    ),
                ));
            }
            let changed = match action {
                Transition::Retry => {
                    super::requeue(tx, &id, &[JobState::Dead, JobState::Cancelled])?
                }
                Transition::Cancel => super::cancel(tx, &id)?,
            };
            let job =
                super::get(tx, &id)?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
            if !changed {
                return Err(ApiError::conflict(
                    "invalid_state",
                    format!(
                        "job {id} is {}; only {allowed_from} jobs can be {done}",
                        job.state
                    ),
                ));
            }
            audit::record(
                tx,
                &audit::Entry {
                    actor: &caller,
                    action: audit_action,
                    target_type: Some("job"),
                    target_id: Some(&id),
                    detail: json!({"kind": job.kind}),
                },
            )?;
            Ok(job)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"job": job})))
}

async fn retry(
    Admin(caller): Admin,
    store: web::Data<Store>,
    registry: web::Data<Registry>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(
        &store,
        &registry,
        caller.identity,
        id.into_inner(),
        Transition::Retry,
    )
    .await
}

async fn cancel(
    Admin(caller): Admin,
    store: web::Data<Store>,
    registry: web::Data<Registry>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(
        &store,
        &registry,
        caller.identity,
        id.into_inner(),
        Transition::Cancel,
    )
    .await
}
