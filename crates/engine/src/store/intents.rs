//! The `intents` table: datasets and snapshots an operation is about to create, recorded before
//! they exist, so that the next start can name (and remove) what a crash left half made.

use rusqlite::params;

use super::{Store, StoreError, format_time};

impl Store {
    /// Records that `objects` are about to be created. Recording one again is not an error.
    pub fn record_intents(&self, objects: &[String]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let now = format_time(chrono::Utc::now());
        for object in objects {
            transaction.execute(
                "INSERT OR REPLACE INTO intents (object, recorded_at) VALUES (?1, ?2)",
                params![object, now],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Clears the intents of `objects`; clearing one that is not there is not an error.
    pub fn clear_intents(&self, objects: &[String]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        for object in objects {
            transaction.execute("DELETE FROM intents WHERE object = ?1", [object])?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Every recorded intent, by name.
    pub fn intents(&self) -> Result<Vec<String>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare("SELECT object FROM intents ORDER BY object")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        let mut intents = Vec::new();
        for row in rows {
            intents.push(row?);
        }
        Ok(intents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_are_recorded_listed_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("scion.db")).unwrap();
        let objects = vec!["data_1".to_owned(), "data_1@snapshot_1".to_owned()];
        store.record_intents(&objects).unwrap();
        store.record_intents(&objects[..1]).unwrap();
        assert_eq!(store.intents().unwrap(), objects);
        store.clear_intents(&objects[..1]).unwrap();
        assert_eq!(store.intents().unwrap(), objects[1..].to_vec());
        store.clear_intents(&objects).unwrap();
        assert!(store.intents().unwrap().is_empty());
    }
}
