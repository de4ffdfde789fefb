//! Verification as data: one HMAC engine driven by a [`HmacScheme`] (where the signature is, how
//! it is written, what is signed, where the timestamp is), of which every HMAC preset is an
//! instance; Ed25519 for Discord; a shared `token`. Plus, per preset, where the event's type and
//! id are and which handshake it answers.
//!
//! Pure functions over the raw body and a header lookup; every comparison is constant-time
//! (`Mac::verify_slice`, `subtle`).

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::config::{Locator, SourceConfig};

/// The HMAC's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// How the signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// How the secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// The secret string's UTF-8 bytes, whatever it looks like (Stripe's `whsec_…` included).
    Utf8,
    /// Standard Webhooks: base64 after an optional `whsec_`.
    WhsecBase64,
}

/// Where in the signature header the signatures are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    /// The whole value, after `prefix` (`sha256=`, `v0=`, or none).
    Whole { prefix: String },
    /// `t=…,v1=…[,v1=…]` (Stripe) or `ts=…;h1=…` (Paddle): pairs split by `separator`; every pair
    /// named `signature` is a candidate, the pair named `timestamp` the timestamp.
    Pairs {
        separator: char,
        signature: &'static str,
        timestamp: &'static str,
    },
    /// Space-separated `v1,<sig>` entries (Standard Webhooks); only `version` counts.
    Versioned { version: &'static str },
}

/// A piece of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Body,
    Timestamp,
    /// A header's value, lowercased name.
    Header(String),
    Literal(String),
}

/// Parses a template of `{body}`, `{timestamp}`, `{header:<Name>}` and literal text.
#[must_use]
pub fn template(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_string()));
        }
        match &rest[start + 1..start + len] {
            "body" => parts.push(Part::Body),
            "timestamp" => parts.push(Part::Timestamp),
            other => parts.push(Part::Header(
                other.trim_start_matches("header:").to_ascii_lowercase(),
            )),
        }
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    parts
}

/// Where the timestamp is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampAt {
    Header(String),
    /// The `timestamp` pair of [`Signatures::Pairs`].
    SignaturePair,
    /// A number in the JSON body (Linear's `webhookTimestamp`): read after the signature matched.
    Body(&'static str),
}

/// The timestamp's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
    /// RFC 3339 text (Zendesk), or seconds.
    Rfc3339,
}

/// An HMAC scheme.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    /// The signature header, lowercased.
    pub header: String,
    pub signatures: Signatures,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub key: KeyForm,
    pub signed: Vec<Part>,
    pub timestamp: Option<(TimestampAt, Unit)>,
}

/// How a source's requests are verified.
#[derive(Debug, Clone)]
pub enum Verifier {
    Hmac(HmacScheme),
    /// Ed25519 over `timestamp + body` (Discord); signature header in hex.
    Ed25519 {
        key: ed25519_dalek::VerifyingKey,
        signature_header: &'static str,
        timestamp_header: &'static str,
    },
    /// The secret sent as is (`Authorization: Bearer <secret>`, or the secret alone).
    Token {
        header: String,
    },
}

/// A handshake a provider sends to check the URL, answered before anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    None,
    /// `{"type": "url_verification", "challenge": c}` → `{"challenge": c}`.
    Slack,
    /// `{"type": 1}` → `{"type": 1}`; webhook-event ping `{"type": 0}` → 204.
    Discord,
}

/// Where a request's event type is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRule {
    /// The first of these present.
    First(Vec<Locator>),
    /// `a`, then `.` + `b` when `b` is present (GitHub's event + action, Linear's type + action).
    Joined(Locator, Locator),
}

/// A source's scheme: verification, handshake, and where the type and id are.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub verifier: Verifier,
    pub handshake: Handshake,
    pub event_type: TypeRule,
    /// The first of these present; none → the body's SHA-256.
    pub id: Vec<Locator>,
    /// Standard Webhooks: headers may come as `svix-…` instead of `webhook-…`.
    pub svix_alias: bool,
    /// Headers kept with the event besides the type/id/timestamp ones (never the signature).
    pub extra_headers: &'static [&'static str],
}

fn header(name: &str) -> Locator {
    Locator::Header(name.to_string())
}
fn pointer(p: &str) -> Locator {
    Locator::Pointer(p.to_string())
}

fn hmac(
    header: &str,
    signatures: Signatures,
    encoding: Encoding,
    signed: &str,
    timestamp: Option<(TimestampAt, Unit)>,
) -> Verifier {
    Verifier::Hmac(HmacScheme {
        header: header.to_string(),
        signatures,
        algorithm: Algorithm::Sha256,
        encoding,
        key: KeyForm::Utf8,
        signed: template(signed),
        timestamp,
    })
}

fn whole(prefix: &str) -> Signatures {
    Signatures::Whole {
        prefix: prefix.to_string(),
    }
}

