//! The tasks and schedules API: `POST /v1beta1/tasks` and `/v1beta1/schedules…` (admin or
//! publish token) for the app, `/v1beta1/admin/tasks…` and `/v1beta1/admin/schedules…` for
//! operators.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::schedules::shown_task;
use super::store::{self, Inserted, TaskFilter, TaskState};
use super::{MAX_DELAY, TaskSpec, Tasks};
use crate::auth::{Admin, AdminOrPublisher};
use crate::clock::{self, ticks::Ticks};
use crate::config::tasks::{
    check_header_name, check_header_value, check_method, check_timeout, check_url_shape,
    is_valid_schedule_name, parse_task_waits,
};
use crate::config::{CatchUp, Overlap, ScheduleDef};
use crate::error::ApiError;
use crate::events::MAX_IDEMPOTENCY_KEY;
use crate::http::{Auth, Endpoint, PAGE, Reply};
use crate::pagination::{self, PageQuery};
use crate::store::audit;

/// The longest task name.
pub const MAX_TASK_NAME: usize = 200;

/// Every route of tasks and schedules.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[
        (
            "state",
            "scheduled, running, retrying, succeeded, failed, cancelled or skipped",
        ),
        ("name", "only tasks of this name"),
        ("schedule", "only runs of this schedule"),
        PAGE[0],
        PAGE[1],
    ];
    vec![
        Endpoint::new(Method::POST, "/v1beta1/tasks", "tasks", "enqueue a task: an HTTP call hookrelay makes for the app at `run_at` (or after `delay`, else now), signed, retried until it answers 2xx; the same `idempotency_key` again answers 200 with the existing task", |r| r.to(create_task))
            .auth(Auth::Publish)
            .body(task_schema)
            .status(202)
            .also(200)
            .reply(Reply::Json("`{task: {id: \"tsk_…\", state, run_at, …}}`")).keys(&["task"]),
        Endpoint::new(Method::POST, "/v1beta1/schedules", "schedules", "create a schedule: one task per tick of `cron` in `timezone`", |r| r.to(create_schedule))
            .auth(Auth::Publish)
            .body(schedule_schema)
            .status(201)
            .reply(Reply::Json("`{schedule: {...}}`")).keys(&["schedule"]),
        Endpoint::new(Method::PUT, "/v1beta1/schedules/{name}", "schedules", "change a schedule made through the API: only the fields sent change; 409 `managed_by_config` for one from the config", |r| r.to(update_schedule))
            .auth(Auth::Publish)
            .body(schedule_update_schema)
            .reply(Reply::Json("`{schedule: {...}}`")).keys(&["schedule"]),
        Endpoint::new(Method::DELETE, "/v1beta1/schedules/{name}", "schedules", "delete a schedule made through the API (its runs stay readable)", |r| r.to(delete_schedule))
            .auth(Auth::Publish)
            .reply(Reply::Json("`{}`")),
        Endpoint::new(Method::GET, "/v1beta1/admin/tasks", "tasks", "tasks, newest first", |r| r.to(list_tasks))
            .query(LIST)
            .reply(Reply::Json("`{tasks: [...], next_cursor}`")).keys(&["tasks", "next_cursor"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/tasks/{id}", "tasks", "one task with every attempt (status, latency, response headers, first 4 KiB of the body, or the error)", |r| r.to(task_detail))
            .reply(Reply::Json("`{task: {..., attempts: [...]}}`")).keys(&["task"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/tasks/{id}/retry", "tasks", "call a finished task again with a fresh set of attempts; 409 `already_pending`", |r| r.to(retry_task))
            .status(202)
            .reply(Reply::Json("`{task: {...}}`")).keys(&["task"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/tasks/{id}/cancel", "tasks", "cancel a task not finished yet; 409 `not_cancellable`", |r| r.to(cancel_task))
            .reply(Reply::Json("`{task: {...}}`")).keys(&["task"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/schedules", "schedules", "every schedule with its next 5 tick times, last run and its outcome", |r| r.to(list_schedules))
            .reply(Reply::Json("`{schedules: [...]}`")).keys(&["schedules"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/schedules/{name}", "schedules", "one schedule with its runs, newest first", |r| r.to(schedule_detail))
            .reply(Reply::Json("`{schedule: {..., runs: [...]}}`")).keys(&["schedule"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/schedules/{name}/pause", "schedules", "stop ticking until resumed", |r| r.to(pause_schedule))
            .reply(Reply::Json("`{schedule: {...}}`")).keys(&["schedule"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/schedules/{name}/resume", "schedules", "tick again from the next tick on (ticks missed while paused do not run)", |r| r.to(resume_schedule))
            .reply(Reply::Json("`{schedule: {...}}`")).keys(&["schedule"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/schedules/{name}/run", "schedules", "run the schedule once now, whatever its state", |r| r.to(run_schedule))
            .status(202)
            .reply(Reply::Json("`{task: {...}}`")).keys(&["task"]),
    ]
}

fn task_fields() -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("url".into(), json!({"type": "string", "format": "uri", "examples": ["https://app.example.com/tasks/index-document"]}));
    m.insert(
        "method".into(),
        json!({"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]}),
    );
    m.insert(
        "headers".into(),
        json!({"type": "object", "additionalProperties": {"type": "string"}}),
    );
    m.insert("body".into(), json!({"type": ["object", "array", "string", "number", "boolean", "null"], "description": "any JSON, sent as the request body (not for GET or DELETE)"}));
    m.insert(
        "timeout".into(),
        json!({"type": ["string", "null"], "examples": ["30s"], "description": "per call, at most 15m; null: tasks.timeout"}),
    );
    m.insert("retry_schedule".into(), json!({"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 10, "examples": [["10s", "1m", "10m"]], "description": "null: tasks.retry_schedule"}));
    m
}

fn task_schema() -> Value {
    let mut p = task_fields();
    p.insert(
        "run_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    p.insert(
        "delay".into(),
        json!({"type": "string", "examples": ["30s"]}),
    );
    p.insert(
        "idempotency_key".into(),
        json!({"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}),
    );
    p.insert(
        "name".into(),
        json!({"type": "string", "minLength": 1, "maxLength": MAX_TASK_NAME}),
    );
    json!({"type": "object", "required": ["url"], "additionalProperties": false, "properties": p})
}

fn schedule_props() -> serde_json::Map<String, Value> {
    let mut p = task_fields();
    p.insert("cron".into(), json!({"type": "string", "examples": ["0 * * * *"], "description": "5 fields, or 6 with seconds first"}));
    p.insert("timezone".into(), json!({"type": "string", "examples": ["Europe/Berlin"], "description": "IANA name; default UTC"}));
    p.insert(
        "overlap".into(),
        json!({"type": "string", "enum": ["skip", "allow"]}),
    );
    p.insert(
        "catch_up".into(),
        json!({"type": "string", "enum": ["latest", "none"]}),
    );
    p.insert("enabled".into(), json!({"type": "boolean"}));
    p
}

fn schedule_schema() -> Value {
    let mut p = schedule_props();
    p.insert("name".into(), json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$", "examples": ["calendar-sync"]}));
    json!({"type": "object", "required": ["name", "cron", "url"], "additionalProperties": false, "properties": p})
}

fn schedule_update_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": schedule_props()})
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_payload", message)
}

fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(format!(
            "{field}: `{text}` is not a duration ({e}); write e.g. \"30s\", \"5m\""
        ))
    })
}

/// The parts tasks and schedules share, checked.
struct Call {
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    timeout: Option<Duration>,
    retry_schedule: Option<Vec<Duration>>,
}

#[allow(clippy::too_many_arguments)] // the fields of a call, each checked once
fn check_call(
    tasks: &Tasks,
    url: String,
    method: Option<String>,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    timeout: Option<String>,
    retry_schedule: Option<Vec<String>>,
) -> Result<Call, ApiError> {
    check_url_shape(&url)
        .map_err(|m| ApiError::bad_request("url_not_allowed", format!("url {m}")))?;
    tasks
        .maker
        .policy
        .check(&url)
        .map_err(|m| ApiError::bad_request("url_not_allowed", m))?;
    let method = check_method(method.as_deref().unwrap_or("POST"))
        .map_err(|m| invalid(format!("method: {m}")))?;
    if body.is_some() && matches!(method.as_str(), "GET" | "DELETE") {
        return Err(invalid(format!(
            "a {method} task carries no body; drop `body` or use POST"
        )));
    }
    for (name, value) in &headers {
        check_header_name(name).map_err(|m| invalid(format!("headers: {m}")))?;
        check_header_value(name, value).map_err(|m| invalid(format!("headers: {m}")))?;
    }
    let timeout = timeout
        .map(|t| {
            duration("timeout", &t)
                .and_then(|d| check_timeout(d).map_err(|m| invalid(format!("timeout {m}"))))
        })
        .transpose()?;
    let retry_schedule = retry_schedule
        .map(|r| parse_task_waits(&r).map_err(|m| invalid(format!("retry_schedule: {m}"))))
        .transpose()?;
    Ok(Call {
        url,
        method,
        headers,
        body,
        timeout,
        retry_schedule,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskBody {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    run_at: Option<String>,
    delay: Option<String>,
    timeout: Option<String>,
    retry_schedule: Option<Vec<String>>,
    idempotency_key: Option<String>,
    name: Option<String>,
}

async fn create_task(
    AdminOrPublisher(caller): AdminOrPublisher,
    tasks: web::Data<Tasks>,
    body: web::Json<TaskBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let call = check_call(
        &tasks,
        b.url,
        b.method,
        b.headers,
        b.body,
        b.timeout,
        b.retry_schedule,
    )?;
    let now = clock::now_ms();
    let run_at = match (b.run_at, b.delay) {
        (Some(_), Some(_)) => return Err(invalid("give `run_at` or `delay`, not both")),
        (Some(t), None) => clock::parse_rfc3339(&t).map_err(|m| invalid(format!("run_at: {m}")))?,
        (None, Some(d)) => clock::add(now, duration("delay", &d)?),
        (None, None) => now,
    };
    if run_at > clock::add(now, MAX_DELAY) {
        return Err(invalid("run_at may be at most 366 days ahead"));
    }
    if let Some(k) = &b.idempotency_key
        && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(invalid(format!(
            "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    if let Some(n) = &b.name
        && (n.is_empty() || n.chars().count() > MAX_TASK_NAME || n.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "name must be 1 to {MAX_TASK_NAME} characters, without control characters"
        )));
    }
    let row = tasks
        .maker
        .row(TaskSpec {
            url: call.url,
            method: call.method,
            headers: call.headers,
            body: call.body,
            timeout: call.timeout,
            retry_schedule: call.retry_schedule,
            run_at,
            name: b.name,
            schedule: None,
            scheduled_for: None,
            key_scope: b.idempotency_key.as_ref().map(|_| caller.scope.clone()),
            idempotency_key: b.idempotency_key,
            created_by: caller.identity,
        })
        .map_err(ApiError::internal)?;
    let handoff = tasks.maker.handoff().cloned();
    let (created, task) = tasks
        .store
        .writer()
        .write(move |tx| {
            let (created, id) =
                match store::insert(tx, &row, TaskState::Scheduled, handoff.as_ref())? {
                    Inserted::Created => (true, row.id.clone()),
                    Inserted::Existing(id) => (false, id),
                };
            Ok::<_, ApiError>((created, store::get(tx, &id)?))
        })
        .await?;
    let body = json!({"task": task.map(shown_task)});
    Ok(if created {
        HttpResponse::Accepted().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[derive(Debug, Deserialize)]
struct TaskListQuery {
    state: Option<String>,
    name: Option<String>,
    schedule: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_tasks(
    _admin: Admin,
    tasks: web::Data<Tasks>,
    q: web::Query<TaskListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let nonempty = |o: Option<String>| o.filter(|s| !s.is_empty());
    let filter = TaskFilter {
        state: pagination::one_of("state", q.state, &TaskState::names())?,
        name: nonempty(q.name),
        schedule: nonempty(q.schedule),
        before: q.page.cursor(),
    };
    let items = tasks
        .store
        .read(move |c| store::list(c, &filter, limit + 1).map_err(ApiError::from))
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    let items: Vec<Value> = items.into_iter().map(shown_task).collect();
    Ok(HttpResponse::Ok().json(json!({"tasks": items, "next_cursor": next})))
}

fn detail_json(c: &crate::sql::Connection, id: &str) -> Result<Value, ApiError> {
    let mut v = store::get(c, id)?.ok_or_else(|| ApiError::not_found(format!("task {id}")))?;
    v["attempts"] = json!(store::attempts(c, id)?);
    Ok(shown_task(v))
}

async fn task_detail(
    _admin: Admin,
    tasks: web::Data<Tasks>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = tasks.store.read(move |c| detail_json(c, &id)).await?;
    Ok(HttpResponse::Ok().json(json!({"task": v})))
}

/// What an operator does to a task.
#[derive(Clone, Copy)]
enum Change {
    Retry,
    Cancel,
}

async fn retry_task(
    Admin(caller): Admin,
    tasks: web::Data<Tasks>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let v = change(&caller.identity, &tasks, id.into_inner(), Change::Retry).await?;
    Ok(HttpResponse::Accepted().json(json!({"task": v})))
}

async fn cancel_task(
    Admin(caller): Admin,
    tasks: web::Data<Tasks>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let v = change(&caller.identity, &tasks, id.into_inner(), Change::Cancel).await?;
    Ok(HttpResponse::Ok().json(json!({"task": v})))
}

/// Retries or cancels task `id`, audited as `actor`'s, in one write; the task as it is then.
async fn change(actor: &str, tasks: &Tasks, id: String, change: Change) -> Result<Value, ApiError> {
    let handoff = tasks.maker.handoff().cloned();
    let actor = actor.to_string();
    tasks
        .store
        .writer()
        .write(move |tx| {
            let (done, action, refusal) = match change {
                Change::Retry => (
                    store::retry(tx, &id, handoff.as_ref())?,
                    "task.retry",
                    ApiError::conflict(
                        "already_pending",
                        format!("task {id} is not finished; cancel it first to stop it"),
                    ),
                ),
                Change::Cancel => (
                    store::cancel(tx, &id)?,
                    "task.cancel",
                    ApiError::conflict("not_cancellable", format!("task {id} is finished already")),
                ),
            };
            match done {
                None => return Err(ApiError::not_found(format!("task {id}"))),
                Some(false) => return Err(refusal),
                Some(true) => {}
            }
            audit::record(
                tx,
                &audit::Entry {
                    actor: &actor,
                    action,
                    target_type: Some("task"),
                    target_id: Some(&id),
                    detail: json!({}),
                },
            )?;
            detail_json(tx, &id)
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    name: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    url: Option<String>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    /// Absent: keep; `null`: none (the same for `timeout` and `retry_schedule`: the default).
    #[serde(default, deserialize_with = "present")]
    body: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    timeout: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    retry_schedule: Option<Option<Vec<String>>>,
    overlap: Option<String>,
    catch_up: Option<String>,
    enabled: Option<bool>,
}

/// A field that was sent, as `Some` — `null` included, as `Some(None)`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The definition `b` gives, over `base` (the schedule's current one, for an update): a field
/// not sent keeps its value, `null` clears `body`, `timeout` and `retry_schedule`. A header
/// sent as `"[redacted]"` keeps its current value.
fn definition(
    tasks: &Tasks,
    b: ScheduleBody,
    base: Option<ScheduleDef>,
) -> Result<ScheduleDef, ApiError> {
    let human = |d: Duration| humantime::format_duration(d).to_string();
    let cron = b
        .cron
        .or_else(|| base.as_ref().map(|d| d.cron.clone()))
        .ok_or_else(|| invalid("cron is missing; write e.g. \"0 * * * *\""))?;
    let timezone = b
        .timezone
        .or_else(|| base.as_ref().map(|d| d.timezone.clone()))
        .unwrap_or_else(|| "UTC".into());
    let ticks = Ticks::parse(&cron, &timezone).map_err(invalid)?;
    let url = b
        .url
        .or_else(|| base.as_ref().map(|d| d.url.clone()))
        .ok_or_else(|| invalid("url is missing: the app's URL this schedule calls"))?;
    let mut headers = b
        .headers
        .or_else(|| base.as_ref().map(|d| d.headers.clone()))
        .unwrap_or_default();
    for (name, value) in &mut headers {
        if value == crate::redact::REDACTED {
            let kept = base
                .as_ref()
                .and_then(|d| d.headers.get(name))
                .ok_or_else(|| {
                    invalid(format!(
                        "headers: {name} is \"[redacted]\" but has no value to keep"
                    ))
                })?;
            value.clone_from(kept);
        }
    }
    let body = b
        .body
        .unwrap_or_else(|| base.as_ref().and_then(|d| d.body.clone()));
    let call = check_call(
        tasks,
        url,
        b.method.or_else(|| base.as_ref().map(|d| d.method.clone())),
        headers,
        body,
        b.timeout
            .unwrap_or_else(|| base.as_ref().and_then(|d| d.timeout.map(human))),
        b.retry_schedule.unwrap_or_else(|| {
            base.as_ref().and_then(|d| {
                d.retry_schedule
                    .as_ref()
                    .map(|r| r.iter().copied().map(human).collect())
            })
        }),
    )?;
    let overlap = match b.overlap {
        Some(o) => Overlap::parse(&o)
            .ok_or_else(|| invalid(format!("overlap: `{o}` is not `skip` or `allow`")))?,
        None => base.as_ref().map_or(Overlap::Skip, |d| d.overlap),
    };
    let catch_up = match b.catch_up {
        Some(c) => CatchUp::parse(&c)
            .ok_or_else(|| invalid(format!("catch_up: `{c}` is not `latest` or `none`")))?,
        None => base.as_ref().map_or(CatchUp::Latest, |d| d.catch_up),
    };
    Ok(ScheduleDef {
        cron,
        ticks,
        timezone,
        url: call.url,
        method: call.method,
        headers: call.headers,
        body: call.body,
        timeout: call.timeout,
        retry_schedule: call.retry_schedule,
        overlap,
        catch_up,
        enabled: b.enabled.or(base.map(|d| d.enabled)).unwrap_or(true),
    })
}

async fn create_schedule(
    AdminOrPublisher(caller): AdminOrPublisher,
    tasks: web::Data<Tasks>,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, ApiError> {
    let mut b = body.into_inner();
    let name = b.name.take().ok_or_else(|| invalid("name is missing"))?;
    if !is_valid_schedule_name(&name) {
        return Err(invalid(
            "name: lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 64 long",
        ));
    }
    let def = definition(&tasks, b, None)?;
    let v = tasks
        .schedules
        .put(&name, def, true, &caller.identity)
        .await?;
    Ok(HttpResponse::Created().json(json!({"schedule": v})))
}

async fn update_schedule(
    AdminOrPublisher(caller): AdminOrPublisher,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let b = body.into_inner();
    if b.name.as_ref().is_some_and(|n| n != &name) {
        return Err(invalid(
            "a schedule cannot be renamed; create a new one and delete this one",
        ));
    }
    let Some((base, _)) = tasks.schedules.definition(&name) else {
        return Err(ApiError::not_found(format!("schedule {name}")));
    };
    let def = definition(&tasks, b, Some(base))?;
    let v = tasks
        .schedules
        .put(&name, def, false, &caller.identity)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"schedule": v})))
}

async fn delete_schedule(
    AdminOrPublisher(caller): AdminOrPublisher,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    tasks
        .schedules
        .delete(&name.into_inner(), &caller.identity)
        .await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn list_schedules(_admin: Admin, tasks: web::Data<Tasks>) -> Result<HttpResponse, ApiError> {
    let items = tasks.schedules.list().await?;
    Ok(HttpResponse::Ok().json(json!({"schedules": items})))
}

async fn schedule_detail(
    _admin: Admin,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let v = tasks
        .schedules
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("schedule {name}")))?;
    Ok(HttpResponse::Ok().json(json!({"schedule": v})))
}

async fn pause_schedule(
    Admin(caller): Admin,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&caller.identity, &tasks, &name.into_inner(), true).await
}

async fn resume_schedule(
    Admin(caller): Admin,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&caller.identity, &tasks, &name.into_inner(), false).await
}

async fn set_paused(
    actor: &str,
    tasks: &Tasks,
    name: &str,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    let v = tasks
        .schedules
        .set_paused(name, paused, actor)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("schedule {name}")))?;
    Ok(HttpResponse::Ok().json(json!({"schedule": v})))
}

async fn run_schedule(
    Admin(caller): Admin,
    tasks: web::Data<Tasks>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let id = tasks
        .schedules
        .run_now(&name, &caller.identity)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("schedule {name}")))?;
    let v = tasks.store.read(move |c| detail_json(c, &id)).await?;
    Ok(HttpResponse::Accepted().json(json!({"task": v})))
}
