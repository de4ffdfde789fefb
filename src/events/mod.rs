//! Published events: the envelope, the publish API, fan-out to subscribed webhooks, and
//! the events admin API and event-types catalog.
//!
//! One internal [`publish`] serves every publisher — `POST /v1beta1/events`, Front-derived events
//! (`front.*`) and the service's own (`system.job.dead`, `webhook.disabled`, `webhook.test`): in
//! the caller's transaction it stores the event with its envelope bytes, one delivery per
//! subscribed, enabled webhook, and one job per delivery. The envelope is written once, by
//! [`json::to_js_json`], and sent byte for byte on every attempt.

pub mod json;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::{Admin, Publisher};
use crate::clock::{self, Millis};
use crate::config::Config;
use crate::delivery::deliveries::{self, EventRef};
use crate::error::ApiError;
use crate::ids;
use crate::http::{Auth, Endpoint, PAGE, Reply};
use crate::pagination::{self, PageQuery};
use crate::store::{Store, WriteTx};

/// The longest idempotency `id` a publisher may send.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A valid action name: `^[a-z0-9_]+(\.[a-z0-9_]+)+$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action(String);

impl Action {
    /// Parses an action.
    ///
    /// # Errors
    /// A message saying what an action looks like.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let segment_ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if s.len() <= 200 && parts.len() >= 2 && parts.iter().all(segment_ok) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "action `{s}` must be dotted lowercase words, like app.user.created (^[a-z0-9_]+(\\.[a-z0-9_]+)+$)"
            ))
        }
    }

    /// Whether `prefix` may precede `.*` in a subscription (one or more segments).
    #[must_use]
    pub fn is_valid_prefix(prefix: &str) -> bool {
        !prefix.is_empty()
            && prefix.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every action of the Frontier webhooks guide.
pub const FRONTIER_ACTIONS: &[&str] = &[
    "app.user.created",
    "app.user.updated",
    "app.user.deleted",
    "app.user.listed",
    "app.serviceuser.created",
    "app.serviceuser.deleted",
    "app.organization.created",
    "app.organization.updated",
    "app.organization.deleted",
    "app.organization.member.created",
    "app.organization.member.deleted",
    "app.project.created",
    "app.project.updated",
    "app.project.deleted",
    "app.group.created",
    "app.group.updated",
    "app.group.deleted",
    "app.permission.created",
    "app.permission.updated",
    "app.permission.deleted",
    "app.permission.checked",
    "app.policy.created",
    "app.policy.deleted",
    "app.resource.created",
    "app.resource.updated",
    "app.resource.deleted",
    "app.role.created",
    "app.role.updated",
    "app.role.deleted",
    "app.billing.entitlement.checked",
];

/// The actions Front events are published as.
pub const FRONT_ACTIONS: &[&str] = &[
    "front.inbound_received",
    "front.outbound_sent",
    "front.conversation_archived",
    "front.conversation_reopened",
    "front.assignee_changed",
    "front.tag_added",
    "front.tag_removed",
];

/// The service's own events.
pub const SYSTEM_ACTIONS: &[&str] = &["system.job.dead", "webhook.disabled", "webhook.test"];

/// Action namespaces only hookrelay publishes into (plus one per inbound source, by its name):
/// a publisher using one could forge the service's own events, indistinguishable to receivers.
pub const RESERVED_NAMESPACES: &[&str] = &["system", "webhook", "front", "task", "schedule"];

/// `data.source` values only hookrelay uses (plus every inbound source's name).
pub const RESERVED_SOURCES: &[&str] = &["front", "hookrelay"];

/// Refuses what a publisher may not publish: an action in a reserved namespace, or a
/// `data.source` naming one of hookrelay's own sources. `sources` are the configured inbound
/// source names, reserved likewise.
///
/// # Errors
/// 400 `reserved_action` naming what is reserved.
pub fn check_not_reserved(
    action: &Action,
    data: &Map<String, Value>,
    sources: &[&str],
) -> Result<(), ApiError> {
    let namespace = action.as_str().split('.').next().unwrap_or_default();
    if RESERVED_NAMESPACES.contains(&namespace) || sources.contains(&namespace) {
        return Err(ApiError::bad_request(
            "reserved_action",
            format!(
                "actions under `{namespace}.` are hookrelay's own and cannot be published; use your own namespace, like app.{}",
                action.as_str().split_once('.').map_or("", |(_, rest)| rest)
            ),
        ));
    }
    if let Some(source) = data.get("source").and_then(Value::as_str)
        && (RESERVED_SOURCES.contains(&source) || sources.contains(&source))
    {
        return Err(ApiError::bad_request(
            "reserved_action",
            format!(
                "data.source `{source}` is hookrelay's own; name your application instead (the default is `frontier`)"
            ),
        ));
    }
    Ok(())
}

/// An event to publish.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub action: Action,
    /// `data`: `actor`, `target`, `org_id`, `source`, `metadata`.
    pub data: Map<String, Value>,
    /// The publisher's `id`: the same key again returns the first answer.
    pub idempotency_key: Option<String>,
    /// Deliver to this webhook only (`webhook.test`).
    pub only: Option<String>,
}

