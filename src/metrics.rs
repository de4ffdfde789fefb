//! `/metrics` in Prometheus text format, through the `metrics` facade and
//! `metrics-exporter-prometheus`.
//!
//! Counters and histograms are recorded where things happen (HTTP middleware, Front ingress,
//! delivery attempts, job outcomes, cron runs, the writer's commits); gauges that describe
//! stored state are set when `/metrics` is scraped.
//!
//! The job counts per kind and state, the queue depth and the oldest due job's wait come from
//! one database read that is made at most once per [`STATE_READ_EVERY`] (5 s) per database,
//! however often `/metrics` is scraped: a scrape within 5 s of the last read shows that read's
//! values (so they may be up to 5 s old, and `hookrelay_oldest_queued_job_age_seconds` is the
//! wait as of that read), and scrapes arriving while a read is in flight share it. Database and
//! WAL file sizes and overdue schedules are not read from the database and are current.
//!
//! It must never query the database on every scrape: a scraper set to a short interval, or
//! several of them, would add their load to the request path's read pool.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rusqlite::params;

use crate::clock;
use crate::cron::Cron;
use crate::error::ApiError;
use crate::jobs::Registry;
use crate::openapi::{Auth, Endpoint, Reply};
use crate::store::{Store, StoreError};
use crate::web::health::PerDatabase;

/// Latency buckets in seconds, from a loopback round trip to a timed-out attempt.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Commands per group commit.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often buffered histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The longest the stored-state gauges may be reused before the database is read again.
pub const STATE_READ_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The last stored-state read per database; `None` when it failed (the failure is logged).
static STATE: PerDatabase<Option<Arc<StoredState>>> = PerDatabase::new();

/// Stored-state reads `/metrics` made on `store`'s database since the process started. For
/// tests and benchmarks: it grows by at most one per [`STATE_READ_EVERY`].
#[must_use]
pub fn state_reads(store: &Store) -> u64 {
    STATE.reads(store.path())
}

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

/// Middleware: counts every request by its route pattern (never the raw path, so ids do not
/// make new series), method and status, and times it.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Only the standard methods get their own series: any token is a valid method, and this
    // endpoint is reachable without a token.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    counter!("hookrelay_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!("hookrelay_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// `/metrics`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            actix_web::http::Method::GET,
            "/metrics",
            "health",
            "Prometheus text format (no token: bind to loopback or firewall it)",
            |r| r.to(metrics),
        )
        .auth(Auth::Public)
        .reply(Reply::Text("metrics in Prometheus text format 0.0.4")),
    ]
}

async fn metrics(
    store: web::Data<Store>,
    cron: web::Data<Cron>,
    registry: web::Data<Registry>,
) -> Result<HttpResponse, ApiError> {
    let Some(handle) = install() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "the metrics recorder could not be installed in this process; see the log",
        ));
    };
    let reader = store.clone();
    let state = STATE
        .memo(store.path())
        .get(STATE_READ_EVERY, move || async move {
            let now = clock::now_ms();
            match reader
                .read(move |c| read_state(c, now).map_err(StoreError::from))
                .await
            {
                Ok(state) => Some(Arc::new(state)),
                Err(e) => {
                    tracing::error!(error = %e, "reading the job counts for /metrics failed");
                    None
                }
            }
        })
        .await
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "metrics_unavailable",
                "the job counts could not be read from the database; see the log",
            )
            .with_retry_after(STATE_READ_EVERY.as_secs())
        })?;
    let now = clock::now_ms();
    // Every registered kind in every state, so a count that dropped to zero reads zero.
    let mut counts: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for kind in registry.names() {
        for s in GAUGED_STATES {
            counts.insert((kind.to_string(), s), 0);
        }
    }
    for (kind, s, n) in &state.jobs {
        counts.insert((kind.clone(), s), *n);
    }
    let mut depth = 0u64;
    for ((kind, job_state), n) in counts {
        gauge!("hookrelay_jobs", "kind" => kind, "state" => job_state).set(n as f64);
        if job_state == "queued" || job_state == "retrying" {
            depth += n;
        }
    }
    gauge!("hookrelay_queue_depth").set(depth as f64);
    gauge!("hookrelay_oldest_queued_job_age_seconds").set(state.oldest_due_secs);
    let overdue = cron.overdue(now);
    for name in cron.names() {
        let v = if overdue.iter().any(|(n, _)| n == name) {
            1.0
        } else {
            0.0
        };
        gauge!("hookrelay_cron_overdue", "name" => name.clone()).set(v);
    }
    let path = store.path().to_path_buf();
    let size = |suffix: &str| {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    };
    gauge!("hookrelay_database_bytes").set(size("") as f64);
    gauge!("hookrelay_wal_bytes").set(size("-wal") as f64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

/// Job states with a gauge: those not final, and dead.
const GAUGED_STATES: [&str; 4] = ["queued", "running", "retrying", "dead"];

struct StoredState {
    /// (kind, state, count) for [`GAUGED_STATES`].
    jobs: Vec<(String, &'static str, u64)>,
    oldest_due_secs: f64,
}

fn read_state(c: &rusqlite::Connection, now: clock::Millis) -> rusqlite::Result<StoredState> {
    let mut jobs: Vec<(String, &'static str, u64)> = Vec::new();
    for state in GAUGED_STATES {
        let mut stmt = c.prepare_cached(
            "SELECT kind, COUNT(*) FROM jobs INDEXED BY jobs_state WHERE state = ?1 GROUP BY kind",
        )?;
        for row in stmt.query_map(params![state], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (kind, n) = row?;
            jobs.push((kind, state, u64::try_from(n).unwrap_or(0)));
        }
    }
    let oldest = crate::jobs::oldest_due_wait(c, now)?.unwrap_or_default();
    Ok(StoredState {
        jobs,
        oldest_due_secs: oldest.as_secs_f64(),
    })
}
