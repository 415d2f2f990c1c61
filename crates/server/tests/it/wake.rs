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

/// The time the clone's server started, read through a new connection: the same value before
/// and after an engine restart means the same server, adopted, not started again.
async fn server_started_at(clone: &Value) -> String {
    let client = connect(clone).await.expect("connect");
    let row = client.query_one("SELECT pg_postmaster_start_time()::text", &[]).await.unwrap();
    row.get(0)
}

/// Restarts of the engine around a wake, with the real binary killed as a crash would stop it:
/// a connection in the restart window meets no listener and starts nothing, the first one
/// after the restart wakes the clone; a crash right after a wake started the server, before it
/// was recorded, leaves the clone stopped and no server running; and a clone woken before a
/// restart is adopted (the same server, served through the engine again), then stopped with
/// nothing left behind.
#[tokio::test]
async fn a_wake_across_engine_restarts_is_served_and_leaves_no_server_behind() {
    let mut server = TestServer::start("").await;
    let clone = server.create_clone("nap").await;
    let pool = server.pool_dir();
    let stop = async |server: &TestServer| {
        let (status, body) = server.post("/clone/nap/stop", Value::Null).await;
        assert_eq!(status, 200, "{body}");
        assert!(stopped(&body), "{body}");
        assert!(test_support::processes_under(&pool).is_empty(), "a stopped clone runs nothing");
    };
    stop(&server).await;

    // The window: no engine holds the port, and nothing starts the clone.
    server.kill();
    let error = connect(&clone).await.expect_err("no engine listens in the window");
    assert!(error.as_db_error().is_none(), "refused by the kernel, not by a server: {error}");
    assert!(test_support::processes_under(&pool).is_empty());
    server.launch().await;
    let (_, after) = server.get("/clone/nap").await;
    assert!(stopped(&after), "still stopped after the restart: {after}");
    let client = connect(&clone).await.expect("the first connection after the restart wakes it");
    assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    drop(client);

    // A crash between the wake's start of the server and its record.
    stop(&server).await;
    server.relaunch_crashing_at("wake.server_started").await;
    connect(&clone).await.expect_err("the engine crashed under the connection");
    server.recover_from_crash().await;
    let (_, after) = server.get("/clone/nap").await;
    assert!(stopped(&after), "the start was never recorded: {after}");
    assert!(
        test_support::processes_under(&pool).is_empty(),
        "the server the crashed wake started is stopped, not leaked"
    );

    // A clone woken before a restart: its server is adopted and served through the engine.
    let before = server_started_at(&clone).await;
    server.kill();
    server.launch().await;
    let (_, after) = server.get("/clone/nap").await;
    assert!(!stopped(&after), "{after}");
    assert_eq!(server_started_at(&clone).await, before, "the same server, adopted");
    stop(&server).await;
    server.call(reqwest::Method::DELETE, "/clone/nap", None).await;
    server.wait_while("nap", "DELETING").await;
    let port: u16 = clone["db"]["port"].as_str().unwrap().parse().unwrap();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is released");
}
