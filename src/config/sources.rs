//! `[sources.<name>]`: inbound webhook sources of any provider, as written and as validated.
//!
//! What each preset *does* is the sources capability's (`crate::sources::scheme`); here only
//! what can be told from the configuration alone: the name, a known preset, the secret (or
//! Discord's public key), durations, where the type and the id are, and the keys of the generic
//! `hmac` and `token` schemes, each error naming its key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, RawSecret, Secret, Validator, ser_duration};

/// Every preset a source may name.
pub const PRESETS: &[&str] = &[
    "standard_webhooks",
    "github",
    "stripe",
    "shopify",
    "slack",
    "linear",
    "paddle",
    "zendesk",
    "intercom",
    "discord",
    "hmac",
    "token",
];

/// Names a source may not take: hookrelay's own namespaces (a source's name is its events'
/// namespace).
pub const RESERVED_NAMES: &[&str] = &[
    "front",
    "system",
    "webhook",
    "task",
    "schedule",
    "hookrelay",
];

/// `[sources.<name>]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<RawSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tolerance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    // `hmac`
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_unit: Option<String>,
    // `token`
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
}

/// Where a value is in a request: a JSON pointer into the body, or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// `"/type"`, `"/event/type"` (RFC 6901; `~1` is `/`, `~0` is `~`).
    Pointer(String),
    /// `"header:X-GitHub-Event"`, kept lowercased.
    Header(String),
}

impl Locator {
    /// Parses `"/a/b"` or `"header:<Name>"`.
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "`{text}` does not name a header; write e.g. \"header:X-Event-Type\""
                ));
            }
            return Ok(Self::Header(name.to_ascii_lowercase()));
        }
        if text.starts_with('/') {
            return Ok(Self::Pointer(text.to_string()));
        }
        Err(format!(
            "`{text}` is neither a JSON pointer (\"/type\") nor a header (\"header:X-Event-Type\")"
        ))
    }
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pointer(p) => f.write_str(p),
            Self::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl Serialize for Locator {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The keys of the generic `hmac` scheme (and `token`'s header).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HmacKeys {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// `sha256`, `sha1` or `sha512`.
    pub algorithm: String,
    /// `hex` or `base64`.
    pub encoding: String,
    pub signature_prefix: String,
    /// The signed bytes: `{body}`, `{timestamp}`, `{header:<Name>}` and literal text.
    pub signed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// `s` or `ms`.
    pub timestamp_unit: String,
}

/// One validated source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceConfig {
    pub preset: String,
    /// Any of these verifies (rotation); empty only for `discord`.
    pub secrets: Vec<Secret>,
    /// Discord's application public key, 32 bytes.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_hex")]
    pub public_key: Option<[u8; 32]>,
    #[serde(serialize_with = "ser_duration")]
    pub tolerance: Duration,
    /// Overrides the preset's place of the event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<Locator>,
    /// Overrides the preset's place of the event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Locator>,
    #[serde(serialize_with = "ser_duration")]
    pub idempotency_window: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub enabled: bool,
    /// `hmac`'s keys (defaults elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacKeys>,
    /// `token`'s header, lowercased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_header: Option<String>,
}

#[allow(clippy::ref_option)]
fn ser_hex<S: serde::Serializer>(key: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_str(&hex::encode(k)),
        None => s.serialize_none(),
    }
}

/// The key of a Standard Webhooks secret: the base64 after an optional `whsec_`, padded or not
/// (the official libraries accept both).
#[must_use]
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    base64::Engine::decode(&LENIENT, secret.strip_prefix("whsec_").unwrap_or(secret)).ok()
}

/// The longest source name (it starts every action of the source).
pub const MAX_NAME: usize = 64;

/// Whether `name` may name a source: `^[a-z][a-z0-9_]*$`, at most [`MAX_NAME`] long, not
/// reserved.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !RESERVED_NAMES.contains(&name)
}

