//! Delivery signatures, as pure functions over the exact body bytes.
//!
//! - `X-Signature: <secret id>=<hex HMAC(key, body)>` — HMAC-SHA256 by default (Frontier's
//!   guide), HMAC-SHA-512/256 with `signature_algorithm = "sha512_256"` (Frontier's Go verifier).
//!   With several active secrets: one `id=sig` per secret, newest first, joined by `,`.
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
//!   one per active secret, space-separated.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512_256};

/// The HMAC behind `X-Signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Algorithm {
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    #[serde(rename = "sha512_256")]
    Sha512_256,
}

impl Algorithm {
    /// The name used in the API and the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512_256 => "sha512_256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "sha512_256" => Ok(Self::Sha512_256),
            other => Err(format!(
                "`{other}` is not a signature algorithm; use sha256 or sha512_256"
            )),
        }
    }
}

/// `hex(HMAC(key, body))` with `algorithm`.
#[must_use]
pub fn hmac_hex(algorithm: Algorithm, key: &[u8], body: &[u8]) -> String {
    match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Algorithm::Sha512_256 => {
            let mut mac =
                Hmac::<Sha512_256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// The `X-Signature` value for `secrets` (`(id, key)`, newest first).
#[must_use]
pub fn x_signature(algorithm: Algorithm, secrets: &[(u32, &[u8])], body: &[u8]) -> String {
    secrets
        .iter()
        .map(|(id, key)| format!("{id}={}", hmac_hex(algorithm, key, body)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One Standard Webhooks signature: `v1,<base64>` over `"<id>.<timestamp>.<body>"`.
#[must_use]
pub fn standard_signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The `webhook-signature` value for every key, space-separated.
#[must_use]
pub fn standard_signatures(keys: &[&[u8]], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| standard_signature(k, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` (an `X-Signature` value, `id=hex[,id=hex…]`) holds a valid signature of
/// `body` by `key`. Compares in constant time.
#[must_use]
pub fn verify_x_signature(algorithm: Algorithm, key: &[u8], header: &str, body: &[u8]) -> bool {
    header
        .split(',')
        .filter_map(|part| part.trim().split_once('='))
        .filter_map(|(_, sig)| hex::decode(sig.trim()).ok())
        .any(|sig| match algorithm {
            Algorithm::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key");
                mac.update(body);
                mac.verify_slice(&sig).is_ok()
            }
            Algorithm::Sha512_256 => {
                let mut mac = Hmac::<Sha512_256>::new_from_slice(key).expect("any key");
                mac.update(body);
                mac.verify_slice(&sig).is_ok()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_vector() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        assert_eq!(
            standard_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn frontier_vectors() {
        let key: Vec<u8> = (0u8..32).collect();
        let body = br#"{"id":"evt_1","action":"app.user.created"}"#;
        // Computed independently with Python's hmac and hashlib.
        assert_eq!(
            hmac_hex(Algorithm::Sha512_256, &key, body),
            "c7bf2e15fbee009ed04ed22dd1dd6dc1706e13731799d90c4e52486420a2ee5a"
        );
        assert_eq!(
            hmac_hex(Algorithm::Sha256, &key, body),
            "b585e2531b9d6f2abd6376e247b3eb19f9aa8efde33602d5285517dcdabd4350"
        );
        let header = x_signature(Algorithm::Sha256, &[(2, &[9u8; 32]), (1, &key)], body);
        assert!(
            header.starts_with("2=") && header.contains(",1=b585e2531b9d"),
            "{header}"
        );
        assert!(verify_x_signature(Algorithm::Sha256, &key, &header, body));
        assert!(!verify_x_signature(Algorithm::Sha256, &key, &header, b"{}"));
        assert!(!verify_x_signature(
            Algorithm::Sha512_256,
            &key,
            &header,
            body
        ));
        assert!(!verify_x_signature(
            Algorithm::Sha256,
            &key,
            "garbage",
            body
        ));
    }

    #[test]
    fn several_standard_signatures_are_space_separated() {
        let sigs = standard_signatures(&[&[1u8; 32], &[2u8; 32]], "evt_1", 1, b"{}");
        assert_eq!(sigs.split(' ').count(), 2);
        assert!(sigs.split(' ').all(|s| s.starts_with("v1,")));
    }
}
