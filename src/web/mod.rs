//! What the service shows about itself: `/healthz`, `/readyz`, and the admin page embedded from
//! `static/` (served at `/admin`, `/` redirects there).

pub mod assets;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod openapi;

use crate::http::Endpoint;

/// Health, readiness and the admin page.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    let mut all = health::endpoints();
    all.extend(assets::endpoints());
    all
}
