//! Storage, SQLite or PostgreSQL (`database.path` or `database.url`): connection settings,
//! migrations, a read pool, and the single [`Writer`]. Queries go through [`crate::sql`].
//!
//! Every write of the process goes through [`Writer`] (one thread, one connection, group commit);
//! reads use the r2d2 pool, whose connections are `query_only`. Both run off the async threads.
//! The store knows no table but its own (the audit log, kv): every other table belongs to the
//! module that uses it, which holds all SQL on it and its migrations ([`Migration`]); the store
//! runs what they hand it.

pub mod audit;
pub mod kv;
pub mod leader;
pub mod postgres;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::sql;
use rusqlite_migration::{M, MigrationDefinitionError, Migrations};
use tokio::sync::Notify;

pub use writer::{WriteTx, Writer};

use actix_web::http::StatusCode;

use crate::error::ApiError;

use crate::config::{DatabaseConfig, Synchronous};

/// How long a connection waits on a lock held by another connection (e.g. `hookrelay backup`).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size for new databases; must be set before the first table exists.
const PAGE_SIZE: u32 = 8192;
/// WAL file size kept after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// The write connection's page cache, in KiB (as `PRAGMA cache_size` takes it, negative).
///
/// Kept small on purpose: SQLite's b-tree balancing parks a page under the lock-byte page's
/// number (1 GiB / page size + 1) while it reorders siblings, and the commit that follows then
/// walks the whole page-cache hash to drop pages past the end of the file — a cost that grows
/// with the pages cached, paid on every commit. At 64 MiB (8,192 pages) that was about 250 µs a
/// commit and 8 % of the writer thread; at 8 MiB it is a few µs, and the pages the writer misses
/// come from the OS page cache.
const WRITER_CACHE_KIB: i64 = -8_192;
/// How long a reader waits for a pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// One step of the schema, owned by the module whose tables it creates or changes. Steps of
/// the same version from several owners are applied together, in the order the schema lists
/// the owners (lowest layer first), as one migration tracked in `PRAGMA user_version`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: usize,
    pub sql: &'static str,
}

/// Every owner's migrations, lowest layer first (assembled by the app).
pub type Schema<'a> = &'a [&'static [Migration]];

/// The store's own tables: the audit log, kv and the leases.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/0001_audit_kv.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("migrations/0009_leases.sql"),
    },
];

/// The same tables in PostgreSQL (see [`postgres`]).
pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 8,
        sql: include_str!("migrations/postgres/0008_audit_kv.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("migrations/postgres/0009_leases.sql"),
    },
];

/// Each version's SQL: the owners' steps of that version, in schema order.
fn versions(schema: Schema<'_>) -> Vec<String> {
    let latest = schema
        .iter()
        .flat_map(|m| m.iter().map(|s| s.version))
        .max()
        .unwrap_or(0);
    (1..=latest)
        .map(|v| {
            schema
                .iter()
                .flat_map(|owner| owner.iter().filter(|m| m.version == v).map(|m| m.sql))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write queue is full.
    #[error("the write queue is full")]
    Busy,
    /// The database could not be written (disk full, I/O error, read-only, locked too long).
    #[error("the database cannot be written: {0}")]
    Unavailable(String),
    /// The writer has stopped (the process is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A query failed.
    #[error("database error: {0}")]
    Query(sql::Error),
    /// No pooled connection became free in time.
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    /// Anything else (a panicked blocking task).
    #[error("{0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    /// Failures of the disk or the file (full, I/O, read-only, locked) become [`Self::Unavailable`],
    /// so that ingress answers 503 and the sender retries; everything else is a plain error.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(
                C::DiskFull
                | C::SystemIoFailure
                | C::ReadOnly
                | C::CannotOpen
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::DatabaseCorrupt
                | C::NotADatabase,
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Query(sql::Error::Sqlite(e)),
        }
    }
}

