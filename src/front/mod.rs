//! Front ingress: verified webhooks in, stored raw with their processing job in one
//! transaction ([`ingress`]); the `front.process` job fetches what previews lack through the
//! rate-limited API client and publishes `front.<type>` ([`process`], [`client`]); the
//! `front_sync` task that ingests events no webhook delivered ([`sync`]); Front id conversion
//! ([`front_id`]). The stored events and the inbound admin API are `crate::inbound`'s.
//!
//! The way of one Front message: `ingress` (verify, store + enqueue, 200) → jobs worker →
//! `process` (fetch what is missing) → publish → delivery.

pub mod client;
pub mod front_id;
pub mod ingress;
pub mod process;
pub mod signature;
pub mod sync;

use std::sync::Arc;

use actix_web::http::Method;

use crate::config::Config;
use crate::http::{Auth, Endpoint, Reply};
use crate::jobs::Registry;
use crate::store::Store;

/// The sender name Front's events are stored under.
pub const SOURCE: &str = "front";

/// The job that processes Front's stored events.
pub const PROCESSING: crate::inbound::Processing = crate::inbound::Processing {
    kind: process::KIND,
    max_attempts: process::MAX_ATTEMPTS,
};

/// The ingress routes (when `front.enabled`).
#[must_use]
pub fn endpoints(config: &Config) -> Vec<Endpoint> {
    let mut all = Vec::new();
    if config.front.enabled {
        all.push(
            Endpoint::new(
                Method::POST,
                "/webhooks/front",
                "front",
                "Front application webhooks: verified, stored with their processing job, then 200 `{received}` (`duplicate: true` for an event seen before); with `x-front-challenge`, answers the challenge",
                |r| r.to(ingress::app_webhook),
            )
            .auth(Auth::FrontApp)
            .body(front_event_schema)
            .reply(Reply::Json("`{received: true, duplicate?}` or `{challenge}`")),
        );
        all.push(
            Endpoint::new(
                Method::POST,
                "/webhooks/front/rules",
                "front",
                "legacy Front rule webhooks: the body is the event",
                |r| r.to(ingress::rule_webhook),
            )
            .auth(Auth::FrontRule)
            .body(front_event_schema)
            .reply(Reply::Json("`{received: true, duplicate?}`"))
            .keys(&["received"]),
        );
    }
    all
}

fn front_event_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "description": "the event exactly as Front sends it"})
}

/// Registers the `front.process` job kind and the `front_sync` task, which share one Front API
/// client (`None` without `front.api_token`) and so one request budget.
///
/// # Errors
/// When the Front API client cannot be built.
pub fn register(
    registry: &mut Registry,
    periodic: &mut crate::jobs::periodic::Periodic,
    processors: &mut crate::inbound::Processors,
    config: &Config,
    store: Store,
    publisher: crate::events::Publisher,
) -> anyhow::Result<()> {
    let client = client::FrontClient::new(&config.front)?.map(Arc::new);
    if client.is_none() {
        tracing::info!(
            "front.api_token is not set: events that arrive as previews cannot be completed"
        );
    }
    let (s, c, window) = (store.clone(), client.clone(), config.retention.succeeded);
    periodic.register(
        sync::SPEC,
        Arc::new(move || {
            let (s, c) = (s.clone(), c.clone());
            Box::pin(async move {
                let report = sync::run(&s, c.as_deref(), window).await?;
                Ok(crate::jobs::periodic::TaskReport {
                    rows_affected: report.rows_affected(),
                    detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
                })
            })
        }),
    );
    registry.register(process::kind(Arc::new(process::Processor {
        store,
        client,
        fetch_history: config.front.fetch_history,
        publisher,
    })));
    processors.register(SOURCE, PROCESSING);
    Ok(())
}

/// The webhook type for a Front API event type (rule webhooks carry the API type), per the
/// seed's table; unknown types are kept as they are.
#[must_use]
pub fn webhook_type(api_type: &str) -> &str {
    match api_type {
        "inbound" => "inbound_received",
        "outbound" => "outbound_sent",
        "archive" => "conversation_archived",
        "reopen" => "conversation_reopened",
        "assign" | "unassign" => "assignee_changed",
        "tag" => "tag_added",
        "untag" => "tag_removed",
        other => other,
    }
}
