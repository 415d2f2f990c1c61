//! The warm pool: claims, refills, following the head of `main`, giving ports up, restarts.

use std::time::Duration;

use engine::{CloneRequest, EngineConfig};
use storage::ThinStorage;

use crate::harness::{PASSWORD, READY_TIMEOUT, TestEngine, config, connect, connect_as, request};

pub(crate) fn warm_config(ports: u16, size: usize) -> EngineConfig {
    let mut config = config(ports);
    config.cloning.warm_pool_size = size;
    config
}

/// Waits until the warm pool holds `count` clones.
pub(crate) async fn wait_warm(test: &TestEngine, count: usize) {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while test.engine.warm_clones() != count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the warm pool holds {} clones, not {count}",
            test.engine.warm_clones()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The clone datasets in the pool, as `branch/<branch>/<id>/r<n>`.
async fn clone_datasets(test: &TestEngine) -> Vec<String> {
    let listing = test.engine.pool().storage().list().await.unwrap();
    listing
        .datasets
        .iter()
        .map(|dataset| dataset.name.to_string())
        .filter(|name| name.starts_with("branch/") && name.split('/').count() == 4)
        .collect()
}

#[tokio::test]
async fn creates_claim_warm_clones_which_are_made_again() {
    let test = TestEngine::start(warm_config(8, 2)).await;
    wait_warm(&test, 2).await;
    let warm_datasets = clone_datasets(&test).await;
    assert_eq!(warm_datasets.len(), 2, "{warm_datasets:?}");

    let named = test.create("named").await;
    assert!(warm_datasets.contains(&named.record.dataset), "not claimed: {}", named.record.dataset);
    let client = connect(&named, PASSWORD).await.expect("log in to a claimed clone");
    client.batch_execute("CREATE TABLE mine (v int); INSERT INTO mine VALUES (1)").await.unwrap();
    assert!(connect(&named, "Wrong-password-123!").await.is_err(), "a wrong password logs in");
    wait_warm(&test, 2).await;

    // Without an ID, the clone takes the warm clone's, so its dataset is named after it.
    let unnamed = CloneRequest { id: None, ..request("") };
    let view = test.engine.create_clone(unnamed).await.unwrap();
    let unnamed = test.ready(&view.record.id).await;
    assert!(unnamed.record.dataset.contains(&format!("/{}/", unnamed.record.id)));
    let other = connect(&unnamed, PASSWORD).await.unwrap();
    let isolated = other.query_one("SELECT to_regclass('mine') IS NULL", &[]).await.unwrap();
    assert!(isolated.get::<_, bool>(0), "a warm clone saw another clone's write");

    // A request with settings of its own starts cold.
    let mut tuned = request("tuned");
    tuned.extra_conf.insert("work_mem".to_owned(), "7MB".to_owned());
    test.engine.create_clone(tuned).await.unwrap();
    let tuned = test.ready("tuned").await;
    assert!(tuned.record.dataset.contains("/tuned/"), "{}", tuned.record.dataset);
    let client = connect(&tuned, PASSWORD).await.unwrap();
    let work_mem = client.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(work_mem.get::<_, String>(0), "7MB");

    // Destroying a claimed clone leaves nothing of its warm dataset behind.
    test.engine.destroy_clone("named").await.unwrap();
    test.wait_gone("named").await;
    let parent = named.record.dataset.rsplit_once('/').unwrap().0.to_owned();
    let listing = test.engine.pool().storage().list().await.unwrap();
    assert!(
        listing.datasets.iter().all(|dataset| !dataset.name.as_str().starts_with(&parent)),
        "{parent} is still in the pool"
    );
    wait_warm(&test, 2).await;
    assert_eq!(clone_datasets(&test).await.len(), 4, "two clones and two warm ones");
}

#[tokio::test]
async fn warm_clones_follow_the_head_and_hold_no_source_passwords() {
    let test = TestEngine::start(warm_config(8, 1)).await;
    wait_warm(&test, 1).await;
    let source = test.create("source").await;
    let client = connect(&source, PASSWORD).await.unwrap();
    client
        .batch_execute(
            "CREATE ROLE leaky LOGIN PASSWORD 'Leaky-pass-123!'; CREATE TABLE marker (v int);",
        )
        .await
        .unwrap();
    drop(client);
    let old_head = source.record.snapshot_id.clone();
    let commit = test.engine.commit_clone("source", "with a role").await.unwrap();
    assert_ne!(commit.record.id, old_head);

    // The warm pool moves to the new head: a claimed clone sees the commit.
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let dataset_count = clone_datasets(&test).await.len();
        // The source clone plus one warm clone, made on the new head.
        if test.engine.warm_clones() == 1 && dataset_count == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the warm pool did not move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = test.create("fresh").await;
    assert_eq!(fresh.record.snapshot_id, commit.record.id);
    let client = connect(&fresh, PASSWORD).await.unwrap();
    let marker = client.query_one("SELECT to_regclass('marker') IS NOT NULL", &[]).await.unwrap();
    assert!(marker.get::<_, bool>(0), "the clone is not on the new head");
    let leaky = connect_as(&fresh, "leaky", "Leaky-pass-123!").await;
    assert!(leaky.is_err(), "a source password still works");
}

#[tokio::test]
async fn a_snapshot_under_warm_clones_can_be_deleted() {
    let test = TestEngine::start(warm_config(8, 2)).await;
    wait_warm(&test, 2).await;
    let first = test.engine.snapshots().remove(0).record.id;
    test.engine.create_snapshot().await.unwrap();
    // Whether or not the filler has moved yet, the old snapshot is nobody's.
    test.engine
        .delete_snapshot(&first, false)
        .await
        .expect("delete the snapshot under warm clones");
    wait_warm(&test, 2).await;
    let view = test.create("after").await;
    assert_ne!(view.record.snapshot_id, first);
}

#[tokio::test]
async fn warm_clones_give_their_ports_to_clones() {
    let test = TestEngine::start(warm_config(3, 2)).await;
    wait_warm(&test, 2).await;
    let mut first = request("first");
    first.extra_conf.insert("work_mem".to_owned(), "5MB".to_owned());
    test.engine.create_clone(first).await.unwrap();
    test.ready("first").await;
    // The range is now full: the next cold create takes a warm clone's port.
    let mut second = request("second");
    second.extra_conf.insert("work_mem".to_owned(), "6MB".to_owned());
    test.engine.create_clone(second).await.unwrap();
    let second = test.ready("second").await;
    connect(&second, PASSWORD).await.expect("log in on the evicted warm clone's port");
    assert_eq!(test.engine.warm_clones(), 1);
    // And the last warm clone is claimed; then the range is full.
    test.create("third").await;
    assert_eq!(test.engine.warm_clones(), 0);
    let error = test.engine.create_clone(request("fourth")).await.unwrap_err();
    assert!(matches!(error, engine::Error::NoCapacity(_)), "{error}");

    // A destroyed clone's port goes back to the warm pool.
    test.engine.destroy_clone("first").await.unwrap();
    test.wait_gone("first").await;
    wait_warm(&test, 1).await;
}

#[tokio::test]
async fn a_restart_leaves_no_warm_clone_behind() {
    let mut test = TestEngine::start(warm_config(8, 2)).await;
    wait_warm(&test, 2).await;
    let kept = test.create("kept").await;
    wait_warm(&test, 2).await;
    test.restart().await;
    let reconciliation = test.engine.reconciliation();
    assert!(reconciliation.differences.is_empty(), "{reconciliation:?}");
    wait_warm(&test, 2).await;
    assert_eq!(clone_datasets(&test).await.len(), 3, "one clone and two warm ones");
    let kept = test.ready(&kept.record.id).await;
    connect(&kept, PASSWORD).await.expect("the claimed clone survives the restart");
}

#[tokio::test]
async fn concurrent_creates_share_out_warm_clones_and_their_ports() {
    let test = TestEngine::start(warm_config(10, 2)).await;
    wait_warm(&test, 2).await;
    // Ten at once on a range of ten ports, two of them held by warm clones: half the creates
    // could claim one, the others start cold, and the last cold ones take the warm clones'
    // ports if the claims did not get there first.
    let creates = (0..10).map(|n| {
        let engine = test.engine.clone();
        let mut request = request(&format!("burst{n}"));
        if n % 2 == 1 {
            request.extra_conf.insert("work_mem".to_owned(), "6MB".to_owned());
        }
        tokio::spawn(async move { engine.create_clone(request).await })
    });
    for create in creates {
        create.await.unwrap().expect("every create of the burst is accepted");
    }
    let mut ports = std::collections::HashSet::new();
    for n in 0..10 {
        let view = test.ready(&format!("burst{n}")).await;
        assert!(ports.insert(view.record.port), "port {} given twice", view.record.port);
        connect(&view, PASSWORD).await.expect("every clone of the burst logs in");
    }
    assert_eq!(test.engine.warm_clones(), 0, "a warm clone holds a port of a full range");
    assert_eq!(clone_datasets(&test).await.len(), 10, "{:?}", clone_datasets(&test).await);
}

#[tokio::test]
async fn a_burst_sizes_the_warm_pool_for_the_next_one() {
    let test = TestEngine::start(warm_config(24, 1)).await;
    wait_warm(&test, 1).await;
    assert_eq!(test.engine.warm_target(), 1);
    let burst = |round: usize, count: usize, cold: bool| {
        let creates: Vec<_> = (0..count)
            .map(|n| {
                let engine = test.engine.clone();
                let mut request = request(&format!("b{round}x{n}"));
                if cold {
                    request.extra_conf.insert("work_mem".to_owned(), "5MB".to_owned());
                }
                tokio::spawn(async move { engine.create_clone(request).await })
            })
            .collect();
        async move {
            for create in creates {
                create.await.unwrap().expect("every create of the burst is accepted");
            }
        }
    };
    // Creates one after another are no burst: the pool keeps its size.
    for n in 0..3 {
        test.create(&format!("single{n}")).await;
    }
    assert_eq!(test.engine.warm_target(), 1);
    // Five cold creates at once: the pool grows to the most that were in flight together.
    burst(0, 5, true).await;
    for n in 0..5 {
        test.ready(&format!("b0x{n}")).await;
    }
    let target = test.engine.warm_target();
    assert!(target > 1 && target <= 5, "the pool is sized {target} after a burst of 5");
    wait_warm(&test, target).await;
    let warm_datasets = clone_datasets(&test).await;
    // The next burst of that size claims a started clone for every create.
    burst(1, target, false).await;
    for n in 0..target {
        let view = test.ready(&format!("b1x{n}")).await;
        assert!(
            warm_datasets.contains(&view.record.dataset),
            "b1x{n} started cold: {} not in {warm_datasets:?}",
            view.record.dataset
        );
    }
}

/// A reset to a snapshot with a ready warm clone takes it instead of starting cold: the clone
/// keeps its ID, port, credentials and protection, the engine holds its port and carries its
/// connections to the warm server; a restart adopts that server and holds the port again, a
/// stop and a wake move the server onto the clone's own port, and a destroy frees both.
#[tokio::test]
async fn a_reset_claims_a_warm_clone_and_the_clone_keeps_its_identity() {
    let mut test = TestEngine::start(warm_config(8, 1)).await;
    wait_warm(&test, 1).await;
    let keeper = test.create("keeper").await;
    let protect = engine::ProtectionRequest { protected: true, duration_minutes: None };
    test.engine.update_clone("keeper", protect).await.unwrap();
    let client = connect(&keeper, PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE scratch (v int)").await.unwrap();
    drop(client);
    wait_warm(&test, 1).await;
    let warm_datasets = clone_datasets(&test).await;

    test.engine.reset_clone("keeper", engine::ResetTarget::Current).await.unwrap();
    let reset = test.ready("keeper").await;
    assert!(warm_datasets.contains(&reset.record.dataset), "not claimed: {}", reset.record.dataset);
    let server_port = reset.record.server_port.expect("the warm server keeps its own port");
    assert_ne!(server_port, keeper.record.port);
    assert_eq!(reset.record.port, keeper.record.port);
    assert_eq!(reset.record.username, keeper.record.username);
    assert!(reset.record.protected, "protection is kept");
    let client = connect(&reset, PASSWORD).await.expect("served on the clone's own port");
    let gone = client.query_one("SELECT to_regclass('scratch') IS NULL", &[]).await.unwrap();
    assert!(gone.get::<_, bool>(0), "the reset clone still has the old data");
    assert!(connect(&reset, "Wrong-password-123!").await.is_err(), "a wrong password logs in");
    drop(client);

    // A restart adopts the warm server and holds the clone's port again.
    test.restart().await;
    let adopted = test.engine.clone_view("keeper").unwrap();
    assert_eq!(adopted.record.server_port, Some(server_port));
    connect(&adopted, PASSWORD).await.expect("served after a restart");

    // A second reset claims the next warm clone; the first one's server and port are let go.
    wait_warm(&test, 1).await;
    test.engine.reset_clone("keeper", engine::ResetTarget::Current).await.unwrap();
    let again = test.ready("keeper").await;
    let second = again.record.server_port.expect("claimed again");
    assert_ne!(second, server_port);
    connect(&again, PASSWORD).await.expect("served after the second reset");

    // Stopped, the warm server's port is let go; woken, its server runs behind the engine on
    // a private port of the range again.
    let stopped = test.engine.stop_clone("keeper").await.unwrap();
    assert_eq!(stopped.record.server_port, None);
    connect(&stopped, PASSWORD).await.expect("woken");
    let private = test.engine.clone_view("keeper").unwrap().record.server_port;
    let private = private.expect("a woken server listens on a private port");
    assert_ne!(private, keeper.record.port);

    // Protection guards it; lifted, a destroy frees its port.
    assert!(test.engine.destroy_clone("keeper").await.is_err(), "a protected clone is destroyed");
    let unprotect = engine::ProtectionRequest { protected: false, duration_minutes: None };
    test.engine.update_clone("keeper", unprotect).await.unwrap();
    test.engine.destroy_clone("keeper").await.unwrap();
    test.wait_gone("keeper").await;
    std::net::TcpListener::bind(("127.0.0.1", keeper.record.port)).expect("the port is released");
    std::net::TcpListener::bind(("127.0.0.1", private)).expect("the private port is released");
}
