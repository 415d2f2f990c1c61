//! initdb, start, password login over TCP, every stop mode, escalation, recovery after an
//! immediate stop, and a start that fails.

use std::time::Duration;

use postgres::{ClusterState, Error, Instance, PgMajor, RoleKind, StopMode, Stopped};

use crate::support::{STEP, Sandbox, assert_login, binaries, per_major, tcp_connect};

async fn stop_modes_and_recovery(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let port = spec.settings.port;
    let binaries = binaries(major);

    // Smart with nobody connected: a clean stop by SIGTERM.
    let mut instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    assert!(instance.is_running());
    assert!(!instance.is_adopted());
    assert_eq!(instance.major(), major);
    let admin = instance.admin().await.unwrap();
    admin.create_or_replace_role("dev", "secret pw", RoleKind::Superuser).await.unwrap();
    drop(admin);
    assert_login(port, "dev", "secret pw").await;
    assert_eq!(
        instance.stop(StopMode::Smart, STEP).await.unwrap(),
        Stopped::ByMode(StopMode::Smart)
    );
    assert!(!spec.data_dir.join("postmaster.pid").exists());
    let control = postgres::read_control_data(&Default::default(), &spec.data_dir).await.unwrap();
    assert_eq!(control.state, ClusterState::ShutDown);

    // Smart with an open session waits for it; the bound runs out and fast finishes the job.
    let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    let session = tcp_connect(port, "dev", "secret pw").await.unwrap();
    let stopped = instance.stop(StopMode::Smart, Duration::from_secs(1)).await.unwrap();
    assert_eq!(stopped, Stopped::ByMode(StopMode::Fast));
    assert!(session.simple_query("SELECT 1").await.is_err(), "the session outlived a fast stop");

    // Fast.
    let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    assert_eq!(instance.stop(StopMode::Fast, STEP).await.unwrap(), Stopped::ByMode(StopMode::Fast));

    // Immediate leaves a cluster that needs crash recovery; the next start replays and keeps
    // the committed data.
    let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    let client = tcp_connect(port, "dev", "secret pw").await.unwrap();
    client.batch_execute("CREATE TABLE kept AS SELECT 42 AS answer").await.unwrap();
    drop(client);
    let stopped = instance.stop(StopMode::Immediate, STEP).await.unwrap();
    assert_eq!(stopped, Stopped::ByMode(StopMode::Immediate));
    let control = postgres::read_control_data(&Default::default(), &spec.data_dir).await.unwrap();
    assert!(!control.state.is_clean(), "after an immediate stop: {:?}", control.state);

    let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    let client = tcp_connect(port, "dev", "secret pw").await.unwrap();
    let row = client.query_one("SELECT answer FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(client);
    instance.stop(StopMode::Fast, STEP).await.unwrap();
    let log = std::fs::read_to_string(&spec.log_file).unwrap();
    assert!(log.contains("database system was not properly shut down"), "no recovery in the log");
}
per_major!(stop_modes_and_recovery);

async fn failed_start_reports_the_log(major: PgMajor) {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.cluster(major, "data").await;
    spec.settings.extra.push(("work_mem".to_owned(), "not-a-size".to_owned()));
    let error = Instance::start(&binaries(major), spec.clone()).await.unwrap_err();
    match &error {
        Error::StartFailed { log_tail, .. } => {
            assert!(log_tail.contains("work_mem"), "log tail: {log_tail}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    // The rewritten settings are fixed by the next start.
    spec.settings.extra.clear();
    let instance = Instance::start(&binaries(major), spec).await.unwrap();
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(failed_start_reports_the_log);

async fn a_second_start_is_refused(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();
    let error = Instance::start(&binaries(major), spec).await.unwrap_err();
    assert!(
        matches!(error, Error::AlreadyRunning { pid, .. } if pid == instance.pid()),
        "{error:?}"
    );
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(a_second_start_is_refused);