impl Scheme {
    /// The scheme of a validated source.
    ///
    /// # Errors
    /// Only for a preset the configuration would not have let through.
    pub fn for_source(cfg: &SourceConfig) -> Result<Self, String> {
        use Encoding::{Base64, Hex};
        let mut s = match cfg.preset.as_str() {
            "standard_webhooks" => Self {
                verifier: Verifier::Hmac(HmacScheme {
                    header: "webhook-signature".into(),
                    signatures: Signatures::Versioned { version: "v1" },
                    algorithm: Algorithm::Sha256,
                    encoding: Base64,
                    key: KeyForm::WhsecBase64,
                    signed: template("{header:webhook-id}.{timestamp}.{body}"),
                    timestamp: Some((
                        TimestampAt::Header("webhook-timestamp".into()),
                        Unit::Seconds,
                    )),
                }),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/type"), pointer("/event")]),
                id: vec![header("webhook-id")],
                svix_alias: true,
                extra_headers: &[],
            },
            "github" => Self {
                verifier: hmac("x-hub-signature-256", whole("sha256="), Hex, "{body}", None),
                handshake: Handshake::None,
                event_type: TypeRule::Joined(header("x-github-event"), pointer("/action")),
                id: vec![header("x-github-delivery")],
                svix_alias: false,
                extra_headers: &[
                    "x-github-hook-id",
                    "x-github-hook-installation-target-id",
                    "x-github-hook-installation-target-type",
                ],
            },
            "stripe" => Self {
                verifier: hmac(
                    "stripe-signature",
                    Signatures::Pairs {
                        separator: ',',
                        signature: "v1",
                        timestamp: "t",
                    },
                    Hex,
                    "{timestamp}.{body}",
                    Some((TimestampAt::SignaturePair, Unit::Seconds)),
                ),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/type")]),
                id: vec![pointer("/id")],
                svix_alias: false,
                extra_headers: &[],
            },
            "shopify" => Self {
                verifier: hmac("x-shopify-hmac-sha256", whole(""), Base64, "{body}", None),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![header("x-shopify-topic")]),
                id: vec![header("x-shopify-webhook-id")],
                svix_alias: false,
                extra_headers: &[
                    "x-shopify-shop-domain",
                    "x-shopify-api-version",
                    "x-shopify-triggered-at",
                    "x-shopify-event-id",
                ],
            },
            "slack" => Self {
                verifier: hmac(
                    "x-slack-signature",
                    whole("v0="),
                    Hex,
                    "v0:{timestamp}:{body}",
                    Some((
                        TimestampAt::Header("x-slack-request-timestamp".into()),
                        Unit::Seconds,
                    )),
                ),
                handshake: Handshake::Slack,
                event_type: TypeRule::First(vec![pointer("/event/type"), pointer("/type")]),
                id: vec![pointer("/event_id")],
                svix_alias: false,
                extra_headers: &["x-slack-retry-num", "x-slack-retry-reason"],
            },
            "linear" => Self {
                verifier: hmac(
                    "linear-signature",
                    whole(""),
                    Hex,
                    "{body}",
                    Some((TimestampAt::Body("/webhookTimestamp"), Unit::Millis)),
                ),
                handshake: Handshake::None,
                event_type: TypeRule::Joined(pointer("/type"), pointer("/action")),
                id: vec![header("linear-delivery")],
                svix_alias: false,
                extra_headers: &["linear-event"],
            },
            "paddle" => Self {
                verifier: hmac(
                    "paddle-signature",
                    Signatures::Pairs {
                        separator: ';',
                        signature: "h1",
                        timestamp: "ts",
                    },
                    Hex,
                    "{timestamp}:{body}",
                    Some((TimestampAt::SignaturePair, Unit::Seconds)),
                ),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/event_type")]),
                id: vec![pointer("/event_id")],
                svix_alias: false,
                extra_headers: &[],
            },
            "zendesk" => Self {
                verifier: hmac(
                    "x-zendesk-webhook-signature",
                    whole(""),
                    Base64,
                    "{timestamp}{body}",
                    Some((
                        TimestampAt::Header("x-zendesk-webhook-signature-timestamp".into()),
                        Unit::Rfc3339,
                    )),
                ),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/type")]),
                id: vec![header("x-zendesk-webhook-invocation-id")],
                svix_alias: false,
                extra_headers: &["x-zendesk-webhook-id"],
            },
            "intercom" => Self {
                verifier: Verifier::Hmac(HmacScheme {
                    header: "x-hub-signature".into(),
                    signatures: whole("sha1="),
                    algorithm: Algorithm::Sha1,
                    encoding: Hex,
                    key: KeyForm::Utf8,
                    signed: vec![Part::Body],
                    timestamp: None,
                }),
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/topic")]),
                id: vec![pointer("/id")],
                svix_alias: false,
                extra_headers: &[],
            },
            "discord" => {
                let key = cfg.public_key.ok_or("discord needs public_key")?;
                Self {
                    verifier: Verifier::Ed25519 {
                        key: ed25519_dalek::VerifyingKey::from_bytes(&key)
                            .map_err(|_| "public_key is not an Ed25519 public key".to_string())?,
                        signature_header: "x-signature-ed25519",
                        timestamp_header: "x-signature-timestamp",
                    },
                    handshake: Handshake::Discord,
                    event_type: TypeRule::First(vec![pointer("/event/type")]),
                    id: Vec::new(),
                    svix_alias: false,
                    extra_headers: &[],
                }
            }
            "hmac" => {
                let k = cfg.hmac.as_ref().ok_or("hmac needs its keys")?;
                let timestamp = k.timestamp_header.as_ref().map(|h| {
                    (
                        TimestampAt::Header(h.clone()),
                        if k.timestamp_unit == "ms" {
                            Unit::Millis
                        } else {
                            Unit::Seconds
                        },
                    )
                });
                Self {
                    verifier: Verifier::Hmac(HmacScheme {
                        header: k.signature_header.clone().unwrap_or_default(),
                        signatures: whole(&k.signature_prefix),
                        algorithm: match k.algorithm.as_str() {
                            "sha1" => Algorithm::Sha1,
                            "sha512" => Algorithm::Sha512,
                            _ => Algorithm::Sha256,
                        },
                        encoding: if k.encoding == "base64" { Base64 } else { Hex },
                        key: KeyForm::Utf8,
                        signed: template(&k.signed),
                        timestamp,
                    }),
                    handshake: Handshake::None,
                    event_type: TypeRule::First(vec![pointer("/type")]),
                    id: vec![pointer("/id")],
                    svix_alias: false,
                    extra_headers: &[],
                }
            }
            "token" => Self {
                verifier: Verifier::Token {
                    header: cfg
                        .token_header
                        .clone()
                        .unwrap_or_else(|| "authorization".into()),
                },
                handshake: Handshake::None,
                event_type: TypeRule::First(vec![pointer("/type")]),
                id: vec![pointer("/id")],
                svix_alias: false,
                extra_headers: &[],
            },
            other => return Err(format!("unknown preset `{other}`")),
        };
        if let Some(t) = &cfg.event_type {
            s.event_type = TypeRule::First(vec![t.clone()]);
        }
        if let Some(i) = &cfg.idempotency {
            s.id = vec![i.clone()];
        }
        Ok(s)
    }

    /// Whether the signature covers header `name` (Standard Webhooks' id).
    #[must_use]
    pub fn signs_header(&self, name: &str) -> bool {
        match &self.verifier {
            Verifier::Hmac(h) => h
                .signed
                .iter()
                .any(|p| matches!(p, Part::Header(s) if s == name)),
            _ => false,
        }
    }

    /// The headers whose values the rejected log keeps: the signature and timestamp headers.
    #[must_use]
    pub fn signature_headers(&self) -> Vec<&str> {
        match &self.verifier {
            Verifier::Hmac(h) => {
                let mut v = vec![h.header.as_str()];
                if let Some((TimestampAt::Header(t), _)) = &h.timestamp {
                    v.push(t.as_str());
                }
                if self.svix_alias {
                    v.extend(["svix-signature", "svix-timestamp"]);
                }
                v
            }
            Verifier::Ed25519 {
                signature_header,
                timestamp_header,
                ..
            } => {
                vec![signature_header, timestamp_header]
            }
            // The token is the secret itself: never kept.
            Verifier::Token { .. } => Vec::new(),
        }
    }

    /// The headers kept with a stored event: type, id and timestamp headers and the preset's
    /// extras, never a signature.
    #[must_use]
    pub fn kept_headers(&self) -> Vec<String> {
        let mut v: Vec<String> = ["content-type", "user-agent"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let mut locators: Vec<&Locator> = self.id.iter().collect();
        match &self.event_type {
            TypeRule::First(ls) => locators.extend(ls),
            TypeRule::Joined(a, b) => locators.extend([a, b]),
        }
        for l in locators {
            if let Locator::Header(h) = l {
                v.push(h.clone());
                if self.svix_alias {
                    v.push(h.replacen("webhook-", "svix-", 1));
                }
            }
        }
        match &self.verifier {
            Verifier::Hmac(HmacScheme {
                timestamp: Some((TimestampAt::Header(t), _)),
                ..
            }) => {
                v.push(t.clone());
                if self.svix_alias {
                    v.push("svix-timestamp".into());
                }
            }
            Verifier::Ed25519 {
                timestamp_header, ..
            } => v.push((*timestamp_header).to_string()),
            _ => {}
        }
        v.extend(self.extra_headers.iter().map(|s| (*s).to_string()));
        v.sort();
        v.dedup();
        v
    }
}

