//! The client's error: what went wrong, in variants a caller can act on (server down, server said no,
//! server said something unreadable, bad input on our side).

use api_types::{ErrorCode, IdError};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A clone or snapshot ID the server would refuse; checked before any request is sent.
    #[error("{source} (got {id:?})")]
    InvalidId {
        /// The ID as given.
        id: String,
        /// The rule it breaks.
        source: IdError,
    },
    /// No connection could be made (refused, DNS, TLS) or it broke before an answer came.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What the network layer said.
        reason: String,
    },
    /// No answer within the request timeout.
    #[error("no answer from {url} within {seconds:.0} s")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that ran out, in seconds.
        seconds: f64,
    },
    /// The server answered with an error status and its `{code, message}` body.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code from the body; derived from the status when the body has none.
        code: ErrorCode,
        /// The message from the body (or the body text, or the status reason).
        message: String,
    },
    /// The server answered 2xx with a body that is not the expected JSON.
    #[error("cannot read the answer of {url}: {reason}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What did not parse.
        reason: String,
    },
}

impl Error {
    /// Whether this is the server's 404 (an unknown object or endpoint).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. })
    }

    /// Whether the request never got an answer (the server is down or unreachable, or it timed out).
    pub fn is_connection_problem(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout { .. })
    }
}

/// The code DBLab's mapper gives each status, for error bodies that carry none.
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        _ => ErrorCode::InternalError,
    }
}
