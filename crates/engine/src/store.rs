//! The engine's SQLite database: the source of truth for clones, snapshots and branches.
//!
//! Storage is the truth for which datasets exist and running processes for which clones are up;
//! this store is the truth for what the engine promised its users (IDs, ports, credentials,
//! leases). Writes are single transactions, so a crash leaves either the old or the new record.
//! Passwords are kept only as SCRAM verifiers.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::{BranchRecord, CloneRecord, CloneState, SnapshotRecord, WarmRecord};

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
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Each entry migrates the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE snapshots (
    id             TEXT PRIMARY KEY,
    pool           TEXT NOT NULL,
    storage_name   TEXT NOT NULL,
    branch         TEXT NOT NULL,
    parent_id      TEXT,
    message        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    data_state_at  TEXT NOT NULL,
    physical_size  INTEGER NOT NULL,
    logical_size   INTEGER NOT NULL,
    protected      INTEGER NOT NULL,
    protected_till TEXT,
    UNIQUE (pool, storage_name)
);
CREATE TABLE branches (
    name             TEXT PRIMARY KEY,
    head_snapshot_id TEXT NOT NULL,
    base_snapshot_id TEXT,
    created_at       TEXT NOT NULL,
    protected        INTEGER NOT NULL,
    protected_till   TEXT,
    delete_at        TEXT
);
CREATE TABLE clones (
    id                      TEXT PRIMARY KEY,
    snapshot_id             TEXT NOT NULL,
    branch                  TEXT NOT NULL,
    revision                INTEGER NOT NULL,
    pool                    TEXT NOT NULL,
    dataset                 TEXT NOT NULL,
    port                    INTEGER NOT NULL UNIQUE,
    state                   TEXT NOT NULL,
    state_message           TEXT NOT NULL,
    username                TEXT NOT NULL,
    password_verifier       TEXT NOT NULL,
    restricted              INTEGER NOT NULL,
    db_name                 TEXT,
    protected               INTEGER NOT NULL,
    protected_till          TEXT,
    protection_warning_sent INTEGER NOT NULL,
    created_at              TEXT NOT NULL,
    cloning_time_seconds    REAL,
    extra_conf              TEXT NOT NULL,
    UNIQUE (pool, dataset)
);
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event        TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    hook_url     TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    emitted_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL
);
"#,
    // Snapshots can be scheduled for deletion (PATCH /snapshot, the retention sweeper).
    r#"
ALTER TABLE snapshots ADD COLUMN delete_at TEXT;
"#,
    // The warm pool: clones started ahead of demand, until a create claims one.
    r#"
CREATE TABLE warm_clones (
    id          TEXT PRIMARY KEY,
    snapshot_id TEXT NOT NULL,
    branch      TEXT NOT NULL,
    dataset     TEXT NOT NULL UNIQUE,
    port        INTEGER NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
"#,
];

const INSERT_CLONE: &str =
    "INSERT INTO clones (id, snapshot_id, branch, revision, pool, dataset, port, state,
    state_message, username, password_verifier, restricted, db_name, protected,
    protected_till, protection_warning_sent, created_at, cloning_time_seconds,
    extra_conf)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19)";

const UPDATE_CLONE: &str =
    "UPDATE clones SET snapshot_id = ?2, branch = ?3, revision = ?4, pool = ?5,
    dataset = ?6, port = ?7, state = ?8, state_message = ?9, username = ?10,
    password_verifier = ?11, restricted = ?12, db_name = ?13, protected = ?14,
    protected_till = ?15, protection_warning_sent = ?16, created_at = ?17,
    cloning_time_seconds = ?18, extra_conf = ?19
 WHERE id = ?1";

/// How many delivery records the store keeps; older ones are pruned as new ones arrive.
const MAX_DELIVERIES: i64 = 10_000;

/// The record of delivering one webhook event to one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The event type (`clone_create`, …).
    pub event: String,
    /// The clone ID, snapshot ID or branch name.
    pub entity_id: String,
    /// The receiver's URL.
    pub hook_url: String,
    /// Attempts made.
    pub attempts: u32,
    /// `delivered`, `failed`, `dropped_queue_full`, `dropped_shutdown`.
    pub outcome: String,
    /// The last HTTP status, if any.
    pub last_status: Option<u16>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When the event was emitted.
    pub emitted_at: DateTime<Utc>,
    /// When delivery ended.
    pub finished_at: DateTime<Utc>,
}

