//! Request extractors whose rejections come back in DBLab's error format.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiFailure;

/// A JSON body; malformed JSON is a 400 `BAD_REQUEST`. Like DBLab, the `Content-Type` header
/// is not checked: `curl -d` sends form encoding and DBLab accepts it.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_failure(&rejection))?;
        parse_object(&bytes).map(Body)
    }
}

/// A body that could not be read: over the limit is a 413, anything else a 400.
fn body_failure(rejection: &axum::extract::rejection::BytesRejection) -> ApiFailure {
    let status = rejection.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiFailure::with_status(
            status,
            format!("the request body is over {} bytes", crate::edge::MAX_BODY_BYTES),
        )
    } else {
        ApiFailure::bad_request(rejection.body_text())
    }
}

/// Parses a request body that must be a JSON object. serde would also read a struct from an
/// array; DBLab's Go decoder refuses that, and so does this.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiFailure> {
    let invalid =
        |error: serde_json::Error| ApiFailure::bad_request(format!("invalid JSON body: {error}"));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    if !value.is_object() {
        return Err(ApiFailure::bad_request("invalid JSON body: expected an object"));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// A JSON body that may be absent: an empty body is `T::default()` (DBLab's `POST /snapshot`
/// and reset accept one).
#[derive(Debug)]
pub(crate) struct OptionalBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_failure(&rejection))?;
        // An empty body, or JSON `null`, means "no options", as Go's decoder reads them.
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(OptionalBody(T::default()));
        }
        parse_object(&bytes).map(OptionalBody)
    }
}

/// Query parameters; bad ones are a 400 `BAD_REQUEST`.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_failure(&rejection)),
        }
    }
}

fn query_failure(rejection: &QueryRejection) -> ApiFailure {
    ApiFailure::bad_request(format!("invalid query parameters: {}", rejection.body_text()))
}