/// The most signatures of one header that are tried.
const MAX_SIGNATURES: usize = 16;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed or not matching; the text says which, naming no secret.
    InvalidSignature(String),
    TimestampOutOfRange(String),
    /// The scheme needed the body parsed and it is not what it should be.
    InvalidPayload(String),
}

/// Looks up a request header by its lowercased name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for actix_web::http::header::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        Self::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        Self::get(self, name).map(String::as_str)
    }
}

/// Standard Webhooks' headers under their `svix-` names when the `webhook-` ones are absent.
struct Aliased<'a, H: Headers + ?Sized> {
    inner: &'a H,
    svix: bool,
}

impl<H: Headers + ?Sized> Aliased<'_, H> {
    fn get(&self, name: &str) -> Option<&str> {
        if self.svix
            && let Some(rest) = name.strip_prefix("webhook-")
        {
            return self.inner.get(&format!("svix-{rest}"));
        }
        self.inner.get(name)
    }
}

/// The time a timestamp stands for, in ms since the epoch.
fn timestamp_ms(text: &str, unit: Unit) -> Option<i64> {
    let text = text.trim();
    match unit {
        Unit::Seconds => text.parse::<i64>().ok()?.checked_mul(1000),
        Unit::Millis => text.parse::<i64>().ok(),
        Unit::Rfc3339 => match text.parse::<i64>() {
            Ok(s) => s.checked_mul(1000),
            Err(_) => chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis()),
        },
    }
}

