//! Schedules: their definitions in memory (from `[schedules.<name>]` and from the API, both kept
//! in the `schedules` table with their pause state and last tick) and the ticker.
//!
//! One run per tick by construction: a tick is one write transaction that moves the schedule's
//! `last_tick` forward (only forward) and inserts the tick's task under its unique key
//! `schedule:<name>:<tick time>`. A tick that fires twice finds the schedule already moved (or
//! the key taken) and writes nothing.
//!
//! - The ticker wakes at the next tick of any schedule (or when one changes), and takes, per
//!   schedule, only the *latest* tick due since the last one taken: a stall, an outage or a
//!   paused stretch never turns into a burst.
//! - A tick due before this process started was missed while hookrelay was down: with
//!   `catch_up = "latest"` it runs once; with `"none"` it is passed over (taken, not run).
//! - `overlap = "skip"`: a tick that comes while the schedule's previous run is still
//!   `scheduled`, `running` or `retrying` is recorded as a `skipped` task.
//! - Resuming a paused schedule moves its last tick to now: ticks missed while paused never run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{self, Inserted, SCHEDULE_SCOPE, StoredSchedule, TaskState};
use super::{Maker, TaskSpec};
use crate::clock::{self, Millis};
use crate::config::{CatchUp, Overlap, ScheduleDef};
use crate::delivery::headers;
use crate::error::ApiError;
use crate::store::leader::Leader;
use crate::store::{Store, StoreError};

/// Next tick times shown per schedule.
pub const NEXT_SHOWN: usize = 5;
/// Runs shown with one schedule (more: `GET /v1beta1/admin/tasks?schedule=<name>`).
pub const RUNS_SHOWN: usize = 50;
/// The ticker looks again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// A ticker that has not looked for this long has stopped (`/readyz` says so).
pub const STALLED_AFTER: Duration = Duration::from_secs(90);

/// Where a schedule is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[schedules.<name>]`; the API may pause, resume and run it, not change it.
    Config,
    /// `POST /v1beta1/schedules`.
    Api,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its tick came.
    Schedule,
    /// At start, for the latest tick missed while hookrelay was down.
    CatchUp,
    /// `POST /v1beta1/admin/schedules/{name}/run`.
    Manual,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticked {
    /// The tick's task was created.
    Run { task_id: String },
    /// The previous run is not finished: the tick is recorded as a `skipped` task.
    Skipped { task_id: String, running: String },
    /// A tick missed while down, with `catch_up = "none"`: taken, not run.
    Passed,
    /// This tick (or a later one) was taken already: nothing was written.
    Duplicate,
}

/// A schedule in force.
#[derive(Debug, Clone)]
struct Live {
    def: ScheduleDef,
    origin: Origin,
    paused: bool,
    last_tick: Option<Millis>,
    created_at: Millis,
    updated_at: Millis,
}

/// The schedules and their ticker.
pub struct Schedules {
    store: Store,
    maker: Arc<Maker>,
    config: BTreeMap<String, ScheduleDef>,
    live: Mutex<BTreeMap<String, Live>>,
    changed: Notify,
    started_at: Mutex<Millis>,
    /// When the ticker last looked at the schedules (0: not running).
    beat: std::sync::atomic::AtomicI64,
}

