//! The engine's error type: what a caller (the HTTP edge, the CLI) can tell apart.

use crate::ports::PortError;
use crate::store::StoreError;

/// An error from an engine operation.
///
/// The variants that wrap a lower layer's error print it in their message and do not return it
/// as `source()`, so a chain printed with `{:#}` shows it once; the HTTP edge and the clones'
/// state messages show the message alone.
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
    /// No port is left for another clone.
    #[error("{0}")]
    NoCapacity(String),
    /// The pool's free space is below its minimum: the operation would write to it and was
    /// refused before it started, so nothing changed.
    #[error("{0}")]
    NoSpace(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The pool failed.
    #[error("storage: {0}")]
    Storage(storage::Error),
    /// A Postgres instance failed.
    #[error("postgres: {0}")]
    Postgres(postgres::Error),
    /// A retrieval run failed.
    #[error("retrieval: {0}")]
    Retrieval(retrieval::Error),
    /// The engine's database failed.
    #[error("state database: {0}")]
    Store(StoreError),
    /// A certificate could not be made or read (the CA's, a clone's).
    #[error("tls: {0}")]
    Tls(String),
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

/// `From` without `#[from]`, which would also make the wrapped error the `source()`.
macro_rules! wrap {
    ($($variant:ident($error:ty)),*) => {$(
        impl From<$error> for Error {
            fn from(error: $error) -> Self {
                Error::$variant(error)
            }
        }
    )*};
}

wrap!(
    Storage(storage::Error),
    Postgres(postgres::Error),
    Retrieval(retrieval::Error),
    Store(StoreError)
);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(error: Error) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_chain_prints_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let storage = storage::Error::Io { context: "create", path: "/pool/x".into(), cause: io() };
        assert_eq!(chain(storage.into()), "storage: create /pool/x: permission denied");
        let store = StoreError::Io { path: "/state/scion.db".into(), cause: io() };
        assert_eq!(
            chain(store.into()),
            "state database: cannot prepare the database file /state/scion.db: permission denied"
        );
        let retrieval = retrieval::Error::Io { action: "read", path: "/dump".into(), cause: io() };
        assert_eq!(chain(retrieval.into()), "retrieval: read /dump: permission denied");
        let postgres = postgres::Error::NotADataDir {
            data_dir: "/data".into(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            chain(postgres.into()),
            "postgres: /data is not a PostgreSQL data directory: cannot read PG_VERSION: entity \
             not found"
        );
    }
}
