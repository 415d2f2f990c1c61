//! The `warm_clones` table: clones of the warm pool, recorded before their datasets exist and
//! claimed by a create (or a reset) in the same transaction that records the user's clone.

use rusqlite::{Row, params};

use super::clones::{INSERT_CLONE, UPDATE_CLONE, execute_clone};
use super::{RowResult, Store, StoreError, conflict_on_unique, format_time, parse_time};
use crate::model::{CloneRecord, WarmRecord};

impl Store {
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
        self.hand_over_warm(warm_id, INSERT_CLONE, clone)
    }

    /// Hands a clone of the warm pool over to an existing clone being reset, in one
    /// transaction: the warm record goes and `clone` (on the warm clone's dataset, its server
    /// on the warm clone's port) replaces the clone's record, or neither happens.
    pub fn claim_warm_for_reset(
        &self,
        warm_id: &str,
        clone: &CloneRecord,
    ) -> Result<(), StoreError> {
        self.hand_over_warm(warm_id, UPDATE_CLONE, clone)
    }

    fn hand_over_warm(
        &self,
        warm_id: &str,
        sql: &str,
        clone: &CloneRecord,
    ) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM warm_clones WHERE id = ?1", [warm_id])?;
        let changed = execute_clone(&transaction, sql, clone);
        let changed =
            conflict_on_unique(changed, || format!("clone {} (port {})", clone.id, clone.port))?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("clone {}", clone.id)));
        }
        transaction.commit()?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::tests::{clone_record, open};

    fn warm_record(id: &str, port: u16) -> WarmRecord {
        WarmRecord {
            id: id.to_owned(),
            snapshot_id: "pool/data@s1".to_owned(),
            branch: "main".to_owned(),
            dataset: format!("branch/main/{id}/r0"),
            port,
            created_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn warm_clones_round_trip_and_ports_are_unique() {
        let (_dir, store) = open();
        store.insert_warm(&warm_record("w1", 6000)).unwrap();
        store.insert_warm(&warm_record("w2", 6001)).unwrap();
        let same_port = store.insert_warm(&warm_record("w3", 6000)).unwrap_err();
        assert!(matches!(same_port, StoreError::Conflict(_)), "{same_port:?}");
        assert_eq!(
            store.warm_clones().unwrap(),
            vec![warm_record("w1", 6000), warm_record("w2", 6001)]
        );
        store.delete_warm("w1").unwrap();
        store.delete_warm("w1").unwrap();
        assert_eq!(store.warm_clones().unwrap(), vec![warm_record("w2", 6001)]);
    }

    #[test]
    fn claiming_a_warm_clone_moves_it_to_the_clones_in_one_step() {
        let (_dir, store) = open();
        store.insert_warm(&warm_record("w1", 6000)).unwrap();
        let mut clone = clone_record("c1", 6000);
        clone.dataset = "branch/main/w1/r0".to_owned();
        store.claim_warm("w1", &clone).unwrap();
        assert!(store.warm_clones().unwrap().is_empty());
        assert_eq!(store.clones().unwrap(), vec![clone]);
    }

    #[test]
    fn a_reset_claims_a_warm_clone_in_one_step_or_not_at_all() {
        let (_dir, store) = open();
        let mut clone = clone_record("c1", 6000);
        store.insert_clone(&clone).unwrap();
        store.insert_warm(&warm_record("w1", 6001)).unwrap();
        // A clone that is not there claims nothing: the warm clone stays.
        let ghost = clone_record("ghost", 6002);
        let error = store.claim_warm_for_reset("w1", &ghost).unwrap_err();
        assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
        assert_eq!(store.warm_clones().unwrap(), vec![warm_record("w1", 6001)]);

        clone.dataset = "branch/main/w1/r0".to_owned();
        clone.server_port = Some(6001);
        store.claim_warm_for_reset("w1", &clone).unwrap();
        assert!(store.warm_clones().unwrap().is_empty());
        assert_eq!(store.clones().unwrap(), vec![clone]);
    }

    #[test]
    fn a_failed_claim_keeps_the_warm_clone() {
        let (_dir, store) = open();
        store.insert_clone(&clone_record("c1", 6001)).unwrap();
        store.insert_warm(&warm_record("w1", 6000)).unwrap();
        // The clone ID is taken, so the insert fails and the delete is rolled back.
        let error = store.claim_warm("w1", &clone_record("c1", 6000)).unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
        assert_eq!(store.warm_clones().unwrap(), vec![warm_record("w1", 6000)]);
    }
}
