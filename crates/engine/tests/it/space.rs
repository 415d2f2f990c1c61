//! A full pool, on a small real btrfs image filled with a real file: operations that write to
//! the pool are refused before they change anything, a running clone stays `OK`, the instance's
//! health (`/status`, `dblab_instance_status_code`) warns, and freed space counts again at once.

use engine::{CloneState, Error, InstanceHealth, MinFreeSpace, ResetTarget};
use test_support::PoolKind;

use crate::harness::{TestEngine, config, connect, request};
use crate::warm::{wait_warm, warm_config};

const MIB: u64 = 1 << 20;
/// The pool's minimum in these tests; "low" is below twice that.
const MIN_FREE: u64 = 64 * MIB;

fn health(test: &TestEngine) -> InstanceHealth {
    InstanceHealth::of(&test.engine.status(), &test.engine.retrieval())
}

/// The line of metric `name` in the engine's exposition.
pub(crate) fn metric(test: &TestEngine, name: &str) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    test.engine.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines().find(|line| line.starts_with(name)).expect("the metric is exported").to_owned()
}

fn status_code_metric(test: &TestEngine) -> String {
    metric(test, "dblab_instance_status_code")
}

fn assert_no_space(result: Result<impl std::fmt::Debug, Error>, operation: &str) {
    match result {
        Err(Error::NoSpace(message)) => {
            assert!(message.starts_with(operation), "{message}");
            assert!(message.contains("out of space"), "{message}");
        }
        other => panic!("{operation} on a full pool: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_refuses_writes_keeps_clones_running_and_recovers() {
    let test =
        TestEngine::start_sized(PoolKind::Btrfs, 512, MinFreeSpace::Bytes(MIN_FREE), config(4))
            .await;
    let busy = test.create("busy").await;
    let client = connect(&busy, crate::harness::PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n").await.unwrap();
    assert!(health(&test).is_ok(), "{health:?}", health = health(&test));

    // Low: operations still run, /status warns.
    let low_filler = test.pool.fill(MIN_FREE * 2 - 8 * MIB);
    test.create("early").await;
    let low = health(&test);
    assert_eq!(low.attention, ["pool"], "{low:?}");
    assert!(low.message().contains("low on free space"), "{}", low.message());
    assert_eq!(low.code(), 1);

    // Below the minimum: refused, nothing changed.
    let full_filler = test.pool.fill(MIN_FREE / 4);
    let snapshots = test.engine.snapshots().len();
    let branches = test.engine.branches().len();
    assert_no_space(test.engine.create_clone(request("late")).await, "create clone");
    assert!(matches!(test.engine.clone_view("late"), Err(Error::NotFound(_))));
    assert_no_space(test.engine.commit_clone("busy", "on a full pool").await, "commit clone");
    assert_no_space(test.engine.snapshot_clone("busy").await, "snapshot clone");
    assert_no_space(test.engine.create_snapshot().await, "create snapshot");
    assert_no_space(test.engine.create_branch("dev", Some("main"), None).await, "create branch");
    assert_no_space(test.engine.reset_clone("busy", ResetTarget::Current).await, "reset clone");
    assert_eq!(test.engine.snapshots().len(), snapshots);
    assert_eq!(test.engine.branches().len(), branches);

    // The clone was neither reset nor crashed: same server, same data.
    let view = test.engine.clone_view("busy").unwrap();
    assert_eq!(view.record.state, CloneState::Ok, "{}", view.record.state_message);
    let count: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 1000);

    let full = health(&test);
    assert_eq!(full.attention, ["pool"], "{full:?}");
    assert!(full.message().contains("out of space"), "{}", full.message());
    assert!(status_code_metric(&test).ends_with(" 1"), "{}", status_code_metric(&test));

    // Freed space counts without anyone syncing the pool by hand.
    low_filler.remove();
    full_filler.remove();
    let commit = test.engine.commit_clone("busy", "after freeing space").await.unwrap();
    assert_eq!(commit.record.message, "after freeing space");
    test.engine.create_clone(request("late")).await.unwrap();
    test.ready("late").await;
    test.engine.create_branch("dev", Some("main"), None).await.unwrap();
    assert!(health(&test).is_ok(), "{:?}", health(&test));
    assert!(status_code_metric(&test).ends_with(" 0"), "{}", status_code_metric(&test));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_pool_waits_for_space_without_failing() {
    let mut test = TestEngine::start_sized(
        PoolKind::Btrfs,
        512,
        MinFreeSpace::Bytes(MIN_FREE),
        warm_config(4, 1),
    )
    .await;
    wait_warm(&test, 1).await;
    let filler = test.pool.fill(MIN_FREE / 4);
    // The restart discards the warm clone; the new engine must not make one on a full pool.
    test.restart().await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(test.engine.warm_clones(), 0);
    assert!(metric(&test, "scion_warm_pool_failures").ends_with(" 0"), "a refusal is no failure");
    assert_no_space(test.engine.create_clone(request("late")).await, "create clone");

    filler.remove();
    test.create("late").await;
    wait_warm(&test, 1).await;
    assert!(metric(&test, "scion_warm_pool_failures").ends_with(" 0"));
}