impl From<sql::Error> for StoreError {
    /// As for SQLite's errors; a PostgreSQL server that cannot be reached, is shutting down,
    /// is out of disk or refuses connections is [`Self::Unavailable`] too.
    fn from(e: sql::Error) -> Self {
        match e {
            sql::Error::Sqlite(e) => Self::from(e),
            sql::Error::Postgres(pg) => {
                use ::postgres::error::SqlState as S;
                // A lost connection or a server that cannot take the write; a value that
                // does not convert (no database error, connection open) is a plain error.
                let unavailable = pg.is_closed()
                    || (pg.as_db_error().is_none() && pg.to_string().contains("connection"))
                    || pg.code().is_some_and(|c| {
                        [
                            S::DISK_FULL,
                            S::INSUFFICIENT_RESOURCES,
                            S::OUT_OF_MEMORY,
                            S::TOO_MANY_CONNECTIONS,
                            S::ADMIN_SHUTDOWN,
                            S::CRASH_SHUTDOWN,
                            S::CANNOT_CONNECT_NOW,
                            S::READ_ONLY_SQL_TRANSACTION,
                            S::LOCK_NOT_AVAILABLE,
                            S::T_R_SERIALIZATION_FAILURE,
                            S::T_R_DEADLOCK_DETECTED,
                        ]
                        .contains(c)
                    });
                let e = sql::Error::Postgres(pg);
                if unavailable {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Query(e)
                }
            }
            other => Self::Query(other),
        }
    }
}

// How storage failures reach HTTP clients: busy and unwritable are 503s the sender retries.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_busy",
                "the write queue is full; retry shortly",
            )
            .with_retry_after(1),
            StoreError::Unavailable(reason) => {
                tracing::error!(%reason, "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the database cannot be written right now; nothing was stored, retry later",
                )
                .with_retry_after(5)
            }
            StoreError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the service is shutting down; nothing was stored, retry shortly",
            )
            .with_retry_after(5),
            StoreError::Pool(e) => {
                tracing::warn!(error = %e, "no read connection became free in time");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_busy",
                    "the database is busy; retry shortly",
                )
                .with_retry_after(1)
            }
            other => Self::internal(other),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::from(StoreError::from(e))
    }
}

impl From<sql::Error> for ApiError {
    fn from(e: sql::Error) -> Self {
        Self::from(StoreError::from(e))
    }
}

/// The read pool.
pub type Pool = r2d2::Pool<sql::Manager>;

/// Handle to the database: reads through the pool, writes through the writer.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    writer: Writer,
    path: PathBuf,
    postgres: bool,
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, starts the writer thread and
    /// the read pool. `wake` is notified after commits that enqueued jobs.
    ///
    /// # Errors
    /// When the folder cannot be created, the file cannot be opened, or migrations fail (including
    /// a database newer than this binary).
    pub fn open(
        cfg: &DatabaseConfig,
        wake: Arc<Notify>,
        schema: Schema<'_>,
        postgres_schema: Schema<'_>,
    ) -> anyhow::Result<Self> {
        if let Some(url) = &cfg.url {
            // The blocking client cannot start on an async thread: it opens on one of its own.
            return std::thread::scope(|s| {
                s.spawn(|| Self::open_postgres(url.expose(), cfg, wake, postgres_schema))
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("opening PostgreSQL panicked")))
            });
        }
        let mut conn = open_write_connection(&cfg.path, cfg.synchronous)?;
        migrate(&mut conn, schema)?;
        let writer = Writer::start(conn.into(), wake).context("starting the writer thread")?;
        let pool = read_pool(&cfg.path, cfg.synchronous, cfg.pool_size)?;
        Ok(Self {
            pool,
            writer,
            path: cfg.path.clone(),
            postgres: false,
        })
    }

    /// PostgreSQL: the same writer on one client, and a pool of clients whose transactions are
    /// read-only (as SQLite's read connections are `query_only`).
    fn open_postgres(
        url: &str,
        cfg: &DatabaseConfig,
        wake: Arc<Notify>,
        schema: Schema<'_>,
    ) -> anyhow::Result<Self> {
        let mut client = postgres::connect(url)?;
        postgres::migrate(&mut client, schema)?;
        drop(client);
        let shown = crate::redact::url(url);
        let mut config = postgres::session_config(url)?;
        let conn = sql::Connection::connect_postgres(&config, true)
            .with_context(|| format!("connecting to {shown}"))?;
        let writer = Writer::start(conn, wake).context("starting the writer thread")?;
        // Added to the URL's own `options` (a `search_path`, say), which writes use too.
        let options = match config.get_options() {
            Some(o) => format!("{o} -c default_transaction_read_only=on"),
            None => "-c default_transaction_read_only=on".to_string(),
        };
        config.options(&options);
        let pool = r2d2::Pool::builder()
            .max_size(cfg.pool_size)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .build(sql::Manager::Postgres(config))
            .with_context(|| format!("opening the read pool on {shown}"))?;
        Ok(Self {
            pool,
            writer,
            path: cfg.path.clone(),
            postgres: true,
        })
    }

    /// Which database this is.
    #[must_use]
    pub fn dialect(&self) -> sql::Dialect {
        if self.postgres {
            sql::Dialect::Postgres
        } else {
            sql::Dialect::Sqlite
        }
    }

    /// The single writer.
    #[must_use]
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a pooled read-only connection on the blocking thread pool.
    ///
    /// # Errors
    /// `f`'s error, or a pool/panic failure converted into `E`.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&sql::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(|e| E::from(StoreError::Pool(e)))?;
            f(&conn)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Internal(format!("read task failed: {e}")).into()))
    }

    /// Runs a short read on the calling thread when a pooled connection is free right now,
    /// else like [`Store::read`]. For point reads by key on a runtime that may block briefly (the
    /// job runtime): it saves the two thread hand-offs of [`Store::read`], and never waits for
    /// the pool on the calling thread.
    ///
    /// # Errors
    /// `f`'s error, or a pool error.
    pub async fn read_quick<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&sql::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if self.dialect() == sql::Dialect::Postgres {
            // A blocking client must not run on this async thread.
            return self.read(f).await;
        }
        match self.pool.try_get() {
            Some(conn) => f(&conn),
            None => self.read(f).await,
        }
    }
}

