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
//! - [`ops`]: audit log.
//! - [`web`]: health and readiness probes, the embedded admin page.
//! - [`app`]: builds everything, binds the listener, runs until a signal, shuts down gracefully.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod ops;
pub mod pagination;
pub mod store;
pub mod web;

/// The version string sent as `User-Agent: hookrelay/<version>` and shown on the status page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