fn within(at_ms: Option<i64>, now_ms: i64, tolerance: Duration) -> bool {
    let tolerance = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    at_ms.is_some_and(|t| t.abs_diff(now_ms) <= tolerance.unsigned_abs())
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::InvalidSignature(message.into())
}

fn mac_over(
    scheme: &HmacScheme,
    key: &[u8],
    headers: &Aliased<'_, impl Headers + ?Sized>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<MacAny, Refusal> {
    let mut mac = MacAny::new(scheme.algorithm, key);
    for part in &scheme.signed {
        match part {
            Part::Body => mac.update(body),
            Part::Timestamp => mac.update(timestamp.unwrap_or_default().as_bytes()),
            Part::Literal(l) => mac.update(l.as_bytes()),
            Part::Header(h) => mac.update(
                headers
                    .get(h)
                    .ok_or_else(|| invalid(format!("{h} is missing")))?
                    .as_bytes(),
            ),
        }
    }
    Ok(mac)
}

/// An HMAC over one of the three hashes.
#[derive(Clone)]
enum MacAny {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl MacAny {
    fn new(algorithm: Algorithm, key: &[u8]) -> Self {
        const ANY: &str = "HMAC takes any key length";
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(Hmac::new_from_slice(key).expect(ANY)),
            Algorithm::Sha256 => Self::Sha256(Hmac::new_from_slice(key).expect(ANY)),
            Algorithm::Sha512 => Self::Sha512(Hmac::new_from_slice(key).expect(ANY)),
        }
    }
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(m) => m.update(bytes),
            Self::Sha256(m) => m.update(bytes),
            Self::Sha512(m) => m.update(bytes),
        }
    }
    /// Constant-time comparison with `expected`.
    fn verifies(self, expected: &[u8]) -> bool {
        match self {
            Self::Sha1(m) => m.verify_slice(expected).is_ok(),
            Self::Sha256(m) => m.verify_slice(expected).is_ok(),
            Self::Sha512(m) => m.verify_slice(expected).is_ok(),
        }
    }
    fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha1(m) => m.finalize().into_bytes().to_vec(),
            Self::Sha256(m) => m.finalize().into_bytes().to_vec(),
            Self::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }
}

fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
    }
}

fn key_bytes(form: KeyForm, secret: &str) -> Option<Vec<u8>> {
    match form {
        KeyForm::Utf8 => Some(secret.as_bytes().to_vec()),
        KeyForm::WhsecBase64 => crate::config::sources::standard_webhooks_key(secret),
    }
}

/// The candidate signatures and the timestamp a signature header carries.
fn parse_header<'a>(scheme: &HmacScheme, value: &'a str) -> (Vec<&'a str>, Option<&'a str>) {
    match &scheme.signatures {
        Signatures::Whole { prefix } => (
            value
                .trim()
                .strip_prefix(prefix.as_str())
                .into_iter()
                .collect(),
            None,
        ),
        Signatures::Pairs {
            separator,
            signature,
            timestamp,
        } => {
            let mut sigs = Vec::new();
            let mut ts = None;
            for pair in value.split(*separator) {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    if k == *signature {
                        sigs.push(v);
                    } else if k == *timestamp {
                        ts = Some(v);
                    }
                }
            }
            (sigs, ts)
        }
        Signatures::Versioned { version } => (
            value
                .split(' ')
                .filter_map(|entry| entry.split_once(','))
                .filter(|(v, _)| v == version)
                .map(|(_, sig)| sig)
                .collect(),
            None,
        ),
    }
}

