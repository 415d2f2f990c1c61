//! Delivery counters per event type, readable as a snapshot for the Prometheus exporter.

use std::sync::atomic::{AtomicU64, Ordering};

use api_types::WebhookEvent;

/// Counters of one event type.
#[derive(Debug, Default)]
pub(crate) struct EventCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

/// What a counter is incremented for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Delivered,
    Failed,
    Retried,
    Dropped,
}

/// Counters for every event type.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    per_event: [EventCounters; WebhookEvent::ALL.len()],
}

impl Counters {
    pub(crate) fn add(&self, event: WebhookEvent, count: Count) {
        let counters = &self.per_event[event.index()];
        let counter = match count {
            Count::Delivered => &counters.delivered,
            Count::Failed => &counters.failed,
            Count::Retried => &counters.retried,
            Count::Dropped => &counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let per_event = WebhookEvent::ALL.map(|event| {
            let counters = &self.per_event[event.index()];
            let counts = EventCounts {
                delivered: counters.delivered.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                retried: counters.retried.load(Ordering::Relaxed),
                dropped: counters.dropped.load(Ordering::Relaxed),
            };
            (event, counts)
        });
        MetricsSnapshot { per_event }
    }
}

/// Counts for one event type (or a total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    /// Deliveries that got a 2xx answer.
    pub delivered: u64,
    /// Deliveries that ended without success (final error answer or attempts exhausted).
    pub failed: u64,
    /// Retries made (attempts after the first).
    pub retried: u64,
    /// Deliveries dropped (queue full or shutdown).
    pub dropped: u64,
}

/// A point-in-time copy of the delivery counters, one entry per event type in [`WebhookEvent::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Counts per event type.
    pub per_event: [(WebhookEvent, EventCounts); WebhookEvent::ALL.len()],
}

impl MetricsSnapshot {
    /// Counts for one event type.
    pub fn get(&self, event: WebhookEvent) -> EventCounts {
        self.per_event[event.index()].1
    }

    /// Counts summed over event types.
    pub fn total(&self) -> EventCounts {
        self.per_event.iter().fold(EventCounts::default(), |sum, (_, counts)| EventCounts {
            delivered: sum.delivered + counts.delivered,
            failed: sum.failed + counts.failed,
            retried: sum.retried + counts.retried,
            dropped: sum.dropped + counts.dropped,
        })
    }
}
