//! `GET /v1beta1/admin/stats`: counts by state, queue depth, oldest queued age,
//! deliveries and failures in the last hour, tasks by state — what the admin page's overview
//! shows.

use std::time::Duration;

use crate::sql::Connection;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::cron::Cron;
use crate::error::ApiError;
use crate::jobs::{self, JobState};
use crate::store::Store;
use crate::{delivery, inbound};

/// The window of the "last hour" figures.
pub const WINDOW: Duration = Duration::from_secs(3600);

pub async fn route(
    _admin: Admin,
    store: web::Data<Store>,
    cron: web::Data<Cron>,
) -> Result<HttpResponse, ApiError> {
    let now = clock::now_ms();
    let mut stats = store
        .read(move |c| {
            c.read_consistently(|c| read(c, now))
                .map_err(ApiError::from)
        })
        .await?;
    let overdue: Vec<Value> = cron
        .overdue(now)
        .into_iter()
        .map(|(name, since)| json!({"name": name, "missed_tick_at": clock::to_rfc3339(since)}))
        .collect();
    stats["cron"] = json!({"overdue": overdue});
    Ok(HttpResponse::Ok().json(stats))
}

/// `{state: n}` with every state in `states` present (zero when absent).
fn by_state(counts: Vec<(String, u64)>, states: &[&str]) -> Map<String, Value> {
    let mut out: Map<String, Value> = states
        .iter()
        .map(|s| ((*s).to_string(), json!(0)))
        .collect();
    for (state, n) in counts {
        out.insert(state, json!(n));
    }
    out
}

fn read(c: &Connection, now: Millis) -> crate::sql::Result<Value> {
    let hour_ago = now - i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    let jobs = by_state(
        jobs::queue::count_by_state(c)?
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect(),
        &JobState::ALL.map(JobState::as_str),
    );
    let (depth, due) = jobs::queue::depth(c, now)?;
    let oldest = jobs::oldest_due_wait(c, now)?;
    let delivery_states = delivery::store::DeliveryState::names();
    let (deliveries, recent, failed_last_hour) = delivery::store::delivery_counts(c, hour_ago)?;
    let deliveries = by_state(deliveries, &delivery_states);
    let recent = by_state(recent, &delivery_states);
    let inbound = by_state(
        inbound::store::counts(c)?,
        &["pending", "processed", "failed"],
    );
    let (webhooks, failing) = delivery::store::webhook_counts(c)?;
    let webhooks = by_state(webhooks, &["enabled", "disabled"]);
    let dead = jobs.get("dead").cloned().unwrap_or(json!(0));
    let tasks = by_state(
        crate::tasks::store::count_by_state(c)?,
        &crate::tasks::store::TaskState::names(),
    );
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
        "tasks": {"by_state": tasks},
    }))
}
