//! Crashes and time: kill -9 of the engine mid-work, lease expiry, idle cleanup.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Receiver, TestServer, clone_datasets, clone_request, connect};

#[tokio::test]
async fn kill_9_in_the_middle_of_work_loses_nothing() {
    let mut server = TestServer::start("").await;
    let mut ready = Vec::new();
    for id in ["steady-1", "steady-2", "steady-3"] {
        let clone = server.create_clone(id).await;
        let client = connect(&clone).await.unwrap();
        client
            .batch_execute(&format!("CREATE TABLE marker AS SELECT '{id}'::text AS id"))
            .await
            .unwrap();
        ready.push(clone);
    }
    // Work in flight: creates, a reset and a delete, then a crash.
    for id in ["inflight-1", "inflight-2"] {
        let (status, _) = server.post("/clone", clone_request(id)).await;
        assert_eq!(status, 201);
    }
    server.post("/clone/steady-3/reset", json!({})).await;
    server.call(reqwest::Method::DELETE, "/clone/steady-2", None).await;
    server.kill();

    server.launch().await;
    // Every clone is accounted for: the ones in flight finish, the deleted one is gone.
    for id in ["inflight-1", "inflight-2", "steady-3"] {
        let mut clone = server.wait_while(id, "CREATING").await.expect("the clone survived");
        if clone["status"]["code"] == "RESETTING" {
            clone = server.wait_while(id, "RESETTING").await.expect("the clone survived");
        }
        assert_eq!(clone["status"]["code"], "OK", "{clone}\n{}", server.log());
        connect(&clone).await.expect("an interrupted clone is reachable");
    }
    let deleted = server.wait_while("steady-2", "DELETING").await;
    assert!(
        deleted.is_none() || deleted.as_ref().unwrap()["status"]["code"] == "OK",
        "{deleted:?}"
    );
    // The untouched clone kept its server, port, credentials and data.
    let (_, steady) = server.get("/clone/steady-1").await;
    assert_eq!(steady["db"]["port"], ready[0]["db"]["port"]);
    let client = connect(&steady).await.expect("same credentials after the crash");
    let row = client.query_one("SELECT id FROM marker", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "steady-1");

    // No dataset without an owner, and the report says what was repaired.
    let (_, clones) = server.get("/clones").await;
    let mut owned: Vec<String> = clones
        .as_array()
        .unwrap()
        .iter()
        .map(|clone| {
            format!("branch/main/{}/r{}", clone["id"].as_str().unwrap(), clone["revision"])
        })
        .collect();
    owned.sort();
    assert_eq!(clone_datasets(&server.pool_dir()), owned);
    let (_, status) = server.get("/status").await;
    let differences = status["reconciliation"]["differences"].as_array().unwrap().clone();
    assert!(
        differences.iter().any(|d| d["kind"] == "interrupted_operation"),
        "the crash left no trace in the report: {differences:?}"
    );
    assert!(!differences.iter().any(|d| d["kind"] == "orphan_dataset"), "{differences:?}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("scion_reconcile_differences{kind=\"interrupted_operation\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn leases_warn_then_expire_and_idle_cleanup_follows() {
    let receiver = Receiver::start("lease-secret").await;
    let server = TestServer::start(&format!(
        "protection_max_duration_minutes = 0.05\nprotection_lease_duration_minutes = 0.05\n\
         protection_expiry_warning_minutes = 60\nprotection_check_interval = \"200ms\"\n\
         max_idle_minutes = 0.1\nidle_check_interval = \"300ms\"\n\n\
         [webhooks]\n[[webhooks.hooks]]\nurl = \"{}\"\nsecret = \"lease-secret\"\n\
         trigger = [\"clone_protection_expiring\", \"clone_protection_expired\", \"clone_delete\"]\n",
        receiver.url
    ))
    .await;
    // Asked for 2 hours, capped at 3 seconds.
    let (status, clone) = server
        .post(
            "/clone?wait=120",
            json!({"id": "leased", "protected": true, "protectionDurationMinutes": 120,
                   "db": {"username": "tester", "password": crate::harness::PASSWORD}}),
        )
        .await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["protected"], true);

    let warning =
        receiver.wait_for("clone_protection_expiring", "leased", Duration::from_secs(30)).await;
    assert!(warning.signature_ok, "bad signature on {:?}", warning.body);
    assert_eq!(warning.token.as_deref(), Some("lease-secret"));
    assert!(warning.body["protected_till"].is_string());
    assert_eq!(warning.body["expires_in_hours"], 1);

    let expired =
        receiver.wait_for("clone_protection_expired", "leased", Duration::from_secs(30)).await;
    assert!(expired.signature_ok);
    let (_, after) = server.get("/clone/leased").await;
    assert_eq!(after["protected"], false, "{after}");

    // Unprotected and unused, the clone is then cleaned up as idle.
    receiver.wait_for("clone_delete", "leased", Duration::from_secs(60)).await;
    assert_eq!(server.get("/clone/leased").await.0, 404);
}

#[tokio::test]
async fn idle_cleanup_spares_clones_in_use() {
    let server =
        TestServer::start("max_idle_minutes = 0.05\nidle_check_interval = \"300ms\"\n").await;
    let busy = server.create_clone("busy").await;
    let client = connect(&busy).await.unwrap();
    server.create_clone("unused").await;
    server
        .wait_for(
            "the idle clone to go",
            Duration::from_secs(60),
            |status, _| status == 404,
            "unused",
        )
        .await;
    // A session keeps its clone alive across several idle periods.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (status, still) = server.get("/clone/busy").await;
    assert_eq!(status, 200, "a clone in use was cleaned up: {still}");
    client.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn warm_clones_serve_creates_and_a_crash_leaves_none_behind() {
    let mut server = TestServer::start("warm_pool_size = 2").await;
    server.wait_warm(2.0).await;
    let warm = clone_datasets(&server.pool_dir());
    assert_eq!(warm.len(), 2, "{warm:?}");
    let clone = server.create_clone("claimed").await;
    // The clone runs on a warm clone's dataset, not on one named after it.
    let datasets = clone_datasets(&server.pool_dir());
    assert!(datasets.iter().all(|dataset| !dataset.contains("/claimed/")), "{datasets:?}");
    connect(&clone).await.expect("log in to a claimed warm clone");
    server.wait_warm(2.0).await;
    // The fill per snapshot: both on the head of main, the one snapshot there is.
    let (_, snapshots) = server.get("/snapshots").await;
    let (status, pool) = server.get("/instance/warm-pool").await;
    assert_eq!(status, 200, "{pool}");
    assert_eq!((&pool["target"], &pool["ready"]), (&serde_json::json!(2), &serde_json::json!(2)));
    assert_eq!(
        pool["snapshots"],
        serde_json::json!([{"snapshotID": snapshots[0]["id"], "ready": 2}]),
        "{pool}"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        crate::harness::metric(&metrics, "scion_warm_pool_hits_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        crate::harness::metric(&metrics, "scion_warm_pool_misses_total"),
        Some(0.0),
        "{metrics}"
    );

    // The servers of the warm clones at the moment of the crash.
    let before = clone_datasets(&server.pool_dir());
    assert_eq!(before.len(), 3, "{before:?}");
    // Found on the host by their data directories: each wrote PID 1 of its own namespace.
    let pids: Vec<u32> = before
        .iter()
        .filter_map(|dataset| {
            let pgdata = server.pool_dir().join(dataset).join("data");
            let file = postgres::PidFile::read(&pgdata).ok()??;
            postgres::instance::find_postmaster(file.pid, &pgdata)
        })
        .collect();
    assert_eq!(pids.len(), 3, "every clone and warm clone runs a server");
    server.kill();
    server.launch().await;
    server.wait_warm(2.0).await;

    let (_, status) = server.get("/status").await;
    let differences = status["reconciliation"]["differences"].as_array().unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let after = clone_datasets(&server.pool_dir());
    assert_eq!(after.len(), 3, "{after:?}");
    let (_, clone) = server.get("/clone/claimed").await;
    assert_eq!(clone["status"]["code"], "OK", "{clone}");
    connect(&clone).await.expect("the claimed clone survives the crash");
    for (dataset, pid) in before.iter().zip(&pids) {
        // A zombie is gone too: its reaper is whoever inherited it from the killed engine.
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
        });
        let owned = after.contains(dataset);
        assert_eq!(alive, owned, "{dataset} (pid {pid}): alive {alive}, still in the pool {owned}");
    }
}
