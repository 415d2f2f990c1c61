//! The storage error type, and the mapping of backend complaints to its variants.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a storage operation, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset or snapshot name broke the naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: String,
    },
    /// The dataset or snapshot does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A dataset or snapshot of that name already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Destroying the object would orphan others; they are listed, nearest last.
    #[error("{name} has dependents: {}", dependents.join(", "))]
    HasDependents {
        /// The object the caller asked to destroy.
        name: String,
        /// Snapshots, clones and child datasets that depend on it.
        dependents: Vec<String>,
    },
    /// The pool is full.
    #[error("no space left in the pool: {0}")]
    NoSpace(String),
    /// The engine lacks the privilege for this (btrfs subvolume operations need root).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend or the filesystem under it cannot do this.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An external command failed in a way that has no better variant.
    #[error(transparent)]
    Command(#[from] exec::ExecError),
    /// A filesystem operation failed.
    #[error("{context} {path}: {cause}")]
    Io {
        /// What was being done, as a verb phrase.
        context: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error; printed in the message, so not returned as `source()` (a
        /// chain printed with `{:#}` would show it twice).
        cause: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error, turning ENOSPC and EDQUOT into [`Error::NoSpace`].
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(code)
                if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error() =>
            {
                Error::NoSpace(format!("{context} {}: {source}", path.display()))
            }
            _ => Error::Io { context, path, cause: source },
        }
    }

    /// Maps a failed `zfs`/`zpool`/`btrfs` run to a typed variant by its stderr, keeping the
    /// command error where nothing more specific fits. `object` names what the command acted on.
    pub(crate) fn from_command(error: exec::ExecError, object: &str) -> Self {
        let stderr = error.stderr_tail();
        if contains_any(stderr, &["out of space", "No space left on device", "Disk quota exceeded"])
        {
            Error::NoSpace(stderr.to_owned())
        } else if contains_any(stderr, &["already exists", "File exists"]) {
            Error::AlreadyExists(object.to_owned())
        } else if contains_any(stderr, &["does not exist", "No such file or directory"]) {
            Error::NotFound(object.to_owned())
        } else if contains_any(stderr, &["Operation not permitted", "ermission denied"]) {
            Error::PermissionDenied(stderr.to_owned())
        } else {
            Error::Command(error)
        }
    }
}

fn contains_any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_chain_prints_the_io_cause_once() {
        let error = Error::io(
            "create",
            "/pool/branch",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            format!("{:#}", anyhow::Error::new(error)),
            "create /pool/branch: permission denied"
        );
    }
    use super::*;

    fn failed(stderr: &str) -> exec::ExecError {
        exec::ExecError::Failed {
            command: "zfs x".to_owned(),
            status: exec::ExitInfo::Code(1),
            stderr_tail: stderr.to_owned(),
        }
    }

    #[test]
    fn backend_messages_map_to_variants() {
        let cases = [
            ("cannot create snapshot 'p/full@x': out of space", "NoSpace"),
            ("ERROR: cannot snapshot 'a': No space left on device", "NoSpace"),
            ("cannot create 'p/cl1': dataset already exists", "AlreadyExists"),
            ("ERROR: target path already exists: x", "AlreadyExists"),
            ("cannot open 'p/nope': dataset does not exist", "NotFound"),
            ("ERROR: cannot access 'x': No such file or directory", "NotFound"),
            ("ERROR: cannot delete 'x': Operation not permitted", "PermissionDenied"),
            ("cannot create 'p/x': permission denied", "PermissionDenied"),
            ("cannot destroy: pool is busy", "Command"),
        ];
        for (stderr, expected) in cases {
            let error = Error::from_command(failed(stderr), "x");
            let variant = format!("{error:?}");
            assert!(variant.starts_with(expected), "{stderr} -> {variant}");
        }
    }

    #[test]
    fn enospc_is_no_space() {
        let error = Error::io("write", "/x", std::io::Error::from_raw_os_error(28));
        assert!(matches!(error, Error::NoSpace(_)), "{error:?}");
        let error = Error::io("write", "/x", std::io::Error::from_raw_os_error(2));
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
    }
}
