//! Operations that race on one clone: whoever puts a clone in a transitional state owns it, and
//! every other operation is refused until it settles.

use std::time::Duration;

use engine::{CloneRequest, CloneState, ResetTarget};

use crate::harness::{READY_TIMEOUT, TestEngine, config, request};

fn on_snapshot(id: &str, snapshot_id: &str) -> CloneRequest {
    CloneRequest { snapshot_id: Some(snapshot_id.to_owned()), ..request(id) }
}

/// A forced snapshot deletion decides about each of the snapshot's clones in turn, while the
/// clones before it are torn down. A reset accepted in the meantime owns its clone: the deletion
/// must not take the clone over (overwriting `RESETTING` with `DELETING` and destroying it under
/// the rebuild), but give up with the clone named as busy.
#[tokio::test]
async fn a_forced_snapshot_delete_never_takes_over_a_clone_being_reset() {
    let test = TestEngine::start(config(5)).await;
    let old = test.engine.snapshots()[0].record.id.clone();
    // A newer head, so that the old snapshot may be deleted at all.
    test.engine.create_snapshot().await.unwrap();
    test.engine.create_clone(on_snapshot("a-first", &old)).await.unwrap();
    test.ready("a-first").await;
    test.engine.create_clone(on_snapshot("b-second", &old)).await.unwrap();
    test.ready("b-second").await;

    let deleting = {
        let engine = test.engine.clone();
        let old = old.clone();
        tokio::spawn(async move { engine.delete_snapshot(&old, true).await })
    };
    // The deletion takes its clones in ID order: once the first is being torn down, the second
    // is still OK and may be reset.
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let first = test.engine.clone_view("a-first").ok().map(|view| view.record.state);
        if first != Some(CloneState::Ok) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the deletion never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reset = test.engine.reset_clone("b-second", ResetTarget::Current).await.unwrap();
    assert_eq!(reset.record.state, CloneState::Resetting);

    let deleted = deleting.await.unwrap();
    let refused = deleted.expect_err("the deletion took over a clone being reset");
    assert!(matches!(refused, engine::Error::Refused(_)), "{refused}");
    assert!(refused.to_string().contains("b-second"), "{refused}");
    let second = test.ready("b-second").await;
    assert_eq!(second.record.snapshot_id, old);
    assert!(test.engine.snapshot(&old).is_ok(), "the snapshot of a clone was deleted");
}
