//! Create, connect, isolate, reset and destroy.

use std::collections::HashSet;

use api_types::WebhookEvent;
use engine::{CloneState, ResetTarget};

use crate::harness::{PASSWORD, TestEngine, config, connect, request};

#[tokio::test]
async fn a_clone_is_a_private_writable_database() {
    let test = TestEngine::start(config(10)).await;
    let first = test.create("first").await;
    let second = test.create("second").await;
    assert_ne!(first.record.port, second.record.port);

    let client = connect(&first, PASSWORD).await.expect("connect with the clone's password");
    client.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)").await.unwrap();
    let row = client.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    let other = connect(&second, PASSWORD).await.unwrap();
    let missing = other.query_one("SELECT to_regclass('t') IS NULL", &[]).await.unwrap();
    assert!(missing.get::<_, bool>(0), "a write in one clone is visible in another");
    let workers = other.query_one("SHOW max_logical_replication_workers", &[]).await.unwrap();
    assert_eq!(workers.get::<_, String>(0), "0", "clones pull nothing from publishers");
    let mut replicating = request("replicating");
    replicating.extra_conf.insert("max_logical_replication_workers".to_owned(), "2".to_owned());
    test.engine.create_clone(replicating).await.unwrap();
    let replicating = connect(&test.ready("replicating").await, PASSWORD).await.unwrap();
    let workers = replicating.query_one("SHOW max_logical_replication_workers", &[]).await.unwrap();
    assert_eq!(workers.get::<_, String>(0), "2", "a request overrides Scion's defaults");

    assert!(connect(&first, "Wrong-password-123!").await.is_err(), "a wrong password logs in");

    let events: Vec<_> = test.events.events().into_iter().map(|event| event.event_type).collect();
    assert_eq!(events.iter().filter(|event| **event == WebhookEvent::CloneCreate).count(), 3);
    assert!(first.record.password_verifier.starts_with("SCRAM-SHA-256$"));
    assert!(!first.record.password_verifier.contains(PASSWORD));
}

