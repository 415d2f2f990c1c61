//! What every request passes through before and after its handler: the size limits of the
//! request line, headers and body, the `{code, message}` body on every error answer (also those
//! axum's extractors and fallbacks write as plain text), and the request span that puts the
//! method and path on every log line a request causes.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, info_span, warn};

use crate::error::ApiFailure;

/// The longest request body: the largest request the API takes (a clone with its settings) is a
/// few KiB; anything near this is not a request of this API.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest request target (path and query). The longest IDs are a few hundred bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The longest plain-text error body kept as the message of the JSON error replacing it.
const MAX_ERROR_TEXT: usize = 4 * 1024;

/// Wraps `router` in the limits, the JSON errors and the request span; the span outermost, so
/// that what the inner layers log carries it too.
pub(crate) fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_head))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(trace))
}

/// Refuses an over-long request target or header section with a JSON 414 or 431, before any
/// handler reads them.
async fn limit_head(request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiFailure::with_status(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are taken"),
        )
        .into_response();
    }
    let headers: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers > MAX_HEADER_BYTES {
        return ApiFailure::with_status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the headers are {headers} bytes; at most {MAX_HEADER_BYTES} are taken"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Gives every error answer that is not JSON yet (axum's rejections of a path that is not UTF-8,
/// of a body over the limit, ...) DBLab's `{code, message}` body, keeping its text as the message.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("The request failed.").to_owned()
    } else {
        text
    };
    let mut replaced = ApiFailure::with_status(status, message).into_response();
    // Keep what the original answer said besides its body (`Allow` on a 405, for one).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// One span per request with its method and path, so that a handler's error log (`error.rs`
/// logs an internal error's cause at ERROR) says which request failed. Every 5xx answer is noted
/// here at WARN with its status, also those without an engine cause (503 `NO_CAPACITY`).
async fn trace(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // The path only: a query may carry nothing secret today, but the path is what names the
    // operation and the object.
    let path = request.uri().path().to_owned();
    let span = info_span!("request", %method, %path);
    async move {
        let response = next.run(request).await;
        let status = response.status();
        if status.is_server_error() {
            warn!(%status, "request answered with a server error");
        }
        response
    }
    .instrument(span)
    .await
}
