//! Custom webhook headers that carry credentials (`Authorization: Bearer …`, `X-Api-Key`, …)
//! are secrets like signing secrets: sealed at rest with the encryption key, bound to their
//! webhook and header name, and shown as `"[redacted]"` in every answer.
//!
//! A header is sensitive when its lowercased name contains one of [`SENSITIVE_PARTS`]. Stored,
//! its value is `{"sealed": {"key_id", "nonce", "ciphertext"}}` (base64) instead of a string.
//! Sending `"[redacted]"` back on update (the admin page does when the value was not touched)
//! keeps the stored value.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::secrets::{Keyring, OpenError, Sealed};

pub use crate::redact::{
    REDACTED, SENSITIVE_HEADER_PARTS as SENSITIVE_PARTS, is_sensitive_header as is_sensitive,
};

fn aad(webhook_id: &str, name: &str) -> String {
    format!("{webhook_id}:header:{}", name.to_ascii_lowercase())
}

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn to_stored(sealed: &Sealed) -> Value {
    json!({"sealed": {
        "key_id": sealed.key_id,
        "nonce": b64().encode(&sealed.nonce),
        "ciphertext": b64().encode(&sealed.ciphertext),
    }})
}

fn from_stored(value: &Value) -> Option<Sealed> {
    let s = value.get("sealed")?;
    Some(Sealed {
        key_id: s.get("key_id")?.as_str()?.to_string(),
        nonce: b64().decode(s.get("nonce")?.as_str()?).ok()?,
        ciphertext: b64().decode(s.get("ciphertext")?.as_str()?).ok()?,
    })
}

