//! After a crash, a restart or a failure: recorded clones keep their ports, interrupted
//! operations are finished before anything else starts, a FATAL clone's reset really rebuilds
//! it, and a destroy that fails says so, as a server-side error.

use std::time::Duration;

use engine::{CloneState, CloneView, DifferenceKind, ResetTarget};

use crate::harness::{PASSWORD, READY_TIMEOUT, TestEngine, config, connect};
use crate::warm::{wait_warm, warm_config};

/// Stops every server and destroys the clone's dataset behind the engine's back, then starts
/// the engine again: the clone is recorded, FATAL, and nothing listens on its port.
async fn lose_dataset_and_restart(test: &mut TestEngine, clone: &CloneView) {
    test.lose_dataset(clone).await;
    test.restart().await;
    let fatal = test.engine.clone_view(&clone.record.id).unwrap();
    assert_eq!(fatal.record.state, CloneState::Fatal, "{}", fatal.record.state_message);
}

#[tokio::test]
async fn a_recorded_clones_port_is_never_handed_out_after_a_restart() {
    let mut test = TestEngine::start(config(2)).await;
    let lost = test.create("lost").await;
    lose_dataset_and_restart(&mut test, &lost).await;
    let other = test.create("other").await;
    assert_ne!(other.record.port, lost.record.port, "a FATAL clone's port was handed out");
}

#[tokio::test]
async fn a_fatal_clones_reset_rebuilds_it_while_the_warm_pool_fills() {
    let mut test = TestEngine::start(warm_config(2, 1)).await;
    wait_warm(&test, 1).await;
    let lost = test.create("lost").await;
    lose_dataset_and_restart(&mut test, &lost).await;
    // The warm pool fills at start; it must not take the FATAL clone's port.
    wait_warm(&test, 1).await;
    test.engine.reset_clone("lost", ResetTarget::Current).await.unwrap();
    let rebuilt = test.ready("lost").await;
    assert_eq!(rebuilt.record.port, lost.record.port);
    connect(&rebuilt, PASSWORD).await.expect("the rebuilt clone takes its credentials back");
}

#[tokio::test]
async fn an_interrupted_reset_is_finished_before_the_engine_starts() {
    let mut test = TestEngine::start(config(3)).await;
    let clone = test.create("interrupted").await;
    test.engine.shutdown(Duration::from_secs(10)).await;
    // A crash in the middle of a reset leaves the clone recorded as RESETTING.
    {
        let store = engine::store::Store::open(&test.state_dir.join("scion.db")).unwrap();
        let mut record = clone.record.clone();
        record.state = CloneState::Resetting;
        record.state_message = "Clone is being reset.".to_owned();
        store.update_clone(&record).unwrap();
    }
    test.restart().await;
    // Reconciliation, with the rebuild it decided, is over before the engine serves anything
    // or starts a loop that could collide with it.
    let view = test.engine.clone_view("interrupted").unwrap();
    assert_eq!(view.record.state, CloneState::Ok, "{}", view.record.state_message);
    let reconciliation = test.engine.reconciliation();
    assert_eq!(reconciliation.count(DifferenceKind::InterruptedOperation), 1, "{reconciliation:?}");
    connect(&view, PASSWORD).await.expect("the rebuilt clone takes its credentials back");
}

/// Sets or clears the immutable attribute of `path`, which makes btrfs refuse to delete the
/// subvolume it is the root of (EPERM), as a busy dataset makes ZFS refuse.
fn set_immutable(path: &std::path::Path, on: bool) {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test makes the pool fail with the tool an operator would use"
    )]
    let status = std::process::Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chattr on {}", path.display());
}

#[tokio::test]
async fn a_destroy_whose_storage_fails_leaves_the_clone_fatal_with_a_server_side_error() {
    let test = TestEngine::start(config(3)).await;
    let clone = test.create("stuck").await;
    let mountpoint = test.pool.mountpoint().join(&clone.record.dataset);
    set_immutable(&mountpoint, true);
    test.engine.destroy_clone("stuck").await.unwrap();
    let outcome = test.engine.wait_destroyed("stuck", READY_TIMEOUT).await;
    set_immutable(&mountpoint, false);

    let error = outcome.expect_err("a destroy that failed answered as done or still running");
    assert!(matches!(error, engine::Error::Storage(_)), "not a server-side error: {error:?}");
    let stuck = test.engine.clone_view("stuck").unwrap();
    assert_eq!(stuck.record.state, CloneState::Fatal);
    let message = &stuck.record.state_message;
    assert!(message.contains("destroying its dataset"), "{message}");
    assert!(message.contains(&error.to_string()), "{message}");
    assert!(connect(&stuck, PASSWORD).await.is_err(), "its server still runs");

    // Once the cause is gone, the clone can be destroyed.
    test.engine.destroy_clone("stuck").await.unwrap();
    assert!(test.engine.wait_destroyed("stuck", READY_TIMEOUT).await.unwrap().is_none());
}
