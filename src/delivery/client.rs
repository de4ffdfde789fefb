//! The one locked-down HTTP client for deliveries: a timeout covering connect to the last body
//! byte read, no redirects, `User-Agent: hookrelay/<version>`, connection reuse, and an SSRF guard
//! built into DNS resolution.
//!
//! Unless `delivery.allow_private_networks`, a host that resolves to any address [`is_public`]
//! refuses — loopback, private, link-local (169.254.0.0/16, cloud metadata), CGNAT, unique-local,
//! multicast, unspecified, documentation, benchmarking, discard-only, and IPv6 forms that embed
//! such an IPv4 address — is refused, and the addresses checked are the addresses connected to,
//! with no second lookup. URLs with a literal IP are checked before any connection.
//!
//! What an attempt keeps is bounded: [`MAX_RESPONSE_BODY`] of body, [`MAX_RESPONSE_HEADER_BYTES`]
//! of headers. A [`Failure`]'s message never holds the URL, since it is stored and shown.

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
/// Response header bytes kept per attempt, counted as name plus value bytes.
///
/// This cap applies to what is *stored*. What is *read* is bounded earlier by hyper (the client
/// speaks HTTP/1.1 only: reqwest is built without `http2`): a response head larger than its
/// default read buffer of 8 KiB + 100 × 4 KiB = 417,792 bytes, or with more than 100 header
/// lines, fails the attempt ("message head is too large", [`FailureKind::Http`]) before any of
/// it reaches us, so one huge value costs at most that much memory per connection.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;
/// Idle connections kept per receiver host.
const POOL_IDLE_PER_HOST: usize = 64;

/// Whether an address may receive deliveries when private networks are not allowed.
///
/// IPv4: refused when inside one of the `REFUSED_V4` blocks — every block of the IANA IPv4
/// Special-Purpose Address Registry that is not globally reachable, plus multicast and the
/// deprecated 6to4 relay anycast (192.88.99.0/24). The whole of 192.0.0.0/24 is refused,
/// including the two anycast addresses the registry marks reachable (192.0.0.9, 192.0.0.10):
/// no webhook receiver lives there.
///
/// IPv6: decided by the first entry of `V6_BLOCKS` that contains the address. Only global
/// unicast (2000::/3) can be public; inside it the special-purpose blocks that are not globally
/// reachable are refused (documentation, benchmarking, ORCHID, the rest of 2001::/23). Addresses
/// that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4, Teredo)
/// are judged by it, since that is where the packets end up; IPv4-translated addresses
/// (`::ffff:0:a.b.c.d`) are refused whatever they embed.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

/// The name of the block that makes [`is_public`] refuse `ip`, for messages; `None` when public.
#[must_use]
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

/// An address block: `len` leading bits of `net`.
#[derive(Debug, Clone, Copy)]
struct Block<T> {
    /// The block's first address, as bits.
    net: T,
    /// Prefix length.
    len: u8,
    /// What the registry calls it.
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> Block<u32> {
    Block {
        net: Ipv4Addr::new(a, b, c, d).to_bits(),
        len,
        name,
    }
}

/// IPv4 blocks never delivered to without `allow_private_networks` (IANA IPv4 Special-Purpose
/// Address Registry, entries not globally reachable; RFC 6890 and later).
const REFUSED_V4: &[Block<u32>] = &[
    v4(0, 0, 0, 0, 8, "\"this\" network"),
    v4(10, 0, 0, 0, 8, "private-use"),
    v4(100, 64, 0, 0, 10, "shared address space (CGNAT)"),
    v4(127, 0, 0, 0, 8, "loopback"),
    v4(169, 254, 0, 0, 16, "link-local (cloud metadata)"),
    v4(172, 16, 0, 0, 12, "private-use"),
    v4(
        192,
        0,
        0,
        0,
        24,
        "IETF protocol assignments (DS-Lite, NAT64 discovery, …)",
    ),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)"),
    v4(192, 88, 99, 0, 24, "6to4 relay anycast (deprecated)"),
    v4(192, 168, 0, 0, 16, "private-use"),
    v4(198, 18, 0, 0, 15, "benchmarking"),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)"),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)"),
    v4(224, 0, 0, 0, 4, "multicast"),
    v4(240, 0, 0, 0, 4, "reserved, limited broadcast"),
];

