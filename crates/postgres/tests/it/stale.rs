//! Starting from a copied data directory whose postmaster.pid names a live server elsewhere,
//! and from one whose PID is dead.

use exec::Cmd;
use postgres::{Error, Instance, PgMajor, RoleKind, StopMode};

use crate::support::{STEP, Sandbox, assert_login, binaries, per_major};

async fn start_from_a_copy_with_a_stale_pid_file(major: PgMajor) {
    let sandbox = Sandbox::new();
    let source_spec = sandbox.cluster(major, "source").await;
    let mut source = Instance::start(&binaries(major), source_spec.clone()).await.unwrap();
    let admin = source.admin().await.unwrap();
    admin.create_or_replace_role("dev", "pw", RoleKind::Superuser).await.unwrap();
    admin.client().batch_execute("CREATE TABLE copied AS SELECT 7 AS n").await.unwrap();
    admin.checkpoint().await.unwrap();
    drop(admin);

    // A copy of the running source: what a snapshot of a live instance holds.
    let clone_spec = sandbox.spec("clone");
    Cmd::new("cp")
        .arg("-a")
        .arg(&source_spec.data_dir)
        .arg(&clone_spec.data_dir)
        .run()
        .await
        .unwrap();
    let copied = postgres::PidFile::read(&clone_spec.data_dir).unwrap().unwrap();
    assert_eq!(copied.pid, source.pid(), "the copy carries the source's live PID");

    // The PID is alive but serves another directory: stale for the clone.
    let clone = Instance::start(&binaries(major), clone_spec.clone()).await.unwrap();
    assert_ne!(clone.pid(), source.pid());
    assert_login(clone_spec.settings.port, "dev", "pw").await;
    let client = crate::support::tcp_connect(clone_spec.settings.port, "dev", "pw").await.unwrap();
    let row = client.query_one("SELECT n FROM copied", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    drop(client);
    clone.stop(StopMode::Fast, STEP).await.unwrap();

    // A pid file whose PID is dead is stale too (that of a shell that has exited).
    let dead = Cmd::new("sh").args(["-c", "echo $$"]).output().await.unwrap();
    let dead_pid = dead.stdout_text().trim().to_owned();
    let text = format!("{dead_pid}\n{}\n", clone_spec.data_dir.display());
    std::fs::write(clone_spec.data_dir.join("postmaster.pid"), text).unwrap();
    assert!(postgres::remove_stale_pid_file(&clone_spec.data_dir).unwrap());
    assert!(
        !postgres::remove_stale_pid_file(&clone_spec.data_dir).unwrap(),
        "nothing left to remove"
    );

    // The source's own live pid file is not stale.
    let error = postgres::remove_stale_pid_file(&source_spec.data_dir).unwrap_err();
    assert!(matches!(error, Error::AlreadyRunning { .. }), "{error:?}");
    source.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(start_from_a_copy_with_a_stale_pid_file);
