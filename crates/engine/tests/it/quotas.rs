//! Per-clone limits on real cgroups (this host's v1 memory and cpu hierarchies): a clone that
//! allocates past its memory limit loses a backend to the kernel and recovers, while the others
//! keep serving; limits survive a restart, a destroyed clone's group goes, and a start removes
//! the groups nobody owns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::{CloneLimits, CloneView, DifferenceKind};

use crate::harness::{PASSWORD, TestEngine, config, connect, request};

/// Allocates 500 MB in one backend (one string, built in memory: nothing spills to disk).
const RUNAWAY: &str = "SELECT length(repeat('x', 500000000))";

fn postmaster(test: &TestEngine, clone: &CloneView) -> u32 {
    let pgdata = test.pool.mountpoint().join(&clone.record.dataset).join("data");
    postgres::instance::find_postmaster(1, &pgdata).expect("the clone's postmaster")
}

/// The directory of the memory cgroup `pid` is in.
fn memory_cgroup(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|name| name == "memory").then(|| path.to_owned())
        })
        .expect("a memory cgroup");
    Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
}

async fn create_limited(test: &TestEngine, id: &str, limits: CloneLimits) -> CloneView {
    test.engine.create_clone(engine::CloneRequest { limits, ..request(id) }).await.unwrap();
    test.ready(id).await
}

/// Connects until the clone's server accepts connections again (after its crash recovery).
pub(crate) async fn reconnect(view: &CloneView) -> tokio_postgres::Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match connect(view, PASSWORD).await {
            Ok(client) if client.simple_query("SELECT 1").await.is_ok() => return client,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the clone did not come back: {error}"),
            Ok(_) => panic!("the clone did not come back"),
        }
    }
}

#[tokio::test]
async fn a_clone_past_its_memory_limit_is_the_only_one_hurt() {
    let test = TestEngine::start(config(4)).await;
    let calm = [test.create("calm-a").await, test.create("calm-b").await];
    let limits = CloneLimits { cpu: Some(1.0), memory: Some(192 << 20), disk: None };
    let hog = create_limited(&test, "hog", limits).await;
    assert_eq!(hog.limits, limits);
    assert!(calm.iter().all(|view| view.limits.is_empty() && view.usage.is_none()));
    let usage = hog.usage.expect("a limited clone shows its usage");
    assert!(usage.memory_bytes.unwrap() > 0, "{usage:?}");

    // The server runs in the clone's group, its backends with it; the others in none of it.
    let group = memory_cgroup(postmaster(&test, &hog));
    assert_eq!(
        std::fs::read_to_string(group.join("memory.limit_in_bytes")).unwrap().trim(),
        (192u64 << 20).to_string()
    );
    for view in &calm {
        assert_ne!(memory_cgroup(postmaster(&test, view)), group);
    }

    // Sessions in every clone, open across the runaway.
    let mut calm_sessions = Vec::new();
    for view in &calm {
        let client = connect(view, PASSWORD).await.unwrap();
        client.batch_execute("CREATE TABLE kept AS SELECT 1 AS one").await.unwrap();
        calm_sessions.push(client);
    }
    let bystander = connect(&hog, PASSWORD).await.unwrap();
    let runaway = connect(&hog, PASSWORD).await.unwrap();
    let error = runaway.simple_query(RUNAWAY).await.expect_err("the limit stops the query");
    drop(runaway);

    let after = test.engine.clone_view("hog").unwrap();
    let oom_kills = after.usage.and_then(|usage| usage.oom_kills).unwrap();
    assert!(oom_kills >= 1, "{error:?}: {:?}", after.usage);
    // The postmaster restarts the clone's backends (crash recovery): its other session ends…
    // (once the postmaster has seen its child die).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while bystander.simple_query("SELECT 1").await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the clone's other session lived on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and the clone serves again, in the same group, still limited.
    let back = reconnect(&hog).await;
    back.simple_query("SELECT 1").await.unwrap();
    assert_eq!(memory_cgroup(postmaster(&test, &hog)), group);
    // The other clones never noticed: their sessions lived on.
    for client in &calm_sessions {
        let row = client.query_one("SELECT one FROM kept", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }

    test.engine.destroy_clone("hog").await.unwrap();
    test.wait_gone("hog").await;
    assert!(!group.exists(), "the destroyed clone's group {} is gone", group.display());
}

#[tokio::test]
async fn limits_survive_a_restart_and_a_start_removes_groups_nobody_owns() {
    let mut config = config(3);
    // The configuration's default applies to a clone whose request sets no memory limit.
    config.clone.memory = Some("256MB".to_owned());
    let mut test = TestEngine::start(config).await;
    let own = CloneLimits { cpu: Some(0.5), memory: None, disk: None };
    let limited = create_limited(&test, "limited", own).await;
    assert_eq!(limited.limits, CloneLimits { cpu: Some(0.5), memory: Some(256 << 20), disk: None });
    let group = memory_cgroup(postmaster(&test, &limited));
    let tree = group.parent().unwrap().to_path_buf();
    // A group a crash left: a port no clone holds.
    let leftover = tree.join("1");
    std::fs::create_dir(&leftover).unwrap();

    test.restart().await;
    let reconciliation = test.engine.reconciliation();
    assert_eq!(reconciliation.count(DifferenceKind::LeftoverCgroup), 1, "{reconciliation:?}");
    assert!(!leftover.exists());
    let view = test.engine.clone_view("limited").unwrap();
    assert_eq!(view.record.limits, own);
    assert_eq!(view.limits, CloneLimits { cpu: Some(0.5), memory: Some(256 << 20), disk: None });
    assert!(group.exists());

    // A reset starts the server again in the same group, with the same limits.
    test.engine.reset_clone("limited", engine::ResetTarget::Current).await.unwrap();
    let reset = test.ready("limited").await;
    assert_eq!(memory_cgroup(postmaster(&test, &reset)), group);

    // Limits the host cannot hold or no kernel takes are refused before anything is made.
    let error = test
        .engine
        .create_clone(engine::CloneRequest {
            limits: CloneLimits { cpu: Some(0.0), memory: None, disk: None },
            ..request("refused")
        })
        .await
        .unwrap_err();
    assert!(matches!(error, engine::Error::InvalidInput(_)), "{error}");

    test.engine.destroy_clone("limited").await.unwrap();
    test.wait_gone("limited").await;
    assert!(!group.exists());
    assert!(!tree.exists(), "the engine's tree goes with its last group");
}
