//! The crate's error type, and the mapping of pg_dump/pg_restore/psql/libpq/postgres messages to
//! variants a caller can act on (alert text, retry or not, which config key to fix).

use std::path::PathBuf;

use crate::progress::Stage;

/// Why a retrieval run failed (or was refused before it started).
///
/// On any error after the target was touched, the target data directory is in an unknown state:
/// the engine must discard it and never snapshot it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong; every problem found is listed. Nothing was started.
    #[error("invalid retrieval configuration: {}", problems.join("; "))]
    InvalidConfig {
        /// One sentence per problem, naming the key.
        problems: Vec<String>,
    },
    /// The source could not be reached (refused, no route, bad host name, timeout).
    #[error("source database unreachable: {detail}")]
    SourceUnreachable {
        /// libpq's message.
        detail: String,
    },
    /// The source refused the credentials (wrong or missing password, unknown role, pg_hba).
    #[error("authentication to the source failed: {detail}")]
    AuthFailed {
        /// libpq's message.
        detail: String,
    },
    /// A database asked for does not exist on the source (or, for renames, in the target).
    #[error("database {database:?} does not exist: {detail}")]
    DatabaseMissing {
        /// The database.
        database: String,
        /// Where it was missing.
        detail: String,
    },
    /// A disk filled up (the dump location or the target data directory).
    #[error("no space left on device during {stage}: {detail}")]
    NoSpace {
        /// The stage that hit it.
        stage: Stage,
        /// The tool's or server's message.
        detail: String,
    },
    /// A needed program is not installed (for example, client tools for a major).
    #[error("{tool} is not available: {detail}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// What was searched, and what would make it work.
        detail: String,
    },
    /// The source needs ICU (ICU collations, or databases whose locale provider is ICU) and the
    /// target's server is built without it; found before any dump or restore.
    #[error("the source needs ICU and {target} is built without it: {needs}; {remedy}")]
    IcuMissing {
        /// The target's server binary and major.
        target: String,
        /// What needs ICU: the collations per database and the databases.
        needs: String,
        /// What to install.
        remedy: String,
    },
    /// The source uses extensions the target's install of its major lacks; found before any
    /// dump, restore or copy.
    #[error("the source uses extensions that {target} cannot load: {detail}")]
    ExtensionsMissing {
        /// The target's major and binaries.
        target: String,
        /// Every missing extension with its versions, databases and package, and what to do.
        detail: String,
    },
    /// The source and target majors cannot work together.
    #[error("unsupported versions: {detail}")]
    UnsupportedVersion {
        /// Which majors, and why.
        detail: String,
    },
    /// The run was cancelled; programs were stopped.
    #[error("retrieval cancelled during {stage}")]
    Cancelled {
        /// The stage that was running.
        stage: Stage,
    },
    /// A point-in-time target lies outside the moments the WAL archive and the snapshots can
    /// reach. Nothing was started.
    #[error("{target} is outside the WAL window: {window}")]
    OutsideWalWindow {
        /// The target asked for.
        target: String,
        /// What can be reached.
        window: crate::physical::promote::WalWindow,
    },
    /// Recovery could not stop at the target: the WAL ends before it, or it lies before the
    /// moment the copy is consistent.
    #[error("recovery target {target} cannot be reached: {reason}")]
    TargetUnreachable {
        /// The target asked for.
        target: String,
        /// Why, from the server's own words.
        reason: String,
    },
    /// `[retrieval.masking] refuse_unmasked_pii` is on and columns that look personal have no
    /// rule; the snapshot is not cut.
    #[error("columns that look personal have no masking rule: {}", columns.join("; "))]
    UnmaskedPii {
        /// One line per column: database, table, column, kind and why.
        columns: Vec<String>,
    },
    /// A stage failed for another reason; the tail of the tool's output says why.
    #[error("{stage} failed: {stderr_tail}")]
    Failed {
        /// The stage.
        stage: Stage,
        /// The last lines the tool (or server) wrote.
        stderr_tail: String,
    },
    /// A file or directory Scion manages could not be read or written.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error; printed in the message, so not returned as `source()` (a
        /// chain printed with `{:#}` would show it twice).
        cause: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The refusal of a source that needs ICU (`needs` says what) on `target`, a server built
    /// without it.
    pub(crate) fn icu_missing(target: &postgres::PgBinaries, needs: String) -> Error {
        let major = target.major();
        Error::IcuMissing {
            target: format!("the target's PostgreSQL {major} ({})", target.postgres().display()),
            needs,
            remedy: format!(
                "install a PostgreSQL {major} server built with ICU (scripts/setup installs them \
                 under /opt/scion/postgres; Debian's postgresql-{major} is one) and name its \
                 directory in [clone.bin_dirs] if it is not found there"
            ),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        if source.raw_os_error() == Some(nix::libc::ENOSPC) {
            return Error::NoSpace {
                stage: Stage::Preparing,
                detail: format!("{action} {}: {source}", path.into().display()),
            };
        }
        Error::Io { action, path: path.into(), cause: source }
    }

    pub(crate) fn invalid(problem: impl Into<String>) -> Self {
        Error::InvalidConfig { problems: vec![problem.into()] }
    }

    /// A short machine-friendly name of the variant, for alerts and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidConfig { .. } => "invalid_config",
            Error::SourceUnreachable { .. } => "source_unreachable",
            Error::AuthFailed { .. } => "auth_failed",
            Error::DatabaseMissing { .. } => "database_missing",
            Error::NoSpace { .. } => "no_space",
            Error::ToolMissing { .. } => "tool_missing",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::IcuMissing { .. } => "icu_missing",
            Error::ExtensionsMissing { .. } => "extensions_missing",
            Error::Cancelled { .. } => "cancelled",
            Error::OutsideWalWindow { .. } => "outside_wal_window",
            Error::TargetUnreachable { .. } => "target_unreachable",
            Error::UnmaskedPii { .. } => "unmasked_pii",
            Error::Failed { .. } => "failed",
            Error::Io { .. } => "io",
        }
    }
}

