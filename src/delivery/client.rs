//! The one locked-down HTTP client for deliveries: a timeout covering connect to the last body
//! byte read, no redirects, `User-Agent: hookrelay/<version>`, connection reuse, and an SSRF guard
//! built into DNS resolution.
//!
//! Unless `delivery.allow_private_networks`, the resolver drops loopback, private, link-local
//! (169.254.0.0/16, cloud metadata), CGNAT, unique-local, multicast and unspecified addresses, and
//! refuses the host when none is left — so the address checked is the address connected to, with
//! no second lookup. URLs with a literal IP are checked before any connection.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use url::Url;

/// Response bytes kept per attempt.
pub const MAX_RESPONSE_BODY: usize = 4096;
/// Idle connections kept per receiver host.
const POOL_IDLE_PER_HOST: usize = 64;

/// Whether an address may receive deliveries when private networks are not allowed.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                Ipv4Addr::new(a, b, c, d)
            };
            // NAT64 (64:ff9b::/96) embeds an IPv4 address in its last 32 bits.
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                return is_public_v4(embedded(seg[6], seg[7]));
            }
            // IPv4-compatible (::a.b.c.d, deprecated) likewise; :: and ::1 are handled below.
            if seg[0..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public_v4(embedded(seg[6], seg[7]));
            }
            // 6to4 (2002::/16) embeds it in bits 16..48.
            if seg[0] == 0x2002 {
                return is_public_v4(embedded(seg[1], seg[2]));
            }
            // Local-use NAT64 (64:ff9b:1::/48) reaches whatever the operator's translator does.
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated) fec0::/10
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || a >= 240) // reserved 240.0.0.0/4
}

/// A host refused by the SSRF policy (carried through reqwest's error chain).
#[derive(Debug)]
pub struct RefusedByPolicy(pub String);

impl std::fmt::Display for RefusedByPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl StdError for RefusedByPolicy {}

/// A failed DNS lookup (carried through reqwest's error chain).
#[derive(Debug)]
struct DnsFailure(String);

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl StdError for DnsFailure {}

/// The resolver that applies the policy.
struct PolicyResolver {
    allow_private: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(DnsFailure(format!("cannot resolve {host}: {e}")))
                        as Box<dyn StdError + Send + Sync>
                })?
                .collect();
            if found.is_empty() {
                return Err(Box::new(DnsFailure(format!("{host} has no addresses")))
                    as Box<dyn StdError + Send + Sync>);
            }
            // SPEC §6: refused if *any* address is private — a name that mixes public and
            // private answers is treated as hostile rather than filtered.
            let private: Vec<String> = found
                .iter()
                .filter(|a| !is_public(a.ip()))
                .map(|a| a.ip().to_string())
                .collect();
            if !allow_private && !private.is_empty() {
                return Err(Box::new(RefusedByPolicy(format!(
                    "{host} resolves to private or reserved addresses ({}); set delivery.allow_private_networks to allow them",
                    private.join(", ")
                ))) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Why an attempt got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    RefusedByPolicy,
    /// The request failed after connecting (reset, malformed response, …).
    Http,
}

impl FailureKind {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::RefusedByPolicy => "refused_by_policy",
            Self::Http => "http",
        }
    }
}

/// An attempt without a response.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub latency: Duration,
}

/// What a receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Value,
    /// The first [`MAX_RESPONSE_BODY`] bytes.
    pub body: Vec<u8>,
    /// How long the headers took (the body read is bounded by the same timeout).
    pub latency: Duration,
    /// The response carried `Retry-After`.
    pub retry_after: Option<String>,
}

/// The delivery client.
#[derive(Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    timeout: Duration,
    allow_private: bool,
}