/// The WAL file beside a database file: `<db>-wal`.
#[must_use]
pub fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

/// Applies the connection settings every connection shares.
fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only takes effect on a new, empty database: it must come before WAL and the first table.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database refused WAL mode (journal_mode is {mode})"
            )),
        ));
    }
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    // Plans never depend on bound values. Without this, SQLite marks a cached statement whose
    // plan looked at a parameter (`LIMIT ?3`, a partial index matched against `?1`) to be
    // compiled again on every new binding — the writer re-parsed its busiest statements on
    // each run. None of our queries gains from a plan that depends on the value.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Opens the write connection, creating the parent folder and the file if missing.
///
/// # Errors
/// When the folder or file cannot be created or the settings cannot be applied.
pub fn open_write_connection(path: &Path, sync: Synchronous) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    create_private(path)?;
    let conn = Connection::open(path)
        .with_context(|| format!("opening the database {}", path.display()))?;
    configure(&conn, sync)
        .with_context(|| format!("configuring the database {}", path.display()))?;
    // The writer touches the same hot index pages batch after batch: keep them in memory
    // rather than re-reading them from the OS.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
        .with_context(|| format!("configuring the database {}", path.display()))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Creates the database file with mode 0600 when it does not exist yet: it holds encrypted
/// secrets and every payload, and SQLite gives its `-wal` and `-shm` files the database's mode.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(anyhow::Error::from(e).context(format!("creating the database {}", path.display())))
        }
    }
}

fn read_pool(path: &Path, sync: Synchronous, size: u32) -> anyhow::Result<Pool> {
    let manager = SqliteConnectionManager::file(path).with_init(move |c| {
        configure(c, sync)?;
        c.pragma_update(None, "query_only", "ON")
    });
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        // A local file connection does not go stale: no `SELECT 1` before every read.
        .test_on_check_out(false)
        .connection_timeout(POOL_TIMEOUT)
        .build(sql::Manager::Sqlite(manager))
        .with_context(|| format!("opening the read pool on {}", path.display()))
}

/// Schema versions: `(found, latest)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    pub from: usize,
    pub to: usize,
}

