//! `scion branch` in DBLab's flag forms and as subcommands, `scion switch`, `scion commit`,
//! `scion log`, `scion snapshot create --clone-id` and `scion snapshot update`, against a real
//! server; the current branch lives in the CLI's configuration file.

use crate::support::{PASSWORD, TestServer, normalize, without_volatile};

/// `DataStateAt: Thu, 02 May 2024 09:00:00 +0000` → `DataStateAt: <DSA>`.
fn without_dates(text: &str) -> String {
    let date =
        regex::Regex::new(r"DataStateAt: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}")
            .expect("a valid pattern");
    date.replace_all(text, "DataStateAt: <DSA>").into_owned()
}

async fn create_clone(server: &TestServer, id: &str) {
    server
        .scion(&["clone", "create", "--id", id, "--username", "u", "--password", PASSWORD])
        .await
        .ok();
}

async fn insert(server: &TestServer, clone: &str, sql: &str) {
    let clone = server.client().clone_status(clone).await.expect("read the clone");
    let conn_str = format!("{} password={PASSWORD}", clone.db.conn_str);
    let (db, connection) =
        tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await.expect("connect");
    let connection = tokio::spawn(connection);
    db.batch_execute(sql).await.expect("run SQL in the clone");
    drop(db);
    connection.await.expect("join the connection").expect("close the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_commands() {
    let server = TestServer::start("").await;
    let client = server.client();
    assert_eq!(server.scion(&["branch"]).await.ok(), "* main\n");

    // A commit on main, then `scion branch dev` forks from the current branch and switches.
    create_clone(&server, "src").await;
    insert(&server, "src", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)").await;
    let run = server.scion(&["commit", "--clone-id", "src", "-m", "first commit"]).await;
    let c1 = client.branches().await.unwrap().remove(0).snapshot_id;
    assert_eq!(run.ok(), format!("Committed {c1}\n"));
    assert_eq!(server.scion(&["branch", "dev"]).await.ok(), "Switched to new branch 'dev'\n");
    assert_eq!(server.scion(&["branch"]).await.ok(), "* dev\n  main\n");

    // A clone goes on the current branch; a commit there; the log is git-like.
    create_clone(&server, "on-dev").await;
    assert_eq!(client.clone_status("on-dev").await.unwrap().branch, "dev");
    let json = server
        .scion(&["commit", "--clone-id", "on-dev", "--message", "on dev", "-o", "json"])
        .await
        .json();
    let c2 = json["snapshotID"].as_str().unwrap().to_owned();
    let log = client.branch_log("dev").await.unwrap();
    let ids: Vec<&str> = log.iter().map(|commit| commit.id.as_str()).collect();
    let [head, dev_first, main_head, root] = ids.as_slice() else { panic!("{ids:?}") };
    assert_eq!((*head, *main_head), (c2.as_str(), c1.as_str()));
    let replacements =
        [(c2.as_str(), "<C2>"), (*dev_first, "<DEV>"), (c1.as_str(), "<C1>"), (*root, "<ROOT>")];
    // `normalize` collapses the messages' four-space indent to two.
    let expected = "\
snapshot <C2> (HEAD -> dev)
DataStateAt: <DSA>
Clones: 0

  on dev

snapshot <DEV>
DataStateAt: <DSA>
Clones: 1

snapshot <C1> (HEAD -> main)
DataStateAt: <DSA>
Clones: 0

  first commit

snapshot <ROOT>
DataStateAt: <DSA>
Clones: 1

";
    let run = server.scion(&["log"]).await;
    assert_eq!(without_dates(&normalize(run.ok(), &replacements)), expected);
    let run = server.scion(&["branch", "log", "dev"]).await;
    assert_eq!(without_dates(&normalize(run.ok(), &replacements)), expected);
    let json = server.scion(&["log", "main", "-o", "json"]).await.json();
    assert_eq!(without_volatile(json), without_volatile(server.raw("/branch/main/log").await));

    // The subcommand spellings; a branch of a branch.
    let run = server.scion(&["branch", "create", "dev2", "--parent-branch", "dev"]).await;
    assert_eq!(run.ok(), "Switched to new branch 'dev2'\n");
    assert_eq!(server.scion(&["branch", "list"]).await.ok(), "  dev\n* dev2\n  main\n");
    let json = server.scion(&["branch", "-o", "json"]).await.json();
    assert_eq!(json, server.raw("/branches").await);
    assert_eq!(server.scion(&["switch", "main"]).await.ok(), "Switched to branch 'main'\n");
    let run = server.scion(&["switch", "nope"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("\"nope\" not found"), "{}", run.stderr);

    // Protection, and every refusal on the way to deleting dev2.
    let run = server.scion(&["branch", "dev2", "--protected", "true"]).await;
    assert_eq!(run.ok(), "Branch dev2: protected\n");
    assert_eq!(server.scion(&["branch"]).await.ok(), "  dev\n  dev2 [protected]\n* main\n");
    let run = server.scion(&["branch", "-d", "dev2"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("is protected"), "{}", run.stderr);
    let run = server.scion(&["branch", "dev2", "-p", "2h"]).await;
    assert!(
        normalize(run.ok(), &[]).starts_with("Branch dev2: protected until "),
        "{}",
        run.stdout
    );
    let run = server.scion(&["branch", "dev2", "-p", "false"]).await;
    assert_eq!(run.ok(), "Branch dev2: not protected\n");
    let run = server.scion(&["branch", "--delete", "dev"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("fork point"), "{}", run.stderr);
    assert_eq!(server.scion(&["branch", "delete", "dev2"]).await.ok(), "Deleted branch: dev2\n");
    server.scion(&["switch", "dev"]).await.ok();
    let run = server.scion(&["branch", "-d", "dev"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("current branch"), "{}", run.stderr);
    server.scion(&["switch", "main"]).await.ok();
    let run = server.scion(&["branch", "-d", "dev"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("has clones: on-dev"), "{}", run.stderr);
    let run = server.scion(&["branch", "-d", "main"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("current branch"), "{}", run.stderr);

    // A snapshot of a clone stays on its branch without moving the head; protect a snapshot.
    let run = server.scion(&["snapshot", "create", "--clone-id", "on-dev"]).await;
    let text = normalize(run.ok(), &[]);
    assert!(text.contains("\nBranch  dev\n"), "{text}");
    assert_eq!(client.branch_log("dev").await.unwrap()[0].id, c2);
    let run = server.scion(&["snapshot", "update", &c1, "--protected", "2h"]).await;
    assert!(normalize(run.ok(), &[]).contains("\nProtection  protected until "), "{}", run.stdout);
    let json = server.scion(&["snapshot", "update", &c1, "-p", "false", "-o", "json"]).await.json();
    assert_eq!(json["protected"], false);

    // A branch from a snapshot; the current branch is kept in the CLI's file.
    let json = server.scion(&["branch", "qa", "--snapshot-id", &c1, "-o", "json"]).await.json();
    assert_eq!(json, serde_json::json!({"name": "qa"}));
    let file = std::fs::read_to_string(server.scratch().join("no-cli-config.toml")).unwrap();
    assert!(file.contains("current_branch = \"qa\""), "{file}");
    let details = client.commit_details(&client.branch_log("qa").await.unwrap()[0].id).await;
    assert_eq!(details.unwrap().parent, c1);
    let run = server.scion(&["branch", "x", "--parent-branch", "a", "--snapshot-id", &c1]).await;
    run.expect_code(2);
    server.destroy_all_clones().await;
}
