//! `scion snapshot list|create [--at]|destroy [--force]` (and DBLab's `delete`) in table and JSON
//! output.

use crate::support::{PASSWORD, TestServer, normalize, without_volatile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_commands() {
    let server = TestServer::start("").await;
    let client = server.client();
    let first = client.snapshots(None).await.unwrap().remove(0).id;

    let run = server.scion(&["snapshot", "list"]).await;
    assert_eq!(
        normalize(run.ok(), &[(first.as_str(), "<FIRST>")]),
        "ID  DATA STATE AT  CREATED  BRANCH  CLONES  SIZE  PROTECTED  MASKED\n\
         <FIRST>  <TIME>  <TIME>  main  0  <SIZE>  no  no\n"
    );
    let json = server.scion(&["snapshot", "list", "-o", "json"]).await.json();
    assert_eq!(without_volatile(json), without_volatile(server.raw("/snapshots").await));

    // A new snapshot comes first in the list.
    let run = server.scion(&["snapshot", "create"]).await;
    let second = client.snapshots(None).await.unwrap().remove(0).id;
    assert_ne!(second, first);
    let replacements = [(second.as_str(), "<SECOND>"), (first.as_str(), "<FIRST>")];
    assert_eq!(
        normalize(run.ok(), &replacements),
        "ID  <SECOND>\nPool  dblab_pool\nBranch  main\nData state at  <TIME>\n\
         Created at  <TIME>\nSize  <SIZE>\nClones  0\n"
    );
    let json = server.scion(&["snapshot", "list", "--branch", "main", "-o", "json"]).await.json();
    let ids: Vec<&str> =
        json.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);

    // A snapshot with a clone needs --force, which destroys the clone too.
    server
        .scion(&[
            "clone",
            "create",
            "--id",
            "on-second",
            "--snapshot-id",
            &second,
            "--username",
            "u",
            "--password",
            PASSWORD,
        ])
        .await
        .ok();
    let run = server.scion(&["snapshot", "destroy", &second]).await;
    run.expect_code(1);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    let json =
        server.scion(&["snapshot", "destroy", &second, "--force", "-o", "json"]).await.json();
    assert_eq!(json, serde_json::json!({"status": "OK", "message": "Deleted snapshot"}));
    assert!(client.clone_status("on-second").await.unwrap_err().is_not_found());
    let json = server.scion(&["snapshot", "list", "-o", "json"]).await.json();
    assert_eq!(json.as_array().unwrap().len(), 1);

    // Table output of destroy, and an ID the server would refuse (a usage error, exit 2).
    server.scion(&["snapshot", "create"]).await.ok();
    let third = client.snapshots(None).await.unwrap().remove(0).id;
    let run = server.scion(&["snapshot", "destroy", &third]).await;
    assert_eq!(run.ok(), format!("Deleted snapshot: {third}\n"));
    // DBLab's verb for the same.
    server.scion(&["snapshot", "create"]).await.ok();
    let fourth = client.snapshots(None).await.unwrap().remove(0).id;
    let run = server.scion(&["snapshot", "delete", &fourth]).await;
    assert_eq!(run.ok(), format!("Deleted snapshot: {fourth}\n"));
    assert!(client.snapshots(None).await.unwrap().iter().all(|snapshot| snapshot.id != fourth));
    let run = server.scion(&["snapshot", "destroy", "no-at-sign"]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("no-at-sign"), "{}", run.stderr);

    // A point in time reaches the server, which refuses it in logical mode.
    for at in ["2026-12-02T10:00:00Z", "0/3000148"] {
        let run = server.scion(&["snapshot", "create", "--at", at]).await;
        run.expect_code(1);
        assert!(run.stderr.contains("needs physical mode"), "{}", run.stderr);
    }
    server.destroy_all_clones().await;
}
