//! The one place errors become HTTP responses: DBLab's `{code, message}` body with the status
//! its code stands for.
//!
//! Client errors are returned, not logged as errors. Server errors are logged here, once, with
//! their whole cause chain; the client gets the message without internals.

use api_types::{ApiError, ErrorCode};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::error;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    body: ApiError,
}

impl ApiFailure {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiFailure {
        ApiFailure { status, body: ApiError::new(code, message) }
    }

    /// 400 with DBLab's `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> ApiFailure {
        ApiFailure::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 404 with DBLab's `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> ApiFailure {
        ApiFailure::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 500 with DBLab's `INTERNAL_ERROR`.
    pub fn internal(message: impl Into<String>) -> ApiFailure {
        ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError, message)
    }

    /// 401 with DBLab's exact body.
    pub fn unauthorized() -> ApiFailure {
        ApiFailure { status: StatusCode::UNAUTHORIZED, body: ApiError::unauthorized() }
    }

    /// 405, with a JSON body so that every 4xx carries one (DBLab's clients parse it).
    pub fn method_not_allowed() -> ApiFailure {
        ApiFailure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Other("METHOD_NOT_ALLOWED".to_owned()),
            "This method is not allowed on this path.",
        )
    }

    /// Any status with a message: DBLab's code where it has one for the status, else the
    /// status' name in DBLab's style (`PAYLOAD_TOO_LARGE`, `URI_TOO_LONG`, ...).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiFailure {
        let code = match status {
            StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            status if status.is_server_error() => ErrorCode::InternalError,
            status => ErrorCode::Other(
                status
                    .canonical_reason()
                    .unwrap_or("ERROR")
                    .to_ascii_uppercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            ),
        };
        ApiFailure::new(status, code, message)
    }

    /// The `{code, message}` body this failure answers with.
    pub fn body(&self) -> &ApiError {
        &self.body
    }

    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<engine::Error> for ApiFailure {
    fn from(failure: engine::Error) -> Self {
        use engine::Error;
        match failure {
            Error::InvalidInput(message)
            | Error::AlreadyExists(message)
            | Error::Refused(message) => ApiFailure::bad_request(message),
            Error::NotFound(message) => ApiFailure::not_found(message),
            Error::NoCapacity(message) => ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Other("NO_CAPACITY".to_owned()),
                message,
            ),
            // 507 Insufficient Storage (RFC 4918): the server cannot store what the operation
            // needs. A 5xx, as DBLab's clients expect of a server-side condition, and not 503,
            // which tells clients and proxies to retry soon, while space only returns when
            // someone frees it.
            Error::NoSpace(message) => ApiFailure::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::Other("INSUFFICIENT_STORAGE".to_owned()),
                message,
            ),
            Error::ShuttingDown => ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Other("SHUTTING_DOWN".to_owned()),
                "The engine is shutting down.",
            ),
            internal @ (Error::Storage(_)
            | Error::Postgres(_)
            | Error::Store(_)
            | Error::Retrieval(_)
            | Error::Tls(_)
            | Error::Io { .. }) => {
                error!(error = %internal, "request failed");
                ApiFailure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::InternalError,
                    format!("{}; see the engine log", kind_of(&internal)),
                )
            }
        }
    }
}

fn kind_of(error: &engine::Error) -> &'static str {
    match error {
        engine::Error::Storage(_) => "the storage pool failed",
        engine::Error::Postgres(_) => "a Postgres server failed",
        engine::Error::Retrieval(_) => "retrieval failed",
        engine::Error::Io { .. } => "the engine's files could not be written",
        engine::Error::Tls(_) => "a certificate could not be issued",
        _ => "the engine's state database failed",
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