fn contains_v4(block: &Block<u32>, ip: u32) -> bool {
    block.len == 0 || (ip ^ block.net) >> (32 - u32::from(block.len)) == 0
}

fn contains_v6(block: &Block<u128>, ip: u128) -> bool {
    block.len == 0 || (ip ^ block.net) >> (128 - u32::from(block.len)) == 0
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    REFUSED_V4
        .iter()
        .find(|b| contains_v4(b, bits))
        .map(|b| b.name)
}

/// What the policy does with an IPv6 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V6Rule {
    /// Refused.
    Refuse,
    /// Public.
    Allow,
    /// Judged by the IPv4 address in the last 32 bits (IPv4-mapped, IPv4-compatible, NAT64).
    Low32,
    /// 6to4: judged by the IPv4 address in bits 16..48.
    SixToFour,
    /// Teredo: refused unless both the server IPv4 (bits 32..64) and the client IPv4 (the last
    /// 32 bits, inverted) are public. The relay that carries the packets sends them to the
    /// client's (NAT) address and talks to the server, so both must be public.
    Teredo,
}

const fn v6(seg: [u16; 8], len: u8, rule: V6Rule, name: &'static str) -> (Block<u128>, V6Rule) {
    let [a, b, c, d, e, f, g, h] = seg;
    (
        Block {
            net: Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits(),
            len,
            name,
        },
        rule,
    )
}

/// The IPv6 policy, first match wins (so more specific blocks come first): the IANA IPv6
/// Special-Purpose Address Registry, the embedded-IPv4 forms, and the unicast space outside
/// 2000::/3, which IANA has not allocated for global use (the last entry refuses it all).
///
/// Where the registry marks a block inside 2001::/23 globally reachable the policy follows it
/// (PCP/TURN/DNS-SD anycast, AMT, AS112), except for ORCHIDv2 (2001:20::/28) and Drone Remote
/// ID DETs (2001:30::/28): those are hash identifiers, not locators, so nothing legitimate
/// receives HTTP at one.
const V6_BLOCKS: &[(Block<u128>, V6Rule)] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, V6Rule::Refuse, "unspecified"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, V6Rule::Refuse, "loopback"),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        V6Rule::Low32,
        "IPv4-mapped",
    ),
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        V6Rule::Refuse,
        "IPv4-translated (SIIT)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        V6Rule::Low32,
        "IPv4-compatible (deprecated)",
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        V6Rule::Low32,
        "NAT64 well-known prefix",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        V6Rule::Refuse,
        "local-use NAT64",
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        V6Rule::Refuse,
        "discard-only",
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        V6Rule::Refuse,
        "dummy prefix",
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, V6Rule::Teredo, "Teredo"),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        V6Rule::Allow,
        "PCP anycast",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        V6Rule::Allow,
        "TURN anycast",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        V6Rule::Allow,
        "DNS-SD SRP anycast",
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        V6Rule::Refuse,
        "benchmarking",
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, V6Rule::Allow, "AMT"),
    v6(
        [0x2001, 4, 0x112, 0, 0, 0, 0, 0],
        48,
        V6Rule::Allow,
        "AS112-v6",
    ),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        V6Rule::Refuse,
        "ORCHID (deprecated)",
    ),
    v6(
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        V6Rule::Refuse,
        "ORCHIDv2",
    ),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        V6Rule::Refuse,
        "Drone Remote ID DETs",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        V6Rule::Refuse,
        "IETF protocol assignments",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        V6Rule::Refuse,
        "documentation",
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, V6Rule::SixToFour, "6to4"),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        V6Rule::Refuse,
        "documentation",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        V6Rule::Refuse,
        "SRv6 SIDs",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        V6Rule::Refuse,
        "unique-local",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        V6Rule::Refuse,
        "link-local",
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        V6Rule::Refuse,
        "site-local (deprecated)",
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        V6Rule::Refuse,
        "multicast",
    ),
    v6(
        [0x2000, 0, 0, 0, 0, 0, 0, 0],
        3,
        V6Rule::Allow,
        "global unicast",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        0,
        V6Rule::Refuse,
        "reserved by IETF",
    ),
];

