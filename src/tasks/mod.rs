//! Tasks and schedules: HTTP calls hookrelay makes for the app — later, durably, retried until
//! the app answers 2xx — and schedules that make one such call per tick.
//!
//! - [`store`]: all SQL on `tasks`, `task_attempts` and `schedules`.
//! - [`call`]: the `task.call` job, one signed call per attempt on delivery's locked-down client,
//!   with delivery's verdict rules (`Retry-After`, 410, redirects), and the error handler.
//! - [`schedules`]: the schedules in memory and their ticker; a tick's task is inserted with
//!   its unique key in the transaction that advances the schedule.
//! - [`routes`]: `POST /v1beta1/tasks`, the schedules API and the admin API.
//!
//! Tick times in a time zone, with the daylight-saving rules, are [`crate::clock::ticks`].

pub mod call;
pub mod routes;
pub mod schedules;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value};
use url::Url;

use crate::clock::Millis;
use crate::config::Config;
use crate::config::tasks::check_url_shape;
use crate::delivery::client::{DeliveryClient, literal_ip_allowed};
use crate::delivery::headers;
use crate::delivery::secrets::{Keyring, write_private};
use crate::events::Publisher;
use crate::jobs::{Handoff, Registry};
use crate::store::{Store, StoreError};

/// Where the generated signing secret is kept, in the database's folder.
pub const GENERATED_SECRET_FILE: &str = "tasks.secret";
/// The longest a task may wait for its first call.
pub const MAX_DELAY: Duration = crate::config::tasks::MAX_WAIT;

/// Which client may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Under one of `tasks.allowed_urls`: `http://`, loopback and private addresses allowed.
    Allowed,
    /// Anything else: the SSRF rules of outbound delivery.
    Guarded,
}

/// Which URLs tasks and schedules may call.
#[derive(Debug, Clone)]
pub struct Policy {
    allowed: Vec<Url>,
    allow_http: bool,
    allow_private: bool,
}

impl Policy {
    /// The policy of `config`.
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            allowed: config
                .tasks
                .allowed_urls
                .iter()
                .filter_map(|p| Url::parse(p).ok())
                .collect(),
            allow_http: config.delivery.allow_http,
            allow_private: config.delivery.allow_private_networks,
        }
    }

    /// Whether `url` may be called, and through which client.
    ///
    /// A URL is under an allowed prefix when its scheme, host and port are the prefix's and its
    /// path is the prefix's path or below it, segment by segment (so `http://127.0.0.1:3000/`
    /// does not allow `http://127.0.0.1:30001/`, nor `http://127.0.0.1:3000@evil.example/`, and
    /// `…/tasks` does not allow `…/tasks-admin`), with no encoded `/` or `\\` in it.
    ///
    /// # Errors
    /// Why it may not, for people.
    pub fn check(&self, url: &str) -> Result<(Url, Route), String> {
        let parsed = check_url_shape(url).map_err(|m| format!("url {m}"))?;
        // The path as sent, compared by segment; an encoded `/` or `\\` could step out of the
        // prefix once the app decodes it, so such a path is never under one.
        let path = parsed.path();
        let lower = path.to_ascii_lowercase();
        let encoded_separator = lower.contains("%2f") || lower.contains("%5c");
        let under = |p: &Url| {
            let prefix = p.path();
            p.scheme() == parsed.scheme()
                && p.host_str() == parsed.host_str()
                && p.port_or_known_default() == parsed.port_or_known_default()
                && !encoded_separator
                && (path == prefix
                    || (path.starts_with(prefix)
                        && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/'))))
        };
        if self.allowed.iter().any(under) {
            return Ok((parsed, Route::Allowed));
        }
        if parsed.scheme() == "http" && !self.allow_http {
            return Err(
                "http:// URLs may not be called: add the URL's prefix to tasks.allowed_urls (e.g. \"http://127.0.0.1:3000/\"), or set delivery.allow_http"
                    .into(),
            );
        }
        literal_ip_allowed(&parsed, self.allow_private)
            .map_err(|m| format!("{m}, or add the URL's prefix to tasks.allowed_urls"))?;
        Ok((parsed, Route::Guarded))
    }
}

/// What a task is to do, as given (API, a schedule's tick), before it is sealed and stored.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub url: String,
    pub method: String,
    /// In the clear.
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub timeout: Option<Duration>,
    pub retry_schedule: Option<Vec<Duration>>,
    pub run_at: Millis,
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub scheduled_for: Option<Millis>,
    pub key_scope: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_by: String,
}

