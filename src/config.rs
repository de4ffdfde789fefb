//! Configuration: figment layers, lowest first — built-in defaults → the TOML file →
//! `HOOKRELAY_<SECTION>__<KEY>` env vars → the seed's `FRONT_WEBHOOK_SECRET` / `FRONT_API_TOKEN` —
//! extracted into [`RawConfig`] (unknown keys rejected by name) and then validated once into the
//! typed [`Config`] the rest of the program uses. Nothing outside this module reads the
//! environment or parses a duration.
//!
//! Only env vars of the shape `HOOKRELAY_<SECTION>__<KEY>` are config; `HOOKRELAY_CONFIG` names the
//! file, and any other `HOOKRELAY_*` variable (a tool's own) is ignored.
//!
//! Secrets are [`Secret`]s: their `Debug` and `Serialize` print `[redacted]`, so neither logs nor
//! `check-config` can leak them. Every secret key `x` also accepts `x_file`. Error messages are
//! written here from figment's error parts (key, source, expected type), never from its
//! `Display`, and never show the value of a key that [`is_secret_key`] names a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Source};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod sources;
pub mod tasks;
pub use sources::{Locator, SourceConfig};
pub use tasks::{CatchUp, Overlap, ScheduleDef, TasksConfig};

/// Env var naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "HOOKRELAY_CONFIG";
/// Prefix of the env vars that override config keys (`HOOKRELAY_SERVER__BIND`).
pub const ENV_PREFIX: &str = "HOOKRELAY_";
/// The most retry waits a webhook (or the global default) may list.
pub const MAX_RETRY_SCHEDULE: usize = 10;

/// Words that make a key secret wherever they appear in its name (`auth.publish_tokens`,
/// `delivery.previous_encryption_keys`, `sources.<name>.secret`, `database.url`, every `*_file`
/// of a secret): no error message ever shows such a key's value. `url` is among them because a
/// URL can carry a password (`postgres://user:pass@…`).
const SECRET_WORDS: [&str; 6] = ["token", "secret", "key", "passw", "credential", "url"];

/// The seed's own env var names (`FRONT_WEBHOOK_SECRET`, `FRONT_API_TOKEN`) and the keys they set.
const SEED_ENV: [(&str, &str); 2] = [
    ("FRONT_WEBHOOK_SECRET", "front.webhook_secret"),
    ("FRONT_API_TOKEN", "front.api_token"),
];

/// Whether the value of the dotted `key` is a secret: by name, see [`SECRET_WORDS`].
#[must_use]
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or env could not be read or did not fit the schema. The message names key, source
    /// and expected type, and never holds the value of a secret key.
    #[error("{0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("`{key}` {origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    /// `--config` or `HOOKRELAY_CONFIG` names a file that does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let mut lines: Vec<String> = Vec::new();
        for one in e {
            let line = describe_load_error(&one);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        Self::Load(lines.join("\n"))
    }
}

/// A secret string. `Debug`, `Display` and `Serialize` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// A secret as written in TOML or env: figment reads `FRONT_API_TOKEN=12345` as a number, so accept
/// numbers and booleans too and keep their text.
#[derive(Clone, Serialize)]
#[serde(transparent)]
struct RawSecret(String);

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            S(String),
            I(i64),
            U(u64),
            F(f64),
            B(bool),
        }
        Ok(Self(match Any::deserialize(d)? {
            Any::S(s) => s,
            Any::I(n) => n.to_string(),
            Any::U(n) => n.to_string(),
            Any::F(n) => n.to_string(),
            Any::B(b) => b.to_string(),
        }))
    }
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

// ---------------------------------------------------------------------------------------------
// Raw layer: what figment extracts. Every section has defaults and rejects unknown keys.
// ---------------------------------------------------------------------------------------------

/// The configuration as read, before validation.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    server: RawServer,
    database: RawDatabase,
    auth: RawAuth,
    front: RawFront,
    delivery: RawDelivery,
    jobs: RawJobs,
    retention: RawRetention,
    cron: RawCron,
    backup: RawBackup,
    log: RawLog,
    sources: BTreeMap<String, sources::RawSource>,
    tasks: tasks::RawTasks,
    schedules: BTreeMap<String, tasks::RawSchedule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    bind: String,
    max_body_bytes: u64,
    shutdown_grace: String,
    body_timeout: String,
    max_connections: u32,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 1_048_576,
            shutdown_grace: "30s".into(),
            body_timeout: "10s".into(),
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawDatabase {
    /// Unset means [`DEFAULT_DATABASE_PATH`]; kept apart so that setting it beside `url` is
    /// an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_file: Option<PathBuf>,
    synchronous: String,
    pool_size: u32,
}

/// The SQLite file when `database.path` is not set.
pub const DEFAULT_DATABASE_PATH: &str = "data/hookrelay.db";

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            url_file: None,
            synchronous: "full".into(),
            pool_size: 8,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token_file: Option<PathBuf>,
    publish_tokens: Vec<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_tokens_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_header: Option<String>,
    admin_emails: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawFront {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_webhook_secret: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_webhook_secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token_file: Option<PathBuf>,
    api_base_url: String,
    allowed_link_hosts: Vec<String>,
    timestamp_tolerance: String,
    api_requests_per_minute: u32,
    fetch_history: bool,
}