/// The headers to store for `webhook_id`: sensitive values sealed. A value of `"[redacted]"`
/// keeps the value of the same header in `previous` (the stored map), and is refused when there
/// is none. Call outside the write transaction; [`resolve_kept`] finishes inside it.
///
/// # Errors
/// A message naming the header whose `"[redacted]"` has nothing to keep, or the RNG failing.
pub fn seal(
    keyring: &Keyring,
    webhook_id: &str,
    given: &Map<String, Value>,
) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for (name, value) in given {
        let v = match value.as_str() {
            Some(text) if is_sensitive(name) && text != REDACTED => {
                to_stored(&keyring.seal_bytes(text.as_bytes(), &aad(webhook_id, name))?)
            }
            _ => value.clone(),
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

/// Replaces every `"[redacted]"` left by [`seal`] with the stored value of that header.
///
/// # Errors
/// The name of a header sent as `"[redacted]"` that has no stored value to keep.
pub fn resolve_kept(
    sealed: &mut Map<String, Value>,
    previous: &Map<String, Value>,
) -> Result<(), String> {
    for (name, value) in sealed.iter_mut() {
        if value.as_str() == Some(REDACTED) && is_sensitive(name) {
            let kept = previous
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .filter(|v| from_stored(v).is_some())
                .ok_or_else(|| name.clone())?;
            *value = kept;
        }
    }
    Ok(())
}

/// The headers as answers show them: sensitive values as `"[redacted]"`.
#[must_use]
pub fn shown(stored: &Map<String, Value>) -> Map<String, Value> {
    stored
        .iter()
        .map(|(n, v)| {
            let v = if v.is_string() && !is_sensitive(n) {
                v.clone()
            } else {
                json!(REDACTED)
            };
            (n.clone(), v)
        })
        .collect()
}

/// The headers to send, decrypted.
///
/// # Errors
/// Which header cannot be decrypted, and why.
pub fn open(
    keyring: &Keyring,
    webhook_id: &str,
    stored: &Map<String, Value>,
) -> Result<Vec<(String, String)>, String> {
    stored
        .iter()
        .map(|(name, value)| match value {
            Value::String(s) => Ok((name.clone(), s.clone())),
            other => {
                let sealed = from_stored(other)
                    .ok_or_else(|| format!("its header {name} is stored in an unknown form"))?;
                let plain = keyring
                    .open_bytes(&sealed, &aad(webhook_id, name))
                    .map_err(|e: OpenError| {
                        format!("its header {name} cannot be decrypted: {e}")
                    })?;
                let text = String::from_utf8(plain)
                    .map_err(|_| format!("its header {name} is not text"))?;
                Ok((name.clone(), text))
            }
        })
        .collect()
}

/// The key ids of the sealed values in `stored`.
pub fn key_ids(stored: &Map<String, Value>) -> impl Iterator<Item = String> + '_ {
    stored.values().filter_map(from_stored).map(|s| s.key_id)
}

/// `stored` with every sealed value re-encrypted with the current key; `None` when nothing
/// needed it.
///
/// # Errors
/// Which header could not be decrypted.
pub fn reseal(
    keyring: &Keyring,
    webhook_id: &str,
    stored: &Map<String, Value>,
) -> anyhow::Result<Option<Map<String, Value>>> {
    let mut changed = false;
    let mut out = Map::new();
    for (name, value) in stored {
        let v = match from_stored(value) {
            Some(sealed) if sealed.key_id != keyring.current_id() => {
                let a = aad(webhook_id, name);
                let plain = keyring
                    .open_bytes(&sealed, &a)
                    .map_err(|e| anyhow::anyhow!("header {name} of webhook {webhook_id}: {e}"))?;
                changed = true;
                to_stored(&keyring.seal_bytes(&plain, &a)?)
            }
            _ => value.clone(),
        };
        out.insert(name.clone(), v);
    }
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names() {
        for n in [
            "Authorization",
            "X-Api-Key",
            "Cookie",
            "x-auth-token",
            "X-Client-Secret",
            "Proxy-Authorization",
            "X-Password",
            "X-Upstream-Signature",
        ] {
            assert!(is_sensitive(n), "{n}");
        }
        for n in ["X-Team", "Accept-Language", "X-Tenant"] {
            assert!(!is_sensitive(n), "{n}");
        }
    }

    #[test]
    fn sealed_at_rest_shown_redacted_opened_for_sending() {
        let keyring = Keyring::new(&[7; 32], &[]);
        let given: Map<String, Value> =
            serde_json::from_value(json!({"Authorization": "Bearer hunter2", "X-Team": "ops"}))
                .expect("map");
        let stored = seal(&keyring, "wh_1", &given).expect("seal");
        let text = Value::Object(stored.clone()).to_string();
        assert!(!text.contains("hunter2") && text.contains("ops"), "{text}");
        assert_eq!(
            Value::Object(shown(&stored)),
            json!({"Authorization": "[redacted]", "X-Team": "ops"})
        );
        let sent = open(&keyring, "wh_1", &stored).expect("open");
        assert!(sent.contains(&("Authorization".to_string(), "Bearer hunter2".to_string())));
        assert!(
            open(&keyring, "wh_2", &stored).is_err(),
            "bound to its webhook"
        );

        let mut again = seal(
            &keyring,
            "wh_1",
            &serde_json::from_value(json!({"authorization": "[redacted]"})).expect("map"),
        )
        .expect("seal");
        resolve_kept(&mut again, &stored).expect("kept");
        assert_eq!(
            open(&keyring, "wh_1", &again).expect("open")[0].1,
            "Bearer hunter2"
        );
        let mut nothing = seal(
            &keyring,
            "wh_1",
            &serde_json::from_value(json!({"X-Api-Key": "[redacted]"})).expect("map"),
        )
        .expect("seal");
        assert_eq!(
            resolve_kept(&mut nothing, &stored),
            Err("X-Api-Key".to_string())
        );

        let rotated = Keyring::new(&[8; 32], &[[7; 32]]);
        let resealed = reseal(&rotated, "wh_1", &stored)
            .expect("reseal")
            .expect("changed");
        assert_eq!(
            key_ids(&resealed).collect::<Vec<_>>(),
            vec![rotated.current_id().to_string()]
        );
        assert!(
            reseal(&rotated, "wh_1", &resealed)
                .expect("reseal")
                .is_none()
        );
    }
}
