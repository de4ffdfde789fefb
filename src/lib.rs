//! hookrelay — a webhook hub in one binary.
//!
//! # The way of one event
//!
//! An inbound request is verified, stored and turned into a durable job in **one** transaction,
//! and only then answered (`store::Writer` groups many such transactions into one commit). Job
//! workers (`jobs`) claim due jobs with a lease, run the handler registered for the job's kind,
//! and record the outcome in the same commit as whatever the handler wrote. Nothing slow happens
//! on the request path: fetching, fan-out and delivery all run as jobs.
//!
//! ```text
//! request ─► verify ─► Writer (store row + enqueue job, group commit) ─► 2xx
//!                                   │ after commit: wake workers
//!                                   ▼
//!                       jobs::Dispatcher ─► claim (lease) ─► handler ─► complete/retry/dead
//! ```
//!
//! # Modules
//! - [`config`]: figment layers into one validated, typed [`config::Config`].
//! - [`store`]: SQLite pool for reads, the single group-commit [`store::Writer`], migrations.
//! - [`jobs`]: the durable queue: enqueue inside the caller's transaction, claim with a lease,
//!   backoff, dead-letter handling, the job-kind registry and the admin jobs API.
//! - [`front`]: Front ingress — signature checks, the hot path, the `front.process` job and its
//!   rate-limited API client, the `front_sync` run that ingests events no webhook delivered, the
//!   inbound admin API, id conversion.
//! - [`events`]: the envelope (JavaScript-stable JSON), publishing and fan-out, the events API.
//! - [`delivery`]: the webhook registry, encrypted secrets, signing, the SSRF-safe client, the
//!   delivery job and the deliveries API.
//! - [`ops`]: audit log, stats, online backups, database maintenance.
//! - [`cron`]: schedules that tick into durable jobs, their run records and the built-in tasks.
//! - [`metrics`]: `/metrics` (Prometheus) and the counters recorded where things happen.
//! - [`openapi`]: the route table — every route mounted and documented from one list.
//! - [`web`]: health and readiness probes, the embedded admin page.
//! - [`app`]: builds everything, binds the listener, runs until a signal, shuts down gracefully.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod counters;
pub mod cron;
pub mod delivery;
pub mod error;
pub mod events;
pub mod front;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub mod layers;
pub mod ops;
pub mod pagination;
pub mod redact;
pub mod sources;
pub mod store;
pub mod web;

/// Makes `ring` the process's TLS crypto provider (reqwest is built without one). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The version string sent as `User-Agent: hookrelay/<version>` and shown on the admin page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
