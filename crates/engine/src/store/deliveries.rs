//! The `webhook_deliveries` table: the newest records of delivering webhook events.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, format_time, parse_time};

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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::store::tests::open;

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
}
