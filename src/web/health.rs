//! Liveness and readiness.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only when writes to the
//! database work — a probe write commits through the writer within [`PROBE_TIMEOUT`] and the
//! writer's latest transaction did not fail — the writer thread and the job workers are alive,
//! the oldest due job has not waited longer than `jobs.max_lag`, no cron schedule is overdue and
//! the task schedules' ticker runs; else 503 with every failing check named.
//!
//! What a call costs: the probe (one small commit to the `kv` table) and the queue-lag read run
//! at most once per [`PROBE_EVERY`] per database however often `/readyz` is called (the systemd
//! watchdog included): callers within that second get the last result, callers arriving while a
//! probe is in flight wait for it. Between probes, the writer's record of its latest transaction
//! ([`write_failure`]) turns `/readyz` 503 as soon as a write fails — the one an ingress request
//! just answered `storage_unavailable` for — so a probe that committed a moment earlier cannot
//! hide it; once writes commit again, the next probe (within a second) makes it 200. The checks
//! held in memory (writer thread, workers, cron, the schedules' ticker) are read on every call.
//!
//! [`write_failure`]: crate::store::writer::WriterStats::write_failure
//!
//! It must never commit once per call: a load balancer polling it would add a write per poll to
//! the one writer every other write waits behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::clock;
use crate::cron::Cron;
use crate::http::{Auth, Endpoint, Reply};
use crate::jobs::{self, worker::WorkerHealth};
use crate::store::{Store, StoreError};

/// How long the readiness write may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe's result answers for the database: at most one probe commit per this
/// period, however often `/readyz` is called.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What `/readyz` looks at.
pub struct Readiness {
    /// The database probed, and its writer.
    pub store: Store,
    /// The job workers' heartbeat.
    pub workers: Arc<WorkerHealth>,
    /// The longest a due job may wait before `/readyz` fails (`jobs.max_lag`).
    pub max_lag: Duration,
    /// The schedules checked for being overdue.
    pub cron: Arc<Cron>,
    /// The task schedules, whose ticker must be running.
    pub schedules: Arc<crate::tasks::schedules::Schedules>,
}

/// Probe results per database, shared by every [`Readiness`] on it.
static SAMPLES: PerDatabase<Sample> = PerDatabase::new();

/// Readiness probes made on `store`'s database since the process started; each one is a write
/// through the writer. For tests and benchmarks: it grows by at most one per [`PROBE_EVERY`].
#[must_use]
pub fn probes(store: &Store) -> u64 {
    SAMPLES.reads(store.path())
}

/// A costly status read, made at most once per `max_age` and shared by every caller: callers
/// within `max_age` of the end of the last read get its result, callers arriving while a read is
/// in flight wait for it.
pub(crate) struct Memo<T> {
    slot: Arc<tokio::sync::Mutex<Option<(Instant, T)>>>,
    reads: AtomicU64,
}

impl<T: Clone + Send + 'static> Memo<T> {
    fn new() -> Self {
        Self {
            slot: Arc::new(tokio::sync::Mutex::new(None)),
            reads: AtomicU64::new(0),
        }
    }

    /// The last result if it is younger than `max_age`, else a fresh one from `read`. `None` if
    /// the read panicked.
    ///
    /// The read runs as its own task that holds the slot until it has stored the result, so a
    /// caller that gives up (a client that disconnects) neither wastes the read nor lets a second
    /// one start beside it. `max_age` counts from the end of a read: reads start at least
    /// `max_age` apart, however long each takes.
    pub(crate) async fn get<Fut>(&self, max_age: Duration, read: impl FnOnce() -> Fut) -> Option<T>
    where
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut slot = Arc::clone(&self.slot).lock_owned().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < max_age
        {
            return Some(value.clone());
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let fut = read();
        tokio::spawn(async move {
            let value = fut.await;
            *slot = Some((Instant::now(), value.clone()));
            value
        })
        .await
        .ok()
    }

    /// Reads made so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// One [`Memo`] per database file, for the life of the process.
