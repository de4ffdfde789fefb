//! The `source.process` job: a stored request of a source becomes one published event,
//! `<name>.<type>`, whose `data` carries the body (JSON as JSON with big integers as strings, a
//! form as an object of its fields, anything else as text), the headers of interest, and where
//! it came from.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Source, Sources};
use crate::clock;
use crate::events::{Action, NewEvent, Publisher};
use crate::inbound::Stored;
use crate::inbound::store as inbound;
use crate::jobs::{JobKind, JobResult, JobRun};
use crate::store::Store;

/// The job kind.
pub const KIND: &str = "source.process";
/// Attempts before an event is marked failed.
pub const MAX_ATTEMPTS: u32 = 12;

/// Processes stored requests of every source.
pub struct Processor {
    pub store: Store,
    pub sources: Sources,
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

/// `<name>.` + the type lowercased, each run of characters outside `[a-z0-9_.]` made one `_`,
/// empty segments dropped; `<name>.received` when nothing is left.
#[must_use]
pub fn action(name: &str, event_type: &str) -> Action {
    let mut cleaned = String::with_capacity(event_type.len());
    let mut in_run = false;
    for c in event_type.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' {
            cleaned.push(c);
            in_run = false;
        } else if !in_run {
            cleaned.push('_');
            in_run = true;
        }
    }
    let segments: Vec<&str> = cleaned.split('.').filter(|s| !s.is_empty()).collect();
    let mut action = format!(
        "{name}.{}",
        if segments.is_empty() {
            "received".to_string()
        } else {
            segments.join(".")
        }
    );
    if action.len() > 200 {
        let mut cut = 200;
        while !action.is_char_boundary(cut) {
            cut -= 1;
        }
        action.truncate(cut);
        while action.ends_with('.') {
            action.pop();
        }
    }
    Action::parse(&action)
        .or_else(|_| Action::parse(&format!("{name}.received")))
        .expect("a source name is a valid action segment")
}

/// The body as the event carries it.
#[must_use]
pub fn body_value(raw: &[u8], content_type: Option<&str>) -> Value {
    let form = content_type.is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if form {
        return super::extract::form_object(raw);
    }
    match serde_json::from_slice::<Value>(&crate::events::json::quote_big_integers(raw)) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(raw).into_owned()),
    }
}

/// The event published for a stored request of `source`.
#[must_use]
pub fn outbound(source: &Source, stored: Stored) -> NewEvent {
    let headers: Value = serde_json::from_str(&stored.headers).unwrap_or_else(|_| json!({}));
    let body = body_value(
        &stored.raw_body,
        headers.get("content-type").and_then(Value::as_str),
    );
    let mut metadata = Map::new();
    metadata.insert("body".into(), body);
    metadata.insert("headers".into(), headers);
    metadata.insert("inbound_id".into(), json!(stored.id));
    metadata.insert(
        "received_at".into(),
        json!(clock::to_rfc3339(stored.received_at)),
    );
    let mut data = Map::new();
    data.insert(
        "actor".into(),
        json!({"id": source.name, "type": "source", "name": source.config.preset}),
    );
    data.insert(
        "target".into(),
        json!({"id": stored.external_id, "type": "event", "name": stored.event_type}),
    );
    data.insert("org_id".into(), json!(source.config.org_id));
    data.insert("source".into(), json!(source.name));
    data.insert("metadata".into(), Value::Object(metadata));
    NewEvent {
        action: action(source.name, &stored.event_type),
        data,
        idempotency_key: None,
        only: None,
    }
}

impl Processor {
    async fn run(&self, job: JobRun) -> JobResult {
        let (id, stored) = match crate::inbound::load_for_job(&self.store, &job).await {
            Ok(found) => found,
            Err(result) => return result,
        };
        let Some(source) = self.sources.get(&stored.source).cloned() else {
            return JobResult::fail(format!(
                "source `{}` is no longer configured; add it back and replay",
                stored.source
            ));
        };
        let prepared = match self.publisher.prepare(outbound(&source, stored)).await {
            Ok(p) => p,
            Err(e) => return JobResult::retry(format!("preparing the event: {e}")),
        };
        tracing::info!(inbound_id = %id, event_id = %prepared.id, action = %prepared.action.as_str(), "source event processed");
        let publisher = self.publisher.clone();
        JobResult::succeeded().with_write(Box::new(move |tx| {
            let event_id = publisher.store(tx, &prepared)?.id;
            inbound::mark_processed(tx, &id, "null", &event_id)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_of_provider_types() {
        assert_eq!(
            action("github", "pull_request.opened").as_str(),
            "github.pull_request.opened"
        );
        assert_eq!(
            action("shop", "orders/create").as_str(),
            "shop.orders_create"
        );
        assert_eq!(
            action("linear", "Issue.create").as_str(),
            "linear.issue.create"
        );
        assert_eq!(action("stripe", "").as_str(), "stripe.received");
        assert_eq!(action("s", "..a  b!!..").as_str(), "s.a_b_");
        assert_eq!(action("s", "Ünïcode").as_str(), "s._n_code");
        assert!(action("s", &"x".repeat(500)).as_str().len() <= 200);
    }

    #[test]
    fn bodies_as_json_forms_or_text() {
        assert_eq!(
            body_value(br#"{"id": 12345678901234567890}"#, Some("application/json")),
            json!({"id": "12345678901234567890"})
        );
        assert_eq!(
            body_value(
                b"a=1&b=x+y",
                Some("application/x-www-form-urlencoded; charset=utf-8")
            ),
            json!({"a": "1", "b": "x y"})
        );
        assert_eq!(body_value(b"<xml/>", Some("text/xml")), json!("<xml/>"));
    }
}
