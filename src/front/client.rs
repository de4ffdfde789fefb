//! The Front API client: bearer token, timeouts, no redirects, and a request budget shared by
//! every job (`front.api_requests_per_minute`, bursts of at most 5 — Front limits per company,
//! 50/100/200 a minute by plan, and about 5/s per resource).
//!
//! It must never send the token to a host other than `front.api_base_url`'s origin or an
//! `https` host matching `front.allowed_link_hosts`: [`FrontClient::resolve`] replaces any other
//! `_links` URL by the same resource fetched by id from the base URL, and
//! [`FrontClient::list_events`] keeps a `_pagination.next` only under the same rule.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use url::Url;

use crate::clock::{self, Millis};
use crate::config::{FrontConfig, Secret};

/// Longest a request waits in-line for the budget; beyond it the job is rescheduled.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);
/// Longest a 429 may pause requests.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// Burst allowance of the budget.
const BURST: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of an error body quoted in a job error.
const ERROR_SNIPPET: usize = 300;
/// Events per `GET /events` page: Front's documented maximum for this endpoint is 15 (most
/// other list endpoints allow 100).
pub const EVENTS_PAGE_LIMIT: u32 = 15;

/// Why a fetch did not return data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Over the budget or told to slow down: try again at `until`, without spending an attempt.
    #[error("Front rate limit: waiting until {}", clock::to_rfc3339(*until))]
    RateLimited { until: Millis },
    /// 5xx, timeout or network error: retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// 404: the resource does not exist; retrying will not help.
    #[error("{0}")]
    NotFound(String),
    /// Any other refusal (401, 403, 4xx): retrying will not help.
    #[error("{0}")]
    Rejected(String),
}

/// A Front API client; one per process, shared by every job.
pub struct FrontClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    allowed_hosts: Vec<String>,
    budget: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// Set by a 429: no request before this time (UNIX ms).
    paused_until: AtomicI64,
}

impl FrontClient {
    /// A client for `cfg`, or `None` when no `front.api_token` is set.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(cfg: &FrontConfig) -> anyhow::Result<Option<Self>> {
        let Some(token) = cfg.api_token.clone() else {
            return Ok(None);
        };
        crate::install_tls_provider();
        let base = Url::parse(&cfg.api_base_url).context("parsing front.api_base_url")?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .context("building the Front API client")?;
        let per_minute = NonZeroU32::new(cfg.api_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(BURST.min(per_minute.get())).unwrap_or(NonZeroU32::MIN);
        Ok(Some(Self {
            http,
            base,
            token,
            allowed_hosts: cfg.allowed_link_hosts.clone(),
            budget: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            paused_until: AtomicI64::new(0),
        }))
    }

    /// Whether the token may be sent to `url`.
    #[must_use]
    pub fn may_send_token_to(&self, url: &Url) -> bool {
        let same_origin = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default();
        same_origin
            || (url.scheme() == "https"
                && url
                    .host_str()
                    .is_some_and(|h| host_allowed(&self.allowed_hosts, h)))
    }

    /// The URL to fetch a resource from: its `_links` URL when the token may go there, else
    /// `path` (e.g. `/messages/msg_1`) on the base URL.
    #[must_use]
    pub fn resolve(&self, link: Option<&str>, path: &str) -> Url {
        if let Some(url) = link.and_then(|l| Url::parse(l).ok())
            && self.may_send_token_to(&url)
        {
            return url;
        }
        if let Some(l) = link {
            tracing::warn!(link = %l, "a Front link points to a host the token may not go to; fetching by id instead");
        }
        self.api_url(path)
    }

