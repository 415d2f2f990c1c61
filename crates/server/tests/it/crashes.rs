//! Crash injection: the real server aborts (as a `kill -9` would stop it) at each step of each
//! operation that creates storage, between making a dataset or snapshot and recording it; the
//! next start must remove what the crash left and report it, and the start after that must find
//! nothing at all to report, which means the whole pool is accounted for.

use serde_json::{Value, json};

use crate::harness::{TestServer, connect};

pub(crate) fn differences(status: &Value) -> Vec<(String, String)> {
    status["reconciliation"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|difference| {
            (
                difference["kind"].as_str().unwrap().to_owned(),
                difference["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// After a crash: the leftover is removed and reported as such, then a clean restart reports
/// nothing.
pub(crate) async fn assert_recovered(server: &mut TestServer, point: &str, leftover: &str) {
    assert_recovered_as(server, point, "removed_leftover", leftover).await;
}

/// After a crash: every difference the next start reports is of `kind`, one of them about
/// `object`; then a clean restart reports nothing.
async fn assert_recovered_as(server: &mut TestServer, point: &str, kind: &str, object: &str) {
    server.recover_from_crash().await;
    let (_, status) = server.get("/status").await;
    let found = differences(&status);
    assert!(
        found
            .iter()
            .any(|(found_kind, found_object)| found_kind == kind && found_object.contains(object)),
        "{point}: no {kind} like {object:?} in {found:?}"
    );
    assert!(
        found.iter().all(|(found_kind, _)| found_kind == kind),
        "{point}: something else is out of step: {found:?}"
    );
    // What the start runs again (a create, a reset, a destroy) settles before the next crash.
    server.wait_while(object, "CREATING").await;
    server.wait_while(object, "RESETTING").await;
    server.wait_while(object, "DELETING").await;
    server.kill();
    server.launch().await;
    let (_, status) = server.get("/status").await;
    assert_eq!(differences(&status), Vec::new(), "{point}: a second start still finds differences");
}

pub(crate) async fn expect_crash(server: &TestServer, path: &str, body: Value) {
    let sent = server
        .http
        .post(format!("{}{path}", server.url))
        .header("Verification-Token", crate::harness::TOKEN)
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "{path} answered although the server should have crashed: {sent:?}");
}

#[tokio::test]
async fn a_crash_at_any_storage_step_leaves_nothing_unreported() {
    let mut server = TestServer::start("").await;
    server.create_clone("base").await;

    // A snapshot of the data, taken but not recorded.
    server.relaunch_crashing_at("snapshot.taken").await;
    expect_crash(&server, "/snapshot", json!({})).await;
    assert_recovered(&mut server, "snapshot.taken", "data@snapshot_").await;

    // A commit of a clone, taken but not recorded.
    server.relaunch_crashing_at("commit.snapshot_taken").await;
    expect_crash(&server, "/branch/snapshot", json!({"cloneID": "base", "message": "m"})).await;
    assert_recovered(&mut server, "commit (branch/snapshot)", "branch/main/base/r0@").await;

    // DBLab's snapshot of a clone goes the same way.
    server.relaunch_crashing_at("commit.snapshot_taken").await;
    expect_crash(&server, "/snapshot/clone", json!({"cloneID": "base"})).await;
    assert_recovered(&mut server, "commit (snapshot/clone)", "branch/main/base/r0@").await;

    // A branch's dataset, made from its base but not recorded.
    server.relaunch_crashing_at("branch.dataset_created").await;
    expect_crash(&server, "/branch", json!({"branchName": "feature", "baseBranch": "main"})).await;
    assert_recovered(&mut server, "branch.dataset_created", "branch/feature").await;

    // A branch deletion whose datasets are gone and whose rows are not: the next start
    // finishes it rather than bring the branch back.
    let (status, body) =
        server.post("/branch", json!({"branchName": "short-lived", "baseBranch": "main"})).await;
    assert_eq!(status, 200, "{body}");
    server.relaunch_crashing_at("branch.datasets_destroyed").await;
    let sent = server
        .http
        .delete(format!("{}/branch/short-lived", server.url))
        .header("Verification-Token", crate::harness::TOKEN)
        .send()
        .await;
    assert!(sent.is_err(), "the deletion answered although the server crashed: {sent:?}");
    assert_recovered_as(
        &mut server,
        "branch.datasets_destroyed",
        "interrupted_operation",
        "short-lived",
    )
    .await;
    let (_, branches) = server.get("/branches").await;
    assert!(
        !branches.to_string().contains("short-lived"),
        "the deleted branch came back: {branches}"
    );

    // Every operation works afterwards, and the clone that ran through it all is intact.
    let (status, body) = server.post("/snapshot", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.post("/branch/snapshot", json!({"cloneID": "base", "message": "m"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.post("/branch", json!({"branchName": "feature", "baseBranch": "main"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, clone) = server.get("/clone/base").await;
    connect(&clone).await.expect("the clone survives every crash");
}

#[tokio::test]
async fn a_crash_in_any_clone_operation_is_finished_at_the_next_start() {
    let mut server = TestServer::start("").await;
    server.create_clone("base").await;
    server.create_clone("doomed").await;

    // A create whose dataset is made but whose server never started.
    server.relaunch_crashing_at("clone.dataset_created").await;
    let (status, body) = server.post("/clone", crate::harness::clone_request("fresh")).await;
    assert_eq!(status, 201, "{body}");
    assert_recovered_as(&mut server, "clone.dataset_created", "interrupted_operation", "fresh")
        .await;
    let (_, fresh) = server.get("/clone/fresh").await;
    connect(&fresh).await.expect("the interrupted create is finished");

    // A reset whose old dataset is gone and whose new one is not made yet.
    server.relaunch_crashing_at("reset.dataset_destroyed").await;
    let (status, body) = server.post("/clone/base/reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_recovered_as(&mut server, "reset.dataset_destroyed", "interrupted_operation", "base")
        .await;
    let (_, base) = server.get("/clone/base").await;
    connect(&base).await.expect("the interrupted reset is finished");

    // A destroy whose server is stopped and whose dataset is still there.
    server.relaunch_crashing_at("destroy.server_stopped").await;
    let (status, body) = server.call(reqwest::Method::DELETE, "/clone/doomed", None).await;
    assert_eq!(status, 200, "{body}");
    assert_recovered_as(&mut server, "destroy.server_stopped", "interrupted_operation", "doomed")
        .await;
    let (status, _) = server.get("/clone/doomed").await;
    assert_eq!(status, 404, "the interrupted destroy is finished");

    // A snapshot deletion whose snapshot is gone and whose record is not.
    let (status, snapshot) = server.post("/snapshot", json!({})).await;
    assert_eq!(status, 200, "{snapshot}");
    let id = snapshot["id"].as_str().unwrap().to_owned();
    server.relaunch_crashing_at("snapshot.destroyed").await;
    let sent = server
        .http
        .delete(format!("{}/snapshot/{id}", server.url))
        .header("Verification-Token", crate::harness::TOKEN)
        .send()
        .await;
    assert!(sent.is_err(), "the deletion answered although the server crashed: {sent:?}");
    assert_recovered_as(&mut server, "snapshot.destroyed", "missing_snapshot", &id).await;
    let (status, _) = server.get(&format!("/snapshot/{id}")).await;
    assert_eq!(status, 404, "the interrupted deletion is finished");
}

#[tokio::test]
async fn a_crash_while_making_the_first_cluster_is_undone_at_the_next_start() {
    let mut server = TestServer::start_crashing_at("", "initdb.dataset_created");
    assert_recovered(&mut server, "initdb.dataset_created", "data").await;
    let clone = server.create_clone("after").await;
    connect(&clone).await.expect("a clone of the cluster made again");
}

#[tokio::test]
async fn a_crash_while_making_a_warm_clone_leaves_no_dataset() {
    // The first warm clone's dataset is made, then the engine crashes before its server starts.
    let mut server = TestServer::start_crashing_at("warm_pool_size = 1", "clone.dataset_created");
    server.recover_from_crash().await;
    let (_, status) = server.get("/status").await;
    // A warm clone is nobody's: its leftover goes at the next start, before reconciliation.
    assert_eq!(differences(&status), Vec::new());
    server.wait_warm(1.0).await;
    let datasets = crate::harness::clone_datasets(&server.pool_dir());
    assert_eq!(datasets.len(), 1, "only the new warm clone's dataset: {datasets:?}");
    let claimed = server.create_clone("claimed").await;
    connect(&claimed).await.expect("the warm pool serves creates after the crash");
}