/// For an address that embeds IPv4 addresses, a refusal names the IPv6 form ("6to4").
fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    // Truncating casts pick the 32-bit fields out of the 128 bits.
    let v4_at = |shift: u32| Ipv4Addr::from_bits((bits >> shift) as u32);
    let Some((block, rule)) = V6_BLOCKS.iter().find(|(b, _)| contains_v6(b, bits)) else {
        return Some("reserved by IETF");
    };
    let refused = match rule {
        V6Rule::Refuse => true,
        V6Rule::Allow => false,
        V6Rule::Low32 => refusal_v4(v4_at(0)).is_some(),
        V6Rule::SixToFour => refusal_v4(v4_at(80)).is_some(),
        V6Rule::Teredo => {
            refusal_v4(v4_at(64)).is_some()
                || refusal_v4(Ipv4Addr::from_bits(!(bits as u32))).is_some()
        }
    };
    refused.then_some(block.name)
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
            // Refused if *any* address is private — a name that mixes public and
            // private answers is treated as hostile rather than filtered.
            let private: Vec<String> = found
                .iter()
                .filter_map(|a| refusal(a.ip()).map(|why| format!("{} {why}", a.ip())))
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
    /// The host name did not resolve.
    Dns,
    /// No TCP connection.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No complete answer within the timeout.
    Timeout,
    /// The SSRF policy refused the address.
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
    /// What went wrong.
    pub kind: FailureKind,
    /// For people: stored as the attempt's error, logged, shown. Holds no URL.
    pub message: String,
    /// From the start of the attempt to the failure.
    pub latency: Duration,
}

/// What a receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers as a JSON object, name → value, values of a repeated name joined
    /// with `, `; at most [`MAX_RESPONSE_HEADER_BYTES`] of them (see [`keep_headers`]).
    pub headers: Value,
    /// Some headers were dropped to stay within [`MAX_RESPONSE_HEADER_BYTES`].
    pub headers_truncated: bool,
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
    /// Userinfo in `url` (`https://user:pass@host/`) is sent, as reqwest does it: taken out of
    /// the request line and sent as `Authorization: Basic base64(user:pass)` (percent-decoded
    /// first). It is how some receivers authenticate, so it is kept; a webhook's own
    /// `Authorization` header, applied after it, replaces it. Only the *display* of such URLs is
    /// redacted ([`crate::redact::url`]); no [`Failure::message`] carries the URL at all.
    ///
    /// # Errors
    /// A [`Failure`] when no response arrived.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        self.send(
            reqwest::Method::POST,
            url,
            headers,
            Some(body),
            self.timeout,
        )
        .await
    }

    /// As [`DeliveryClient::post`], with any method, an optional body and a timeout of its own
    /// (task calls): the whole attempt, connect to the last body byte read, within `timeout`.
    ///
    /// # Errors
    /// A [`Failure`] when no response arrived.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        timeout: Duration,
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
            let mut request = self
                .http
                .request(method, url.clone())
                .headers(headers)
                .timeout(timeout);
            if let Some(body) = body {
                request = request.body(body);
            }
            let res = request.send().await.map_err(classify)?;
            let latency = started.elapsed();
            let status = res.status().as_u16();
            let (kept, headers_truncated) = keep_headers(res.headers());
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
                headers: kept,
                headers_truncated,
                body,
                latency,
                retry_after,
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
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
                    humantime::format_duration(timeout)
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
    match refusal(ip) {
        Some(why) if !allow_private => Err(format!(
            "{ip} is a private or reserved address ({why}); set delivery.allow_private_networks to allow it"
        )),
        _ => Ok(()),
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

/// Keeps `headers`, in the order their names first appear in the response, until the next one
/// would take the total past [`MAX_RESPONSE_HEADER_BYTES`]; that one and all after it are
/// dropped and the second value is `true`.
///
/// A header costs its name's bytes plus its value's (after lossy UTF-8 conversion); one whose
/// name was already kept costs its name again plus the two bytes of the `, ` joining it, so the
/// stored names and values never add up to more than the cap. A value is measured before it is
/// copied.
#[must_use]
pub fn keep_headers(headers: &HeaderMap) -> (Value, bool) {
    let mut kept = Map::new();
    let mut used = 0usize;
    for (name, value) in headers {
        let merging = kept.contains_key(name.as_str());
        let overhead = name.as_str().len() + if merging { 2 } else { 0 };
        let fits = |value_len: usize| used + overhead + value_len <= MAX_RESPONSE_HEADER_BYTES;
        if !fits(value.as_bytes().len()) {
            return (Value::Object(kept), true);
        }
        let v = String::from_utf8_lossy(value.as_bytes());
        if !fits(v.len()) {
            return (Value::Object(kept), true);
        }
        used += overhead + v.len();
        match kept.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                kept.insert(name.as_str().to_string(), Value::String(v.into_owned()));
            }
        }
    }
    (Value::Object(kept), false)
}

