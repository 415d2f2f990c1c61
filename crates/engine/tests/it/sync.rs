//! The sync instance (physical mode): a real source primary, a standby of it made by
//! `pg_basebackup` into a golden dataset, run by the engine. One source per major serves every
//! case, in order: replay, lag while paused, a crash, an engine restart, the source gone.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::{Engine, SyncCode, SyncSettings, SyncView};
use storage::{DatasetName, ThinStorage};
use tokio_postgres::Client;

use crate::harness::{self, TestEngine};

pub(crate) use test_support::primary::{Primary as Source, REPLICATOR};

/// How long a change may take to show, or a status to turn, on a slow shared machine.
const WAIT: Duration = Duration::from_secs(60);
/// The port number of the sync instance's socket file (it has no TCP port).
const SYNC_PORT: u16 = 5432;

/// The engine's sync instance, over its own socket.
pub(crate) async fn connect_sync(state_dir: &Path) -> Client {
    test_support::primary::connect(state_dir.join("sockets").join("sync"), SYNC_PORT).await
}

/// Makes a golden dataset holding a standby of `source`; returns its name.
pub(crate) async fn golden_standby(
    storage: &impl ThinStorage,
    source: &Source,
    name: &str,
) -> DatasetName {
    let dataset = DatasetName::new(name.to_owned()).unwrap();
    let mountpoint = storage.create_dataset(&dataset).await.unwrap();
    source.base_backup(&engine::Pool::pgdata(&mountpoint), &format!("slot_{name}")).await;
    dataset
}

/// Settings that check the sync instance often, so the cases run quickly.
pub(crate) fn quick_settings() -> SyncSettings {
    SyncSettings { health_interval: Duration::from_millis(300), ..SyncSettings::default() }
}

