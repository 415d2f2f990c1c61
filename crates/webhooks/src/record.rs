//! Delivery records: one per event and hook, and the sink that receives them.

use std::sync::{Mutex, PoisonError};

use api_types::WebhookEvent;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// How an attempt series ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered a final error, or every attempt failed.
    Failed,
    /// The event was never delivered because Scion gave up on it without exhausting attempts.
    Dropped(DropReason),
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The hook's queue was full when the event was emitted.
    QueueFull,
    /// The dispatcher was shutting down (the event was emitted after shutdown began, or was still queued or in
    /// flight at the shutdown deadline).
    ShuttingDown,
}

impl Outcome {
    /// A short name for logs, metrics labels and database columns.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped(DropReason::QueueFull) => "dropped_queue_full",
            Self::Dropped(DropReason::ShuttingDown) => "dropped_shutdown",
        }
    }
}

/// The record of delivering one event to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The event type.
    pub event: WebhookEvent,
    /// The payload's `entity_id` (clone ID, snapshot ID or branch name).
    pub entity_id: String,
    /// The hook's URL.
    pub hook_url: String,
    /// Attempts made (0 when dropped before the first).
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status of the last answer, if any.
    pub last_status: Option<u16>,
    /// Error of the last attempt (timeout, connection error, or the non-2xx status), if any.
    pub last_error: Option<String>,
    /// When `emit` was called.
    pub emitted_at: DateTime<Utc>,
    /// When the first attempt started.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When the series ended.
    pub finished_at: DateTime<Utc>,
}

/// Where delivery records go; the engine persists them, tests keep them in memory.
///
/// `record` is called from [`Dispatcher::emit`](crate::Dispatcher::emit) (for events dropped on a full queue)
/// and from the delivery workers, so it must return quickly and never block on I/O for long: a database-backed
/// sink should hand records to its own writer.
pub trait DeliverySink: Send + Sync + 'static {
    /// Takes one finished record.
    fn record(&self, record: DeliveryRecord);
}

/// A sink that keeps records in memory, in arrival order, and lets a test wait for them.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<DeliveryRecord>>,
    changed: Notify,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the records so far, in arrival order.
    pub fn records(&self) -> Vec<DeliveryRecord> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until `done` holds for the records (checked now and after every new record).
    pub async fn wait_until(&self, done: impl Fn(&[DeliveryRecord]) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.records.lock().unwrap_or_else(PoisonError::into_inner)) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until at least `count` records have arrived.
    pub async fn wait_for_count(&self, count: usize) {
        self.wait_until(|records| records.len() >= count).await;
    }
}

impl DeliverySink for MemorySink {
    fn record(&self, record: DeliveryRecord) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).push(record);
        self.changed.notify_waiters();
    }
}