fn at(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn aad(name: &str) -> String {
    store::HeaderOwner::Schedule(name.to_string()).aad()
}

impl Schedules {
    /// The schedules of `config` (read from the database by [`Schedules::start`]).
    #[must_use]
    pub fn new(store: Store, maker: Arc<Maker>, config: BTreeMap<String, ScheduleDef>) -> Self {
        Self {
            store,
            maker,
            config,
            live: Mutex::default(),
            changed: Notify::new(),
            started_at: Mutex::new(clock::now_ms()),
            beat: std::sync::atomic::AtomicI64::new(0),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the configured schedules into the table (a schedule removed from the config is
    /// deleted; its runs stay), then loads every schedule.
    ///
    /// # Errors
    /// A storage error.
    pub async fn start(&self) -> Result<(), StoreError> {
        let now = clock::now_ms();
        *self
            .started_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now;
        self.beat.store(now, std::sync::atomic::Ordering::Relaxed);
        let config = self.config.clone();
        self.store
            .writer()
            .write_wait(move |tx| {
                let stored = store::schedules(tx)?;
                for (name, def) in &config {
                    let old = stored.get(name);
                    if old.is_some_and(|o| o.origin == "api") {
                        tracing::warn!(schedule = %name, "[schedules.{name}] replaces the schedule of that name made through the API");
                    }
                    let reset = old.is_some_and(|o| {
                        (!o.enabled && def.enabled) || o.cron != def.cron || o.timezone != def.timezone
                    });
                    store::put_schedule(
                        tx,
                        &stored_row(name, Origin::Config, def, Map::new(), old, reset, now),
                    )?;
                }
                for (name, s) in &stored {
                    if s.origin == "config" && !config.contains_key(name) {
                        tracing::info!(schedule = %name, "schedule removed from the config; its runs stay readable");
                        store::delete_schedule(tx, name)?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        self.reload().await
    }

    /// Reads every schedule from the table into memory.
    ///
    /// # Errors
    /// A storage error.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self
            .store
            .read(|c| store::schedules(c).map_err(StoreError::from))
            .await?;
        let mut live = BTreeMap::new();
        for (name, s) in stored {
            match self.to_live(&s) {
                Ok(l) => {
                    live.insert(name, l);
                }
                Err(e) => {
                    tracing::error!(schedule = %name, error = %e, "schedule cannot be used; it does not tick");
                }
            }
        }
        *self.live() = live;
        self.changed.notify_one();
        Ok(())
    }

    fn to_live(&self, s: &StoredSchedule) -> Result<Live, String> {
        let origin = if s.origin == "config" {
            Origin::Config
        } else {
            Origin::Api
        };
        let def = match (origin, self.config.get(&s.name)) {
            (Origin::Config, Some(def)) => def.clone(),
            _ => {
                let ticks = crate::clock::ticks::Ticks::parse(&s.cron, &s.timezone)?;
                let headers = headers::open(self.maker.keyring(), &aad(&s.name), &s.headers)?
                    .into_iter()
                    .collect();
                ScheduleDef {
                    cron: s.cron.clone(),
                    ticks,
                    timezone: s.timezone.clone(),
                    url: s.url.clone(),
                    method: s.method.clone(),
                    headers,
                    body: s
                        .body
                        .as_deref()
                        .and_then(|b| serde_json::from_slice(b).ok()),
                    timeout: s.timeout,
                    retry_schedule: s.retry_schedule.clone(),
                    overlap: Overlap::parse(&s.overlap).unwrap_or(Overlap::Skip),
                    catch_up: CatchUp::parse(&s.catch_up).unwrap_or(CatchUp::Latest),
                    enabled: s.enabled,
                }
            }
        };
        Ok(Live {
            def,
            origin,
            paused: s.paused,
            last_tick: s.last_tick,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }

    /// Ticks until `stop`, while `leader` says this process ticks (on PostgreSQL one replica
    /// holds the ticker lease; the others wait to take it over).
    pub async fn run(self: Arc<Self>, leader: Arc<Leader>, stop: CancellationToken) {
        let mut leading = leader.subscribe();
        loop {
            let now = clock::now_ms();
            self.beat.store(now, std::sync::atomic::Ordering::Relaxed);
            if !leader.is_leader() {
                let check = leader.check_every().unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = leading.changed() => {}
                    () = tokio::time::sleep(check) => {}
                }
                if leader.is_leader() {
                    // As a restart: ticks due before now were missed (each schedule's
                    // `catch_up` decides), and the last ticks the other replica took are read,
                    // so that only what it missed counts.
                    *self
                        .started_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = clock::now_ms();
                    if let Err(e) = self.reload().await {
                        tracing::error!(error = %e, "reading the schedules after taking over the ticking failed");
                    }
                }
                continue;
            }
            let (due, wake_at) = self.due(now);
            let mut failed = false;
            for (name, tick, missed) in due {
                let trigger = if missed {
                    Trigger::CatchUp
                } else {
                    Trigger::Schedule
                };
                match self.tick(&name, tick, trigger).await {
                    Ok(Ticked::Skipped { running, .. }) => {
                        tracing::warn!(schedule = %name, task_id = %running, "schedule tick skipped: the previous run is not finished");
                    }
                    Ok(Ticked::Passed) => {
                        tracing::info!(schedule = %name, tick = %clock::to_rfc3339(tick), "tick missed while stopped passed over (catch_up = none)");
                    }
                    Ok(t) if missed => {
                        tracing::info!(schedule = %name, tick = %clock::to_rfc3339(tick), outcome = ?t, "ran the latest tick missed while stopped");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed = true;
                        tracing::error!(schedule = %name, error = %e, "schedule tick failed; trying again shortly");
                    }
                }
            }
            let sleep = if failed {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(u64::try_from(wake_at - clock::now_ms()).unwrap_or(0))
                    .min(MAX_SLEEP)
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Whether the ticker looked at the schedules within [`STALLED_AFTER`] of `now`.
    #[must_use]
    pub fn ticker_alive(&self, now: Millis) -> bool {
        alive(self.beat.load(std::sync::atomic::Ordering::Relaxed), now)
    }

    /// Per active schedule, the latest tick due at `now` and whether it was missed while
    /// down; and when the next tick of any schedule comes.
    fn due(&self, now: Millis) -> (Vec<(String, Millis, bool)>, Millis) {
        let started = *self
            .started_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Copied out, so the API is not held up while the ticks are computed.
        let active: Vec<(String, crate::clock::ticks::Ticks, Millis)> = self
            .live()
            .iter()
            .filter(|(_, l)| l.def.enabled && !l.paused)
            .map(|(name, l)| {
                (
                    name.clone(),
                    l.def.ticks.clone(),
                    l.last_tick.unwrap_or(l.created_at),
                )
            })
            .collect();
        let mut due = Vec::new();
        let mut wake = clock::add(now, MAX_SLEEP);
        for (name, ticks, last) in active {
            if let Some(t) = ticks.latest_between(at(last), at(now)) {
                let t = t.timestamp_millis();
                due.push((name, t, t < started));
            }
            if let Some(n) = ticks.next_after(at(last.max(now))) {
                wake = wake.min(n.timestamp_millis());
            }
        }
        (due, wake)
    }

    /// One tick of `name` at `tick` (what the ticker does; public for tests).
    ///
    /// # Errors
    /// A storage error (the tick is tried again), or an unknown name.
    pub async fn tick(
        &self,
        name: &str,
        tick: Millis,
        trigger: Trigger,
    ) -> Result<Ticked, StoreError> {
        let Some(live) = self.live().get(name).cloned() else {
            return Err(StoreError::Internal(format!("no schedule named {name}")));
        };
        let pass_over = trigger == Trigger::CatchUp && live.def.catch_up == CatchUp::None;
        let manual = trigger == Trigger::Manual;
        let key = if manual {
            format!("schedule:{name}:run:{}", clock::to_rfc3339(tick))
        } else {
            format!("schedule:{name}:{}", clock::to_rfc3339(tick))
        };
        let row = self
            .maker
            .row(TaskSpec {
                url: live.def.url.clone(),
                method: live.def.method.clone(),
                headers: live.def.headers.clone(),
                body: live.def.body.clone(),
                timeout: live.def.timeout,
                retry_schedule: live.def.retry_schedule.clone(),
                run_at: clock::now_ms(),
                name: Some(name.to_string()),
                schedule: Some(name.to_string()),
                scheduled_for: Some(tick),
                key_scope: Some(SCHEDULE_SCOPE.into()),
                idempotency_key: Some(key),
                created_by: if manual { "manual" } else { "schedule" }.into(),
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let (owned, overlap) = (name.to_string(), live.def.overlap);
        let handoff = self.maker.handoff().cloned();
        let ticked = self
            .store
            .writer()
            .write_wait(move |tx| {
                if !manual && !store::take_tick(tx, &owned, tick)? {
                    return Ok::<_, StoreError>(Ticked::Duplicate);
                }
                if pass_over {
                    return Ok(Ticked::Passed);
                }
                let running = match overlap {
                    Overlap::Skip if !manual => store::active_run(tx, &owned)?,
                    _ => None,
                };
                let state = if running.is_some() {
                    TaskState::Skipped
                } else {
                    TaskState::Scheduled
                };
                let id = row.id.clone();
                match store::insert(tx, &row, state, handoff.as_ref())? {
                    Inserted::Existing(_) => Ok(Ticked::Duplicate),
                    Inserted::Created => match running {
                        Some(r) => {
                            store::note_skipped(tx, &id, &r)?;
                            Ok(Ticked::Skipped {
                                task_id: id,
                                running: r,
                            })
                        }
                        None => Ok(Ticked::Run { task_id: id }),
                    },
                }
            })
            .await?;
        // Taken now, or found taken: either way this tick is behind the schedule.
        if !manual && let Some(l) = self.live().get_mut(name) {
            l.last_tick = Some(l.last_tick.map_or(tick, |t| t.max(tick)));
        }
        Ok(ticked)
    }
}

/// A task as answers show it: sensitive header values as `"[redacted]"`.
#[must_use]
pub fn shown_task(mut task: Value) -> Value {
    if let Some(h) = task.get("headers").and_then(Value::as_object) {
        task["headers"] = Value::Object(headers::shown(h));
    }
    task
}

impl Schedules {
    fn view(&self, name: &str, l: &Live, last_run: Option<Value>, now: Millis) -> Value {
        let active = l.def.enabled && !l.paused;
        let next: Vec<String> = if active {
            let from = l.last_tick.unwrap_or(l.created_at).max(now);
            l.def
                .ticks
                .next_n(at(from), NEXT_SHOWN)
                .iter()
                .map(|t| clock::to_rfc3339(t.timestamp_millis()))
                .collect()
        } else {
            Vec::new()
        };
        let shown: Map<String, Value> = l
            .def
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if crate::redact::is_sensitive_header(k) {
                    headers::REDACTED
                } else {
                    v.as_str()
                };
                (k.clone(), json!(v))
            })
            .collect();
        let human = |d: &Duration| humantime::format_duration(*d).to_string();
        json!({
            "name": name,
            "origin": l.origin.as_str(),
            "cron": l.def.cron,
            "timezone": l.def.timezone,
            "url": l.def.url,
            "method": l.def.method,
            "headers": shown,
            "body": l.def.body,
            "timeout": l.def.timeout.as_ref().map(human),
            "retry_schedule": l.def.retry_schedule.as_ref().map(|r| r.iter().map(human).collect::<Vec<_>>()),
            "overlap": l.def.overlap.as_str(),
            "catch_up": l.def.catch_up.as_str(),
            "enabled": l.def.enabled,
            "paused": l.paused,
            "state": if !l.def.enabled { "disabled" } else if l.paused { "paused" } else { "active" },
            "next_runs": next,
            "last_tick": l.last_tick.map(clock::to_rfc3339),
            "last_run": last_run.map(shown_task),
            "created_at": clock::to_rfc3339(l.created_at),
            "updated_at": clock::to_rfc3339(l.updated_at),
        })
    }

    /// Every schedule with its next ticks and last run, by name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn list(&self) -> Result<Vec<Value>, StoreError> {
        let live = self.live().clone();
        let names: Vec<String> = live.keys().cloned().collect();
        let last = self
            .store
            .read(move |c| {
                names
                    .iter()
                    .map(|n| Ok((n.clone(), store::last_run(c, n)?)))
                    .collect::<Result<BTreeMap<_, _>, crate::sql::Error>>()
                    .map_err(StoreError::from)
            })
            .await?;
        let now = clock::now_ms();
        Ok(live
            .iter()
            .map(|(name, l)| self.view(name, l, last.get(name).cloned().flatten(), now))
            .collect())
    }

    /// One schedule with its runs, newest first; `None` for an unknown name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn get(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let Some(l) = self.live().get(name).cloned() else {
            return Ok(None);
        };
        let owned = name.to_string();
        let runs = self
            .store
            .read(move |c| {
                let filter = store::TaskFilter {
                    schedule: Some(owned),
                    ..store::TaskFilter::default()
                };
                store::list(c, &filter, RUNS_SHOWN).map_err(StoreError::from)
            })
            .await?;
        let runs: Vec<Value> = runs.into_iter().map(shown_task).collect();
        let mut v = self.view(name, &l, runs.first().cloned(), clock::now_ms());
        v["runs"] = json!(runs);
        Ok(Some(v))
    }

    /// The definition and origin of `name`.
    #[must_use]
    pub fn definition(&self, name: &str) -> Option<(ScheduleDef, Origin)> {
        self.live().get(name).map(|l| (l.def.clone(), l.origin))
    }

    /// Creates (`create`) or replaces API schedule `name` with `def`, audited as `actor`'s.
    ///
    /// # Errors
    /// 409 when creating a name in use, or changing a schedule from the config; 404 when
    /// replacing a name not in use; storage errors.
    pub async fn put(
        &self,
        name: &str,
        def: ScheduleDef,
        create: bool,
        actor: &str,
    ) -> Result<Value, ApiError> {
        match (self.definition(name), create) {
            (Some((_, Origin::Config)), _) => {
                return Err(ApiError::conflict(
                    "managed_by_config",
                    format!(
                        "schedule {name} is defined in the config ([schedules.{name}]); change it there"
                    ),
                ));
            }
            (Some(_), true) => {
                return Err(ApiError::conflict(
                    "already_exists",
                    format!(
                        "a schedule named {name} exists; change it with PUT /v1beta1/schedules/{name}"
                    ),
                ));
            }
            (None, false) => return Err(ApiError::not_found(format!("schedule {name}"))),
            _ => {}
        }
        let given: Map<String, Value> = def
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let sealed =
            headers::seal(self.maker.keyring(), &aad(name), &given).map_err(ApiError::internal)?;
        // Switched on, or ticking on another clock: ticks from before the change never run.
        let reset = self.definition(name).is_some_and(|(b, _)| {
            (!b.enabled && def.enabled) || b.cron != def.cron || b.timezone != def.timezone
        });
        let (owned, actor) = (name.to_string(), actor.to_string());
        let now = clock::now_ms();
        self.store
            .writer()
            .write(move |tx| {
                let old = store::schedule(tx, &owned)?;
                if create && old.is_some() {
                    return Err(ApiError::conflict(
                        "already_exists",
                        format!("a schedule named {owned} exists"),
                    ));
                }
                store::put_schedule(
                    tx,
                    &stored_row(&owned, Origin::Api, &def, sealed.clone(), old.as_ref(), reset, now),
                )?;
                audit(tx, &actor, if create { "schedule.create" } else { "schedule.update" }, &owned, json!({"cron": def.cron, "timezone": def.timezone, "url": crate::redact::url(&def.url)}))?;
                Ok(())
            })
            .await?;
        self.reload().await?;
        Ok(self.get(name).await?.unwrap_or(Value::Null))
    }

    /// Deletes API schedule `name` (its runs stay readable).
    ///
    /// # Errors
    /// 404, 409 for a schedule from the config, storage errors.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<(), ApiError> {
        match self.definition(name) {
            None => return Err(ApiError::not_found(format!("schedule {name}"))),
            Some((_, Origin::Config)) => {
                return Err(ApiError::conflict(
                    "managed_by_config",
                    format!(
                        "schedule {name} is defined in the config; remove [schedules.{name}] there"
                    ),
                ));
            }
            Some(_) => {}
        }
        let (owned, actor) = (name.to_string(), actor.to_string());
        self.store
            .writer()
            .write_wait(move |tx| {
                store::delete_schedule(tx, &owned)?;
                audit(tx, &actor, "schedule.delete", &owned, json!({}))?;
                Ok::<_, ApiError>(())
            })
            .await?;
        self.reload().await?;
        Ok(())
    }

    /// Pauses or resumes `name`; `None` for an unknown name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        actor: &str,
    ) -> Result<Option<Value>, ApiError> {
        if self.definition(name).is_none() {
            return Ok(None);
        }
        let (owned, actor) = (name.to_string(), actor.to_string());
        self.store
            .writer()
            .write_wait(move |tx| {
                store::set_paused(tx, &owned, paused, clock::now_ms())?;
                audit(
                    tx,
                    &actor,
                    if paused {
                        "schedule.pause"
                    } else {
                        "schedule.resume"
                    },
                    &owned,
                    json!({}),
                )?;
                Ok::<_, ApiError>(())
            })
            .await?;
        self.reload().await?;
        Ok(self.get(name).await?)
    }

    /// Runs `name` once now, whatever its state and `overlap`; the new task's id, `None` for
    /// an unknown name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn run_now(&self, name: &str, actor: &str) -> Result<Option<String>, ApiError> {
        if self.definition(name).is_none() {
            return Ok(None);
        }
        let ticked = self.tick(name, clock::now_ms(), Trigger::Manual).await?;
        let Ticked::Run { task_id } = ticked else {
            return Err(ApiError::conflict(
                "already_running",
                format!("schedule {name} was just run; try again in a moment"),
            ));
        };
        let (id, actor, owned) = (task_id.clone(), actor.to_string(), name.to_string());
        self.store
            .writer()
            .write_wait(move |tx| {
                audit(tx, &actor, "schedule.run", &owned, json!({"task_id": id}))
                    .map_err(StoreError::from)
            })
            .await?;
        Ok(Some(task_id))
    }
}

/// The audit record of `actor`'s `action` on schedule `name`.
fn audit(
    tx: &crate::store::WriteTx<'_>,
    actor: &str,
    action: &str,
    name: &str,
    detail: Value,
) -> crate::sql::Result<()> {
    crate::store::audit::record(
        tx,
        &crate::store::audit::Entry {
            actor,
            action,
            target_type: Some("schedule"),
            target_id: Some(name),
            detail,
        },
    )
}

/// The stored row of schedule `name` defined by `def`, keeping `old`'s pause state, last tick
/// (moved to `now` with `reset_tick`) and creation time.
fn stored_row(
    name: &str,
    origin: Origin,
    def: &ScheduleDef,
    sealed_headers: Map<String, Value>,
    old: Option<&StoredSchedule>,
    reset_tick: bool,
    now: Millis,
) -> StoredSchedule {
    let last = old.and_then(|o| o.last_tick).unwrap_or(now);
    StoredSchedule {
        name: name.to_string(),
        origin: origin.as_str().into(),
        cron: def.cron.clone(),
        timezone: def.timezone.clone(),
        url: def.url.clone(),
        method: def.method.clone(),
        headers: sealed_headers,
        body: def.body.as_ref().map(|b| b.to_string().into_bytes()),
        timeout: def.timeout,
        retry_schedule: def.retry_schedule.clone(),
        overlap: def.overlap.as_str().into(),
        catch_up: def.catch_up.as_str().into(),
        enabled: def.enabled,
        paused: old.is_some_and(|o| o.paused),
        last_tick: Some(if reset_tick { last.max(now) } else { last }),
        created_at: old.map_or(now, |o| o.created_at),
        updated_at: now,
    }
}

/// Whether a ticker whose last look was at `beat` (0: never) is alive at `now`.
fn alive(beat: Millis, now: Millis) -> bool {
    beat > 0 && now - beat <= i64::try_from(STALLED_AFTER.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ticker_that_stopped_looking_is_stalled() {
        let now = 1_800_000_000_000;
        assert!(!super::alive(0, now), "never started");
        assert!(super::alive(now - 60_000, now));
        assert!(super::alive(now - 90_000, now));
        assert!(!super::alive(now - 90_001, now));
    }
}
