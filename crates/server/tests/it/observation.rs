//! Observation sessions over HTTP, as DBLab's CI checker drives them: a migration that holds an
//! `ACCESS EXCLUSIVE` lock too long fails its session and one that does not passes; sessions
//! survive a restart of the engine; bad requests get `{code, message}`.
//!
//! No test waits for a clock: where the observer must have looked at a lock, the test waits
//! until the observer's own session (application `scion-engine`) has finished a lock check
//! that started after the moment it needs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::crashes::{differences, expect_crash};
use crate::harness::{TestServer, connect};

/// Settings that make the observer look every second and call a lock dangerous after one.
fn quick_config() -> Value {
    json!({"observation_interval": 1, "max_lock_duration": 1, "max_duration": 3600})
}

async fn start_session(server: &TestServer, clone_id: &str) -> u64 {
    let (status, session) = server
        .post(
            "/observation/start",
            json!({"clone_id": clone_id, "config": quick_config(), "tags": {"ci": "test"}}),
        )
        .await;
    assert_eq!(status, 200, "{session}\n{}", server.log());
    assert_eq!(session["finished_at"], "0001-01-01T00:00:00Z", "{session}");
    assert_eq!(session["config"]["max_lock_duration"], 1);
    assert_eq!(session["tags"]["ci"], "test");
    assert!(session.get("result").is_none(), "{session}");
    session["session_id"].as_u64().expect("a numeric session ID")
}

/// Waits until the observer has finished a lock check that began at or after `after` (the
/// server's clock, read through `client`).
async fn wait_for_a_check_after(client: &Client, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                   WHERE application_name = 'scion-engine' AND query LIKE '%AccessExclusiveLock%'
                     AND state = 'idle' AND query_start >= $1::text::timestamptz)",
                &[&after],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            return;
        }
        assert!(Instant::now() < deadline, "the observer never checked the locks after {after}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn server_time(client: &Client, offset: &str) -> String {
    let row = client
        .query_one(&format!("SELECT (clock_timestamp() + interval '{offset}')::text"), &[])
        .await
        .unwrap();
    row.get(0)
}

async fn stop_session(server: &TestServer, clone_id: &str, overall_error: bool) -> Value {
    let (status, session) = server
        .post("/observation/stop", json!({"clone_id": clone_id, "overall_error": overall_error}))
        .await;
    assert_eq!(status, 200, "{session}\n{}", server.log());
    assert_ne!(session["finished_at"], "0001-01-01T00:00:00Z", "{session}");
    session
}

