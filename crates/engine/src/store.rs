//! The engine's SQLite database: the source of truth for clones, snapshots and branches.
//!
//! Storage is the truth for which datasets exist and running processes for which clones are up;
//! this store is the truth for what the engine promised its users (IDs, ports, credentials,
//! leases). Writes are single transactions, so a crash leaves either the old or the new record.
//! Passwords are kept only as SCRAM verifiers.
//!
//! This module opens the database (readable by its owner only: it holds verifiers) and owns
//! the connection and the key-value `meta` table; each table family has its own module:
//! `migrations` (the schema), `clones`, `warm` (the warm pool), `catalog` (snapshots and
//! branches), `standby` (physical mode's kept standby snapshots), `observations` (observation
//! sessions) and `deliveries` (webhook delivery records).

mod catalog;
mod clones;
mod deliveries;
mod intents;
mod limits;
mod migrations;
mod observations;
mod standby;
mod warm;

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension};

pub use catalog::CatalogChange;
pub use standby::StandbySnapshot;

/// An error from the engine's database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with the same key (clone ID, port, snapshot ID, branch name) exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The record to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database holds a value this version of Scion cannot read.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of Scion.
    #[error("database schema version {found} is newer than this engine's {supported}")]
    TooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this engine knows.
        supported: i64,
    },
    /// The database file could not be created or made private.
    #[error("cannot prepare the database file {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why; printed in the message, so not returned as `source()`.
        cause: std::io::Error,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The mode of the database file and of the `-wal` and `-shm` files SQLite makes beside it
/// (SQLite gives those its database file's mode).
const FILE_MODE: u32 = 0o600;

/// The engine's database, safe to share between tasks.
///
/// Calls are short (one indexed statement or one small transaction), so they run inline rather
/// than on a blocking thread pool.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens the database at `path`, creating it (readable by its owner only) and migrating it
    /// to the current schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        make_private(path)?;
        let connection = Connection::open(path)?;
        // WAL lets readers proceed during a write; FULL makes every committed transaction
        // survive a power cut, which the promise "nothing is silently lost" needs.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { connection: Mutex::new(connection) };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is safe to keep using.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads a value from the key-value table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let connection = self.lock();
        let value = connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()?;
        Ok(value)
    }

    /// Writes a value to the key-value table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Removes a value from the key-value table; a missing key is no error.
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }
}

/// Creates the database file with [`FILE_MODE`] if it is missing, and narrows the mode of an
/// existing one and of its `-wal` and `-shm` (a database made by an earlier version was
/// world-readable).
fn make_private(path: &Path) -> Result<(), StoreError> {
    let io =
        |error: std::io::Error, file: &Path| StoreError::Io { path: file.to_owned(), cause: error };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|error| io(error, path))?;
    for file in [path.to_owned(), sibling(path, "-wal"), sibling(path, "-shm")] {
        match std::fs::set_permissions(&file, Permissions::from_mode(FILE_MODE)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error, &file)),
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal` and `-shm`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn conflict_on_unique(
    result: rusqlite::Result<usize>,
    what: impl FnOnce() -> String,
) -> Result<usize, StoreError> {
    match result {
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict(what()))
        }
        other => Ok(other?),
    }
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| StoreError::Corrupt(format!("time {text:?}: {error}")))
}

fn parse_optional_time(text: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(parse_time).transpose()
}

type RowResult<T> = rusqlite::Result<Result<T, StoreError>>;

#[cfg(test)]
mod tests {
    //! Records for the table families' tests, and the tests of opening the database.

    use std::os::unix::fs::PermissionsExt;

    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::model::{CloneRecord, CloneState, SnapshotRecord};

    pub(in crate::store) fn clone_record(id: &str, port: u16) -> CloneRecord {
        CloneRecord {
            id: id.to_owned(),
            snapshot_id: "pool/data@s1".to_owned(),
            branch: "main".to_owned(),
            revision: 0,
            pool: "pool".to_owned(),
            dataset: format!("branch/main/{id}/r0"),
            port,
            state: CloneState::Creating,
            state_message: "Clone is being created.".to_owned(),
            username: "dev".to_owned(),
            password_verifier: "SCRAM-SHA-256$4096:c2FsdA==$a:b".to_owned(),
            restricted: false,
            db_name: None,
            protected: true,
            protected_till: Some(Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()),
            protection_warning_sent: false,
            created_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            cloning_time_seconds: None,
            extra_conf: [("work_mem".to_owned(), "8MB".to_owned())].into(),
            limits: crate::quota::CloneLimits::default(),
            stopped_at: None,
            cert_login: false,
            server_port: None,
        }
    }

    pub(in crate::store) fn snapshot_record(id: &str, minutes: i64) -> SnapshotRecord {
        let base = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        SnapshotRecord {
            id: id.to_owned(),
            pool: "pool".to_owned(),
            storage_name: id.trim_start_matches("pool/").to_owned(),
            branch: "main".to_owned(),
            parent_id: None,
            message: String::new(),
            created_at: base + Duration::minutes(minutes),
            data_state_at: base,
            physical_size: 10,
            logical_size: 1 << 30,
            protected: false,
            protected_till: None,
            delete_at: None,
            masked: false,
        }
    }

    pub(in crate::store) fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scion.db")).unwrap();
        (dir, store)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_masked_snapshot_is_read_back_masked() {
        let (_dir, store) = open();
        let masked = SnapshotRecord { masked: true, ..snapshot_record("pool/d@snapshot_1", 0) };
        let plain = snapshot_record("pool/d@snapshot_2", 1);
        store.upsert_snapshot(&masked).unwrap();
        store.upsert_snapshot(&plain).unwrap();
        assert_eq!(store.snapshots().unwrap(), vec![plain, masked]);
    }

    #[test]
    fn meta_values_are_replaced() {
        let (_dir, store) = open();
        assert_eq!(store.meta("instance_id").unwrap(), None);
        store.set_meta("instance_id", "a").unwrap();
        store.set_meta("instance_id", "b").unwrap();
        assert_eq!(store.meta("instance_id").unwrap().as_deref(), Some("b"));
    }

    #[test]
    fn the_database_and_its_wal_and_shm_are_private() {
        let (dir, store) = open();
        // A write makes SQLite create the -wal and -shm files.
        store.set_meta("instance_id", "a").unwrap();
        for name in ["scion.db", "scion.db-wal", "scion.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
    }

    #[test]
    fn a_world_readable_database_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scion.db");
        let store = Store::open(&path).unwrap();
        store.set_meta("instance_id", "a").unwrap();
        drop(store);
        for name in ["scion.db", "scion.db-wal", "scion.db-shm"] {
            let file = dir.path().join(name);
            if file.exists() {
                std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
            }
        }
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        store.set_meta("instance_id", "b").unwrap();
        for name in ["scion.db", "scion.db-wal", "scion.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
        assert_eq!(store.meta("instance_id").unwrap().as_deref(), Some("b"));
    }
}