impl Default for RawFront {
    fn default() -> Self {
        Self {
            enabled: true,
            webhook_secret: None,
            webhook_secret_file: None,
            rule_webhook_secret: None,
            rule_webhook_secret_file: None,
            api_token: None,
            api_token_file: None,
            api_base_url: "https://api2.frontapp.com".into(),
            allowed_link_hosts: vec!["api2.frontapp.com".into(), "*.api.frontapp.com".into()],
            timestamp_tolerance: "5m".into(),
            api_requests_per_minute: 50,
            fetch_history: false,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawDelivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_key: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_key_file: Option<PathBuf>,
    previous_encryption_keys: Vec<RawSecret>,
    timeout: String,
    retry_schedule: Vec<String>,
    allow_http: bool,
    allow_private_networks: bool,
    auto_disable_after: String,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            encryption_key: None,
            encryption_key_file: None,
            previous_encryption_keys: Vec::new(),
            timeout: "3s".into(),
            retry_schedule: vec!["3s".into(), "6s".into(), "12s".into()],
            allow_http: false,
            allow_private_networks: false,
            auto_disable_after: "5d".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawJobs {
    workers: u32,
    lease: String,
    max_lag: String,
}

impl Default for RawJobs {
    fn default() -> Self {
        Self {
            workers: 16,
            lease: "60s".into(),
            max_lag: "5m".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawRetention {
    succeeded: String,
    failed: String,
    rejected: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self {
            succeeded: "7d".into(),
            failed: "30d".into(),
            rejected: "7d".into(),
        }
    }
}

/// `[cron]` as written: task name → expression. Which names exist is the tasks' business: the
/// app checks them against the tasks registered at start (an unknown one names its key).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(transparent)]
struct RawCron(BTreeMap<String, String>);

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawBackup {
    dir: PathBuf,
    keep: u32,
}

impl Default for RawBackup {
    fn default() -> Self {
        Self {
            dir: "data/backups".into(),
            keep: 7,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed layer: what the program uses.
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub front: FrontConfig,
    pub delivery: DeliveryConfig,
    pub jobs: JobsConfig,
    pub retention: RetentionConfig,
    pub cron: CronConfig,
    pub backup: BackupConfig,
    pub log: LogConfig,
    /// Inbound webhook sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// How task calls are made.
    pub tasks: TasksConfig,
    /// Schedules from the configuration, by name.
    pub schedules: BTreeMap<String, ScheduleDef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub bind: String,
    pub max_body_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    /// A request body not received in full by then is answered 408 and its connection closed.
    #[serde(serialize_with = "ser_duration")]
    pub body_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
}

/// SQLite's `synchronous` setting: `full` makes every acked write survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    /// The value for `PRAGMA synchronous`.
    #[must_use]
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    /// The SQLite file (also the folder of generated keys and backups); unused with `url`.
    pub path: PathBuf,
    /// `database.url`: PostgreSQL instead of SQLite.
    pub url: Option<Secret>,
    pub synchronous: Synchronous,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    /// `None` until the app generates one at start (see [`crate::app`]).
    pub admin_token: Option<Secret>,
    pub publish_tokens: Vec<Secret>,
    pub identity_header: Option<String>,
    pub admin_emails: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrontConfig {
    pub enabled: bool,
    pub webhook_secret: Option<Secret>,
    pub rule_webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    pub api_base_url: String,
    pub allowed_link_hosts: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub timestamp_tolerance: Duration,
    pub api_requests_per_minute: u32,
    pub fetch_history: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryConfig {
    pub encryption_key: Option<Secret>,
    pub previous_encryption_keys: Vec<Secret>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "ser_durations")]
    pub retry_schedule: Vec<Duration>,
    pub allow_http: bool,
    pub allow_private_networks: bool,
    #[serde(serialize_with = "ser_duration")]
    pub auto_disable_after: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobsConfig {
    pub workers: usize,
    #[serde(serialize_with = "ser_duration")]
    pub lease: Duration,
    /// `/readyz` fails when the oldest due job has waited longer than this.
    #[serde(serialize_with = "ser_duration")]
    pub max_lag: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionConfig {
    #[serde(serialize_with = "ser_duration")]
    pub succeeded: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub failed: Duration,
    /// How long rejected inbound requests are kept.
    #[serde(serialize_with = "ser_duration")]
    pub rejected: Duration,
}

/// One cron entry: off, or a parsed 6-field expression.
#[derive(Debug, Clone)]
pub enum Schedule {
    Off,
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
    },
}

impl Schedule {
    /// The expression as configured, or `"off"`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Off => "off",
            Self::Cron { expr, .. } => expr,
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct CronConfig {
    /// Task name → schedule, for the tasks `[cron]` sets; the others run on their defaults.
    pub schedules: BTreeMap<String, Schedule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupConfig {
    pub dir: PathBuf,
    pub keep: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn ser_durations<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        ds.iter()
            .map(|d| humantime::format_duration(*d).to_string()),
    )
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Which config file to read: `--config`, else `HOOKRELAY_CONFIG`, else `./config.toml` if present,
/// else none (built-in defaults).
#[must_use]
pub fn resolve_path(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("config.toml");
    local.exists().then_some(local)
}

/// The full layer stack for `path`, including the environment.
///
/// # Errors
/// [`ConfigError::MissingFile`] when `path` is given but does not exist.
pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(p) = path {
        if !p.exists() {
            return Err(ConfigError::MissingFile(p.to_path_buf()));
        }
        fig = fig.merge(Toml::file_exact(p));
    }
    // Only `HOOKRELAY_<SECTION>__<KEY>` names are config; `HOOKRELAY_CONFIG` (the file) and a
    // tool's own `HOOKRELAY_BIN` are not even seen. (`Env::filter` gets the name in its original
    // case, so a test like `k.as_str() != "config"` never matched `CONFIG`: one `filter_map` that
    // checks the shape and maps it to a dotted key is both the filter and the split.)
    let fig = fig
        .merge(Env::prefixed(ENV_PREFIX).filter_map(|k| env_key(k.as_str()).map(Into::into)))
        .merge(Env::raw().filter_map(|k| {
            SEED_ENV
                .iter()
                .find(|(name, _)| k == *name)
                .map(|(_, key)| (*key).into())
        }));
    Ok(fig)
}

/// The dotted config key that an env var name stands for, given the part after [`ENV_PREFIX`]:
/// `SERVER__BIND` → `server.bind`, `SOURCES__STRIPE__SECRET` → `sources.stripe.secret`. Any other
/// shape (`CONFIG`, `BIN`, `FOO`, `__X`) is not config: `None`.
fn env_key(name: &str) -> Option<String> {
    let segments: Vec<&str> = name.trim().split("__").collect();
    let well_formed = segments.len() >= 2
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    well_formed.then(|| segments.join(".").to_ascii_lowercase())
}

/// The env var that set the dotted `key` (or a key below it): `HOOKRELAY_AUTH__PUBLISH_TOKENS`,
/// or one of the seed's names.
fn env_var_for(key: &str) -> String {
    let below = format!("{key}.");
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| {
            let name = name.to_string_lossy().trim().to_string();
            let rest = name
                .get(..ENV_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
                .map(|_| &name[ENV_PREFIX.len()..])?;
            let k = env_key(rest)?;
            (k == key || k.starts_with(&below)).then_some(name)
        })
        .collect();
    names.sort();
    names.into_iter().next().unwrap_or_else(|| {
        format!(
            "{ENV_PREFIX}{}",
            key.to_ascii_uppercase().replace('.', "__")
        )
    })
}

/// `(in FILE)`, `(from env var NAME)` or `(built-in default)`: where the value of `key` came from.
fn describe_origin(md: Option<&figment::Metadata>, key: &str) -> String {
    let Some(md) = md else {
        return "(built-in default)".into();
    };
    match &md.source {
        Some(Source::File(p)) => format!("(in {})", p.display()),
        _ if md.name.contains(ENV_PREFIX) => format!("(from env var {})", env_var_for(key)),
        _ if md.name.contains("environment") => match SEED_ENV.iter().find(|(_, k)| key == *k) {
            Some((name, _)) => format!("(from env var {name})"),
            None => "(from env var FRONT_WEBHOOK_SECRET or FRONT_API_TOKEN)".into(),
        },
        Some(Source::Code(_)) | None => "(built-in default)".into(),
        Some(other) => format!("(in {other})"),
    }
}

// ---------------------------------------------------------------------------------------------
// Error messages: built from figment's `kind`, `path` and metadata, never from its `Display`
// (which shows values, secrets included, and keys as `default.server.bind`).
// ---------------------------------------------------------------------------------------------

/// One extraction error as a sentence: key, origin, what was expected.
fn describe_load_error(e: &figment::Error) -> String {
    use figment::error::Kind;
    // A list entry's path ends in its index: `delivery.retry_schedule.0`.
    let index = e
        .path
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(e.path.len());
    let key = e.path[..index].join(".");
    let entry = e.path.get(index).and_then(|i| i.parse::<usize>().ok());
    let origin = describe_origin(e.metadata.as_ref(), &key);
    let from_env = origin.starts_with("(from env");
    let secret = is_secret_key(&key);
    let subject = match (key.is_empty(), entry) {
        (true, _) => format!("the configuration {origin}"),
        (false, None) => format!("`{key}` {origin}"),
        (false, Some(i)) => format!("`{key}` {origin}, entry {}", i + 1),
    };
    let expected = |serde_expected: &str| describe_expected(&key, serde_expected, entry.is_some());
    match &e.kind {
        Kind::Message(m) if e.path.is_empty() && m.starts_with("TOML parse error") => {
            let file = match e.metadata.as_ref().and_then(|md| md.source.as_ref()) {
                Some(Source::File(file)) => Some(file.as_path()),
                _ => None,
            };
            describe_toml_parse_error(file, m)
        }
        // Reading the file failed: an I/O message, no values in it.
        Kind::Message(m) if e.path.is_empty() => format!("{subject}: {m}"),
        Kind::UnknownField(field, known) => {
            let parent = e.path.len().checked_sub(1).map(|n| e.path[..n].join("."));
            let list = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            match parent.filter(|p| !p.is_empty()) {
                Some(p) => format!("{subject}: unknown key `{field}`; `[{p}]` has {list}"),
                None => format!("{subject}: unknown section `{field}`; the sections are {list}"),
            }
        }
        Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _)
            if is_number(actual) && default_is_duration(&key) =>
        {
            let mut m =
                format!("{subject}: a duration is a string with a unit, e.g. \"3s\", \"5m\"");
            if !secret {
                let n = number_text(actual);
                // In TOML the string needs quotes; an env var's value is a string already.
                let write = if from_env {
                    format!("{n}s")
                } else {
                    format!("\"{n}s\"")
                };
                m.push_str(&format!(
                    " (found the number {n}; write {write} for {n} seconds)"
                ));
            }
            m
        }
        Kind::InvalidType(actual, serde_expected) | Kind::InvalidValue(actual, serde_expected) => {
            format!(
                "{subject}: expected {}, found {}",
                expected(serde_expected),
                describe_actual(actual, secret)
            )
        }
        // Custom messages (an untagged enum's "did not match") may quote the value.
        Kind::Message(_) if secret => format!("{subject}: expected {}", expected("")),
        Kind::Message(m) => format!("{subject}: {m}; expected {}", expected("")),
        _ if secret => format!(
            "{subject}: has a value of the wrong shape; expected {}",
            expected("")
        ),
        other => format!("{subject}: {other}"),
    }
}

/// What a value of `key` (or with `entry`, one entry of its list) should look like, from its
/// built-in default, or from serde's `expected` text for keys without one.
fn describe_expected(key: &str, serde_expected: &str, entry: bool) -> String {
    use figment::value::Value;
    let secret = is_secret_key(key);
    if entry {
        return if default_is_duration(key) {
            "a duration: a string with a unit, e.g. \"3s\", \"5m\"".into()
        } else {
            "a string".into()
        };
    }
    let list_example = || {
        let last = key.rsplit('.').next().unwrap_or(key);
        let word = ["token", "key", "secret", "email", "host"]
            .into_iter()
            .find(|w| last.contains(w))
            .map_or("item", |w| match w {
                "token" => "tok",
                other => other,
            });
        format!("a list of strings, like [\"{word}1\",\"{word}2\"]")
    };
    match default_value(key) {
        Some(Value::String(_, s)) if is_duration_text(&s) => {
            "a duration: a string with a unit, e.g. \"3s\", \"5m\"".into()
        }
        Some(Value::String(_, s)) if !secret => format!("a string, like {s:?}"),
        Some(Value::String(..)) => "a string".into(),
        Some(Value::Array(_, items)) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if !texts.is_empty()
                && texts.len() == items.len()
                && texts.iter().all(|t| is_duration_text(t))
            {
                format!("a list of durations, like {texts:?}")
            } else if !texts.is_empty() && !secret {
                format!("a list of strings, like {texts:?}")
            } else {
                list_example()
            }
        }
        Some(Value::Num(_, n)) => match n.to_u128() {
            Some(n) => format!("a whole number, like {n}"),
            None => "a number".into(),
        },
        Some(Value::Bool(..)) => "true or false".into(),
        Some(Value::Dict(..)) => "a table (a [section] in TOML)".into(),
        _ if key.ends_with("_file") => "a file path (a string)".into(),
        _ if serde_expected.contains("sequence") => list_example(),
        _ if serde_expected.contains("bool") => "true or false".into(),
        _ if serde_expected.starts_with('u') || serde_expected.starts_with('i') => {
            "a whole number".into()
        }
        _ => "a string".into(),
    }
}

/// The built-in default of the dotted `key`, if it has one.
fn default_value(key: &str) -> Option<figment::value::Value> {
    if key.is_empty() {
        return None;
    }
    figment::value::Value::serialize(RawConfig::default())
        .ok()?
        .find(key)
}

/// Whether `key` takes a duration (or a list of them), judged by its default.
fn default_is_duration(key: &str) -> bool {
    use figment::value::Value;
    match default_value(key) {
        Some(Value::String(_, s)) => is_duration_text(&s),
        Some(Value::Array(_, items)) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|v| v.as_str().is_some_and(is_duration_text))
        }
        _ => false,
    }
}

/// `"30s"`, `"5m"`, `"7d"`: digits then a unit, as humantime reads it.
fn is_duration_text(s: &str) -> bool {
    let s = s.trim();
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.contains(|c: char| c.is_ascii_alphabetic())
        && humantime::parse_duration(s).is_ok()
}

fn is_number(actual: &figment::error::Actual) -> bool {
    use figment::error::Actual;
    matches!(
        actual,
        Actual::Signed(_) | Actual::Unsigned(_) | Actual::Float(_)
    )
}

fn number_text(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Signed(n) => n.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        _ => "3".into(),
    }
}

/// What was found instead; for a secret key only its type.
fn describe_actual(actual: &figment::error::Actual, secret: bool) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Str(s) if !secret => format!("the string {s:?}"),
        Actual::Signed(_) | Actual::Unsigned(_) | Actual::Float(_) if !secret => {
            format!("the number {}", number_text(actual))
        }
        Actual::Bool(b) if !secret => b.to_string(),
        Actual::Str(_) | Actual::Char(_) => "a string".into(),
        Actual::Signed(_) | Actual::Unsigned(_) | Actual::Float(_) => "a number".into(),
        Actual::Bool(_) => "true or false".into(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Unit | Actual::Option => "nothing".into(),
        _ => "a value of another type".into(),
    }
}

/// A TOML syntax error in `file`, re-told without the offending line when that line belongs to
/// a secret key (or when the file cannot be read again to tell), and with a hint when the bad
/// value is a duration without quotes.
fn describe_toml_parse_error(file: Option<&Path>, message: &str) -> String {
    let mut lines = message.lines();
    let head = lines.next().unwrap_or_default();
    // "TOML parse error at line 2, column 20"
    let position = head
        .strip_prefix("TOML parse error at line ")
        .and_then(|rest| rest.split_once(", column "))
        .and_then(|(l, c)| {
            Some((
                l.trim().parse::<usize>().ok()?,
                c.trim().parse::<usize>().ok()?,
            ))
        });
    let (snippet, description): (Vec<&str>, Vec<&str>) = lines.partition(|l| {
        let t = l.trim_start();
        t.starts_with('|')
            || t.split_once('|')
                .is_some_and(|(n, _)| n.trim().parse::<usize>().is_ok())
    });
    let description = description
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let name = file.map_or_else(|| "the TOML text".to_string(), |f| f.display().to_string());
    let text = file.and_then(|f| std::fs::read_to_string(f).ok());
    let context = position
        .zip(text.as_deref())
        .and_then(|((line, col), text)| toml_context(text, line, col));
    let Some(ctx) = context else {
        // Without the text we cannot tell whose line it is: show no line at all.
        let at = position.map_or(String::new(), |(l, c)| format!(", line {l}, column {c}"));
        return format!("(in {name}{at}): not valid TOML: {description}");
    };
    let subject = match &ctx.key {
        Some(k) => format!("`{k}` (in {name}, line {})", ctx.line),
        None => format!("(in {name}, line {})", ctx.line),
    };
    let mut m = format!("{subject}: not valid TOML: {description}");
    if ctx.secret {
        m.push_str(" (the line is not shown: it holds a secret; strings need quotes, e.g. \"…\")");
        return m;
    }
    if let Some(bare) = ctx.bare_duration {
        m.push_str(&format!(
            "; a duration is a string with a unit and needs quotes: write \"{bare}\", not {bare}"
        ));
    }
    for l in snippet {
        m.push('\n');
        m.push_str(l);
    }
    m
}

/// What a TOML syntax error at `line`/`col` (1-based) is about.
struct TomlContext {
    line: usize,
    /// The dotted key whose value holds the error, when one can be told.
    key: Option<String>,
    /// The key, or the text from its line to the error, names a secret.
    secret: bool,
    /// The word at the error looks like a duration written without quotes (`30s`).
    bare_duration: Option<String>,
}

fn toml_context(text: &str, line: usize, col: usize) -> Option<TomlContext> {
    let all: Vec<&str> = text.lines().collect();
    let bad = *all.get(line.checked_sub(1)?)?;
    let mut table: Option<String> = None;
    let mut key_at: Option<(usize, String)> = None;
    for (i, l) in all.iter().enumerate().take(line) {
        let t = l.trim();
        if t.starts_with('[') {
            table = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            key_at = None;
        } else if !t.starts_with('#')
            && let Some((k, _)) = t.split_once('=')
        {
            let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                key_at = Some((i, k.to_string()));
            }
        }
    }
    let key = match (&table, &key_at) {
        (Some(t), Some((_, k))) => Some(format!("{t}.{k}")),
        (None, Some((_, k))) => Some(k.clone()),
        (Some(t), None) => Some(t.clone()),
        (None, None) => None,
    };
    let from = key_at.as_ref().map_or(line - 1, |(i, _)| *i);
    let secret = key.as_deref().is_some_and(is_secret_key)
        || all[from..line].iter().any(|l| is_secret_key(l));
    let chars: Vec<char> = bad.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '.';
    // The column points into the word (`30s`: at the `s`), or just after it.
    let at = [col.saturating_sub(1), col.saturating_sub(2)]
        .into_iter()
        .find(|&i| chars.get(i).is_some_and(|&c| is_word(c)));
    let bare_duration = at.and_then(|i| {
        let start = chars[..i]
            .iter()
            .rposition(|&c| !is_word(c))
            .map_or(0, |p| p + 1);
        let end = chars[i..]
            .iter()
            .position(|&c| !is_word(c))
            .map_or(chars.len(), |p| i + p);
        let word: String = chars[start..end].iter().collect();
        is_duration_text(&word).then_some(word)
    });
    Some(TomlContext {
        line,
        key,
        secret,
        bare_duration,
    })
}

/// Loads and validates the configuration from `path` and the environment.
///
/// # Errors
/// Any [`ConfigError`]: unreadable file, unknown key, bad value; the message names key and source.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    from_figment(&figment(path)?)
}

