//! Builds the whole service — store, job workers, HTTP server — and runs it until a signal, then
//! shuts down gracefully: stop accepting connections, stop claiming jobs, let in-flight requests
//! and jobs finish within `server.shutdown_grace`, give back the leases of jobs that did not, and
//! close the database after the writer drained its queue.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::ErrorHandlers;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Authenticator};
use crate::config::{Config, Secret};
use crate::cron::{self, Cron};
use crate::delivery::{self, secrets::Keyring};
use crate::error;
use crate::events;
use crate::front;
use crate::jobs::Registry;
use crate::jobs::periodic::Periodic;
use crate::jobs::reaper::{self, Reaper};
use crate::jobs::worker::{self, Dispatcher, Sweep};
use crate::store::Store;
use crate::web::health::Readiness;
use crate::web::limits::{self, BodyTimeout};
use crate::web::openapi;

/// The schema: every owner's migrations, lowest layer first.
#[must_use]
pub fn schema() -> Vec<&'static [crate::store::Migration]> {
    vec![
        crate::store::MIGRATIONS,
        crate::jobs::MIGRATIONS,
        crate::events::MIGRATIONS,
        crate::delivery::MIGRATIONS,
        crate::inbound::MIGRATIONS,
        crate::tasks::MIGRATIONS,
        crate::cron::MIGRATIONS,
    ]
}

/// The same schema for PostgreSQL: each owner's PostgreSQL steps, in the same order.
#[must_use]
pub fn postgres_schema() -> Vec<&'static [crate::store::Migration]> {
    vec![
        crate::store::POSTGRES_MIGRATIONS,
        crate::jobs::POSTGRES_MIGRATIONS,
        crate::events::POSTGRES_MIGRATIONS,
        crate::delivery::POSTGRES_MIGRATIONS,
        crate::inbound::POSTGRES_MIGRATIONS,
        crate::tasks::POSTGRES_MIGRATIONS,
        crate::cron::POSTGRES_MIGRATIONS,
    ]
}

/// Opens the store with the whole schema (see [`Store::open`]).
///
/// # Errors
/// As [`Store::open`].
pub fn open_store(cfg: &crate::config::DatabaseConfig, wake: Arc<Notify>) -> anyhow::Result<Store> {
    Store::open(cfg, wake, &schema(), &postgres_schema())
}

/// Applies the whole schema to the database of `cfg` (`hookrelay migrate`).
///
/// # Errors
/// As [`crate::store::migrate_file`].
pub fn migrate_file(
    cfg: &crate::config::DatabaseConfig,
) -> anyhow::Result<crate::store::MigrationReport> {
    crate::store::migrate_file(cfg, &schema(), &postgres_schema())
}

/// Every periodic task this binary has, as its owners declare them: what `[cron]` may name.
/// `Application::build` checks the tasks it registers against this list.
#[must_use]
pub fn cron_specs() -> Vec<crate::jobs::periodic::TaskSpec> {
    vec![
        crate::ops::retention::SPEC,
        crate::jobs::reaper::SPEC,
        crate::delivery::health::SPEC,
        crate::front::sync::SPEC,
        crate::ops::MAINTENANCE,
        crate::ops::BACKUP,
    ]
}

/// Every cron schedule in force for `config`: each task's `[cron]` entry, else its default.
///
/// # Errors
/// A `cron.<name>` naming no task.
pub fn cron_schedules(
    config: &Config,
) -> Result<std::collections::BTreeMap<String, crate::config::Schedule>, String> {
    let mut periodic = Periodic::default();
    for spec in cron_specs() {
        periodic.register(
            spec,
            Arc::new(|| Box::pin(async { Ok(Default::default()) })),
        );
    }
    cron::schedules(&config.cron.schedules, &periodic)
}

/// The running service. Build it with [`Application::build`], then [`Application::run_until_stopped`].
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    store: Store,
    dispatcher: JoinHandle<()>,
    jobs_runtime: JobsRuntime,
    cron: Arc<Cron>,
    schedules: Arc<crate::tasks::schedules::Schedules>,
    readiness: web::Data<Readiness>,
    stop: CancellationToken,
    admin_token: Secret,
    /// Whether this process ticks and sweeps; its lease is given up at shutdown.
    leader: Arc<crate::store::leader::Leader>,
    leader_task: JoinHandle<()>,
    _lock: Option<File>,
}

