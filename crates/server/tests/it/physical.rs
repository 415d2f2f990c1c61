//! Physical mode through the real binary and its TOML configuration: `[retrieval.physical]`
//! (pg_basebackup with a slot, the sync instance, a snapshot timetable of every minute) against
//! a real PostgreSQL 16 primary that takes replication only with a password. The first start
//! copies and snapshots; `POST /snapshot` cuts a snapshot from the running standby; the timetable
//! cuts one on its own, and count-based retention keeps the limit.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::primary::{Primary, REPLICATOR};

use crate::harness::{PASSWORD, SOURCE_PASSWORD, SOURCE_PASSWORD_ENV, TestServer, connect};

/// A copy, a standby start and a promotion on a slow shared machine.
const WAIT: Duration = Duration::from_secs(120);

/// The notes a clone sees, oldest first.
async fn notes(clone: &Value) -> Vec<String> {
    let client = connect(clone).await.unwrap();
    let rows = client.query("SELECT note FROM facts ORDER BY id", &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// `GET /status` once `done` holds for it.
async fn wait_status(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = server.get("/status").await;
        assert_ne!(status["retrieving"]["status"], "failed", "{}\n{}", status, server.log());
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The snapshots' IDs, newest first.
async fn snapshot_ids(server: &TestServer) -> Vec<String> {
    let (_, snapshots) = server.get("/snapshots").await;
    snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|snapshot| snapshot["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A clone of snapshot `snapshot`, ready.
async fn clone_of(server: &TestServer, id: &str, snapshot: &str) -> Value {
    let request = json!({
        "id": id,
        "snapshot": {"id": snapshot},
        "db": {"username": "tester", "password": PASSWORD},
    });
    let (status, clone) = server.post("/clone?wait=120", request).await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["status"]["code"], "OK", "{clone}\n{}", server.log());
    clone
}

#[tokio::test]
async fn physical_mode_from_its_toml_configuration() {
    let source = Primary::start(16).await;
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("before the copy").await;
    let config = format!(
        "[snapshots]\nretention_limit = 2\n\n\
         [retrieval]\n[retrieval.source]\nhost = \"127.0.0.1\"\nport = {port}\n\
         username = \"{REPLICATOR}\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\
         [retrieval.physical]\ntool = \"pg_basebackup\"\nslot = \"scion_http\"\n\
         snapshot_timetable = \"* * * * *\"\n\
         [retrieval.physical.sync]\nenabled = true\nhealth_interval = \"300ms\"\n",
        port = source.port
    );
    let server = TestServer::start(&config).await;

    // The first start copies, starts the standby and snapshots it.
    let status = wait_status(&server, "refreshed and in sync", |status| {
        status["retrieving"]["status"] == "finished"
            && status["synchronization"]["status"]["code"] == "OK"
    })
    .await;
    assert_eq!(status["retrieving"]["mode"], "physical", "{status}");
    let (_, retrieval) = server.get("/instance/retrieval").await;
    let progress = &retrieval["progress"];
    assert_eq!(progress["stage"], "finished", "{retrieval}");
    assert!(progress["bytesDone"].as_u64().unwrap() > 0, "{retrieval}");
    assert_eq!(progress["bytesDone"], progress["bytesTotal"], "{retrieval}");
    let first = snapshot_ids(&server).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let clone = clone_of(&server, "first", &first[0]).await;
    assert_eq!(notes(&clone).await, ["before the copy"]);

    // The snapshot kept its standby copy: the WAL window starts there, and a point in time
    // before it is refused with the window named.
    let (_, retrieval) = server.get("/instance/retrieval").await;
    let first_window = retrieval["walWindow"].clone();
    assert!(
        first_window["oldest"]["lsn"].as_str().is_some_and(|lsn| lsn.contains('/')),
        "{retrieval}"
    );
    let (status, refused) =
        server.post("/snapshot", json!({"recoveryTarget": {"time": "2000-01-01T00:00:00Z"}})).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("outside the WAL window: the oldest reachable moment is"),
        "{refused}"
    );
    // So is a branch there; a branch at a point picks its own base.
    let at_2000 = json!({"time": "2000-01-01T00:00:00Z"});
    for (body, expected) in [
        (json!({"branchName": "old", "recoveryTarget": at_2000}), "outside the WAL window"),
        (
            json!({"branchName": "old", "baseBranch": "main", "recoveryTarget": at_2000}),
            "leave baseBranch and snapshotID out",
        ),
        (
            json!({"branchName": "old", "recoveryTarget": {"lsn": "nowhere"}}),
            "is not a WAL location",
        ),
    ] {
        let (status, refused) = server.post("/branch", body).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["code"], "BAD_REQUEST", "{refused}");
        assert!(refused["message"].as_str().unwrap_or_default().contains(expected), "{refused}");
    }
    let (_, branches) = server.get("/branches").await;
    assert_eq!(branches.as_array().map(Vec::len), Some(1), "{branches}");

    // POST /snapshot cuts one from the running standby once it has replayed something new.
    source.insert("after the first snapshot").await;
    let deadline = Instant::now() + WAIT;
    let second = loop {
        let (status, created) = server.post("/snapshot", json!({})).await;
        assert_eq!(status, 200, "{created}\n{}", server.log());
        let id = created["id"].as_str().unwrap().to_owned();
        if id != first[0] {
            break id;
        }
        assert!(Instant::now() < deadline, "no new snapshot:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let clone = clone_of(&server, "second", &second).await;
    assert_eq!(notes(&clone).await, ["before the copy", "after the first snapshot"]);

    // Without clones on them, the timetable's snapshot makes three: retention keeps two.
    for id in ["first", "second"] {
        let (status, body) =
            server.call(reqwest::Method::DELETE, &format!("/clone/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        server.wait_for("the clone gone", WAIT, |status, _| status == 404, id).await;
    }
    source.insert("on the timetable").await;
    let deadline = Instant::now() + Duration::from_secs(150);
    let scheduled = loop {
        let ids = snapshot_ids(&server).await;
        if ids[0] != second {
            break ids;
        }
        assert!(Instant::now() < deadline, "the timetable cut nothing: {ids:?}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(scheduled.len(), 2, "retention keeps two: {scheduled:?}");
    assert_eq!(scheduled[1], second, "{scheduled:?}");
    let clone = clone_of(&server, "scheduled", &scheduled[0]).await;
    let seen = notes(&clone).await;
    assert_eq!(seen[..2], ["before the copy", "after the first snapshot"], "{seen:?}");
    // Retention took the first snapshot's standby copy with it: the window starts later.
    let (_, retrieval) = server.get("/instance/retrieval").await;
    assert_ne!(retrieval["walWindow"]["oldest"], first_window["oldest"], "{retrieval}");
}
