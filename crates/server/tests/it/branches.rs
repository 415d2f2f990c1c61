//! Branches over HTTP, as DBLab 4.0's clients drive them: commit a clone, fork branches from
//! branches, read the log, protect, delete with every refusal, snapshot a clone, and a restart
//! that keeps the whole history. The engine's own tests cover the sweeper and ZFS.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{PASSWORD, Receiver, TestServer, connect};

/// Rows of `t` in a clone, in order.
async fn rows(clone: &Value) -> Vec<i32> {
    let db = connect(clone).await.expect("connect to the clone");
    let found = db.query("SELECT id FROM t ORDER BY id", &[]).await.expect("read t");
    found.iter().map(|row| row.get(0)).collect()
}

async fn run(clone: &Value, sql: &str) {
    connect(clone).await.expect("connect to the clone").batch_execute(sql).await.expect(sql);
}

/// `POST /branch/snapshot`, expecting success; returns the new head's ID.
async fn commit(server: &TestServer, clone: &str, message: &str) -> String {
    let (status, body) =
        server.post("/branch/snapshot", json!({"cloneID": clone, "message": message})).await;
    assert_eq!(status, 200, "{body}");
    body["snapshotID"].as_str().expect("a snapshot ID").to_owned()
}

async fn create_branch(server: &TestServer, body: Value) -> (u16, Value) {
    server.post("/branch", body).await
}

/// Creates a clone on `branch` and waits until it is ready.
async fn clone_on(server: &TestServer, id: &str, branch: &str) -> Value {
    let request =
        json!({"id": id, "branch": branch, "db": {"username": "tester", "password": PASSWORD}});
    let (status, clone) = server.post("/clone?wait=120", request).await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["status"]["code"], "OK", "{clone}\n{}", server.log());
    clone
}

async fn delete_branch(server: &TestServer, name: &str) -> (u16, Value) {
    server.call(Method::DELETE, &format!("/branch/{name}"), None).await
}

async fn patch_snapshot(server: &TestServer, id: &str, body: Value) -> (u16, Value) {
    server.call(Method::PATCH, &format!("/snapshot/{id}"), Some(body)).await
}

fn branch<'a>(branches: &'a Value, name: &str) -> &'a Value {
    branches
        .as_array()
        .expect("a list of branches")
        .iter()
        .find(|branch| branch["name"] == name)
        .unwrap_or_else(|| panic!("no branch {name} in {branches}"))
}

/// Expects a 400 whose message contains `needle`.
#[track_caller]
fn refused(answer: &(u16, Value), needle: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["code"], "BAD_REQUEST", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
}