/// Turns a failed tool's output into the most specific error: the same libpq and server
/// messages appear whichever tool (psql, pg_dump, pg_dumpall, pg_restore) printed them.
/// `database` is the database the tool was working on, for [`Error::DatabaseMissing`].
pub(crate) fn classify(stage: Stage, database: Option<&str>, output: &str) -> Error {
    let detail = last_error_lines(output);
    let lower = output.to_ascii_lowercase();
    if lower.contains("no space left on device") || lower.contains("could not extend file") {
        return Error::NoSpace { stage, detail };
    }
    if stage.touches_source() {
        if let Some(missing) = missing_database(output) {
            return Error::DatabaseMissing { database: missing, detail };
        }
        let auth = [
            "password authentication failed",
            "no password supplied",
            "no pg_hba.conf entry",
            "authentication failed",
            "peer authentication failed",
        ];
        if auth.iter().any(|needle| lower.contains(needle))
            || (lower.contains("role \"") && lower.contains("\" does not exist"))
        {
            return Error::AuthFailed { detail };
        }
        let unreachable = [
            "connection refused",
            "could not translate host name",
            "no route to host",
            "network is unreachable",
            "timeout expired",
            "could not connect to server",
            "server closed the connection unexpectedly",
            "name or service not known",
            "temporary failure in name resolution",
        ];
        if unreachable.iter().any(|needle| lower.contains(needle)) {
            return Error::SourceUnreachable { detail };
        }
    }
    if let (Some(database), Some(missing)) = (database, missing_database(output))
        && missing == database
    {
        return Error::DatabaseMissing { database: missing, detail };
    }
    Error::Failed { stage, stderr_tail: detail }
}

/// `database "x" does not exist` → `x`.
fn missing_database(output: &str) -> Option<String> {
    let start = output.find("database \"")? + "database \"".len();
    let rest = &output[start..];
    let end = rest.find("\" does not exist")?;
    let name = &rest[..end];
    (!name.contains('"')).then(|| name.to_owned())
}

/// How much of a tool's output an error keeps.
const DETAIL_BYTES: usize = 2000;

/// The most telling part of a tool's output: its `error`/`FATAL` lines if any, else its end.
pub(crate) fn last_error_lines(output: &str) -> String {
    let marked: Vec<&str> = output
        .lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("error") || lower.contains("fatal") || lower.contains("panic")
        })
        .collect();
    let text = if marked.is_empty() { output.trim().to_owned() } else { marked.join("\n") };
    tail_chars(&text, DETAIL_BYTES)
}

pub(crate) fn tail_chars(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_chain_prints_the_io_cause_once() {
        let error = Error::io(
            "create run directory",
            "/run/scion",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            format!("{:#}", anyhow::Error::new(error)),
            "create run directory /run/scion: permission denied"
        );
    }
    use super::*;

    #[test]
    fn maps_libpq_messages() {
        let refused = "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?";
        assert!(matches!(classify(Stage::Probing, None, refused), Error::SourceUnreachable { .. }));
        let password = "psql: error: connection to server at \"127.0.0.1\", port 5 failed: FATAL:  password authentication failed for user \"app\"";
        assert!(matches!(classify(Stage::Dumping, None, password), Error::AuthFailed { .. }));
        let missing = "pg_dump: error: connection to server at \"127.0.0.1\", port 5 failed: FATAL:  database \"nope\" does not exist";
        match classify(Stage::Dumping, Some("nope"), missing) {
            Error::DatabaseMissing { database, .. } => assert_eq!(database, "nope"),
            other => panic!("{other:?}"),
        }
        let host = "psql: error: could not translate host name \"no.such.host\" to address: Name or service not known";
        assert!(matches!(classify(Stage::Probing, None, host), Error::SourceUnreachable { .. }));
    }

    #[test]
    fn maps_a_full_disk_in_any_stage() {
        let restore = "pg_restore: error: could not execute query: ERROR:  could not extend file \"base/16384/16390\": No space left on device\nHINT:  Check free disk space.";
        match classify(Stage::Restoring, Some("app"), restore) {
            Error::NoSpace { stage, detail } => {
                assert_eq!(stage, Stage::Restoring);
                assert!(detail.contains("could not extend"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn target_side_messages_are_not_source_errors() {
        // A restore that loses its server is a failed restore, not an unreachable source.
        let lost = "pg_restore: error: server closed the connection unexpectedly";
        assert!(matches!(classify(Stage::Restoring, None, lost), Error::Failed { .. }));
    }

    #[test]
    fn keeps_the_error_lines() {
        let output = "pg_restore: creating TABLE x\npg_restore: error: boom\nmore noise";
        assert_eq!(last_error_lines(output), "pg_restore: error: boom");
        assert_eq!(last_error_lines("just text\n"), "just text");
        assert!(tail_chars(&"é".repeat(3000), 100).starts_with('…'));
    }
}