    /// `path` on the base URL.
    #[must_use]
    pub fn api_url(&self, path: &str) -> Url {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).unwrap_or_else(|_| self.base.clone())
    }

    /// Waits for the budget (at most [`MAX_INLINE_WAIT`]) or says when to come back.
    async fn take_budget(&self) -> Result<(), FetchError> {
        loop {
            let now = clock::now_ms();
            let paused = self.paused_until.load(Ordering::SeqCst);
            if paused > now {
                return Err(FetchError::RateLimited { until: paused });
            }
            match self.budget.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if wait > MAX_INLINE_WAIT {
                        return Err(FetchError::RateLimited {
                            until: clock::add(now, wait),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// GETs `url` (which must have come from [`FrontClient::resolve`] or
    /// [`FrontClient::api_url`]) and parses the JSON answer.
    ///
    /// # Errors
    /// [`FetchError`], classified for the job's retry rules.
    pub async fn get_json(&self, url: &Url) -> Result<Value, FetchError> {
        if !self.may_send_token_to(url) {
            return Err(FetchError::Rejected(format!(
                "refusing to send the Front token to {url}"
            )));
        }
        self.take_budget().await?;
        let res = self
            .http
            .get(url.clone())
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                FetchError::Transient(format!("GET {url}: {}", crate::error::chain(&e)))
            })?;
        let status = res.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let until = retry_at(res.headers(), clock::now_ms());
            self.paused_until.fetch_max(until, Ordering::SeqCst);
            tracing::warn!(%url, until = %clock::to_rfc3339(until), "Front answered 429; pausing Front requests");
            return Err(FetchError::RateLimited { until });
        }
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            let snippet: String = body.chars().take(ERROR_SNIPPET).collect();
            let message = format!("GET {url}: Front answered {status}: {snippet}");
            return Err(match status {
                StatusCode::NOT_FOUND => FetchError::NotFound(message),
                s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                    FetchError::Transient(message)
                }
                _ => FetchError::Rejected(message),
            });
        }
        res.json::<Value>().await.map_err(|e| {
            FetchError::Transient(format!(
                "GET {url}: the answer is not JSON: {}",
                crate::error::chain(&e)
            ))
        })
    }
}

/// One page of Front's List Events API.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsPage {
    /// `_results`, in the order Front listed them.
    pub results: Vec<Value>,
    /// `_pagination.next`, when there is one and the token may be sent to it.
    pub next: Option<Url>,
    /// A `_pagination.next` that is not followed: not a URL, or on a host the token may not go to.
    pub refused_next: Option<String>,
}

impl FrontClient {
    /// The first page of `GET /events`: events emitted after `after` and before `before` (UNIX
    /// ms, sent as seconds with 3 decimals as Front's `q` object wants), oldest first, at most
    /// [`EVENTS_PAGE_LIMIT`] a page.
    #[must_use]
    pub fn events_url(&self, after: Millis, before: Millis) -> Url {
        let mut url = self.api_url("/events");
        url.query_pairs_mut()
            .append_pair("q[after]", &unix_seconds(after))
            .append_pair("q[before]", &unix_seconds(before))
            .append_pair("limit", &EVENTS_PAGE_LIMIT.to_string())
            .append_pair("sort_by", "created_at")
            .append_pair("sort_order", "asc");
        url
    }

    /// GETs one page of `GET /events` (the URL from [`FrontClient::events_url`] or a previous
    /// page's [`EventsPage::next`]). `_pagination.next` is kept only when the token may be sent
    /// to it, by the same rule as `_links`, and when it is not the page itself.
    ///
    /// # Errors
    /// As [`FrontClient::get_json`]; [`FetchError::Rejected`] when the answer has no
    /// `_results` list.
    pub async fn list_events(&self, url: &Url) -> Result<EventsPage, FetchError> {
        let mut page = self.get_json(url).await?;
        let Value::Array(results) = page["_results"].take() else {
            return Err(FetchError::Rejected(format!(
                "GET {url}: the answer has no `_results` list"
            )));
        };
        let (next, refused_next) = match page.pointer("/_pagination/next") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(n)) => match Url::parse(n) {
                Ok(next) if next == *url => (None, None),
                Ok(next) if self.may_send_token_to(&next) => (Some(next), None),
                _ => {
                    tracing::warn!(next = %n, "not following a Front events page on a host the token may not go to");
                    (None, Some(n.clone()))
                }
            },
            Some(other) => (None, Some(other.to_string())),
        };
        Ok(EventsPage {
            results,
            next,
            refused_next,
        })
    }
}

/// UNIX milliseconds as the seconds with 3 decimals that Front's `q[after]`/`q[before]` take
/// (times before 1970 become 0).
#[must_use]
pub fn unix_seconds(ms: Millis) -> String {
    let ms = ms.max(0);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Whether `host` matches an allowlist entry: exact, or `*.suffix` for any subdomain of suffix.
#[must_use]
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => host == *entry,
    })
}

