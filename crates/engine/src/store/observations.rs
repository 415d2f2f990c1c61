//! The `observation_sessions` table: every observation session of a clone that still exists,
//! running or stopped, so that sessions and their summaries survive an engine restart.
//!
//! A session's record is kept whole as JSON beside the keys it is looked up by: it is read and
//! written only as a whole, by the observation component.

use rusqlite::params;

use super::{Store, StoreError};
use crate::observation::ObservationRecord;

impl Store {
    /// Records a session, or replaces its record.
    pub(crate) fn upsert_observation(&self, record: &ObservationRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|error| StoreError::Corrupt(format!("observation session: {error}")))?;
        let session_id = i64::try_from(record.session_id)
            .map_err(|_| StoreError::Corrupt(format!("session ID {}", record.session_id)))?;
        self.lock().execute(
            "INSERT OR REPLACE INTO observation_sessions (session_id, clone_id, record)
             VALUES (?1, ?2, ?3)",
            params![session_id, record.clone_id, json],
        )?;
        Ok(())
    }

    /// Forgets every session of `clone_id`; forgetting none is not an error.
    pub(crate) fn delete_observations(&self, clone_id: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM observation_sessions WHERE clone_id = ?1", [clone_id])?;
        Ok(())
    }

    /// Every recorded session, oldest first.
    pub(crate) fn observations(&self) -> Result<Vec<ObservationRecord>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT record FROM observation_sessions ORDER BY session_id")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        let mut records = Vec::new();
        for row in rows {
            let json = row?;
            records.push(serde_json::from_str(&json).map_err(|error| {
                StoreError::Corrupt(format!("observation session {json:?}: {error}"))
            })?);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::ObservationRecord;

    #[test]
    fn sessions_are_recorded_replaced_listed_and_forgotten_by_clone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scion.db")).unwrap();
        let mut first = ObservationRecord::new(1, "c1", "postgres", Default::default());
        let second = ObservationRecord::new(2, "c2", "app", Default::default());
        store.upsert_observation(&first).unwrap();
        store.upsert_observation(&second).unwrap();
        first.overall_error = true;
        store.upsert_observation(&first).unwrap();
        assert_eq!(store.observations().unwrap(), vec![first, second.clone()]);
        store.delete_observations("c1").unwrap();
        store.delete_observations("c1").unwrap();
        assert_eq!(store.observations().unwrap(), vec![second]);
    }
}
