//! Continuous refresh end to end: an engine configured with `[retrieval.continuous]` dumps a
//! real PostgreSQL 16 source (`wal_level = logical`) whose slot exported the dump's snapshot,
//! runs the golden copy as a subscriber, and cuts snapshots from it: changes on the source
//! appear in the next snapshot without a dump, no clone carries a subscription, the lag is
//! reported, a full refresh drops the old slot, the next start drops the slot of a refresh
//! interrupted by a crash, an apply error (DDL is not replicated) shows in the sync status and
//! as an alert, and a start with continuous refresh turned off drops the slot and the
//! engine's publication. A source without `wal_level = logical` is refused
//! before any work, and a run that fails leaves no slot or publication behind.

use std::time::Duration;

use engine::SyncCode;
use retrieval::config::{ContinuousConfig, SyncConfig, slot_name};
use retrieval::{Pipeline, RetrievalConfig, SourceConfig, Target};
use storage::ThinStorage;
use tokio_postgres::Client;

use crate::harness::{self, TestEngine};
use crate::physical::{notes, refresh_onto_new_data, slot_exists, wait_refreshed};
use crate::sync::{Source, wait_row, wait_sync};

/// The variable the source's password is read from.
const PASSWORD_ENV: &str = "SCION_TEST_CONTINUOUS_PASSWORD";
const SOURCE_PASSWORD: &str = "c0ntinuous:pw";
/// The source role the engine dumps and replicates as (a superuser: the engine creates its
/// publication `FOR ALL TABLES`).
const SOURCE_USER: &str = "scion_source";

fn set_password_env() {
    #[allow(unsafe_code, reason = "test-only; every writer sets the same value")]
    // SAFETY: only this test reads or writes the variable, always with the same value.
    unsafe {
        std::env::set_var(PASSWORD_ENV, SOURCE_PASSWORD);
    }
}

async fn source_with_role(source: Source) -> Source {
    source
        .sql(&format!("CREATE ROLE {SOURCE_USER} LOGIN SUPERUSER PASSWORD '{SOURCE_PASSWORD}'"))
        .await;
    source
}

fn continuous_config(source: &Source) -> RetrievalConfig {
    RetrievalConfig {
        source: Some(SourceConfig {
            host: Some("127.0.0.1".into()),
            port: source.port,
            username: SOURCE_USER.into(),
            password_env: Some(PASSWORD_ENV.into()),
            ..SourceConfig::default()
        }),
        target_major: 16,
        continuous: Some(ContinuousConfig {
            sync: SyncConfig {
                health_interval: Duration::from_millis(300),
                ..SyncConfig::default()
            },
            ..ContinuousConfig::default()
        }),
        ..RetrievalConfig::default()
    }
}

async fn subscriptions(client: &Client) -> i64 {
    client.query_one("SELECT count(*) FROM pg_catalog.pg_subscription", &[]).await.unwrap().get(0)
}

async fn clone_subscriptions(view: &engine::CloneView) -> i64 {
    subscriptions(&harness::connect(view, harness::PASSWORD).await.unwrap()).await
}

