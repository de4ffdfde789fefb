//! hookrelay's integration tests: the real app on a random port with its own temp database.

mod backup;
mod browser;
mod chaos;
mod cli;
mod copy_db;
mod crash;
mod delivery;
mod front;
mod front_sync;
mod hardening;
mod health;
mod helpers;
mod hostile;
mod http;
mod jobs;
mod js_compat;
mod on_postgres;
mod ops;
mod provider_libs;
mod receiving;
mod schedules;
mod schemathesis;
mod sources;
mod store;
mod systemd;
mod tasks;
