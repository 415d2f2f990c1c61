//! Delivering to a real receiver: headers, signature, payload, records and trigger filtering.

use api_types::{WebhookEvent, WebhookPayload};
use chrono::Utc;
use webhooks::{
    DEFAULT_TOLERANCE, EventCounts, Outcome, SIGNATURE_HEADER, TOKEN_HEADER, verify_signature,
};

use crate::receiver::{Behaviour, Receiver};
use crate::{clone_payload, fast_config, hook, start, within};

#[tokio::test]
async fn a_receiver_verifies_token_signature_and_payload() {
    let receiver = Receiver::start(Behaviour::Ok).await;
    let secret = "s3cr3t-token";
    let config = fast_config(vec![hook(&receiver.url, secret, &[WebhookEvent::CloneCreate])]);
    let (dispatcher, sink) = start(&config);
    let payload = WebhookPayload {
        owner_user: "alice@example.com".to_owned(),
        ..clone_payload(WebhookEvent::CloneCreate, "c1")
    };

    let before = Utc::now();
    dispatcher.emit(&payload);
    within(sink.wait_for_count(1)).await;

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header(TOKEN_HEADER), Some(secret));
    let signature = request.header(SIGNATURE_HEADER).expect("signature header");
    assert_eq!(
        verify_signature(secret, signature, &request.body, Utc::now(), DEFAULT_TOLERANCE),
        Ok(())
    );
    assert!(
        verify_signature("wrong", signature, &request.body, Utc::now(), DEFAULT_TOLERANCE).is_err()
    );
    assert_eq!(
        request.json(),
        serde_json::json!({
            "event_type": "clone_create",
            "entity_id": "c1",
            "host": "127.0.0.1",
            "port": 6000,
            "username": "alice",
            "dbname": "postgres",
            "owner_user": "alice@example.com",
            "container_name": "c1"
        })
    );

    let records = sink.records();
    let record = &records[0];
    assert_eq!(record.outcome, Outcome::Delivered);
    assert_eq!((record.event, record.entity_id.as_str()), (WebhookEvent::CloneCreate, "c1"));
    assert_eq!(record.hook_url, receiver.url);
    assert_eq!(
        (record.attempts, record.last_status, record.last_error.as_deref()),
        (1, Some(200), None)
    );
    assert!(record.emitted_at >= before);
    assert!(record.first_attempt_at.is_some_and(|first| first >= record.emitted_at));
    assert!(record.finished_at >= record.emitted_at);
    assert_eq!(
        dispatcher.metrics().get(WebhookEvent::CloneCreate),
        EventCounts { delivered: 1, failed: 0, retried: 0, dropped: 0 }
    );
}

#[tokio::test]
async fn without_a_secret_there_is_no_token_and_no_signature() {
    let receiver = Receiver::start(Behaviour::Ok).await;
    let config = fast_config(vec![hook(&receiver.url, "", &[WebhookEvent::SnapshotCreate])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&WebhookPayload::basic(WebhookEvent::SnapshotCreate, "pool@snap1"));
    within(sink.wait_for_count(1)).await;
    let request = &receiver.received()[0];
    assert_eq!(request.header(TOKEN_HEADER), None);
    assert_eq!(request.header(SIGNATURE_HEADER), None);
    assert_eq!(
        request.json(),
        serde_json::json!({"event_type": "snapshot_create", "entity_id": "pool@snap1"})
    );
}

#[tokio::test]
async fn each_hook_gets_only_its_triggers() {
    let clones = Receiver::start(Behaviour::Ok).await;
    let branches = Receiver::start(Behaviour::Ok).await;
    let silent = Receiver::start(Behaviour::Ok).await;
    let config = fast_config(vec![
        hook(&clones.url, "a", &[WebhookEvent::CloneCreate, WebhookEvent::CloneDelete]),
        hook(&branches.url, "b", &[WebhookEvent::BranchCreate, WebhookEvent::CloneDelete]),
        hook(&silent.url, "c", &[]),
    ]);
    let (dispatcher, sink) = start(&config);

    dispatcher.emit(&clone_payload(WebhookEvent::CloneCreate, "c1"));
    dispatcher.emit(&WebhookPayload::basic(WebhookEvent::BranchCreate, "dev"));
    dispatcher.emit(&clone_payload(WebhookEvent::CloneDelete, "c1"));
    dispatcher.emit(&WebhookPayload::basic(WebhookEvent::SnapshotDelete, "pool@s"));
    let report = within(dispatcher.shutdown(crate::GUARD)).await;
    assert!(report.drained);

    let events = |receiver: &Receiver| -> Vec<String> {
        receiver
            .received()
            .iter()
            .map(|request| request.json()["event_type"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(events(&clones), ["clone_create", "clone_delete"], "in emit order");
    assert_eq!(events(&branches), ["branch_create", "clone_delete"]);
    assert!(silent.received().is_empty(), "an empty trigger list receives nothing, as in DBLab");
    let records = sink.records();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|record| record.outcome == Outcome::Delivered));
    assert!(records.iter().all(|record| record.event != WebhookEvent::SnapshotDelete));
    assert_eq!(dispatcher.metrics().get(WebhookEvent::CloneDelete).delivered, 2);
    assert_eq!(dispatcher.metrics().total().delivered, 4);
}
