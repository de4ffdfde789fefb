//! The `front.process` job: makes a stored Front event whole and publishes it.
//!
//! Application webhooks usually carry the full target, but previews carry only `_meta`, `_links`
//! and `id` (the seed's "#1 gotcha"). This job parses the stored event tolerantly — the target id
//! at `target.data.id` or `target.id`; `source.data` an object or an array of inboxes — fetches
//! only what is missing (the message when it has no `body`, the conversation when only a preview
//! is present, the recent messages with `front.fetch_history`), and stores what it fetched with
//! the event in the same transaction that marks it processed and publishes `front.<type>`.
//!
//! Rate limits reschedule the job without spending an attempt; 5xx and network errors retry with
//! backoff; a 404 or any other refusal fails it with that reason (visible in the inbound API).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::client::{FetchError, FrontClient};
use crate::events::{Action, NewEvent, Prepared, Publisher};
use crate::inbound::Stored;
use crate::inbound::store as inbound;
use crate::jobs::{JobKind, JobResult, JobRun, Outcome};
use crate::store::{Store, WriteTx};

/// The job kind.
pub const KIND: &str = "front.process";
/// Attempts before an event is marked failed (about half an hour of backoff in all).
pub const MAX_ATTEMPTS: u32 = 12;
/// The most history messages fetched per event.
pub const HISTORY_LIMIT: usize = 50;
/// The most history pages followed per event (a loop of `next` links ends here).
pub const HISTORY_PAGES: usize = 5;

/// Processes stored Front events.
pub struct Processor {
    pub store: Store,
    pub client: Option<Arc<FrontClient>>,
    pub fetch_history: bool,
    /// Publishes the outbound events.
    pub publisher: Publisher,
}

/// The job kind, backed by `processor`.
#[must_use]
pub fn kind(processor: Arc<Processor>) -> JobKind {
    crate::inbound::processing_kind(
        super::PROCESSING,
        Arc::new(move |job| {
            let p = Arc::clone(&processor);
            Box::pin(async move { p.run(job).await })
        }),
    )
}

/// A stored event, parsed.
#[derive(Debug, Clone)]
pub struct ParsedEvent {
    /// Webhook type: `inbound_received`, `tag_added`, …
    pub event_type: String,
    /// `authorization.id` of the envelope.
    pub company_id: Option<String>,
    /// The Front event object.
    pub event: Value,
}

impl ParsedEvent {
    /// Parses a stored event of any channel: `app` bodies are the `{authorization, type,
    /// payload}` envelope; `rule` and `sync` bodies are the event itself.
    ///
    /// # Errors
    /// When the stored body is not a JSON object with an event in it.
    pub fn from_stored(stored: &Stored) -> Result<Self, String> {
        let mut body: Value = serde_json::from_slice(&stored.raw_body)
            .map_err(|e| format!("the stored event is not JSON: {e}"))?;
        let (event, company_id) = if stored.channel == "app" {
            let company = body
                .pointer("/authorization/id")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| stored.company_id.clone());
            (
                body.get_mut("payload")
                    .map(Value::take)
                    .unwrap_or(Value::Null),
                company,
            )
        } else {
            (body, stored.company_id.clone())
        };
        if !event.is_object() {
            return Err("the stored event has no event object".into());
        }
        Ok(Self {
            event_type: stored.event_type.clone(),
            company_id,
            event,
        })
    }

    fn target(&self) -> &Value {
        &self.event["target"]
    }

    /// `target._meta.type`: `message`, `tag`, `teammate`, …
    fn target_kind(&self) -> Option<&str> {
        self.target().pointer("/_meta/type").and_then(Value::as_str)
    }

    /// The target's data: `target.data` in full events, `target` itself in previews.
    fn target_data(&self) -> &Value {
        match self.target().get("data") {
            Some(d) if d.is_object() => d,
            _ => self.target(),
        }
    }

    fn target_id(&self) -> Option<&str> {
        self.target_data()
            .get("id")
            .or_else(|| self.target().get("id"))
            .and_then(Value::as_str)
    }
}

