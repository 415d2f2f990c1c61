//! Physical mode end to end: an engine configured with `[retrieval.physical]` (pg_basebackup
//! with a slot, a sync instance) copies a real source at its first start, runs the standby,
//! cuts snapshots from it through promotion, and replaces it all on a second full refresh.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::{Engine, RefreshStatus, SyncCode};
use retrieval::physical::{
    CustomConfig, PgBackRestConfig, PhysicalConfig, PhysicalTool, SyncConfig, slot_name,
};
use retrieval::{RetrievalConfig, SourceConfig, Stage};
use storage::ThinStorage;

use crate::harness::{self, TestEngine};
use crate::sync::{REPLICATOR, Source, wait_row, wait_sync};

/// The variable the source's password is read from.
const PASSWORD_ENV: &str = "SCION_TEST_PHYSICAL_PASSWORD";
const SOURCE_PASSWORD: &str = "phys1cal:pw";
/// How long a refresh (a copy, a standby start, a promotion) may take on a slow machine.
const REFRESH_WAIT: Duration = Duration::from_secs(120);

fn set_password_env() {
    #[allow(unsafe_code, reason = "test-only; every writer sets the same value")]
    // SAFETY: only this test reads or writes the variable, always with the same value.
    unsafe {
        std::env::set_var(PASSWORD_ENV, SOURCE_PASSWORD);
    }
}

fn physical_config(source: &Source) -> RetrievalConfig {
    let physical = PhysicalConfig {
        sync: SyncConfig { health_interval: Duration::from_millis(300), ..SyncConfig::default() },
        ..PhysicalConfig::default()
    };
    RetrievalConfig {
        source: Some(SourceConfig {
            host: Some("127.0.0.1".into()),
            port: source.port,
            username: REPLICATOR.into(),
            password_env: Some(PASSWORD_ENV.into()),
            ..SourceConfig::default()
        }),
        physical: Some(physical),
        ..RetrievalConfig::default()
    }
}