/// Applies pending migrations. Refuses a database whose schema is newer than this binary.
///
/// # Errors
/// When a migration fails or the database is newer than this binary knows.
pub fn migrate(conn: &mut Connection, schema: Schema<'_>) -> anyhow::Result<MigrationReport> {
    let sqls = versions(schema);
    let migrations = Migrations::new(sqls.iter().map(|s| M::up(s)).collect());
    let from = user_version(conn)?;
    let latest = sqls.len();
    if from > latest {
        anyhow::bail!(
            "the database schema is version {from}, newer than this hookrelay binary knows \
             (version {latest}); run a newer hookrelay, or restore a backup taken before the upgrade"
        );
    }
    migrations.to_latest(conn).map_err(|e| match e {
        rusqlite_migration::Error::MigrationDefinition(
            MigrationDefinitionError::DatabaseTooFarAhead,
        ) => {
            anyhow::anyhow!("the database schema is newer than this hookrelay binary knows")
        }
        other => anyhow::anyhow!("applying schema migrations: {other}"),
    })?;
    Ok(MigrationReport { from, to: latest })
}

/// The schema version stored in the database (`PRAGMA user_version`).
///
/// # Errors
/// When the pragma cannot be read.
pub fn user_version(conn: &Connection) -> anyhow::Result<usize> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("reading the schema version")?;
    Ok(usize::try_from(v).unwrap_or(0))
}

/// The schema version this binary migrates to.
#[must_use]
pub fn latest_version(schema: Schema<'_>) -> usize {
    versions(schema).len()
}

