//! The `standby_snapshots` table: physical mode's kept snapshots of the live standby, one per
//! physical snapshot, with the moment its promotion reached (where a point in time starts).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, format_time, parse_time};

/// A crash-consistent snapshot of the sync instance kept beside the promoted snapshot that was
/// cut from it: still a standby, so it can replay more WAL to any later point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbySnapshot {
    /// The promoted snapshot's ID; the standby snapshot goes when that one does.
    pub snapshot_id: String,
    /// The standby snapshot's storage name (`<golden>@promote_<ts>`).
    pub storage_name: String,
    /// The last commit its promotion replayed: any later moment is reachable from it.
    pub data_state_at: DateTime<Utc>,
    /// The WAL location its promotion reached, as PostgreSQL writes it (`0/3000148`).
    pub lsn: String,
}

impl Store {
    /// Records a kept standby snapshot; recording one again replaces it.
    pub fn insert_standby_snapshot(&self, kept: &StandbySnapshot) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR REPLACE INTO standby_snapshots (snapshot_id, storage_name, data_state_at, lsn)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                kept.snapshot_id,
                kept.storage_name,
                format_time(kept.data_state_at),
                kept.lsn
            ],
        )?;
        Ok(())
    }

    /// Forgets the standby snapshot kept for `snapshot_id`; forgetting none is not an error.
    pub fn delete_standby_snapshot(&self, snapshot_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM standby_snapshots WHERE snapshot_id = ?1", [snapshot_id])?;
        Ok(())
    }

    /// Every kept standby snapshot, oldest reachable moment first.
    pub fn standby_snapshots(&self) -> Result<Vec<StandbySnapshot>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT snapshot_id, storage_name, data_state_at, lsn FROM standby_snapshots
             ORDER BY data_state_at, snapshot_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut kept = Vec::new();
        for row in rows {
            let (snapshot_id, storage_name, data_state_at, lsn) = row?;
            kept.push(StandbySnapshot {
                snapshot_id,
                storage_name,
                data_state_at: parse_time(&data_state_at)?,
                lsn,
            });
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_snapshots_are_recorded_listed_oldest_first_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scion.db")).unwrap();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let newer = StandbySnapshot {
            snapshot_id: "s2".to_owned(),
            storage_name: "data_1@promote_2".to_owned(),
            data_state_at: at("2026-12-02T11:00:00Z"),
            lsn: "0/5000060".to_owned(),
        };
        let older = StandbySnapshot {
            snapshot_id: "s1".to_owned(),
            storage_name: "data_1@promote_1".to_owned(),
            data_state_at: at("2026-12-02T10:00:00Z"),
            lsn: "0/3000148".to_owned(),
        };
        store.insert_standby_snapshot(&newer).unwrap();
        store.insert_standby_snapshot(&older).unwrap();
        assert_eq!(store.standby_snapshots().unwrap(), vec![older.clone(), newer.clone()]);
        store.delete_standby_snapshot("s1").unwrap();
        store.delete_standby_snapshot("s1").unwrap();
        assert_eq!(store.standby_snapshots().unwrap(), vec![newer]);
    }
}