/// Everything route handlers can reach, registered as `web::Data`.
struct Shared {
    config: web::Data<Config>,
    store: web::Data<Store>,
    registry: web::Data<Registry>,
    keyring: web::Data<Keyring>,
    auth: web::Data<Authenticator>,
    readiness: web::Data<Readiness>,
    cron: web::Data<Cron>,
    publisher: web::Data<events::Publisher>,
    processors: web::Data<crate::inbound::Processors>,
    handoff: web::Data<crate::jobs::Handoff>,
    sources: web::Data<crate::sources::Sources>,
    ingress: web::Data<crate::inbound::ingress::Ingress>,
    tasks: web::Data<crate::tasks::Tasks>,
}

impl Application {
    /// Opens the database (migrating it), requeues jobs a previous process left running, starts
    /// the job workers and binds the HTTP listener (`server.bind`; port 0 picks a free port).
    ///
    /// # Errors
    /// When another `hookrelay serve` holds the database, the database cannot be opened or
    /// migrated, or the address cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::install_tls_provider();
        // On PostgreSQL several replicas share the database: claims, leases and tick keys keep
        // them apart.
        let lock = match &config.database.url {
            None => Some(lock_database(&config.database.path)?),
            Some(_) => None,
        };
        let (admin_token, generated) = match &config.auth.admin_token {
            Some(t) => (t.clone(), false),
            None => (auth::generate_token(), true),
        };

