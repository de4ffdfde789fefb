//! The command line (SPEC §1): `serve`, `check-config`, `migrate`, `backup`, `front id`,
//! `keys reencrypt`, `verify`. Every verb takes `--config`;
//! exit codes are 0 ok, 1 runtime or config error, 2 usage error (clap's own).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{self, Config, LogFormat};
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
        /// The X-Signature header value, e.g. "1=5f1d…" (several may be comma-separated).
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
    match crate::front::ids::convert(value, prefix) {
        Ok(crate::front::ids::Converted::ApiId(id)) => println!("{id}"),
        Ok(crate::front::ids::Converted::Decimal(n)) => println!("{n}"),
        Err(e) => {
            eprintln!("hookrelay: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn verify(secret: &str, signature: &str, algorithm: &str) -> ExitCode {
    use base64::Engine as _;
    use std::io::Read as _;
    let key = match secret.strip_prefix(crate::delivery::secrets::WHSEC_PREFIX) {
        Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
        None => hex::decode(secret.trim()).ok(),
    };
    let Some(key) = key else {
        eprintln!(
            "hookrelay: --secret must be the 64 hex chars shown at creation (or the whsec_ form)"
        );
        return ExitCode::from(2);
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("hookrelay: reading the body from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let algorithm = algorithm.parse().unwrap_or_default();
    if crate::delivery::sign::verify_x_signature(algorithm, &key, signature, &body) {
        println!(
            "signature verifies ({algorithm}, {} body bytes)",
            body.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "signature does NOT verify ({algorithm}, {} body bytes); expected {}=<{}>",
            body.len(),
            signature.split('=').next().unwrap_or("1"),
            crate::delivery::sign::hmac_hex(algorithm, &key, &body)
        );
        ExitCode::FAILURE
    }
}

fn reencrypt(cfg: &Config) -> anyhow::Result<()> {
    let _lock = crate::app::lock_database(&cfg.database.path)
        .context("stop hookrelay serve first: it must not sign with secrets being re-encrypted")?;
    let mut conn = store::open_write_connection(&cfg.database.path, cfg.database.synchronous)?;
    store::migrate(&mut conn)?;
    // Unknown key ids are reported row by row below; only a missing generated key file is
    // refused up front (it must not be replaced by a new key).
    let stored = crate::delivery::secrets::SealedInventory {
        key_ids: crate::delivery::webhooks::sealed_key_ids(&conn)?,
    };
    let keyring = crate::delivery::secrets::Keyring::from_config_unchecked(cfg, &stored)?;
    let (done, current, unreadable) =
        crate::delivery::webhooks::reencrypt_all(&mut conn, &keyring)?;
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
    let toml = cfg.redacted_toml().context("printing the configuration")?;
    match path {
        Some(p) => println!("# configuration is valid: {} + environment", p.display()),
        None => println!("# configuration is valid: built-in defaults + environment"),
    }
    print!("{toml}");
    Ok(())
}

fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let _lock = crate::app::lock_database(&cfg.database.path).context(
        "migrate needs the database to itself (serve applies migrations at start anyway)",
    )?;
    let report = store::migrate_file(&cfg.database)?;
    if report.from == report.to {
        println!(
            "{}: schema is up to date (version {})",
            cfg.database.path.display(),
            report.to
        );
    } else {
        println!(
            "{}: schema migrated from version {} to {}",
            cfg.database.path.display(),
            report.from,
            report.to
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

/// Sets up `tracing` per `log.format`; `RUST_LOG` overrides the default `info` level.
pub fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,r2d2=warn"));
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