/// When to try again after a 429: `Retry-After` (seconds or an HTTP date), else
/// `x-ratelimit-reset` (a UNIX time in seconds), else a minute; at least 1 s, at most
/// [`MAX_PAUSE`] from `now`.
#[must_use]
pub fn retry_at(headers: &HeaderMap, now: Millis) -> Millis {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let from_retry_after = text(RETRY_AFTER.as_str()).and_then(|v| {
        v.parse::<f64>()
            .ok()
            .filter(|secs| secs.is_finite())
            .map(|secs| now.saturating_add((secs.clamp(0.0, 1e9) * 1000.0) as i64))
            .or_else(|| clock::parse_http_date(v))
    });
    let from_reset = || {
        text("x-ratelimit-reset")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|secs| secs.is_finite())
            .map(|secs| (secs.clamp(0.0, 1e12) * 1000.0) as i64)
    };
    let at = from_retry_after.or_else(from_reset).unwrap_or(now + 60_000);
    let max = clock::add(now, MAX_PAUSE);
    at.clamp(now + 1000, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn allowlist_matching() {
        let allowed = vec![
            "api2.frontapp.com".to_string(),
            "*.api.frontapp.com".to_string(),
        ];
        assert!(host_allowed(&allowed, "api2.frontapp.com"));
        assert!(host_allowed(&allowed, "acme.api.frontapp.com"));
        assert!(host_allowed(&allowed, "ACME.api.frontapp.com"));
        assert!(!host_allowed(&allowed, "api.frontapp.com"));
        assert!(!host_allowed(&allowed, "evilapi.frontapp.com"));
        assert!(!host_allowed(&allowed, "acme.api.frontapp.com.evil.net"));
        assert!(!host_allowed(&allowed, "xapi.frontapp.com"));
    }

    #[test]
    fn retry_at_reads_retry_after_then_reset() {
        let now = 1_700_000_000_000;
        let mut h = HeaderMap::new();
        assert_eq!(retry_at(&h, now), now + 60_000);
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1700000030"));
        assert_eq!(retry_at(&h, now), now + 30_000);
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_at(&h, now), now + 2_000);
        h.insert(RETRY_AFTER, HeaderValue::from_static("0"));
        assert_eq!(retry_at(&h, now), now + 1_000, "at least a second");
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_at(&h, now), now + 3_600_000, "at most an hour");
        h.insert(RETRY_AFTER, HeaderValue::from_static("1e300"));
        assert_eq!(
            retry_at(&h, now),
            now + 3_600_000,
            "huge values are capped, not wrapped"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("inf"));
        assert_eq!(
            retry_at(&h, now),
            now + 30_000,
            "falls back to x-ratelimit-reset"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 14 Nov 2023 22:13:40 GMT"),
        );
        assert_eq!(retry_at(&h, now), now + 20_000);
    }

    #[test]
    fn unix_seconds_keep_three_decimals() {
        assert_eq!(unix_seconds(1_694_046_470_930), "1694046470.930");
        assert_eq!(unix_seconds(1_694_046_470_005), "1694046470.005");
        assert_eq!(unix_seconds(999), "0.999");
        assert_eq!(unix_seconds(-5), "0.000");
    }

    #[test]
    fn events_url_asks_oldest_first_within_the_window() {
        let mut cfg = crate::config::from_toml_str("").expect("defaults").front;
        cfg.api_token = Some(Secret::new("t"));
        cfg.api_base_url = "http://127.0.0.1:9000/".into();
        let c = FrontClient::new(&cfg).expect("client").expect("token set");
        let url = c.events_url(1_700_000_000_000, 1_700_000_060_500);
        assert_eq!(url.path(), "/events");
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            q,
            [
                ("q[after]", "1700000000.000"),
                ("q[before]", "1700000060.500"),
                ("limit", "15"),
                ("sort_by", "created_at"),
                ("sort_order", "asc"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn links_resolve_only_to_trusted_hosts() {
        let mut cfg = crate::config::from_toml_str("").expect("defaults").front;
        cfg.api_token = Some(Secret::new("t"));
        cfg.api_base_url = "http://127.0.0.1:9000".into();
        let c = FrontClient::new(&cfg).expect("client").expect("token set");
        assert_eq!(
            c.resolve(Some("http://127.0.0.1:9000/messages/m1"), "/messages/m1")
                .as_str(),
            "http://127.0.0.1:9000/messages/m1"
        );
        assert_eq!(
            c.resolve(Some("http://127.0.0.1:9001/messages/m1"), "/messages/m1")
                .as_str(),
            "http://127.0.0.1:9000/messages/m1"
        );
        assert_eq!(
            c.resolve(
                Some("https://acme.api.frontapp.com/messages/m1"),
                "/messages/m1"
            )
            .as_str(),
            "https://acme.api.frontapp.com/messages/m1"
        );
        assert_eq!(
            c.resolve(
                Some("http://acme.api.frontapp.com/messages/m1"),
                "/messages/m1"
            )
            .as_str(),
            "http://127.0.0.1:9000/messages/m1"
        );
        assert_eq!(
            c.resolve(Some("https://evil.example/messages/m1"), "/messages/m1")
                .as_str(),
            "http://127.0.0.1:9000/messages/m1"
        );
        assert_eq!(
            c.resolve(None, "/conversations/cnv_1").as_str(),
            "http://127.0.0.1:9000/conversations/cnv_1"
        );
    }
}
