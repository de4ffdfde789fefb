//! PostgreSQL: the schema and its migrations. Each owner keeps its PostgreSQL steps beside its
//! SQLite ones (`<owner>/migrations/postgres/`, listed next to `MIGRATIONS` as
//! `POSTGRES_MIGRATIONS`), so a reader sees both dialects of a table together.
//!
//! PostgreSQL databases start at schema version 8, the schema of the release that introduced
//! them: each owner's version-8 step creates its tables as SQLite has them after its steps 1–8.
//! Every later version adds a step in both dialects. The version is kept in `hookrelay_schema`;
//! migrations run one version per transaction under an advisory lock, so two processes starting
//! together apply each step once.
//!
//! Types map one to one: `INTEGER` → `BIGINT` (`INTEGER PRIMARY KEY` → an identity column),
//! `TEXT` → `TEXT COLLATE "C"` (bytes compare and sort as in SQLite, whatever the database's
//! locale: ids page in the same order, and prefix `LIKE`s can use the indexes), `BLOB` →
//! `BYTEA`; constraints and partial indexes are the same.

use ::postgres::{Client, GenericClient, NoTls};
use anyhow::Context as _;

use super::{MigrationReport, Schema};

/// The first schema version a PostgreSQL database can have.
pub const FIRST_VERSION: usize = 8;

/// Key of the advisory lock migrations hold (any constant: "hookrelay" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_7265_6c61;

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
#[must_use]
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connects to `url` (a blocking client: call it off the async threads). A URL without a
/// password takes `$PGPASSWORD`, as PostgreSQL's own tools do, so that it need not appear on a
/// command line. The connection is made without TLS (`sslmode=require` is refused).
///
/// # Errors
/// When `url` is not a PostgreSQL URL or the server cannot be reached or refuses the login.
pub fn connect(url: &str) -> anyhow::Result<Client> {
    config(url)?
        .connect(NoTls)
        .with_context(|| format!("connecting to {}", crate::redact::url(url)))
}

/// The client settings of `url`, with `$PGPASSWORD` when it has no password.
///
/// # Errors
/// As [`connect`], before connecting.
pub fn config(url: &str) -> anyhow::Result<::postgres::Config> {
    session_config(url).map(Into::into)
}

/// [`config`] for the store's own sessions ([`crate::sql::Connection::connect_postgres`]).
///
/// # Errors
/// As [`connect`], before connecting.
pub fn session_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    anyhow::ensure!(
        is_postgres_url(url),
        "expected a postgres:// (or postgresql://) URL"
    );
    let shown = crate::redact::url(url);
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("{shown} is not a valid PostgreSQL URL: {e}"))?;
    anyhow::ensure!(
        config.get_ssl_mode() != tokio_postgres::config::SslMode::Require,
        "{shown} asks for sslmode=require, but hookrelay connects to PostgreSQL without TLS: \
         use a private network, a loopback or an SSH tunnel, and drop sslmode=require"
    );
    if config.get_password().is_none()
        && let Some(password) = std::env::var_os("PGPASSWORD")
    {
        config.password(password.as_encoded_bytes());
    }
    Ok(config)
}

/// The channel replicas tell each other on that cached data changed (`NOTIFY`); the payload
/// names what: `webhooks`, `schedules`, or `jobs` (jobs were enqueued: wake the workers, sent
/// by the writer).
pub const CHANGES_CHANNEL: &str = "hookrelay_changes";

/// The payload of a `NOTIFY` that jobs were enqueued.
pub const JOBS_CHANGED: &str = "jobs";

/// Tells every replica, once `tx` commits, that `what` changed (nothing on SQLite, where this
/// process is the only one). PostgreSQL delivers a notification only if its transaction
/// commits, and to every session listening, this one's included.
///
/// # Errors
/// A database error.
pub fn notify_changed(tx: &crate::store::WriteTx<'_>, what: &str) -> crate::sql::Result<()> {
    if tx.dialect() == crate::sql::Dialect::Postgres {
        tx.execute(
            &format!("SELECT pg_notify('{CHANGES_CHANNEL}', ?1)::TEXT"),
            [what],
        )?;
    }
    Ok(())
}

/// How long a lost listening session waits before connecting again.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Listens on [`CHANGES_CHANNEL`] on a thread of its own until `stop`, and calls `changed`
/// with each notification's payload. After every (re)connection it calls `changed("*")`:
/// whatever was announced while it was not listening is unknown.
///
/// # Errors
/// When the thread cannot be started.
pub fn listen(
    url: &str,
    stop: tokio_util::sync::CancellationToken,
    changed: impl Fn(&str) + Send + 'static,
) -> std::io::Result<()> {
    use ::postgres::fallible_iterator::FallibleIterator as _;
    let url = url.to_string();
    std::thread::Builder::new()
        .name("hookrelay-listen".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                match connect(&url).and_then(|mut c| {
                    c.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
                    Ok(c)
                }) {
                    Ok(mut client) => {
                        changed("*");
                        while !stop.is_cancelled() {
                            // A wait of at most LISTEN_RETRY, to see whether to stop (a new
                            // iterator each time: one whose wait ran out stays run out).
                            let next = client.notifications().timeout_iter(LISTEN_RETRY).next();
                            match next {
                                Ok(Some(n)) => changed(n.payload()),
                                Ok(None) if client.is_closed() => {
                                    tracing::warn!("the session listening for changes on PostgreSQL closed; reconnecting");
                                    break;
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "listening for changes on PostgreSQL failed; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot listen for changes on PostgreSQL; retrying");
                    }
                }
                if !stop.is_cancelled() {
                    std::thread::sleep(LISTEN_RETRY);
                }
            }
        })
        .map(|_| ())
}

