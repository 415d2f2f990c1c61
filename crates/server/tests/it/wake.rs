//! Scale to zero through the real server: the idle stop from the configuration, the
//! additive `stoppedAt` that leaves DBLab's status `OK`, the first connection that wakes the
//! clone, and `POST /clone/{id}/stop` and `/start`.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{TestServer, connect};

fn stopped(clone: &Value) -> bool {
    clone["stoppedAt"].is_string()
}

#[tokio::test]
async fn an_idle_clone_is_stopped_and_its_first_connection_wakes_it() {
    let server =
        TestServer::start("stop_idle_after = \"1s\"\nidle_check_interval = \"200ms\"").await;
    let clone = server.create_clone("sleepy").await;
    server
        .wait_for(
            "the idle stop",
            Duration::from_secs(60),
            |status, clone| status == 200 && stopped(clone),
            "sleepy",
        )
        .await;
    let (_, seen) = server.get("/clone/sleepy").await;
    // DBLab's clients see a usable clone: the code stays OK.
    assert_eq!(seen["status"]["code"], "OK", "{seen}");
    assert!(seen["status"]["message"].as_str().unwrap().contains("stopped"), "{seen}");
    let (_, status) = server.get("/status").await;
    let listed = &status["cloning"]["clones"][0];
    assert_eq!(listed["id"], "sleepy");
    assert!(stopped(listed), "{listed}");

    let client = connect(&clone).await.expect("the first connection is served");
    assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    let (_, awake) = server.get("/clone/sleepy").await;
    assert!(!stopped(&awake), "{awake}");
    // A session keeps it running through the next idle checks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(client.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0), 2);
}

#[tokio::test]
async fn clones_stop_and_start_by_hand() {
    let server = TestServer::start("").await;
    let clone = server.create_clone("manual").await;
    let (status, body) = server.post("/clone/manual/stop", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert!(stopped(&body), "{body}");
    assert_eq!(body["status"]["code"], "OK");
    let (status, body) = server.post("/clone/manual/start", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert!(!stopped(&body), "{body}");
    connect(&clone).await.expect("a started clone is served");
    let (status, body) = server.post("/clone/ghost/stop", Value::Null).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");

    // What needs a stopped clone's server starts it: a snapshot of it, an observation.
    for (path, request) in [
        ("/snapshot/clone", serde_json::json!({ "cloneID": "manual" })),
        ("/observation/start", serde_json::json!({ "clone_id": "manual" })),
    ] {
        let (status, body) = server.post("/clone/manual/stop", Value::Null).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = server.post(path, request).await;
        assert_eq!(status, 200, "{path}: {body}\n{}", server.log());
        let (_, body) = server.get("/clone/manual").await;
        assert!(!stopped(&body), "{path}: {body}");
    }
    let (status, body) =
        server.post("/observation/stop", serde_json::json!({ "clone_id": "manual" })).await;
    assert_eq!(status, 200, "{body}");
}