/// Waits until a refresh that finished after `after` is reported.
pub(crate) async fn wait_refreshed(engine: &Engine, after: Option<DateTime<Utc>>) {
    let deadline = Instant::now() + REFRESH_WAIT;
    loop {
        let view = engine.retrieval();
        assert_ne!(view.status, RefreshStatus::Failed, "the refresh failed: {:?}", view.alerts);
        if view.status == RefreshStatus::Finished && view.last_refresh > after {
            return;
        }
        assert!(Instant::now() < deadline, "no refresh finished: {:?}", view.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a full refresh and waits until the sync instance is OK on the new golden dataset,
/// which replaced `golden`; returns its name.
pub(crate) async fn refresh_onto_new_data(engine: &Engine, golden: &str) -> String {
    let last = engine.retrieval().last_refresh;
    engine.full_refresh().unwrap();
    wait_refreshed(engine, last).await;
    let view = wait_sync(engine, "OK on the new copy", |view| {
        view.code == SyncCode::Ok && view.dataset.as_deref() != Some(golden)
    })
    .await;
    view.dataset.unwrap()
}

pub(crate) async fn notes(view: &engine::CloneView) -> Vec<String> {
    let client = harness::connect(view, harness::PASSWORD).await.unwrap();
    let rows = client.query("SELECT note FROM facts ORDER BY id", &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

pub(crate) async fn slot_exists(source: &Source, slot: &str) -> bool {
    source
        .connect()
        .await
        .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn physical_refresh_and_snapshots_follow_a_pg16_source() {
    refresh_and_snapshots(test_support::PoolKind::Btrfs).await;
}

/// The same on ZFS, where a clone needs its origin: the sync instance's snapshot stays as long
/// as the promoted copy cloned from it, and both go with their snapshot.
#[tokio::test]
async fn physical_refresh_and_snapshots_on_zfs() {
    refresh_and_snapshots(test_support::PoolKind::Zfs).await;
}

async fn refresh_and_snapshots(kind: test_support::PoolKind) {
    set_password_env();
    let source = Source::start(16).await;
    // The standby streams only with its password file, which its sandbox must show it.
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("before the copy").await;
    let mut config = harness::config(4);
    config.retrieval = Some(physical_config(&source));

    // The first start copies, starts the sync instance on the copy and snapshots it.
    let test = TestEngine::start_on(kind, config).await;
    wait_refreshed(&test.engine, None).await;
    let view = wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let golden = view.dataset.clone().unwrap();
    assert!(golden.starts_with("data_"), "{view:?}");
    let retrieval = test.engine.retrieval();
    assert_eq!(retrieval.mode(), "physical");
    let progress = retrieval.progress.unwrap();
    assert_eq!(progress.stage, Stage::Finished);
    assert!(progress.bytes_done > 0 && progress.bytes_total == Some(progress.bytes_done));
    let snapshots = test.engine.snapshots();
    assert_eq!(snapshots.len(), 1);
    let first = snapshots[0].record.clone();
    assert!(first.storage_name.starts_with("promoted_"), "{first:?}");
    let slot = slot_name("scion_standby", &golden);
    assert!(slot_exists(&source, &slot).await, "{slot} missing on the source");

    // A clone of it has the source's rows and takes writes.
    let clone = test.create("first").await;
    assert_eq!(clone.record.snapshot_id, first.id);
    assert_eq!(notes(&clone).await, ["before the copy"]);
    let client = harness::connect(&clone, harness::PASSWORD).await.unwrap();
    client.batch_execute("INSERT INTO facts (note) VALUES ('in the clone')").await.unwrap();

    // Rows committed on the source reach the next snapshot, cut without stopping the standby.
    let sync_pid = test.engine.sync_status().pid;
    source.insert("after the first snapshot").await;
    wait_row(&test.state_dir, "after the first snapshot").await;
    let second = test.engine.create_snapshot().await.unwrap().record;
    assert_ne!(second.id, first.id);
    assert!(second.data_state_at > first.data_state_at, "{first:?} {second:?}");
    let mut request = harness::request("second");
    request.snapshot_id = Some(second.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone2 = test.ready("second").await;
    assert_eq!(notes(&clone2).await, ["before the copy", "after the first snapshot"]);
    assert_eq!(test.engine.sync_status().pid, sync_pid, "the sync instance was restarted");
    // Nothing new replayed: no new snapshot.
    let again = test.engine.create_snapshot().await.unwrap().record;
    assert_eq!(again.id, second.id);

    // A second full refresh replaces the golden dataset; the old one and its slot go, and the
    // clones keep working on their promoted copies.
    let new_golden = refresh_onto_new_data(&test.engine, &golden).await;
    assert!(!slot_exists(&source, &slot).await, "{slot} is left on the source");
    assert!(slot_exists(&source, &slot_name("scion_standby", &new_golden)).await);
    let storage = test.pool.open().await;
    let listing = storage.list().await.unwrap();
    let datasets: Vec<String> =
        listing.datasets.iter().map(|dataset| dataset.name.to_string()).collect();
    assert!(datasets.contains(&new_golden), "{datasets:?}");
    // The old data stays for the standby snapshots kept for points in time (its slot is
    // released already); the skipped snapshot kept none.
    let standby_of = |listing: &storage::Listing, dataset: &str| -> usize {
        let prefix = format!("{dataset}@promote_");
        listing.snapshots.iter().filter(|s| s.name.to_string().starts_with(&prefix)).count()
    };
    assert!(datasets.contains(&golden), "{datasets:?}");
    assert_eq!(standby_of(&listing, &golden), 2, "{listing:?}");
    assert_eq!(standby_of(&listing, &new_golden), 1, "{listing:?}");
    assert_eq!(
        notes(&clone).await,
        ["before the copy", "in the clone"],
        "the first clone lost its data"
    );
    let newest = test.engine.snapshots()[0].record.clone();
    assert!(newest.storage_name.starts_with("promoted_") && newest.id != second.id);

    // Their snapshots deleted, the kept standby snapshots go, and the old data with the last.
    test.engine.delete_snapshot(&first.id, true).await.unwrap();
    let listing = storage.list().await.unwrap();
    assert_eq!(standby_of(&listing, &golden), 1, "{listing:?}");
    test.engine.delete_snapshot(&second.id, true).await.unwrap();
    let listing = storage.list().await.unwrap();
    assert_eq!(standby_of(&listing, &golden), 0, "{listing:?}");
    let golden_name = storage::DatasetName::new(golden.clone()).unwrap();
    assert!(listing.dataset(&golden_name).is_none(), "{listing:?}");
    assert_eq!(standby_of(&listing, &new_golden), 1, "{listing:?}");
}

/// A snapshot at a point in time: the newest kept standby snapshot before the target replays
/// the source's WAL archive up to it, for a time and for an LSN; a target outside the WAL
/// window is refused with the window in the message.
#[tokio::test]
async fn a_snapshot_at_a_point_in_time_has_the_commits_before_it_only() {
    point_in_time(test_support::PoolKind::Btrfs).await;
}

/// The same on ZFS, where the copies replayed from a kept standby snapshot are its clones.
#[tokio::test]
async fn points_in_time_on_zfs() {
    point_in_time(test_support::PoolKind::Zfs).await;
}

async fn point_in_time(kind: test_support::PoolKind) {
    set_password_env();
    let (source, archive) = Source::start_archiving_into_temp(16).await;
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("before the copy").await;
    let mut config = harness::config(4);
    let mut retrieval = physical_config(&source);
    if let Some(physical) = retrieval.physical.as_mut() {
        physical.restore_command = Some(format!("cp {}/%f %p", archive.path().display()));
        physical.restore_dirs = vec![archive.path().to_path_buf()];
    }
    config.retrieval = Some(retrieval);
    let mut test = TestEngine::start_on(kind, config).await;
    wait_refreshed(&test.engine, None).await;
    wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let first = test.engine.snapshots()[0].record.clone();
    let window = test.engine.point_in_time_window().expect("a window");
    assert_eq!(window.oldest.at, first.data_state_at);

    // Two commits the targets fall between, archived and replayed by the sync instance.
    source.insert("early").await;
    let between_time: DateTime<Utc> = source.clock().await.parse().unwrap();
    let between_lsn: engine::Lsn = source.current_lsn().await.parse().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    source.insert("late").await;
    source.archive_current_segment().await;
    wait_sync(&test.engine, "the late commit replayed", |view| {
        view.last_replayed_at.is_some_and(|at| at > between_time)
    })
    .await;
    let window = test.engine.point_in_time_window().expect("a window");
    assert!(window.newest.at > between_time, "{window}");

    // Snapshots of the past sit beside the head of main, which stays the newest data.
    let main_head = test.engine.branch("main").unwrap().head.id;
    for (name, target) in [
        ("at-time", engine::RecoveryTarget::Time(between_time)),
        ("at-lsn", engine::RecoveryTarget::Lsn(between_lsn)),
    ] {
        let snapshot = test.engine.create_snapshot_at_point(target).await.unwrap().record;
        assert!(snapshot.storage_name.starts_with("promoted_"), "{snapshot:?}");
        assert!(snapshot.data_state_at <= between_time, "{snapshot:?}");
        assert!(snapshot.data_state_at > first.data_state_at, "{snapshot:?}");
        assert_eq!(snapshot.parent_id.as_deref(), Some(first.id.as_str()), "{snapshot:?}");
        assert_eq!(test.engine.branch("main").unwrap().head.id, main_head);
        let mut request = harness::request(name);
        request.snapshot_id = Some(snapshot.id.clone());
        test.engine.create_clone(request).await.unwrap();
        let clone = test.ready(name).await;
        assert_eq!(notes(&clone).await, ["before the copy", "early"], "{name}");
    }

    // A branch at a point: its own dataset replayed from the snapshot it forks from; the head
    // of main stays where it was.
    let branch = test
        .engine
        .create_branch_at_point("before-late", engine::RecoveryTarget::Time(between_time))
        .await
        .unwrap();
    assert_eq!(branch.record.base_snapshot_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(branch.head.parent_id.as_deref(), Some(first.id.as_str()));
    assert!(branch.head.data_state_at <= between_time, "{branch:?}");
    assert!(branch.head.data_state_at > first.data_state_at, "{branch:?}");
    assert!(branch.head.storage_name.starts_with("branch/before-late@"), "{branch:?}");
    assert_eq!(test.engine.branch("main").unwrap().head.id, main_head);
    let mut request = harness::request("on-branch");
    request.branch = Some("before-late".to_owned());
    test.engine.create_clone(request).await.unwrap();
    let clone = test.ready("on-branch").await;
    assert_eq!(notes(&clone).await, ["before the copy", "early"]);
    let error = test
        .engine
        .create_branch_at_point(
            "too-late",
            engine::RecoveryTarget::Time(Utc::now() + chrono::Duration::days(1)),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("outside the WAL window"), "{error}");
    assert!(test.engine.branch("too-late").is_err());
    let listing = test.pool.open().await.list().await.unwrap();
    assert!(
        listing.datasets.iter().all(|dataset| !dataset.name.as_str().contains("too-late")),
        "{listing:?}"
    );

    // Before the oldest kept moment, or after the newest: refused, naming the window.
    for target in [
        engine::RecoveryTarget::Time(first.data_state_at - chrono::Duration::hours(1)),
        engine::RecoveryTarget::Time(Utc::now() + chrono::Duration::days(1)),
    ] {
        let error = test.engine.create_snapshot_at_point(target).await.unwrap_err();
        assert!(matches!(error, engine::Error::InvalidInput(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("outside the WAL window"), "{message}");
        assert!(message.contains("the oldest reachable moment is"), "{message}");
    }
    // The two point-in-time snapshots kept no standby snapshot of their own.
    let kept = engine::store::Store::open(&test.state_dir.join("scion.db"))
        .unwrap()
        .standby_snapshots()
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].snapshot_id, first.id);

    // A snapshot of the past made after the newest snapshot does not hide it from the check
    // that skips a snapshot of unchanged data.
    let newest = test.engine.create_snapshot().await.unwrap().record;
    test.engine.create_snapshot_at_point(engine::RecoveryTarget::Time(between_time)).await.unwrap();
    assert_eq!(test.engine.create_snapshot().await.unwrap().record.id, newest.id);

    // The start-up audit knows the kept standby snapshot: no leftover, nothing adopted. One
    // whose snapshot is gone (a crash between the two deletions) is removed.
    test.engine.shutdown(Duration::from_secs(10)).await;
    let storage = test.pool.open().await;
    let kept_name: storage::SnapshotName = kept[0].storage_name.parse().unwrap();
    let orphan =
        storage::SnapshotName::new(kept_name.dataset().clone(), "promote_20990101000000").unwrap();
    storage.snapshot(&orphan).await.unwrap();
    let store = engine::store::Store::open(&test.state_dir.join("scion.db")).unwrap();
    store
        .insert_standby_snapshot(&engine::store::StandbySnapshot {
            snapshot_id: "gone".to_owned(),
            storage_name: orphan.to_string(),
            data_state_at: first.data_state_at,
            lsn: "0/1000000".to_owned(),
        })
        .unwrap();
    drop(store);
    test.restart().await;
    let differences = test.engine.reconciliation().differences;
    let about = |name: &str| {
        differences.iter().filter(|difference| difference.object == name).collect::<Vec<_>>()
    };
    assert!(about(&kept[0].storage_name).is_empty(), "{differences:?}");
    let orphan_removed = about(&orphan.to_string());
    assert_eq!(orphan_removed.len(), 1, "{differences:?}");
    assert_eq!(orphan_removed[0].kind, engine::DifferenceKind::RemovedLeftover);
    assert!(
        differences.iter().all(|d| d.kind != engine::DifferenceKind::UnrecordedSnapshot),
        "{differences:?}"
    );
    let listing = storage.list().await.unwrap();
    assert!(listing.snapshot(&orphan).is_none(), "{listing:?}");
    assert!(listing.snapshot(&kept_name).is_some(), "{listing:?}");
    assert!(test.engine.point_in_time_window().is_some());
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for this test to reap it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// An engine crash in the middle of a physical snapshot leaves the live standby's snapshot, the
/// promoted copy and the promotion's server still running on it; the next start stops the
/// server and removes both, as their intent says.
#[tokio::test]
async fn a_snapshot_interrupted_mid_promotion_leaves_nothing_after_a_restart() {
    let mut test = TestEngine::start(harness::config(2)).await;
    let snapshot: storage::SnapshotName =
        test.engine.snapshots()[0].record.storage_name.parse().unwrap();
    test.engine.shutdown(Duration::from_secs(10)).await;

    // What the crash left: both names in the store's intents, the standby's snapshot, its
    // clone, and a sandboxed temporary server on the clone.
    let storage = test.pool.open().await;
    let pre =
        storage::SnapshotName::new(snapshot.dataset().clone(), "promote_20990101000000").unwrap();
    let promoted = storage::DatasetName::new("promoted_20990101000000".to_owned()).unwrap();
    let store = engine::store::Store::open(&test.state_dir.join("scion.db")).unwrap();
    store.record_intents(&[pre.to_string(), promoted.to_string()]).unwrap();
    drop(store);
    storage.snapshot(&pre).await.unwrap();
    let mountpoint = storage.clone_snapshot(&pre, &promoted).await.unwrap();
    let pgdata = engine::Pool::pgdata(&mountpoint);
    let run_dir = test_support::TestDir::new("scion-promotion-");
    let user = postgres::OsUser::lookup("postgres").unwrap();
    let port = *test_support::free_port_range(1).start();
    let settings = postgres::ServerSettings::new(port, run_dir.path().join("sock"));
    let mut spec = postgres::InstanceSpec::new(
        &pgdata,
        settings,
        "postgres",
        run_dir.path().join("promotion.log"),
        user,
    );
    spec.sandbox_root = Some(test.state_dir.join("sandbox"));
    let binaries = postgres::BinarySearch::default()
        .locate(postgres::PgMajor::of_data_dir(&pgdata).unwrap())
        .unwrap();
    let server = postgres::Instance::start(&binaries, spec).await.unwrap();
    let pid = server.pid();
    drop(server);
    assert!(alive(pid));

    test.restart().await;
    assert!(!alive(pid), "the promotion's server outlived the restart");
    let listing = storage.list().await.unwrap();
    assert!(listing.dataset(&promoted).is_none(), "{listing:?}");
    assert!(listing.snapshot(&pre).is_none(), "{listing:?}");
    let removed: Vec<String> = test
        .engine
        .reconciliation()
        .differences
        .into_iter()
        .filter(|difference| difference.kind == engine::DifferenceKind::RemovedLeftover)
        .map(|difference| difference.object)
        .collect();
    assert_eq!(removed, [promoted.to_string(), pre.to_string()]);
    // The engine still serves clones of its snapshot.
    test.create("after").await;
}

/// A source rows are committed to after the copy, and where they must show.
async fn snapshot_has_rows_committed_after_the_copy(
    test: &TestEngine,
    source: &Source,
    archived: bool,
) -> engine::CloneView {
    wait_refreshed(&test.engine, None).await;
    wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let first = test.create("first").await;
    assert_eq!(notes(&first).await, ["after the copy"]);
    source.insert("after the first snapshot").await;
    if archived {
        source.archive_current_segment().await;
    }
    wait_row(&test.state_dir, "after the first snapshot").await;
    let second = test.engine.create_snapshot().await.unwrap().record;
    let mut request = harness::request("second");
    request.snapshot_id = Some(second.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone = test.ready("second").await;
    assert_eq!(notes(&clone).await, ["after the copy", "after the first snapshot"]);
    clone
}

/// pgBackRest through the engine: the copy restores the stanza's backup, and the sync instance
/// replays only from the repository, through the `archive-get` pgBackRest wrote as its
/// `restore_command`, which reads the configuration and the repository from `restore_dirs`
/// inside its sandbox. Debian's pgBackRest supports PostgreSQL up to 15.
#[tokio::test]
async fn pgbackrest_brings_up_a_sync_instance_replaying_its_repository() {
    let source = Source::start_with_pgbackrest(15).await;
    source.insert("after the copy").await;
    source.archive_current_segment().await;
    let physical = PhysicalConfig {
        tool: PhysicalTool::PgBackRest,
        pgbackrest: PgBackRestConfig {
            config: source.pgbackrest_conf().map(Path::to_path_buf),
            ..PgBackRestConfig::default()
        },
        restore_dirs: source.pgbackrest_dir().map(Path::to_path_buf).into_iter().collect(),
        sync: SyncConfig { health_interval: Duration::from_millis(300), ..SyncConfig::default() },
        ..PhysicalConfig::default()
    };
    let mut config = harness::config(4);
    config.retrieval =
        Some(RetrievalConfig { physical: Some(physical), ..RetrievalConfig::default() });
    let test = TestEngine::start(config).await;
    snapshot_has_rows_committed_after_the_copy(&test, &source, true).await;
}

/// The TPC-B invariant of pgbench's tables: every committed transaction added its delta to one
/// account, one teller, one branch and the history, so in a consistent copy the four sums agree.
async fn pgbench_sums(client: &tokio_postgres::Client) -> (i64, [i64; 4]) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pgbench_history),
                    (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8,
                    (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8,
                    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8,
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), [row.get(1), row.get(2), row.get(3), row.get(4)])
}

/// Runs pgbench against the source over its socket as the admin role.
fn pgbench(source: &Source, args: &[&str]) -> exec::Cmd {
    exec::Cmd::new(source.binaries.tool("pgbench").unwrap())
        .arg("-h")
        .arg(source.socket_dir())
        .args(["-p", &source.port.to_string(), "-U", test_support::primary::ADMIN, "-n"])
        .args(args)
        .arg("postgres")
        .timeout(Duration::from_secs(120))
}

/// The custom tool through the engine, driving PostgreSQL 17's pg_basebackup with the source's
/// `PG*` variables; the sync instance streams. A snapshot cut while pgbench writes to the
/// source is consistent: its clone holds whole transactions only.
#[tokio::test]
async fn the_custom_tool_brings_up_a_sync_instance_and_snapshots_under_pgbench_are_consistent() {
    set_password_env();
    let source = Source::start(17).await;
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("after the copy").await;
    pgbench(&source, &["-i", "-s", "1", "-q"]).run().await.unwrap();
    let tool = source.binaries.tool("pg_basebackup").unwrap();
    let mut retrieval = physical_config(&source);
    if let Some(physical) = retrieval.physical.as_mut() {
        physical.tool = PhysicalTool::Custom;
        physical.custom = CustomConfig {
            command: format!("{} -X stream --checkpoint=fast -D \"$PGDATA\"", tool.display()),
            restore_command: None,
        };
    }
    let mut config = harness::config(4);
    config.retrieval = Some(retrieval);
    let test = TestEngine::start(config).await;
    let clone = snapshot_has_rows_committed_after_the_copy(&test, &source, false).await;
    let (_, sums) = pgbench_sums(&harness::connect(&clone, harness::PASSWORD).await.unwrap()).await;
    assert!(sums.iter().all(|sum| *sum == 0), "no pgbench run yet: {sums:?}");

    // A snapshot cut in the middle of a pgbench run.
    let run = tokio::spawn(pgbench(&source, &["-c", "2", "-T", "8"]).output());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = test.engine.create_snapshot().await.unwrap().record;
    let mut request = harness::request("during");
    request.snapshot_id = Some(during.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone = test.ready("during").await;
    let (transactions, sums) =
        pgbench_sums(&harness::connect(&clone, harness::PASSWORD).await.unwrap()).await;
    assert!(transactions > 0, "the snapshot was cut before pgbench committed anything");
    assert!(sums.iter().all(|sum| *sum == sums[0]), "a torn transaction: {sums:?}");
    run.await.unwrap().expect("pgbench ran through the snapshot");
}

/// The pool fills up in the middle of a physical snapshot (the space check is off, so the
/// snapshot starts): the promotion cannot write, the snapshot fails and nothing half-made stays
/// (no promoted copy, no new standby snapshot, no new record), the earlier snapshot's clone
/// keeps its data, and once space is freed the next snapshot is made. Then the source stops:
/// the next snapshot is skipped with the reason in an alert.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_full_during_a_physical_snapshot_leaves_nothing_half_made() {
    set_password_env();
    let mut source = Source::start(16).await;
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("before the copy").await;
    let mut config = harness::config(4);
    config.retrieval = Some(physical_config(&source));
    let test = TestEngine::start_sized(
        test_support::PoolKind::Btrfs,
        1024,
        engine::MinFreeSpace::Bytes(0),
        config,
    )
    .await;
    wait_refreshed(&test.engine, None).await;
    wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let first = test.create("first").await;
    let snapshots = test.engine.snapshots();
    let storage = test.pool.open().await;
    let before = storage.list().await.unwrap();

    // New rows for the snapshot to promote, then no room left for its writes.
    source.insert("after the first snapshot").await;
    wait_row(&test.state_dir, "after the first snapshot").await;
    let filler = test.pool.fill(5 << 20);
    let error = test.engine.create_snapshot().await.expect_err("a snapshot on a full pool");
    assert!(!matches!(error, engine::Error::NoSpace(_)), "the space check is off: {error:?}");
    assert!(error.to_string().contains("no space left on device"), "{error}");
    assert_eq!(test.engine.snapshots(), snapshots);
    let after = storage.list().await.unwrap();
    let names = |listing: &storage::Listing| {
        let mut names: Vec<String> = listing.datasets.iter().map(|d| d.name.to_string()).collect();
        names.extend(listing.snapshots.iter().map(|s| s.name.to_string()));
        names.sort();
        names
    };
    assert_eq!(names(&after), names(&before), "a half-made snapshot stayed: {error}");
    assert_eq!(notes(&first).await, ["before the copy"]);

    // Space back: the sync instance is (again) up and the next snapshot has the new rows.
    filler.remove();
    wait_sync(&test.engine, "OK again", |view| view.code == SyncCode::Ok).await;
    let second = test.engine.create_snapshot().await.unwrap().record;
    assert_ne!(second.id, snapshots[0].record.id);
    let mut request = harness::request("second");
    request.snapshot_id = Some(second.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone = test.ready("second").await;
    assert_eq!(notes(&clone).await, ["before the copy", "after the first snapshot"]);

    // The source stopped: nothing new can be replayed, so a snapshot is skipped, with the
    // reason in an alert; the clones keep working.
    source.stop().await;
    wait_sync(&test.engine, "an error", |view| view.code == SyncCode::Error).await;
    let skipped = test.engine.create_snapshot().await.unwrap().record;
    assert_eq!(skipped.id, second.id);
    let alerts = test.engine.retrieval().alerts;
    let alert = alerts.get("snapshot_skipped").expect("a snapshot_skipped alert");
    assert!(alert.message.contains(&second.id), "{alert:?}");
    assert!(alert.message.contains("not streaming from the source"), "{alert:?}");
    assert_eq!(notes(&clone).await, ["before the copy", "after the first snapshot"]);
}