#[tokio::test]
async fn reset_discards_changes_and_keeps_port_and_credentials() {
    let test = TestEngine::start(config(5)).await;
    let clone = test.create("resettable").await;
    let client = connect(&clone, PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE scratch (v int)").await.unwrap();
    drop(client);

    test.engine.reset_clone("resettable", ResetTarget::Current).await.unwrap();
    let reset = test.ready("resettable").await;
    assert_eq!(reset.record.port, clone.record.port);
    let client = connect(&reset, PASSWORD).await.expect("same credentials after reset");
    let gone = client.query_one("SELECT to_regclass('scratch') IS NULL", &[]).await.unwrap();
    assert!(gone.get::<_, bool>(0), "reset kept the clone's changes");
    assert!(test.events.events().iter().any(|event| event.event_type == WebhookEvent::CloneReset));
}

#[tokio::test]
async fn destroy_removes_everything_and_refuses_protected_clones() {
    let test = TestEngine::start(config(5)).await;
    let mut protected = request("keeper");
    protected.protection.protected = true;
    test.engine.create_clone(protected).await.unwrap();
    let keeper = test.ready("keeper").await;
    assert!(keeper.record.protected);
    assert!(keeper.record.protected_till.is_some(), "the default lease applies");

    let refused = test.engine.destroy_clone("keeper").await.unwrap_err();
    assert!(refused.to_string().contains("protected"), "{refused}");
    assert_eq!(test.engine.clone_view("keeper").unwrap().record.state, CloneState::Ok);

    test.engine
        .update_clone(
            "keeper",
            engine::ProtectionRequest { protected: false, duration_minutes: None },
        )
        .await
        .unwrap();
    test.engine.destroy_clone("keeper").await.unwrap();
    test.wait_gone("keeper").await;
    assert!(connect(&keeper, PASSWORD).await.is_err(), "the server still runs");
    assert!(!test.pool.mountpoint().join(&keeper.record.dataset).exists());
    assert!(test.events.events().iter().any(|event| event.event_type == WebhookEvent::CloneDelete));
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let test = TestEngine::start(config(5)).await;
    let mut weak = request("weak");
    weak.password = "password".to_owned();
    assert!(test.engine.create_clone(weak).await.is_err());
    let mut hostile = request("../../etc");
    hostile.id = Some("../../etc".to_owned());
    assert!(test.engine.create_clone(hostile).await.is_err());
    let mut unknown = request("unknown-snapshot");
    unknown.snapshot_id = Some("test_pool/data@nope".to_owned());
    assert!(matches!(test.engine.create_clone(unknown).await, Err(engine::Error::NotFound(_))));
    let mut reserved = request("reserved-setting");
    reserved.extra_conf.insert("port".to_owned(), "1".to_owned());
    assert!(test.engine.create_clone(reserved).await.is_err());
    assert!(test.engine.clones().is_empty());
    test.create("twin").await;
    assert!(matches!(
        test.engine.create_clone(request("twin")).await,
        Err(engine::Error::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn concurrent_creates_get_distinct_ports() {
    let test = TestEngine::start(config(25)).await;
    let creates = (0..20).map(|n| {
        let engine = test.engine.clone();
        tokio::spawn(async move { engine.create_clone(request(&format!("c{n}"))).await.unwrap() })
    });
    let mut ports = HashSet::new();
    for create in creates {
        let view = create.await.unwrap();
        assert!(ports.insert(view.record.port), "port {} given twice", view.record.port);
    }
    for n in 0..20 {
        test.ready(&format!("c{n}")).await;
    }
    assert_eq!(test.engine.clones().len(), 20);
}

#[tokio::test]
async fn snapshots_record_main_and_refuse_deletion_with_clones() {
    let test = TestEngine::start(config(5)).await;
    let first = test.engine.snapshots();
    assert_eq!(first.len(), 1, "an empty pool gets a first snapshot");
    let second = test.engine.create_snapshot().await.unwrap();
    assert_eq!(second.record.parent_id.as_deref(), Some(first[0].record.id.as_str()));
    assert!(second.is_head);
    let listed: Vec<_> = test.engine.snapshots().into_iter().map(|view| view.record.id).collect();
    assert_eq!(listed, [second.record.id.clone(), first[0].record.id.clone()], "newest first");

    let clone = test.create("on-second").await;
    assert_eq!(clone.record.snapshot_id, second.record.id, "clones start from the head of main");
    let refused = test.engine.delete_snapshot(&second.record.id, false).await.unwrap_err();
    assert!(refused.to_string().contains("on-second"), "{refused}");
    let refused = test.engine.delete_snapshot(&first[0].record.id, false).await;
    assert!(refused.is_ok(), "an old snapshot without clones can go: {refused:?}");
    test.engine.delete_snapshot(&second.record.id, true).await.unwrap_err();
    // The only snapshot left is the head of main: it stays.
    assert_eq!(test.engine.snapshots().len(), 1);
}

#[tokio::test]
async fn the_lease_checker_warns_once_then_lifts_an_expired_protection() {
    let mut config = config(3);
    // Leases are capped at 3 s and checked every 100 ms; the warning window covers them.
    config.cloning.protection_lease_duration_minutes = 0.05;
    config.cloning.protection_max_duration_minutes = 0.05;
    config.cloning.protection_check_interval = std::time::Duration::from_millis(100);
    let test = TestEngine::start(config).await;
    let mut protected = request("leased");
    protected.protection.protected = true;
    test.engine.create_clone(protected).await.unwrap();
    let leased = test.ready("leased").await;
    assert!(leased.record.protected);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while test.engine.clone_view("leased").unwrap().record.protected {
        assert!(tokio::time::Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let record = test.engine.clone_view("leased").unwrap().record;
    assert_eq!(record.protected_till, None);
    assert!(!record.protection_warning_sent);
    let events: Vec<_> = test.events.events().into_iter().map(|event| event.event_type).collect();
    let count = |wanted| events.iter().filter(|event| **event == wanted).count();
    assert_eq!(count(WebhookEvent::CloneProtectionExpiring), 1, "{events:?}");
    assert_eq!(count(WebhookEvent::CloneProtectionExpired), 1, "{events:?}");
    // An unprotected clone is left alone afterwards.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(test.events.events().len(), events.len());
}

/// Inserts into `table` over `client` until the connection breaks; counts the inserts that
/// committed in `done` and returns the error that ended the loop.
async fn write_until_cut(
    client: tokio_postgres::Client,
    table: &'static str,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio_postgres::Error {
    loop {
        let insert = format!(
            "INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g"
        );
        match client.batch_execute(&insert).await {
            Ok(()) => {
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Err(error) => return error,
        }
    }
}

/// Waits until `done` has counted `at_least` inserts.
async fn wait_for_writes(done: &std::sync::atomic::AtomicUsize, at_least: usize) {
    while done.load(std::sync::atomic::Ordering::SeqCst) < at_least {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reset_and_a_destroy_during_heavy_writes_skip_the_shutdown_checkpoint_and_keep_commits() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    let test = TestEngine::start(config(5)).await;
    let clone = test.create("busy").await;
    let client = connect(&clone, PASSWORD).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE kept (v int, pad text); \
             INSERT INTO kept SELECT g, 'committed' FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    // Writes run while the commit is taken: it holds what was committed before it was asked.
    let done = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_until_cut(client, "kept", done.clone()));
    wait_for_writes(&done, 2).await;
    let commit = test.engine.commit_clone("busy", "before the reset").await.unwrap();
    let before_reset = done.load(std::sync::atomic::Ordering::SeqCst);
    wait_for_writes(&done, before_reset + 3).await;

    test.engine.reset_clone("busy", ResetTarget::Current).await.unwrap();
    let reset = test.ready("busy").await;
    let cut = writer.await.unwrap();
    assert!(cut.is_closed() || cut.as_db_error().is_some(), "the writer ended with {cut}");
    assert_eq!(reset.record.port, clone.record.port);
    assert_eq!(reset.record.revision, 1, "the commit keeps revision 0");
    let client = connect(&reset, PASSWORD).await.expect("same credentials after reset");
    let gone = client.query_one("SELECT to_regclass('kept') IS NULL", &[]).await.unwrap();
    assert!(gone.get::<_, bool>(0), "the reset kept the clone's writes");
    let log = std::fs::read_to_string(test.engine.clone_log_path("busy").unwrap()).unwrap();
    assert!(log.contains("received immediate shutdown request"), "{log}");
    assert!(!log.contains("received fast shutdown request"), "a reset checkpointed: {log}");

    // The commit holds the rows committed before it, whole (a clone of it starts and counts).
    let mut from_commit = request("from-commit");
    from_commit.snapshot_id = Some(commit.record.id.clone());
    test.engine.create_clone(from_commit).await.unwrap();
    let committed = connect(&test.ready("from-commit").await, PASSWORD).await.unwrap();
    let rows = committed
        .query_one("SELECT count(*) FILTER (WHERE pad = 'committed'), count(*) FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 100);
    assert!(rows.get::<_, i64>(1) >= 100 + 2 * 5000, "the commit lost committed inserts");
    assert_eq!(rows.get::<_, i64>(1) % 5000, 100, "the commit holds a half insert");

    // A destroy under writes ends every process before the dataset goes.
    client.batch_execute("CREATE TABLE scratch (v int, pad text)").await.unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_until_cut(client, "scratch", done.clone()));
    wait_for_writes(&done, 3).await;
    let log_path = test.engine.clone_log_path("busy").unwrap();
    test.engine.destroy_clone("busy").await.unwrap();
    test.wait_gone("busy").await;
    let cut = writer.await.unwrap();
    assert!(cut.is_closed() || cut.as_db_error().is_some(), "the writer ended with {cut}");
    let storage = test.pool.open().await;
    let dataset = storage::DatasetName::new(reset.record.dataset.clone()).unwrap();
    let dataset = storage::ThinStorage::mountpoint(&storage, &dataset);
    assert!(!dataset.exists(), "{} is left", dataset.display());
    let log = std::fs::read_to_string(log_path).unwrap();
    assert_eq!(log.matches("received immediate shutdown request").count(), 2, "{log}");
    assert!(!log.contains("received fast shutdown request"), "a destroy checkpointed: {log}");
}
