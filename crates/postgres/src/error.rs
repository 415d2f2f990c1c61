//! The crate's one error type: every variant is a case a caller can act on.

use std::path::PathBuf;
use std::time::Duration;

use crate::version::PgMajor;

/// An error from managing a Postgres instance.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A major version outside the supported range (13 to 18).
    #[error("PostgreSQL {found} is not supported (supported: 13 to 18)")]
    UnsupportedMajor {
        /// The version as found (PG_VERSION's text, or the number asked for).
        found: String,
    },
    /// No directory holds the server binaries of this major.
    #[error("PostgreSQL {major} is not installed: no `postgres` in {}", show_paths(searched))]
    MajorNotInstalled {
        /// The major that was wanted.
        major: PgMajor,
        /// Every directory looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The server of this major is installed but this tool is not (npm's 13 has no psql).
    #[error("PostgreSQL {major} has no `{tool}`: looked in {}", show_paths(searched))]
    ToolMissing {
        /// The major that was wanted.
        major: PgMajor,
        /// The program name.
        tool: String,
        /// Every directory looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// A binary directory's `postgres --version` does not report the expected major.
    #[error("{} reports version {reported:?}, expected PostgreSQL {expected}", path.display())]
    VersionMismatch {
        /// The binary that was asked.
        path: PathBuf,
        /// What it answered.
        reported: String,
        /// The major the directory was supposed to hold.
        expected: PgMajor,
    },
    /// The data directory belongs to another major than the binaries chosen for it.
    #[error("{} holds PostgreSQL {data_major} data, but the binaries are {binaries_major}'s", data_dir.display())]
    WrongBinaries {
        /// The data directory.
        data_dir: PathBuf,
        /// Its major, from PG_VERSION.
        data_major: PgMajor,
        /// The binaries' major.
        binaries_major: PgMajor,
    },
    /// A data directory's PG_VERSION is missing or unreadable: not a data directory.
    #[error("{} is not a PostgreSQL data directory: cannot read PG_VERSION: {cause}", data_dir.display())]
    NotADataDir {
        /// The directory.
        data_dir: PathBuf,
        /// Why PG_VERSION could not be read; printed in the message, so not returned as
        /// `source()`.
        cause: std::io::Error,
    },
    /// The OS user that should run Postgres does not exist, or is root.
    #[error("OS user {name:?} cannot run PostgreSQL: {reason}")]
    BadOsUser {
        /// The configured user name.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A setting name or value that Scion refuses to write into postgresql.conf.
    #[error("invalid setting {name:?}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A role name Postgres would reject or silently truncate.
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRoleName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The unix socket path would be longer than the kernel allows (107 bytes).
    #[error("socket path {} is {len} bytes, more than the 107 a unix socket allows", path.display())]
    SocketPathTooLong {
        /// The socket file's path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A live postmaster already serves this data directory.
    #[error("a postmaster (PID {pid}) already runs on {}", data_dir.display())]
    AlreadyRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// The running postmaster.
        pid: u32,
    },
    /// Adopt found no live postmaster for this data directory.
    #[error("no postmaster runs on {}: {reason}", data_dir.display())]
    NotRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// A live postmaster runs on this data directory, but not with the expected port or socket.
    #[error("the postmaster on {} does not match: {reason}", data_dir.display())]
    AdoptMismatch {
        /// The data directory.
        data_dir: PathBuf,
        /// The difference found.
        reason: String,
    },
    /// The server exited while starting; the log tail says why.
    #[error("postgres on {} exited during start ({status}): {log_tail}", data_dir.display())]
    StartFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// How the server ended.
        status: exec::ExitInfo,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The server did not become ready in time; it was stopped again.
    #[error("postgres on {} was not ready after {after:?}: {log_tail}", data_dir.display())]
    StartTimeout {
        /// The data directory.
        data_dir: PathBuf,
        /// The timeout that expired.
        after: Duration,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The server did not exit even after SIGKILL.
    #[error("postmaster {pid} did not exit after {after:?}, even after SIGKILL")]
    StopTimeout {
        /// The postmaster's PID.
        pid: u32,
        /// The total time waited.
        after: Duration,
    },
    /// pg_controldata's output was not understood.
    #[error("cannot read pg_controldata output of {}: {reason}", data_dir.display())]
    ControlData {
        /// The data directory.
        data_dir: PathBuf,
        /// What was missing or malformed.
        reason: String,
    },
    /// A file in or around the data directory could not be read or written.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done ("write", "remove stale", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error; printed in the message, so not returned as `source()` (a
        /// chain printed with `{:#}` would show it twice).
        cause: std::io::Error,
    },
    /// An external program (initdb, pg_controldata, postgres) failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A SQL statement or connection on the admin session failed.
    #[error("{action}: {cause}")]
    Sql {
        /// What was being done ("connect", "create role", …).
        action: &'static str,
        /// The driver's error (with the server's message); printed in the message, so not
        /// returned as `source()`.
        cause: tokio_postgres::Error,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io { action, path: path.into(), cause: source }
    }

    pub(crate) fn sql(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |cause| Error::Sql { action, cause }
    }

    /// Whether the server refused a connection because its database does not exist: the
    /// caller named a database the cluster lacks, which is the caller's mistake.
    pub fn is_missing_database(&self) -> bool {
        matches!(self, Error::Sql { cause, .. }
            if cause.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME))
    }
}

fn show_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no directories".to_owned();
    }
    paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = Error::io("remove stale", "/data/postmaster.pid", io());
        assert_eq!(
            format!("{:#}", anyhow::Error::new(error)),
            "remove stale /data/postmaster.pid: entity not found"
        );
        let error = Error::NotADataDir { data_dir: PathBuf::from("/data"), cause: io() };
        assert_eq!(
            format!("{:#}", anyhow::Error::new(error)),
            "/data is not a PostgreSQL data directory: cannot read PG_VERSION: entity not found"
        );
    }
}
