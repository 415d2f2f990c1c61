//! The schema: migrations appended in order, never edited once released.

use super::{Store, StoreError};

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
    // Delivery records keep everything `api_types::DeliveryRecord` holds.
    r#"
ALTER TABLE webhook_deliveries ADD COLUMN first_attempt_at TEXT;
"#,
    // Intents: datasets and snapshots an operation is about to create (design §5).
    r#"
CREATE TABLE intents (
    object      TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL
);
"#,
    // Physical mode: the standby snapshot each physical snapshot was cut from, kept for points
    // in time.
    r#"
CREATE TABLE standby_snapshots (
    snapshot_id   TEXT PRIMARY KEY,
    storage_name  TEXT NOT NULL UNIQUE,
    data_state_at TEXT NOT NULL,
    lsn           TEXT NOT NULL
);
"#,
    // Observation sessions (DBLab keeps them in memory only): each session's record as JSON
    // beside the keys it is found by; its artifacts are files under the state directory.
    r#"
CREATE TABLE observation_sessions (
    session_id INTEGER PRIMARY KEY,
    clone_id   TEXT NOT NULL,
    record     TEXT NOT NULL
);
CREATE INDEX observation_sessions_clone ON observation_sessions (clone_id);
"#,
    // Masking: whether a snapshot's data was masked (or descends from masked data).
    r#"
ALTER TABLE snapshots ADD COLUMN masked INTEGER NOT NULL DEFAULT 0;
"#,
    // Each clone's own CPU and memory limits, a row only for a clone that asked for some.
    r#"
CREATE TABLE clone_limits (
    clone_id TEXT PRIMARY KEY,
    cpu      REAL,
    memory   INTEGER
);
"#,
    // Scale to zero: when a clone was stopped (NULL while its server runs).
    r#"
ALTER TABLE clones ADD COLUMN stopped_at TEXT;
"#,
    // Each clone's own disk quota, beside its CPU and memory limits.
    r#"
ALTER TABLE clone_limits ADD COLUMN disk INTEGER;
"#,
    // TLS: whether the clone's user logs in with a client certificate.
    r#"
ALTER TABLE clones ADD COLUMN cert_login INTEGER NOT NULL DEFAULT 0;
"#,
    // A reset that claims a warm clone: the port its server keeps (NULL: the clone's own).
    r#"
ALTER TABLE clones ADD COLUMN server_port INTEGER;
"#,
];

impl Store {
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
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
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn a_new_database_is_at_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scion.db");
        drop(Store::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        let version: i64 =
            connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        // Opening again migrates nothing and keeps the data.
        drop(connection);
        let store = Store::open(&path).unwrap();
        store.set_meta("k", "v").unwrap();
        drop(store);
        assert_eq!(Store::open(&path).unwrap().meta("k").unwrap().as_deref(), Some("v"));
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