/// Verifies a request against `scheme` with any of `secrets`, the signature first, then the
/// timestamp (within `tolerance` of `now_ms`, either way).
///
/// # Errors
/// A [`Refusal`].
pub fn verify(
    scheme: &Scheme,
    secrets: &[&str],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_ms: i64,
    tolerance: Duration,
) -> Result<(), Refusal> {
    let svix = scheme.svix_alias
        && headers.get("webhook-signature").is_none()
        && headers.get("svix-signature").is_some();
    let headers = Aliased {
        inner: headers,
        svix,
    };
    match &scheme.verifier {
        Verifier::Hmac(h) => verify_hmac(h, secrets, &headers, body, now_ms, tolerance),
        Verifier::Ed25519 {
            key,
            signature_header,
            timestamp_header,
        } => {
            let sig = headers
                .get(signature_header)
                .ok_or_else(|| invalid(format!("{signature_header} is missing")))?;
            let ts = headers
                .get(timestamp_header)
                .ok_or_else(|| invalid(format!("{timestamp_header} is missing")))?;
            let mut bytes = [0u8; 64];
            hex::decode_to_slice(sig.trim(), &mut bytes)
                .map_err(|_| invalid(format!("{signature_header} is not 128 hex digits")))?;
            let signature = ed25519_dalek::Signature::from_bytes(&bytes);
            let mut message = Vec::with_capacity(ts.len() + body.len());
            message.extend_from_slice(ts.as_bytes());
            message.extend_from_slice(body);
            key.verify_strict(&message, &signature)
                .map_err(|_| invalid(format!("{signature_header} does not match the body")))?;
            if !within(timestamp_ms(ts, Unit::Seconds), now_ms, tolerance) {
                return Err(Refusal::TimestampOutOfRange(format!(
                    "{timestamp_header} is outside the source's tolerance"
                )));
            }
            Ok(())
        }
        Verifier::Token { header } => {
            let value = headers
                .get(header)
                .ok_or_else(|| invalid(format!("{header} is missing")))?
                .trim();
            let presented = if header == "authorization" {
                value.strip_prefix("Bearer ").unwrap_or(value).trim()
            } else {
                value
            };
            // Compared as digests: equal length whatever was sent, so not even the token's
            // length shows in the timing.
            let presented_digest = sha2::Sha256::digest(presented.as_bytes());
            let mut ok = subtle::Choice::from(0);
            for s in secrets {
                ok |= presented_digest
                    .as_slice()
                    .ct_eq(sha2::Sha256::digest(s.as_bytes()).as_slice());
            }
            if bool::from(ok) && !presented.is_empty() {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{header} does not hold the source's token"
                )))
            }
        }
    }
}

fn verify_hmac(
    scheme: &HmacScheme,
    secrets: &[&str],
    headers: &Aliased<'_, impl Headers + ?Sized>,
    body: &[u8],
    now_ms: i64,
    tolerance: Duration,
) -> Result<(), Refusal> {
    let name = &scheme.header;
    let value = headers
        .get(name)
        .ok_or_else(|| invalid(format!("{name} is missing")))?;
    let (candidates, pair_ts) = parse_header(scheme, value);
    // A few signatures are normal (rotation); more than 16 is not a real sender.
    let candidates: Vec<Vec<u8>> = candidates
        .into_iter()
        .take(MAX_SIGNATURES)
        .filter_map(|c| decode(scheme.encoding, c))
        .collect();
    if candidates.is_empty() {
        return Err(invalid(format!(
            "{name} holds no signature in the expected form"
        )));
    }
    let timestamp = match &scheme.timestamp {
        Some((TimestampAt::Header(h), _)) => Some(
            headers
                .get(h)
                .ok_or_else(|| invalid(format!("{h} is missing")))?,
        ),
        Some((TimestampAt::SignaturePair, _)) => {
            Some(pair_ts.ok_or_else(|| invalid(format!("{name} has no timestamp")))?)
        }
        Some((TimestampAt::Body(_), _)) | None => None,
    };
    let mut matched = false;
    for secret in secrets {
        let Some(key) = key_bytes(scheme.key, secret) else {
            continue;
        };
        let mac = mac_over(scheme, &key, headers, timestamp, body)?;
        for candidate in &candidates {
            matched |= mac.clone().verifies(candidate);
        }
    }
    if !matched {
        return Err(invalid(format!("{name} does not match the body")));
    }
    let at_ms = match &scheme.timestamp {
        None => return Ok(()),
        Some((TimestampAt::Body(p), unit)) => {
            let pointer = super::extract::Pointer::new(p);
            let found = super::extract::json(body, &[&pointer])
                .map_err(|e| Refusal::InvalidPayload(format!("the body is not JSON: {e}")))?;
            found[0].as_deref().and_then(|t| timestamp_ms(t, *unit))
        }
        Some((_, unit)) => timestamp.and_then(|t| timestamp_ms(t, *unit)),
    };
    if within(at_ms, now_ms, tolerance) {
        Ok(())
    } else {
        Err(Refusal::TimestampOutOfRange(
            "the request's timestamp is missing or outside the source's tolerance".into(),
        ))
    }
}

