//! Retries: 5xx and 429 are retried, other 4xx are final, a dead port fails after the configured attempts.

use api_types::WebhookEvent;
use tokio::net::TcpListener;
use webhooks::{EventCounts, Outcome};

use crate::receiver::{Behaviour, Receiver};
use crate::{clone_payload, fast_config, hook, start, within};

#[tokio::test]
async fn a_500_then_200_is_delivered_on_the_second_attempt() {
    let receiver = Receiver::start(Behaviour::Script(&[500])).await;
    let config = fast_config(vec![hook(&receiver.url, "s", &[WebhookEvent::CloneReset])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneReset, "c1"));
    within(sink.wait_for_count(1)).await;

    let record = &sink.records()[0];
    assert_eq!(record.outcome, Outcome::Delivered);
    assert_eq!((record.attempts, record.last_status), (2, Some(200)));
    let bodies: Vec<_> = receiver.received().into_iter().map(|request| request.body).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1], "a retry sends the same body");
    assert_eq!(
        dispatcher.metrics().get(WebhookEvent::CloneReset),
        EventCounts { delivered: 1, failed: 0, retried: 1, dropped: 0 }
    );
}

#[tokio::test]
async fn too_many_requests_and_503_are_retried_until_attempts_run_out() {
    let receiver = Receiver::start(Behaviour::Script(&[429, 503, 502, 200])).await;
    let config = fast_config(vec![hook(&receiver.url, "", &[WebhookEvent::CloneDelete])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneDelete, "c1"));
    within(sink.wait_for_count(1)).await;

    let record = &sink.records()[0];
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!((record.attempts, record.last_status), (3, Some(502)));
    assert_eq!(receiver.received().len(), 3, "max_attempts bounds the attempts");
    assert_eq!(
        dispatcher.metrics().get(WebhookEvent::CloneDelete),
        EventCounts { delivered: 0, failed: 1, retried: 2, dropped: 0 }
    );
}

#[tokio::test]
async fn other_4xx_answers_are_final() {
    for status in [400_u16, 401, 404, 410] {
        let script: &'static [u16] = Box::leak(vec![status].into_boxed_slice());
        let receiver = Receiver::start(Behaviour::Script(script)).await;
        let config = fast_config(vec![hook(&receiver.url, "", &[WebhookEvent::BranchDelete])]);
        let (dispatcher, sink) = start(&config);
        dispatcher.emit(&api_types::WebhookPayload::basic(WebhookEvent::BranchDelete, "dev"));
        within(sink.wait_for_count(1)).await;
        let record = &sink.records()[0];
        assert_eq!(record.outcome, Outcome::Failed, "{status}");
        assert_eq!((record.attempts, record.last_status), (1, Some(status)));
        assert_eq!(receiver.received().len(), 1);
        assert_eq!(dispatcher.metrics().get(WebhookEvent::BranchDelete).retried, 0);
    }
}

#[tokio::test]
async fn a_dead_port_fails_after_max_attempts_and_is_recorded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let url = format!("http://{address}/hook");
    let config = fast_config(vec![hook(&url, "s", &[WebhookEvent::CloneCreate])]);
    let (dispatcher, sink) = start(&config);
    dispatcher.emit(&clone_payload(WebhookEvent::CloneCreate, "c1"));
    within(sink.wait_for_count(1)).await;

    let record = &sink.records()[0];
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!((record.attempts, record.last_status), (3, None));
    let error = record.last_error.as_deref().expect("error recorded");
    assert!(error.to_lowercase().contains("connection refused"), "{error}");
    assert_eq!(
        dispatcher.metrics().get(WebhookEvent::CloneCreate),
        EventCounts { delivered: 0, failed: 1, retried: 2, dropped: 0 }
    );
}
