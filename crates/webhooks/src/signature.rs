//! The `Scion-Signature` scheme: HMAC-SHA256 over `"<unix seconds>.<body>"`, and its verification.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// DBLab's header carrying the hook secret verbatim.
pub const TOKEN_HEADER: &str = "DBLab-Webhook-Token";
/// Scion's signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "Scion-Signature";
/// A sensible clock-skew and replay window for receivers.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// The full `Scion-Signature` header value for a body sent at `timestamp` (unix seconds).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not a comma-separated list of `key=value` pairs, or `t` is not an integer.
    #[error("malformed {SIGNATURE_HEADER} header: {0}")]
    Malformed(String),
    /// No `t=` pair.
    #[error("{SIGNATURE_HEADER} header has no timestamp (t=)")]
    MissingTimestamp,
    /// No `v1=` pair.
    #[error("{SIGNATURE_HEADER} header has no v1 signature")]
    MissingSignature,
    /// The timestamp is further from `now` than the tolerance allows (a replay or a skewed clock).
    #[error(
        "signature timestamp is {skew_secs} s away from now; at most {tolerance_secs} s allowed"
    )]
    OutsideTolerance {
        /// Distance between the timestamp and now, in seconds.
        skew_secs: u64,
        /// The allowed distance.
        tolerance_secs: u64,
    },
    /// No `v1` value matches the body and secret.
    #[error("signature does not match the body")]
    Mismatch,
}

/// Checks a `Scion-Signature` header against the raw body, as a receiver should.
///
/// Accepts the header when its timestamp is within `tolerance` of `now` and any of its `v1` values equals the
/// HMAC of `"<t>.<body>"` under `secret` (compared in constant time). Unknown pairs are ignored.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for pair in header.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| SignatureError::Malformed(format!("{pair:?} is not key=value")))?;
        match key {
            "t" => {
                let parsed = value.parse::<i64>().map_err(|_| {
                    SignatureError::Malformed(format!("timestamp {value:?} is not an integer"))
                })?;
                timestamp = Some(parsed);
            }
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let skew_secs = now.timestamp().abs_diff(timestamp);
    if skew_secs > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance {
            skew_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    let expected = mac(secret, timestamp, body);
    let matches = signatures.into_iter().any(|signature| {
        hex::decode(signature).is_ok_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
    });
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}