impl NewEvent {
    /// An event the service publishes about itself (`data.source` = `hookrelay`).
    ///
    /// # Panics
    /// If `action` is not a valid action (a programming error).
    #[must_use]
    pub fn system(action: &str, data: Value) -> Self {
        let mut data = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        data.entry("source").or_insert_with(|| json!("hookrelay"));
        Self {
            action: Action::parse(action).expect("system actions are valid"),
            data,
            idempotency_key: None,
            only: None,
        }
    }

    /// Delivers only to `webhook_id`.
    #[must_use]
    pub fn only_to(mut self, webhook_id: &str) -> Self {
        self.only = Some(webhook_id.to_string());
        self
    }
}

/// The envelope, ready to store: id, time and the exact bytes subscribers receive.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: String,
    pub created_at: Millis,
    pub action: Action,
    pub source: String,
    pub body: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// Whose `idempotency_key` it is (the caller's scope): ids are scoped to the token that sent
    /// them, so one publisher cannot pre-claim another's.
    pub publisher: Option<String>,
    pub only: Option<String>,
}

/// Builds the envelope of `event`: `{id, created_at, action, data: {actor, target, org_id, source,
/// metadata}}`, compact and JavaScript-stable. `data.source` defaults to `frontier`.
#[must_use]
pub fn prepare(event: NewEvent) -> Prepared {
    let NewEvent {
        action,
        data: mut given,
        idempotency_key,
        only,
    } = event;
    let id = ids::new_id(ids::EVENT);
    let created_at = clock::now_ms();
    // Moved, not cloned: metadata can be a whole Front conversation.
    let mut data = Map::new();
    for key in ["actor", "target", "org_id"] {
        data.insert(key.into(), given.shift_remove(key).unwrap_or(Value::Null));
    }
    let source = given
        .shift_remove("source")
        .and_then(|s| s.as_str().map(str::to_string))
        .unwrap_or_else(|| "frontier".to_string());
    data.insert("source".into(), json!(source));
    data.insert(
        "metadata".into(),
        given.shift_remove("metadata").unwrap_or_else(|| json!({})),
    );
    data.extend(given);
    let envelope = json!({
        "id": id,
        "created_at": clock::to_rfc3339(created_at),
        "action": action.as_str(),
        "data": Value::Object(data),
    });
    Prepared {
        body: json::to_js_json(&envelope),
        id,
        created_at,
        action,
        source,
        idempotency_key,
        publisher: None,
        only,
    }
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub deliveries: u32,
    /// `false` when the idempotency key named an earlier event, whose answer this is.
    pub created: bool,
}

/// Prepares and publishes `event` in the caller's transaction.
///
/// # Errors
/// A database error.
pub fn publish(
    tx: &WriteTx<'_>,
    event: NewEvent,
    default_retries: usize,
) -> rusqlite::Result<Published> {
    publish_prepared(tx, &prepare(event), default_retries)
}

/// Stores a prepared event, its deliveries and their jobs in the caller's transaction.
///
/// # Errors
/// A database error.
pub fn publish_prepared(
    tx: &WriteTx<'_>,
    p: &Prepared,
    default_retries: usize,
) -> rusqlite::Result<Published> {
    if let Some(key) = &p.idempotency_key {
        let earlier: Option<(String, u32)> = tx
            .prepare_cached(
                "SELECT id, deliveries FROM events
                 WHERE idempotency_key = ?1 AND (publisher = ?2 OR publisher IS NULL)",
            )?
            .query_row(params![key, p.publisher], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, deliveries)) = earlier {
            return Ok(Published {
                id,
                deliveries,
                created: false,
            });
        }
    }
    let subscribers =
        deliveries::subscribers(tx, p.action.as_str(), p.only.as_deref(), default_retries)?;
    let count = u32::try_from(subscribers.len()).unwrap_or(u32::MAX);
    tx.prepare_cached(
        "INSERT INTO events (id, idempotency_key, publisher, action, source, body, deliveries, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        p.id,
        p.idempotency_key,
        p.publisher,
        p.action.as_str(),
        p.source,
        p.body,
        count,
        p.created_at
    ])?;
    deliveries::create(
        tx,
        EventRef {
            id: &p.id,
            action: p.action.as_str(),
            created_at: p.created_at,
        },
        &subscribers,
    )?;
    tx.prepare_cached("INSERT INTO event_types (action, first_seen) VALUES (?1, ?2) ON CONFLICT (action) DO NOTHING")?
        .execute(params![p.action.as_str(), p.created_at])?;
    Ok(Published {
        id: p.id.clone(),
        deliveries: count,
        created: true,
    })
}

