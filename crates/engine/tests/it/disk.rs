//! Per-clone disk usage and quotas on btrfs and ZFS: what a clone wrote (`cloneDiffSize`) and
//! what its data refers to (`logicalSize`) follow its writes, in its view and in the per-clone
//! series; a clone that fills its quota gets Postgres' "could not extend file" (or "could not
//! write block") errors while the other clones and the pool go on, and a reset keeps the quota.

use engine::{CloneLimits, CloneRequest, CloneState, CloneView, Error, ResetTarget};
use test_support::PoolKind;

use crate::harness::{PASSWORD, TestEngine, config, connect, request};
use crate::quotas::reconnect;
use crate::space::metric;

const MIB: u64 = 1 << 20;

on_every_backend!(
    a_clone_shows_what_it_wrote_and_what_it_refers_to,
    a_clone_that_fills_its_quota_is_the_only_one_hurt,
    the_pool_shows_what_snapshots_hold_and_how_it_compresses,
);

/// About 28 MiB of rows below the TOAST threshold, so they are stored as they are (neither pool
/// compresses here), checkpointed so that they are on disk when the clone is measured.
const FILL_28_MIB: &str = "CREATE TABLE filler AS \
     SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 30000) g; CHECKPOINT";

/// The value of the series whose line starts with `prefix`.
fn value(test: &TestEngine, prefix: &str) -> f64 {
    metric(test, prefix).rsplit(' ').next().unwrap().parse().unwrap()
}

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
    assert!(
        after.diff_size >= before.diff_size + 24 * MIB,
        "{} then {}",
        before.diff_size,
        after.diff_size
    );
    assert!(referenced >= referenced_before + 24 * MIB, "{referenced_before} then {referenced}");
    assert_eq!(after.logical_size(), referenced);
    // The clone that wrote nothing still holds little.
    let idle = test.engine.clone_view(&idle.record.id).unwrap();
    assert!(idle.diff_size < 16 * MIB, "{}", idle.diff_size);

    assert_eq!(clone_series(&test, "scion_clone_disk_written_bytes", "busy"), after.diff_size);
    assert_eq!(clone_series(&test, "scion_clone_disk_referenced_bytes", "busy"), referenced);
    assert_eq!(clone_series(&test, "scion_clone_disk_written_bytes", "idle"), idle.diff_size);
    let total = value(&test, "dblab_clone_total_logical_size_bytes") as u64;
    assert_eq!(total, referenced + idle.logical_size());
}

/// Rows into an unlogged table (no WAL, so the table's own file is what grows) until about
/// 190 MB, far past the quotas below.
const FILL_PAST_QUOTA: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS hog (pad text); \
     INSERT INTO hog SELECT repeat(md5(g::text), 30) FROM generate_series(1, 200000) g";

/// Fills `view` past its quota and returns Postgres' error message.
async fn fill_past_quota(test: &TestEngine, view: &CloneView) -> String {
    let client = connect(view, PASSWORD).await.unwrap();
    let error = client.batch_execute(FILL_PAST_QUOTA).await.expect_err("the quota stops the fill");
    let message = error.as_db_error().map(|db| db.message().to_owned());
    let message = message.unwrap_or_else(|| panic!("not a Postgres error: {error:?}"));
    // Extending the table's file fails, or, where the file system reserved the blocks
    // (fallocate) and still needs room to write them, writing a block out does.
    let extend = message.starts_with("could not extend file");
    assert!(extend || message.starts_with("could not write block"), "{message}");
    assert!(message.contains("Disk quota exceeded"), "{message}");
    // The clone serves on: the failed statement is all it lost, unless a WAL write hit the
    // quota too (ZFS copies WAL blocks on write), which makes Postgres restart the clone's
    // server through crash recovery, as on a full disk.
    if client.simple_query("SELECT 1").await.is_err() {
        let log = test.engine.clone_log_tail(&view.record.id, Some(40)).await.unwrap();
        assert!(log.text.contains("Disk quota exceeded"), "{}", log.text);
        reconnect(view).await;
    }
    assert_eq!(test.engine.clone_view(&view.record.id).unwrap().record.state, CloneState::Ok);
    message
}

