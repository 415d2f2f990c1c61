//! A hanging receiver: it never delays another hook, its attempts time out and are retried, and its queue
//! overflows into dropped records while `emit` keeps returning at once.

use std::time::Duration;

use api_types::WebhookEvent;
use webhooks::{DropReason, Outcome, WebhooksConfig};

use crate::receiver::{Behaviour, Receiver};
use crate::{clone_payload, fast_config, hook, start, within};

#[tokio::test]
async fn a_busy_hook_does_not_delay_a_healthy_one() {
    let busy = Receiver::start(Behaviour::Gate).await;
    let healthy = Receiver::start(Behaviour::Ok).await;
    let events = [WebhookEvent::CloneCreate];
    let config = fast_config(vec![hook(&busy.url, "a", &events), hook(&healthy.url, "b", &events)]);
    let (dispatcher, sink) = start(&config);

    for id in ["c1", "c2", "c3"] {
        dispatcher.emit(&clone_payload(WebhookEvent::CloneCreate, id));
    }
    within(sink.wait_for_count(3)).await;

    // The busy receiver is still holding its first request, so nothing of its queue can have finished:
    // the healthy hook got all three events while the busy one was stuck.
    let records = sink.records();
    assert_eq!(records.len(), 3);
    assert!(
        records
            .iter()
            .all(|record| record.hook_url == healthy.url && record.outcome == Outcome::Delivered)
    );
    let ids: Vec<_> = records.iter().map(|record| record.entity_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    assert_eq!(busy.received().len(), 1, "the busy hook's worker is still on its first event");

    busy.release(3);
    within(sink.wait_for_count(6)).await;
    let busy_ids: Vec<_> =
        sink.records()[3..].iter().map(|record| record.entity_id.clone()).collect();
    assert_eq!(busy_ids, ["c1", "c2", "c3"], "the busy hook then catches up in order");
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let hanging = Receiver::start(Behaviour::Hang).await;
    let config = WebhooksConfig {
        timeout: Duration::from_millis(300),
        ..fast_config(vec![hook(&hanging.url, "s", &[WebhookEvent::CloneProtectionExpired])])
    };
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneProtectionExpired, "c1"));
    within(sink.wait_for_count(1)).await;

    let record = &sink.records()[0];
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!((record.attempts, record.last_status), (3, None));
    let error = record.last_error.as_deref().expect("error recorded");
    assert!(error.starts_with("timed out"), "{error}");
    assert_eq!(hanging.received().len(), 3, "every attempt reached the receiver");
    let counts = dispatcher.metrics().get(WebhookEvent::CloneProtectionExpired);
    assert_eq!((counts.failed, counts.retried), (1, 2));
}

#[tokio::test]
async fn a_full_queue_drops_events_and_emit_never_blocks() {
    let busy = Receiver::start(Behaviour::Gate).await;
    let config = WebhooksConfig {
        queue_capacity: 2,
        ..fast_config(vec![hook(&busy.url, "s", &[WebhookEvent::SnapshotCreate])])
    };
    let (dispatcher, sink) = start(&config);
    let snapshot = |n: usize| {
        api_types::WebhookPayload::basic(WebhookEvent::SnapshotCreate, format!("pool@s{n}"))
    };

    dispatcher.emit(&snapshot(0));
    within(busy.wait_for_requests(1)).await;
    // The worker is stuck on s0: two events fit in the queue, the other eight are dropped on the spot.
    for n in 1..=10 {
        dispatcher.emit(&snapshot(n));
    }
    let dropped = sink.records();
    assert_eq!(dropped.len(), 8);
    for (record, n) in dropped.iter().zip(3..) {
        assert_eq!(record.outcome, Outcome::Dropped(DropReason::QueueFull));
        assert_eq!((record.entity_id.clone(), record.attempts), (format!("pool@s{n}"), 0));
        assert_eq!(record.first_attempt_at, None);
    }
    assert_eq!(dispatcher.metrics().get(WebhookEvent::SnapshotCreate).dropped, 8);

    busy.release(3);
    let report = within(dispatcher.shutdown(crate::GUARD)).await;
    assert!(report.drained);
    assert_eq!(report.abandoned, 0);
    let delivered: Vec<_> = sink.records()[8..]
        .iter()
        .map(|record| (record.entity_id.clone(), record.outcome.clone()))
        .collect();
    assert_eq!(delivered, [0, 1, 2].map(|n| (format!("pool@s{n}"), Outcome::Delivered)),);
}
