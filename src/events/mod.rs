//! Published events: the envelope, publishing, and the hook fan-out hangs on.
//!
//! One [`Publisher`] serves every publisher — `POST /v1beta1/events`, Front-derived events
//! (`front.*`) and the service's own (`system.job.dead`, `webhook.disabled`, `webhook.test`).
//! Publishing has two halves: [`Publisher::prepare`] does the work — the envelope written once by
//! [`json::to_js_json`] (sent byte for byte on every attempt) and the subscribers matched in
//! memory — outside any transaction; [`Publisher::store`] then only runs SQL in the caller's
//! transaction: the event, and through the [`FanOut`] hook one delivery and one job per
//! subscriber.
//!
//! Events know nothing of webhooks: delivery implements [`FanOut`] and the app hands it to the
//! publisher at start.

pub mod json;
pub mod routes;
pub mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::sql::Connection;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use crate::clock::{self, Millis};
use crate::error::ApiError;
use crate::ids;
use crate::store::{StoreError, WriteTx};

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
pub const SYSTEM_ACTIONS: &[&str] = &[
    "system.job.dead",
    "system.task.failed",
    "webhook.disabled",
    "webhook.test",
];

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

/// The envelope, ready to store: id, time, the exact bytes subscribers receive, and who gets it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: String,
    pub created_at: Millis,
    pub action: Action,
    pub source: String,
    /// The envelope bytes, shared with the deliveries handed off with it.
    pub body: Arc<[u8]>,
    pub idempotency_key: Option<String>,
    /// Whose `idempotency_key` it is (the caller's scope): ids are scoped to the token that sent
    /// them, so one publisher cannot pre-claim another's.
    pub publisher: Option<String>,
    /// The webhooks it goes to, matched when it was prepared.
    pub subscribers: Vec<Subscriber>,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub deliveries: u32,
    /// `false` when the idempotency key named an earlier event, whose answer this is.
    pub created: bool,
}

/// A webhook an event goes to, and how many retries its deliveries get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub webhook_id: String,
    pub retries: usize,
}

/// What fan-out needs to know about a stored event.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub id: &'a str,
    pub action: &'a str,
    pub created_at: Millis,
    /// The envelope bytes every delivery sends.
    pub body: &'a Arc<[u8]>,
}

/// The hook events hand their subscribers to: implemented by delivery, handed to the
/// [`Publisher`] at start, so events never reach into webhooks or deliveries.
pub trait FanOut: Send + Sync {
    /// The enabled webhooks subscribed to `action` (or only `only`, whatever its
    /// subscriptions), from memory — no transaction is held while this runs.
    fn subscribers<'a>(
        &'a self,
        action: &'a str,
        only: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Subscriber>, StoreError>>;

    /// As [`FanOut::subscribers`], read on `conn`, for the rare event prepared inside a
    /// transaction (`system.job.dead`, `webhook.disabled`).
    ///
    /// # Errors
    /// A database error.
    fn subscribers_in(
        &self,
        conn: &Connection,
        action: &str,
        only: Option<&str>,
    ) -> crate::sql::Result<Vec<Subscriber>>;

    /// Creates one delivery and its job per subscriber of the stored `event`, in `tx`.
    ///
    /// # Errors
    /// A database error.
    fn deliver(
        &self,
        tx: &WriteTx<'_>,
        event: EventRef<'_>,
        subscribers: &[Subscriber],
    ) -> crate::sql::Result<()>;

    /// The deliveries of event `id`, as the events detail shows them.
    ///
    /// # Errors
    /// A database error.
    fn deliveries_of(&self, conn: &Connection, event_id: &str) -> crate::sql::Result<Vec<Value>>;
}

