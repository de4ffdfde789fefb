//! Outbound delivery, Frontier-style: the webhook registry ([`webhooks`]), encrypted
//! signing secrets ([`secrets`]), signatures ([`sign`]), the SSRF-safe client ([`client`]), the
//! `delivery.send` job ([`send`]) and the deliveries API ([`deliveries`]).

pub mod cache;
pub mod client;
pub mod deliveries;
pub mod gate;
pub mod headers;
pub mod health;
pub mod secrets;
pub mod send;
pub mod sign;
pub mod store;
pub mod webhooks;

use std::sync::Arc;

use crate::config::Config;
use crate::events::Publisher;
use crate::jobs::Registry;
use crate::store::Store;

/// The webhook and delivery admin APIs.
#[must_use]
pub fn endpoints() -> Vec<crate::http::Endpoint> {
    let mut all = webhooks::endpoints();
    all.extend(deliveries::endpoints());
    all
}

/// What delivery hands the rest of the app at start.
pub struct Delivery {
    /// The enabled webhooks in memory; events fan out through it.
    pub webhooks: Arc<cache::Webhooks>,
    /// Publishes events, fanning them out to the webhooks.
    pub publisher: Publisher,
    /// Attempts in flight per endpoint, for [`send::sweep_parked`].
    pub gate: Arc<gate::Gate>,
}

/// Registers the `delivery.send` job kind and builds the fan-out the publisher uses.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn register(
    registry: &mut Registry,
    periodic: &mut crate::jobs::periodic::Periodic,
    config: &Config,
    store: Store,
    keyring: Arc<secrets::Keyring>,
    handoff: Option<crate::jobs::Handoff>,
) -> anyhow::Result<Delivery> {
    let client = client::DeliveryClient::new(
        config.delivery.timeout,
        config.delivery.allow_private_networks,
    )?;
    let store_for_health = store.clone();
    let webhooks = Arc::new(cache::Webhooks::new(
        store.clone(),
        keyring,
        config.delivery.retry_schedule.len(),
        handoff,
    ));
    let publisher = Publisher::new(Arc::clone(&webhooks) as Arc<dyn crate::events::FanOut>);
    let gate = Arc::new(gate::Gate::default());
    registry.register(send::kind(Arc::new(send::Sender {
        store,
        client,
        webhooks: Arc::clone(&webhooks),
        publisher: publisher.clone(),
        default_schedule: config.delivery.retry_schedule.clone(),
        gate: Arc::clone(&gate),
    })));
    let (s, p, after) = (
        store_for_health,
        publisher.clone(),
        config.delivery.auto_disable_after,
    );
    periodic.register(
        health::SPEC,
        Arc::new(move || {
            let (s, p) = (s.clone(), p.clone());
            Box::pin(async move { health::run(&s, &p, after).await.map_err(|e| e.to_string()) })
        }),
    );
    Ok(Delivery {
        webhooks,
        publisher,
        gate,
    })
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 3,
        sql: include_str!("migrations/0003_delivery.sql"),
    },
    crate::store::Migration {
        version: 4,
        sql: include_str!("migrations/0004_endpoint_health.sql"),
    },
    crate::store::Migration {
        version: 5,
        sql: include_str!("migrations/0005_headers_truncated.sql"),
    },
    crate::store::Migration {
        version: 8,
        sql: include_str!("migrations/0008_checks.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_delivery.sql"),
}];
