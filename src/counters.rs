//! The counters and histograms hookrelay records where things happen — ingress outcomes,
//! delivery attempts, job outcomes, cron runs, the writer's commits, HTTP requests — through the
//! `metrics` facade into one process-wide Prometheus recorder. `/metrics` (the web layer) renders
//! them with the gauges it reads from the database.
//!
//! A primitive: every layer records here; it knows nothing of what it counts.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from a loopback round trip to a timed-out attempt.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Commands per group commit.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often buffered histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle). `None` if
/// another recorder was installed first, in which case `/metrics` says so.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("hookrelay_writer_batch_size".into()),
                        &BATCH_BUCKETS,
                    )
                });
            match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => {
                    describe();
                    Some(handle)
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is unavailable");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not built; /metrics is unavailable");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "hookrelay_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "hookrelay_http_request_duration_seconds",
        "HTTP request latency by route"
    );
    describe_counter!(
        "hookrelay_ingress_total",
        "inbound webhooks by source and outcome"
    );
    describe_counter!(
        "hookrelay_delivery_attempts_total",
        "delivery attempts by outcome"
    );
    describe_histogram!(
        "hookrelay_delivery_attempt_duration_seconds",
        "delivery attempt latency"
    );
    describe_counter!(
        "hookrelay_deliveries_total",
        "deliveries that ended, by final state"
    );
    describe_counter!(
        "hookrelay_jobs_finished_total",
        "job runs by kind and outcome"
    );
    describe_counter!("hookrelay_cron_runs_total", "cron runs by name and outcome");
    describe_counter!(
        "hookrelay_task_calls_total",
        "task call attempts by outcome (succeeded, http_5xx, timeout, …)"
    );
    describe_counter!(
        "hookrelay_tasks_total",
        "tasks finished, by state (succeeded, failed)"
    );
    describe_histogram!("hookrelay_writer_batch_size", "commands per group commit");
    describe_histogram!("hookrelay_writer_commit_seconds", "group commit latency");
    describe_gauge!(
        "hookrelay_jobs",
        "jobs by kind and state (queued, running, retrying, dead)"
    );
    describe_gauge!(
        "hookrelay_queue_depth",
        "jobs due or waiting to run (queued and retrying)"
    );
    describe_gauge!(
        "hookrelay_oldest_queued_job_age_seconds",
        "how long the oldest due job has waited"
    );
    describe_gauge!(
        "hookrelay_cron_overdue",
        "1 when a schedule is overdue by more than two periods"
    );
    describe_gauge!("hookrelay_database_bytes", "size of the database file");
    describe_gauge!("hookrelay_wal_bytes", "size of the write-ahead log");
}

/// Folds buffered histogram samples in every [`UPKEEP_INTERVAL`], so memory stays bounded
/// when nobody scrapes.
pub async fn upkeep_loop(stop: tokio_util::sync::CancellationToken) {
    let Some(handle) = install() else { return };
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// An inbound webhook's outcome (`accepted`, `duplicate`, `invalid_signature`, …).
pub fn ingress(source: &'static str, outcome: &str) {
    counter!("hookrelay_ingress_total", "source" => source, "outcome" => outcome.to_string())
        .increment(1);
}

/// One delivery attempt: `succeeded`, `http_<class>` (e.g. `http_5xx`), or an error kind.
pub fn delivery_attempt(outcome: &str, latency: Duration) {
    counter!("hookrelay_delivery_attempts_total", "outcome" => outcome.to_string()).increment(1);
    histogram!("hookrelay_delivery_attempt_duration_seconds").record(latency.as_secs_f64());
}

/// A delivery ended: `succeeded` or `failed`.
pub fn task_call(outcome: &str) {
    counter!("hookrelay_task_calls_total", "outcome" => outcome.to_string()).increment(1);
}

/// A task finished in `state`.
pub fn task_finished(state: &'static str) {
    counter!("hookrelay_tasks_total", "state" => state).increment(1);
}

/// A delivery finished in `state`.
pub fn delivery_finished(state: &'static str) {
    counter!("hookrelay_deliveries_total", "state" => state).increment(1);
}

/// A job run ended: `succeeded`, `retrying`, `dead`, `rescheduled`.
pub fn job_finished(kind: &str, outcome: &'static str) {
    counter!("hookrelay_jobs_finished_total", "kind" => kind.to_string(), "outcome" => outcome)
        .increment(1);
}

/// A cron run ended or was skipped.
pub fn cron_run(name: &str, outcome: &'static str) {
    counter!("hookrelay_cron_runs_total", "name" => name.to_string(), "outcome" => outcome)
        .increment(1);
}

/// One group commit of `size` commands that took `took`.
pub fn writer_commit(size: usize, took: Duration) {
    histogram!("hookrelay_writer_batch_size").record(size as f64);
    histogram!("hookrelay_writer_commit_seconds").record(took.as_secs_f64());
}