/// Builds the envelope of `event`: `{id, created_at, action, data: {actor, target, org_id, source,
/// metadata}}`, compact and JavaScript-stable. `data.source` defaults to `frontier`.
#[must_use]
pub fn envelope(event: NewEvent, subscribers: Vec<Subscriber>) -> Prepared {
    let NewEvent {
        action,
        data: mut given,
        idempotency_key,
        only: _,
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
    // Built by hand: `json!` would copy `data` value by value (it serialises every expression it
    // is given), and `data` can be a whole Front conversation.
    let mut envelope = Map::new();
    envelope.insert("id".into(), Value::String(id.clone()));
    envelope.insert(
        "created_at".into(),
        Value::String(clock::to_rfc3339(created_at)),
    );
    envelope.insert("action".into(), Value::String(action.as_str().to_string()));
    envelope.insert("data".into(), Value::Object(data));
    let envelope = Value::Object(envelope);
    Prepared {
        body: json::to_js_json(&envelope).into(),
        id,
        created_at,
        action,
        source,
        idempotency_key,
        publisher: None,
        subscribers,
    }
}

/// Publishes events: prepares them outside transactions, stores them inside the caller's.
#[derive(Clone)]
pub struct Publisher {
    fanout: Arc<dyn FanOut>,
    /// Actions this process has seen committed to the catalog: their catalog write is skipped.
    catalogued: Arc<Mutex<HashSet<String>>>,
}

impl Publisher {
    /// A publisher whose events fan out through `fanout`.
    #[must_use]
    pub fn new(fanout: Arc<dyn FanOut>) -> Self {
        Self {
            fanout,
            catalogued: Arc::default(),
        }
    }

    /// The fan-out hook (for the events detail API).
    #[must_use]
    pub fn fanout(&self) -> &dyn FanOut {
        self.fanout.as_ref()
    }

    /// The envelope and its subscribers: everything but the SQL.
    ///
    /// # Errors
    /// When the subscribers cannot be read.
    pub async fn prepare(&self, event: NewEvent) -> Result<Prepared, StoreError> {
        let subscribers = self
            .fanout
            .subscribers(event.action.as_str(), event.only.as_deref())
            .await?;
        Ok(envelope(event, subscribers))
    }

    /// Stores a prepared event and hands it to fan-out, in the caller's transaction — SQL only.
    /// The same idempotency key from the same publisher answers the first event instead.
    ///
    /// # Errors
    /// A database error.
    pub fn store(&self, tx: &WriteTx<'_>, p: &Prepared) -> crate::sql::Result<Published> {
        if let Some(key) = &p.idempotency_key
            && let Some((id, deliveries)) = store::find_by_key(tx, key, p.publisher.as_deref())?
        {
            return Ok(Published {
                id,
                deliveries,
                created: false,
            });
        }
        let count = u32::try_from(p.subscribers.len()).unwrap_or(u32::MAX);
        let action = p.action.as_str();
        let catalogued = self
            .catalogued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(action);
        store::insert(tx, p, count, !catalogued)?;
        if !catalogued {
            let known = Arc::clone(&self.catalogued);
            let action = action.to_string();
            tx.on_commit(move || {
                known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(action);
            });
        }
        self.fanout.deliver(
            tx,
            EventRef {
                id: &p.id,
                action: p.action.as_str(),
                created_at: p.created_at,
                body: &p.body,
            },
            &p.subscribers,
        )?;
        Ok(Published {
            id: p.id.clone(),
            deliveries: count,
            created: true,
        })
    }

    /// Prepares and stores `event` inside a transaction already open: for the service's own
    /// rare events decided there (a job that just died, a webhook disabled by a failing
    /// delivery). Everything else prepares first and stores with [`Publisher::store`].
    ///
    /// # Errors
    /// A database error.
    pub fn publish_in(&self, tx: &WriteTx<'_>, event: NewEvent) -> crate::sql::Result<Published> {
        let subscribers =
            self.fanout
                .subscribers_in(tx, event.action.as_str(), event.only.as_deref())?;
        self.store(tx, &envelope(event, subscribers))
    }
}

/// The part of the one error handler that publishes `system.job.dead` for every dead job —
/// except the kinds in `reported_otherwise`: deliveries, whose failures are recorded on the
/// delivery itself (publishing them would let a failing subscriber of `system.job.dead` feed
/// itself), and task calls, which publish `system.task.failed` instead.
#[must_use]
pub fn dead_job_hook(
    publisher: Publisher,
    reported_otherwise: &'static [&'static str],
) -> crate::jobs::DeadHookFn {
    std::sync::Arc::new(move |tx, dead| {
        if reported_otherwise.contains(&dead.kind.as_str()) {
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
        publisher.publish_in(tx, event).map(|_| ())
    })
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 3,
        sql: include_str!("migrations/0003_events.sql"),
    },
    crate::store::Migration {
        version: 5,
        sql: include_str!("migrations/0005_publisher.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_events.sql"),
}];

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
        let p = envelope(e, Vec::new());
        let text = String::from_utf8(p.body.to_vec()).expect("utf8");
        let expected = format!(
            r#"{{"id":"{}","created_at":"{}","action":"app.user.created","data":{{"actor":{{"id":"u1"}},"target":{{"id":"u2"}},"org_id":null,"source":"frontier","metadata":{{"b":1,"a":2}}}}}}"#,
            p.id,
            clock::to_rfc3339(p.created_at)
        );
        assert_eq!(text, expected);
    }
}