/// Turns specs into rows: the defaults filled in, sensitive headers sealed.
pub struct Maker {
    keyring: Arc<Keyring>,
    timeout: Duration,
    retry_schedule: Vec<Duration>,
    handoff: Option<Handoff>,
    pub policy: Policy,
}

impl Maker {
    /// The row of `spec`, under a new id. Call outside the write transaction.
    ///
    /// # Errors
    /// When sealing fails (the OS random number generator).
    pub fn row(&self, spec: TaskSpec) -> anyhow::Result<store::NewTask> {
        let id = crate::ids::new_id("tsk");
        let given: Map<String, Value> = spec
            .headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let headers = headers::seal(&self.keyring, &id, &given)?;
        Ok(store::NewTask {
            name: spec.name,
            schedule: spec.schedule,
            scheduled_for: spec.scheduled_for,
            url: spec.url,
            method: spec.method,
            headers,
            body: spec.body.map(|b| b.to_string().into_bytes()),
            timeout: spec.timeout.unwrap_or(self.timeout),
            retry_schedule: spec
                .retry_schedule
                .unwrap_or_else(|| self.retry_schedule.clone()),
            key_scope: spec.key_scope,
            idempotency_key: spec.idempotency_key,
            run_at: spec.run_at,
            created_by: spec.created_by,
            id,
        })
    }

    /// Where jobs due now go.
    #[must_use]
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }

    /// The keyring sealing header values.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

/// What tasks hand the rest of the app at start.
pub struct Tasks {
    pub store: Store,
    pub maker: Arc<Maker>,
    pub schedules: Arc<schedules::Schedules>,
}

/// The signing key of task calls: `tasks.signing_secret`, else the one in
/// `<db dir>/tasks.secret`, generated (mode 0600) with a warning if missing.
///
/// # Errors
/// When the file cannot be read or written, or holds no `whsec_` key.
pub fn signing_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &config.tasks.signing_secret {
        return crate::config::sources::standard_webhooks_key(s.expose())
            .context("tasks.signing_secret is not a whsec_ key");
    }
    let path = config.database_dir().join(GENERATED_SECRET_FILE);
    load_or_generate(&path)
}

fn load_or_generate(path: &Path) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return crate::config::sources::standard_webhooks_key(text.trim())
            .filter(|k| !k.is_empty() && text.trim().starts_with("whsec_"))
            .with_context(|| format!("{} does not hold a whsec_ key", path.display()));
    }
    let mut key = [0u8; 32];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut key)
        .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!(
        "whsec_{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    write_private(path, text.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "tasks.signing_secret is not set: generated one for signing task calls. Give the app this \
         file's content to verify them, or set tasks.signing_secret"
    );
    Ok(key.to_vec())
}

/// Registers the `task.call` job kind and builds the schedules (started by
/// [`schedules::Schedules::start`]).
///
/// # Errors
/// When the signing key cannot be loaded, an HTTP client cannot be built, or a configured
/// schedule's URL may not be called.
pub fn register(
    registry: &mut Registry,
    config: &Config,
    store: Store,
    keyring: Arc<Keyring>,
    publisher: Publisher,
    handoff: Option<Handoff>,
) -> anyhow::Result<Tasks> {
    let policy = Policy::from_config(config);
    for (name, def) in &config.schedules {
        policy
            .check(&def.url)
            .map_err(|m| anyhow::anyhow!("schedules.{name}.url: {m}"))?;
    }
    let key = signing_key(config)?;
    // Connecting takes at most this long; the whole call is bounded by the task's own timeout.
    let connect = config.tasks.timeout.min(Duration::from_secs(30));
    let caller = call::Caller {
        store: store.clone(),
        guarded: DeliveryClient::new(connect, config.delivery.allow_private_networks)?,
        allowed: DeliveryClient::new(connect, true)?,
        policy: policy.clone(),
        keyring: Arc::clone(&keyring),
        key,
        publisher,
    };
    registry.register(call::kind(Arc::new(caller)));
    let maker = Arc::new(Maker {
        keyring,
        timeout: config.tasks.timeout,
        retry_schedule: config.tasks.retry_schedule.clone(),
        handoff,
        policy,
    });
    let schedules = Arc::new(schedules::Schedules::new(
        store.clone(),
        Arc::clone(&maker),
        config.schedules.clone(),
    ));
    Ok(Tasks {
        store,
        maker,
        schedules,
    })
}