#[tokio::test]
async fn branches_commits_log_and_deletion_rules() {
    let receiver = Receiver::start("branch-secret").await;
    let mut server = TestServer::start(&format!(
        "[[webhooks.hooks]]\nurl = \"{}\"\nsecret = \"branch-secret\"\n\
         trigger = [\"branch_create\", \"branch_delete\", \"snapshot_create\"]\n",
        receiver.url
    ))
    .await;
    let (_, snapshots) = server.get("/snapshots").await;
    let root = snapshots[0]["id"].as_str().unwrap().to_owned();
    let pool = snapshots[0]["pool"].as_str().unwrap().to_owned();

    // A commit on main: three rows; a fourth written after the commit stays in the clone.
    let source = clone_on(&server, "source", "main").await;
    run(&source, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3)").await;
    let c1 = commit(&server, "source", "three rows").await;
    assert!(c1.starts_with(&format!("{pool}/branch/main/source/r0@")), "{c1}");
    run(&source, "INSERT INTO t VALUES (4)").await;

    // `dev` from main's head sees exactly the committed data.
    let answer = create_branch(&server, json!({"branchName": "dev", "baseBranch": "main"})).await;
    assert_eq!(answer, (200, json!({"name": "dev"})));
    receiver.wait_for("branch_create", "dev", Duration::from_secs(10)).await;
    let on_dev = clone_on(&server, "on-dev", "dev").await;
    assert_eq!(on_dev["branch"], "dev");
    assert_eq!(rows(&on_dev).await, [1, 2, 3]);
    assert_eq!(rows(&source).await, [1, 2, 3, 4]);

    // Two commits on dev, then dev2 from dev.
    run(&on_dev, "INSERT INTO t VALUES (10)").await;
    let c2 = commit(&server, "on-dev", "dev one").await;
    run(&on_dev, "INSERT INTO t VALUES (11)").await;
    let c3 = commit(&server, "on-dev", "dev two").await;
    let answer = create_branch(&server, json!({"branchName": "dev2", "baseBranch": "dev"})).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let on_dev2 = clone_on(&server, "on-dev2", "dev2").await;
    assert_eq!(rows(&on_dev2).await, [1, 2, 3, 10, 11]);

    // Name rules and bases.
    let taken = create_branch(&server, json!({"branchName": "dev", "baseBranch": "main"})).await;
    refused(&taken, "already exists");
    let bad = create_branch(&server, json!({"branchName": "no/slash", "baseBranch": "main"})).await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    let no_base = create_branch(&server, json!({"branchName": "orphan"})).await;
    refused(&no_base, "base branch");
    let unknown = create_branch(&server, json!({"branchName": "x", "baseBranch": "nope"})).await;
    refused(&unknown, "nope");
    let from_snapshot = create_branch(&server, json!({"branchName": "qa", "snapshotID": c2})).await;
    assert_eq!(from_snapshot.0, 200, "{}", from_snapshot.1);

    // The list: parents, heads, counts.
    let (status, branches) = server.get("/branches").await;
    assert_eq!(status, 200, "{branches}");
    let names: Vec<&str> =
        branches.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev", "dev2", "main", "qa"]);
    let main = branch(&branches, "main");
    assert_eq!(main["parent"], "-");
    assert_eq!(main["snapshotID"], c1.as_str());
    assert_eq!(main["baseDataset"], pool.as_str());
    assert_eq!(main["numSnapshots"], 2);
    let dev = branch(&branches, "dev");
    assert_eq!(dev["parent"], "main");
    assert_eq!(dev["snapshotID"], c3.as_str());
    assert_eq!(dev["numSnapshots"], 5, "root, c1, dev's first, c2, c3");
    assert_eq!(dev["protected"], false);
    let stamp = dev["dataStateAt"].as_str().unwrap();
    assert!(stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()), "{stamp}");
    assert_eq!(dev["dataset"], format!("{pool}/branch/dev/on-dev/r0"));
    assert_eq!(branch(&branches, "dev2")["parent"], "dev");
    assert_eq!(branch(&branches, "qa")["parent"], "dev");

    // The log of dev2: head to root, each parent the next entry, messages and clone counts.
    let (status, log) = server.get("/branch/dev2/log").await;
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().unwrap().clone();
    assert_eq!(log.len(), 6, "{log:#?}");
    for pair in log.windows(2) {
        assert_eq!(pair[0]["parent"], pair[1]["id"], "{log:#?}");
    }
    assert_eq!(log[5]["id"], root.as_str());
    assert_eq!(log[5]["parent"], "-");
    let messages: Vec<&str> = log.iter().map(|c| c["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["", "dev two", "dev one", "", "three rows", ""]);
    assert_eq!(log[1]["id"], c3.as_str());
    assert_eq!(log[2]["id"], c2.as_str());
    assert_eq!(log[4]["id"], c1.as_str());
    let counts: Vec<i64> = log.iter().map(|c| c["numClones"].as_i64().unwrap()).collect();
    // on-dev2 on dev2's first, on-dev on dev's first, source on the root.
    assert_eq!(counts, [1, 0, 0, 1, 0, 1]);
    assert_eq!(log[0]["branch"], json!(["dev2"]));
    assert_eq!(log[1]["branch"], json!(["dev"]));
    assert_eq!(log[1]["root"], json!(["dev2"]));
    assert_eq!(log[4]["branch"], json!(["main"]));
    assert_eq!(log[4]["root"], json!(["dev"]));
    assert_eq!(log[3]["clones"], json!([format!("{pool}/branch/dev/on-dev/r0")]));
    assert_eq!(log[4]["clones"], json!([format!("{pool}/branch/dev")]), "dev forks from c1");
    let (_, main_log) = server.get("/branch/main/log").await;
    let main_ids: Vec<&str> =
        main_log.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(main_ids, [c1.as_str(), root.as_str()]);
    assert_eq!(server.get("/branch/nope/log").await.0, 404);
    assert_eq!(server.get("/branch/bad!name/log").await.0, 400);

    // One commit in detail.
    let (status, details) = server.get(&format!("/branch/snapshot/{c2}")).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["message"], "dev one");
    assert_eq!(details["parent"], log[3]["id"]);
    // c3, and qa's first snapshot, which holds exactly c2's data.
    let mut children: Vec<&str> =
        details["child"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    children.sort_unstable();
    assert_eq!(children.len(), 2, "{details}");
    assert!(children.contains(&c3.as_str()), "{details}");
    assert!(children.iter().any(|c| c.starts_with(&format!("{pool}/branch/qa@"))), "{details}");
    assert_eq!(details["branch"], json!([]));
    assert_eq!(details["root"], json!(["qa"]));
    assert_eq!(details["dataset"], format!("{pool}/branch/dev/on-dev/r0"));
    assert_eq!(server.get(&format!("/branch/snapshot/{pool}/data@nothing")).await.0, 404);

    // Deletion rules, each refused with a clear message.
    refused(&delete_branch(&server, "main").await, "main cannot be deleted");
    refused(&delete_branch(&server, "dev").await, "fork point of branch(es) dev2, qa");
    let protect = server.call(Method::PATCH, "/branch/qa", Some(json!({"protected": true}))).await;
    assert_eq!(protect, (200, json!({"name": "qa", "protected": true})));
    refused(&delete_branch(&server, "qa").await, "protected");
    let scheduled = server
        .call(Method::PATCH, "/branch/qa", Some(json!({"deleteAt": "2099-01-01T00:00:00Z"})))
        .await;
    assert_eq!(scheduled.0, 200, "{}", scheduled.1);
    assert_eq!(scheduled.1["protected"], false);
    assert!(scheduled.1["deleteAt"].as_str().unwrap().starts_with("2099-01-01"), "{}", scheduled.1);
    refused(&server.call(Method::PATCH, "/branch/qa", Some(json!({}))).await, "nothing to update");
    refused(&delete_branch(&server, "dev2").await, "has clones: on-dev2");
    assert_eq!(delete_branch(&server, "nope").await.0, 404);

    // Deleting qa and dev2 removes their snapshots and says so by webhook.
    let (_, before) = server.get("/snapshots").await;
    assert!(before.as_array().unwrap().iter().any(|s| s["branch"] == "qa"), "{before}");
    assert_eq!(
        delete_branch(&server, "qa").await,
        (200, json!({"status": "OK", "message": "Deleted branch"}))
    );
    let (status, _) = server.call(Method::DELETE, "/clone/on-dev2?wait=60", None).await;
    assert_eq!(status, 200);
    assert_eq!(delete_branch(&server, "dev2").await.0, 200);
    receiver.wait_for("branch_delete", "dev2", Duration::from_secs(10)).await;
    receiver.wait_for("branch_delete", "qa", Duration::from_secs(10)).await;
    let (_, after) = server.get("/snapshots").await;
    let left: Vec<&str> =
        after.as_array().unwrap().iter().map(|s| s["branch"].as_str().unwrap()).collect();
    assert!(left.iter().all(|branch| ["main", "dev"].contains(branch)), "{after}");
    assert_eq!(left.len(), 5, "{after}");
    refused(&server.get("/snapshots?branch=dev2").await, "dev2");
    let (_, on_dev_only) = server.get("/snapshots?branch=dev").await;
    assert_eq!(on_dev_only.as_array().unwrap().len(), 3, "{on_dev_only}");
    assert!(!crate::harness::clone_datasets(&server.pool_dir()).iter().any(|d| d.contains("dev2")));

    // Snapshot protection and scheduled deletion.
    refused(&patch_snapshot(&server, &c2, json!({})).await, "nothing to update");
    refused(
        &patch_snapshot(
            &server,
            &c2,
            json!({"protected": true, "deleteAt": "2099-01-01T00:00:00Z"}),
        )
        .await,
        "exclude each other",
    );
    let (status, protected) =
        patch_snapshot(&server, &c2, json!({"protected": true, "protectionDurationMinutes": 60}))
            .await;
    assert_eq!(status, 200, "{protected}");
    assert_eq!(protected["protected"], true);
    assert!(protected["protectedTill"].is_string(), "{protected}");
    assert!(protected.get("deleteAt").is_none(), "{protected}");
    let (_, scheduled) =
        patch_snapshot(&server, &c2, json!({"deleteAt": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(scheduled["protected"], false);
    assert!(scheduled.get("protectedTill").is_none(), "{scheduled}");
    let (_, lifted) = patch_snapshot(&server, &c2, json!({"protected": false})).await;
    assert_eq!(lifted["deleteAt"], scheduled["deleteAt"], "lifting protection keeps a schedule");
    let (_, shown) = server.get(&format!("/snapshot/{c2}")).await;
    assert_eq!(shown["deleteAt"], scheduled["deleteAt"]);

    // A snapshot of a clone: on its branch, without moving the head.
    let (status, empty) = server.call(Method::POST, "/snapshot/clone", None).await;
    assert_eq!(status, 400, "{empty}");
    refused(&server.post("/snapshot/clone", json!({"cloneID": ""})).await, "cloneID");
    assert_eq!(server.post("/snapshot/clone", json!({"cloneID": "nope"})).await.0, 404);
    let (status, taken) = server.post("/snapshot/clone", json!({"cloneID": "on-dev"})).await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["branch"], "dev");
    let taken_id = taken["id"].as_str().unwrap();
    assert!(taken_id.starts_with(&format!("{pool}/branch/dev/on-dev/r0@snapshot_")), "{taken}");
    receiver.wait_for("snapshot_create", taken_id, Duration::from_secs(10)).await;
    let (_, branches) = server.get("/branches").await;
    assert_eq!(branch(&branches, "dev")["snapshotID"], c3.as_str());

    // A restart keeps the branches and the history.
    let (_, branches_before) = server.get("/branches").await;
    let (_, log_before) = server.get("/branch/dev/log").await;
    server.kill();
    server.launch().await;
    assert_eq!(server.get("/branches").await, (200, branches_before));
    assert_eq!(server.get("/branch/dev/log").await, (200, log_before));
    let (_, details) = server.get(&format!("/branch/snapshot/{c2}")).await;
    assert_eq!(details["message"], "dev one");
}

/// The sweeper runs on its own timer with the `[retention]` settings: an unused branch goes,
/// one with a clone stays.
#[tokio::test]
async fn the_retention_sweeper_removes_unused_branches_on_its_timer() {
    let server = TestServer::start(
        "[retention]\ncheck_interval = \"200ms\"\nunused_branch_minutes = 0.005\n",
    )
    .await;
    for name in ["unused", "busy"] {
        let (status, body) =
            create_branch(&server, json!({"branchName": name, "baseBranch": "main"})).await;
        assert_eq!(status, 200, "{body}");
    }
    clone_on(&server, "keeper", "busy").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, branches) = server.get("/branches").await;
        let names: Vec<&str> =
            branches.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
        if !names.contains(&"unused") {
            assert!(names.contains(&"busy"), "{names:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sweeper never removed it: {names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, busy) = server.get("/branches").await;
    let busy = busy.as_array().unwrap().iter().find(|b| b["name"] == "busy").unwrap().clone();
    assert!(busy.get("deleteAt").is_none(), "a branch in use is never scheduled: {busy}");
}
