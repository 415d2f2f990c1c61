//! Per-clone disk usage on btrfs and ZFS: what a clone wrote (`cloneDiffSize`) and what its
//! data refers to (`logicalSize`) follow its writes, in its view and in the per-clone series.

use test_support::PoolKind;

use crate::harness::{PASSWORD, TestEngine, config, connect};
use crate::space::metric;

const MIB: u64 = 1 << 20;

on_every_backend!(a_clone_shows_what_it_wrote_and_what_it_refers_to);

/// About 28 MiB of rows below the TOAST threshold, so they are stored as they are (neither pool
/// compresses here), checkpointed so that they are on disk when the clone is measured.
const FILL_28_MIB: &str = "CREATE TABLE filler AS \
     SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 30000) g; CHECKPOINT";

/// The value of the per-clone series `name` for clone `id`.
fn clone_series(test: &TestEngine, name: &str, id: &str) -> u64 {
    let line = metric(test, &format!("{name}{{clone_id=\"{id}\"}}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn a_clone_shows_what_it_wrote_and_what_it_refers_to(kind: PoolKind) {
    let test = TestEngine::start_on(kind, config(3)).await;
    let idle = test.create("idle").await;
    let busy = test.create("busy").await;
    let snapshot_size = busy.snapshot.as_ref().unwrap().record.logical_size;
    assert!(snapshot_size > 0, "the snapshot's size is measured");
    // Until a collection measured it, a clone's logical size is its snapshot's.
    assert_eq!(busy.referenced, None);
    assert_eq!(busy.logical_size(), snapshot_size);

    test.engine.collect_space().await;
    let before = test.engine.clone_view("busy").unwrap();
    let referenced_before = before.referenced.expect("a collection measured the clone");
    // A fresh clone refers to about its snapshot's data and holds little of its own.
    assert!(referenced_before + 8 * MIB >= snapshot_size, "{referenced_before} vs {snapshot_size}");
    assert!(before.diff_size < 16 * MIB, "{}", before.diff_size);

    let client = connect(&busy, PASSWORD).await.unwrap();
    client.batch_execute(FILL_28_MIB).await.unwrap();
    test.engine.collect_space().await;

    let after = test.engine.clone_view("busy").unwrap();
    let referenced = after.referenced.unwrap();
    assert!(after.diff_size >= before.diff_size + 24 * MIB, "{} then {}", before.diff_size, after.diff_size);
    assert!(referenced >= referenced_before + 24 * MIB, "{referenced_before} then {referenced}");
    assert_eq!(after.logical_size(), referenced);
    // The clone that wrote nothing still holds little.
    let idle = test.engine.clone_view(&idle.record.id).unwrap();
    assert!(idle.diff_size < 16 * MIB, "{}", idle.diff_size);

    assert_eq!(clone_series(&test, "scion_clone_disk_written_bytes", "busy"), after.diff_size);
    assert_eq!(clone_series(&test, "scion_clone_disk_referenced_bytes", "busy"), referenced);
    assert_eq!(clone_series(&test, "scion_clone_disk_written_bytes", "idle"), idle.diff_size);
    let total: u64 = metric(&test, "dblab_clone_total_logical_size_bytes")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, referenced + idle.logical_size());
}
