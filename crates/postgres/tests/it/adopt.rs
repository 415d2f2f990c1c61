//! Adopting a running server from its postmaster.pid after the process that started it is gone.

use exec::Cmd;
use postgres::{Error, Instance, InstanceSpec, PgMajor, RoleKind, StopMode, Stopped};

use crate::support::{STEP, Sandbox, assert_login, binaries, per_major};

/// Starts the server the way a previous engine process would have, from a short-lived parent:
/// `setsid -f` forks postgres into a session of its own and exits at once.
async fn start_from_a_vanished_parent(major: PgMajor, spec: &InstanceSpec) {
    spec.write_config().unwrap();
    let postgres = binaries(major).postgres();
    let command = format!(
        "setsid -f setpriv --reuid={} --regid={} --clear-groups {} -D {} -p {} \
         -c listen_addresses={} -c unix_socket_directories={} >>{} 2>&1 </dev/null; \
         for i in $(seq 1000); do [ -s {}/postmaster.pid ] && break; sleep 0.01; done",
        spec.user.uid,
        spec.user.gid,
        postgres.display(),
        spec.data_dir.display(),
        spec.settings.port,
        spec.settings.listen_addresses,
        spec.settings.socket_dir.display(),
        spec.log_file.display(),
        spec.data_dir.display(),
    );
    // The shell and setsid exit once the server has written its pid file; the server is then
    // nobody's child in this process. (Polling is fine in a fixture, not on the clone path.)
    Cmd::new("sh").args(["-c", &command]).run().await.unwrap();
}

async fn adopt_after_the_starter_exits(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    start_from_a_vanished_parent(major, &spec).await;

    // Adopt waits for readiness if the server is still starting.
    let mut instance = Instance::adopt(&binaries(major), spec.clone()).await.unwrap();
    assert!(instance.is_adopted());
    assert!(instance.is_running());
    let admin = instance.admin().await.unwrap();
    admin.create_or_replace_role("adopted", "pw", RoleKind::Superuser).await.unwrap();
    drop(admin);
    assert_login(spec.settings.port, "adopted", "pw").await;

    // The same server, adopted again after this handle is dropped (an engine restart).
    let pid = instance.pid();
    drop(instance);
    let instance = Instance::adopt(&binaries(major), spec.clone()).await.unwrap();
    assert_eq!(instance.pid(), pid);
    assert_eq!(instance.stop(StopMode::Fast, STEP).await.unwrap(), Stopped::ByMode(StopMode::Fast));
    assert!(!postgres::instance::is_postmaster_of(pid, &spec.data_dir));

    let error = Instance::adopt(&binaries(major), spec).await.unwrap_err();
    assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
}
per_major!(adopt_after_the_starter_exits);

async fn adopt_checks_port_and_socket(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();

    let mut other_port = spec.clone();
    other_port.settings.port = spec.settings.port.wrapping_add(1);
    let error = Instance::adopt(&binaries(major), other_port).await.unwrap_err();
    assert!(matches!(error, Error::AdoptMismatch { .. }), "{error:?}");

    let mut other_socket = spec.clone();
    other_socket.settings.socket_dir = sandbox.path().join("elsewhere");
    let error = Instance::adopt(&binaries(major), other_socket).await.unwrap_err();
    assert!(matches!(error, Error::AdoptMismatch { .. }), "{error:?}");

    // What the server listens on is the running server's, whatever the adopting spec says.
    assert_eq!(instance.listen_address(), Some(spec.settings.listen_addresses.as_str()));
    let mut no_tcp = spec.clone();
    no_tcp.settings.listen_addresses = String::new();
    let adopted = Instance::adopt(&binaries(major), no_tcp).await.unwrap();
    assert_eq!(adopted.listen_address(), Some(spec.settings.listen_addresses.as_str()));
    drop(adopted);

    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(adopt_checks_port_and_socket);
