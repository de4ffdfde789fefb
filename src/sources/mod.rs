//! Inbound sources: webhooks of any provider, declared as `[sources.<name>]`, received at
//! `POST /webhooks/in/<name>`, verified on the raw bytes by the source's scheme (data, not code:
//! [`scheme`]), stored raw with a `source.process` job in one group commit ([`ingress`]), and
//! published as `<name>.<type>` by the job ([`process`]). The stored events, their replay and
//! the rejected requests are `crate::inbound`'s; `GET /v1beta1/admin/sources` is [`routes`].
//!
//! The way of one Stripe event: `ingress` (verify, dedupe key, store + enqueue, 200) → jobs
//! worker → `process` (body to JSON, the event of the source) → publish → delivery.

pub mod extract;
pub mod ingress;
pub mod process;
pub mod routes;
pub mod scheme;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::Method;

use crate::config::{Config, SourceConfig};
use crate::http::{Endpoint, Reply};
use crate::inbound::Processing;
use scheme::Scheme;

/// The job that processes a source's stored requests.
pub const PROCESSING: Processing = Processing {
    kind: process::KIND,
    max_attempts: process::MAX_ATTEMPTS,
};

/// One configured source, ready for its requests.
#[derive(Debug)]
pub struct Source {
    /// Its name, for as long as the process runs (stored events and metrics name it).
    pub name: &'static str,
    pub config: SourceConfig,
    pub scheme: Scheme,
    /// Headers kept with each stored event, lowercased.
    pub kept_headers: Vec<String>,
    /// The body pointers ingress reads, in order: the handshake's (`/type`, `/challenge`,
    /// `/event/type`) when the preset has one, then the type's and the id's.
    pub pointers: Vec<extract::Pointer>,
    /// Where the type's and id's pointers start in [`Self::pointers`].
    pub first_body_pointer: usize,
}

/// The body pointers of `scheme`, and where its type's and id's start.
fn pointers_of(scheme: &Scheme) -> (Vec<extract::Pointer>, usize) {
    use crate::config::Locator;
    let mut wanted = Vec::new();
    if scheme.handshake != scheme::Handshake::None {
        wanted.extend(["/type", "/challenge", "/event/type"].map(extract::Pointer::new));
    }
    let first = wanted.len();
    let types: Vec<&Locator> = match &scheme.event_type {
        scheme::TypeRule::First(ls) => ls.iter().collect(),
        scheme::TypeRule::Joined(a, b) => vec![a, b],
    };
    for l in types.into_iter().chain(scheme.id.iter()) {
        if let Locator::Pointer(p) = l {
            wanted.push(extract::Pointer::new(p));
        }
    }
    (wanted, first)
}

impl Source {
    /// The path to give the provider.
    #[must_use]
    pub fn path(&self) -> String {
        format!("/webhooks/in/{}", self.name)
    }
}

/// Every configured source by name.
#[derive(Debug, Default, Clone)]
pub struct Sources(BTreeMap<&'static str, Arc<Source>>);

impl Sources {
    /// The sources of `config` with their schemes.
    ///
    /// # Errors
    /// A scheme the validated configuration still cannot make (a Discord key that is not a
    /// curve point), naming the source.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut all = BTreeMap::new();
        for (name, cfg) in &config.sources {
            let scheme =
                Scheme::for_source(cfg).map_err(|m| anyhow::anyhow!("`sources.{name}`: {m}"))?;
            // Names live as long as the process: leaked once at start, a few bytes each.
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            let kept_headers = scheme.kept_headers();
            let (pointers, first_body_pointer) = pointers_of(&scheme);
            all.insert(
                name,
                Arc::new(Source {
                    name,
                    config: cfg.clone(),
                    scheme,
                    kept_headers,
                    pointers,
                    first_body_pointer,
                }),
            );
        }
        Ok(Self(all))
    }

    /// The source `name`, enabled or not.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.0.get(name)
    }

    /// Every source, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.0.values()
    }

    /// Every source's name (reserved as action namespaces and `data.source` values).
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        self.0.keys().copied().collect()
    }
}

/// The ingress route and the sources view.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/webhooks/in/{name}",
            "sources",
            "a provider's webhook to source `name`: verified by its preset on the raw body, stored with its `source.process` job, then 200 `{received}` (`duplicate: true` for an id seen within `idempotency_window`); Slack's `url_verification` and Discord's pings are answered",
            |r| r.to(ingress::receive),
        )
        .auth(crate::http::Auth::Source)
        .body(|| serde_json::json!({"type": "object", "description": "the provider's request body, as it sends it"}))
        .reply(Reply::Json("`{received: true, duplicate?}`, or the handshake's answer"))
        .keys(&["received"]),
        Endpoint::new(
            Method::GET,
            "/v1beta1/admin/sources",
            "sources",
            "each inbound source: name, preset, the path to give the provider, counts received / duplicate / rejected in the last hour and 24 h, last received and rejected; never a secret",
            |r| r.to(routes::list),
        )
        .reply(Reply::Json("`{sources: [...]}`"))
        .keys(&["sources"]),
    ]
}

/// Registers the `source.process` job kind and each source's processing.
pub fn register(
    registry: &mut crate::jobs::Registry,
    processors: &mut crate::inbound::Processors,
    sources: &Sources,
    store: crate::store::Store,
    publisher: crate::events::Publisher,
) {
    registry.register(process::kind(Arc::new(process::Processor {
        store,
        sources: sources.clone(),
        publisher,
    })));
    for source in sources.iter() {
        processors.register(source.name, PROCESSING);
    }
}