/// Each version's SQL from `schema`'s PostgreSQL steps, from [`FIRST_VERSION`] on.
fn versions(schema: Schema<'_>) -> Vec<(usize, String)> {
    let latest = schema
        .iter()
        .flat_map(|m| m.iter().map(|s| s.version))
        .max()
        .unwrap_or(0);
    (FIRST_VERSION..=latest)
        .map(|v| {
            let sql = schema
                .iter()
                .flat_map(|m| m.iter().filter(|s| s.version == v).map(|s| s.sql))
                .collect::<Vec<_>>()
                .join("\n");
            (v, sql)
        })
        .collect()
}

/// The tables `schema` creates, in the order it creates them (parents before the tables whose
/// foreign keys point at them).
#[must_use]
pub fn tables(schema: Schema<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (_, sql) in versions(schema) {
        let mut words = sql.split_whitespace().peekable();
        while let Some(w) = words.next() {
            if w.eq_ignore_ascii_case("CREATE")
                && words
                    .peek()
                    .is_some_and(|t| t.eq_ignore_ascii_case("TABLE"))
            {
                words.next();
                if let Some(name) = words.next() {
                    out.push(name.trim_matches('"').to_string());
                }
            }
        }
    }
    out
}

/// The schema version of the database behind `client`: 0 when it has none yet.
///
/// # Errors
/// A database error.
pub fn schema_version(client: &mut impl GenericClient) -> anyhow::Result<usize> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hookrelay_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = client
        .query_opt("SELECT version FROM hookrelay_schema", &[])?
        .map(|r| r.get(0));
    Ok(v.and_then(|v| usize::try_from(v).ok()).unwrap_or(0))
}

/// Applies the pending versions of `schema`'s PostgreSQL steps, one transaction each. Refuses a
/// database whose schema is newer than this binary.
///
/// # Errors
/// When a step fails or the database is newer than this binary knows.
pub fn migrate(client: &mut Client, schema: Schema<'_>) -> anyhow::Result<MigrationReport> {
    let steps = versions(schema);
    let latest = steps.last().map_or(0, |(v, _)| *v);
    let from = schema_version(client)?;
    for (version, sql) in steps {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS hookrelay_schema (version BIGINT NOT NULL)")?;
        let current = schema_version(&mut tx)?;
        if current > latest {
            anyhow::bail!(
                "the database schema is version {current}, newer than this hookrelay binary \
                 knows (version {latest}); run a newer hookrelay"
            );
        }
        if current >= version {
            continue;
        }
        tx.batch_execute(&sql)
            .with_context(|| format!("applying schema version {version}"))?;
        tx.execute("DELETE FROM hookrelay_schema", &[])?;
        tx.execute(
            "INSERT INTO hookrelay_schema (version) VALUES ($1)",
            &[&i64::try_from(version).unwrap_or(i64::MAX)],
        )?;
        tx.commit()?;
    }
    Ok(MigrationReport {
        from,
        to: schema_version(client)?.max(from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlite_table_has_a_postgres_twin_in_an_order_that_keeps_foreign_keys() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        crate::store::migrate(&mut conn, &crate::app::schema()).expect("migrate");
        let mut sqlite: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        sqlite.sort();
        let ordered = tables(&crate::app::postgres_schema());
        let mut pg = ordered.clone();
        pg.sort();
        assert_eq!(pg, sqlite);
        // Each table's foreign keys point at tables created before it.
        for (i, table) in ordered.iter().enumerate() {
            let parents: Vec<String> = conn
                .prepare(&format!(
                    "SELECT \"table\" FROM pragma_foreign_key_list('{table}')"
                ))
                .expect("prepare")
                .query_map([], |r| r.get(0))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            for p in parents {
                assert!(
                    ordered[..i].contains(&p),
                    "{table} refers to {p}, created later"
                );
            }
        }
    }

    #[test]
    fn both_dialects_reach_the_same_version() {
        assert_eq!(
            versions(&crate::app::postgres_schema())
                .last()
                .map(|(v, _)| *v),
            Some(crate::store::latest_version(&crate::app::schema()))
        );
    }

    #[test]
    fn the_writers_wake_up_is_a_jobs_notification_on_the_changes_channel() {
        assert_eq!(
            crate::store::writer::WAKE_REPLICAS,
            format!("SELECT pg_notify('{CHANGES_CHANNEL}', '{JOBS_CHANGED}')::TEXT")
        );
    }

    #[test]
    fn only_postgres_urls_are_taken() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite:///var/lib/hookrelay.db"));
    }
}
