//! The `{code, message}` error body every 4xx/5xx response carries, and DBLab's generic OK body.

use serde::{Deserialize, Serialize};

use crate::serde_util::null_as_default;

wire_enum! {
    /// DBLab's error codes (`models.ErrorCode`).
    pub enum ErrorCode {
        /// Invalid input or a refused operation: 400.
        BadRequest = "BAD_REQUEST",
        /// Missing or wrong `Verification-Token`: 401.
        Unauthorized = "UNAUTHORIZED",
        /// Unknown object: 404.
        NotFound = "NOT_FOUND",
        /// Anything else: 500.
        InternalError = "INTERNAL_ERROR",
    }
}

impl ErrorCode {
    /// The HTTP status DBLab answers with for this code; unknown codes are 500, as in DBLab's mapper.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::InternalError | Self::Other(_) => 500,
        }
    }
}

/// The error body: `{"code": "NOT_FOUND", "message": "..."}`.
///
/// DBLab's Swagger also lists `detail` and `hint`, which its code never sets; they are accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// The error code, which decides the HTTP status.
    pub code: ErrorCode,
    /// A human-readable message.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
}

impl ApiError {
    /// DBLab's message for a missing or wrong token.
    pub const UNAUTHORIZED_MESSAGE: &'static str = "Check your verification token.";
    /// DBLab's generic message for an unknown path or object.
    pub const NOT_FOUND_MESSAGE: &'static str =
        "Requested object does not exist. Specify your request.";

    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A 400 error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A 404 error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A 500 error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    /// The 401 body DBLab sends for a missing or wrong token.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, Self::UNAUTHORIZED_MESSAGE)
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// DBLab's generic OK body (`models.Response`): `{"status": "OK", "message": "Deleted snapshot"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Response {
    /// Always `"OK"` for the responses DBLab sends.
    pub status: String,
    /// What was done.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
}

impl Response {
    /// The `status` value DBLab uses.
    pub const OK: &'static str = "OK";

    /// An OK response with a message.
    pub fn ok(message: impl Into<String>) -> Self {
        Self { status: Self::OK.to_owned(), message: message.into() }
    }
}

/// The one-time websocket token answer of `GET /admin/ws-auth`: `{"token": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WsToken {
    /// The one-time token.
    pub token: String,
}