/// The engine's database, safe to share between tasks.
///
/// Calls are short (one indexed statement or one small transaction), so they run inline rather
/// than on a blocking thread pool.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens the database at `path`, creating it and migrating it to the current schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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

    fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew { found: version, supported });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = connection.transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(())
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

    /// Records a new clone; fails with [`StoreError::Conflict`] when its ID, port or dataset is
    /// taken.
    pub fn insert_clone(&self, clone: &CloneRecord) -> Result<(), StoreError> {
        let result = execute_clone(&self.lock(), INSERT_CLONE, clone);
        conflict_on_unique(result, || format!("clone {} (port {})", clone.id, clone.port))?;
        Ok(())
    }

    /// Replaces a clone's record.
    pub fn update_clone(&self, clone: &CloneRecord) -> Result<(), StoreError> {
        let changed = execute_clone(&self.lock(), UPDATE_CLONE, clone);
        let changed = conflict_on_unique(changed, || format!("port {}", clone.port))?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("clone {}", clone.id)));
        }
        Ok(())
    }

    /// Records a clone of the warm pool before its dataset is made.
    pub fn insert_warm(&self, warm: &WarmRecord) -> Result<(), StoreError> {
        let result = self.lock().execute(
            "INSERT INTO warm_clones (id, snapshot_id, branch, dataset, port, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                warm.id,
                warm.snapshot_id,
                warm.branch,
                warm.dataset,
                warm.port,
                format_time(warm.created_at)
            ],
        );
        conflict_on_unique(result, || format!("warm clone {} (port {})", warm.id, warm.port))?;
        Ok(())
    }

    /// Forgets a clone of the warm pool. Forgetting one that is not there is not an error.
    pub fn delete_warm(&self, id: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM warm_clones WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every clone of the warm pool.
    pub fn warm_clones(&self) -> Result<Vec<WarmRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, snapshot_id, branch, dataset, port, created_at FROM warm_clones ORDER BY id",
        )?;
        let rows = statement.query_map([], warm_from_row)?;
        let mut warm = Vec::new();
        for row in rows {
            warm.push(row??);
        }
        Ok(warm)
    }

    /// Hands a clone of the warm pool over to a user's clone in one transaction: the warm record
    /// goes and `clone` (on the warm clone's dataset and port) is inserted, or neither happens.
    pub fn claim_warm(&self, warm_id: &str, clone: &CloneRecord) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM warm_clones WHERE id = ?1", [warm_id])?;
        let result = execute_clone(&transaction, INSERT_CLONE, clone);
        conflict_on_unique(result, || format!("clone {} (port {})", clone.id, clone.port))?;
        transaction.commit()?;
        Ok(())
    }

    /// Forgets a clone. Forgetting one that is not there is not an error.
    pub fn delete_clone(&self, id: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM clones WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every clone, in creation order.
    pub fn clones(&self) -> Result<Vec<CloneRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, snapshot_id, branch, revision, pool, dataset, port, state, state_message,
                username, password_verifier, restricted, db_name, protected, protected_till,
                protection_warning_sent, created_at, cloning_time_seconds, extra_conf
             FROM clones ORDER BY created_at, id",
        )?;
        let rows = statement.query_map([], clone_from_row)?;
        let mut clones = Vec::new();
        for row in rows {
            clones.push(row??);
        }
        Ok(clones)
    }

    /// Records a snapshot, replacing an earlier record with the same ID.
    pub fn upsert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        upsert_snapshot(&self.lock(), snapshot)
    }

    /// Forgets a snapshot. Forgetting one that is not there is not an error.
    pub fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every snapshot, newest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, pool, storage_name, branch, parent_id, message, created_at, data_state_at,
                physical_size, logical_size, protected, protected_till, delete_at
             FROM snapshots ORDER BY created_at DESC, id DESC",
        )?;
        let rows = statement.query_map([], snapshot_from_row)?;
        let mut snapshots = Vec::new();
        for row in rows {
            snapshots.push(row??);
        }
        Ok(snapshots)
    }

    /// Records a branch, replacing an earlier record with the same name.
    pub fn upsert_branch(&self, branch: &BranchRecord) -> Result<(), StoreError> {
        upsert_branch(&self.lock(), branch)
    }

    /// Writes a change to the catalog of snapshots and branches in one transaction: after a
    /// crash either all of it or none of it is there.
    pub fn apply(&self, change: &CatalogChange) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        for snapshot in &change.upsert_snapshots {
            upsert_snapshot(&transaction, snapshot)?;
        }
        for id in &change.delete_snapshots {
            transaction.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
        }
        for branch in &change.upsert_branches {
            upsert_branch(&transaction, branch)?;
        }
        for name in &change.delete_branches {
            transaction.execute("DELETE FROM branches WHERE name = ?1", [name])?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Forgets a branch. Forgetting one that is not there is not an error.
    pub fn delete_branch(&self, name: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM branches WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Every branch, by name.
    pub fn branches(&self) -> Result<Vec<BranchRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT name, head_snapshot_id, base_snapshot_id, created_at, protected,
                protected_till, delete_at
             FROM branches ORDER BY name",
        )?;
        let rows = statement.query_map([], branch_from_row)?;
        let mut branches = Vec::new();
        for row in rows {
            branches.push(row??);
        }
        Ok(branches)
    }
}