/// Waits until the engine's view of the sync instance satisfies `done`.
pub(crate) async fn wait_sync(
    engine: &Engine,
    what: &str,
    done: impl Fn(&SyncView) -> bool,
) -> SyncView {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = engine.sync_status();
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "the sync instance never got {what}: {view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the sync instance has the row `note`.
pub(crate) async fn wait_row(state_dir: &Path, note: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = connect_sync(state_dir)
            .await
            .query_opt("SELECT 1 FROM facts WHERE note = $1", &[&note])
            .await
            .unwrap()
            .is_some();
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "row {note:?} never reached the sync instance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kill -9 of a postmaster, waiting until it is gone.
fn kill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + WAIT;
    // The postmaster may be this process's child, left a zombie until someone reaps it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    while alive() {
        assert!(Instant::now() < deadline, "{pid} outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn follows_the_source(major: u8) {
    let mut source = Source::start(major).await;
    source.insert("before the copy").await;
    let mut test = TestEngine::start(harness::config(4)).await;
    assert_eq!(test.engine.sync_status().code, SyncCode::NotAvailable);
    assert_eq!(test.engine.retrieval().mode(), "unknown");
    // A clone of the empty cluster the engine made at start: it must keep working throughout.
    let clone = test.create("bystander").await;

    let storage = test.pool.open().await;
    let dataset = golden_standby(&storage, &source, "data_sync").await;
    test.engine.start_sync(&dataset, quick_settings()).await.unwrap();
    let view = wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    assert_eq!(view.dataset.as_deref(), Some("data_sync"));
    assert_eq!(test.engine.retrieval().mode(), "physical");
    assert!(view.started_at.is_some() && view.last_replayed_lsn.is_some(), "{view:?}");
    let first_pid = view.pid.unwrap();
    // Not a TCP server, and not anyone's login but the engine's.
    let status = test.engine.status();
    assert_eq!(status.synchronization.code, SyncCode::Ok);

    // Replay: a row committed on the source after the copy shows up.
    wait_row(&test.state_dir, "before the copy").await;
    source.insert("after the copy").await;
    wait_row(&test.state_dir, "after the copy").await;
    wait_sync(&test.engine, "a replayed commit and no lag", |view| {
        view.last_replayed_at.is_some() && view.replication_lag == 0
    })
    .await;

    // Lag: paused replay while the source is written grows it; resuming brings it to 0.
    connect_sync(&test.state_dir)
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    source.insert("while paused").await;
    let view = wait_sync(&test.engine, "lag while paused", |view| view.replication_lag >= 2).await;
    assert_eq!(view.code, SyncCode::Ok, "{view:?}");
    assert!(view.message.contains("paused"), "{view:?}");
    connect_sync(&test.state_dir)
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_row(&test.state_dir, "while paused").await;
    wait_sync(&test.engine, "no lag after resuming", |view| {
        view.replication_lag == 0 && !view.message.contains("paused")
    })
    .await;

    // kill -9 of the postmaster: the next pass starts it again, and it catches up.
    kill(first_pid);
    source.insert("after the crash").await;
    let view = wait_sync(&test.engine, "a new server", |view| {
        view.code == SyncCode::Ok && view.pid.is_some_and(|pid| pid != first_pid)
    })
    .await;
    let second_pid = view.pid.unwrap();
    wait_row(&test.state_dir, "after the crash").await;
    wait_sync(&test.engine, "no lag after the crash", |view| view.replication_lag == 0).await;

    // An engine restart adopts the running server: the same process.
    test.restart().await;
    let view =
        wait_sync(&test.engine, "OK after a restart", |view| view.code == SyncCode::Ok).await;
    assert_eq!(view.pid, Some(second_pid), "the restarted engine started another server");
    let differences = test.engine.reconciliation().differences;
    assert!(
        differences.iter().all(|difference| difference.object != "data_sync"),
        "{differences:?}"
    );

    // A reboot: the engine down and the server gone without cleaning up (its postmaster.pid
    // left behind); the next start runs it again.
    test.engine.shutdown(Duration::from_secs(30)).await;
    kill(second_pid);
    assert!(postgres::datadir::has_postmaster_pid(&test.engine.pool().pgdata_of(&dataset)));
    test.restart().await;
    wait_sync(&test.engine, "a server after the reboot", |view| {
        view.code == SyncCode::Ok && view.pid.is_some_and(|pid| pid != second_pid)
    })
    .await;

    // The source gone: an error that says why, a growing lag, and clones still working.
    source.stop().await;
    let view = wait_sync(&test.engine, "an error", |view| view.code == SyncCode::Error).await;
    assert!(view.message.contains("not streaming from the source"), "{view:?}");
    let first = wait_sync(&test.engine, "a lag", |view| view.replication_lag >= 1).await;
    let later = wait_sync(&test.engine, "a growing lag", |view| {
        view.replication_lag >= first.replication_lag + 2
    })
    .await;
    assert!(matches!(later.code, SyncCode::Error | SyncCode::Starting), "{later:?}");
    let health = engine::InstanceHealth::of(&test.engine.status(), &test.engine.retrieval());
    assert!(health.attention.contains(&"synchronization"), "{health:?}");
    let client = harness::connect(&clone, harness::PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE still_works (id int)").await.unwrap();

    // The source back: streaming again.
    source.run().await;
    source.insert("source back").await;
    wait_row(&test.state_dir, "source back").await;
    wait_sync(&test.engine, "OK again", |view| {
        view.code == SyncCode::Ok && view.replication_lag == 0
    })
    .await;

    // Retrieval replaced: a new copy becomes the data, the old standby stops.
    let replacement = golden_standby(&storage, &source, "data_sync2").await;
    test.engine.start_sync(&replacement, quick_settings()).await.unwrap();
    assert!(!postgres::datadir::has_postmaster_pid(&test.engine.pool().pgdata_of(&dataset)));
    let view =
        wait_sync(&test.engine, "OK on the new copy", |view| view.code == SyncCode::Ok).await;
    assert_eq!(view.dataset.as_deref(), Some("data_sync2"));
    source.insert("on the new copy").await;
    wait_row(&test.state_dir, "on the new copy").await;

    // Stopped on request: the server goes, the data stays current.
    test.engine.stop_sync().await.unwrap();
    assert_eq!(test.engine.sync_status().code, SyncCode::NotAvailable);
    assert_eq!(test.engine.retrieval().mode(), "unknown");
    assert!(!postgres::datadir::has_postmaster_pid(&test.engine.pool().pgdata_of(&replacement)));
}

#[tokio::test]
async fn sync_instance_follows_a_pg16_source() {
    follows_the_source(16).await;
}

#[tokio::test]
async fn sync_instance_follows_a_pg17_source() {
    follows_the_source(17).await;
}

#[tokio::test]
async fn sync_instance_follows_a_pg14_source() {
    follows_the_source(14).await;
}
