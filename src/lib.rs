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
//! Layered bottom up (see [`layers`] and `docs/architecture.md`): a module uses only those
//! below it.
//! - primitives: [`clock`], [`ids`], [`redact`], [`config`] (figment layers into one validated
//!   [`config::Config`]), [`error`], [`counters`] (the metrics recorded where things happen),
//!   [`pagination`], [`http`] (the route-declaration type and the raw-body extractor), [`auth`].
//! - [`store`]: SQLite pool for reads, the single group-commit [`store::Writer`], migrations,
//!   the audit record and the kv table.
//! - [`jobs`]: the durable queue: enqueue inside the caller's transaction, hand-off to this
//!   process's dispatcher, claim with a lease, backoff, dead-letter handling, the job-kind and
//!   periodic-task registries and the admin jobs API.
//! - capabilities: [`events`] (the envelope, publishing, fan-out through a hook, the events
//!   API); [`delivery`] (the webhook registry and its cache, encrypted secrets, signing, the
//!   SSRF-safe client, the delivery job and API); [`inbound`] (received events of every sender,
//!   refused requests, the inbound API); [`front`] (Front ingress, the `front.process` job and
//!   its API client, `front_sync`, id conversion); [`sources`] (inbound sources of any
//!   provider: schemes as data, ingress, `source.process`).
//! - [`cron`] (schedules that tick registered tasks into durable jobs) and [`ops`] (retention,
//!   stats, online backups, database maintenance).
//! - [`web`]: the route table and OpenAPI, `/metrics`, health and readiness, the admin page.
//! - [`app`]: builds everything, binds the listener, runs until a signal, shuts down
//!   gracefully; [`cli`]: the verbs.

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
pub mod sql;
pub mod store;
pub mod tasks;
pub mod web;

/// Makes `ring` the process's TLS crypto provider (reqwest is built without one). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The version string sent as `User-Agent: hookrelay/<version>` and shown on the admin page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