impl DeliveryClient {
    /// A client with `timeout` per attempt.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn new(timeout: Duration, allow_private: bool) -> anyhow::Result<Self> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from HTTP(S)_PROXY would resolve and connect on our behalf, past the guard.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(PolicyResolver { allow_private }))
            .build()
            .context("building the delivery HTTP client")?;
        Ok(Self {
            http,
            timeout,
            allow_private,
        })
    }

    /// Whether `url` may be delivered to at all: a literal IP must pass the policy (host names
    /// are checked at resolution).
    ///
    /// # Errors
    /// A message saying why not.
    pub fn check_literal(&self, url: &Url) -> Result<(), String> {
        literal_ip_allowed(url, self.allow_private)
    }

    /// POSTs `body` to `url` with `headers`, reading at most [`MAX_RESPONSE_BODY`] bytes back,
    /// all within the timeout.
    ///
    /// # Errors
    /// A [`Failure`] when no response arrived.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let started = Instant::now();
        if let Err(message) = self.check_literal(url) {
            return Err(Failure {
                kind: FailureKind::RefusedByPolicy,
                message,
                latency: started.elapsed(),
            });
        }
        let attempt = async {
            let res = self
                .http
                .post(url.clone())
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let latency = started.elapsed();
            let status = res.status().as_u16();
            let mut kept = Map::new();
            for (name, value) in res.headers() {
                let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
                match kept.get_mut(name.as_str()) {
                    Some(Value::String(existing)) => {
                        existing.push_str(", ");
                        existing.push_str(&v);
                    }
                    _ => {
                        kept.insert(name.as_str().to_string(), Value::String(v));
                    }
                }
            }
            let retry_after = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut res = res;
            let mut body = Vec::new();
            while body.len() < MAX_RESPONSE_BODY {
                match res.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    // The status already arrived: a broken body does not change the verdict.
                    Err(_) => break,
                }
            }
            body.truncate(MAX_RESPONSE_BODY);
            Ok::<_, (FailureKind, String)>(Answer {
                status,
                headers: Value::Object(kept),
                body,
                latency,
                retry_after,
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err((kind, message))) => Err(Failure {
                kind,
                message,
                latency: started.elapsed(),
            }),
            Err(_) => Err(Failure {
                kind: FailureKind::Timeout,
                message: format!(
                    "no complete answer within {}",
                    humantime::format_duration(self.timeout)
                ),
                latency: started.elapsed(),
            }),
        }
    }
}

/// The policy for URLs whose host is a literal IP.
///
/// # Errors
/// A message when the address is private or reserved and `allow_private` is off.
pub fn literal_ip_allowed(url: &Url, allow_private: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is a private or reserved address; set delivery.allow_private_networks to allow it"
        ))
    }
}

fn chain_contains<T: StdError + 'static>(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found.to_string());
        }
        cur = err.source();
    }
    None
}

fn classify(e: &reqwest::Error) -> (FailureKind, String) {
    if let Some(m) = chain_contains::<RefusedByPolicy>(e) {
        return (FailureKind::RefusedByPolicy, m);
    }
    if let Some(m) = chain_contains::<DnsFailure>(e) {
        return (FailureKind::Dns, m);
    }
    let text = crate::error::chain(e);
    if e.is_timeout() {
        return (FailureKind::Timeout, text);
    }
    if chain_contains::<rustls::Error>(e).is_some() {
        return (FailureKind::Tls, text);
    }
    if e.is_connect() {
        return (FailureKind::Connect, text);
    }
    (FailureKind::Http, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_policy() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "64:ff9b:1::1",
            "198.18.0.1",
            "192.0.0.8",
            "64:ff9b::a00:1",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} must be refused");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::8.8.8.8",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} is public");
        }
    }

    #[test]
    fn literal_urls_are_checked() {
        let url = |s: &str| Url::parse(s).expect("url");
        assert!(literal_ip_allowed(&url("https://10.0.0.1/hook"), false).is_err());
        assert!(literal_ip_allowed(&url("https://[::1]:8443/hook"), false).is_err());
        assert!(literal_ip_allowed(&url("https://10.0.0.1/hook"), true).is_ok());
        assert!(literal_ip_allowed(&url("https://8.8.8.8/hook"), false).is_ok());
        assert!(
            literal_ip_allowed(&url("https://localhost/hook"), false).is_ok(),
            "names are checked at resolution"
        );
    }
}