/// The failure kind and a message for `e`. reqwest's own text names the URL, userinfo and query
/// included, and the message is stored, logged and shown, so the URL is stripped first and any
/// URL a source error still quotes is redacted.
fn classify(e: reqwest::Error) -> (FailureKind, String) {
    let e = e.without_url();
    if let Some(m) = chain_contains::<RefusedByPolicy>(&e) {
        return (FailureKind::RefusedByPolicy, m);
    }
    if let Some(m) = chain_contains::<DnsFailure>(&e) {
        return (FailureKind::Dns, m);
    }
    let text = crate::redact::url_in_text(&crate::error::chain(&e));
    if e.is_timeout() {
        return (FailureKind::Timeout, text);
    }
    if chain_contains::<rustls::Error>(&e).is_some() {
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

    /// (address, public?) — each block's first and last address and its neighbours outside.
    const ADDRESSES: &[(&str, bool)] = &[
        // 0.0.0.0/8 "this" network
        ("0.0.0.0", false),
        ("0.255.255.255", false),
        ("1.0.0.0", true),
        // 10.0.0.0/8 private-use
        ("9.255.255.255", true),
        ("10.0.0.0", false),
        ("10.255.255.255", false),
        ("11.0.0.0", true),
        // 100.64.0.0/10 CGNAT
        ("100.63.255.255", true),
        ("100.64.0.0", false),
        ("100.127.255.255", false),
        ("100.128.0.0", true),
        // 127.0.0.0/8 loopback
        ("126.255.255.255", true),
        ("127.0.0.0", false),
        ("127.0.0.1", false),
        ("127.255.255.255", false),
        ("128.0.0.0", true),
        // 169.254.0.0/16 link-local, cloud metadata
        ("169.253.255.255", true),
        ("169.254.0.0", false),
        ("169.254.169.254", false),
        ("169.254.255.255", false),
        ("169.255.0.0", true),
        // 172.16.0.0/12 private-use
        ("172.15.255.255", true),
        ("172.16.0.0", false),
        ("172.31.255.255", false),
        ("172.32.0.0", true),
        // 192.0.0.0/24 IETF protocol assignments, 192.0.2.0/24 TEST-NET-1
        ("191.255.255.255", true),
        ("192.0.0.0", false),
        ("192.0.0.8", false),
        ("192.0.0.9", false),
        ("192.0.0.170", false),
        ("192.0.0.255", false),
        ("192.0.1.0", true),
        ("192.0.1.255", true),
        ("192.0.2.0", false),
        ("192.0.2.255", false),
        ("192.0.3.0", true),
        // 192.88.99.0/24 6to4 relay anycast
        ("192.88.98.255", true),
        ("192.88.99.0", false),
        ("192.88.99.1", false),
        ("192.88.99.255", false),
        ("192.88.100.0", true),
        // Globally reachable special-purpose blocks: AS112, AMT, AS112 direct delegation.
        ("192.31.196.1", true),
        ("192.52.193.1", true),
        ("192.175.48.1", true),
        // 192.168.0.0/16 private-use
        ("192.167.255.255", true),
        ("192.168.0.0", false),
        ("192.168.255.255", false),
        ("192.169.0.0", true),
        // 198.18.0.0/15 benchmarking
        ("198.17.255.255", true),
        ("198.18.0.0", false),
        ("198.19.255.255", false),
        ("198.20.0.0", true),
        // 198.51.100.0/24 TEST-NET-2
        ("198.51.99.255", true),
        ("198.51.100.0", false),
        ("198.51.100.255", false),
        ("198.51.101.0", true),
        // 203.0.113.0/24 TEST-NET-3
        ("203.0.112.255", true),
        ("203.0.113.0", false),
        ("203.0.113.255", false),
        ("203.0.114.0", true),
        // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, 255.255.255.255 broadcast
        ("223.255.255.255", true),
        ("224.0.0.0", false),
        ("239.255.255.255", false),
        ("240.0.0.0", false),
        ("255.255.255.255", false),
        ("1.1.1.1", true),
        ("8.8.8.8", true),
        ("93.184.216.34", true),
        // ::, ::1
        ("::", false),
        ("::1", false),
        ("::2", false),
        // ::ffff:0:0/96 IPv4-mapped: judged by the IPv4 address
        ("::ffff:0.0.0.0", false),
        ("::ffff:127.0.0.1", false),
        ("::ffff:10.0.0.1", false),
        ("::ffff:192.0.2.1", false),
        ("::ffff:8.8.8.8", true),
        ("::ffff:255.255.255.255", false),
        // ::ffff:0:0:0/96 IPv4-translated: all refused
        ("::ffff:0:0.0.0.0", false),
        ("::ffff:0:8.8.8.8", false),
        ("::ffff:0:10.0.0.1", false),
        ("::ffff:0:255.255.255.255", false),
        // ::/96 IPv4-compatible (deprecated): judged by the IPv4 address
        ("::127.0.0.1", false),
        ("::10.0.0.1", false),
        ("::8.8.8.8", true),
        ("::1:0:0", false),
        // 64:ff9b::/96 NAT64
        ("64:ff9b::", false),
        ("64:ff9b::a00:1", false),
        ("64:ff9b::7f00:1", false),
        ("64:ff9b::c000:201", false),
        ("64:ff9b::808:808", true),
        ("64:ff9b::ffff:ffff", false),
        ("64:ff9b::1:0:0", false),
        ("64:ff9a:ffff:ffff:ffff:ffff:808:808", false),
        // 64:ff9b:1::/48 local-use NAT64
        ("64:ff9b:1::", false),
        ("64:ff9b:1::808:808", false),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false),
        // 100::/64 discard-only, 100:0:0:1::/64 dummy prefix
        ("100::", false),
        ("100::ffff:ffff:ffff:ffff", false),
        ("100:0:0:1::", false),
        ("100:0:0:1:ffff:ffff:ffff:ffff", false),
        ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        // 2001::/32 Teredo: server 65.54.227.120; the client is the inverted last 32 bits.
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", true), // client 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false), // client 192.0.2.45
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", false), // client 10.0.0.1
        ("2001:0:4136:e378::", false),                  // client 255.255.255.255
        ("2001:0:a00:1:8000:63bf:f7f7:f7f7", false),    // server 10.0.0.1
        ("2001::", false),                              // server 0.0.0.0
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", false), // server 255.255.255.255
        // 2001::/23 IETF protocol assignments and what it holds
        ("2001:1::", false),
        ("2001:1::1", true),
        ("2001:1::2", true),
        ("2001:1::3", true),
        ("2001:1::4", false),
        ("2001:2::", false),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:2:1::", false),
        ("2001:3::", true),
        ("2001:3:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:4:112::", true),
        ("2001:4:112:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:4:113::", false),
        ("2001:f:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:10::", false),
        ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:20::", false),
        ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:30::", false),
        ("2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:200::", true),
        // 2001:db8::/32 documentation
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:db8::", false),
        ("2001:db8::1", false),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:db9::", true),
        // 2002::/16 6to4: judged by bits 16..48
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2002::", false),
        ("2002:7f00:1::", false),
        ("2002:a9fe:a9fe::1", false),
        ("2002:c000:201::", false),
        ("2002:c058:6301::", false),
        ("2002:808:808::1", true),
        ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2003::", true),
        // 2620:4f:8000::/48 AS112 direct delegation: globally reachable
        ("2620:4f:8000::1", true),
        // 3fff::/20 documentation
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("3fff::", false),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("3fff:1000::", true),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        // Outside 2000::/3: SRv6 SIDs, unique-local, link-local, site-local, multicast, reserved
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("4000::", false),
        ("5f00::", false),
        ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fc00::", false),
        ("fd12::1", false),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fe80::", false),
        ("fe80::1", false),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fec0::1", false),
        ("ff02::1", false),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        // Ordinary global unicast
        ("2606:4700::1111", true),
        ("2a00:1450:4001:80b::200e", true),
    ];

    #[test]
    fn address_policy() {
        for &(ip, public) in ADDRESSES {
            let addr: IpAddr = ip.parse().expect("ip");
            assert_eq!(
                is_public(addr),
                public,
                "{ip}: expected {}, refusal {:?}",
                if public { "public" } else { "refused" },
                refusal(addr)
            );
        }
    }

    #[test]
    fn refusals_name_the_block() {
        let why = |s: &str| refusal(s.parse().expect("ip"));
        assert_eq!(why("203.0.113.7"), Some("documentation (TEST-NET-3)"));
        assert_eq!(why("2002:a00:1::"), Some("6to4"));
        assert_eq!(why("::ffff:0:8.8.8.8"), Some("IPv4-translated (SIIT)"));
        assert_eq!(why("100::1"), Some("discard-only"));
        assert_eq!(why("8.8.8.8"), None);
        let err = literal_ip_allowed(&Url::parse("https://[2001:db8::1]/").expect("url"), false)
            .expect_err("documentation");
        assert!(err.contains("(documentation)"), "{err}");
    }

    #[test]
    fn tables_are_well_formed() {
        // No bits set past the prefix length.
        for b in REFUSED_V4 {
            let host_bits = b.net.checked_shl(u32::from(b.len)).unwrap_or(0);
            assert!(b.len <= 32 && host_bits == 0, "{}", b.name);
        }
        for (b, _) in V6_BLOCKS {
            let host_bits = b.net.checked_shl(u32::from(b.len)).unwrap_or(0);
            assert!(b.len <= 128 && host_bits == 0, "{}", b.name);
        }
        // First match wins: a block listed after one that contains it could never match.
        for (i, (later, _)) in V6_BLOCKS.iter().enumerate() {
            for (earlier, _) in &V6_BLOCKS[..i] {
                assert!(
                    !(earlier.len <= later.len && contains_v6(earlier, later.net)),
                    "{} is shadowed by {}",
                    later.name,
                    earlier.name
                );
            }
        }
    }

    fn header_map(pairs: &[(&str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                reqwest::header::HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn stored_bytes(headers: &Value) -> usize {
        headers
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| k.len() + v.as_str().expect("string").len())
            .sum()
    }

    #[test]
    fn header_cap_boundaries() {
        // name "x-a" (3 bytes) + value: exactly the cap, then one byte more.
        let exact = "v".repeat(MAX_RESPONSE_HEADER_BYTES - 3);
        let (kept, truncated) = keep_headers(&header_map(&[("x-a", exact.clone())]));
        assert!(!truncated);
        assert_eq!(stored_bytes(&kept), MAX_RESPONSE_HEADER_BYTES);

        let over = "v".repeat(MAX_RESPONSE_HEADER_BYTES - 2);
        let (kept, truncated) = keep_headers(&header_map(&[("x-a", over)]));
        assert!(truncated);
        assert_eq!(kept, serde_json::json!({}));

        // Order kept; stops at the first one that does not fit, even if a later one would.
        let half = "v".repeat(MAX_RESPONSE_HEADER_BYTES / 2);
        let (kept, truncated) = keep_headers(&header_map(&[
            ("x-1", half.clone()),
            ("x-2", half.clone()),
            ("x-3", "small".into()),
        ]));
        assert!(truncated);
        let names: Vec<&String> = kept.as_object().expect("object").keys().collect();
        assert_eq!(names, ["x-1"]);

        // A repeated name costs name + ", " + value again.
        let (kept, truncated) = keep_headers(&header_map(&[
            ("set-cookie", "a=1".into()),
            ("set-cookie", "b=2".into()),
        ]));
        assert!(!truncated);
        assert_eq!(kept, serde_json::json!({"set-cookie": "a=1, b=2"}));
        let value = "v".repeat(MAX_RESPONSE_HEADER_BYTES - 2 * 3 - 2 - 1);
        let (kept, truncated) =
            keep_headers(&header_map(&[("x-a", "1".into()), ("x-a", value.clone())]));
        assert!(!truncated, "3 + 1 + 3 + 2 + rest = cap");
        assert_eq!(stored_bytes(&kept), MAX_RESPONSE_HEADER_BYTES - 3);
        let (_, truncated) = keep_headers(&header_map(&[("x-a", "12".into()), ("x-a", value)]));
        assert!(truncated);

        let (kept, truncated) = keep_headers(&HeaderMap::new());
        assert!(!truncated);
        assert_eq!(kept, serde_json::json!({}));
    }

    /// A receiver on 127.0.0.1 that answers one request with `head` (status line and headers,
    /// without the blank line) and hands back what it was sent.
    async fn raw_receiver(head: String) -> (Url, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the whole request (head and Content-Length body) before answering, so closing
            // the socket does not reset it under the client.
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let response = format!("{head}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            // A client that gave up early (a head too large) makes these fail; that is fine.
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            String::from_utf8_lossy(&request).to_string()
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).expect("url");
        (url, served)
    }

    fn test_client() -> DeliveryClient {
        DeliveryClient::new(Duration::from_secs(10), true).expect("client")
    }

    #[tokio::test]
    async fn stored_headers_are_capped() {
        // 90 headers of 1 KiB: ~92 KiB, within hyper's 100 headers and ~408 KiB head.
        let mut head = String::from("HTTP/1.1 200 OK");
        for i in 0..90 {
            head.push_str(&format!("\r\nx-filler-{i:03}: {}", "a".repeat(1024)));
        }
        let (url, served) = raw_receiver(head).await;
        let answer = test_client()
            .post(&url, HeaderMap::new(), b"{}".to_vec())
            .await
            .expect("answer");
        served.await.expect("receiver");
        assert_eq!(answer.status, 200);
        assert!(answer.headers_truncated);
        let stored = stored_bytes(&answer.headers);
        assert!(stored <= MAX_RESPONSE_HEADER_BYTES, "{stored} bytes kept");
        assert!(
            stored > MAX_RESPONSE_HEADER_BYTES - 1100,
            "kept as many as fit: {stored}"
        );
        let names: Vec<&String> = answer.headers.as_object().expect("object").keys().collect();
        assert_eq!(
            names.first().map(|s| s.as_str()),
            Some("x-filler-000"),
            "response order"
        );
        assert_eq!(answer.body, b"ok");
    }

    #[tokio::test]
    async fn small_headers_are_kept_whole() {
        let (url, served) =
            raw_receiver("HTTP/1.1 503 Service Unavailable\r\nretry-after: 7".into()).await;
        let answer = test_client()
            .post(&url, HeaderMap::new(), b"{}".to_vec())
            .await
            .expect("answer");
        served.await.expect("receiver");
        assert!(!answer.headers_truncated);
        assert_eq!(answer.retry_after.as_deref(), Some("7"));
        assert_eq!(answer.headers["retry-after"], "7");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused_by_hyper() {
        // One 512 KiB value is past hyper's read buffer: the attempt fails instead of buffering it.
        let head = format!("HTTP/1.1 200 OK\r\nx-huge: {}", "a".repeat(512 * 1024));
        let (url, served) = raw_receiver(head).await;
        let failure = test_client()
            .post(&url, HeaderMap::new(), b"{}".to_vec())
            .await
            .expect_err("too large");
        served.abort();
        assert_eq!(failure.kind, FailureKind::Http, "{}", failure.message);
    }

    #[tokio::test]
    async fn failures_do_not_show_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = Url::parse(&format!(
            "http://alice:hunter2@127.0.0.1:{port}/hook?token=s3cr3t&x=1"
        ))
        .expect("url");
        let failure = test_client()
            .post(&url, HeaderMap::new(), b"{}".to_vec())
            .await
            .expect_err("nothing listens");
        assert_eq!(failure.kind, FailureKind::Connect, "{}", failure.message);
        for secret in ["alice", "hunter2", "s3cr3t", "token", "/hook"] {
            assert!(
                !failure.message.contains(secret),
                "{secret} in {:?}",
                failure.message
            );
        }
    }

    #[tokio::test]
    async fn userinfo_is_sent_as_basic_auth() {
        let (url, served) = raw_receiver("HTTP/1.1 200 OK".into()).await;
        let mut url = url;
        url.set_username("alice").expect("username");
        url.set_password(Some("p@ss")).expect("password");
        let answer = test_client()
            .post(&url, HeaderMap::new(), b"{}".to_vec())
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        let request = served.await.expect("receiver").to_ascii_lowercase();
        // base64("alice:p@ss")
        assert!(
            request.contains("authorization: basic ywxpy2u6cebzcw=="),
            "{request}"
        );
        assert!(request.starts_with("post /hook http/1.1"), "{request}");
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