        let wake = Arc::new(Notify::new());
        let store = {
            let db = config.database.clone();
            let wake = Arc::clone(&wake);
            tokio::task::spawn_blocking(move || open_store(&db, wake))
                .await
                .context("opening the database")??
        };
        let mut registry = Registry::with_builtins();
        let stored = {
            let s = store.clone();
            s.read(|c| {
                let mut ids = delivery::webhooks::sealed_key_ids(c)?;
                ids.extend(crate::tasks::sealed_key_ids(c)?);
                Ok::<_, crate::store::StoreError>(ids)
            })
            .await
            .context("reading which keys sealed the stored secrets")?
        };
        let keyring = Arc::new(
            Keyring::from_config(
                &config,
                &delivery::secrets::SealedInventory { key_ids: stored },
            )
            .context("loading the encryption keys")?,
        );
        // Jobs enqueued on the hot paths go straight to this process's dispatcher.
        let (handoff, handoff_rx) =
            crate::jobs::Handoff::new(config.jobs.lease, worker::new_instance());
        let mut periodic = Periodic::default();
        let reaper = Arc::new(Reaper::new(store.clone()));
        {
            let r = Arc::clone(&reaper);
            periodic.register(
                reaper::SPEC,
                Arc::new(move || {
                    let r = Arc::clone(&r);
                    Box::pin(async move { r.run().await })
                }),
            );
        }
        let delivery = delivery::register(
            &mut registry,
            &mut periodic,
            &config,
            store.clone(),
            Arc::clone(&keyring),
            Some(handoff.clone()),
        )?;
        let publisher = delivery.publisher.clone();
        let mut processors = crate::inbound::Processors::default();
        front::register(
            &mut registry,
            &mut periodic,
            &mut processors,
            &config,
            store.clone(),
            publisher.clone(),
        )?;
        let sources = crate::sources::Sources::from_config(&config)?;
        crate::sources::register(
            &mut registry,
            &mut processors,
            &sources,
            store.clone(),
            publisher.clone(),
        );
        let tasks = crate::tasks::register(
            &mut registry,
            &config,
            store.clone(),
            Arc::clone(&keyring),
            publisher.clone(),
            Some(handoff.clone()),
        )?;
        crate::ops::register(&mut periodic, &store, &config);
        let mut registered: Vec<&str> = periodic.specs().map(|s| s.name).collect();
        let mut declared: Vec<&str> = cron_specs().iter().map(|s| s.name).collect();
        registered.sort_unstable();
        declared.sort_unstable();
        anyhow::ensure!(
            registered == declared,
            "internal: the registered cron tasks {registered:?} are not those app::cron_specs lists {declared:?}"
        );
        let schedules =
            cron::schedules(&config.cron.schedules, &periodic).map_err(|m| anyhow::anyhow!(m))?;
        let periodic = Arc::new(periodic);
        cron::register(&mut registry, &store, &periodic);
        registry.on_any_dead(events::dead_job_hook(
            publisher.clone(),
            &[delivery::store::KIND, crate::tasks::store::KIND],
        ));
        let registry = Arc::new(registry);
        reaper.set_registry(Arc::clone(&registry));
        // With SQLite this process is the only one: every running job belonged to the one
        // before it. On PostgreSQL other replicas may be running theirs; only expired leases
        // are taken back (a dead replica's, within `jobs.lease`).
        let at_start = match store.dialect() {
            crate::sql::Dialect::Sqlite => Sweep::AllRunning,
            crate::sql::Dialect::Postgres => Sweep::Expired,
        };
        let requeued = worker::requeue_expired(&store, Arc::clone(&registry), at_start)
            .await
            .context("requeueing jobs left running by the previous process")?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs left running by the previous process were requeued"
            );
        }

        let stop = CancellationToken::new();
        let dispatcher = Dispatcher::new(
            store.clone(),
            Arc::clone(&registry),
            config.jobs.workers,
            config.jobs.lease,
            Arc::clone(&wake),
        )
        .with_handoff(handoff_rx);
        let worker_health = dispatcher.health();
        let jobs_runtime = JobsRuntime(Some(jobs_runtime()?));
        let dispatcher = jobs_runtime
            .handle()
            .spawn(dispatcher.run(stop.child_token(), config.server.shutdown_grace));
        // One process at a time ticks and sweeps: this one on SQLite, the lease holder among
        // replicas on PostgreSQL.
        let leader = Arc::new(crate::store::leader::Leader::for_store(
            &store,
            worker::new_instance(),
            config.jobs.lease,
        ));
        let leader_task = {
            let (leader, store, stop) = (Arc::clone(&leader), store.clone(), stop.child_token());
            tokio::spawn(async move { leader.run(store, stop).await })
        };
        tokio::spawn(Arc::clone(&reaper).safety_net(
            config.jobs.lease,
            Arc::clone(&leader),
            stop.child_token(),
        ));
        if config.jobs.workers > 0 {
            jobs_runtime.handle().spawn(delivery::send::sweep_parked(
                store.clone(),
                Arc::clone(&delivery.gate),
                stop.child_token(),
            ));
        }
        let cron = Arc::new(Cron::new(
            store.clone(),
            schedules,
            &periodic,
            Arc::clone(&leader),
        ));
        cron.start().await.context("starting cron")?;
        tasks
            .schedules
            .start()
            .await
            .context("loading the schedules")?;
        tokio::spawn(Arc::clone(&tasks.schedules).run(Arc::clone(&leader), stop.child_token()));
        let schedules = Arc::clone(&tasks.schedules);
        if let Some(url) = &config.database.url {
            listen_for_changes(
                url.expose(),
                Arc::clone(&schedules),
                Arc::clone(&wake),
                stop.child_token(),
            )
            .context("listening for changes on PostgreSQL")?;
        }
        crate::counters::install();
        tokio::spawn(crate::counters::upkeep_loop(stop.child_token()));

        let ingress = crate::inbound::ingress::Ingress::new(store.clone());
        ingress
            .load()
            .await
            .context("reading the last day's ingress counts")?;
        let listener = TcpListener::bind(&config.server.bind)
            .with_context(|| format!("binding server.bind = {}", config.server.bind))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shared = Shared {
            config: web::Data::new(config.clone()),
            store: web::Data::new(store.clone()),
            registry: web::Data::from(Arc::clone(&registry)),
            keyring: web::Data::from(keyring),
            auth: web::Data::new(Authenticator::new(&config.auth, &admin_token)),
            readiness: web::Data::new(Readiness {
                store: store.clone(),
                workers: worker_health,
                max_lag: config.jobs.max_lag,
                cron: Arc::clone(&cron),
                schedules: Arc::clone(&schedules),
            }),
            cron: web::Data::from(Arc::clone(&cron)),
            publisher: web::Data::new(publisher),
            processors: web::Data::new(processors),
            handoff: web::Data::new(handoff),
            sources: web::Data::new(sources),
            ingress: web::Data::new(ingress),
            tasks: web::Data::new(tasks),
        };
        let readiness = shared.readiness.clone();
        let max_body = config.server.max_body_bytes;
        let body_timeout = web::Data::new(BodyTimeout(config.server.body_timeout));
        // actix caps connections per worker; make the whole server hold server.max_connections.
        let http_workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let per_worker = config.server.max_connections.div_ceil(http_workers).max(1);
        // Every route, declared once with its documentation (`openapi::endpoints`).
        let endpoints = std::sync::Arc::new(openapi::endpoints(&config));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(limits::body_deadline))
                .wrap(ErrorHandlers::new().default_handler(error::rewrite_bare_errors))
                .wrap(actix_web::middleware::from_fn(
                    crate::web::metrics::track_requests,
                ))
                .app_data(shared.config.clone())
                .app_data(shared.store.clone())
                .app_data(shared.registry.clone())
                .app_data(shared.keyring.clone())
                .app_data(shared.auth.clone())
                .app_data(shared.readiness.clone())
                .app_data(shared.cron.clone())
                .app_data(shared.publisher.clone())
                .app_data(shared.processors.clone())
                .app_data(shared.handoff.clone())
                .app_data(shared.sources.clone())
                .app_data(shared.ingress.clone())
                .app_data(shared.tasks.clone())
                .app_data(body_timeout.clone())
                .app_data(error::json_config(max_body))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(error::query_config())
                .app_data(error::path_config())
                .configure(|cfg| openapi::mount(cfg, &endpoints))
                .default_service(web::to(error::not_found))
        })
        .workers(http_workers)
        .max_connections(per_worker)
        .client_request_timeout(limits::HEADER_TIMEOUT)
        .listen(listener)
        .context("starting the HTTP server")?
        .disable_signals()
        // Whole seconds only: round up so a sub-second grace still waits.
        .shutdown_timeout(
            config.server.shutdown_grace.as_secs()
                + u64::from(config.server.shutdown_grace.subsec_nanos() > 0),
        )
        .run();

        tracing::info!(version = crate::VERSION, %addr, db = %config.database.path.display(), "hookrelay listening on http://{addr}");
        if generated {
            tracing::warn!(
                "auth.admin_token is not set, so a token was generated for this run only: {} — \
                 sign in at http://{addr}/admin (set auth.admin_token to keep one)",
                admin_token.expose()
            );
        }
        Ok(Self {
            port: addr.port(),
            server,
            store,
            dispatcher,
            jobs_runtime,
            cron,
            schedules,
            readiness,
            stop,
            admin_token,
            leader,
            leader_task,
            _lock: lock,
        })
    }

    /// The port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store (for tests and embedding).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cron schedules (for tests: tick by hand, or stop the ticker).
    #[must_use]
    pub fn cron(&self) -> Arc<Cron> {
        Arc::clone(&self.cron)
    }

    /// The task schedules (for tests: tick by hand).
    #[must_use]
    pub fn schedules(&self) -> Arc<crate::tasks::schedules::Schedules> {
        Arc::clone(&self.schedules)
    }

    /// The admin token in force (configured or generated).
    #[must_use]
    pub fn admin_token(&self) -> &Secret {
        &self.admin_token
    }

    /// A token that, when cancelled, shuts the service down as a signal would.
    #[must_use]
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until SIGTERM, SIGINT or the shutdown token, then shuts down gracefully.
    ///
    /// # Errors
    /// When the HTTP server fails on its own.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let mut server_result = None;
        // Migrations ran and the listener is bound: tell systemd (`Type=notify`), and feed its
        // watchdog while the writer and the job workers are alive.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "telling systemd we are ready failed");
        }
        if let Some(period) = sd_notify::watchdog_enabled() {
            tokio::spawn(feed_watchdog(
                self.readiness.clone(),
                period / 2,
                self.stop.child_token(),
            ));
        }
        tokio::select! {
            signal = shutdown_signal() => tracing::info!(%signal, "shutting down"),
            () = self.stop.cancelled() => tracing::info!("shutdown requested"),
            res = &mut server => server_result = Some(res),
        }
        self.stop.cancel();
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.cron.stop().await;
        // Ticking stopped here: another replica may take it over at once, while this one
        // drains. (Once the renewals ended, so that none lands after the lease is given up.)
        let _ = self.leader_task.await;
        self.leader.give_up(&self.store).await;
        let http = async {
            handle.stop(true).await;
            match server_result {
                Some(res) => res,
                None => server.await,
            }
        };
        let (http_result, _) = tokio::join!(http, self.dispatcher);
        drop(self.jobs_runtime);
        self.store.writer().stop().await;
        tracing::info!("stopped");
        match http_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("the HTTP server failed")),
            Err(e) => Err(anyhow::Error::from(e).context("the HTTP server task failed")),
        }
    }
}