/// Opens the database at `cfg.path`, applies migrations and closes it (`hookrelay migrate`).
///
/// # Errors
/// As [`migrate`] and [`open_write_connection`].
pub fn migrate_file(
    cfg: &DatabaseConfig,
    schema: Schema<'_>,
    postgres_schema: Schema<'_>,
) -> anyhow::Result<MigrationReport> {
    if let Some(url) = &cfg.url {
        return std::thread::scope(|s| {
            s.spawn(|| postgres::migrate(&mut postgres::connect(url.expose())?, postgres_schema))
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("migrating PostgreSQL panicked")))
        });
    }
    let mut conn = open_write_connection(&cfg.path, cfg.synchronous)?;
    migrate(&mut conn, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        let schema = crate::app::schema();
        let sqls = versions(&schema);
        Migrations::new(sqls.iter().map(|s| M::up(s)).collect())
            .validate()
            .expect("migrations validate");
        for (i, sql) in sqls.iter().enumerate() {
            assert!(!sql.trim().is_empty(), "version {} has no migration", i + 1);
        }
    }

    #[test]
    fn new_database_gets_page_size_wal_and_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir/db.sqlite");
        let mut conn = open_write_connection(&path, Synchronous::Full).expect("open");
        let report = migrate(&mut conn, &crate::app::schema()).expect("migrate");
        assert_eq!(
            report,
            MigrationReport {
                from: 0,
                to: latest_version(&crate::app::schema())
            }
        );
        let page: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .expect("page");
        assert_eq!(page, i64::from(PAGE_SIZE));
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let again = migrate(&mut conn, &crate::app::schema()).expect("idempotent");
        assert_eq!(again.from, latest_version(&crate::app::schema()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
                .expect("write");
            for file in [
                path.clone(),
                wal_path(&path),
                path.with_extension("sqlite-shm"),
            ] {
                let mode = std::fs::metadata(&file)
                    .expect("exists")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
    }

    /// `CHECK (x IN ('a', 'b', 'c'))` of more than two values, which SQLite checks through a
    /// temporary b-tree built on every insert or update.
    fn in_list_checks(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql IS NOT NULL")
            .expect("schema");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .expect("rows");
        let mut found = Vec::new();
        for row in rows {
            let (name, sql) = row.expect("row");
            let mut rest = sql.as_str();
            while let Some(at) = rest.find("CHECK (") {
                rest = &rest[at + 7..];
                let clause = &rest[..rest.find("))").map_or(rest.len(), |e| e + 1)];
                if let Some((_, list)) = clause.split_once(" IN (")
                    && list.matches(',').count() >= 2
                {
                    found.push(format!("{name}: CHECK ({clause})"));
                }
            }
        }
        found
    }

    const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, payload, state, max_attempts, run_at, \
                              created_at, updated_at) VALUES (?1, 'k', '{}', ?2, 1, 0, 0, 0)";

    fn builds_temporary_btree(conn: &Connection, sql: &str) -> bool {
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect("explain");
        let mut rows = stmt
            .query(rusqlite::params![None::<String>, None::<String>])
            .expect("plan");
        while let Some(row) = rows.next().expect("row") {
            if row.get::<_, String>(1).expect("opcode") == "OpenEphemeral" {
                return true;
            }
        }
        false
    }

    #[test]
    fn checks_of_many_values_are_equality_chains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_write_connection(&dir.path().join("db.sqlite"), Synchronous::Normal)
            .expect("open");
        migrate(&mut conn, &crate::app::schema()).expect("migrate");
        assert_eq!(in_list_checks(&conn), Vec::<String>::new());
        // The connection that migrated uses the edited schema at once: no temporary b-tree.
        assert!(!builds_temporary_btree(&conn, INSERT_JOB));
    }

    /// A database of schema v7 with rows keeps them, and its constraints, through the in-place
    /// edit of v8.
    #[test]
    fn the_check_edit_keeps_rows_and_constraints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_write_connection(&dir.path().join("db.sqlite"), Synchronous::Normal)
            .expect("open");
        let v7: Vec<&'static [Migration]> = crate::app::schema()
            .iter()
            .map(|owner| {
                let kept: Vec<Migration> =
                    owner.iter().filter(|m| m.version <= 7).copied().collect();
                &*Box::leak(kept.into_boxed_slice())
            })
            .collect();
        assert_eq!(migrate(&mut conn, &v7).expect("v7").to, 7);
        assert!(!in_list_checks(&conn).is_empty(), "v7 has IN-list checks");
        assert!(builds_temporary_btree(&conn, INSERT_JOB));
        let insert = INSERT_JOB;
        conn.execute(insert, ["job_old", "retrying"])
            .expect("old row");

        let report = migrate(&mut conn, &crate::app::schema()).expect("latest");
        assert_eq!(report.from, 7);
        assert_eq!(in_list_checks(&conn), Vec::<String>::new());
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(check, "ok");
        let state: String = conn
            .query_row("SELECT state FROM jobs WHERE id = 'job_old'", [], |r| {
                r.get(0)
            })
            .expect("kept");
        assert_eq!(state, "retrying");
        conn.execute(insert, ["job_new", "cancelled"])
            .expect("a valid state");
        let err = conn
            .execute(insert, ["job_bad", "paused"])
            .expect_err("an unknown state is refused");
        assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
        // A connection opened afterwards reads the same schema.
        drop(conn);
        let conn = open_write_connection(&dir.path().join("db.sqlite"), Synchronous::Normal)
            .expect("reopen");
        assert_eq!(in_list_checks(&conn), Vec::<String>::new());
    }

    /// A cached statement whose plan reads a bound value (`LIMIT ?1`, a partial index matched
    /// against `?2`) keeps its compiled program across new bindings.
    #[test]
    fn cached_statements_are_not_compiled_again_for_new_bindings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_write_connection(&dir.path().join("db.sqlite"), Synchronous::Normal)
            .expect("open");
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE INDEX t_parked ON t (at) WHERE state = 'parked';
             INSERT INTO t (state, at) VALUES ('parked', 1), ('queued', 2), ('parked', 3);",
        )
        .expect("schema");
        let sql = "UPDATE t SET state = 'queued' WHERE id IN \
                   (SELECT id FROM t WHERE state = ?2 ORDER BY at LIMIT ?1)";
        for (limit, state) in [
            (1_i64, "parked"),
            (2, "parked"),
            (5, "queued"),
            (3, "parked"),
        ] {
            let mut stmt = conn.prepare_cached(sql).expect("prepare");
            stmt.execute(rusqlite::params![limit, state]).expect("run");
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "compiled again for LIMIT {limit}"
            );
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut conn = open_write_connection(&path, Synchronous::Normal).expect("open");
        migrate(&mut conn, &crate::app::schema()).expect("migrate");
        conn.pragma_update(None, "user_version", 999).expect("bump");
        let err = migrate(&mut conn, &crate::app::schema())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("newer than this hookrelay binary"), "{err}");
    }
}