/// The part of the one error handler that publishes `system.job.dead` for every dead job —
/// except deliveries, whose failures are recorded on the delivery itself (publishing them would
/// let a failing subscriber of `system.job.dead` feed itself).
#[must_use]
pub fn dead_job_hook(default_retries: usize) -> crate::jobs::DeadHookFn {
    std::sync::Arc::new(move |tx, dead| {
        if dead.kind == deliveries::KIND {
            return Ok(());
        }
        let event = NewEvent::system(
            "system.job.dead",
            json!({
                "actor": {"id": "hookrelay", "type": "system", "name": "hookrelay"},
                "target": {"id": dead.id, "type": "job", "name": dead.kind},
                "metadata": {"kind": dead.kind, "attempts": dead.attempt, "error": dead.error, "payload": dead.payload},
            }),
        );
        publish(tx, event, default_retries).map(|_| ())
    })
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

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
        .find_map(|(k, v)| json::find_unsafe_integer(v, &format!("data.{k}")))
    {
        return Err(invalid(format!(
            "{path} is an integer beyond ±2^53, which JavaScript receivers cannot hold exactly; send it as a string"
        )));
    }
    Ok(map)
}

async fn publish_route(
    Publisher(caller): Publisher,
    store: web::Data<Store>,
    config: web::Data<Config>,
    body: web::Json<PublishBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let action = Action::parse(&b.action).map_err(invalid)?;
    let data = check_data(b.data)?;
    check_not_reserved(&action, &data, &[])?;
    let idempotency_key = match b.id {
        Some(id) if id.is_empty() || id.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(invalid(format!(
                "id must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )));
        }
        other => other,
    };
    let mut prepared = prepare(NewEvent {
        action,
        data,
        idempotency_key,
        only: None,
    });
    prepared.publisher = Some(caller.scope.clone());
    let default_retries = config.delivery.retry_schedule.len();
    let published = store
        .writer()
        .write(move |tx| publish_prepared(tx, &prepared, default_retries).map_err(ApiError::from))
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

fn event_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "action": r.get::<_, String>(1)?,
        "source": r.get::<_, String>(2)?,
        "deliveries": r.get::<_, i64>(3)?,
        "idempotency_key": r.get::<_, Option<String>>(4)?,
        "created_at": clock::to_rfc3339(r.get(5)?),
    }))
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
        .read(move |c| {
            pagination::ListQuery::new()
                .action(&action)
                .filter("created_at >= ?", &since)
                .filter("id < ?", &before)
                .run(
                    c,
                    "id, action, source, deliveries, idempotency_key, created_at",
                    "events",
                    limit + 1,
                    event_summary,
                )
                .map_err(ApiError::from)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({"events": items, "next_cursor": next})))
}

/// One event: its summary, the envelope as sent, and its deliveries.
///
/// # Errors
/// A database error.
pub fn detail(c: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    let found = c
        .prepare_cached("SELECT id, action, source, deliveries, idempotency_key, created_at, body FROM events WHERE id = ?1")?
        .query_row([id], |r| {
            let mut v = event_summary(r)?;
            let body: Vec<u8> = r.get(6)?;
            v["payload"] = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Ok(v)
        })
        .optional()?;
    let Some(mut v) = found else { return Ok(None) };
    v["delivery_count"] = v["deliveries"].take();
    v["deliveries"] = json!(deliveries::for_event(c, id)?);
    Ok(Some(v))
}

async fn detail_route(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .read(move |c| detail(c, &id)?.ok_or_else(|| ApiError::not_found(format!("event {id}"))))
        .await?;
    Ok(HttpResponse::Ok().json(json!({"event": v})))
}

async fn types_route(_admin: Admin, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let seen: Vec<(String, Millis)> = store
        .read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT action, first_seen FROM event_types ORDER BY action")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, ApiError>(rows)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        for ok in [
            "app.user.created",
            "front.inbound_received",
            "a.b",
            "x1.y_2.z3",
        ] {
            assert!(Action::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "app",
            "App.user",
            "app..user",
            ".app.user",
            "app.user.",
            "app.user-created",
            "app.*",
            "",
        ] {
            assert!(Action::parse(bad).is_err(), "{bad}");
        }
        assert!(Action::is_valid_prefix("app.user") && Action::is_valid_prefix("app"));
        assert!(!Action::is_valid_prefix("app.") && !Action::is_valid_prefix(""));
    }

    #[test]
    fn envelope_field_order_and_defaults() {
        let e = NewEvent {
            action: Action::parse("app.user.created").expect("action"),
            data: serde_json::from_str(
                r#"{"metadata":{"b":1,"a":2},"target":{"id":"u2"},"actor":{"id":"u1"}}"#,
            )
            .expect("json"),
            idempotency_key: None,
            only: None,
        };
        let p = prepare(e);
        let text = String::from_utf8(p.body).expect("utf8");
        let expected = format!(
            r#"{{"id":"{}","created_at":"{}","action":"app.user.created","data":{{"actor":{{"id":"u1"}},"target":{{"id":"u2"}},"org_id":null,"source":"frontier","metadata":{{"b":1,"a":2}}}}}}"#,
            p.id,
            clock::to_rfc3339(p.created_at)
        );
        assert_eq!(text, expected);
    }
}
