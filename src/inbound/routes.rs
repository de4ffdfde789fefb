//! `/v1beta1/admin/inbound…`: received events newest first, one with everything an operator
//! needs to see why it did or did not go out, and replay.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::{Processors, store};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::http::{Endpoint, PAGE, Reply};
use crate::jobs::{self, JobState, NewJob};
use crate::pagination::{self, PageQuery};
use crate::store::Store;
use crate::store::audit;

/// `/v1beta1/admin/inbound…`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        ("source", "`front` or a source's name"),
        ("state", "pending, processed or failed"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/inbound", "inbound", "received events, newest first", |r| r.to(list_route))
            .query(LIST)
            .reply(Reply::Json("`{inbound: [...], next_cursor}`")).keys(&["inbound", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/inbound/{id}", "inbound", "one received event: raw body, headers, what was fetched, the published event, its job", |r| r.to(detail_route))
            .reply(Reply::Json("`{inbound: {...}}`")).keys(&["inbound"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/inbound/{id}/replay", "inbound", "process it again (fetch and publish anew); 409 `already_pending` while it is being processed", |r| r.to(replay_route))
            .reply(Reply::Json("`{inbound: {...}}`, back to pending")).keys(&["inbound"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/rejected", "inbound", "requests ingress refused (Front and every source), newest first: cause, time, peer, the signature headers and the first 512 bytes of the body", |r| r.to(rejected_route))
            .query(REJECTED)
            .reply(Reply::Json("`{rejected: [...], next_cursor}`")).keys(&["rejected", "next_cursor"]),
    ]
}

const REJECTED: &[(&str, &str)] = &[
    ("source", "`front` or a source's name"),
    (
        "cause",
        "invalid_signature, timestamp_out_of_range, source_not_found, payload_too_large, invalid_payload or not_configured",
    ),
    (
        "since",
        "RFC 3339 time: only requests refused at or after it",
    ),
    PAGE[0],
    PAGE[1],
];

/// The causes a refused request is recorded with.
pub const CAUSES: &[&str] = &[
    "invalid_signature",
    "timestamp_out_of_range",
    "source_not_found",
    "payload_too_large",
    "invalid_payload",
    "not_configured",
];

#[derive(Debug, Deserialize)]
struct RejectedQuery {
    source: Option<String>,
    cause: Option<String>,
    since: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn rejected_route(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<RejectedQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let cause = pagination::one_of("cause", q.cause, CAUSES)?;
    let source = q.source.filter(|s| !s.is_empty());
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(crate::clock::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let before = q.page.cursor();
    let items = store
        .read(move |c| {
            store::list_rejected(
                c,
                source.as_deref(),
                cause.as_deref(),
                since,
                before.as_deref(),
                limit + 1,
            )
            .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |i| &i.id);
    Ok(HttpResponse::Ok().json(json!({"rejected": items, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    source: Option<String>,
    state: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_route(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let state = pagination::one_of("state", q.state, &["pending", "processed", "failed"])?;
    let source = q.source.filter(|s| !s.is_empty());
    let before = q.page.cursor();
    let items = store
        .read(move |c| {
            store::list(
                c,
                source.as_deref(),
                state.as_deref(),
                before.as_deref(),
                limit + 1,
            )
            .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |i| &i.id);
    Ok(HttpResponse::Ok().json(json!({"inbound": items, "next_cursor": next})))
}

async fn detail_route(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let found = store
        .read({
            let id = id.clone();
            move |c| store::detail(c, &id).map_err(ApiError::from)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("inbound event {id}")))?;
    Ok(HttpResponse::Ok().json(json!({"inbound": found})))
}

/// Processes an event again: back to `pending`, its job re-queued with a fresh set of attempts
/// (or a new job if retention removed the old one). 409 `already_pending` while it still runs.
async fn replay_route(
    Admin(caller): Admin,
    store: web::Data<Store>,
    processors: web::Data<Processors>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let processors = processors.into_inner();
    let id = id.into_inner();
    store
        .writer()
        .write({
            let id = id.clone();
            move |tx| {
                let (job_id, source) = store::job_and_source(tx, &id)?
                    .ok_or_else(|| ApiError::not_found(format!("inbound event {id}")))?;
                let job = match &job_id {
                    Some(j) => jobs::get(tx, j)?,
                    None => None,
                };
                let job_id = match job {
                    Some(job) => {
                        let finished = [JobState::Succeeded, JobState::Dead, JobState::Cancelled];
                        if !jobs::requeue(tx, &job.id, &finished)? {
                            return Err(ApiError::conflict(
                                "already_pending",
                                format!(
                                    "inbound event {id} is still being processed (job {} is {})",
                                    job.id, job.state
                                ),
                            ));
                        }
                        job.id
                    }
                    None => {
                        let processing = processors.get(&source).ok_or_else(|| {
                            ApiError::conflict(
                                "not_replayable",
                                format!("no job processes events of `{source}` in this version"),
                            )
                        })?;
                        jobs::enqueue(
                            tx,
                            &NewJob::new(processing.kind, json!({"inbound_id": id}))
                                .max_attempts(processing.max_attempts),
                        )?
                        .id
                    }
                };
                store::mark_pending(tx, &id, &job_id)?;
                audit::record(
                    tx,
                    &audit::Entry {
                        actor: &caller.identity,
                        action: "inbound.replay",
                        target_type: Some("inbound"),
                        target_id: Some(&id),
                        detail: json!({"job_id": job_id}),
                    },
                )?;
                Ok::<_, ApiError>(())
            }
        })
        .await?;
    let found = store
        .read(move |c| store::detail(c, &id).map_err(ApiError::from))
        .await?
        .ok_or_else(|| ApiError::internal("replayed inbound event vanished"))?;
    Ok(HttpResponse::Ok().json(json!({"inbound": found})))
}
