//! What the service shows about itself: `/healthz`, `/readyz`, and the admin page embedded from
//! `static/` (served at `/admin`, `/` redirects there).

pub mod assets;
pub mod health;

use actix_web::web;

/// Mounts health, readiness and the admin page.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    assets::configure(cfg);
}
