//! A server in a sandbox of its own (mount, PID and IPC namespaces, a private root): it starts,
//! is found again by its working directory although its postmaster.pid names PID 1, refuses a
//! second start on the same directory, and stops.

use postgres::{Error, Instance, PgMajor, RoleKind, StopMode, Stopped};

use crate::support::{STEP, Sandbox, assert_login, binaries, per_major};

async fn sandboxed_server_starts_adopts_and_stops(major: PgMajor) {
    let sandbox = Sandbox::new();
    let mut spec = sandbox.cluster(major, "data").await;
    let root = sandbox.path().join("root");
    std::fs::create_dir(&root).unwrap();
    spec.sandbox_root = Some(root.clone());

    let mut instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();
    let admin = instance.admin().await.unwrap();
    admin.create_or_replace_role("inside", "pw", RoleKind::Superuser).await.unwrap();
    let row = admin.client().query_one("SELECT pg_backend_pid() < 100", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0), "the backend's PID is one of its own namespace");
    drop(admin);
    assert_login(spec.settings.port, "inside", "pw").await;
    let file = postgres::PidFile::read(&spec.data_dir).unwrap().unwrap();
    assert_eq!(file.pid, 1, "the postmaster is PID 1 of its namespace");
    assert_eq!(postgres::instance::find_postmaster(1, &spec.data_dir), Some(instance.pid()));

    // The running server's pid file is not stale, although PID 1 on the host is not it.
    let error = postgres::remove_stale_pid_file(&spec.data_dir).unwrap_err();
    assert!(matches!(error, Error::AlreadyRunning { .. }), "{error:?}");

    let pid = instance.pid();
    drop(instance);
    let instance = Instance::adopt(&binaries(major), spec.clone()).await.unwrap();
    assert_eq!(instance.pid(), pid);
    assert_eq!(instance.stop(StopMode::Fast, STEP).await.unwrap(), Stopped::ByMode(StopMode::Fast));
    assert_eq!(postgres::instance::find_postmaster(1, &spec.data_dir), None);
    // Now the file is stale and goes; nothing of the sandbox's mounts is left on the host.
    let _ = postgres::remove_stale_pid_file(&spec.data_dir).unwrap();
    assert!(std::fs::read_dir(&root).unwrap().next().is_none());
}
per_major!(sandboxed_server_starts_adopts_and_stops);