impl Store {
    /// Records a webhook delivery, keeping the newest [`MAX_DELIVERIES`].
    pub fn insert_delivery(&self, row: &DeliveryRow) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT INTO webhook_deliveries (event, entity_id, hook_url, attempts, outcome,
                last_status, last_error, emitted_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.event,
                row.entity_id,
                row.hook_url,
                row.attempts,
                row.outcome,
                row.last_status,
                row.last_error,
                format_time(row.emitted_at),
                format_time(row.finished_at),
            ],
        )?;
        transaction.execute(
            "DELETE FROM webhook_deliveries WHERE id <= (SELECT max(id) FROM webhook_deliveries) - ?1",
            [MAX_DELIVERIES],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// The newest `limit` delivery records, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRow>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT event, entity_id, hook_url, attempts, outcome, last_status, last_error,
                emitted_at, finished_at
             FROM webhook_deliveries ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
            let emitted_at: String = row.get(7)?;
            let finished_at: String = row.get(8)?;
            Ok((|| -> Result<DeliveryRow, StoreError> {
                Ok(DeliveryRow {
                    event: row.get(0)?,
                    entity_id: row.get(1)?,
                    hook_url: row.get(2)?,
                    attempts: row.get(3)?,
                    outcome: row.get(4)?,
                    last_status: row.get(5)?,
                    last_error: row.get(6)?,
                    emitted_at: parse_time(&emitted_at)?,
                    finished_at: parse_time(&finished_at)?,
                })
            })())
        })?;
        let mut deliveries = Vec::new();
        for row in rows {
            deliveries.push(row??);
        }
        Ok(deliveries)
    }
}

/// A change to the catalog of snapshots and branches, applied as one unit by [`Store::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogChange {
    /// Snapshots to record or replace.
    pub upsert_snapshots: Vec<SnapshotRecord>,
    /// IDs of snapshots to forget.
    pub delete_snapshots: Vec<String>,
    /// Branches to record or replace.
    pub upsert_branches: Vec<BranchRecord>,
    /// Names of branches to forget.
    pub delete_branches: Vec<String>,
}

fn upsert_snapshot(connection: &Connection, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO snapshots (id, pool, storage_name, branch, parent_id, message, created_at,
            data_state_at, physical_size, logical_size, protected, protected_till, delete_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET pool = excluded.pool,
            storage_name = excluded.storage_name, branch = excluded.branch,
            parent_id = excluded.parent_id, message = excluded.message,
            created_at = excluded.created_at, data_state_at = excluded.data_state_at,
            physical_size = excluded.physical_size, logical_size = excluded.logical_size,
            protected = excluded.protected, protected_till = excluded.protected_till,
            delete_at = excluded.delete_at",
        params![
            snapshot.id,
            snapshot.pool,
            snapshot.storage_name,
            snapshot.branch,
            snapshot.parent_id,
            snapshot.message,
            format_time(snapshot.created_at),
            format_time(snapshot.data_state_at),
            snapshot.physical_size,
            snapshot.logical_size,
            snapshot.protected,
            snapshot.protected_till.map(format_time),
            snapshot.delete_at.map(format_time),
        ],
    )?;
    Ok(())
}

fn upsert_branch(connection: &Connection, branch: &BranchRecord) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO branches (name, head_snapshot_id, base_snapshot_id, created_at, protected,
            protected_till, delete_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET head_snapshot_id = excluded.head_snapshot_id,
            base_snapshot_id = excluded.base_snapshot_id, created_at = excluded.created_at,
            protected = excluded.protected, protected_till = excluded.protected_till,
            delete_at = excluded.delete_at",
        params![
            branch.name,
            branch.head_snapshot_id,
            branch.base_snapshot_id,
            format_time(branch.created_at),
            branch.protected,
            branch.protected_till.map(format_time),
            branch.delete_at.map(format_time),
        ],
    )?;
    Ok(())
}

