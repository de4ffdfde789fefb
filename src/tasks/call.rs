//! The `task.call` job: one signed HTTP call of a task per attempt, the attempt recorded in the
//! commit that reschedules or finishes the task, and the one error handler for tasks that fail.
//!
//! The call: the task's method and URL, its headers, the body as JSON (none for GET and
//! DELETE, nor for a task given none), `User-Agent: hookrelay/<version>`, `webhook-id` (the task id), `webhook-timestamp`,
//! `webhook-signature` (Standard Webhooks, with `tasks.signing_secret`), `X-Hookrelay-Task`,
//! `X-Hookrelay-Attempt`, and for a schedule's run `X-Hookrelay-Schedule` and
//! `X-Hookrelay-Scheduled-For`. The verdict is delivery's: a 2xx within the timeout succeeds; a
//! `Retry-After` on 429 or 503 replaces the next wait (at most an hour); 410 ends the task; a
//! 3xx is a failure; anything else is retried on the task's `retry_schedule`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::store::{self, KIND};
use super::{Policy, Route};
use crate::clock;
use crate::delivery::client::DeliveryClient;
use crate::delivery::headers;
use crate::delivery::secrets::Keyring;
use crate::delivery::send::{MAX_RETRY_AFTER, Verdict, custom_headers, judge, outcome_label};
use crate::delivery::sign;
use crate::delivery::store::Next;
use crate::events::{NewEvent, Publisher};
use crate::jobs::{DeadJob, JobKind, JobResult, JobRun, Outcome};
use crate::store::audit;
use crate::store::{Store, StoreError, WriteTx};

/// Makes task calls.
pub struct Caller {
    pub store: Store,
    /// For URLs under the SSRF rules.
    pub guarded: DeliveryClient,
    /// For URLs under `tasks.allowed_urls`.
    pub allowed: DeliveryClient,
    pub policy: Policy,
    pub keyring: Arc<Keyring>,
    /// The `tasks.signing_secret` key bytes.
    pub key: Vec<u8>,
    /// For `system.task.failed`.
    pub publisher: Publisher,
}

/// The job kind, backed by `caller`.
#[must_use]
pub fn kind(caller: Arc<Caller>) -> JobKind {
    let publisher = caller.publisher.clone();
    JobKind {
        name: KIND,
        handler: Arc::new(move |job| {
            let c = Arc::clone(&caller);
            Box::pin(async move { c.run(job).await })
        }),
        max_attempts: u32::try_from(crate::config::MAX_RETRY_SCHEDULE + 1).unwrap_or(11),
        operator_enqueueable: None,
        managed_by: Some("POST /v1beta1/admin/tasks/{id}/retry or …/cancel"),
        on_dead: Some(Arc::new(move |tx, dead| on_dead(tx, &publisher, dead))),
    }
}

/// The one error handler for tasks: a task's job died (out of attempts, 410, a URL that may not
/// be called, or crashes on its last attempt). The task is `failed`, and an audit record and a
/// `system.task.failed` event are written in the same commit; the log line is the worker's.
fn on_dead(tx: &WriteTx<'_>, publisher: &Publisher, dead: &DeadJob) -> crate::sql::Result<()> {
    let Some(id) = dead.payload.get("task_id").and_then(Value::as_str) else {
        return Ok(());
    };
    let Some(f) = store::fail_dead(tx, id, &dead.error)? else {
        return Ok(());
    };
    crate::counters::task_finished("failed");
    let url = crate::redact::url(&f.url);
    let detail = json!({
        "name": f.name,
        "schedule": f.schedule,
        "url": url,
        "attempts": f.attempts,
        "last_status": f.last_status,
        "error": f.last_error.as_deref().unwrap_or(&dead.error),
    });
    audit::record(
        tx,
        &audit::Entry {
            actor: "system",
            action: "task.failed",
            target_type: Some("task"),
            target_id: Some(id),
            detail: detail.clone(),
        },
    )?;
    let event = NewEvent::system(
        "system.task.failed",
        json!({
            "actor": {"id": "hookrelay", "type": "system", "name": "hookrelay"},
            "target": {"id": id, "type": "task", "name": f.name.as_deref().unwrap_or(&url)},
            "metadata": detail,
        }),
    );
    publisher.publish_in(tx, event).map(|_| ())
}