/// The key ids of every sealed task and schedule header, for the key inventory at start.
///
/// # Errors
/// A database error.
pub fn sealed_key_ids(conn: &crate::sql::Connection) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<String> = store::all_headers(conn)?
        .iter()
        .flat_map(|(_, m)| headers::key_ids(m).collect::<Vec<_>>())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Re-seals every task and schedule header value with the current key (`keys reencrypt`):
/// `(re-sealed, already current, what could not be opened)`.
///
/// # Errors
/// A database error, or the RNG failing.
pub fn reencrypt_headers(
    tx: &crate::store::WriteTx<'_>,
    keyring: &Keyring,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let (mut done, mut current, mut unreadable) = (0, 0, Vec::new());
    for (owner, map) in store::all_headers(tx)? {
        let count = headers::key_ids(&map).count();
        match headers::reseal(keyring, &owner.aad(), &map) {
            Ok(Some(fresh)) => {
                store::set_headers(tx, &owner, &fresh)?;
                done += count;
            }
            Ok(None) => current += count,
            Err(e) => unreadable.push(format!("{owner:?}: {e:#}")),
        }
    }
    Ok((done, current, unreadable))
}

/// The schema steps of this module's tables.
pub const MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 7,
        sql: include_str!("migrations/0007_tasks.sql"),
    },
    crate::store::Migration {
        version: 8,
        sql: include_str!("migrations/0008_checks.sql"),
    },
];

/// The same tables in PostgreSQL (see [`crate::store::postgres`]).
pub const POSTGRES_MIGRATIONS: &[crate::store::Migration] = &[crate::store::Migration {
    version: 8,
    sql: include_str!("migrations/postgres/0008_tasks.sql"),
}];

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            allowed: allowed
                .iter()
                .map(|p| Url::parse(p).expect("url"))
                .collect(),
            allow_http: false,
            allow_private: false,
        }
    }

    #[test]
    fn allowed_prefixes_match_scheme_host_port_and_path() {
        let p = policy(&["http://127.0.0.1:3000/tasks/"]);
        assert_eq!(
            p.check("http://127.0.0.1:3000/tasks/index").map(|r| r.1),
            Ok(Route::Allowed)
        );
        for refused in [
            "http://127.0.0.1:30001/tasks/index",
            "http://127.0.0.1:3000/other",
            "http://127.0.0.1:3000/tasks/..%2fadmin",
            "http://127.0.0.1:3000/tasks/%5C..%5Cadmin",
            "http://127.0.0.1:3000@evil.example/tasks/",
            "http://10.0.0.8/tasks/",
            "https://127.0.0.1/",
            "ftp://app.example/",
        ] {
            assert!(p.check(refused).is_err(), "{refused}");
        }
        assert_eq!(
            p.check("https://app.example/x").map(|r| r.1),
            Ok(Route::Guarded)
        );
        let bare = policy(&["http://127.0.0.1:3000/tasks"]);
        for (url, allowed) in [
            ("http://127.0.0.1:3000/tasks", true),
            ("http://127.0.0.1:3000/tasks/x", true),
            ("http://127.0.0.1:3000/tasks-admin", false),
            ("http://127.0.0.1:3000/tasksx", false),
        ] {
            assert_eq!(bare.check(url).is_ok(), allowed, "{url}");
        }
    }
}
