//! Front's webhook signatures, checked on the raw bytes before anything is parsed.
//!
//! - Application webhooks: `x-front-signature` =
//!   base64(HMAC-SHA256(key = app secret as UTF-8, message = `x-front-request-timestamp` + ":" + body)),
//!   and the timestamp (milliseconds) must be within the tolerance, past or future.
//! - Legacy rule webhooks: `X-Front-Signature` = base64(HMAC-SHA1(rule secret, body)).
//!
//! Comparisons are constant-time (`Mac::verify_slice`). Pure functions, one error per failure.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature, a malformed one, or one that does not match.
    #[error("the signature is missing or does not match")]
    Invalid,
    /// The signature matches but the timestamp is missing, not a number, or too far off.
    #[error("the request timestamp is outside the allowed tolerance")]
    TimestampOutOfRange,
}

/// Computes the application-webhook signature (base64), as Front does.
#[must_use]
pub fn app_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(app_mac(secret, timestamp, body).finalize().into_bytes())
}

fn app_mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Verifies an application webhook: signature first, then the timestamp against `now_ms`.
///
/// # Errors
/// [`SignatureError::Invalid`] or [`SignatureError::TimestampOutOfRange`].
pub fn verify_app(
    secret: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_ms: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(SignatureError::Invalid);
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::Invalid)?;
    app_mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Invalid)?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::TimestampOutOfRange)?;
    let tolerance = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    if now_ms.abs_diff(sent) > tolerance.unsigned_abs() {
        return Err(SignatureError::TimestampOutOfRange);
    }
    Ok(())
}

/// Computes the rule-webhook signature (base64 HMAC-SHA1 of the body).
#[must_use]
pub fn rule_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies a legacy rule webhook.
///
/// # Errors
/// [`SignatureError::Invalid`].
pub fn verify_rule(
    secret: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let expected = signature
        .and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        })
        .ok_or(SignatureError::Invalid)?;
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "my-app-signing-secret";
    const BODY: &[u8] = br#"{"type":"sync","authorization":{"id":"cmp_abc"}}"#;
    const TS: &str = "1700000000000";
    const MIN: Duration = Duration::from_secs(300);

    #[test]
    fn spec_vectors() {
        assert_eq!(
            app_signature(SECRET, TS, BODY),
            "0ZySLjv9IzFsVZadGByABdsn7fIZlWrjrWY3wiBCnMM="
        );
        assert_eq!(rule_signature(SECRET, BODY), "8QZ7aP/q9C7wjllgrbSO5LdfVms=");
    }

    /// signature, timestamp, body, now, expected
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        &'a [u8],
        i64,
        Result<(), SignatureError>,
    );

    #[test]
    fn app_verification_table() {
        let sig = "0ZySLjv9IzFsVZadGByABdsn7fIZlWrjrWY3wiBCnMM=";
        let now = 1_700_000_000_000;
        let cases: [Case<'_>; 9] = [
            (Some(sig), Some(TS), BODY, now, Ok(())),
            (Some(sig), Some(TS), BODY, now + 299_000, Ok(())),
            (Some(sig), Some(TS), BODY, now - 299_000, Ok(())),
            (
                Some(sig),
                Some(TS),
                BODY,
                now + 301_000,
                Err(SignatureError::TimestampOutOfRange),
            ),
            (
                Some(sig),
                Some(TS),
                BODY,
                now - 301_000,
                Err(SignatureError::TimestampOutOfRange),
            ),
            (None, Some(TS), BODY, now, Err(SignatureError::Invalid)),
            (Some(sig), None, BODY, now, Err(SignatureError::Invalid)),
            (
                Some(sig),
                Some(TS),
                b"{}",
                now,
                Err(SignatureError::Invalid),
            ),
            (
                Some("not base64!"),
                Some(TS),
                BODY,
                now,
                Err(SignatureError::Invalid),
            ),
        ];
        for (i, (s, t, body, at, want)) in cases.into_iter().enumerate() {
            assert_eq!(verify_app(SECRET, s, t, body, at, MIN), want, "case {i}");
        }
        // The timestamp is signed verbatim: a different rendering of the same time fails.
        assert_eq!(
            verify_app(SECRET, Some(sig), Some("1700000000000.0"), BODY, now, MIN),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn rule_verification() {
        assert_eq!(
            verify_rule(SECRET, Some("8QZ7aP/q9C7wjllgrbSO5LdfVms="), BODY),
            Ok(())
        );
        assert_eq!(
            verify_rule(SECRET, Some("8QZ7aP/q9C7wjllgrbSO5LdfVms="), b"x"),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_rule(SECRET, None, BODY),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_rule("other", Some("8QZ7aP/q9C7wjllgrbSO5LdfVms="), BODY),
            Err(SignatureError::Invalid)
        );
    }
}