async fn a_clone_that_fills_its_quota_is_the_only_one_hurt(kind: PoolKind) {
    let test = TestEngine::start_on(kind, config(4)).await;
    let neighbour = test.create("neighbour").await;
    let snapshot_size = neighbour.snapshot.as_ref().unwrap().record.logical_size;

    // A quota the snapshot already fills is refused before anything is made.
    let refused = CloneLimits { disk: Some(snapshot_size), ..CloneLimits::default() };
    let error = test
        .engine
        .create_clone(CloneRequest { limits: refused, ..request("refused") })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidInput(message) if message.contains("disk quota")),
        "{error:?}"
    );
    assert!(matches!(test.engine.clone_view("refused"), Err(Error::NotFound(_))));

    let quota = snapshot_size + 48 * MIB;
    let limits = CloneLimits { disk: Some(quota), ..CloneLimits::default() };
    test.engine.create_clone(CloneRequest { limits, ..request("capped") }).await.unwrap();
    let capped = test.ready("capped").await;
    assert_eq!(capped.limits, limits);
    assert!(capped.usage.is_none(), "a disk quota alone puts the server in no cgroup");
    let line = metric(&test, "scion_clone_disk_quota_bytes{clone_id=\"capped\"}");
    assert!(line.ends_with(&format!(" {quota}")), "{line}");

    fill_past_quota(&test, &capped).await;
    // Its neighbour writes on, and the pool makes new clones.
    let client = connect(&neighbour, PASSWORD).await.unwrap();
    client.batch_execute(FILL_28_MIB).await.unwrap();
    let count: i64 = client.query_one("SELECT count(*) FROM filler", &[]).await.unwrap().get(0);
    assert_eq!(count, 30000);
    test.create("newcomer").await;
    // The failed fill's table went with its transaction: the capped clone writes again.
    let freed = reconnect(&capped).await;
    freed.batch_execute("CHECKPOINT; CREATE TABLE after AS SELECT 1 AS one").await.unwrap();

    // A reset gives the clone a new dataset, with the same quota.
    test.engine.reset_clone("capped", ResetTarget::Current).await.unwrap();
    let reset = test.ready("capped").await;
    assert_eq!(reset.limits.disk, Some(quota));
    fill_past_quota(&test, &reset).await;
}

async fn the_pool_shows_what_snapshots_hold_and_how_it_compresses(kind: PoolKind) {
    let test = TestEngine::start_on(kind, config(3)).await;
    let busy = test.create("busy").await;
    let snapshot_size = busy.snapshot.as_ref().unwrap().record.logical_size;
    test.engine.collect_space().await;
    let snapshots = |test: &TestEngine| value(test, "dblab_disk_used_by_snapshots_bytes{pool=");
    let data = |test: &TestEngine| value(test, "dblab_disk_data_size_bytes{pool=");
    let (snapshots_before, data_before) = (snapshots(&test), data(&test));
    // Neither test pool compresses; everything it holds counts, the golden data included.
    assert_eq!(value(&test, "dblab_disk_compress_ratio{pool="), 1.0);
    assert!(data_before >= snapshot_size as f64, "{data_before} < {snapshot_size}");

    // A commit shares everything with the clone; once the clone drops what it wrote, the
    // commit alone holds it.
    let client = connect(&busy, PASSWORD).await.unwrap();
    client.batch_execute(FILL_28_MIB).await.unwrap();
    test.engine.commit_clone("busy", "with the filler").await.unwrap();
    client.batch_execute("DROP TABLE filler; CHECKPOINT").await.unwrap();
    test.engine.collect_space().await;
    let (snapshots_after, data_after) = (snapshots(&test), data(&test));
    let mib = MIB as f64;
    assert!(
        snapshots_after >= snapshots_before + 24.0 * mib,
        "{snapshots_before} then {snapshots_after}"
    );
    assert!(data_after >= data_before + 24.0 * mib, "{data_before} then {data_after}");
}