/// What processing fetched (or found already in the event).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enriched {
    pub message: Option<Value>,
    pub conversation: Option<Value>,
    pub history: Vec<Value>,
    /// The URLs fetched, in order (for operators and tests).
    pub fetched_urls: Vec<String>,
    /// Whether the message / conversation came from the API rather than the event.
    pub message_fetched: bool,
    pub conversation_fetched: bool,
}

impl Enriched {
    /// What was fetched, for the inbound record: only the resources that came from the API (the
    /// rest is already in the raw event), with the URLs asked.
    fn fetched_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("urls".into(), json!(self.fetched_urls));
        if let Some(msg) = self.message.as_ref().filter(|_| self.message_fetched) {
            m.insert("message".into(), msg.clone());
        }
        if let Some(conv) = self
            .conversation
            .as_ref()
            .filter(|_| self.conversation_fetched)
        {
            m.insert("conversation".into(), conv.clone());
        }
        if !self.history.is_empty() {
            m.insert("history".into(), json!(self.history));
        }
        Value::Object(m)
    }
}

/// Whether `v` is only a reference: an object with nothing but `_links`, `_meta` and `id`.
#[must_use]
pub fn is_preview(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.keys()
            .all(|k| matches!(k.as_str(), "_links" | "_meta" | "id"))
    })
}

fn link<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

impl Processor {
    async fn run(&self, job: JobRun) -> JobResult {
        let (id, stored) = match crate::inbound::load_for_job(&self.store, &job).await {
            Ok(found) => found,
            Err(result) => return result,
        };
        let parsed = match ParsedEvent::from_stored(&stored) {
            Ok(p) => p,
            Err(e) => return JobResult::fail(e),
        };
        match self.enrich(&parsed).await {
            Ok(enriched) => {
                // Everything but the SQL happens here: the outbound envelope, its subscribers,
                // what was fetched; the write only stores them.
                let fetched = enriched.fetched_json().to_string();
                let fetched_count = enriched.fetched_urls.len();
                let prepared = match self.publisher.prepare(outbound(parsed, enriched)).await {
                    Ok(p) => p,
                    Err(e) => {
                        return JobResult::retry(format!("preparing the outbound event: {e}"));
                    }
                };
                tracing::info!(inbound_id = %id, event_id = %prepared.id, action = %prepared.action.as_str(), fetched = fetched_count, "front event processed");
                let publisher = self.publisher.clone();
                JobResult::succeeded().with_write(Box::new(move |tx| {
                    let event_id = publish_outbound(tx, &publisher, &prepared)?;
                    inbound::mark_processed(tx, &id, &fetched, &event_id)
                }))
            }
            Err(FetchError::RateLimited { until }) => Outcome::RunAgainAt {
                at: until,
                reason: "waiting for the Front API rate limit".into(),
            }
            .into(),
            Err(FetchError::Transient(msg)) => {
                let note = msg.clone();
                JobResult::retry(msg)
                    .with_write(Box::new(move |tx| inbound::note_error(tx, &id, &note)))
            }
            Err(FetchError::NotFound(msg) | FetchError::Rejected(msg)) => JobResult::fail(msg),
        }
    }

    fn client(&self) -> Result<&FrontClient, FetchError> {
        self.client.as_deref().ok_or_else(|| {
            FetchError::Rejected(
                "the event is a preview and front.api_token (or FRONT_API_TOKEN) is not set, so the \
                 full data cannot be fetched"
                    .into(),
            )
        })
    }