#[tokio::test]
async fn changes_on_the_source_appear_in_the_next_snapshot_without_a_dump() {
    set_password_env();
    let source = source_with_role(Source::start_logical(16).await).await;
    source.insert("before the dump").await;
    let mut config = harness::config(4);
    config.retrieval = Some(continuous_config(&source));

    // The first start dumps and restores, starts the subscriber and cuts its first snapshot.
    let mut test = TestEngine::start(config).await;
    wait_refreshed(&test.engine, None).await;
    let view = wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let golden = view.dataset.clone().unwrap();
    assert!(golden.starts_with("data_"), "{view:?}");
    assert_eq!(test.engine.retrieval().mode(), "logical");
    let summary = test.engine.retrieval().last_summary.unwrap();
    let slot = slot_name("scion_logical", &format!("{golden}_0"));
    assert_eq!(
        summary.replication.iter().map(|r| r.slot.as_str()).collect::<Vec<_>>(),
        [slot.as_str()]
    );
    assert!(slot_exists(&source, &slot).await, "{slot} missing on the source");
    let first = test.engine.snapshots()[0].record.clone();
    assert!(first.storage_name.starts_with("promoted_"), "{first:?}");

    // A clone has the dumped rows and no subscription.
    let clone = test.create("first").await;
    assert_eq!(clone.record.snapshot_id, first.id);
    assert_eq!(notes(&clone).await, ["before the dump"]);
    assert_eq!(clone_subscriptions(&clone).await, 0);

    // A row committed on the source reaches the subscriber, then the next snapshot, without
    // a dump and without stopping the sync instance; the lag is reported.
    let sync_pid = test.engine.sync_status().pid;
    let refreshed = test.engine.retrieval().last_refresh;
    source.insert("after the first snapshot").await;
    wait_row(&test.state_dir, "after the first snapshot").await;
    let view = wait_sync(&test.engine, "a received position", |view| {
        view.code == SyncCode::Ok && view.last_replayed_lsn.is_some()
    })
    .await;
    assert!(view.replication_lag >= 0 && view.replication_uptime >= 0, "{view:?}");
    assert!(view.started_at.is_some() && view.last_replayed_at.is_some(), "{view:?}");
    let second = test.engine.create_snapshot().await.unwrap().record;
    assert_ne!(second.id, first.id);
    assert!(second.data_state_at > first.data_state_at, "{first:?} {second:?}");
    assert_eq!(test.engine.retrieval().last_refresh, refreshed, "a refresh ran");
    assert_eq!(test.engine.sync_status().pid, sync_pid, "the sync instance was restarted");
    let mut request = harness::request("second");
    request.snapshot_id = Some(second.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone2 = test.ready("second").await;
    assert_eq!(notes(&clone2).await, ["before the dump", "after the first snapshot"]);
    assert_eq!(clone_subscriptions(&clone2).await, 0);
    // The subscriber still has its subscription, and still applies.
    assert_eq!(subscriptions(&crate::sync::connect_sync(&test.state_dir).await).await, 1);

    // A second full refresh replaces the golden copy: its slot goes from the source, the new
    // one is there, and the clones keep their data.
    let new_golden = refresh_onto_new_data(&test.engine, &golden).await;
    assert!(!slot_exists(&source, &slot).await, "{slot} is left on the source");
    let new_slot = slot_name("scion_logical", &format!("{new_golden}_0"));
    assert!(slot_exists(&source, &new_slot).await, "{new_slot} missing on the source");
    assert_eq!(notes(&clone).await, ["before the dump"]);

    // A refresh the engine did not live to finish leaves its record and its slot: the next
    // start drops the slot, and the current data's stays.
    let orphan = slot_name("scion_logical", "data_interrupted_0");
    source.sql(&format!("SELECT pg_create_logical_replication_slot('{orphan}', 'pgoutput')")).await;
    let store = engine::store::Store::open(&test.state_dir.join("scion.db")).unwrap();
    store.set_meta(engine::INTERRUPTED_REFRESH_KEY, "data_interrupted").unwrap();
    drop(store);
    test.restart().await;
    assert!(!slot_exists(&source, &orphan).await, "{orphan} is left on the source");
    assert!(slot_exists(&source, &new_slot).await, "{new_slot} was dropped");
    wait_sync(&test.engine, "OK after the restart", |view| view.code == SyncCode::Ok).await;

    // DDL is not replicated: a row with a column the golden copy lacks fails the apply
    // worker, which disables the subscription; the sync status and an alert say so.
    source.sql("ALTER TABLE facts ADD COLUMN extra int").await;
    source.sql("INSERT INTO facts (note, extra) VALUES ('after DDL', 1)").await;
    let view = wait_sync(&test.engine, "an error", |view| view.code == SyncCode::Error).await;
    assert!(view.message.contains("is disabled"), "{view:?}");
    assert!(view.message.contains("extra"), "the apply error is not named: {view:?}");
    let alerts = test.engine.retrieval().alerts;
    assert!(alerts.contains_key("subscription_error"), "{alerts:?}");

    // Continuous refresh turned off (plain logical mode, same source): the next start drops
    // the current data's slot and the engine's publication, which nothing reads any more and
    // which would keep the source's WAL; the clones keep their data.
    assert_eq!(replication_objects(&source).await, (1, 1));
    let mut logical = continuous_config(&source);
    logical.continuous = None;
    logical.skip_start_refresh = true;
    test.config.retrieval = Some(logical);
    test.restart().await;
    assert!(!slot_exists(&source, &new_slot).await, "{new_slot} is left on the source");
    assert_eq!(replication_objects(&source).await, (0, 0));
    assert!(test.engine.retrieval().last_summary.unwrap().replication.is_empty());
    assert!(!test.engine.retrieval().alerts.contains_key("replication_left"));
    assert_eq!(notes(&clone2).await, ["before the dump", "after the first snapshot"]);
}

/// What a run that does not finish leaves on the source: nothing. A source with
/// `wal_level = replica` is refused at the probe, naming the setting, before any slot,
/// publication or dump exists; a run that fails after its slot, publication and subscription
/// exist (its preprocessing fails) drops the slot and the publication it created.
#[tokio::test]
async fn runs_that_do_not_finish_leave_nothing_on_the_source() {
    set_password_env();
    let user = postgres::OsUser::lookup("postgres").unwrap();
    let replica = source_with_role(Source::start(16).await).await;
    let dir = test_support::TestDir::new("scion-continuous-");
    let target = Target::new(dir.path().join("data"), dir.path().join("run"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let pipeline =
        Pipeline::new(continuous_config(&replica), postgres::BinarySearch::default(), user.clone())
            .unwrap();
    let error = pipeline.run(&target, &cancel).await.unwrap_err().to_string();
    assert!(error.contains("wal_level = logical") && error.contains("replica"), "{error}");
    assert!(!dir.path().join("data").exists(), "the target was touched");
    assert_eq!(replication_objects(&replica).await, (0, 0));

    let logical = source_with_role(Source::start_logical(16).await).await;
    let mut config = continuous_config(&logical);
    config.preprocessing.inline = Some("SELECT 1 / 0".into());
    let pipeline = Pipeline::new(config, postgres::BinarySearch::default(), user).unwrap();
    let error = pipeline.run(&target, &cancel).await.unwrap_err().to_string();
    assert!(error.contains("division by zero"), "{error}");
    assert_eq!(replication_objects(&logical).await, (0, 0));
    test_support::stop_postmasters_under(dir.path());
}

/// The logical slots and the publications on `source`.
async fn replication_objects(source: &Source) -> (i64, i64) {
    let client = source.connect().await;
    let slots: i64 =
        client.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await.unwrap().get(0);
    let publications: i64 =
        client.query_one("SELECT count(*) FROM pg_publication", &[]).await.unwrap().get(0);
    (slots, publications)
}

/// On ZFS a clone needs its origin, so a snapshot cut from the subscriber keeps the storage
/// snapshot of the live data it was cloned from (continuous refresh keeps none for points in
/// time): it stays exactly as long as the snapshot made from it, and goes when that is deleted.
#[tokio::test]
async fn on_zfs_a_snapshot_keeps_the_live_data_snapshot_it_came_from_until_deleted() {
    set_password_env();
    let source = source_with_role(Source::start_logical(16).await).await;
    source.insert("before the dump").await;
    let mut config = harness::config(4);
    config.retrieval = Some(continuous_config(&source));
    let test = TestEngine::start_on(test_support::PoolKind::Zfs, config).await;
    wait_refreshed(&test.engine, None).await;
    let view = wait_sync(&test.engine, "OK", |view| view.code == SyncCode::Ok).await;
    let golden = view.dataset.clone().unwrap();
    let storage = test.pool.open().await;
    let kept = |listing: &storage::Listing| -> Vec<String> {
        let prefix = format!("{golden}@");
        listing
            .snapshots
            .iter()
            .map(|snapshot| snapshot.name.to_string())
            .filter(|name| name.starts_with(&prefix))
            .collect()
    };
    let first = test.engine.snapshots()[0].record.clone();
    assert_eq!(kept(&storage.list().await.unwrap()).len(), 1, "the first cut's origin");

    source.insert("after the first snapshot").await;
    wait_row(&test.state_dir, "after the first snapshot").await;
    let second = test.engine.create_snapshot().await.unwrap().record;
    assert_ne!(second.id, first.id);
    let both = kept(&storage.list().await.unwrap());
    assert_eq!(both.len(), 2, "{both:?}");
    let mut request = harness::request("second");
    request.snapshot_id = Some(second.id.clone());
    test.engine.create_clone(request).await.unwrap();
    let clone = test.ready("second").await;

    // The first snapshot deleted: its promoted copy and the origin it needed go; the second's
    // stay under its clone.
    test.engine.delete_snapshot(&first.id, false).await.unwrap();
    let listing = storage.list().await.unwrap();
    let left = kept(&listing);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(both.contains(&left[0]));
    let first_copy =
        storage::DatasetName::new(first.storage_name.split('@').next().unwrap()).unwrap();
    assert!(listing.dataset(&first_copy).is_none(), "{listing:?}");
    assert_eq!(notes(&clone).await, ["before the dump", "after the first snapshot"]);
}