/// Runs `sql` with a clone's fields as `?1` to `?19`, in the columns' order.
fn execute_clone(
    connection: &Connection,
    sql: &str,
    clone: &CloneRecord,
) -> rusqlite::Result<usize> {
    connection.execute(
        sql,
        params![
            clone.id,
            clone.snapshot_id,
            clone.branch,
            clone.revision,
            clone.pool,
            clone.dataset,
            clone.port,
            clone.state.code(),
            clone.state_message,
            clone.username,
            clone.password_verifier,
            clone.restricted,
            clone.db_name,
            clone.protected,
            clone.protected_till.map(format_time),
            clone.protection_warning_sent,
            format_time(clone.created_at),
            clone.cloning_time_seconds,
            extra_conf_json(clone),
        ],
    )
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

fn extra_conf_json(clone: &CloneRecord) -> String {
    serde_json::to_string(&clone.extra_conf).expect("a map of strings always serializes")
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

fn clone_from_row(row: &Row<'_>) -> RowResult<CloneRecord> {
    let state: String = row.get("state")?;
    let protected_till: Option<String> = row.get("protected_till")?;
    let created_at: String = row.get("created_at")?;
    let extra_conf: String = row.get("extra_conf")?;
    let record = (|| {
        Ok(CloneRecord {
            id: row.get("id")?,
            snapshot_id: row.get("snapshot_id")?,
            branch: row.get("branch")?,
            revision: row.get("revision")?,
            pool: row.get("pool")?,
            dataset: row.get("dataset")?,
            port: row.get("port")?,
            state: CloneState::from_code(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("clone state {state:?}")))?,
            state_message: row.get("state_message")?,
            username: row.get("username")?,
            password_verifier: row.get("password_verifier")?,
            restricted: row.get("restricted")?,
            db_name: row.get("db_name")?,
            protected: row.get("protected")?,
            protected_till: parse_optional_time(protected_till.as_deref())?,
            protection_warning_sent: row.get("protection_warning_sent")?,
            created_at: parse_time(&created_at)?,
            cloning_time_seconds: row.get("cloning_time_seconds")?,
            extra_conf: serde_json::from_str(&extra_conf).map_err(|error| {
                StoreError::Corrupt(format!("extra_conf {extra_conf:?}: {error}"))
            })?,
        })
    })();
    Ok(record)
}

fn warm_from_row(row: &Row<'_>) -> RowResult<WarmRecord> {
    let created_at: String = row.get("created_at")?;
    let record = (|| {
        Ok(WarmRecord {
            id: row.get("id")?,
            snapshot_id: row.get("snapshot_id")?,
            branch: row.get("branch")?,
            dataset: row.get("dataset")?,
            port: row.get("port")?,
            created_at: parse_time(&created_at)?,
        })
    })();
    Ok(record)
}

fn snapshot_from_row(row: &Row<'_>) -> RowResult<SnapshotRecord> {
    let created_at: String = row.get("created_at")?;
    let data_state_at: String = row.get("data_state_at")?;
    let protected_till: Option<String> = row.get("protected_till")?;
    let delete_at: Option<String> = row.get("delete_at")?;
    let record = (|| {
        Ok(SnapshotRecord {
            id: row.get("id")?,
            pool: row.get("pool")?,
            storage_name: row.get("storage_name")?,
            branch: row.get("branch")?,
            parent_id: row.get("parent_id")?,
            message: row.get("message")?,
            created_at: parse_time(&created_at)?,
            data_state_at: parse_time(&data_state_at)?,
            physical_size: row.get("physical_size")?,
            logical_size: row.get("logical_size")?,
            protected: row.get("protected")?,
            protected_till: parse_optional_time(protected_till.as_deref())?,
            delete_at: parse_optional_time(delete_at.as_deref())?,
        })
    })();
    Ok(record)
}

fn branch_from_row(row: &Row<'_>) -> RowResult<BranchRecord> {
    let created_at: String = row.get("created_at")?;
    let protected_till: Option<String> = row.get("protected_till")?;
    let delete_at: Option<String> = row.get("delete_at")?;
    let record = (|| {
        Ok(BranchRecord {
            name: row.get("name")?,
            head_snapshot_id: row.get("head_snapshot_id")?,
            base_snapshot_id: row.get("base_snapshot_id")?,
            created_at: parse_time(&created_at)?,
            protected: row.get("protected")?,
            protected_till: parse_optional_time(protected_till.as_deref())?,
            delete_at: parse_optional_time(delete_at.as_deref())?,
        })
    })();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn clone_record(id: &str, port: u16) -> CloneRecord {
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
        }
    }

    fn snapshot_record(id: &str, minutes: i64) -> SnapshotRecord {
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
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scion.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn clones_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scion.db");
        let mut clone = clone_record("c1", 6000);
        {
            let store = Store::open(&path).unwrap();
            store.insert_clone(&clone).unwrap();
            clone.state = CloneState::Ok;
            clone.cloning_time_seconds = Some(0.042);
            store.update_clone(&clone).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.clones().unwrap(), vec![clone]);
    }

    #[test]
    fn ports_and_ids_are_unique() {
        let (_dir, store) = open();
        store.insert_clone(&clone_record("c1", 6000)).unwrap();
        let same_port = store.insert_clone(&clone_record("c2", 6000)).unwrap_err();
        assert!(matches!(same_port, StoreError::Conflict(_)), "{same_port:?}");
        let same_id = store.insert_clone(&clone_record("c1", 6001)).unwrap_err();
        assert!(matches!(same_id, StoreError::Conflict(_)), "{same_id:?}");
        assert_eq!(store.clones().unwrap().len(), 1);
    }

    #[test]
    fn updating_a_missing_clone_is_not_found() {
        let (_dir, store) = open();
        let error = store.update_clone(&clone_record("ghost", 6000)).unwrap_err();
        assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
    }

    #[test]
    fn snapshots_are_listed_newest_first() {
        let (_dir, store) = open();
        store.upsert_snapshot(&snapshot_record("pool/data@old", 0)).unwrap();
        store.upsert_snapshot(&snapshot_record("pool/data@new", 10)).unwrap();
        let mut renamed = snapshot_record("pool/data@old", 0);
        renamed.message = "updated".to_owned();
        store.upsert_snapshot(&renamed).unwrap();
        let ids: Vec<_> = store.snapshots().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["pool/data@new", "pool/data@old"]);
        assert_eq!(store.snapshots().unwrap()[1].message, "updated");
        store.delete_snapshot("pool/data@old").unwrap();
        assert_eq!(store.snapshots().unwrap().len(), 1);
    }

    #[test]
    fn branches_round_trip() {
        let (_dir, store) = open();
        let branch = BranchRecord {
            name: "main".to_owned(),
            head_snapshot_id: "pool/data@s1".to_owned(),
            base_snapshot_id: None,
            created_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
            protected: false,
            protected_till: None,
            delete_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()),
        };
        store.upsert_branch(&branch).unwrap();
        assert_eq!(store.branches().unwrap(), vec![branch]);
        store.delete_branch("main").unwrap();
        assert!(store.branches().unwrap().is_empty());
    }

    #[test]
    fn catalog_changes_apply_together() {
        let (_dir, store) = open();
        store.upsert_snapshot(&snapshot_record("pool/data@old", 0)).unwrap();
        let branch = BranchRecord {
            name: "dev".to_owned(),
            head_snapshot_id: "pool/branch/dev@s".to_owned(),
            base_snapshot_id: Some("pool/data@old".to_owned()),
            created_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
            protected: false,
            protected_till: None,
            delete_at: None,
        };
        let mut head = snapshot_record("pool/branch/dev@s", 5);
        head.branch = "dev".to_owned();
        head.parent_id = Some("pool/data@old".to_owned());
        head.delete_at = Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        store
            .apply(&CatalogChange {
                upsert_snapshots: vec![head.clone()],
                upsert_branches: vec![branch.clone()],
                ..CatalogChange::default()
            })
            .unwrap();
        assert_eq!(store.branches().unwrap(), vec![branch]);
        assert_eq!(store.snapshots().unwrap()[0], head);

        store
            .apply(&CatalogChange {
                delete_snapshots: vec![head.id.clone()],
                delete_branches: vec!["dev".to_owned()],
                ..CatalogChange::default()
            })
            .unwrap();
        assert!(store.branches().unwrap().is_empty());
        assert_eq!(store.snapshots().unwrap().len(), 1);
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
    fn deliveries_are_recorded_newest_first() {
        let (_dir, store) = open();
        for attempts in 1..=3 {
            store
                .insert_delivery(&DeliveryRow {
                    event: "clone_create".to_owned(),
                    entity_id: "c1".to_owned(),
                    hook_url: "http://127.0.0.1:9/hook".to_owned(),
                    attempts,
                    outcome: "failed".to_owned(),
                    last_status: None,
                    last_error: Some("connection refused".to_owned()),
                    emitted_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
                    finished_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 1).unwrap(),
                })
                .unwrap();
        }
        let rows = store.deliveries(2).unwrap();
        assert_eq!(rows.iter().map(|row| row.attempts).collect::<Vec<_>>(), [3, 2]);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scion.db");
        drop(Store::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::TooNew { found: 99, .. }), "{error:?}");
    }
}
