//! The command line: `serve`, `check-config`, `migrate`, `backup`, `front id`,
//! `keys reencrypt`, `verify`. Every verb takes `--config`;
//! exit codes are 0 ok, 1 runtime or config error, 2 usage error (clap's own).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Config, LogFormat};
use crate::delivery::secrets::SECRET_LEN;
use crate::delivery::sign::Algorithm;
use crate::store;

/// A webhook hub in one binary: verified Front ingress, durable jobs, signed outbound webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookrelay", version, propagate_version = true)]
pub struct Cli {
    /// Config file. Default: $HOOKRELAY_CONFIG, else ./config.toml if present, else built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: HTTP server, job workers, cron. Stops gracefully on SIGTERM or SIGINT.
    Serve,
    /// Load and validate the configuration, print it with every secret redacted.
    CheckConfig,
    /// Apply database schema migrations and exit (serve also applies them at start).
    Migrate,
    /// Write a consistent snapshot of the database (database.path) into the new file DEST.
    ///
    /// Safe while `hookrelay serve` runs and takes writes: the snapshot holds every transaction
    /// committed when it started. The copy is one self-contained SQLite file (no -wal needed),
    /// checked with PRAGMA integrity_check before it gets its name. DEST's folder is created if
    /// missing; an existing DEST is never overwritten.
    Backup {
        /// The snapshot file to create, e.g. /var/backups/hookrelay-2026-01-25.db.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Copy this SQLite database (database.path), stopped, into an empty PostgreSQL database.
    ///
    /// Every table and row as it is: ids, the encrypted secrets (the same encryption keys
    /// decrypt them), the queue and the history, in one transaction. The PostgreSQL schema is
    /// created first; a target whose tables hold any row is refused. The SQLite file must be at
    /// this binary's schema version (`hookrelay migrate`) and no `serve` may run on it.
    CopyDb {
        /// The target, e.g. postgres://hookrelay:PASSWORD@db.internal:5432/hookrelay.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Front helpers.
    Front {
        #[command(subcommand)]
        command: FrontCommand,
    },
    /// Encryption-key maintenance.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check a delivery's X-Signature against a body read from stdin: exit 0 if it verifies, 1 if
    /// not. For people debugging a receiver.
    Verify {
        /// The webhook secret as shown at creation: 64 hex chars (or its whsec_ form).
        #[arg(long)]
        secret: String,
        /// The X-Signature header value, e.g. "1=5f1d…" (several may be comma-separated), or
        /// the hex signature alone.
        #[arg(long)]
        signature: String,
        /// The webhook's signature_algorithm.
        #[arg(long, default_value = "sha256", value_parser = ["sha256", "sha512_256"])]
        algorithm: String,
    },
}

/// `hookrelay keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored webhook secret with the current delivery.encryption_key,
    /// decrypting with it or any of delivery.previous_encryption_keys.
    Reencrypt,
}

/// `hookrelay front …`
#[derive(Debug, Subcommand)]
pub enum FrontCommand {
    /// Convert a Front id both ways: a decimal UI id to `<prefix>_<base36>`, and any
    /// `xxx_<base36>` id back to its decimal (e.g. 6380615 <-> inb_3srbb).
    Id {
        /// A decimal id (from a Front UI URL) or an API id like `inb_3srbb`.
        value: String,
        /// Prefix for the API id made from a decimal id.
        #[arg(long, default_value = "inb")]
        prefix: String,
    },
}

/// Runs the parsed command line.
#[must_use]
pub fn run(cli: Cli) -> ExitCode {
    // Verbs that need no configuration run before it is loaded.
    match &cli.command {
        Command::Front {
            command: FrontCommand::Id { value, prefix },
        } => return front_id(value, prefix),
        Command::Verify {
            secret,
            signature,
            algorithm,
        } => return verify(secret, signature, algorithm),
        _ => {}
    }
    let path = config::resolve_path(cli.config.as_deref());
    let cfg = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hookrelay: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::CheckConfig => check_config(&cfg, path.as_deref()),
        Command::Migrate => {
            init_tracing(&cfg);
            migrate(&cfg)
        }
        Command::Serve => {
            init_tracing(&cfg);
            serve(cfg)
        }
        Command::Backup { dest } => backup(&cfg, &dest),
        Command::CopyDb { to } => copy_db(&cfg, &to),
        Command::Keys {
            command: KeysCommand::Reencrypt,
        } => reencrypt(&cfg),
        Command::Front { .. } | Command::Verify { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrelay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn front_id(value: &str, prefix: &str) -> ExitCode {
    match crate::front::front_id::convert(value, prefix) {
        Ok(crate::front::front_id::Converted::ApiId(id)) => println!("{id}"),
        Ok(crate::front::front_id::Converted::Decimal(n)) => println!("{n}"),
        Err(e) => {
            eprintln!("hookrelay: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Exit code for a usage error (as clap's own).
const USAGE_ERROR: u8 = 2;

fn verify(secret: &str, signature: &str, algorithm: &str) -> ExitCode {
    use std::io::Read as _;
    let key = match parse_verify_secret(secret) {
        Ok(k) => k,
        Err(m) => {
            eprintln!("hookrelay: --secret {m}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let signature = match XSignature::parse(signature) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("hookrelay: --signature {m}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let algorithm: Algorithm = match algorithm.parse() {
        Ok(a) => a,
        Err(m) => {
            eprintln!("hookrelay: --algorithm: {m}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("hookrelay: reading the body from stdin: {e}");
        return ExitCode::FAILURE;
    }
    if signature.verifies(algorithm, &key, &body) {
        println!(
            "signature verifies ({algorithm}, {} body bytes)",
            body.len()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "signature does NOT verify ({algorithm}, {} body bytes); expected {}",
        body.len(),
        signature.expected(algorithm, &key, &body)
    );
    let other = match algorithm {
        Algorithm::Sha256 => Algorithm::Sha512_256,
        Algorithm::Sha512_256 => Algorithm::Sha256,
    };
    if signature.verifies(other, &key, &body) {
        println!("it verifies with --algorithm {other}: check the webhook's signature_algorithm");
    } else if body.ends_with(b"\n") {
        println!(
            "the body ends with a newline: the signature covers the exact bytes sent \
             (echo adds one; use printf '%s' or a file)"
        );
    }
    ExitCode::FAILURE
}

/// A webhook signing secret as `verify` takes it: 64 hex chars, or `whsec_<base64>` of the same
/// 32 bytes.
///
/// # Errors
/// A message saying what a secret looks like (never repeating the value).
fn parse_verify_secret(secret: &str) -> Result<[u8; SECRET_LEN], String> {
    use base64::Engine as _;
    const SHAPE: &str = "must be the webhook's signing secret as shown when it was created: \
                         64 hex characters (32 bytes), or its whsec_<base64> form";
    let s = secret.trim();
    let bytes = match s.strip_prefix(crate::delivery::secrets::WHSEC_PREFIX) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .map_err(|_| format!("{SHAPE}; the part after whsec_ is not base64"))?,
        None if s.len() != 2 * SECRET_LEN => {
            return Err(format!(
                "{SHAPE}; this one has {} characters",
                s.chars().count()
            ));
        }
        None => hex::decode(s)
            .map_err(|_| format!("{SHAPE}; this one has characters other than 0-9 and a-f"))?,
    };
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("{SHAPE}; this whsec_ key holds {len} bytes, not {SECRET_LEN}"))
}

/// An `X-Signature` value as a person pastes it: bare hex, `id=hex`, or several `id=hex` joined
/// by `,`.
#[derive(Debug, PartialEq, Eq)]
struct XSignature {
    /// `(id, signature bytes)`; `id` is `None` for bare hex.
    entries: Vec<(Option<String>, Vec<u8>)>,
}

impl XSignature {
    /// # Errors
    /// A message saying what the value should look like.
    fn parse(value: &str) -> Result<Self, String> {
        const SHAPE: &str = "must be the X-Signature header value: `1=<64 hex chars>` (several \
                             joined by `,`), or the hex signature alone";
        let mut entries = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, sig) = match part.split_once('=') {
                Some((id, sig)) => (Some(id.trim().to_string()), sig.trim()),
                None => (None, part),
            };
            if id.as_deref().is_some_and(str::is_empty) {
                return Err(format!("{SHAPE}; `{part}` has no id before `=`"));
            }
            let bytes = hex::decode(sig)
                .map_err(|_| format!("{SHAPE}; `{part}` is not hex after the id"))?;
            entries.push((id, bytes));
        }
        if entries.is_empty() {
            return Err(format!("{SHAPE}; it is empty"));
        }
        Ok(Self { entries })
    }

    /// Whether any entry is the signature of `body` by `key` (compared in constant time).
    fn verifies(&self, algorithm: Algorithm, key: &[u8], body: &[u8]) -> bool {
        let header = self
            .entries
            .iter()
            .map(|(_, sig)| format!("0={}", hex::encode(sig)))
            .collect::<Vec<_>>()
            .join(",");
        crate::delivery::sign::verify_x_signature(algorithm, key, &header, body)
    }

    /// The right value in the form given: bare hex for bare hex, else `<first id>=<hex>`, so it
    /// can be pasted back.
    fn expected(&self, algorithm: Algorithm, key: &[u8], body: &[u8]) -> String {
        let hex = crate::delivery::sign::hmac_hex(algorithm, key, body);
        match self.entries.iter().find_map(|(id, _)| id.as_deref()) {
            Some(id) => format!("{id}={hex}"),
            None => hex,
        }
    }
}

fn reencrypt(cfg: &Config) -> anyhow::Result<()> {
    // On SQLite the lock file proves no serve runs; on PostgreSQL the operator stops every
    // replica first (the README says so).
    let (_lock, conn) = match &cfg.database.url {
        None => {
            let lock = crate::app::lock_database(&cfg.database.path).context(
                "stop hookrelay serve first: it must not sign with secrets being re-encrypted",
            )?;
            let mut conn =
                store::open_write_connection(&cfg.database.path, cfg.database.synchronous)?;
            store::migrate(&mut conn, &crate::app::schema())?;
            (Some(lock), crate::sql::Connection::from(conn))
        }
        Some(url) => {
            let mut client = store::postgres::connect(url.expose())?;
            store::postgres::migrate(&mut client, &crate::app::postgres_schema())?;
            drop(client);
            let config = store::postgres::session_config(url.expose())?;
            (
                None,
                crate::sql::Connection::connect_postgres(&config, false)?,
            )
        }
    };
    // Unknown key ids are reported row by row below; only a missing generated key file is
    // refused up front (it must not be replaced by a new key).
    let mut key_ids = crate::delivery::webhooks::sealed_key_ids(&conn)?;
    key_ids.extend(crate::tasks::sealed_key_ids(&conn)?);
    let stored = crate::delivery::secrets::SealedInventory { key_ids };
    let keyring = crate::delivery::secrets::Keyring::from_config_unchecked(cfg, &stored)?;
    // Webhook secrets and headers, task and schedule headers: one transaction.
    // Dropping the connection without COMMIT (on an error below) rolls the transaction back.
    conn.execute_batch(conn.dialect_sql("BEGIN IMMEDIATE", "BEGIN"))?;
    let tx = crate::store::WriteTx::over(&conn);
    let (mut done, mut current, mut unreadable) =
        crate::delivery::webhooks::reencrypt_all(&tx, &keyring)?;
    let (d, c, u) = crate::tasks::reencrypt_headers(&tx, &keyring)?;
    done += d;
    current += c;
    unreadable.extend(u);
    drop(tx);
    conn.execute_batch("COMMIT")?;
    println!(
        "re-encrypted {done} secret(s) with key {}; {current} already used it",
        keyring.current_id()
    );
    if unreadable.is_empty() {
        Ok(())
    } else {
        for u in &unreadable {
            eprintln!("cannot decrypt {u}");
        }
        anyhow::bail!(
            "{} secret(s) could not be decrypted with any configured key",
            unreadable.len()
        )
    }
}

fn backup(cfg: &Config, dest: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.database.url.is_none(),
        "the database is PostgreSQL (database.url): back it up with pg_dump, \
         e.g. `pg_dump --format=custom --file {} <database>`",
        dest.display()
    );
    let snap = crate::ops::backup::snapshot(&cfg.database.path, dest)?;
    println!(
        "wrote {}: {}, from {} ({} with its WAL) in {} ms; integrity_check {}",
        snap.path.display(),
        human_bytes(snap.bytes),
        cfg.database.path.display(),
        human_bytes(snap.source_bytes),
        snap.duration_ms,
        snap.integrity_check
    );
    Ok(())
}

fn copy_db(cfg: &Config, to: &str) -> anyhow::Result<()> {
    let _lock = crate::app::lock_database(&cfg.database.path)
        .context("copy-db needs the database stopped: stop `hookrelay serve` first")?;
    let report = crate::ops::copy_db::copy_db(
        &cfg.database.path,
        to,
        &crate::app::schema(),
        &crate::app::postgres_schema(),
    )?;
    for (table, rows) in &report.tables {
        println!("{table:<20} {rows:>10} rows");
    }
    let total: u64 = report.tables.iter().map(|(_, n)| n).sum();
    println!(
        "copied {} into {}: {total} rows in {} tables, schema version {}, in {} ms",
        cfg.database.path.display(),
        crate::redact::url(to),
        report.tables.len(),
        report.version,
        report.duration_ms
    );
    Ok(())
}

/// `123 bytes`, `4.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn check_config(cfg: &Config, path: Option<&Path>) -> anyhow::Result<()> {
    // The cron section as it will run: every task, configured or on its default.
    let mut effective = cfg.clone();
    effective.cron.schedules = crate::app::cron_schedules(cfg).map_err(|m| anyhow::anyhow!(m))?;
    let toml = effective
        .redacted_toml()
        .context("printing the configuration")?;
    match path {
        Some(p) => println!("# configuration is valid: {} + environment", p.display()),
        None => println!("# configuration is valid: built-in defaults + environment"),
    }
    print!("{toml}");
    Ok(())
}

fn migrate(cfg: &Config) -> anyhow::Result<()> {
    // On PostgreSQL each version is applied under an advisory lock instead.
    let (_lock, shown) = match &cfg.database.url {
        None => (
            Some(crate::app::lock_database(&cfg.database.path).context(
                "migrate needs the database to itself (serve applies migrations at start anyway)",
            )?),
            cfg.database.path.display().to_string(),
        ),
        Some(url) => (None, crate::redact::url(url.expose())),
    };
    let report = crate::app::migrate_file(&cfg.database)?;
    if report.from == report.to {
        println!("{shown}: schema is up to date (version {})", report.to);
    } else {
        println!(
            "{shown}: schema migrated from version {} to {}",
            report.from, report.to
        );
    }
    Ok(())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookrelay")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let app = Application::build(cfg).await?;
        app.run_until_stopped().await
    })
}

/// The log filter when `RUST_LOG` is unset: `info`, but libraries that narrate their own start
/// (actix-server's workers, tokio-cron-scheduler's "Uninited" and "Job creator created") only
/// from `warn` up.
pub const DEFAULT_LOG_FILTER: &str = "info,actix_server=warn,r2d2=warn,tokio_cron_scheduler=warn";

/// Sets up `tracing` per `log.format`; `RUST_LOG` overrides [`DEFAULT_LOG_FILTER`].
pub fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match cfg.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_secrets_are_32_bytes_in_hex_or_whsec_form() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_verify_secret(&hex64), Ok([0xab; 32]));
        let whsec = format!(
            "whsec_{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xab; 32])
        );
        assert_eq!(parse_verify_secret(&whsec), Ok([0xab; 32]));
        for bad in ["00", "", &"zz".repeat(32), "whsec_AAAA", "whsec_!!"] {
            let e = parse_verify_secret(bad).unwrap_err();
            assert!(e.contains("64 hex characters"), "{bad}: {e}");
        }
    }

    #[test]
    fn x_signature_forms() {
        let bare = XSignature::parse(" abcd ").expect("bare");
        assert_eq!(bare.entries, vec![(None, vec![0xab, 0xcd])]);
        let list = XSignature::parse("2=abcd, 1=00").expect("list");
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[0].0.as_deref(), Some("2"));
        assert_eq!(
            list.expected(Algorithm::Sha256, b"k", b"b")
                .split_once('=')
                .map(|p| p.0),
            Some("2")
        );
        assert!(!bare.expected(Algorithm::Sha256, b"k", b"b").contains('='));
        for bad in ["", ",", "=abcd", "1=xyz", "v1,abc="] {
            assert!(XSignature::parse(bad).is_err(), "{bad}");
        }
    }
}
