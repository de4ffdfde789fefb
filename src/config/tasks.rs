//! `[tasks]` and `[schedules.<name>]`: the HTTP calls hookrelay makes for the app, as written and
//! as validated. What can be told from the configuration alone is checked here, each error
//! naming its key; whether a URL may be called (`tasks.allowed_urls`, else the SSRF rules) is the
//! tasks capability's, checked at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::{
    ConfigError, RawSecret, Secret, Validator, parse_retry_schedule, ser_duration, ser_durations,
};
use crate::clock::ticks::Ticks;

/// The longest a task call may take (`tasks.timeout`, a task's or a schedule's `timeout`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The methods a task may call with.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The longest wait of a task's `retry_schedule`, and the furthest ahead a task may be
/// scheduled.
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest schedule name.
pub const MAX_SCHEDULE_NAME: usize = 64;

/// `[tasks]` as written.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTasks {
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret_file: Option<PathBuf>,
    allowed_urls: Vec<String>,
    timeout: String,
    retry_schedule: Vec<String>,
}

impl Default for RawTasks {
    fn default() -> Self {
        Self {
            signing_secret: None,
            signing_secret_file: None,
            allowed_urls: Vec::new(),
            timeout: "30s".into(),
            retry_schedule: ["10s", "1m", "10m", "1h", "6h"].map(String::from).to_vec(),
        }
    }
}

/// `[schedules.<name>]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSchedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_schedule: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

/// The validated `[tasks]`.
#[derive(Debug, Clone, Serialize)]
pub struct TasksConfig {
    /// The `whsec_…` key task calls are signed with; `None`: generated into
    /// `<db dir>/tasks.secret`.
    pub signing_secret: Option<Secret>,
    /// URL prefixes that may be called even when `http://`, loopback or private.
    pub allowed_urls: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "ser_durations")]
    pub retry_schedule: Vec<Duration>,
}

/// What a schedule does with a tick that comes while its previous run is not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record the tick as `skipped`.
    Skip,
    /// Run it anyway.
    Allow,
}

impl Overlap {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Allow => "allow",
        }
    }

    /// The value named `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Self::Skip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// What a schedule does with ticks missed while hookrelay was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run the latest of them, once.
    Latest,
    /// Run none of them.
    None,
}

impl CatchUp {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::None => "none",
        }
    }

    /// The value named `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "latest" => Some(Self::Latest),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// A schedule's definition: from `[schedules.<name>]`, or from the API.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleDef {
    pub cron: String,
    #[serde(skip)]
    pub ticks: Ticks,
    pub timezone: String,
    #[serde(serialize_with = "ser_url")]
    pub url: String,
    pub method: String,
    #[serde(serialize_with = "ser_headers")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(
        serialize_with = "ser_opt_durations",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_schedule: Option<Vec<Duration>>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub enabled: bool,
}

fn ser_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::redact::url(url))
}

fn ser_headers<S: Serializer>(h: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = h
        .iter()
        .map(|(k, v)| {
            let v = if crate::redact::is_sensitive_header(k) {
                crate::redact::REDACTED
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect();
    shown.serialize(s)
}

#[allow(clippy::ref_option)] // serde's serialize_with hands a reference to the field
fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

#[allow(clippy::ref_option)] // serde's serialize_with hands a reference to the field
fn ser_opt_durations<S: Serializer>(d: &Option<Vec<Duration>>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_durations(d, s),
        None => s.serialize_none(),
    }
}

/// Whether `name` may name a schedule: lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit, at most [`MAX_SCHEDULE_NAME`] long.
#[must_use]
pub fn is_valid_schedule_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_SCHEDULE_NAME
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An absolute `http`/`https` URL, or what is wrong with it.
///
/// # Errors
/// A message for people.
pub fn check_url_shape(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(parsed)
}

/// A method of [`METHODS`] (any case), upper-cased.
///
/// # Errors
/// A message naming the methods.
pub fn check_method(method: &str) -> Result<String, String> {
    let upper = method.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("`{method}` is not one of {}", METHODS.join(", ")))
    }
}

/// A task's retry waits: humantime strings, at most [`crate::config::MAX_RETRY_SCHEDULE`] of
/// them, each at most [`MAX_WAIT`].
///
/// # Errors
/// A message naming the bad entry.
pub fn parse_task_waits(raw: &[String]) -> Result<Vec<Duration>, String> {
    let waits = parse_retry_schedule(raw)?;
    if let Some(i) = waits.iter().position(|w| *w > MAX_WAIT) {
        return Err(format!("entry {i} (`{}`) is longer than 366 days", raw[i]));
    }
    Ok(waits)
}