///
/// Keyed by the file rather than held by the handler's state: the limit is on work done to one
/// database, whoever asks (the HTTP handler and the systemd watchdog), and the handler state is
/// built at start-up as plain values. An app restarted on the same file inside one process (as
/// tests do) may be answered once from a result younger than `max_age` about that same file.
pub(crate) struct PerDatabase<T> {
    memos: Mutex<BTreeMap<PathBuf, Arc<Memo<T>>>>,
}

impl<T: Clone + Send + 'static> PerDatabase<T> {
    /// An empty table (for a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            memos: Mutex::new(BTreeMap::new()),
        }
    }

    /// The memo for the database at `db`, created on first use.
    pub(crate) fn memo(&self, db: &Path) -> Arc<Memo<T>> {
        let mut memos = self.memos.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            memos
                .entry(db.to_path_buf())
                .or_insert_with(|| Arc::new(Memo::new())),
        )
    }

    /// Reads made for the database at `db` so far.
    pub(crate) fn reads(&self, db: &Path) -> u64 {
        self.memos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(db)
            .map_or(0, |m| m.reads())
    }
}

/// What one probe found: whether its write committed, and how long the oldest due job waited.
#[derive(Clone)]
struct Sample {
    write: Probe,
    lag: Result<Duration, String>,
}

#[derive(Clone)]
enum Probe {
    Committed,
    Failed(String),
    TimedOut,
}

impl Sample {
    /// Writes a row to `kv` through the writer and reads the queue lag.
    async fn take(store: Store) -> Self {
        let probe = store.writer().write_wait(|tx| {
            crate::store::kv::set(tx, "readyz", "ok")?;
            Ok::<_, StoreError>(())
        });
        let write = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => Probe::Committed,
            Ok(Err(e)) => Probe::Failed(e.to_string()),
            Err(_) => Probe::TimedOut,
        };
        let now = clock::now_ms();
        let lag = store
            .read(move |c| jobs::oldest_due_wait(c, now).map_err(StoreError::from))
            .await
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string());
        Self { write, lag }
    }

    fn panicked() -> Self {
        let why = "the readiness probe panicked".to_string();
        Self {
            write: Probe::Failed(why.clone()),
            lag: Err(why),
        }
    }
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
            "200 when the database takes a write, the writer, job workers, cron and the schedules' ticker run, and the queue is not lagging; else 503 `not_ready` naming each failing check",
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
    /// Runs every check; returns the checks and the reasons for not being ready. The probe write
    /// and the queue-lag read come from the last probe of this database if it ended less than
    /// [`PROBE_EVERY`] ago (waiting for one in flight); the rest is looked at now.
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

        let store = self.store.clone();
        let sample = SAMPLES
            .memo(self.store.path())
            .get(PROBE_EVERY, move || Sample::take(store))
            .await
            .unwrap_or_else(Sample::panicked);
        // Read after the probe, so a write that failed or committed since it counts.
        let failure = self.store.writer().stats().write_failure();
        let database = match (failure, &sample.write) {
            (Some(f), _) => {
                problems.push(format!(
                    "database writes fail: none has committed since {}; the latest failed with: {}",
                    clock::to_rfc3339(f.since),
                    f.reason
                ));
                "unwritable"
            }
            (None, Probe::Committed) => "ok",
            (None, Probe::Failed(e)) => {
                problems.push(format!("the readiness write failed: {e}"));
                "unwritable"
            }
            (None, Probe::TimedOut) => {
                problems.push(format!(
                    "a database write did not commit within {}s",
                    PROBE_TIMEOUT.as_secs()
                ));
                "timeout"
            }
        };
        checks.insert("database".into(), json!(database));

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

        match sample.lag {
            Ok(lag) => {
                // Jobs this process holds in memory are `running` in the database, so the
                // queue's lag does not see them waiting for a worker.
                let lag = lag.max(self.workers.memory_wait(now));
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
        let ticking = self.schedules.ticker_alive(now);
        checks.insert(
            "schedules".into(),
            json!(if ticking { "ok" } else { "stalled" }),
        );
        if !ticking {
            problems.push("the task schedules' ticker is not running".to_string());
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
