//! Received events of every sender — Front and (later) each inbound source: stored raw with
//! their processing job in one transaction, deduplicated by the sender's id, and the inbound
//! admin API (list, detail with the raw event, what was fetched and the processing job, replay).
//!
//! States: `pending` (stored, processing queued or running) → `processed`, or `failed` with the
//! reason when the processing job ends without success.
//!
//! Refused requests of every sender are kept too ([`ingress`]).
//!
//! Owns `inbound_events`, `inbound_keys` and `inbound_rejected`. Which job processes a sender's events is told at
//! start ([`Processors`]), so this module knows no sender.

pub mod ingress;
pub mod routes;
pub mod store;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

/// The job that processes one sender's events: `(kind, attempts)`.
#[derive(Debug, Clone, Copy)]
pub struct Processing {
    pub kind: &'static str,
    pub max_attempts: u32,
}

/// Each sender's processing job, registered at start (Front: `front.process`).
#[derive(Debug, Clone, Default)]
pub struct Processors(HashMap<&'static str, Processing>);

impl Processors {
    /// Registers `source`'s processing job.
    pub fn register(&mut self, source: &'static str, processing: Processing) {
        self.0.insert(source, processing);
    }

    /// The processing job of `source`.
    #[must_use]
    pub fn get(&self, source: &str) -> Option<Processing> {
        self.0.get(source).copied()
    }
}

/// Where an inbound event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `POST /webhooks/front`: application webhook, `{authorization, type, payload}` envelope.
    App,
    /// `POST /webhooks/front/rules`: legacy rule webhook, the body is the event.
    Rule,
    /// The `front_sync` cron: an event Front's List Events API showed and no webhook
    /// delivered; the body is the event as listed.
    Sync,
    /// `POST /webhooks/in/<name>`: an inbound source's request, the body as sent.
    Source,
}

impl Channel {
    /// The name stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Rule => "rule",
            Self::Sync => "sync",
            Self::Source => "source",
        }
    }
}

/// An event to store.
#[derive(Debug)]
pub struct NewInbound {
    /// Who sent it: `front`, or a source's name.
    pub source: &'static str,
    pub channel: Channel,
    pub external_id: String,
    /// A second dedupe key, for senders whose id is not covered by the signature: the body's
    /// hash, so a captured request replayed with a new id is still a duplicate.
    pub body_key: Option<String>,
    pub event_type: String,
    pub company_id: Option<String>,
    pub raw_body: Vec<u8>,
    /// The headers kept, as a JSON object (serialised before the write).
    pub headers: String,
}

/// What the processing job reads.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub channel: String,
    pub event_type: String,
    pub company_id: Option<String>,
    pub raw_body: Vec<u8>,
    pub source: String,
    pub external_id: String,
    /// The headers kept, JSON.
    pub headers: String,
    pub received_at: crate::clock::Millis,
}

/// A refused ingress request, as recorded.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub source: String,
    /// `invalid_signature`, `timestamp_out_of_range`, `source_not_found`, `payload_too_large`,
    /// `invalid_payload`, `not_configured`.
    pub cause: String,
    pub message: String,
    pub at: crate::clock::Millis,
    pub peer: Option<String>,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub user_agent: Option<String>,
    /// The scheme's signature and timestamp header values.
    pub signature: Value,
    /// The first [`ingress::BODY_HEAD`] bytes of the body.
    pub body_head: Vec<u8>,
}

/// A refused request in a list.
#[derive(Debug, Serialize)]
pub struct RejectedRow {
    pub id: String,
    pub source: String,
    pub cause: String,
    pub message: String,
    pub at: String,
    pub peer: Option<String>,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub user_agent: Option<String>,
    pub signature: Value,
    /// The first bytes of the body as text (invalid UTF-8 replaced).
    pub body_head: String,
    pub body_head_bytes: usize,
}

/// An inbound event in a list.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub source: String,
    pub channel: String,
    /// The sender's own id of the event (Front's `evt_…`): shown as `event_id`, not to be
    /// confused with the id of the event published for it (`published_event_id`).
    #[serde(rename = "event_id")]
    pub external_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub company_id: Option<String>,
    pub state: String,
    pub error: Option<String>,
    pub job_id: Option<String>,
    pub received_at: String,
    pub processed_at: Option<String>,
}

/// The stored event a processing job (`{"inbound_id": …}`) is about, read by key on the job's
/// thread. Returns its id and the event.
///
/// # Errors
/// The job's result when there is nothing to process: a payload without an id or an event
/// gone (fail), or a read error (retry).
pub async fn load_for_job(
    store: &crate::store::Store,
    job: &crate::jobs::JobRun,
) -> Result<(String, Stored), crate::jobs::JobResult> {
    use crate::jobs::JobResult;
    let Some(id) = job
        .payload
        .get("inbound_id")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return Err(JobResult::fail("the job payload has no inbound_id"));
    };
    // Handed off with the run by the ingress that stored it: the same row, without a read.
    if let Some(stored) = job
        .memo
        .as_ref()
        .and_then(|m| m.get::<Stored>())
        .filter(|s| s.id == id)
    {
        return Ok((id, stored.clone()));
    }
    let loaded = store
        .read_quick({
            let id = id.clone();
            move |c| store::load(c, &id).map_err(crate::store::StoreError::from)
        })
        .await;
    match loaded {
        Ok(Some(s)) => Ok((id, s)),
        Ok(None) => Err(JobResult::fail(format!(
            "inbound event {id} no longer exists"
        ))),
        Err(e) => Err(JobResult::retry(format!("reading inbound event {id}: {e}"))),
    }
}

/// A sender's processing job kind: `handler` runs it; retried and cancelled through the
/// inbound replay, and its event marked failed when it dies.
#[must_use]
pub fn processing_kind(
    processing: Processing,
    handler: crate::jobs::HandlerFn,
) -> crate::jobs::JobKind {
    crate::jobs::JobKind {
        name: processing.kind,
        handler,
        max_attempts: processing.max_attempts,
        operator_enqueueable: None,
        managed_by: Some("POST /v1beta1/admin/inbound/{id}/replay"),
        on_dead: Some(fail_on_dead()),
    }
}

/// The dead-job hook of a processing job: its event is marked failed with the job's error.
#[must_use]
fn fail_on_dead() -> crate::jobs::DeadHookFn {
    std::sync::Arc::new(
        |tx, dead| match dead.payload.get("inbound_id").and_then(Value::as_str) {
            Some(id) => store::mark_failed(tx, id, &dead.error),
            None => Ok(()),
        },
    )
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 2,
        sql: include_str!("migrations/0002_inbound_events.sql"),
    },
    crate::store::Migration {
        version: 5,
        sql: include_str!("migrations/0005_inbound_keys.sql"),
    },
    crate::store::Migration {
        version: 6,
        sql: include_str!("migrations/0006_sources.sql"),
    },
    crate::store::Migration {
        version: 8,
        sql: include_str!("migrations/0008_checks.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_inbound.sql"),
}];