/// Pings systemd's watchdog every `every` while a write commits through the writer (the
/// readiness probe, within its 3 s) and the job dispatcher is alive; when either fails, the
/// pings stop and systemd restarts the service (`WatchdogSec`). A lagging queue or an overdue
/// cron schedule fails `/readyz` but is not a reason to restart.
async fn feed_watchdog(readiness: web::Data<Readiness>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                let (checks, _) = readiness.check().await;
                let ok = |name: &str, good: &[&str]| {
                    checks.get(name).and_then(|v| v.as_str()).is_some_and(|v| good.contains(&v))
                };
                if ok("writer", &["ok"]) && ok("database", &["ok"]) && ok("workers", &["ok", "off"]) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!(?checks, "the database or the job workers are stuck: not feeding the systemd watchdog");
                }
            }
        }
    }
}

/// Job workers yield to the request path: their threads run at this `nice` (Linux), so under
/// a burst the CPU goes to verifying and acking requests first and jobs catch up after.
pub const JOB_THREAD_NICE: i32 = 10;

/// The job runtime, shut down without blocking when dropped — also when the application is
/// dropped inside another runtime (a plain `Runtime` would panic there).
struct JobsRuntime(Option<tokio::runtime::Runtime>);

impl JobsRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .map(|r| r.handle().clone())
            .unwrap_or_else(tokio::runtime::Handle::current)
    }
}

