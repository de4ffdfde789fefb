//! The enabled webhooks in memory: what fan-out matches events against and what the send job
//! signs with, so neither reads, parses or decrypts a webhook per event.
//!
//! A snapshot holds, per enabled webhook, its compiled subscriptions, its retry count, and its
//! delivery target — the URL, the custom headers opened, the signing secrets opened with their
//! expiry. It is rebuilt (one read, outside any transaction) when the webhook data's
//! generation has moved: every write to webhooks or their secrets bumps it once it commits
//! ([`super::store::webhooks_changed`]).
//!
//! [`Webhooks`] is also the delivery side of [`FanOut`]: events hand it their action and get the
//! subscribers back, then hand it the transaction to create the deliveries in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sql::Connection;
use futures_util::future::BoxFuture;
use serde_json::Value;
use url::Url;

use super::headers;
use super::secrets::{Keyring, SigningSecret};
use super::sign::Algorithm;
use super::store::{self, Webhook};
use crate::clock::{self, Millis};
use crate::events::{EventRef, FanOut, Subscriber};
use crate::store::{Store, StoreError, WriteTx};

/// Which actions a webhook takes: empty subscriptions take all; else exact names and
/// `prefix.*` entries.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    all: bool,
    exact: HashSet<String>,
    /// `"app.user."` for `app.user.*`.
    prefixes: Vec<String>,
}

impl Subscriptions {
    /// Compiles a webhook's `subscribed_events`.
    #[must_use]
    pub fn new(patterns: &[String]) -> Self {
        let mut s = Self {
            all: patterns.is_empty(),
            ..Self::default()
        };
        for p in patterns {
            match p.strip_suffix(".*") {
                Some(prefix) => s.prefixes.push(format!("{prefix}.")),
                None => {
                    s.exact.insert(p.clone());
                }
            }
        }
        s
    }

    /// Whether `action` is taken.
    #[must_use]
    pub fn matches(&self, action: &str) -> bool {
        self.all
            || self.exact.contains(action)
            || self
                .prefixes
                .iter()
                .any(|p| action.len() > p.len() && action.starts_with(p.as_str()))
    }
}

/// Where and how a webhook's deliveries are sent.
#[derive(Debug)]
pub struct Target {
    pub id: String,
    /// The URL, or why it cannot be used.
    pub url: Result<Url, String>,
    /// The custom headers to send (sensitive ones decrypted), or why they cannot be opened.
    pub headers: Result<Vec<(String, String)>, String>,
    pub algorithm: Algorithm,
    /// The webhook's own retry schedule; `None` = the global one.
    pub schedule: Option<Vec<Duration>>,
    /// Secrets that opened: `(id, secret, expires_at)`, newest first.
    secrets: Vec<(u32, SigningSecret, Option<Millis>)>,
    /// Secrets that did not open, with why.
    unopened: Vec<String>,
}

impl Target {
    /// The secrets signing at `now`, newest first; an error when none opens (only when some
    /// failed to open is it the webhook's failure — an expired overlap is not).
    ///
    /// # Errors
    /// Why the webhook has no secret to sign with.
    pub fn signing_at(&self, now: Millis) -> Result<Vec<(u32, &SigningSecret)>, String> {
        let live: Vec<(u32, &SigningSecret)> = self
            .secrets
            .iter()
            .filter(|(_, _, until)| until.is_none_or(|u| u > now))
            .map(|(id, s, _)| (*id, s))
            .collect();
        if !live.is_empty() {
            for f in &self.unopened {
                tracing::error!(webhook_id = %self.id, "{f}; signing with the other secrets");
            }
            return Ok(live);
        }
        if self.unopened.is_empty() {
            Err("the webhook has no active signing secret".into())
        } else {
            Err(self.unopened.join("; "))
        }
    }
}

struct Entry {
    id: String,
    subscriptions: Subscriptions,
    retries: usize,
}

struct Snapshot {
    generation: u64,
    entries: Vec<Entry>,
    targets: HashMap<String, Arc<Target>>,
}

/// The enabled webhooks in memory, rebuilt when they change.
pub struct Webhooks {
    store: Store,
    keyring: Arc<Keyring>,
    /// Retries of a webhook without its own schedule: the global schedule's length.
    default_retries: usize,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// One rebuild at a time; the others wait for it.
    rebuilding: tokio::sync::Mutex<()>,
    /// Delivery jobs go straight to this process's dispatcher when it has room.
    handoff: Option<crate::jobs::Handoff>,
}

