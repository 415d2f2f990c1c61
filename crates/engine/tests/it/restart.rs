//! Clones survive engine restarts (servers adopted) and host reboots (servers started again).

use engine::DifferenceKind;

use crate::harness::{PASSWORD, TestEngine, config, connect, connect_as};

#[tokio::test]
async fn clones_survive_an_engine_restart() {
    let mut test = TestEngine::start(config(5)).await;
    let clone = test.create("durable").await;
    let client = connect(&clone, PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)").await.unwrap();
    drop(client);

    test.restart().await;
    let adopted = test.engine.clone_view("durable").unwrap();
    assert_eq!(adopted.record.port, clone.record.port);
    assert!(
        test.engine.reconciliation().differences.is_empty(),
        "{:?}",
        test.engine.reconciliation()
    );
    let client = connect(&adopted, PASSWORD).await.expect("same credentials after restart");
    let row = client.query_one("SELECT count(*) FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn clones_come_back_after_a_host_reboot() {
    let mut test = TestEngine::start(config(5)).await;
    let clone = test.create("rebooted").await;
    let lost = test.create("lost-role").await;
    // The clone's role commits without waiting for the disk, so a crash can lose it: drop it,
    // as such a crash would, through a second superuser.
    let client = connect(&lost, PASSWORD).await.unwrap();
    client
        .batch_execute("CREATE ROLE helper LOGIN SUPERUSER PASSWORD 'Helper-pass-123!'")
        .await
        .unwrap();
    drop(client);
    let client = connect_as(&lost, "helper", "Helper-pass-123!").await.unwrap();
    client.batch_execute("DROP ROLE tester").await.unwrap();
    drop(client);
    assert!(connect(&lost, PASSWORD).await.is_err());
    // A reboot ends every server; the pool and the state survive.
    assert_eq!(test_support::stop_postmasters_under(test.pool.mountpoint()), 2);
    test.restart().await;
    let reconciliation = test.engine.reconciliation();
    assert_eq!(reconciliation.count(DifferenceKind::ServerRestarted), 2, "{reconciliation:?}");
    assert!(
        reconciliation.differences.iter().any(|difference| difference.object == "lost-role"
            && difference.detail.contains("was lost and is set up again")),
        "{reconciliation:?}"
    );
    let restarted = test.engine.clone_view("rebooted").unwrap();
    assert_eq!(restarted.record.port, clone.record.port);
    connect(&restarted, PASSWORD).await.expect("same credentials after a reboot");
    let restored = test.engine.clone_view("lost-role").unwrap();
    connect(&restored, PASSWORD).await.expect("a lost role is set up again after a reboot");
}

#[tokio::test]
async fn orphans_and_missing_datasets_are_reported() {
    let mut test = TestEngine::start(config(5)).await;
    let clone = test.create("doomed").await;
    test.lose_dataset(&clone).await;
    let storage = test.pool.open().await;
    // And a clone dataset appears that no record owns.
    let snapshot: storage::SnapshotName =
        clone.snapshot.as_ref().unwrap().record.storage_name.parse().unwrap();
    storage::ThinStorage::clone_snapshot(
        &storage,
        &snapshot,
        &storage::DatasetName::new("branch/main/stranger/r0").unwrap(),
    )
    .await
    .unwrap();
    test.restart().await;
    let reconciliation = test.engine.reconciliation();
    assert_eq!(reconciliation.count(DifferenceKind::MissingDataset), 1, "{reconciliation:?}");
    assert_eq!(reconciliation.count(DifferenceKind::OrphanDataset), 1, "{reconciliation:?}");
    let doomed = test.engine.clone_view("doomed").unwrap();
    assert_eq!(doomed.record.state, engine::CloneState::Fatal);
    assert!(doomed.record.state_message.contains("gone"), "{}", doomed.record.state_message);
}