impl Drop for JobsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The runtime that runs the job dispatcher and every job handler, on lower-priority threads.
fn jobs_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("hookrelay-jobs")
        .on_thread_start(lower_thread_priority)
        .enable_all()
        .build()
        .context("starting the job runtime")
}

fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; on Linux, PRIO_PROCESS with
        // who = 0 applies to the calling thread only. Failure just leaves the priority as is.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, JOB_THREAD_NICE) };
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

/// The lock file next to the database.
#[must_use]
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

/// On PostgreSQL, what another replica changed reaches this one: webhooks for fan-out and
/// delivery, the schedules, and jobs it enqueued (which wake this one's workers).
fn listen_for_changes(
    url: &str,
    schedules: Arc<crate::tasks::schedules::Schedules>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    crate::store::postgres::listen(url, stop, move |what| {
        if what == crate::store::postgres::JOBS_CHANGED || what == "*" {
            wake.notify_one();
        }
        if what == delivery::store::WEBHOOKS_CHANGED || what == "*" {
            delivery::store::webhooks_changed_elsewhere();
        }
        if what == crate::tasks::store::SCHEDULES_CHANGED || what == "*" {
            let schedules = Arc::clone(&schedules);
            runtime.spawn(async move {
                if let Err(e) = schedules.reload().await {
                    tracing::error!(error = %e, "reloading the schedules another replica changed failed");
                }
            });
        }
    })
}

/// Takes an exclusive lock so that two `serve` processes never share one database (the job
/// engine's "requeue everything running at start" relies on it), and `migrate` never changes the
/// schema under a running server. Released by the OS when the process ends, `kill -9` included.
///
/// # Errors
/// When another process holds the lock, or the lock file cannot be created.
pub fn lock_database(db: &Path) -> anyhow::Result<File> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    let path = lock_path(db);
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another hookrelay serve is already running on {} (it holds {})",
            db.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::from(e).context(format!("locking {}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_defaults_match_the_spec() {
        let c = crate::config::from_toml_str("").expect("defaults are valid");
        let schedules = cron_schedules(&c).expect("defaults");
        assert_eq!(schedules["backup"].as_str(), "off");
        assert_eq!(schedules["lease_reaper"].as_str(), "*/15 * * * * *");
        assert_eq!(schedules["retention"].as_str(), "0 17 * * * *");
        assert_eq!(schedules["endpoint_health"].as_str(), "0 */5 * * * *");
        assert_eq!(schedules["front_sync"].as_str(), "0 */10 * * * *");
        assert_eq!(schedules["db_maintenance"].as_str(), "0 0 3 * * *");
        assert_eq!(schedules.len(), 6);
        let bad = crate::config::from_toml_str("[cron]\nretentoin = \"off\"").expect("parses");
        let e = cron_schedules(&bad).expect_err("an unknown task");
        assert!(
            e.contains("cron.retentoin") && e.contains("retention"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_config_documents_every_cron_task() {
        let shipped = include_str!("../config.toml");
        for spec in cron_specs() {
            assert!(
                shipped
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{} =", spec.name))
                        || l.trim_start().starts_with(&format!("# {} =", spec.name))),
                "config.toml does not document cron.{}",
                spec.name
            );
        }
    }
}
