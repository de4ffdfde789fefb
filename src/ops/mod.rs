//! Operations: the audit log and stats APIs, online backups and database maintenance. (Cron
//! lives in `crate::cron`.)

pub mod audit;
pub mod backup;
pub mod copy_db;
pub mod maintenance;
pub mod retention;
pub mod stats;

use std::sync::Arc;

use actix_web::http::Method;

use crate::config::Config;
use crate::http::{Endpoint, PAGE, Reply};
use crate::jobs::periodic::{Periodic, TaskReport, TaskSpec};
use crate::store::Store;

/// `db_maintenance`.
pub const MAINTENANCE: TaskSpec = TaskSpec {
    name: "db_maintenance",
    kind: "cron.db_maintenance",
    default_schedule: "0 0 3 * * *",
    describe: "PRAGMA optimize and a WAL checkpoint",
};

/// `backup`.
pub const BACKUP: TaskSpec = TaskSpec {
    name: "backup",
    kind: "cron.backup",
    default_schedule: "off",
    describe: "snapshot the database into backup.dir, keeping backup.keep files",
};

/// Registers the operations' periodic tasks: retention, database maintenance, backups.
pub fn register(periodic: &mut Periodic, store: &Store, config: &Config) {
    let (s, retention) = (store.clone(), config.retention.clone());
    // Dedupe keys are kept as long as the longest idempotency window of any source, at least.
    let longest_window = config
        .sources
        .values()
        .map(|s| s.idempotency_window)
        .max()
        .unwrap_or_default();
    periodic.register(
        retention::SPEC,
        Arc::new(move || {
            let (s, r) = (s.clone(), retention.clone());
            Box::pin(async move {
                retention::run(&s, &r, longest_window)
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
    );
    let s = store.clone();
    periodic.register(
        MAINTENANCE,
        Arc::new(move || {
            let s = s.clone();
            Box::pin(async move {
                if s.dialect() == crate::sql::Dialect::Postgres {
                    return Ok(sqlite_only("PostgreSQL's autovacuum does this"));
                }
                let report = maintenance::run(&s).await.map_err(|e| e.to_string())?;
                Ok(TaskReport {
                    rows_affected: 0,
                    detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
                })
            })
        }),
    );
    let postgres = store.dialect() == crate::sql::Dialect::Postgres;
    let (db, dir, keep) = (
        store.path().to_path_buf(),
        config.backup.dir.clone(),
        config.backup.keep,
    );
    periodic.register(
        BACKUP,
        Arc::new(move || {
            let (db, dir) = (db.clone(), dir.clone());
            Box::pin(async move {
                if postgres {
                    return Ok(sqlite_only("back PostgreSQL up with pg_dump"));
                }
                // A snapshot into `backup.dir` (relative to the working directory, like
                // `database.path`), keeping the newest `backup.keep`; the copy runs on a
                // blocking thread with its own read-only connection, so writes go on meanwhile.
                let report =
                    tokio::task::spawn_blocking(move || backup::scheduled(&db, &dir, keep))
                        .await
                        .map_err(|e| format!("the backup task failed: {e}"))?
                        .map_err(|e| crate::error::chain(&e))?;
                tracing::info!(path = %report.path.display(), bytes = report.bytes, removed = report.removed.len(), "backup written");
                Ok(TaskReport {
                    rows_affected: report.rows_affected(),
                    detail: serde_json::to_value(&report).map_err(|e| e.to_string())?,
                })
            })
        }),
    );
}

/// What a SQLite-only task reports on PostgreSQL: it ran, did nothing, and says why.
fn sqlite_only(instead: &str) -> TaskReport {
    TaskReport {
        rows_affected: 0,
        detail: serde_json::json!({"skipped": format!("this task is for SQLite; {instead}")}),
    }
}

/// The operations routes under `/v1beta1/admin`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const AUDIT: &[(&str, &str)] = &[
        ("action", "exact action, or a prefix ending in `.*`"),
        ("target_id", "only records about this id"),
        ("since", "RFC 3339: at or after"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/audit-logs", "operations", "audit records newest first: admin actions, failed deliveries, dead jobs, auto-disables", |r| r.to(audit::list_route))
            .query(AUDIT)
            .reply(Reply::Json("`{audit_logs: [...], next_cursor}`")).keys(&["audit_logs", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/stats", "operations", "counts by state, queue depth, oldest queued age, deliveries and failures in the last hour", |r| r.to(stats::route))
            .reply(Reply::Json("`{jobs, deliveries, inbound, webhooks, cron}`")).keys(&["jobs", "deliveries", "inbound", "webhooks", "cron"]),
    ]
}