/// A header value a call can carry: visible ASCII, spaces and tabs (no control characters).
///
/// # Errors
/// A message naming the header.
pub fn check_header_value(name: &str, value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "the value of {name} is not a valid header value (visible ASCII characters only)"
        ))
    }
}

/// A task call timeout: longer than zero, at most [`MAX_TIMEOUT`].
///
/// # Errors
/// A message for people.
pub fn check_timeout(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be longer than zero".into())
    } else if d > MAX_TIMEOUT {
        Err("may be at most 15m".into())
    } else {
        Ok(d)
    }
}

/// Header names a task or schedule may not set: hookrelay writes them.
///
/// # Errors
/// The reason, naming the header.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("`{name}` is not a header name"));
    }
    if matches!(
        lower.as_str(),
        "content-type" | "content-length" | "host" | "user-agent"
    ) || lower.starts_with("webhook-")
        || lower.starts_with("x-hookrelay-")
    {
        return Err(format!(
            "{name} is set by hookrelay on every task call and may not be given"
        ));
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn tasks(&self, raw: RawTasks) -> Result<TasksConfig, ConfigError> {
        let signing_secret = self.secret(
            "tasks.signing_secret",
            raw.signing_secret,
            raw.signing_secret_file,
        )?;
        if let Some(s) = &signing_secret
            && (!s.expose().starts_with("whsec_")
                || super::sources::standard_webhooks_key(s.expose()).is_none_or(|k| k.is_empty()))
        {
            return Err(self.invalid(
                "tasks.signing_secret",
                "must be `whsec_` followed by base64 (as Standard Webhooks libraries take it); make one with `echo whsec_$(openssl rand -base64 32)`",
            ));
        }
        for (i, prefix) in raw.allowed_urls.iter().enumerate() {
            check_url_shape(prefix).map_err(|m| {
                self.invalid(&format!("tasks.allowed_urls[{i}]"), format!("entry {m}"))
            })?;
        }
        let timeout = self.duration("tasks.timeout", &raw.timeout)?;
        let timeout = check_timeout(timeout).map_err(|m| self.invalid("tasks.timeout", m))?;
        let retry_schedule = parse_task_waits(&raw.retry_schedule)
            .map_err(|m| self.invalid("tasks.retry_schedule", m))?;
        Ok(TasksConfig {
            signing_secret,
            allowed_urls: raw.allowed_urls,
            timeout,
            retry_schedule,
        })
    }

    pub(super) fn schedules(
        &self,
        raw: BTreeMap<String, RawSchedule>,
    ) -> Result<BTreeMap<String, ScheduleDef>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, raw) in raw {
            let key = |k: &str| format!("schedules.{name}.{k}");
            if !is_valid_schedule_name(&name) {
                return Err(self.invalid(
                    &format!("schedules.{name}"),
                    "a schedule name is lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 64 long",
                ));
            }
            let cron = raw
                .cron
                .ok_or_else(|| self.invalid(&key("cron"), "is missing; write e.g. \"0 * * * *\" (5 fields) or \"0 0 * * * *\" (6, with seconds)"))?;
            let timezone = raw.timezone.unwrap_or_else(|| "UTC".into());
            let ticks = Ticks::parse(&cron, &timezone).map_err(|m| {
                let k = if m.contains("time zone") {
                    "timezone"
                } else {
                    "cron"
                };
                self.invalid(&key(k), m)
            })?;
            let url = raw.url.ok_or_else(|| {
                self.invalid(&key("url"), "is missing: the app's URL this schedule calls")
            })?;
            check_url_shape(&url).map_err(|m| self.invalid(&key("url"), m))?;
            let method = check_method(raw.method.as_deref().unwrap_or("POST"))
                .map_err(|m| self.invalid(&key("method"), m))?;
            for (h, v) in &raw.headers {
                check_header_name(h).map_err(|m| self.invalid(&key("headers"), m))?;
                check_header_value(h, v).map_err(|m| self.invalid(&key("headers"), m))?;
            }
            if raw.body.is_some() && matches!(method.as_str(), "GET" | "DELETE") {
                return Err(self.invalid(
                    &key("body"),
                    format!("a {method} call carries no body; drop `body` or use POST"),
                ));
            }
            let timeout = raw
                .timeout
                .map(|t| {
                    self.duration(&key("timeout"), &t).and_then(|d| {
                        check_timeout(d).map_err(|m| self.invalid(&key("timeout"), m))
                    })
                })
                .transpose()?;
            let retry_schedule = raw
                .retry_schedule
                .map(|r| parse_task_waits(&r).map_err(|m| self.invalid(&key("retry_schedule"), m)))
                .transpose()?;
            let overlap = match raw.overlap.as_deref() {
                None => Overlap::Skip,
                Some(o) => Overlap::parse(o).ok_or_else(|| {
                    self.invalid(&key("overlap"), format!("`{o}` is not `skip` or `allow`"))
                })?,
            };
            let catch_up = match raw.catch_up.as_deref() {
                None => CatchUp::Latest,
                Some(c) => CatchUp::parse(c).ok_or_else(|| {
                    self.invalid(&key("catch_up"), format!("`{c}` is not `latest` or `none`"))
                })?,
            };
            out.insert(
                name,
                ScheduleDef {
                    cron,
                    ticks,
                    timezone,
                    url,
                    method,
                    headers: raw.headers,
                    body: raw.body,
                    timeout,
                    retry_schedule,
                    overlap,
                    catch_up,
                    enabled: raw.enabled.unwrap_or(true),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::from_toml_str;

    fn err(toml: &str) -> String {
        from_toml_str(toml).expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_and_a_schedule() {
        let c = from_toml_str(
            "[schedules.calendar-sync]\ncron = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"\nurl = \"https://app.example.com/tasks/calendar-sync\"\nbody = { full = false }\n",
        )
        .expect("valid");
        assert_eq!(c.tasks.timeout.as_secs(), 30);
        assert_eq!(c.tasks.retry_schedule.len(), 5);
        let s = &c.schedules["calendar-sync"];
        assert_eq!(s.method, "POST");
        assert_eq!(s.overlap, super::Overlap::Skip);
        assert_eq!(s.catch_up, super::CatchUp::Latest);
        assert_eq!(s.body, Some(serde_json::json!({"full": false})));
        assert!(s.enabled);
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[schedules.a]\nurl = \"https://x.example/\"\n";
        assert!(err(&format!("{base}cron = \"* * *\"")).contains("schedules.a.cron"));
        assert!(
            err(&format!(
                "{base}cron = \"0 * * * *\"\ntimezone = \"Mars/Base\""
            ))
            .contains("schedules.a.timezone")
        );
        assert!(
            err(&format!("{base}cron = \"0 * * * *\"\noverlap = \"queue\""))
                .contains("schedules.a.overlap")
        );
        assert!(
            err(&format!("{base}cron = \"0 * * * *\"\nmethod = \"TRACE\""))
                .contains("schedules.a.method")
        );
        assert!(
            err(&format!("{base}cron = \"0 * * * *\"\ntimeout = \"16m\""))
                .contains("schedules.a.timeout")
        );
        assert!(
            err(&format!(
                "{base}cron = \"0 * * * *\"\nheaders = {{ webhook-id = \"x\" }}"
            ))
            .contains("schedules.a.headers")
        );
        assert!(
            err("[schedules.A]\ncron = \"0 * * * *\"\nurl = \"https://x/\"")
                .contains("schedules.A")
        );
        assert!(err("[schedules.a]\ncron = \"0 * * * *\"").contains("schedules.a.url"));
        assert!(err("[tasks]\ntimeout = \"20m\"").contains("tasks.timeout"));
        assert!(
            err("[tasks]\nretry_schedule = [\"1s\", \"400d\"]").contains("tasks.retry_schedule")
        );
        assert!(
            err(&format!(
                "{base}cron = \"0 * * * *\"\nmethod = \"GET\"\nbody = {{ a = 1 }}"
            ))
            .contains("schedules.a.body")
        );
        assert!(
            err(&format!(
                "{base}cron = \"0 * * * *\"\nheaders = {{ X-A = \"bell\\u0007\" }}"
            ))
            .contains("schedules.a.headers")
        );
        assert!(err(&format!("{base}cron = \"0 0 30 2 *\"")).contains("never ticks"));
        let e = err("[tasks]\nsigning_secret = \"hunter2hunter2\"");
        assert!(
            e.contains("tasks.signing_secret") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(
            err("[tasks]\nallowed_urls = [\"127.0.0.1:3000\"]").contains("tasks.allowed_urls[0]")
        );
    }

    #[test]
    fn the_signing_secret_may_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tasks_signing_secret");
        std::fs::write(&path, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").expect("write");
        let c = from_toml_str(&format!("[tasks]\nsigning_secret_file = {path:?}")).expect("valid");
        assert_eq!(
            c.tasks
                .signing_secret
                .as_ref()
                .map(crate::config::Secret::expose),
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        );
        let shown = c.redacted_toml().expect("toml");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
    }

    #[test]
    fn check_config_hides_sensitive_headers_and_url_secrets() {
        let c = from_toml_str(
            "[schedules.a]\ncron = \"0 * * * *\"\nurl = \"https://x.example/run?token=abc\"\nheaders = { Authorization = \"Bearer s3cr3t\", X-Team = \"ops\" }\n",
        )
        .expect("valid");
        let shown = c.redacted_toml().expect("toml");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(shown.contains("ops"), "{shown}");
    }
}
