//! `GET /v1beta1/admin/stats`: counts by state, queue depth, oldest queued age,
//! deliveries and failures in the last hour — what the admin page's overview shows.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::cron::Cron;
use crate::error::ApiError;
use crate::ids;
use crate::jobs;
use crate::store::Store;

/// The window of the "last hour" figures.
pub const WINDOW: Duration = Duration::from_secs(3600);

pub async fn route(
    _admin: Admin,
    store: web::Data<Store>,
    cron: web::Data<Cron>,
) -> Result<HttpResponse, ApiError> {
    let now = clock::now_ms();
    let mut stats = store
        .read(move |c| read(c, now).map_err(ApiError::from))
        .await?;
    let overdue: Vec<Value> = cron
        .overdue(now)
        .into_iter()
        .map(|(name, since)| json!({"name": name, "missed_tick_at": clock::to_rfc3339(since)}))
        .collect();
    stats["cron"] = json!({"overdue": overdue});
    Ok(HttpResponse::Ok().json(stats))
}

fn by_state(c: &Connection, sql: &str, states: &[&str]) -> rusqlite::Result<Map<String, Value>> {
    let mut out: Map<String, Value> = states
        .iter()
        .map(|s| ((*s).to_string(), json!(0)))
        .collect();
    let mut stmt = c.prepare_cached(sql)?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (state, n) = row?;
        out.insert(state, json!(n));
    }
    Ok(out)
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<i64> {
    c.prepare_cached(sql)?.query_row(p, |r| r.get(0))
}

fn read(c: &Connection, now: Millis) -> rusqlite::Result<Value> {
    let hour_ago = now - i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    let jobs = by_state(
        c,
        "SELECT state, COUNT(*) FROM jobs GROUP BY state",
        &[
            "queued",
            "running",
            "retrying",
            "succeeded",
            "dead",
            "cancelled",
        ],
    )?;
    let depth = count(
        c,
        "SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying')",
        [],
    )?;
    let due = count(
        c,
        "SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying') AND run_at <= ?1",
        [now],
    )?;
    let oldest = jobs::oldest_due_wait(c, now)?;
    let deliveries = by_state(
        c,
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state",
        &["pending", "succeeded", "failed", "cancelled"],
    )?;
    // Deliveries created in the last hour (ids sort by creation time), by state now.
    let recent = {
        let mut stmt = c.prepare_cached(
            "SELECT state, COUNT(*) FROM deliveries WHERE id >= ?1 GROUP BY state",
        )?;
        let mut m: Map<String, Value> = ["pending", "succeeded", "failed", "cancelled"]
            .iter()
            .map(|s| ((*s).to_string(), json!(0)))
            .collect();
        for row in stmt.query_map([ids::time_bound(ids::DELIVERY, hour_ago)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (state, n) = row?;
            m.insert(state, json!(n));
        }
        m
    };
    let failed_last_hour = count(
        c,
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_state WHERE state = 'failed' AND finished_at >= ?1",
        params![hour_ago],
    )?;
    let inbound = by_state(
        c,
        "SELECT state, COUNT(*) FROM inbound_events GROUP BY state",
        &["pending", "processed", "failed"],
    )?;
    let webhooks = by_state(
        c,
        "SELECT state, COUNT(*) FROM webhooks GROUP BY state",
        &["enabled", "disabled"],
    )?;
    let failing = count(
        c,
        "SELECT COUNT(*) FROM webhooks WHERE state = 'enabled' AND failing_since IS NOT NULL",
        [],
    )?;
    let dead = jobs.get("dead").cloned().unwrap_or(json!(0));
    Ok(json!({
        "generated_at": clock::to_rfc3339(now),
        "jobs": {
            "by_state": jobs,
            "queue_depth": depth,
            "due": due,
            "oldest_queued_age_seconds": oldest.map_or(0.0, |d| d.as_secs_f64()),
            "dead": dead,
        },
        "deliveries": {
            "by_state": deliveries,
            "last_hour": {
                "created": recent.values().filter_map(Value::as_i64).sum::<i64>(),
                "by_state": recent,
                "failed": failed_last_hour,
            },
        },
        "inbound": {"by_state": inbound},
        "webhooks": {"by_state": webhooks, "failing": failing},
    }))
}
