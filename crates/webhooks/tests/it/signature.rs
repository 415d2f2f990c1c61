//! `verify_signature` and the signing scheme, checked against an HMAC computed outside Rust.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use webhooks::{DEFAULT_TOLERANCE, SignatureError, sign, signature_header, verify_signature};

const SECRET: &str = "whsec_test";
const BODY: &[u8] = br#"{"event_type":"branch_create","entity_id":"dev"}"#;
const T: i64 = 1_700_000_000;

fn at(unix: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).single().expect("valid time")
}

#[test]
fn matches_an_independent_hmac() {
    // python3: hmac.new(b"whsec_test", b'1700000000.' + BODY, hashlib.sha256).hexdigest()
    let expected = "2f25d003ad55b38957a3dad1a01160f074996f78c473f3b36eb0e5db76c93534";
    assert_eq!(sign(SECRET, T, BODY), expected);
    assert_eq!(signature_header(SECRET, T, BODY), format!("t={T},v1={expected}"));
}

#[test]
fn accepts_a_valid_header_within_tolerance() {
    let header = signature_header(SECRET, T, BODY);
    assert_eq!(verify_signature(SECRET, &header, BODY, at(T), DEFAULT_TOLERANCE), Ok(()));
    assert_eq!(verify_signature(SECRET, &header, BODY, at(T + 300), DEFAULT_TOLERANCE), Ok(()));
    assert_eq!(verify_signature(SECRET, &header, BODY, at(T - 300), DEFAULT_TOLERANCE), Ok(()));
}

#[test]
fn tolerates_spaces_unknown_pairs_and_rotated_secrets() {
    let good = sign(SECRET, T, BODY);
    let old = sign("previous-secret", T, BODY);
    let header = format!(" t={T} , v0=legacy, v1={old},v1={good} ,");
    assert_eq!(verify_signature(SECRET, &header, BODY, at(T), DEFAULT_TOLERANCE), Ok(()));
}

#[test]
fn rejects_tampering_and_wrong_secrets() {
    let header = signature_header(SECRET, T, BODY);
    let tampered = br#"{"event_type":"branch_delete","entity_id":"dev"}"#;
    assert_eq!(
        verify_signature(SECRET, &header, tampered, at(T), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature("other", &header, BODY, at(T), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    // The timestamp is covered by the MAC: moving it invalidates the signature.
    let moved = header.replace(&format!("t={T}"), &format!("t={}", T + 1));
    assert_eq!(
        verify_signature(SECRET, &moved, BODY, at(T), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    let not_hex = format!("t={T},v1=zz");
    assert_eq!(
        verify_signature(SECRET, &not_hex, BODY, at(T), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    let truncated = format!("t={T},v1={}", &sign(SECRET, T, BODY)[..32]);
    assert_eq!(
        verify_signature(SECRET, &truncated, BODY, at(T), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn rejects_replays_outside_tolerance() {
    let header = signature_header(SECRET, T, BODY);
    let tolerance = Duration::from_secs(60);
    assert_eq!(
        verify_signature(SECRET, &header, BODY, at(T + 61), tolerance),
        Err(SignatureError::OutsideTolerance { skew_secs: 61, tolerance_secs: 60 })
    );
    assert_eq!(
        verify_signature(SECRET, &header, BODY, at(T - 3600), tolerance),
        Err(SignatureError::OutsideTolerance { skew_secs: 3600, tolerance_secs: 60 })
    );
}

#[test]
fn rejects_malformed_headers() {
    let signature = sign(SECRET, T, BODY);
    let now = at(T);
    let cases: Vec<(String, SignatureError)> = vec![
        (String::new(), SignatureError::MissingTimestamp),
        (format!("v1={signature}"), SignatureError::MissingTimestamp),
        (format!("t={T}"), SignatureError::MissingSignature),
        (format!("t={T},v2={signature}"), SignatureError::MissingSignature),
        (
            format!("t=yesterday,v1={signature}"),
            SignatureError::Malformed("timestamp \"yesterday\" is not an integer".to_owned()),
        ),
        (signature.clone(), SignatureError::Malformed(format!("{signature:?} is not key=value"))),
    ];
    for (header, expected) in cases {
        assert_eq!(
            verify_signature(SECRET, &header, BODY, now, DEFAULT_TOLERANCE),
            Err(expected),
            "{header:?}"
        );
    }
}