#[tokio::test]
async fn a_lock_held_too_long_fails_the_session_and_a_short_migration_passes() {
    let server = TestServer::start("").await;
    let clone = server.create_clone("migrate").await;
    let client = connect(&clone).await.unwrap();
    client
        .batch_execute("CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (1)")
        .await
        .unwrap();
    let watcher = connect(&clone).await.unwrap();

    // A migration whose transaction holds ACCESS EXCLUSIVE on `accounts` past the limit.
    let failing = start_session(&server, "migrate").await;
    client.batch_execute("BEGIN; ALTER TABLE accounts ADD COLUMN note text").await.unwrap();
    let past_limit = server_time(&client, "1.5 seconds").await;
    wait_for_a_check_after(&watcher, &past_limit).await;
    client.batch_execute("COMMIT").await.unwrap();
    let session = stop_session(&server, "migrate", false).await;
    assert_eq!(session["session_id"], failing);
    let result = &session["result"];
    assert_eq!(result["status"], "failed", "{session}");
    assert!(result["summary"]["warning_intervals"].as_u64().unwrap() >= 1, "{session}");
    assert_eq!(result["summary"]["checklist"]["no_long_dangerous_locks"], false);
    assert_eq!(result["summary"]["checklist"]["overall_success"], true);
    assert_eq!(result["summary"]["checklist"]["session_duration_acceptable"], true);
    let warning = result["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|interval| interval["warning"].as_str().unwrap())
        .find(|warning| !warning.is_empty())
        .expect("a warning interval");
    assert!(warning.contains("accounts") && warning.contains("AccessExclusiveLock"), "{warning}");
    let (status, clone_now) = server.get("/clone/migrate").await;
    assert_eq!((status, &clone_now["status"]["code"]), (200, &json!("OK")), "{clone_now}");

    // A short migration, a failing statement in the log, and the caller's verdict: passed.
    let passing = start_session(&server, "migrate").await;
    assert!(passing > failing, "session IDs are never reused");
    client
        .batch_execute(
            "BEGIN; ALTER TABLE accounts ADD COLUMN short int; COMMIT;
             CREATE INDEX accounts_id ON accounts (id); INSERT INTO accounts (id) VALUES (2)",
        )
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT * FROM no_such_table").await.is_err());
    let after_migration = server_time(&client, "0 seconds").await;
    wait_for_a_check_after(&watcher, &after_migration).await;
    let session = stop_session(&server, "migrate", false).await;
    let result = &session["result"];
    assert_eq!(result["status"], "passed", "{session}");
    assert_eq!(result["summary"]["warning_intervals"], 0);
    assert!(result["summary"]["total_intervals"].as_u64().unwrap() >= 1);
    assert!(session["artifacts"].as_array().unwrap().contains(&json!("pg_stat_user_tables")));

    let (status, summary) = server.get(&format!("/observation/summary/migrate/{passing}")).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["session_id"], passing);
    assert_eq!(summary["clone_id"], "migrate");
    assert_eq!(summary["locks"]["warning_interval"], 0);
    assert_eq!(summary["db_size"]["objects_stat"]["count"], 1, "{summary}");
    assert!(summary["log_errors"]["count"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["log_errors"]["message"].as_str().unwrap().contains("no_such_table"));
    assert!(summary["artifact_types"].as_array().unwrap().contains(&json!("log_errors")));

    let (status, tables) = server
        .get(&format!(
            "/observation/download?artifact_type=pg_stat_user_tables&clone_id=migrate&session_id={passing}"
        ))
        .await;
    assert_eq!(status, 200, "{tables}");
    let accounts = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["table_full_name"] == "public.accounts")
        .unwrap_or_else(|| panic!("no row for accounts: {tables}"));
    assert!(accounts["total_relation_size_b"].as_i64().unwrap() > 0, "{accounts}");
    let (status, errors) = server
        .get(&format!(
            "/observation/download?artifact_type=log_errors&clone_id=migrate&session_id={passing}"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(errors.as_array().unwrap().iter().any(|row| row["error_severity"] == "ERROR"));

    // The failing session's summary is still there, and says why.
    let (status, summary) = server.get(&format!("/observation/summary/migrate/{failing}")).await;
    assert_eq!(status, 200);
    assert!(summary["locks"]["warning_interval"].as_u64().unwrap() >= 1, "{summary}");
}

#[tokio::test]
async fn sessions_survive_a_restart_and_go_with_their_clone() {
    let mut server = TestServer::start("").await;
    let clone = server.create_clone("kept").await;
    let session_id = start_session(&server, "kept").await;
    let watcher = connect(&clone).await.unwrap();
    // Two checks: the first one's interval is recorded before the second begins.
    for _ in 0..2 {
        let now = server_time(&watcher, "0 seconds").await;
        wait_for_a_check_after(&watcher, &now).await;
    }
    drop(watcher);

    // A crash: the running session resumes with the intervals it had, listed as running
    // (an empty status) with its intervals so far.
    server.kill();
    server.launch().await;
    let (status, sessions) = server.get("/observation/sessions/kept").await;
    assert_eq!(status, 200, "{sessions}");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions[0]["session_id"], session_id);
    assert_eq!(sessions[0]["finished_at"], "0001-01-01T00:00:00Z", "{sessions}");
    assert_eq!(sessions[0]["result"]["status"], "", "{sessions}");
    assert!(sessions[0]["result"]["intervals"].as_array().unwrap().len() >= 2, "{sessions}");
    let session = stop_session(&server, "kept", true).await;
    let (_, sessions) = server.get("/observation/sessions/kept").await;
    assert_eq!(sessions[0]["result"]["status"], "failed", "{sessions}");
    assert_eq!(session["session_id"], session_id);
    assert_eq!(session["tags"]["ci"], "test");
    assert!(session["result"]["summary"]["total_intervals"].as_u64().unwrap() >= 2, "{session}");
    assert_eq!(session["result"]["status"], "failed", "the caller said the work failed");
    assert_eq!(session["result"]["summary"]["checklist"]["overall_success"], false);

    // A stopped session's summary and artifacts outlive a restart too.
    server.kill();
    server.launch().await;
    let (status, summary) = server.get(&format!("/observation/summary/kept/{session_id}")).await;
    assert_eq!(status, 200, "{summary}\n{}", server.log());
    assert_eq!(summary["session_id"], session_id);
    let path = format!(
        "/observation/download?artifact_type=pg_stat_database&clone_id=kept&session_id={session_id}"
    );
    let (status, database) = server.get(&path).await;
    assert_eq!(status, 200, "{database}");
    assert_eq!(database[0]["datname"], "postgres", "{database}");

    // Destroying the clone removes its sessions and their files.
    let (status, _) = server.call(reqwest::Method::DELETE, "/clone/kept?wait=120", None).await;
    assert_eq!(status, 200);
    let (status, error) = server.get(&format!("/observation/summary/kept/{session_id}")).await;
    assert_eq!((status, &error["code"]), (404, &json!("NOT_FOUND")), "{error}");
    assert!(!server.state_dir().join("observations").join("kept").exists());
    let (status, error) = server.get("/observation/sessions/kept").await;
    assert_eq!((status, &error["code"]), (404, &json!("NOT_FOUND")), "{error}");
}

#[tokio::test]
async fn a_stop_a_crash_interrupted_is_finished_by_the_next_start() {
    let mut server = TestServer::start("").await;
    server.create_clone("exporting").await;
    let session_id = start_session(&server, "exporting").await;

    // The stop crashes the server while the clone is EXPORTING; the relaunch resumed the session.
    server.relaunch_crashing_at("observation.exporting").await;
    let stop = json!({"clone_id": "exporting", "overall_error": false});
    expect_crash(&server, "/observation/stop", stop).await;
    server.recover_from_crash().await;

    // The next start makes the clone OK again, says so, and finishes the stop itself.
    let (_, status) = server.get("/status").await;
    assert!(
        differences(&status)
            .contains(&("interrupted_operation".to_owned(), "exporting".to_owned())),
        "{status}"
    );
    let path = format!("/observation/summary/exporting/{session_id}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let summary = loop {
        let (code, summary) = server.get(&path).await;
        if code == 200 {
            break summary;
        }
        assert!(Instant::now() < deadline, "the stop was not finished:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(summary["session_id"], session_id);
    let (_, clone) = server.get("/clone/exporting").await;
    assert_eq!(clone["status"]["code"], "OK", "{clone}");
}

#[tokio::test]
async fn bad_observation_requests_get_the_error_object() {
    let server = TestServer::start("").await;
    server.create_clone("busy").await;
    let check = |(status, body): (u16, Value), expected: u16, code: &str| {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|message| !message.is_empty()), "{body}");
    };
    check(server.post("/observation/start", json!({})).await, 400, "BAD_REQUEST");
    check(server.post("/observation/start", json!({"clone_id": "nobody"})).await, 404, "NOT_FOUND");
    check(server.post("/observation/stop", json!({"clone_id": "busy"})).await, 404, "NOT_FOUND");
    check(server.post("/observation/stop", json!({})).await, 400, "BAD_REQUEST");
    let session_id = start_session(&server, "busy").await;
    check(server.post("/observation/start", json!({"clone_id": "busy"})).await, 400, "BAD_REQUEST");
    // A running session has no summary yet.
    check(server.get(&format!("/observation/summary/busy/{session_id}")).await, 404, "NOT_FOUND");
    check(server.get("/observation/summary/busy/abc").await, 400, "BAD_REQUEST");
    check(server.get("/observation/summary/busy/999").await, 404, "NOT_FOUND");
    check(
        server
            .get(&format!(
                "/observation/download?artifact_type=bogus&clone_id=busy&session_id={session_id}"
            ))
            .await,
        400,
        "BAD_REQUEST",
    );
    check(
        server.get("/observation/download?artifact_type=pg_stat_database&clone_id=busy").await,
        400,
        "BAD_REQUEST",
    );
    stop_session(&server, "busy", false).await;
    // DBLab's types that this session did not collect are a 404, not an empty file.
    check(
        server
            .get(&format!(
                "/observation/download?artifact_type=pg_stat_kcache&clone_id=busy&session_id={session_id}"
            ))
            .await,
        404,
        "NOT_FOUND",
    );
    check(server.post("/observation/stop", json!({"clone_id": "busy"})).await, 404, "NOT_FOUND");
}