    /// Fetches only what the event lacks.
    ///
    /// # Errors
    /// The first [`FetchError`].
    pub async fn enrich(&self, parsed: &ParsedEvent) -> Result<Enriched, FetchError> {
        let mut out = Enriched::default();

        if parsed.target_kind() == Some("message") {
            let data = parsed.target_data();
            if data.get("body").is_some() {
                out.message = Some(data.clone());
            } else if let Some(msg_id) = parsed.target_id() {
                let client = self.client()?;
                let msg_id = resource_id(msg_id)?;
                let self_link =
                    link(data, "/_links/self").or_else(|| link(parsed.target(), "/_links/self"));
                let url = client.resolve(self_link, &format!("/messages/{msg_id}"));
                out.fetched_urls.push(url.to_string());
                out.message = Some(client.get_json(&url).await?);
                out.message_fetched = true;
            }
        }

        let conversation = &parsed.event["conversation"];
        if conversation.is_object() && !is_preview(conversation) {
            out.conversation = Some(conversation.clone());
        } else {
            let conv_id = conversation
                .get("id")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| {
                    out.message
                        .as_ref()
                        .and_then(|m| link(m, "/_links/related/conversation"))
                        .and_then(|l| l.rsplit('/').next())
                        .map(String::from)
                });
            if let Some(conv_id) = conv_id {
                let client = self.client()?;
                let conv_id = resource_id(&conv_id)?;
                let url = client.resolve(
                    link(conversation, "/_links/self"),
                    &format!("/conversations/{conv_id}"),
                );
                out.fetched_urls.push(url.to_string());
                out.conversation = Some(client.get_json(&url).await?);
                out.conversation_fetched = true;
            }
        }

