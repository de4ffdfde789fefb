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
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use metrics::{counter, gauge, histogram};

use crate::clock;
use crate::cron::Cron;
use crate::error::ApiError;
use crate::http::{Auth, Endpoint, Reply};
use crate::jobs::{JobState, Registry};
use crate::store::{Store, StoreError};
use crate::web::health::PerDatabase;

/// The longest the stored-state gauges may be reused before the database is read again.
pub const STATE_READ_EVERY: Duration = Duration::from_secs(5);

/// The last stored-state read per database; `None` when it failed (the failure is logged).
static STATE: PerDatabase<Option<Arc<StoredState>>> = PerDatabase::new();

/// Stored-state reads `/metrics` made on `store`'s database since the process started. For
/// tests and benchmarks: it grows by at most one per [`STATE_READ_EVERY`].
#[must_use]
pub fn state_reads(store: &Store) -> u64 {
    STATE.reads(store.path())
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
    let Some(handle) = crate::counters::install() else {
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
    gauge!("hookrelay_leader").set(if cron.is_leader() { 1.0 } else { 0.0 });
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    gauge!("hookrelay_database_bytes").set(size(store.path()) as f64);
    gauge!("hookrelay_wal_bytes").set(size(&crate::store::wal_path(store.path())) as f64);
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

fn read_state(c: &crate::sql::Connection, now: clock::Millis) -> crate::sql::Result<StoredState> {
    let states: Vec<JobState> = GAUGED_STATES
        .iter()
        .filter_map(|s| JobState::parse(s))
        .collect();
    let jobs = crate::jobs::queue::count_by_kind(c, &states)?
        .into_iter()
        .map(|(kind, state, n)| (kind, state.as_str(), n))
        .collect();
    let oldest = crate::jobs::oldest_due_wait(c, now)?.unwrap_or_default();
    Ok(StoredState {
        jobs,
        oldest_due_secs: oldest.as_secs_f64(),
    })
}
