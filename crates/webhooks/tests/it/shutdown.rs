//! Graceful shutdown: flush with retries before the deadline, abandon (and record) what is left after it.

use std::time::Duration;

use api_types::WebhookEvent;
use webhooks::{DropReason, Outcome, ShutdownReport};

use crate::receiver::{Behaviour, Receiver};
use crate::{clone_payload, fast_config, hook, start, within};

#[tokio::test]
async fn shutdown_flushes_queued_events_including_retries() {
    let receiver = Receiver::start(Behaviour::Script(&[503, 503])).await;
    let config = fast_config(vec![hook(&receiver.url, "s", &[WebhookEvent::CloneCreate])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneCreate, "c1"));
    dispatcher.emit(&clone_payload(WebhookEvent::CloneCreate, "c2"));

    let report = within(dispatcher.shutdown(crate::GUARD)).await;
    assert_eq!(report, ShutdownReport { drained: true, abandoned: 0 });
    let records = sink.records();
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].outcome.clone(), records[0].attempts), (Outcome::Delivered, 3));
    assert_eq!((records[1].outcome.clone(), records[1].attempts), (Outcome::Delivered, 1));
}

#[tokio::test]
async fn shutdown_abandons_a_hanging_receiver_at_the_deadline_and_records_it() {
    let hanging = Receiver::start(Behaviour::Hang).await;
    let healthy = Receiver::start(Behaviour::Ok).await;
    let events = [WebhookEvent::CloneDelete];
    let config =
        fast_config(vec![hook(&hanging.url, "a", &events), hook(&healthy.url, "b", &events)]);
    let (dispatcher, sink) = start(&config);
    for id in ["c1", "c2", "c3"] {
        dispatcher.emit(&clone_payload(WebhookEvent::CloneDelete, id));
    }
    within(hanging.wait_for_requests(1)).await;

    let report = within(dispatcher.shutdown(Duration::from_millis(200))).await;
    assert!(!report.drained);
    assert_eq!(report.abandoned, 3, "one in flight and two queued on the hanging hook");

    let records = sink.records();
    let abandoned: Vec<_> =
        records.iter().filter(|record| record.hook_url == hanging.url).collect();
    assert_eq!(abandoned.len(), 3);
    assert!(
        abandoned.iter().all(|record| record.outcome == Outcome::Dropped(DropReason::ShuttingDown))
    );
    assert_eq!(
        abandoned.iter().map(|record| record.attempts).max(),
        Some(1),
        "the in-flight one was attempted"
    );
    let delivered = records.iter().filter(|record| record.hook_url == healthy.url).count();
    assert_eq!(delivered, 3, "the healthy hook was flushed");

    dispatcher.emit(&clone_payload(WebhookEvent::CloneDelete, "late"));
    let late: Vec<_> =
        sink.records().into_iter().filter(|record| record.entity_id == "late").collect();
    assert_eq!(late.len(), 2, "an event after shutdown is recorded as dropped for each hook");
    assert!(late.iter().all(|record| record.outcome == Outcome::Dropped(DropReason::ShuttingDown)));
    assert_eq!(dispatcher.metrics().get(WebhookEvent::CloneDelete).dropped, 5);

    let again = within(dispatcher.shutdown(Duration::from_millis(1))).await;
    assert!(again.drained, "a second shutdown has nothing left to wait for");
}

#[tokio::test]
async fn dropping_without_shutdown_records_queued_events_as_dropped() {
    let busy = Receiver::start(Behaviour::Gate).await;
    let config = fast_config(vec![hook(&busy.url, "s", &[WebhookEvent::CloneReset])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneReset, "c1"));
    dispatcher.emit(&clone_payload(WebhookEvent::CloneReset, "c2"));
    within(busy.wait_for_requests(1)).await;

    drop(dispatcher);
    within(sink.wait_for_count(2)).await;
    let records = sink.records();
    assert!(
        records.iter().all(|record| record.outcome == Outcome::Dropped(DropReason::ShuttingDown))
    );
    let ids: Vec<_> =
        records.iter().map(|record| (record.entity_id.as_str(), record.attempts)).collect();
    assert_eq!(ids, [("c1", 1), ("c2", 0)]);
}
