//! Webhook delivery from the real server: signed events, and a receiver that hangs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Receiver, TestServer};

#[tokio::test]
async fn signed_events_reach_a_healthy_receiver_while_another_hangs() {
    let receiver = Receiver::start("hook-secret").await;
    // A receiver that accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let server = TestServer::start(&format!(
        "[webhooks]\ntimeout = \"2s\"\nmax_attempts = 2\nbackoff_base = \"100ms\"\n\
         [[webhooks.hooks]]\nurl = \"{hanging_url}\"\nsecret = \"hook-secret\"\ntrigger = [\"clone_create\"]\n\
         [[webhooks.hooks]]\nurl = \"{}\"\nsecret = \"hook-secret\"\n\
         trigger = [\"clone_create\", \"clone_delete\", \"snapshot_create\"]\n",
        receiver.url
    ))
    .await;

    let started = Instant::now();
    server.create_clone("hooked").await;
    // The hanging receiver times out after 2 s per attempt; the clone path never waits for it.
    assert!(started.elapsed() < Duration::from_secs(30));
    let event = receiver.wait_for("clone_create", "hooked", Duration::from_secs(10)).await;
    assert!(event.signature_ok, "bad signature: {:?}", event.body);
    assert_eq!(event.token.as_deref(), Some("hook-secret"));
    assert_eq!(event.body["container_name"], "hooked");
    assert_eq!(event.body["username"], "tester");
    assert!(event.body["port"].as_u64().is_some(), "{:?}", event.body);

    let (_, snapshot) = server.post("/snapshot", serde_json::Value::Null).await;
    let snapshot_event = receiver
        .wait_for("snapshot_create", snapshot["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    assert!(snapshot_event.signature_ok);

    // The hanging hook's attempts fail and are counted, without touching the healthy one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        if metrics
            .contains("scion_webhook_deliveries_total{event=\"clone_create\",outcome=\"failed\"} 1")
        {
            assert!(metrics.contains(
                "scion_webhook_deliveries_total{event=\"clone_create\",outcome=\"delivered\"} 1"
            ));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hanging hook's failure was never counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The record of each delivery, newest first, each hook shown by its origin only.
    let deadline = Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let (status, deliveries) = server.get("/webhooks/deliveries?limit=10").await;
        assert_eq!(status, 200, "{deliveries}");
        if deliveries.as_array().unwrap().iter().any(|d| d["outcome"] == "failed") {
            break deliveries;
        }
        assert!(Instant::now() < deadline, "no failed delivery recorded: {deliveries}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let of = |hook: &str| {
        let origin = hook.trim_end_matches("/hook").to_owned();
        let found: Vec<_> = deliveries
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["hook"] == origin.as_str() && d["event"] == "clone_create")
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "{origin}: {deliveries}");
        found[0].clone()
    };
    let failed = of(&hanging_url);
    assert_eq!(
        (&failed["outcome"], &failed["attempts"]),
        (&json!("failed"), &json!(2)),
        "{failed}"
    );
    assert!(failed["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    assert_eq!(failed["entityID"], "hooked");
    let delivered = of(&receiver.url);
    assert_eq!(
        (&delivered["outcome"], &delivered["lastStatus"]),
        (&json!("delivered"), &json!(200))
    );
    let (status, error) = server.get("/webhooks/deliveries?limit=0").await;
    assert_eq!((status, &error["code"]), (400, &json!("BAD_REQUEST")), "{error}");
}