/// Built-in defaults overlaid with a TOML string only (no environment) — for tests and benchmarks.
///
/// # Errors
/// As [`load`].
pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
    from_figment(
        &Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(toml)),
    )
}

/// Validates the merged layers into a [`Config`].
///
/// # Errors
/// As [`load`].
pub fn from_figment(fig: &Figment) -> Result<Config, ConfigError> {
    let raw: RawConfig = fig.extract()?;
    Validator { fig }.validate(raw)
}

struct Validator<'a> {
    fig: &'a Figment,
}

impl Validator<'_> {
    /// Where the value of `key` came from, for error messages.
    fn origin(&self, key: &str) -> String {
        describe_origin(self.fig.find_metadata(key), key)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    fn duration(&self, key: &str, value: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(value.trim()).map_err(|e| {
            let shown = if is_secret_key(key) {
                "the value".to_string()
            } else {
                format!("`{value}`")
            };
            self.invalid(
                key,
                format!("{shown} is not a duration ({e}); write e.g. \"3s\", \"5m\", \"7d\""),
            )
        })
    }

    fn positive_duration(&self, key: &str, value: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(key, value)?;
        if d.is_zero() {
            return Err(self.invalid(key, "must be longer than zero"));
        }
        Ok(d)
    }

    /// A secret given inline as `key` or as a file at `key_file`, not both.
    fn secret(
        &self,
        key: &str,
        inline: Option<RawSecret>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{key}_file");
        let value = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &file_key,
                    format!("set either `{key}` or `{file_key}`, not both"),
                ));
            }
            (Some(s), None) => s.0,
            (None, Some(path)) => read_secret_file(&path)
                .map_err(|e| self.invalid(&file_key, format!("{}: {e}", path.display())))?,
            (None, None) => return Ok(None),
        };
        if value.is_empty() {
            return Ok(None);
        }
        Ok(Some(Secret(value)))
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server = ServerConfig {
            bind: {
                let valid = raw
                    .server
                    .bind
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !valid {
                    return Err(self.invalid(
                        "server.bind",
                        format!(
                            "`{}` is not a listen address; write host:port, e.g. 127.0.0.1:8080",
                            raw.server.bind
                        ),
                    ));
                }
                raw.server.bind
            },
            max_body_bytes: match usize::try_from(raw.server.max_body_bytes) {
                Ok(n) if n > 0 => n,
                _ => return Err(self.invalid("server.max_body_bytes", "must be at least 1")),
            },
            shutdown_grace: self.duration("server.shutdown_grace", &raw.server.shutdown_grace)?,
            body_timeout: self
                .positive_duration("server.body_timeout", &raw.server.body_timeout)?,
            max_connections: match raw.server.max_connections {
                0 => return Err(self.invalid("server.max_connections", "must be at least 1")),
                n => n as usize,
            },
        };

        let url = self.secret("database.url", raw.database.url, raw.database.url_file)?;
        if let Some(url) = &url {
            if raw.database.path.is_some() {
                return Err(self.invalid(
                    "database.url",
                    "set either `database.path` (SQLite) or `database.url` (PostgreSQL), not both",
                ));
            }
            check_postgres_url(url.expose()).map_err(|m| self.invalid("database.url", m))?;
        }
        let database = DatabaseConfig {
            path: {
                let path = raw
                    .database
                    .path
                    .unwrap_or_else(|| DEFAULT_DATABASE_PATH.into());
                if path.as_os_str().is_empty() {
                    return Err(self.invalid("database.path", "must not be empty"));
                }
                path
            },
            url,
            synchronous: match raw.database.synchronous.to_ascii_lowercase().as_str() {
                "full" => Synchronous::Full,
                "normal" => Synchronous::Normal,
                other => {
                    return Err(self.invalid(
                        "database.synchronous",
                        format!("`{other}` is not `full` or `normal`"),
                    ));
                }
            },
            pool_size: match raw.database.pool_size {
                0 => return Err(self.invalid("database.pool_size", "must be at least 1")),
                n => n,
            },
        };

        let mut publish_tokens: Vec<Secret> = raw
            .auth
            .publish_tokens
            .into_iter()
            .map(|s| Secret(s.0))
            .filter(|s| !s.0.is_empty())
            .collect();
        if let Some(path) = raw.auth.publish_tokens_file {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.invalid(
                    "auth.publish_tokens_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            publish_tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            );
        }
        let auth = AuthConfig {
            admin_token: self.secret(
                "auth.admin_token",
                raw.auth.admin_token,
                raw.auth.admin_token_file,
            )?,
            publish_tokens,
            identity_header: match raw.auth.identity_header.map(|h| h.trim().to_string()) {
                Some(h) if h.is_empty() => None,
                Some(h) => {
                    if actix_web::http::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return Err(self.invalid(
                            "auth.identity_header",
                            format!("`{h}` is not a valid HTTP header name"),
                        ));
                    }
                    Some(h)
                }
                None => None,
            },
            admin_emails: raw.auth.admin_emails,
        };

        let front = FrontConfig {
            enabled: raw.front.enabled,
            webhook_secret: self.secret(
                "front.webhook_secret",
                raw.front.webhook_secret,
                raw.front.webhook_secret_file,
            )?,
            rule_webhook_secret: self.secret(
                "front.rule_webhook_secret",
                raw.front.rule_webhook_secret,
                raw.front.rule_webhook_secret_file,
            )?,
            api_token: self.secret(
                "front.api_token",
                raw.front.api_token,
                raw.front.api_token_file,
            )?,
            api_base_url: {
                let u = raw.front.api_base_url.trim_end_matches('/').to_string();
                match url::Url::parse(&u) {
                    Ok(parsed)
                        if matches!(parsed.scheme(), "http" | "https")
                            && parsed.host_str().is_some() => {}
                    _ => {
                        return Err(self.invalid(
                            "front.api_base_url",
                            // A URL may carry a password: the value is not repeated.
                            "must be an absolute http(s) URL, e.g. https://api2.frontapp.com",
                        ));
                    }
                }
                u
            },
            allowed_link_hosts: raw
                .front
                .allowed_link_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            timestamp_tolerance: self
                .positive_duration("front.timestamp_tolerance", &raw.front.timestamp_tolerance)?,
            api_requests_per_minute: match raw.front.api_requests_per_minute {
                0 => {
                    return Err(self.invalid("front.api_requests_per_minute", "must be at least 1"));
                }
                n => n,
            },
            fetch_history: raw.front.fetch_history,
        };

        let encryption_key = self.secret(
            "delivery.encryption_key",
            raw.delivery.encryption_key,
            raw.delivery.encryption_key_file,
        )?;
        if let Some(k) = &encryption_key {
            parse_encryption_key(k.expose())
                .map_err(|m| self.invalid("delivery.encryption_key", m))?;
        }
        let previous_encryption_keys: Vec<Secret> = raw
            .delivery
            .previous_encryption_keys
            .into_iter()
            .map(|s| Secret(s.0))
            .collect();
        for k in &previous_encryption_keys {
            parse_encryption_key(k.expose())
                .map_err(|m| self.invalid("delivery.previous_encryption_keys", m))?;
        }
        let retry_schedule = self.retry_schedule(&raw.delivery.retry_schedule)?;
        let delivery = DeliveryConfig {
            encryption_key,
            previous_encryption_keys,
            timeout: self.positive_duration("delivery.timeout", &raw.delivery.timeout)?,
            retry_schedule,
            allow_http: raw.delivery.allow_http,
            allow_private_networks: raw.delivery.allow_private_networks,
            auto_disable_after: self.positive_duration(
                "delivery.auto_disable_after",
                &raw.delivery.auto_disable_after,
            )?,
        };

        let jobs = JobsConfig {
            // 0: this process runs no jobs (ingest only); queued jobs wait.
            workers: raw.jobs.workers as usize,
            lease: {
                let d = self.positive_duration("jobs.lease", &raw.jobs.lease)?;
                if d < Duration::from_secs(1) {
                    return Err(self.invalid("jobs.lease", "must be at least 1s"));
                }
                d
            },
            max_lag: self.positive_duration("jobs.max_lag", &raw.jobs.max_lag)?,
        };

        let retention = RetentionConfig {
            succeeded: self.positive_duration("retention.succeeded", &raw.retention.succeeded)?,
            failed: self.positive_duration("retention.failed", &raw.retention.failed)?,
            rejected: self.positive_duration("retention.rejected", &raw.retention.rejected)?,
        };

        let mut schedules = BTreeMap::new();
        for (name, expr) in &raw.cron.0 {
            let key = format!("cron.{name}");
            schedules.insert(
                name.clone(),
                parse_schedule(expr).map_err(|m| self.invalid(&key, m))?,
            );
        }

        let backup = BackupConfig {
            dir: raw.backup.dir,
            keep: match raw.backup.keep {
                0 => return Err(self.invalid("backup.keep", "must be at least 1")),
                n => n,
            },
        };

        let log = LogConfig {
            format: match raw.log.format.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(
                        self.invalid("log.format", format!("`{other}` is not `text` or `json`"))
                    );
                }
            },
        };

        let tasks = self.tasks(raw.tasks)?;
        if database.url.is_some() {
            // A key generated into one host's data folder would differ on every replica: each
            // must seal and sign with the same ones.
            if delivery.encryption_key.is_none() {
                return Err(self.invalid(
                    "delivery.encryption_key",
                    "is required with database.url: every replica must decrypt the same \
                     webhook secrets (generate one with `openssl rand -base64 32`)",
                ));
            }
            if tasks.signing_secret.is_none() {
                return Err(self.invalid(
                    "tasks.signing_secret",
                    "is required with database.url: every replica must sign task calls with \
                     the same key (a whsec_ key: `echo whsec_$(openssl rand -base64 32)`)",
                ));
            }
        }

        Ok(Config {
            server,
            database,
            auth,
            front,
            delivery,
            jobs,
            retention,
            cron: CronConfig { schedules },
            backup,
            log,
            sources: self.sources(raw.sources)?,
            tasks,
            schedules: self.schedules(raw.schedules)?,
        })
    }

    fn retry_schedule(&self, raw: &[String]) -> Result<Vec<Duration>, ConfigError> {
        parse_retry_schedule(raw).map_err(|m| self.invalid("delivery.retry_schedule", m))
    }
}