/// Whether `name` is an HTTP header name (letters, digits, `-`, `_`).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a signed-bytes template: `{body}` once, `{timestamp}`, `{header:<Name>}`.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut bodies = 0;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("`{template}` has a `{{` without its `}}`"));
        };
        let part = &rest[start + 1..start + len];
        match part {
            "body" => bodies += 1,
            "timestamp" => {}
            p if p.strip_prefix("header:").is_some_and(is_header_name) => {}
            other => {
                return Err(format!(
                    "`{{{other}}}` is not `{{body}}`, `{{timestamp}}` or `{{header:<Name>}}`"
                ));
            }
        }
        rest = &rest[start + len + 1..];
    }
    if bodies != 1 {
        return Err(format!("`{template}` must hold `{{body}}` exactly once"));
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn sources(
        &self,
        raw: BTreeMap<String, RawSource>,
    ) -> Result<BTreeMap<String, SourceConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, raw) in raw {
            let key = |k: &str| format!("sources.{name}.{k}");
            if !is_valid_name(&name) {
                return Err(self.invalid(
                    &format!("sources.{name}"),
                    format!(
                        "a source name is lowercase letters, digits and `_`, starting with a letter, at most 64 long, and not one of {}",
                        RESERVED_NAMES.join(", ")
                    ),
                ));
            }
            let preset = match raw.preset.as_deref() {
                Some(p) if PRESETS.contains(&p) => p.to_string(),
                Some(p) => {
                    return Err(self.invalid(
                        &key("preset"),
                        format!("`{p}` is not a preset; use one of {}", PRESETS.join(", ")),
                    ));
                }
                None => {
                    return Err(self.invalid(
                        &key("preset"),
                        format!("is missing; use one of {}", PRESETS.join(", ")),
                    ));
                }
            };
            let mut secrets: Vec<Secret> = self
                .secret(&key("secret"), raw.secret, raw.secret_file)?
                .into_iter()
                .collect();
            secrets.extend(
                raw.secrets
                    .into_iter()
                    .filter(|s| !s.0.is_empty())
                    .map(|s| Secret(s.0)),
            );
            let public_key = match raw.public_key.as_deref() {
                Some(hex_key) => {
                    if preset != "discord" {
                        return Err(
                            self.invalid(&key("public_key"), "is only for preset `discord`")
                        );
                    }
                    let mut k = [0u8; 32];
                    hex::decode_to_slice(hex_key.trim(), &mut k).map_err(|_| {
                        self.invalid(&key("public_key"), "must be 64 hex digits (the application's public key in Discord's developer portal)")
                    })?;
                    Some(k)
                }
                None => None,
            };
            if preset == "discord" {
                if public_key.is_none() {
                    return Err(self.invalid(&key("public_key"), "is missing: Discord signs with Ed25519; copy the application's public key (64 hex digits)"));
                }
            } else if secrets.is_empty() {
                return Err(self.invalid(
                    &key("secret"),
                    "is missing: set `secret`, `secret_file` or `secrets = [...]` to the signing secret the provider shows",
                ));
            }
            if preset == "standard_webhooks" {
                for s in &secrets {
                    if standard_webhooks_key(s.expose()).is_none() {
                        return Err(self.invalid(
                            &key("secret"),
                            "a Standard Webhooks secret is `whsec_` followed by base64",
                        ));
                    }
                }
            }
            let default_tolerance = if preset == "linear" { "60s" } else { "5m" };
            let tolerance = self.positive_duration(
                &key("tolerance"),
                raw.tolerance.as_deref().unwrap_or(default_tolerance),
            )?;
            let locator = |k: &str, v: Option<String>| -> Result<Option<Locator>, ConfigError> {
                v.map(|v| Locator::parse(&v).map_err(|m| self.invalid(&key(k), m)))
                    .transpose()
            };
            let event_type = locator("event_type", raw.event_type)?;
            let idempotency = locator("idempotency", raw.idempotency)?;
            let idempotency_window = self.positive_duration(
                &key("idempotency_window"),
                raw.idempotency_window.as_deref().unwrap_or("3d"),
            )?;

            let hmac_only = [
                ("signature_header", raw.signature_header.is_some()),
                ("algorithm", raw.algorithm.is_some()),
                ("encoding", raw.encoding.is_some()),
                ("signature_prefix", raw.signature_prefix.is_some()),
                ("signed", raw.signed.is_some()),
                ("timestamp_header", raw.timestamp_header.is_some()),
                ("timestamp_unit", raw.timestamp_unit.is_some()),
            ];
            let hmac = if preset == "hmac" {
                let Some(signature_header) = raw.signature_header else {
                    return Err(self.invalid(
                        &key("signature_header"),
                        "is missing: name the header the provider puts its signature in",
                    ));
                };
                for (k, v) in [
                    ("signature_header", Some(&signature_header)),
                    ("timestamp_header", raw.timestamp_header.as_ref()),
                ] {
                    if let Some(v) = v.filter(|v| !is_header_name(v)) {
                        return Err(self.invalid(&key(k), format!("`{v}` is not a header name")));
                    }
                }
                let algorithm = raw
                    .algorithm
                    .unwrap_or_else(|| "sha256".into())
                    .to_ascii_lowercase();
                if !["sha256", "sha1", "sha512"].contains(&algorithm.as_str()) {
                    return Err(self.invalid(
                        &key("algorithm"),
                        format!("`{algorithm}` is not sha256, sha1 or sha512"),
                    ));
                }
                let encoding = raw
                    .encoding
                    .unwrap_or_else(|| "hex".into())
                    .to_ascii_lowercase();
                if !["hex", "base64"].contains(&encoding.as_str()) {
                    return Err(self.invalid(
                        &key("encoding"),
                        format!("`{encoding}` is not hex or base64"),
                    ));
                }
                let signed = raw.signed.unwrap_or_else(|| "{body}".into());
                check_template(&signed).map_err(|m| self.invalid(&key("signed"), m))?;
                let timestamp_unit = raw
                    .timestamp_unit
                    .unwrap_or_else(|| "s".into())
                    .to_ascii_lowercase();
                if !["s", "ms"].contains(&timestamp_unit.as_str()) {
                    return Err(self.invalid(
                        &key("timestamp_unit"),
                        format!("`{timestamp_unit}` is not s or ms"),
                    ));
                }
                if signed.contains("{timestamp}") && raw.timestamp_header.is_none() {
                    return Err(self.invalid(
                        &key("timestamp_header"),
                        "is missing: `signed` uses {timestamp}",
                    ));
                }
                Some(HmacKeys {
                    signature_header: Some(signature_header.to_ascii_lowercase()),
                    algorithm,
                    encoding,
                    signature_prefix: raw.signature_prefix.unwrap_or_default(),
                    signed,
                    timestamp_header: raw.timestamp_header.map(|h| h.to_ascii_lowercase()),
                    timestamp_unit,
                })
            } else {
                if let Some((k, _)) = hmac_only.iter().find(|(_, set)| *set) {
                    return Err(self.invalid(&key(k), "is only for preset `hmac`"));
                }
                None
            };
            let token_header = match (preset.as_str(), raw.header) {
                ("token", Some(h)) if !is_header_name(&h) => {
                    return Err(self.invalid(&key("header"), format!("`{h}` is not a header name")));
                }
                ("token", h) => Some(
                    h.unwrap_or_else(|| "authorization".into())
                        .to_ascii_lowercase(),
                ),
                (_, Some(_)) => {
                    return Err(self.invalid(&key("header"), "is only for preset `token`"));
                }
                (_, None) => None,
            };
            out.insert(
                name,
                SourceConfig {
                    preset,
                    secrets,
                    public_key,
                    tolerance,
                    event_type,
                    idempotency,
                    idempotency_window,
                    org_id: raw.org_id.filter(|o| !o.is_empty()),
                    enabled: raw.enabled.unwrap_or(true),
                    hmac,
                    token_header,
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml_str;

    fn err(toml: &str) -> String {
        from_toml_str(toml).expect_err("invalid").to_string()
    }

    #[test]
    fn a_stripe_source_with_defaults() {
        let c = from_toml_str("[sources.stripe]\npreset = \"stripe\"\nsecret = \"whsec_x\"\n")
            .expect("valid");
        let s = &c.sources["stripe"];
        assert_eq!(s.preset, "stripe");
        assert_eq!(s.tolerance, Duration::from_secs(300));
        assert_eq!(s.idempotency_window, Duration::from_secs(3 * 86_400));
        assert!(s.enabled);
        let linear =
            from_toml_str("[sources.lin]\npreset = \"linear\"\nsecret = \"x\"\n").expect("valid");
        assert_eq!(linear.sources["lin"].tolerance, Duration::from_secs(60));
    }

    #[test]
    fn errors_name_the_key_and_never_the_secret() {
        assert!(
            err("[sources.s]\npreset = \"strype\"\nsecret = \"x\"\n")
                .contains("`sources.s.preset`")
        );
        assert!(err("[sources.s]\npreset = \"stripe\"\n").contains("`sources.s.secret`"));
        assert!(
            err("[sources.Stripe]\npreset = \"stripe\"\nsecret = \"x\"\n")
                .contains("`sources.Stripe`")
        );
        assert!(
            err("[sources.front]\npreset = \"stripe\"\nsecret = \"x\"\n")
                .contains("`sources.front`")
        );
        assert!(
            err("[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nevent_type = \"type\"\n")
                .contains("`sources.s.event_type`")
        );
        assert!(
            err("[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nalgorithm = \"sha1\"\n")
                .contains("only for preset `hmac`")
        );
        assert!(err("[sources.d]\npreset = \"discord\"\n").contains("`sources.d.public_key`"));
        assert!(err("[sources.d]\npreset = \"discord\"\npublic_key = \"zz\"\n").contains("64 hex"));
        assert!(
            err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\n")
                .contains("`sources.h.signature_header`")
        );
        assert!(err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\nsignature_header = \"X-Sig\"\nsigned = \"{timestamp}.{body}\"\n").contains("timestamp_header"));
        assert!(err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\nsignature_header = \"X-Sig\"\nsigned = \"{nope}\"\n").contains("`sources.h.signed`"));
        let e = err(
            "[sources.s]\npreset = \"stripe\"\nsecret = \"hunter2-secret\"\ntolerance = \"soon\"\n",
        );
        assert!(
            e.contains("`sources.s.tolerance`") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(
            err("[sources.s]\npreset = \"standard_webhooks\"\nsecret = \"whsec_not base64!\"\n")
                .contains("base64")
        );
    }

    #[test]
    fn names_are_bounded_and_header_names_checked() {
        let long = "s".repeat(65);
        assert!(
            err(&format!(
                "[sources.{long}]\npreset = \"stripe\"\nsecret = \"x\"\n"
            ))
            .contains("at most 64")
        );
        assert!(
            from_toml_str(&format!(
                "[sources.{}]\npreset = \"stripe\"\nsecret = \"x\"\n",
                "s".repeat(64)
            ))
            .is_ok()
        );
        assert!(
            err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\nsignature_header = \"X Sig\"\n")
                .contains("not a header name")
        );
        assert!(err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\nsignature_header = \"X-Sig\"\ntimestamp_header = \"X:T\"\n").contains("`sources.h.timestamp_header`"));
        assert!(
            err("[sources.t]\npreset = \"token\"\nsecret = \"x\"\nheader = \"X:Token\"\n")
                .contains("`sources.t.header`")
        );
        assert!(err("[sources.h]\npreset = \"hmac\"\nsecret = \"x\"\nsignature_header = \"X-Sig\"\nsigned = \"{header:}{body}\"\n").contains("`sources.h.signed`"));
    }

    #[test]
    fn locators_and_rotation() {
        let c = from_toml_str(
            "[sources.s]\npreset = \"hmac\"\nsecrets = [\"a\", \"b\"]\nsignature_header = \"X-Sig\"\nevent_type = \"header:X-Kind\"\nidempotency = \"/meta/id\"\n",
        )
        .expect("valid");
        let s = &c.sources["s"];
        assert_eq!(s.secrets.len(), 2);
        assert_eq!(s.event_type, Some(Locator::Header("x-kind".into())));
        assert_eq!(s.idempotency, Some(Locator::Pointer("/meta/id".into())));
        let shown = c.redacted_toml().expect("toml");
        assert!(
            shown.contains("[redacted]") && !shown.contains("\"a\""),
            "{shown}"
        );
    }
}