impl Webhooks {
    /// An empty cache over `store`; the first use fills it.
    #[must_use]
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        default_retries: usize,
        handoff: Option<crate::jobs::Handoff>,
    ) -> Self {
        Self {
            store,
            keyring,
            default_retries,
            snapshot: RwLock::new(None),
            rebuilding: tokio::sync::Mutex::new(()),
            handoff,
        }
    }

    fn current_if_fresh(&self) -> Option<Arc<Snapshot>> {
        let generation = store::generation();
        self.snapshot
            .read()
            .ok()
            .and_then(|s| s.clone())
            .filter(|s| s.generation == generation)
    }

    async fn current(&self) -> Result<Arc<Snapshot>, StoreError> {
        if let Some(s) = self.current_if_fresh() {
            return Ok(s);
        }
        let _one = self.rebuilding.lock().await;
        if let Some(s) = self.current_if_fresh() {
            return Ok(s);
        }
        // The generation is read before the webhooks: a change committed meanwhile leaves the
        // snapshot older than the generation, and the next call rebuilds again.
        let generation = store::generation();
        let now = clock::now_ms();
        let loaded = self
            .store
            .read(move |c| load(c, now).map_err(StoreError::from))
            .await?;
        let snapshot = Arc::new(self.build(generation, loaded));
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = Some(Arc::clone(&snapshot));
        }
        Ok(snapshot)
    }

    fn build(&self, generation: u64, loaded: Vec<Loaded>) -> Snapshot {
        let mut entries = Vec::with_capacity(loaded.len());
        let mut targets = HashMap::with_capacity(loaded.len());
        for (w, sealed) in loaded {
            entries.push(Entry {
                id: w.id.clone(),
                subscriptions: Subscriptions::new(&w.subscribed_events),
                retries: self.retries(&w),
            });
            targets.insert(w.id.clone(), Arc::new(self.target(w, &sealed)));
        }
        Snapshot {
            generation,
            entries,
            targets,
        }
    }

    fn retries(&self, w: &Webhook) -> usize {
        w.retry_schedule
            .as_ref()
            .map_or(self.default_retries, Vec::len)
    }

    fn target(
        &self,
        w: Webhook,
        sealed: &[(i64, super::secrets::Sealed, Option<Millis>)],
    ) -> Target {
        let mut secrets = Vec::new();
        let mut unopened = Vec::new();
        for (seq, s, until) in sealed {
            match self.keyring.open(s, &format!("{}:{seq}", w.id)) {
                Ok(secret) => secrets.push((u32::try_from(*seq).unwrap_or(0), secret, *until)),
                Err(e) => {
                    unopened.push(format!("its signing secret {seq} cannot be decrypted: {e}"))
                }
            }
        }
        Target {
            url: Url::parse(&w.url).map_err(|e| format!("its url cannot be parsed: {e}")),
            headers: headers::open(&self.keyring, &w.id, &w.headers),
            algorithm: w.signature_algorithm,
            schedule: w
                .retry_schedule
                .as_deref()
                .and_then(|s| crate::config::parse_retry_schedule(s).ok()),
            secrets,
            unopened,
            id: w.id,
        }
    }

    /// The delivery target of enabled webhook `id`; `None` when it is disabled or gone.
    ///
    /// # Errors
    /// When the webhooks cannot be read.
    pub async fn target_of(&self, id: &str) -> Result<Option<Arc<Target>>, StoreError> {
        Ok(self.current().await?.targets.get(id).cloned())
    }
}

/// An enabled webhook with its signing secrets: `(webhook, [(seq, sealed, expires_at)])`.
type Loaded = (Webhook, Vec<(i64, super::secrets::Sealed, Option<Millis>)>);

fn load(conn: &Connection, now: Millis) -> crate::sql::Result<Vec<Loaded>> {
    store::enabled(conn)?
        .into_iter()
        .map(|w| {
            let secrets = store::signing_secrets(conn, &w.id, now)?;
            Ok((w, secrets))
        })
        .collect()
}

fn matching(
    entries: impl Iterator<Item = (String, Subscriptions, usize)>,
    action: &str,
    only: Option<&str>,
) -> Vec<Subscriber> {
    entries
        .filter(|(id, subs, _)| match only {
            Some(o) => id == o,
            None => subs.matches(action),
        })
        .map(|(webhook_id, _, retries)| Subscriber {
            webhook_id,
            retries,
        })
        .collect()
}

impl FanOut for Webhooks {
    fn subscribers<'a>(
        &'a self,
        action: &'a str,
        only: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Subscriber>, StoreError>> {
        Box::pin(async move {
            let snapshot = self.current().await?;
            Ok(snapshot
                .entries
                .iter()
                .filter(|e| match only {
                    Some(o) => e.id == o,
                    None => e.subscriptions.matches(action),
                })
                .map(|e| Subscriber {
                    webhook_id: e.id.clone(),
                    retries: e.retries,
                })
                .collect())
        })
    }

    fn subscribers_in(
        &self,
        conn: &Connection,
        action: &str,
        only: Option<&str>,
    ) -> crate::sql::Result<Vec<Subscriber>> {
        let enabled = store::enabled(conn)?;
        Ok(matching(
            enabled.iter().map(|w| {
                (
                    w.id.clone(),
                    Subscriptions::new(&w.subscribed_events),
                    self.retries(w),
                )
            }),
            action,
            only,
        ))
    }

    fn deliver(
        &self,
        tx: &WriteTx<'_>,
        event: EventRef<'_>,
        subscribers: &[Subscriber],
    ) -> crate::sql::Result<()> {
        store::create(tx, event, subscribers, self.handoff.as_ref())
    }

    fn deliveries_of(&self, conn: &Connection, event_id: &str) -> crate::sql::Result<Vec<Value>> {
        store::for_event(conn, event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_matching() {
        let s = |v: &[&str]| {
            Subscriptions::new(&v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
        };
        assert!(s(&[]).matches("app.user.created"));
        assert!(s(&["app.user.created"]).matches("app.user.created"));
        assert!(!s(&["app.user.created"]).matches("app.user.updated"));
        assert!(s(&["app.user.*"]).matches("app.user.updated"));
        assert!(s(&["app.*"]).matches("app.organization.member.created"));
        assert!(!s(&["app.user.*"]).matches("app.user"));
        assert!(!s(&["app.user.*"]).matches("app.username.created"));
        assert!(!s(&["front.*"]).matches("app.user.created"));
    }
}
