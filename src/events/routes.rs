//! The publish API and the events admin API: publish, list, detail with deliveries, the catalog
//! of actions.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Action, FRONT_ACTIONS, FRONTIER_ACTIONS, MAX_IDEMPOTENCY_KEY, NewEvent, Publisher,
    SYSTEM_ACTIONS, check_not_reserved, store,
};
use crate::auth::{Admin, AdminOrPublisher};
use crate::clock;
use crate::error::ApiError;
use crate::http::{Auth, Endpoint, PAGE, Reply};
use crate::pagination::{self, PageQuery};
use crate::store::Store;

/// The publish API and the events admin API.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        ("action", "exact action, or a prefix ending in `.*`"),
        ("since", "RFC 3339: created at or after"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::POST, "/v1beta1/events", "events", "publish an event to every subscribed webhook; the same `id` again answers 200 with the first answer and delivers nothing new", |r| r.to(publish_route))
            .auth(Auth::Publish)
            .body(publish_schema)
            .status(202)
            .also(200)
            .reply(Reply::Json("`{id: \"evt_…\", deliveries: n}`")).keys(&["id", "deliveries"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/events", "events", "published events, newest first", |r| r.to(list_route))
            .query(LIST)
            .reply(Reply::Json("`{events: [...], next_cursor}`")).keys(&["events", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/events/{id}", "events", "one event with its envelope and deliveries", |r| r.to(detail_route))
            .reply(Reply::Json("`{event: {...}}`")).keys(&["event"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/event-types", "events", "the catalog of actions", |r| r.to(types_route))
            .reply(Reply::Json("`{event_types: [...]}`")).keys(&["event_types"]),
    ]
}

fn publish_schema() -> Value {
    json!({
        "type": "object",
        "required": ["action", "data"],
        "additionalProperties": false,
        "properties": {
            "action": {"type": "string", "pattern": "^[a-z0-9_]+(\\.[a-z0-9_]+)+$", "examples": ["app.user.created"]},
            "id": {"type": "string", "description": "idempotency key"},
            "data": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "actor": {"type": "object"},
                    "target": {"type": "object"},
                    "org_id": {"type": ["string", "null"]},
                    "source": {"type": "string"},
                    "metadata": {"type": "object"}
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    action: String,
    data: Value,
    id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_payload", message)
}

/// Checks `data` and returns it as a map.
fn check_data(data: Value) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(map) = data else {
        return Err(invalid(
            "data must be an object with actor, target, org_id, source and metadata",
        ));
    };
    for (key, value) in &map {
        let ok = match key.as_str() {
            "actor" | "target" => value.is_object() || value.is_null(),
            "org_id" => value.is_string() || value.is_null(),
            "source" => value.is_string(),
            "metadata" => value.is_object() || value.is_null(),
            other => {
                return Err(invalid(format!(
                    "data.{other} is not a known field (actor, target, org_id, source, metadata)"
                )));
            }
        };
        if !ok {
            return Err(invalid(format!("data.{key} has the wrong type")));
        }
    }
    if let Some(path) = map
        .iter()
        .find_map(|(k, v)| super::json::find_unsafe_integer(v, &format!("data.{k}")))
    {
        return Err(invalid(format!(
            "{path} is an integer beyond ±2^53, which JavaScript receivers cannot hold exactly; send it as a string"
        )));
    }
    Ok(map)
}

async fn publish_route(
    AdminOrPublisher(caller): AdminOrPublisher,
    store: web::Data<Store>,
    publisher: web::Data<Publisher>,
    config: web::Data<crate::config::Config>,
    body: web::Json<PublishBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let action = Action::parse(&b.action).map_err(invalid)?;
    let data = check_data(b.data)?;
    let sources: Vec<&str> = config.sources.keys().map(String::as_str).collect();
    check_not_reserved(&action, &data, &sources)?;
    let idempotency_key = match b.id {
        Some(id) if id.is_empty() || id.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(invalid(format!(
                "id must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )));
        }
        other => other,
    };
    let mut prepared = publisher
        .prepare(NewEvent {
            action,
            data,
            idempotency_key,
            only: None,
        })
        .await?;
    prepared.publisher = Some(caller.scope.clone());
    let publisher = publisher.into_inner();
    let published = store
        .writer()
        .write(move |tx| publisher.store(tx, &prepared).map_err(ApiError::from))
        .await?;
    if published.created {
        tracing::info!(event_id = %published.id, deliveries = published.deliveries, publisher = %caller.identity, "event published");
    }
    let status = if published.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .json(json!({"id": published.id, "deliveries": published.deliveries})))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    action: Option<String>,
    since: Option<String>,
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
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(clock::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let action = pagination::ActionFilter::parse(q.action.as_deref());
    let before = q.page.cursor();
    let items = store
        .read(move |c| store::list(c, &action, since, before, limit + 1).map_err(ApiError::from))
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({"events": items, "next_cursor": next})))
}

async fn detail_route(
    _admin: Admin,
    store: web::Data<Store>,
    publisher: web::Data<Publisher>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let publisher = publisher.into_inner();
    let v = store
        .read(move |c| {
            let mut v =
                store::get(c, &id)?.ok_or_else(|| ApiError::not_found(format!("event {id}")))?;
            v["delivery_count"] = v["deliveries"].take();
            v["deliveries"] = json!(publisher.fanout().deliveries_of(c, &id)?);
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"event": v})))
}

async fn types_route(_admin: Admin, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let seen = store
        .read(|c| store::seen_actions(c).map_err(ApiError::from))
        .await?;
    let mut out: Vec<Value> = Vec::new();
    for (group, list) in [
        ("frontier", FRONTIER_ACTIONS),
        ("front", FRONT_ACTIONS),
        ("system", SYSTEM_ACTIONS),
    ] {
        for a in list {
            let first_seen = seen
                .iter()
                .find(|(s, _)| s == a)
                .map(|(_, t)| clock::to_rfc3339(*t));
            out.push(json!({"action": a, "group": group, "first_seen": first_seen}));
        }
    }
    for (a, t) in &seen {
        if !out.iter().any(|v| v["action"] == a.as_str()) {
            out.push(json!({"action": a, "group": "seen", "first_seen": clock::to_rfc3339(*t)}));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"event_types": out})))
}