/// Parses a list of humantime waits (at most [`MAX_RETRY_SCHEDULE`]).
///
/// # Errors
/// A message naming the bad entry.
pub fn parse_retry_schedule(raw: &[String]) -> Result<Vec<Duration>, String> {
    if raw.len() > MAX_RETRY_SCHEDULE {
        return Err(format!(
            "has {} entries; at most {MAX_RETRY_SCHEDULE} retries are allowed",
            raw.len()
        ));
    }
    raw.iter()
        .map(|s| {
            humantime::parse_duration(s.trim())
                .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"3s\", \"5m\""))
        })
        .collect()
}

/// Parses a cron entry: `"off"` or a 6-field expression (with seconds), the dialect
/// tokio-cron-scheduler runs.
///
/// # Errors
/// A message saying what is wrong with the expression.
pub fn parse_schedule(expr: &str) -> Result<Schedule, String> {
    let expr = expr.trim();
    if expr.eq_ignore_ascii_case("off") {
        return Ok(Schedule::Off);
    }
    if expr.split_whitespace().count() != 6 {
        return Err(format!(
            "`{expr}` must have 6 fields (sec min hour day month weekday) or be \"off\""
        ));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        // As tokio-cron-scheduler parses it, so next-run times agree with when it ticks.
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
    Ok(Schedule::Cron {
        expr: expr.to_string(),
        cron: Box::new(cron),
    })
}

/// Decodes `delivery.encryption_key`: 64 hex chars, base64 of 32 bytes, or a 32-character string.
///
/// # Errors
/// A message saying which forms are accepted.
pub fn parse_encryption_key(value: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let v = value.trim();
    if v.len() == 64
        && let Ok(bytes) = hex::decode(v)
    {
        return bytes
            .try_into()
            .map_err(|_| "internal: hex length".to_string());
    }
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        if let Ok(bytes) = engine.decode(v)
            && bytes.len() == 32
        {
            return bytes
                .try_into()
                .map_err(|_| "internal: base64 length".to_string());
        }
    }
    if v.len() == 32 {
        return v
            .as_bytes()
            .try_into()
            .map_err(|_| "internal: string length".to_string());
    }
    Err("must be 32 bytes: 64 hex chars (`openssl rand -hex 32`), base64 of 32 bytes, or a 32-character string".into())
}

