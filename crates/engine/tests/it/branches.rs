//! Branches on btrfs and ZFS: commits, forks, the log, deletion rules, the retention sweeper,
//! and history surviving an engine restart.

use std::time::Duration;

use api_types::WebhookEvent;
use chrono::Utc;
use engine::{CloneRequest, CloneView, Error, ProtectionUpdate};
use storage::ThinStorage;
use test_support::PoolKind;

use crate::harness::{PASSWORD, TestEngine, config, connect, request};

on_every_backend!(history_of_commits_and_forks, deletion_rules);

fn on_branch(id: &str, branch: &str) -> CloneRequest {
    CloneRequest { branch: Some(branch.to_owned()), ..request(id) }
}

async fn rows(view: &CloneView) -> Vec<i32> {
    let client = connect(view, PASSWORD).await.expect("connect to the clone");
    client
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn execute(view: &CloneView, sql: &str) {
    let client = connect(view, PASSWORD).await.expect("connect to the clone");
    client.batch_execute(sql).await.unwrap();
}

async fn create_on(test: &TestEngine, id: &str, branch: &str) -> CloneView {
    test.engine.create_clone(on_branch(id, branch)).await.expect("create clone");
    test.ready(id).await
}

async fn history_of_commits_and_forks(kind: PoolKind) {
    let mut test = TestEngine::start_on(kind, config(10)).await;
    let root = test.engine.branch("main").unwrap().head;

    // A commit on main holds what the clone had at that moment, and nothing written later.
    let source = test.create("source").await;
    execute(&source, "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2), (3)").await;
    let first = test.engine.commit_clone("source", "three rows").await.unwrap();
    execute(&source, "INSERT INTO t VALUES (4)").await;
    assert_eq!(first.record.branch, "main");
    assert_eq!(first.record.parent_id.as_deref(), Some(root.id.as_str()));
    assert_eq!(first.record.message, "three rows");
    assert_eq!(test.engine.branch("main").unwrap().head.id, first.record.id);

    // A branch forked from main starts with exactly the committed data.
    let dev = test.engine.create_branch("dev", Some("main"), None).await.unwrap();
    assert_eq!(dev.record.base_snapshot_id.as_deref(), Some(first.record.id.as_str()));
    assert_eq!(dev.head.parent_id.as_deref(), Some(first.record.id.as_str()));
    assert_eq!(dev.parent.as_deref(), Some("main"));
    let worker = create_on(&test, "worker", "dev").await;
    assert_eq!(worker.record.branch, "dev");
    assert!(worker.record.dataset.starts_with("branch/dev/worker/"), "{}", worker.record.dataset);
    assert_eq!(rows(&worker).await, [1, 2, 3], "the branch sees the commit, not later writes");

    // Commits on dev move dev's head, not main's.
    execute(&worker, "INSERT INTO t VALUES (10)").await;
    let dev_commit = test.engine.commit_clone("worker", "ten").await.unwrap();
    assert_eq!(dev_commit.record.parent_id.as_deref(), Some(dev.head.id.as_str()));
    execute(&worker, "INSERT INTO t VALUES (11)").await;
    let dev_second = test.engine.commit_clone("worker", "eleven").await.unwrap();
    assert_eq!(dev_second.record.parent_id.as_deref(), Some(dev_commit.record.id.as_str()));
    assert_eq!(test.engine.branch("main").unwrap().head.id, first.record.id);

    // A branch of a branch, from an older commit given by ID.
    let dev2 = test.engine.create_branch("dev2", None, Some(&dev_commit.record.id)).await.unwrap();
    assert_eq!(dev2.parent.as_deref(), Some("dev"));
    let reader = create_on(&test, "reader", "dev2").await;
    assert_eq!(rows(&reader).await, [1, 2, 3, 10]);

    // The log runs from the head to the root across the forks.
    let log: Vec<String> =
        test.engine.branch_log("dev2").unwrap().into_iter().map(|c| c.record.id).collect();
    assert_eq!(
        log,
        [
            dev2.head.id.clone(),
            dev_commit.record.id.clone(),
            dev.head.id.clone(),
            first.record.id.clone(),
            root.id.clone()
        ]
    );
    let dev_log = test.engine.branch_log("dev").unwrap();
    let messages: Vec<&str> = dev_log.iter().map(|c| c.record.message.as_str()).collect();
    assert_eq!(messages, ["eleven", "ten", "", "three rows", ""]);
    assert_eq!(dev_log[0].heads_of, ["dev"]);
    assert_eq!(dev_log[1].forks, ["dev2"]);
    let mut children = dev_log[1].children.clone();
    children.sort();
    let mut expected = vec![dev_second.record.id.clone(), dev2.head.id.clone()];
    expected.sort();
    assert_eq!(children, expected, "dev's next commit and dev2's first snapshot");
    assert_eq!(dev_log[2].clones, ["worker"], "the clone was made from dev's first snapshot");
    assert_eq!(test.engine.branch("dev").unwrap().num_snapshots, 5);
    let details = test.engine.commit(&dev_commit.record.id).unwrap();
    assert_eq!(details.record.message, "ten");

    // Everything survives an engine restart, and the clones keep their data.
    let summary = |engine: &engine::Engine| -> Vec<(String, String, Option<String>, usize)> {
        engine
            .branches()
            .into_iter()
            .map(|b| (b.record.name, b.head.id, b.parent, b.num_snapshots))
            .collect()
    };
    let before = summary(&test.engine);
    let log_before: Vec<String> =
        test.engine.branch_log("dev2").unwrap().into_iter().map(|c| c.record.id).collect();
    test.restart().await;
    assert_eq!(summary(&test.engine), before);
    let log_after: Vec<String> =
        test.engine.branch_log("dev2").unwrap().into_iter().map(|c| c.record.id).collect();
    assert_eq!(log_after, log_before);
    let reader = test.ready("reader").await;
    assert_eq!(rows(&reader).await, [1, 2, 3, 10]);
    assert!(
        test.engine.reconciliation().differences.is_empty(),
        "{:?}",
        test.engine.reconciliation()
    );
}

async fn deletion_rules(kind: PoolKind) {
    let test = TestEngine::start_on(kind, config(10)).await;
    test.engine.create_branch("dev", Some("main"), None).await.unwrap();
    test.engine.create_branch("dev2", Some("dev"), None).await.unwrap();
    let dev_head = test.engine.branch("dev").unwrap().head.id;
    create_on(&test, "on-dev2", "dev2").await;

    let refused = |result: Result<(), Error>, words: &str| match result {
        Err(Error::Refused(message)) => assert!(message.contains(words), "{message}"),
        other => panic!("expected a refusal mentioning {words:?}, got {other:?}"),
    };
    refused(test.engine.delete_branch("main").await, "main");
    refused(test.engine.delete_branch("dev").await, "fork point of branch(es) dev2");
    refused(test.engine.delete_branch("dev2").await, "on-dev2");
    refused(test.engine.delete_snapshot(&dev_head, true).await, "fork point");
    let dev2_head = test.engine.branch("dev2").unwrap().head.id;
    refused(test.engine.delete_snapshot(&dev2_head, false).await, "first snapshot of branch");
    assert!(matches!(test.engine.delete_branch("nope").await, Err(Error::NotFound(_))));

    test.engine
        .update_branch("dev2", ProtectionUpdate { protected: Some(true), ..Default::default() })
        .unwrap();
    test.engine.destroy_clone("on-dev2").await.unwrap();
    test.wait_gone("on-dev2").await;
    refused(test.engine.delete_branch("dev2").await, "protected");
    test.engine
        .update_branch("dev2", ProtectionUpdate { protected: Some(false), ..Default::default() })
        .unwrap();

    test.engine.delete_branch("dev2").await.unwrap();
    test.engine.delete_branch("dev").await.unwrap();
    let names: Vec<String> = test.engine.branches().into_iter().map(|b| b.record.name).collect();
    assert_eq!(names, ["main"]);
    assert!(
        test.engine.snapshots().iter().all(|s| s.record.branch == "main"),
        "the branches' snapshots are gone from the catalog"
    );
    let listing = test.engine.pool().storage().list().await.unwrap();
    assert!(
        listing.datasets.iter().all(|d| !d.name.as_str().starts_with("branch/dev")),
        "the branches' datasets are gone from the pool: {:?}",
        listing.datasets
    );
    assert!(listing.snapshots.iter().all(|s| !s.name.to_string().starts_with("branch/")));
    let events: Vec<_> = test.events.events().into_iter().map(|e| e.event_type).collect();
    assert_eq!(events.iter().filter(|e| **e == WebhookEvent::BranchCreate).count(), 2);
    assert_eq!(events.iter().filter(|e| **e == WebhookEvent::BranchDelete).count(), 2);

    // The name is free again.
    test.engine.create_branch("dev", Some("main"), None).await.unwrap();
}

#[tokio::test]
async fn bad_branch_requests_are_refused_with_reasons() {
    let test = TestEngine::start(config(2)).await;
    let invalid = |result: Result<engine::BranchView, Error>| match result {
        Err(Error::InvalidInput(message)) => message,
        other => panic!("expected invalid input, got {other:?}"),
    };
    invalid(test.engine.create_branch("../x", Some("main"), None).await);
    invalid(test.engine.create_branch("-x", Some("main"), None).await);
    invalid(test.engine.create_branch("x", None, None).await);
    invalid(test.engine.create_branch("snapshot", Some("main"), None).await);
    invalid(test.engine.create_branch("x", Some("x"), None).await);
    let message = invalid(test.engine.create_branch("x", Some("ghost"), None).await);
    assert!(message.contains("ghost"), "{message}");
    test.engine.create_branch("x", Some("main"), None).await.unwrap();
    assert!(matches!(
        test.engine.create_branch("x", Some("main"), None).await,
        Err(Error::AlreadyExists(_))
    ));
    let nothing = test.engine.update_branch("x", ProtectionUpdate::default());
    assert!(matches!(nothing, Err(Error::InvalidInput(_))), "{nothing:?}");
}

#[tokio::test]
async fn the_sweeper_deletes_only_unused_unprotected_objects_within_its_budget() {
    let mut config = config(5);
    // Sweeps run only when the test asks; schedules fall due almost at once.
    config.retention.check_interval = Duration::from_secs(3600);
    config.retention.unused_branch_minutes = 0.001;
    config.retention.unused_snapshot_minutes = 0.001;
    config.retention.max_deletions_per_tick = 1;
    let test = TestEngine::start(config).await;
    for name in ["idle", "guarded", "busy"] {
        test.engine.create_branch(name, Some("main"), None).await.unwrap();
    }
    test.engine
        .update_branch("guarded", ProtectionUpdate { protected: Some(true), ..Default::default() })
        .unwrap();
    create_on(&test, "worker", "busy").await;

    let first = test.engine.sweep().await;
    assert_eq!(first.scheduled, ["idle"]);
    assert!(first.deleted.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = test.engine.sweep().await;
    assert_eq!(second.deleted, ["idle"]);
    let names: Vec<String> = test.engine.branches().into_iter().map(|b| b.record.name).collect();
    assert_eq!(names, ["busy", "guarded", "main"]);

    // A schedule on a branch in use is cleared, not carried out.
    let past = Utc::now() - chrono::Duration::seconds(1);
    test.engine
        .update_branch("busy", ProtectionUpdate { delete_at: Some(past), ..Default::default() })
        .unwrap();
    let third = test.engine.sweep().await;
    assert_eq!(third.cleared, ["busy"]);
    assert_eq!(test.engine.branch("busy").unwrap().record.delete_at, None);

    // At most max_deletions_per_tick per sweep.
    for name in ["old1", "old2"] {
        test.engine.create_branch(name, Some("main"), None).await.unwrap();
        test.engine
            .update_branch(name, ProtectionUpdate { delete_at: Some(past), ..Default::default() })
            .unwrap();
    }
    let fourth = test.engine.sweep().await;
    assert_eq!(fourth.deleted.len(), 1, "{fourth:?}");
    let fifth = test.engine.sweep().await;
    assert_eq!(fifth.deleted.len(), 1, "{fifth:?}");
    assert!(test.engine.branch("old1").is_err() && test.engine.branch("old2").is_err());

    // A snapshot of a clone that nothing uses goes; the clone's branch head stays.
    let leaf = test.engine.snapshot_clone("worker").await.unwrap();
    assert!(!leaf.is_head);
    let scheduled = test.engine.sweep().await;
    assert!(scheduled.scheduled.contains(&leaf.record.id), "{scheduled:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let swept = test.engine.sweep().await;
    assert_eq!(swept.deleted, std::slice::from_ref(&leaf.record.id));
    assert!(test.engine.snapshot(&leaf.record.id).is_err());
    assert!(test.engine.branch("busy").is_ok());
    let worker = test.ready("worker").await;
    assert_eq!(worker.record.branch, "busy");
    let listing = test.engine.pool().storage().list().await.unwrap();
    assert!(
        listing.datasets.iter().any(|d| d.name.as_str() == worker.record.dataset),
        "the clone's dataset went with its last snapshot: {:?}",
        listing.datasets
    );
}

#[tokio::test]
async fn deleting_commits_never_takes_a_running_clones_data() {
    let test = TestEngine::start(config(3)).await;
    let root = test.engine.branch("main").unwrap().head.id;
    let source = test.create("source").await;
    execute(&source, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)").await;
    let older = test.engine.commit_clone("source", "one").await.unwrap().record.id;
    execute(&source, "INSERT INTO t VALUES (2)").await;
    let newer = test.engine.commit_clone("source", "two").await.unwrap().record.id;

    // The older commit is spliced out of main's history; then the head goes back to the root.
    test.engine.delete_snapshot(&older, false).await.unwrap();
    let log: Vec<String> =
        test.engine.branch_log("main").unwrap().into_iter().map(|c| c.record.id).collect();
    assert_eq!(log, [newer.clone(), root.clone()]);
    test.engine.delete_snapshot(&newer, false).await.unwrap();
    assert_eq!(test.engine.branch("main").unwrap().head.id, root);

    // The clone whose dataset held both commits still runs on its data.
    execute(&source, "INSERT INTO t VALUES (3)").await;
    assert_eq!(rows(&source).await, [1, 2, 3]);
    test.engine.destroy_clone("source").await.unwrap();
    test.wait_gone("source").await;
    let listing = test.engine.pool().storage().list().await.unwrap();
    assert!(
        listing.datasets.iter().all(|d| !d.name.as_str().starts_with("branch/main/source")),
        "the clone's dataset and its parent are gone: {:?}",
        listing.datasets
    );
}
