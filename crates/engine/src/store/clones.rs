//! The `clones` table: the clones the engine promised, with their ports and credentials.

use rusqlite::{Connection, Row, params};

use super::{
    RowResult, Store, StoreError, conflict_on_unique, format_time, parse_optional_time, parse_time,
};
use crate::model::{CloneRecord, CloneState};

pub(super) const INSERT_CLONE: &str =
    "INSERT INTO clones (id, snapshot_id, branch, revision, pool, dataset, port, state,
    state_message, username, password_verifier, restricted, db_name, protected,
    protected_till, protection_warning_sent, created_at, cloning_time_seconds,
    extra_conf, stopped_at, cert_login, server_port)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19, ?20, ?21, ?22)";

pub(super) const UPDATE_CLONE: &str =
    "UPDATE clones SET snapshot_id = ?2, branch = ?3, revision = ?4, pool = ?5,
    dataset = ?6, port = ?7, state = ?8, state_message = ?9, username = ?10,
    password_verifier = ?11, restricted = ?12, db_name = ?13, protected = ?14,
    protected_till = ?15, protection_warning_sent = ?16, created_at = ?17,
    cloning_time_seconds = ?18, extra_conf = ?19, stopped_at = ?20, cert_login = ?21, server_port = ?22
 WHERE id = ?1";

impl Store {
    /// Records a new clone; fails with [`StoreError::Conflict`] when its ID, port or dataset is
    /// taken.
    pub fn insert_clone(&self, clone: &CloneRecord) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let result = execute_clone(&transaction, INSERT_CLONE, clone);
        conflict_on_unique(result, || format!("clone {} (port {})", clone.id, clone.port))?;
        transaction.commit()?;
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

    /// Forgets a clone. Forgetting one that is not there is not an error.
    pub fn delete_clone(&self, id: &str) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM clones WHERE id = ?1", [id])?;
        super::limits::delete_limits(&transaction, id)?;
        transaction.commit()?;
        Ok(())
    }

    /// Every clone, in creation order.
    pub fn clones(&self) -> Result<Vec<CloneRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, snapshot_id, branch, revision, pool, dataset, port, state, state_message,
                username, password_verifier, restricted, db_name, protected, protected_till,
                protection_warning_sent, created_at, cloning_time_seconds, extra_conf, stopped_at,
                cert_login,
                server_port
             FROM clones ORDER BY created_at, id",
        )?;
        let rows = statement.query_map([], clone_from_row)?;
        let mut clones = Vec::new();
        for row in rows {
            clones.push(row??);
        }
        let mut limits = super::limits::all_limits(&connection)?;
        for clone in &mut clones {
            clone.limits = limits.remove(&clone.id).unwrap_or_default();
        }
        Ok(clones)
    }
}

/// Runs `sql` with a clone's fields as `?1` to `?22`, in the columns' order, and writes the
/// clone's limits (in the caller's transaction, where it holds one).
pub(super) fn execute_clone(
    connection: &Connection,
    sql: &str,
    clone: &CloneRecord,
) -> rusqlite::Result<usize> {
    let changed = execute_clone_row(connection, sql, clone)?;
    if changed > 0 {
        super::limits::write_limits(connection, &clone.id, &clone.limits)?;
    }
    Ok(changed)
}

fn execute_clone_row(
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
            clone.stopped_at.map(format_time),
            clone.cert_login,
            clone.server_port,
        ],
    )
}

fn extra_conf_json(clone: &CloneRecord) -> String {
    serde_json::to_string(&clone.extra_conf).expect("a map of strings always serializes")
}

fn clone_from_row(row: &Row<'_>) -> RowResult<CloneRecord> {
    let state: String = row.get("state")?;
    let protected_till: Option<String> = row.get("protected_till")?;
    let created_at: String = row.get("created_at")?;
    let extra_conf: String = row.get("extra_conf")?;
    let stopped_at: Option<String> = row.get("stopped_at")?;
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
            limits: Default::default(),
            stopped_at: parse_optional_time(stopped_at.as_deref())?,
            cert_login: row.get("cert_login")?,
            server_port: row.get("server_port")?,
        })
    })();
    Ok(record)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::tests::{clone_record, open};

    #[test]
    fn clones_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scion.db");
        let mut clone = clone_record("c1", 6000);
        clone.limits = crate::quota::CloneLimits {
            cpu: Some(1.5),
            memory: Some(256 << 20),
            disk: Some(1 << 30),
        };
        {
            let store = Store::open(&path).unwrap();
            store.insert_clone(&clone).unwrap();
            clone.state = CloneState::Ok;
            clone.cloning_time_seconds = Some(0.042);
            clone.stopped_at = Some(clone.created_at);
            clone.cert_login = true;
            clone.server_port = Some(6001);
            store.update_clone(&clone).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.clones().unwrap(), vec![clone.clone()]);
        // Lifting the limits removes their row; forgetting the clone removes everything.
        clone.limits = crate::quota::CloneLimits::default();
        store.update_clone(&clone).unwrap();
        assert_eq!(store.clones().unwrap(), vec![clone]);
        store.delete_clone("c1").unwrap();
        assert!(store.clones().unwrap().is_empty());
        let rows: i64 = store
            .lock()
            .query_row("SELECT count(*) FROM clone_limits", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0);
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
}