impl Caller {
    async fn run(&self, job: JobRun) -> JobResult {
        let Some(task_id) = job
            .payload
            .get("task_id")
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return JobResult::fail("the job payload has no task_id");
        };
        let started = {
            let id = task_id.clone();
            self.store
                .writer()
                .write(move |tx| store::start(tx, &id).map_err(StoreError::from))
                .await
        };
        let task = match started {
            Ok(Some(t)) => t,
            // Cancelled, finished or deleted meanwhile: nothing to call.
            Ok(None) => return JobResult::succeeded(),
            Err(e) => return JobResult::retry(format!("starting task {task_id}: {e}")),
        };
        let (url, route) = match self.policy.check(&task.url) {
            Ok(checked) => checked,
            Err(reason) => return refuse(task_id, format!("the URL may not be called: {reason}")),
        };
        let custom = match headers::open(&self.keyring, &task_id, &task.headers) {
            Ok(h) => h,
            Err(reason) => return refuse(task_id, format!("the task's headers: {reason}")),
        };
        let method =
            reqwest::Method::from_bytes(task.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        // GET and DELETE carry no body; a task without one sends none (and signs the empty
        // string).
        let body = task
            .body
            .clone()
            .filter(|_| !matches!(task.method.as_str(), "GET" | "DELETE"));
        let send_body = body.is_some();
        let body = body.unwrap_or_default();
        let number = task.attempts + 1;
        let sent_at = clock::now_ms();
        let mut h = custom_headers(&custom);
        let set = |h: &mut HeaderMap, name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        if send_body {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let ts = sent_at / 1000;
        set(&mut h, "webhook-id", task_id.clone());
        set(&mut h, "webhook-timestamp", ts.to_string());
        set(
            &mut h,
            "webhook-signature",
            sign::standard_signature(&self.key, &task_id, ts, &body),
        );
        set(&mut h, "x-hookrelay-task", task_id.clone());
        set(&mut h, "x-hookrelay-attempt", number.to_string());
        if let (Some(s), Some(at)) = (&task.schedule, task.scheduled_for) {
            set(&mut h, "x-hookrelay-schedule", s.clone());
            set(&mut h, "x-hookrelay-scheduled-for", clock::to_rfc3339(at));
        }
        let client = match route {
            Route::Allowed => &self.allowed,
            Route::Guarded => &self.guarded,
        };
        let result = client
            .send(method, &url, h, send_body.then_some(body), task.timeout)
            .await;

        let schedule = &task.retry_schedule;
        let retries_left = !job.is_last_attempt() && (job.attempt as usize) <= schedule.len();
        let scheduled_wait = schedule
            .get(job.attempt as usize - 1)
            .copied()
            .unwrap_or_default();
        let (attempt, verdict) = judge(number, sent_at, result);
        crate::counters::task_call(&outcome_label(&attempt));
        let shown = crate::redact::url(&task.url);
        let (result, next) = match verdict {
            Verdict::Delivered => {
                tracing::debug!(%task_id, url = %shown, status = ?attempt.status, "task call succeeded");
                (JobResult::succeeded(), Next::Succeeded)
            }
            Verdict::Gone(error) => {
                tracing::info!(%task_id, url = %shown, "the app answered 410 Gone; no more attempts");
                (JobResult::fail(error), Next::Failed)
            }
            Verdict::Retry { error, retry_after } if retries_left => {
                let wait: Duration =
                    retry_after.map_or(scheduled_wait, |ra| ra.min(MAX_RETRY_AFTER));
                let at = clock::add(clock::now_ms(), wait);
                tracing::info!(%task_id, url = %shown, %error, retry_in = %humantime::format_duration(wait), "task call failed; will retry");
                (
                    JobResult::from(Outcome::Retry {
                        error,
                        after: Some(wait),
                    }),
                    Next::RetryAt(at),
                )
            }
            Verdict::Retry { error, .. } => {
                tracing::warn!(%task_id, url = %shown, %error, "task failed: out of attempts");
                (JobResult::fail(error), Next::Failed)
            }
        };
        result.with_write(Box::new(move |tx| {
            store::record_attempt(tx, &task_id, &attempt, next)?;
            // Counted once it is recorded: a write whose claim was lost never runs, and a run
            // of the write that was rolled back drops its hook.
            if next == Next::Succeeded {
                tx.on_commit(|| crate::counters::task_finished("succeeded"));
            }
            Ok(())
        }))
    }
}

/// The task cannot be called at all: it fails now, through the error handler.
fn refuse(task_id: String, reason: String) -> JobResult {
    tracing::warn!(%task_id, %reason, "task cannot be called");
    let write_reason = reason.clone();
    JobResult::fail(reason).with_write(Box::new(move |tx| store::fail(tx, &task_id, &write_reason)))
}
