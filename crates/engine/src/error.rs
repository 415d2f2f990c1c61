//! The engine's error type: what a caller (the HTTP edge, the CLI) can tell apart.

use crate::ports::PortError;
use crate::store::StoreError;

/// An error from an engine operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something impossible (a bad ID, a missing field).
    #[error("{0}")]
    InvalidInput(String),
    /// The clone, snapshot or branch does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation is refused by a rule: a protected clone, a snapshot with clones, a clone
    /// busy with another operation.
    #[error("{0}")]
    Refused(String),
    /// No port or space is left for another clone.
    #[error("{0}")]
    NoCapacity(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The pool failed.
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// A Postgres instance failed.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// A retrieval run failed.
    #[error("retrieval: {0}")]
    Retrieval(#[from] retrieval::Error),
    /// The engine's database failed.
    #[error("state database: {0}")]
    Store(#[from] StoreError),
    /// The engine's own files (its state directory, clone logs) could not be made. The cause
    /// is printed, not returned as `source()`, so that a chain prints it once.
    #[error("{what} {}: {error}", path.display())]
    Io {
        /// What the engine was doing.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
}

impl From<PortError> for Error {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Exhausted { .. } => Error::NoCapacity(error.to_string()),
            PortError::OutOfRange { .. } | PortError::Taken(_) => Error::Refused(error.to_string()),
        }
    }
}

/// A result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