        if self.fetch_history
            && let Some(conv_id) = out
                .conversation
                .as_ref()
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
        {
            let client = self.client()?;
            let conv_id = resource_id(conv_id)?;
            let mut pages = 0;
            let mut url = client.api_url(&format!(
                "/conversations/{conv_id}/messages?limit={HISTORY_LIMIT}"
            ));
            loop {
                out.fetched_urls.push(url.to_string());
                let page = client.get_json(&url).await?;
                if let Some(results) = page.get("_results").and_then(Value::as_array) {
                    out.history.extend(results.iter().cloned());
                }
                pages += 1;
                if out.history.len() >= HISTORY_LIMIT || pages >= HISTORY_PAGES {
                    out.history.truncate(HISTORY_LIMIT);
                    break;
                }
                match link(&page, "/_pagination/next").and_then(|n| url::Url::parse(n).ok()) {
                    Some(next) if next == url => break,
                    Some(next) if client.may_send_token_to(&next) => url = next,
                    Some(next) => {
                        tracing::warn!(%next, "not following a history page on a host the token may not go to");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// A Front resource id fit to go into an API path (`msg_…`, `cnv_…`: letters, digits, `_`, `-`).
///
/// # Errors
/// [`FetchError::Rejected`] for anything else, which could otherwise steer the token-bearing
/// request to another endpoint.
fn resource_id(id: &str) -> Result<&str, FetchError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(FetchError::Rejected(format!(
            "`{id}` is not a Front resource id"
        )))
    }
}

/// The publish step, SQL only: stores the prepared outbound event of an inbound one and returns
/// its id. A replayed inbound event is published again, as a new event.
///
/// # Errors
/// A database error.
pub fn publish_outbound(
    tx: &WriteTx<'_>,
    publisher: &Publisher,
    prepared: &Prepared,
) -> crate::sql::Result<String> {
    Ok(publisher.store(tx, prepared)?.id)
}

/// A teammate as an actor or target: `{id, type, name, email}`.
fn teammate(t: &Value) -> Value {
    let first = t
        .get("first_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let last = t
        .get("last_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let full = format!("{first} {last}").trim().to_string();
    let name = if full.is_empty() {
        t.get("username")
            .or_else(|| t.get("email"))
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        Value::String(full)
    };
    let mut m = Map::new();
    m.insert("id".into(), t.get("id").cloned().unwrap_or(Value::Null));
    m.insert("type".into(), json!("teammate"));
    m.insert("name".into(), name);
    if let Some(email) = t.get("email") {
        m.insert("email".into(), email.clone());
    }
    Value::Object(m)
}

/// Who did it: the message author (a teammate); for inbound mail, whose `author` is null, the
/// `recipients[role == "from"]` contact; else the event's source.
fn actor(parsed: &ParsedEvent, message: Option<&Value>) -> Value {
    if let Some(author) = message
        .and_then(|m| m.get("author"))
        .filter(|a| a.is_object())
    {
        return teammate(author);
    }
    let from = message
        .and_then(|m| m.get("recipients"))
        .and_then(Value::as_array)
        .and_then(|rs| {
            rs.iter()
                .find(|r| r.get("role").and_then(Value::as_str) == Some("from"))
        });
    if let Some(from) = from {
        let handle = from.get("handle").cloned().unwrap_or(Value::Null);
        let id = link(from, "/_links/related/contact")
            .and_then(|l| l.rsplit('/').next())
            .map_or_else(|| handle.clone(), |id| Value::String(id.to_string()));
        let name = from
            .get("name")
            .filter(|n| n.is_string())
            .cloned()
            .unwrap_or_else(|| handle.clone());
        let mut m = Map::new();
        m.insert("id".into(), id);
        m.insert("type".into(), json!("contact"));
        m.insert("name".into(), name);
        if handle.as_str().is_some_and(|h| h.contains('@')) {
            m.insert("email".into(), handle);
        }
        return Value::Object(m);
    }
    let source = &parsed.event["source"];
    let kind = source
        .pointer("/_meta/type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let data = match source.get("data") {
        Some(Value::Array(items)) => items.first().cloned().unwrap_or(Value::Null),
        Some(d) => d.clone(),
        None => Value::Null,
    };
    if kind == "teammate" {
        return teammate(&data);
    }
    json!({
        "id": data.get("id").cloned().unwrap_or(Value::Null),
        "type": match kind {
            "inboxes" => "inbox",
            "teammates" => "teammate",
            other => other,
        },
        "name": data.get("name").or_else(|| data.get("address")).cloned().unwrap_or(Value::Null),
    })
}

/// What it happened to: `{id, type, name}` of the message, tag, teammate, ….
fn target(parsed: &ParsedEvent, enriched: &Enriched) -> Value {
    let kind = parsed.target_kind().unwrap_or("unknown");
    let data = parsed.target_data();
    let id = parsed
        .target_id()
        .map_or(Value::Null, |s| Value::String(s.to_string()));
    match kind {
        "message" => {
            let subject = enriched
                .message
                .as_ref()
                .and_then(|m| {
                    m.get("subject")
                        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
                })
                .or_else(|| {
                    enriched
                        .conversation
                        .as_ref()
                        .and_then(|c| c.get("subject"))
                })
                .or_else(|| enriched.message.as_ref().and_then(|m| m.get("blurb")))
                .cloned()
                .unwrap_or(Value::Null);
            json!({"id": id, "type": "message", "name": subject})
        }
        "teammate" => {
            let mut t = teammate(data);
            if let Value::Object(m) = &mut t {
                m.remove("email");
            }
            t
        }
        other => json!({
            "id": id,
            "type": other,
            "name": data.get("name").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// The outbound event for an inbound Front event: `front.<type>` with `data` — the actor and
/// target derived, and the event, message, conversation and history moved (not copied) into
/// `metadata`. An unparseable type becomes `front.unknown`.
#[must_use]
pub fn outbound(parsed: ParsedEvent, enriched: Enriched) -> NewEvent {
    let actor = actor(&parsed, enriched.message.as_ref());
    let target = target(&parsed, &enriched);
    let action = Action::parse(&format!("front.{}", parsed.event_type))
        .unwrap_or_else(|_| Action::parse("front.unknown").expect("a valid action"));
    let mut metadata = Map::new();
    metadata.insert("event".into(), parsed.event);
    metadata.insert("message".into(), enriched.message.unwrap_or(Value::Null));
    metadata.insert(
        "conversation".into(),
        enriched.conversation.unwrap_or(Value::Null),
    );
    metadata.insert("history".into(), Value::Array(enriched.history));
    let mut data = Map::new();
    data.insert("actor".into(), actor);
    data.insert("target".into(), target);
    data.insert(
        "org_id".into(),
        parsed.company_id.map_or(Value::Null, Value::String),
    );
    data.insert("source".into(), json!("front"));
    data.insert("metadata".into(), Value::Object(metadata));
    NewEvent {
        action,
        data,
        idempotency_key: None,
        only: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbound event as `{action, data}`, as receivers see those parts.
    fn as_json(e: NewEvent) -> Value {
        json!({"action": e.action.as_str(), "data": Value::Object(e.data)})
    }

    fn parsed(event: Value, event_type: &str) -> ParsedEvent {
        ParsedEvent {
            event_type: event_type.into(),
            company_id: Some("cmp_1".into()),
            event,
        }
    }

    #[test]
    fn previews_are_recognised() {
        assert!(is_preview(&json!({"_links": {"self": "x"}, "id": "cnv_1"})));
        assert!(!is_preview(&json!({"id": "cnv_1", "subject": "hi"})));
        assert!(!is_preview(&json!(null)));
    }

    #[test]
    fn inbound_mail_actor_is_the_from_contact() {
        let p = parsed(
            json!({"target": {"_meta": {"type": "message"}, "data": {"id": "msg_1"}}}),
            "inbound_received",
        );
        let msg = json!({"id": "msg_1", "author": null, "subject": "Refund", "recipients": [
            {"handle": "support@acme.test", "role": "to"},
            {"handle": "jane@example.com", "role": "from", "name": "Jane Doe",
             "_links": {"related": {"contact": "https://acme.api.frontapp.com/contacts/crd_42"}}}
        ]});
        let e = Enriched {
            message: Some(msg),
            ..Enriched::default()
        };
        let out = as_json(outbound(p, e));
        assert_eq!(out["action"], "front.inbound_received");
        assert_eq!(
            out["data"]["actor"],
            json!({"id": "crd_42", "type": "contact", "name": "Jane Doe", "email": "jane@example.com"})
        );
        assert_eq!(
            out["data"]["target"],
            json!({"id": "msg_1", "type": "message", "name": "Refund"})
        );
        assert_eq!(out["data"]["org_id"], "cmp_1");
        assert_eq!(out["data"]["source"], "front");
    }

    #[test]
    fn teammate_actions_and_tag_targets() {
        let p = parsed(
            json!({
                "source": {"_meta": {"type": "teammate"}, "data": {"id": "tea_1", "first_name": "Ann", "last_name": "Lee", "email": "ann@acme.test"}},
                "target": {"_meta": {"type": "tag"}, "data": {"id": "tag_9", "name": "urgent"}}
            }),
            "tag_added",
        );
        let out = as_json(outbound(p, Enriched::default()));
        assert_eq!(
            out["data"]["actor"],
            json!({"id": "tea_1", "type": "teammate", "name": "Ann Lee", "email": "ann@acme.test"})
        );
        assert_eq!(
            out["data"]["target"],
            json!({"id": "tag_9", "type": "tag", "name": "urgent"})
        );
    }

    #[test]
    fn inbox_array_sources_are_tolerated() {
        let p = parsed(
            json!({"source": {"_meta": {"type": "inboxes"}, "data": [{"id": "inb_3srbb", "name": "Support"}]},
                   "target": {"_meta": {"type": "message"}, "_links": {"self": "x"}, "id": "msg_2"}}),
            "inbound_received",
        );
        assert_eq!(p.target_id(), Some("msg_2"));
        let out = as_json(outbound(p, Enriched::default()));
        assert_eq!(
            out["data"]["actor"],
            json!({"id": "inb_3srbb", "type": "inbox", "name": "Support"})
        );
    }
}
