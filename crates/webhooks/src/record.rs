//! Delivery records: one per event and hook (the type is `api_types::DeliveryRecord`, shared
//! with the engine's store), and the sink that receives them.

use std::sync::{Mutex, PoisonError};

pub use api_types::{DeliveryRecord, DropReason, Outcome};
use tokio::sync::Notify;

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
