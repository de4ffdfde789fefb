//! Liveness and readiness (SPEC §9).
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only when the database
//! takes a write through the writer (within [`PROBE_TIMEOUT`]), the writer thread and the job
//! workers are alive, and the oldest due job has not waited longer than `jobs.max_lag`; else 503
//! with every failing check named.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::clock;
use crate::cron::Cron;
use crate::jobs::{self, worker::WorkerHealth};
use crate::openapi::{Auth, Endpoint, Reply};
use crate::store::{Store, StoreError};

/// How long the readiness write may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` looks at.
pub struct Readiness {
    pub store: Store,
    pub workers: Arc<WorkerHealth>,
    pub max_lag: Duration,
    pub cron: Arc<Cron>,
}

/// `/healthz` and `/readyz`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/healthz", "health", "200 while the process runs", |r| {
            r.to(healthz)
        })
        .auth(Auth::Public)
        .reply(Reply::Json("`{status, name, version}`")).keys(&["status", "name", "version"]),
        Endpoint::new(
            Method::GET,
            "/readyz",
            "health",
            "200 when the database takes a write, the writer, job workers and cron run, and the queue is not lagging; else 503 `not_ready` naming each failing check",
            |r| r.to(readyz),
        )
        .auth(Auth::Public)
        .reply(Reply::Json("`{status, version, checks}`")).keys(&["status", "version", "checks"]),
    ]
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "name": "hookrelay", "version": crate::VERSION}))
}

impl Readiness {
    /// Runs every check; returns the checks and the reasons for not being ready.
    pub async fn check(&self) -> (Map<String, Value>, Vec<String>) {
        let mut checks = Map::new();
        let mut problems = Vec::new();

        let writer_alive = self.store.writer().is_alive();
        checks.insert(
            "writer".into(),
            json!(if writer_alive { "ok" } else { "stopped" }),
        );
        if !writer_alive {
            problems.push("the database writer thread has stopped".to_string());
        }

        let probe = self.store.writer().write_wait(|tx| {
            tx.prepare_cached(
                "INSERT INTO kv (key, value, updated_at) VALUES ('readyz', 'ok', ?1)
                 ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
            )?
            .execute([clock::now_ms()])?;
            Ok::<_, StoreError>(())
        });
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => {
                checks.insert("database".into(), json!("ok"));
            }
            Ok(Err(e)) => {
                checks.insert("database".into(), json!("unwritable"));
                problems.push(format!("the database cannot be written: {e}"));
            }
            Err(_) => {
                checks.insert("database".into(), json!("timeout"));
                problems.push(format!(
                    "a database write did not commit within {}s",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
        }

        let now = clock::now_ms();
        let workers_alive = self.workers.is_alive(now);
        checks.insert(
            "workers".into(),
            json!(match (workers_alive, self.workers.is_off()) {
                (true, true) => "off",
                (true, false) => "ok",
                (false, _) => "stalled",
            }),
        );
        if !workers_alive {
            problems.push("the job workers are not running".to_string());
        }

        match self
            .store
            .read(move |c| jobs::oldest_due_wait(c, now).map_err(StoreError::from))
            .await
        {
            Ok(wait) => {
                let lag = wait.unwrap_or_default();
                checks.insert(
                    "queue_lag_ms".into(),
                    json!(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX)),
                );
                if lag > self.max_lag {
                    problems.push(format!(
                        "the oldest due job has waited {}s, longer than jobs.max_lag ({}s)",
                        lag.as_secs(),
                        self.max_lag.as_secs()
                    ));
                }
            }
            Err(e) => problems.push(format!("the job queue cannot be read: {e}")),
        }
        let overdue = self.cron.overdue(now);
        checks.insert(
            "cron".into(),
            json!(if overdue.is_empty() { "ok" } else { "overdue" }),
        );
        for (name, since) in overdue {
            problems.push(format!(
                "cron `{name}` is overdue: the tick due at {} never came, nor the two after it",
                clock::to_rfc3339(since)
            ));
        }
        (checks, problems)
    }
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let (checks, problems) = readiness.check().await;
    if problems.is_empty() {
        HttpResponse::Ok()
            .json(json!({"status": "ready", "version": crate::VERSION, "checks": checks}))
    } else {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE).json(json!({
            "error": {"code": "not_ready", "message": problems.join("; ")},
            "checks": checks,
        }))
    }
}
