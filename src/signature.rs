//! HMAC-SHA256 request signatures, for the webhooks vigil receives (and sends).
//!
//! The sender sets two headers:
//!
//! - `X-Vigil-Timestamp`: the Unix time in seconds when it signed;
//! - `X-Vigil-Signature`: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!
//! The receiver checks the signature in constant time, refuses timestamps more than
//! [`TOLERANCE`] away from its clock, and refuses a signature it has already seen within
//! that window (a replay), with a [`ReplayCache`].
//!
//! ```
//! use vigil::signature::{ReplayCache, sign, verify};
//! let now = 1_790_000_000;
//! let signature = sign(b"secret", now, b"{}");
//! assert!(signature.starts_with("sha256="));
//! assert!(verify(b"secret", &now.to_string(), &signature, b"{}", now).is_ok());
//! let cache = ReplayCache::default();
//! assert!(cache.first_use(&signature, now, now));
//! assert!(!cache.first_use(&signature, now, now)); // a replay
//! ```

use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::sync::Mutex;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
/// The header carrying the Unix time (seconds) of the signature.
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";
/// How far (seconds) a timestamp may be from the receiver's clock, either way.
pub const TOLERANCE: i64 = 300;
/// The prefix of the signature header's value.
const SCHEME: &str = "sha256=";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp is not a Unix time in seconds.
    #[error("{TIMESTAMP_HEADER} must be the Unix time in seconds, not {0:?}")]
    BadTimestamp(String),
    /// The timestamp is too far from now.
    #[error(
        "{TIMESTAMP_HEADER} is {0} s away from the receiver's clock (at most {TOLERANCE} s): sign again, and check the clocks"
    )]
    Stale(i64),
    /// The signature header is not `sha256=<64 hex digits>`.
    #[error("{SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256>")]
    Malformed,
    /// The signature does not match the body and timestamp.
    #[error(
        "{SIGNATURE_HEADER} does not match: sign \"<timestamp>.<body>\" with the shared secret"
    )]
    Mismatch,
}

fn message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + 1 + body.len());
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The signature header's value for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &message(&timestamp.to_string(), body));
    format!("{SCHEME}{}", hex(tag.as_ref()))
}

/// Checks the headers' values against `body`, at `now` (Unix seconds). The comparison is
/// constant-time. Replays are the caller's to refuse, with a [`ReplayCache`].
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<i64, SignatureError> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp.chars().take(40).collect()))?;
    let skew = now.saturating_sub(at);
    if skew.saturating_abs() > TOLERANCE {
        return Err(SignatureError::Stale(skew));
    }
    let tag = signature
        .trim()
        .strip_prefix(SCHEME)
        .and_then(unhex)
        .ok_or(SignatureError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &message(timestamp.trim(), body), &tag)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(at)
}

/// The signatures accepted within the last [`TOLERANCE`] seconds, to refuse replays. A
/// signature older than that needs no remembering: its timestamp is refused anyway.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    /// Records `signature`, signed at `timestamp`; false when it was already recorded (a
    /// replay). Forgets signatures whose timestamp left the window.
    pub fn first_use(&self, signature: &str, timestamp: i64, now: i64) -> bool {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        seen.retain(|_, at| now.saturating_sub(*at) <= TOLERANCE);
        if seen.contains_key(signature) {
            return false;
        }
        seen.insert(signature.to_string(), timestamp);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn signs_the_timestamp_and_body() {
        // The well-known answer for HMAC-SHA256("key", "The quick brown fox ..."), then the
        // timestamp folded into the message.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let tag = hmac::sign(&key, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(tag.as_ref()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let s = sign(b"secret", NOW, b"{\"a\":1}");
        let direct = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"secret"),
            format!("{NOW}.{{\"a\":1}}").as_bytes(),
        );
        assert_eq!(s, format!("sha256={}", hex(direct.as_ref())));
    }

    #[test]
    fn verifies_and_refuses() {
        let body = b"{\"version\":\"4\"}";
        let s = sign(b"secret", NOW, body);
        let ts = NOW.to_string();
        assert_eq!(verify(b"secret", &ts, &s, body, NOW + 10), Ok(NOW));
        assert_eq!(
            verify(b"other", &ts, &s, body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", &ts, &s, b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", &ts, &s, body, NOW + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(b"secret", &ts, &s, body, NOW - 400),
            Err(SignatureError::Stale(-400))
        );
        assert!(matches!(
            verify(b"secret", "yesterday", &s, body, NOW),
            Err(SignatureError::BadTimestamp(_))
        ));
        for bad in ["", "sha1=00", "sha256=zz", "sha256=abc"] {
            assert_eq!(
                verify(b"secret", &ts, bad, body, NOW),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        let upper = s.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(verify(b"secret", &ts, &upper, body, NOW), Ok(NOW));
    }

    #[test]
    fn replays_are_refused_within_the_window() {
        let cache = ReplayCache::default();
        assert!(cache.first_use("a", NOW, NOW));
        assert!(!cache.first_use("a", NOW, NOW + 100));
        assert!(cache.first_use("b", NOW, NOW + 100));
        // Once out of the window it is forgotten (its timestamp is refused anyway).
        assert!(cache.first_use("a", NOW + 400, NOW + 400));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("g0"), None);
    }
}
