//! Outbound delivery, Frontier-style: the webhook registry ([`webhooks`]), encrypted
//! signing secrets ([`secrets`]), signatures ([`sign`]), the SSRF-safe client ([`client`]), the
//! `delivery.send` job ([`send`]) and the deliveries API ([`deliveries`]).

pub mod client;
pub mod deliveries;
pub mod gate;
pub mod headers;
pub mod secrets;
pub mod send;
pub mod sign;
pub mod webhooks;

use std::sync::Arc;

use crate::config::Config;
use crate::jobs::Registry;
use crate::store::Store;

/// The webhook and delivery admin APIs.
#[must_use]
pub fn endpoints() -> Vec<crate::http::Endpoint> {
    let mut all = webhooks::endpoints();
    all.extend(deliveries::endpoints());
    all
}

/// Registers the `delivery.send` job kind. Returns its gate, for [`send::sweep_parked`].
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn register(
    registry: &mut Registry,
    config: &Config,
    store: Store,
    keyring: Arc<secrets::Keyring>,
) -> anyhow::Result<Arc<gate::Gate>> {
    let client = client::DeliveryClient::new(
        config.delivery.timeout,
        config.delivery.allow_private_networks,
    )?;
    let gate = Arc::new(gate::Gate::default());
    registry.register(send::kind(Arc::new(send::Sender {
        store,
        client,
        keyring,
        default_schedule: config.delivery.retry_schedule.clone(),
        gate: Arc::clone(&gate),
    })));
    Ok(gate)
}
