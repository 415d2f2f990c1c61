//! The `webhook_deliveries` table: the newest records of delivering webhook events.

use api_types::{DeliveryRecord, Outcome, WebhookEvent};
use rusqlite::{Row, params};

use super::{RowResult, Store, StoreError, format_time, parse_optional_time, parse_time};

/// How many delivery records the store keeps; older ones are pruned as new ones arrive.
const MAX_DELIVERIES: i64 = 10_000;

impl Store {
    /// Records a webhook delivery, keeping the newest `MAX_DELIVERIES` (10,000).
    pub fn insert_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.insert_delivery_keeping(record, MAX_DELIVERIES)
    }

    fn insert_delivery_keeping(
        &self,
        record: &DeliveryRecord,
        keep: i64,
    ) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT INTO webhook_deliveries (event, entity_id, hook_url, attempts, outcome,
                last_status, last_error, emitted_at, first_attempt_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                record.event.as_str(),
                record.entity_id,
                record.hook_url,
                record.attempts,
                record.outcome.as_str(),
                record.last_status,
                record.last_error,
                format_time(record.emitted_at),
                record.first_attempt_at.map(format_time),
                format_time(record.finished_at),
            ],
        )?;
        transaction.execute(
            "DELETE FROM webhook_deliveries WHERE id <= (SELECT max(id) FROM webhook_deliveries) - ?1",
            [keep],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// The newest `limit` delivery records, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT event, entity_id, hook_url, attempts, outcome, last_status, last_error,
                emitted_at, first_attempt_at, finished_at
             FROM webhook_deliveries ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], delivery_from_row)?;
        let mut deliveries = Vec::new();
        for row in rows {
            deliveries.push(row??);
        }
        Ok(deliveries)
    }
}

fn delivery_from_row(row: &Row<'_>) -> RowResult<DeliveryRecord> {
    let event: String = row.get("event")?;
    let outcome: String = row.get("outcome")?;
    let emitted_at: String = row.get("emitted_at")?;
    let first_attempt_at: Option<String> = row.get("first_attempt_at")?;
    let finished_at: String = row.get("finished_at")?;
    let record = (|| {
        Ok(DeliveryRecord {
            event: event
                .parse::<WebhookEvent>()
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            entity_id: row.get("entity_id")?,
            hook_url: row.get("hook_url")?,
            attempts: row.get("attempts")?,
            outcome: outcome
                .parse::<Outcome>()
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            last_status: row.get("last_status")?,
            last_error: row.get("last_error")?,
            emitted_at: parse_time(&emitted_at)?,
            first_attempt_at: parse_optional_time(first_attempt_at.as_deref())?,
            finished_at: parse_time(&finished_at)?,
        })
    })();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use api_types::DropReason;
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::tests::open;

    fn record(attempts: u32, outcome: Outcome) -> DeliveryRecord {
        DeliveryRecord {
            event: WebhookEvent::CloneCreate,
            entity_id: "c1".to_owned(),
            hook_url: "http://127.0.0.1:9/hook".to_owned(),
            attempts,
            outcome,
            last_status: None,
            last_error: Some("connection refused".to_owned()),
            emitted_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
            first_attempt_at: Some(Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()),
            finished_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 1).unwrap(),
        }
    }

    #[test]
    fn deliveries_are_recorded_newest_first() {
        let (_dir, store) = open();
        for attempts in 1..=3 {
            store.insert_delivery(&record(attempts, Outcome::Failed)).unwrap();
        }
        let rows = store.deliveries(2).unwrap();
        assert_eq!(rows.iter().map(|row| row.attempts).collect::<Vec<_>>(), [3, 2]);
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let (_dir, store) = open();
        let mut dropped = record(0, Outcome::Dropped(DropReason::QueueFull));
        dropped.event = WebhookEvent::BranchDelete;
        dropped.first_attempt_at = None;
        dropped.last_error = None;
        let mut delivered = record(2, Outcome::Delivered);
        delivered.last_status = Some(204);
        store.insert_delivery(&dropped).unwrap();
        store.insert_delivery(&delivered).unwrap();
        assert_eq!(store.deliveries(10).unwrap(), vec![delivered, dropped]);
    }

    #[test]
    fn only_the_newest_records_are_kept() {
        let (_dir, store) = open();
        for attempts in 1..=5 {
            store.insert_delivery_keeping(&record(attempts, Outcome::Failed), 3).unwrap();
        }
        let rows = store.deliveries(10).unwrap();
        assert_eq!(rows.iter().map(|row| row.attempts).collect::<Vec<_>>(), [5, 4, 3]);
    }
}