/// The signature header value a sender would put on `body` (tests, examples): the first secret,
/// the scheme's form.
#[must_use]
pub fn sign(
    scheme: &HmacScheme,
    secret: &str,
    headers: &dyn Fn(&str) -> Option<String>,
    timestamp: Option<&str>,
    body: &[u8],
) -> String {
    let key = key_bytes(scheme.key, secret).unwrap_or_default();
    let owned = |name: &str| headers(name);
    let mut mac = MacAny::new(scheme.algorithm, &key);
    for part in &scheme.signed {
        match part {
            Part::Body => mac.update(body),
            Part::Timestamp => mac.update(timestamp.unwrap_or_default().as_bytes()),
            Part::Literal(l) => mac.update(l.as_bytes()),
            Part::Header(h) => mac.update(owned(h).unwrap_or_default().as_bytes()),
        }
    }
    let raw = mac.finalize();
    let sig = match scheme.encoding {
        Encoding::Hex => hex::encode(raw),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
    };
    match &scheme.signatures {
        Signatures::Whole { prefix } => format!("{prefix}{sig}"),
        Signatures::Pairs {
            separator,
            signature,
            timestamp: t,
        } => {
            format!(
                "{t}={}{separator}{signature}={sig}",
                timestamp.unwrap_or_default()
            )
        }
        Signatures::Versioned { version } => format!("{version},{sig}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::from_toml_str;

    fn scheme(preset: &str, secret: &str) -> Scheme {
        let toml = if preset == "discord" {
            format!("[sources.s]\npreset = \"discord\"\npublic_key = \"{secret}\"\n")
        } else {
            format!("[sources.s]\npreset = \"{preset}\"\nsecret = \"{secret}\"\n")
        };
        Scheme::for_source(&from_toml_str(&toml).expect("valid").sources["s"]).expect("scheme")
    }

    fn hmac_of(s: &Scheme) -> &HmacScheme {
        match &s.verifier {
            Verifier::Hmac(h) => h,
            _ => panic!("not hmac"),
        }
    }

    fn check(
        s: &Scheme,
        secrets: &[&str],
        headers: &[(&str, &str)],
        body: &[u8],
        now_s: i64,
    ) -> Result<(), Refusal> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
            .collect();
        verify(
            s,
            secrets,
            &map,
            body,
            now_s * 1000,
            Duration::from_secs(300),
        )
    }

    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    /// The providers' published vectors: secret, signed inputs → the header value.
    #[test]
    fn published_vectors() {
        let no_headers = |_: &str| None::<String>;
        let gh = scheme("github", "It's a Secret to Everybody");
        assert_eq!(
            sign(
                hmac_of(&gh),
                "It's a Secret to Everybody",
                &no_headers,
                None,
                b"Hello, World!"
            ),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let slack = scheme("slack", "8f742231b10e8888abcd99yyyzzz85a5");
        assert_eq!(
            sign(
                hmac_of(&slack),
                "8f742231b10e8888abcd99yyyzzz85a5",
                &no_headers,
                Some("1531420618"),
                SLACK_BODY.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        let shop = scheme("shopify", "test_secret_key");
        assert_eq!(
            sign(
                hmac_of(&shop),
                "test_secret_key",
                &no_headers,
                None,
                br#"{"foo": "bar"}"#
            ),
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
        );
        let stripe = scheme("stripe", "whsec_test_secret");
        assert_eq!(
            sign(
                hmac_of(&stripe),
                "whsec_test_secret",
                &no_headers,
                Some("1700000000"),
                br#"{"id":"evt_test_webhook","object":"event"}"#
            ),
            "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
        );
        let paddle = scheme("paddle", "VALID_SECRET");
        assert_eq!(
            sign(
                hmac_of(&paddle),
                "VALID_SECRET",
                &no_headers,
                Some("1698796800"),
                br#"{"data": "value"}"#
            ),
            "ts=1698796800;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261"
        );
        let sw = scheme(
            "standard_webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let id = |n: &str| (n == "webhook-id").then(|| "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string());
        assert_eq!(
            sign(
                hmac_of(&sw),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                &id,
                Some("1614265330"),
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn each_preset_accepts_its_vector_and_refuses_the_rest() {
        let gh = scheme("github", "It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let body = b"Hello, World!";
        assert_eq!(
            check(
                &gh,
                &["It's a Secret to Everybody"],
                &[("X-Hub-Signature-256", sig)],
                body,
                0
            ),
            Ok(())
        );
        // Missing header, empty, truncated, wrong algorithm prefix, wrong secret, other body.
        for (headers, why) in [
            (vec![], "missing"),
            (vec![("X-Hub-Signature-256", "")], "empty"),
            (
                vec![("X-Hub-Signature-256", "sha256=")],
                "empty after prefix",
            ),
            (vec![("X-Hub-Signature-256", &sig[..40])], "truncated"),
            (
                vec![(
                    "X-Hub-Signature-256",
                    "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                )],
                "wrong algorithm",
            ),
            (
                vec![("X-Hub-Signature", "sha1=00")],
                "the SHA-1 header only",
            ),
        ] {
            assert!(
                matches!(
                    check(&gh, &["It's a Secret to Everybody"], &headers, body, 0),
                    Err(Refusal::InvalidSignature(_))
                ),
                "{why}"
            );
        }
        assert!(check(&gh, &["other"], &[("X-Hub-Signature-256", sig)], body, 0).is_err());
        assert!(
            check(
                &gh,
                &["It's a Secret to Everybody"],
                &[("X-Hub-Signature-256", sig)],
                b"Hello, World?",
                0
            )
            .is_err()
        );
        // Rotation: any configured secret.
        assert_eq!(
            check(
                &gh,
                &["old", "It's a Secret to Everybody"],
                &[("X-Hub-Signature-256", sig)],
                body,
                0
            ),
            Ok(())
        );
    }

    #[test]
    fn timestamps_are_checked_both_ways_after_the_signature() {
        let stripe = scheme("stripe", "whsec_test_secret");
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let good =
            "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        let secrets = ["whsec_test_secret"];
        assert_eq!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", good)],
                body,
                1_700_000_100
            ),
            Ok(())
        );
        assert!(matches!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", good)],
                body,
                1_700_000_301
            ),
            Err(Refusal::TimestampOutOfRange(_))
        ));
        assert!(matches!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", good)],
                body,
                1_699_999_699
            ),
            Err(Refusal::TimestampOutOfRange(_))
        ));
        // One of several v1 signatures matching is enough; a v0 alone is not.
        let several = "t=1700000000,v1=00ff,v0=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        assert_eq!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", several)],
                body,
                1_700_000_000
            ),
            Ok(())
        );
        let v0 = "t=1700000000,v0=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        assert!(matches!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", v0)],
                body,
                1_700_000_000
            ),
            Err(Refusal::InvalidSignature(_))
        ));
        // A forged timestamp breaks the signature, not only the window.
        let moved = good.replace("t=1700000000", "t=1700000001");
        assert!(matches!(
            check(
                &stripe,
                &secrets,
                &[("Stripe-Signature", &moved)],
                body,
                1_700_000_000
            ),
            Err(Refusal::InvalidSignature(_))
        ));
    }

    #[test]
    fn stripe_keys_are_strings_and_standard_webhooks_keys_are_base64() {
        let body = br#"{"test": 2432232314}"#;
        let sw = scheme(
            "standard_webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let headers = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        assert_eq!(
            check(
                &sw,
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                &headers,
                body,
                1_614_265_330
            ),
            Ok(())
        );
        // Unpadded base64 is the same key (the official libraries accept it).
        assert_eq!(
            crate::config::sources::standard_webhooks_key(
                "whsec_dGhpcyBpcyBub3QgdGhlIHNvdXJjZSdzIGtleQ"
            ),
            crate::config::sources::standard_webhooks_key(
                "whsec_dGhpcyBpcyBub3QgdGhlIHNvdXJjZSdzIGtleQ=="
            )
        );
        // Without the prefix the key is the same.
        assert_eq!(
            check(
                &sw,
                &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                &headers,
                body,
                1_614_265_330
            ),
            Ok(())
        );
        // svix- names, and several space-separated signatures.
        let svix = [
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            (
                "svix-signature",
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        assert_eq!(
            check(
                &sw,
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                &svix,
                body,
                1_614_265_330
            ),
            Ok(())
        );
        // The same secret used Stripe's way (as a string) does not verify a Standard Webhooks
        // signature, nor the other way round.
        let stripe = scheme("stripe", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let no = |_: &str| None::<String>;
        let stripe_sig = sign(
            hmac_of(&stripe),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &no,
            Some("1614265330"),
            body,
        );
        let stripe_hex = stripe_sig
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .to_string();
        let as_sw = [
            headers[0],
            headers[1],
            (
                "webhook-signature",
                &*format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD
                        .encode(hex::decode(stripe_hex).unwrap_or_default())
                ),
            ),
        ];
        assert!(
            check(
                &sw,
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                &as_sw,
                body,
                1_614_265_330
            )
            .is_err()
        );
    }

    #[test]
    fn slack_paddle_shopify_intercom_zendesk_linear() {
        let slack = scheme("slack", "8f742231b10e8888abcd99yyyzzz85a5");
        let h = [
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ];
        assert_eq!(
            check(
                &slack,
                &["8f742231b10e8888abcd99yyyzzz85a5"],
                &h,
                SLACK_BODY.as_bytes(),
                1_531_420_618
            ),
            Ok(())
        );
        assert!(matches!(
            check(
                &slack,
                &["8f742231b10e8888abcd99yyyzzz85a5"],
                &h,
                SLACK_BODY.as_bytes(),
                1_531_420_618 + 3600
            ),
            Err(Refusal::TimestampOutOfRange(_))
        ));

        let paddle = scheme("paddle", "VALID_SECRET");
        let h = [(
            "Paddle-Signature",
            "ts=1698796800;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261",
        )];
        assert_eq!(
            check(
                &paddle,
                &["VALID_SECRET"],
                &h,
                br#"{"data": "value"}"#,
                1_698_796_800
            ),
            Ok(())
        );

        let shop = scheme("shopify", "test_secret_key");
        let h = [(
            "X-Shopify-Hmac-Sha256",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
        )];
        assert_eq!(
            check(&shop, &["test_secret_key"], &h, br#"{"foo": "bar"}"#, 0),
            Ok(())
        );

        let no = |_: &str| None::<String>;
        let intercom = scheme("intercom", "s3cr3t");
        let sig = sign(hmac_of(&intercom), "s3cr3t", &no, None, b"{}");
        assert!(sig.starts_with("sha1=") && sig.len() == 45);
        assert_eq!(
            check(
                &intercom,
                &["s3cr3t"],
                &[("X-Hub-Signature", &sig)],
                b"{}",
                0
            ),
            Ok(())
        );

        let zendesk = scheme("zendesk", "zd");
        let ts = "2023-11-01T00:00:00Z";
        let sig = sign(hmac_of(&zendesk), "zd", &no, Some(ts), b"{}");
        let h = [
            ("X-Zendesk-Webhook-Signature", sig.as_str()),
            ("X-Zendesk-Webhook-Signature-Timestamp", ts),
        ];
        assert_eq!(check(&zendesk, &["zd"], &h, b"{}", 1_698_796_800), Ok(()));
        assert!(matches!(
            check(&zendesk, &["zd"], &h, b"{}", 1_698_796_800 + 600),
            Err(Refusal::TimestampOutOfRange(_))
        ));

        let linear = scheme("linear", "lin");
        let body = br#"{"type":"Issue","action":"create","webhookTimestamp":1698796800000}"#;
        let sig = sign(hmac_of(&linear), "lin", &no, None, body);
        assert_eq!(
            check(
                &linear,
                &["lin"],
                &[("Linear-Signature", &sig)],
                body,
                1_698_796_800
            ),
            Ok(())
        );
        let now_ms = 1_698_796_800_000 + 61_000;
        let map: HashMap<String, String> = [("linear-signature".to_string(), sig.clone())].into();
        assert!(matches!(
            verify(
                &linear,
                &["lin"],
                &map,
                body,
                now_ms,
                Duration::from_secs(60)
            ),
            Err(Refusal::TimestampOutOfRange(_))
        ));
        let not_json = b"webhookTimestamp=1";
        let sig2 = sign(hmac_of(&linear), "lin", &no, None, not_json);
        assert!(matches!(
            check(
                &linear,
                &["lin"],
                &[("Linear-Signature", &sig2)],
                not_json,
                0
            ),
            Err(Refusal::InvalidPayload(_))
        ));
    }

    #[test]
    fn discord_ed25519_and_tokens() {
        use ed25519_dalek::{Signer, SigningKey};
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let public = hex::encode(signing.verifying_key().to_bytes());
        let discord = scheme("discord", &public);
        let body = br#"{"type":1}"#;
        let sig = hex::encode(
            signing
                .sign(&[b"1700000000".as_slice(), body].concat())
                .to_bytes(),
        );
        let h = [
            ("X-Signature-Ed25519", sig.as_str()),
            ("X-Signature-Timestamp", "1700000000"),
        ];
        assert_eq!(check(&discord, &[], &h, body, 1_700_000_000), Ok(()));
        assert!(check(&discord, &[], &h, br#"{"type":2}"#, 1_700_000_000).is_err());
        assert!(matches!(
            check(&discord, &[], &h, body, 1_700_009_000),
            Err(Refusal::TimestampOutOfRange(_))
        ));
        assert!(
            check(
                &discord,
                &[],
                &[
                    ("X-Signature-Ed25519", "abc"),
                    ("X-Signature-Timestamp", "1")
                ],
                body,
                1
            )
            .is_err()
        );

        let token = scheme("token", "t0ken");
        assert_eq!(
            check(
                &token,
                &["t0ken"],
                &[("Authorization", "Bearer t0ken")],
                b"",
                0
            ),
            Ok(())
        );
        assert!(
            check(
                &token,
                &["t0ken"],
                &[("Authorization", "Bearer t0ke")],
                b"",
                0
            )
            .is_err()
        );
        assert!(check(&token, &["t0ken"], &[], b"", 0).is_err());
        assert!(
            scheme("token", "t0ken").signature_headers().is_empty(),
            "a token is never logged"
        );
    }

    #[test]
    fn the_generic_hmac_scheme() {
        let toml = "[sources.h]\npreset = \"hmac\"\nsecret = \"k\"\nsignature_header = \"X-Sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nsignature_prefix = \"v2=\"\nsigned = \"{timestamp}|{header:X-Id}|{body}\"\ntimestamp_header = \"X-Ts\"\ntimestamp_unit = \"ms\"\n";
        let s =
            Scheme::for_source(&from_toml_str(toml).expect("valid").sources["h"]).expect("scheme");
        let id = |n: &str| (n == "x-id").then(|| "42".to_string());
        let sig = sign(hmac_of(&s), "k", &id, Some("1700000000000"), b"{}");
        assert!(sig.starts_with("v2="));
        let h = [
            ("X-Sig", sig.as_str()),
            ("X-Ts", "1700000000000"),
            ("X-Id", "42"),
        ];
        assert_eq!(check(&s, &["k"], &h, b"{}", 1_700_000_000), Ok(()));
        let h = [
            ("X-Sig", sig.as_str()),
            ("X-Ts", "1700000000000"),
            ("X-Id", "43"),
        ];
        assert!(check(&s, &["k"], &h, b"{}", 1_700_000_000).is_err());
    }
}
