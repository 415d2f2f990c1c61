//! AWS Signature Version 4 for the RDS Query API: the canonical request, the string to sign,
//! the derived key and the `Authorization` header (pure functions, checked against AWS's
//! published example and against botocore). See `docs/adr/0008-rds-query-api.md` for why the
//! SDK is not used.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// An access key, as `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` give it.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One request to sign.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The `Host` header as sent (with the port when it is not the scheme's default).
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    /// The query string, already in canonical form (sorted, encoded), or empty.
    pub(crate) query: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) body: &'a [u8],
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The headers to send: `X-Amz-Date`, `X-Amz-Security-Token` (with a session token) and
/// `Authorization`, signed for `service` in `region` at `now`.
pub(crate) fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let mut headers = vec![
        ("content-type", request.content_type.to_owned()),
        ("host", request.host.to_owned()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    let canonical_headers: String =
        headers.iter().map(|(name, value)| format!("{name}:{}\n", value.trim())).collect();
    let signed_headers = headers.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        request.query,
        hex_sha256(request.body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let key = [date, region, service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{}", credentials.secret_access_key).into_bytes(), |key, part| {
            hmac(&key, part.as_bytes())
        });
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let mut out = vec![("X-Amz-Date", amz_date)];
    if let Some(token) = &credentials.session_token {
        out.push(("X-Amz-Security-Token", token.clone()));
    }
    out.push((
        "Authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            credentials.access_key_id
        ),
    ));
    out
}

/// Percent-encodes as SigV4 and the Query API want: everything but `A-Z a-z 0-9 - _ . ~`.
pub(crate) fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

    fn credentials(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: token.map(str::to_owned),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    fn authorization(headers: &[(&str, String)]) -> String {
        headers.iter().find(|(name, _)| *name == "Authorization").unwrap().1.clone()
    }

    #[test]
    fn matches_awss_published_example() {
        // AWS's "create a signed request" example (IAM ListUsers, GET with a query string).
        let request = Request {
            method: "GET",
            host: "iam.amazonaws.com",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            content_type: FORM,
            body: b"",
        };
        let headers = sign(&request, &credentials(None), "us-east-1", "iam", at());
        assert_eq!(headers[0], ("X-Amz-Date", "20150830T123600Z".to_owned()));
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn matches_botocore_for_query_api_posts() {
        // Computed with botocore 1.44's SigV4Auth at the same instant.
        let body = b"Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier=prod";
        let request = Request {
            method: "POST",
            host: "127.0.0.1:4566",
            path: "/",
            query: "",
            content_type: FORM,
            body,
        };
        let headers = sign(&request, &credentials(None), "eu-west-1", "rds", at());
        assert!(authorization(&headers).ends_with(
            "Signature=12dbdbfc50647df149d69ed16c0eea55bf65c4db442731cdb625b840fbc5b280"
        ));
        let request = Request {
            host: "rds.eu-west-1.amazonaws.com",
            body: b"Action=DescribeDBInstances&Version=2014-10-31",
            ..request
        };
        let headers = sign(&request, &credentials(Some("SESSIONTOKEN")), "eu-west-1", "rds", at());
        assert_eq!(headers[1], ("X-Amz-Security-Token", "SESSIONTOKEN".to_owned()));
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/rds/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=b8d897b26d1a65ba0c2a9a1f241f4d8f49c7c43aee8c0fc57d03fe875beef2b0"
        );
    }

    #[test]
    fn encodes_all_but_unreserved_characters() {
        assert_eq!(uri_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(uri_encode("a b/c+d=e&é"), "a%20b%2Fc%2Bd%3De%26%C3%A9");
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let text = format!("{:?}", credentials(Some("tok")));
        assert!(!text.contains("EXAMPLEKEY") && !text.contains("tok"), "{text}");
    }
}
