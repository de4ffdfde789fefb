//! The deliveries admin API: list, one delivery with its envelope and every attempt, retry.
//! A delivery is one per (event, webhook), carried by a `delivery.send` job, every attempt
//! recorded (the rows are `super::store`'s).
//!
//! States: `pending` (attempts remain) → `succeeded`, `failed` (out of attempts, 410, or an
//! unusable webhook), or `cancelled` (webhook deleted or disabled).

use crate::sql::Connection;
use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{self, DeliveryFilter};
use crate::auth::Admin;
use crate::clock;
use crate::error::ApiError;
use crate::events;
use crate::http::{Endpoint, PAGE, Reply};
use crate::pagination::{self, PageQuery};
use crate::store::Store;
use crate::store::audit;

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

/// `/v1beta1/admin/deliveries…`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        ("webhook_id", "only this webhook's"),
        ("state", "pending, succeeded, failed or cancelled"),
        ("action", "exact action, or a prefix ending in `.*`"),
        ("event_id", "only this event's"),
        ("since", "RFC 3339: created at or after"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/deliveries", "deliveries", "deliveries, newest first", |r| r.to(list))
            .query(LIST)
            .reply(Reply::Json("`{deliveries: [...], next_cursor}`")).keys(&["deliveries", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/deliveries/{id}", "deliveries", "one delivery with its envelope and every attempt (status, latency, response headers, first 4 KiB of the body, or the error)", |r| r.to(detail))
            .reply(Reply::Json("`{delivery: {..., attempts: [...]}}`")).keys(&["delivery"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/deliveries/{id}/retry", "deliveries", "queue it again with a fresh set of attempts; 409 `already_pending`", |r| r.to(retry))
            .status(202)
            .reply(Reply::Json("`{delivery: {...}}`")).keys(&["delivery"]),
    ]
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    webhook_id: Option<String>,
    state: Option<String>,
    action: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
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
    let nonempty = |o: Option<String>| o.filter(|s| !s.is_empty());
    let state = pagination::one_of("state", q.state, &store::DeliveryState::names())?;
    let since = nonempty(q.since)
        .as_deref()
        .map(clock::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let filter = DeliveryFilter {
        webhook_id: nonempty(q.webhook_id),
        state,
        action: pagination::ActionFilter::parse(q.action.as_deref()),
        event_id: nonempty(q.event_id),
        since,
        before: q.page.cursor(),
    };
    let items = store
        .read(move |c| store::list_deliveries(c, &filter, limit + 1).map_err(ApiError::from))
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({"deliveries": items, "next_cursor": next})))
}

/// One delivery with its envelope and every attempt.
///
/// # Errors
/// A database error.
pub fn detail_json(c: &Connection, id: &str) -> crate::sql::Result<Option<Value>> {
    let Some(mut v) = store::delivery(c, id)? else {
        return Ok(None);
    };
    let event_id = v["event_id"].as_str().unwrap_or_default().to_string();
    v["payload"] = events::store::body(c, &event_id)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    v["attempt_count"] = v["attempts"].take();
    v["attempts"] = json!(store::attempts(c, id)?);
    if let Some(w) = store::get(c, v["webhook_id"].as_str().unwrap_or_default())? {
        v["webhook_url"] = json!(w.url);
    }
    Ok(Some(v))
}

async fn detail(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .read(move |c| {
            detail_json(c, &id)?.ok_or_else(|| ApiError::not_found(format!("delivery {id}")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"delivery": v})))
}

async fn retry(
    Admin(caller): Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .writer()
        .write(move |tx| {
            let (job_id, webhook_id) = store::job_and_webhook(tx, &id)?
                .ok_or_else(|| ApiError::not_found(format!("delivery {id}")))?;
            if store::get(tx, &webhook_id)?.is_none() {
                return Err(ApiError::conflict(
                    "webhook_deleted",
                    format!("the webhook of delivery {id} was deleted"),
                ));
            }
            if !store::requeue(tx, &id, job_id.as_deref())? {
                return Err(ApiError::conflict(
                    "already_pending",
                    format!("delivery {id} is still pending"),
                ));
            }
            audit::record(
                tx,
                &audit::Entry {
                    actor: &caller.identity,
                    action: "delivery.retry",
                    target_type: Some("delivery"),
                    target_id: Some(&id),
                    detail: json!({"webhook_id": webhook_id}),
                },
            )?;
            Ok::<_, ApiError>(detail_json(tx, &id)?)
        })
        .await?;
    Ok(HttpResponse::Accepted().json(json!({"delivery": v})))
}
