//! The `snapshots` and `branches` tables: the history of the pool, changed one
//! [`CatalogChange`] (one transaction) at a time.

use rusqlite::{Connection, Row, params};

use super::{RowResult, Store, StoreError, format_time, parse_optional_time, parse_time};
use crate::model::{BranchRecord, SnapshotRecord};

impl Store {
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
                physical_size, logical_size, protected, protected_till, delete_at, masked
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
            data_state_at, physical_size, logical_size, protected, protected_till, delete_at, masked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (id) DO UPDATE SET pool = excluded.pool,
            storage_name = excluded.storage_name, branch = excluded.branch,
            parent_id = excluded.parent_id, message = excluded.message,
            created_at = excluded.created_at, data_state_at = excluded.data_state_at,
            physical_size = excluded.physical_size, logical_size = excluded.logical_size,
            protected = excluded.protected, protected_till = excluded.protected_till,
            delete_at = excluded.delete_at, masked = excluded.masked",
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
            snapshot.masked,
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
            masked: row.get("masked")?,
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
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::tests::{open, snapshot_record};

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
}