/// Why `url` cannot be a `database.url`, if it cannot (the message never repeats the URL: it
/// holds a password).
fn check_postgres_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a postgres:// (or postgresql://) URL".into());
    }
    let config: ::postgres::Config = url
        .parse()
        .map_err(|e| format!("is not a valid PostgreSQL URL: {e}"))?;
    if config.get_ssl_mode() == ::postgres::config::SslMode::Require {
        return Err(
            "asks for sslmode=require, but hookrelay connects to PostgreSQL without \
                    TLS: use a private network or a tunnel, and drop sslmode=require"
                .into(),
        );
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let mut s = std::fs::read_to_string(path)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

impl Config {
    /// The effective configuration as TOML with every secret shown as `[redacted]`.
    ///
    /// # Errors
    /// Only if serialization fails, which would be a bug.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// The folder holding the database file (for the generated encryption key and backups).
    #[must_use]
    pub fn database_dir(&self) -> PathBuf {
        self.database
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = from_toml_str("").expect("defaults are valid");
        assert_eq!(c.server.bind, "127.0.0.1:8080");
        assert_eq!(c.server.max_body_bytes, 1_048_576);
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.database.synchronous, Synchronous::Full);
        assert_eq!(c.database.pool_size, 8);
        assert_eq!(
            c.delivery.retry_schedule,
            vec![
                Duration::from_secs(3),
                Duration::from_secs(6),
                Duration::from_secs(12)
            ]
        );
        assert_eq!(c.jobs.workers, 16);
        assert_eq!(c.jobs.lease, Duration::from_secs(60));
        assert_eq!(c.retention.succeeded, Duration::from_secs(7 * 86_400));
        // The cron tasks' defaults are theirs: see `app::tests::cron_defaults_match_the_spec`.
        assert!(c.cron.schedules.is_empty());
        assert!(c.front.enabled && c.auth.admin_token.is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = from_toml_str("[server]\nbindd = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bindd"), "{e}");
        let e = from_toml_str("[nope]\na = 1").unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = from_toml_str("[server]\nshutdown_grace = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.shutdown_grace") && e.contains("soon"),
            "{e}"
        );
        let e = from_toml_str("[cron]\nretention = \"* * *\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cron.retention"), "{e}");
        let e = from_toml_str("[database]\nsynchronous = \"off\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.synchronous"), "{e}");
        let e = from_toml_str("[delivery]\nencryption_key = \"short\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("delivery.encryption_key") && !e.contains("short"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let c =
            from_toml_str("[auth]\nadmin_token = \"hunter2hunter2\"\n[front]\napi_token = 12345")
                .expect("valid");
        assert_eq!(
            c.front.api_token.as_ref().map(Secret::expose),
            Some("12345")
        );
        let shown = format!("{c:?}\n{}", c.redacted_toml().expect("toml"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("12345"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn database_url_is_postgres_only_and_not_beside_a_path() {
        const KEYS: &str = "[delivery]\nencryption_key = \"0000000000000000000000000000000000000000000000000000000000000001\"\n\
                            [tasks]\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
        let url = "postgres://hookrelay:s3cret@db:5432/hookrelay";
        let c = from_toml_str(&format!("[database]\nurl = \"{url}\"\n{KEYS}")).expect("valid");
        assert_eq!(c.database.url.as_ref().map(Secret::expose), Some(url));
        let both = from_toml_str(&format!(
            "[database]\npath = \"x.db\"\nurl = \"{url}\"\n{KEYS}"
        ))
        .expect_err("both")
        .to_string();
        assert!(
            both.contains("database.path") && both.contains("database.url"),
            "{both}"
        );
        assert!(!both.contains("s3cret"), "{both}");
        let mysql = from_toml_str(&format!(
            "[database]\nurl = \"mysql://u:s3cret@db/x\"\n{KEYS}"
        ))
        .expect_err("not postgres")
        .to_string();
        assert!(
            mysql.contains("database.url") && !mysql.contains("s3cret"),
            "{mysql}"
        );
        let tls = from_toml_str(&format!(
            "[database]\nurl = \"{url}?sslmode=require\"\n{KEYS}"
        ))
        .expect_err("tls")
        .to_string();
        assert!(tls.contains("sslmode=require"), "{tls}");
        let keyless = from_toml_str(&format!("[database]\nurl = \"{url}\""))
            .expect_err("no encryption key")
            .to_string();
        assert!(keyless.contains("delivery.encryption_key"), "{keyless}");
    }

    #[test]
    fn secret_files_strip_one_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tok");
        std::fs::write(&p, "abc\n\n").expect("write");
        let c = from_toml_str(&format!("[auth]\nadmin_token_file = {:?}", p)).expect("valid");
        assert_eq!(
            c.auth.admin_token.as_ref().map(Secret::expose),
            Some("abc\n")
        );
        let e = from_toml_str(&format!(
            "[auth]\nadmin_token = \"x\"\nadmin_token_file = {:?}",
            p
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth.admin_token_file"), "{e}");
    }

    #[test]
    fn encryption_key_forms() {
        let hex64 = "00".repeat(32);
        assert_eq!(parse_encryption_key(&hex64), Ok([0u8; 32]));
        assert_eq!(
            parse_encryption_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Ok([0u8; 32])
        );
        assert_eq!(parse_encryption_key(&"a".repeat(32)), Ok([b'a'; 32]));
        assert!(parse_encryption_key("abc").is_err());
    }

    /// Every key the schema accepts, by section, as serde lists them when one is unknown.
    /// Sections that are maps (`[cron]`: task names, checked against the registered tasks by
    /// `app::tests`) accept any key and are left out.
    fn known_keys() -> Vec<(String, Vec<String>)> {
        let unknown = |toml: &str| -> Option<Vec<String>> {
            let e = Figment::from(Serialized::defaults(RawConfig::default()))
                .merge(Toml::string(toml))
                .extract::<RawConfig>()
                .err()?;
            match e.kind {
                figment::error::Kind::UnknownField(_, known) => {
                    Some(known.iter().map(|k| (*k).to_string()).collect())
                }
                // A map section took the key and only disliked its value.
                figment::error::Kind::InvalidType(..) => None,
                other => panic!("not an unknown-key error: {other}"),
            }
        };
        unknown("zzz_unknown = 1")
            .expect("an unknown top-level key")
            .into_iter()
            .filter_map(|section| {
                let keys = unknown(&format!("[{section}]\nzzz_unknown = 1"))?;
                Some((section, keys))
            })
            .collect()
    }

    #[test]
    fn the_shipped_config_documents_every_key() {
        let shipped = include_str!("../config.toml");
        // section → [(key, documented by a comment line in its paragraph)]
        let mut found: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        let (mut section, mut commented) = (String::new(), false);
        for line in shipped.lines().map(str::trim) {
            if line.is_empty() {
                commented = false;
            } else if let Some(name) = line.strip_prefix('[') {
                section = name.trim_end_matches(']').to_string();
                commented = false;
            } else {
                let (is_comment, body) = match line.strip_prefix('#') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let key = body.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
                match key {
                    Some(k) => found
                        .entry(section.clone())
                        .or_default()
                        .push((k.to_string(), commented)),
                    None if is_comment => commented = true,
                    None => {}
                }
            }
        }
        for (section, keys) in known_keys() {
            for key in &keys {
                // `x_file` is documented once, at the top, for every secret `x`.
                if key
                    .strip_suffix("_file")
                    .is_some_and(|base| keys.iter().any(|k| k == base))
                {
                    continue;
                }
                let entry = found
                    .get(&section)
                    .and_then(|ks| ks.iter().find(|(k, _)| k == key));
                match entry {
                    Some((_, true)) => {}
                    Some((_, false)) => panic!("config.toml: `{section}.{key}` has no comment"),
                    None => panic!("config.toml does not mention `{section}.{key}`"),
                }
            }
        }
        // And it is valid as shipped.
        from_toml_str(shipped).expect("config.toml is valid");
    }

    #[test]
    fn the_production_config_sets_the_server_limits() {
        let production = include_str!("../deploy/config.production.toml");
        for key in ["body_timeout", "max_connections"] {
            assert!(
                production.contains(&format!("\n{key} = ")),
                "deploy/config.production.toml lacks server.{key}"
            );
        }
    }

    #[test]
    fn env_names_are_config_only_in_section_key_shape() {
        assert_eq!(env_key("SERVER__BIND").as_deref(), Some("server.bind"));
        assert_eq!(
            env_key("SOURCES__STRIPE__SECRET").as_deref(),
            Some("sources.stripe.secret")
        );
        assert_eq!(
            env_key("AUTH__PUBLISH_TOKENS").as_deref(),
            Some("auth.publish_tokens")
        );
        for not_config in [
            "CONFIG", "BIN", "FOO", "FOO_BAR", "__X", "X__", "A____B", "A__B-C", "",
        ] {
            assert_eq!(env_key(not_config), None, "{not_config}");
        }
    }

    #[test]
    fn secret_keys_are_known_by_name() {
        for secret in [
            "auth.admin_token",
            "auth.publish_tokens",
            "auth.admin_token_file",
            "front.webhook_secret",
            "front.rule_webhook_secret",
            "front.api_token",
            "delivery.encryption_key",
            "delivery.previous_encryption_keys",
            "sources.stripe.secret",
            "sources.github.secrets",
            "tasks.signing_secret",
            "database.url",
            "database.password",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in [
            "server.bind",
            "delivery.timeout",
            "backup.keep",
            "jobs.workers",
        ] {
            assert!(!is_secret_key(plain), "{plain}");
        }
    }

    /// Defaults and one TOML file, as `load` reads it but without the environment.
    fn from_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write");
        let e = from_figment(
            &Figment::from(Serialized::defaults(RawConfig::default()))
                .merge(Toml::file_exact(&path)),
        )
        .expect_err("an invalid config")
        .to_string();
        (dir, e)
    }

    #[test]
    fn wrong_types_name_key_file_and_expected_type_without_the_profile() {
        let (_d, e) = from_file("[server]\nbind = 8080\n");
        assert!(
            e.contains("`server.bind` (in ")
                && e.contains("config.toml)")
                && e.contains("expected a string, like \"127.0.0.1:8080\"")
                && e.contains("found the number 8080"),
            "{e}"
        );
        assert!(!e.contains("default."), "{e}");
        let (_d, e) = from_file("[server]\nbindd = \"x\"\n");
        assert!(
            e.contains("`server.bindd`") && e.contains("unknown key") && !e.contains("default."),
            "{e}"
        );
        let (_d, e) = from_file("[jobs]\nworkers = \"many\"\n");
        assert!(
            e.contains("`jobs.workers`") && e.contains("a whole number"),
            "{e}"
        );
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        for (toml, value) in [
            ("[auth]\npublish_tokens = \"tok-AAA\"\n", "tok-AAA"),
            ("[auth]\npublish_tokens = [[\"tok-BBB\"]]\n", "tok-BBB"),
            ("[auth]\nadmin_token = [\"tok-CCC\"]\n", "tok-CCC"),
            ("[auth]\nadmin_token = tok-DDD\n", "tok-DDD"),
            (
                "[auth]\npublish_tokens = [\n  \"a\",\n  tok-EEE,\n]\n",
                "tok-EEE",
            ),
            ("front = { api_token = tok-FFF }\n", "tok-FFF"),
            (
                "[delivery]\nprevious_encryption_keys = \"key-GGG\"\n",
                "key-GGG",
            ),
            ("[delivery]\nencryption_key = \"key-HHH\"\n", "key-HHH"),
            ("[front]\nwebhook_secret = { a = \"sec-III\" }\n", "sec-III"),
            (
                "[front]\napi_base_url = \"ftp://user:pass-JJJ@x\"\n",
                "pass-JJJ",
            ),
        ] {
            let (_d, e) = from_file(toml);
            assert!(!e.contains(value), "{value} shown in: {e}");
            assert!(e.contains('`'), "names a key: {e}");
        }
        let (_d, e) = from_file("[auth]\npublish_tokens = \"tok-AAA\"\n");
        assert!(
            e.contains("`auth.publish_tokens` (in ")
                && e.contains("expected a list of strings, like [\"tok1\",\"tok2\"]"),
            "{e}"
        );
        // Without the file to look at, a syntax error shows no line at all.
        let e = from_toml_str("[auth]\nadmin_token = tok-KKK\n")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("tok-KKK") && e.contains("not valid TOML"),
            "{e}"
        );
    }

    #[test]
    fn durations_without_quotes_get_a_hint() {
        let (_d, e) = from_file("[delivery]\ntimeout = 3\n");
        assert!(
            e.contains("`delivery.timeout` (in ")
                && e.contains("a duration is a string with a unit, e.g. \"3s\", \"5m\"")
                && e.contains("write \"3s\""),
            "{e}"
        );
        let (_d, e) = from_file("[delivery]\nretry_schedule = [\"3s\", 6]\n");
        assert!(
            e.contains("`delivery.retry_schedule`")
                && e.contains("entry 2")
                && e.contains("\"6s\""),
            "{e}"
        );
        let (_d, e) = from_file("[server]\nshutdown_grace = 30s\n");
        assert!(
            e.contains("`server.shutdown_grace`")
                && e.contains("line 2")
                && e.contains("write \"30s\", not 30s"),
            "{e}"
        );
        // Not every syntax error is a duration.
        let (_d, e) = from_file("[server]\nbind = 127.0.0.1:80\n");
        assert!(
            e.contains("`server.bind`") && !e.contains("duration"),
            "{e}"
        );
    }

    #[test]
    fn schedules_need_six_fields() {
        assert!(matches!(parse_schedule("off"), Ok(Schedule::Off)));
        assert!(parse_schedule("*/15 * * * * *").is_ok());
        assert!(parse_schedule("* * * * *").is_err());
        assert!(parse_schedule("99 * * * * *").is_err());
    }
}
