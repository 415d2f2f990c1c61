//! pg_controldata on every major, including 13 whose npm build has no pg_controldata.

use postgres::{BinarySearch, ClusterState, InitDbOptions, Instance, Lsn, PgMajor, StopMode};

use crate::support::{ADMIN, STEP, Sandbox, binaries, per_major};

async fn control_data(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec("data");
    let mut options = InitDbOptions::new(ADMIN);
    options.sync = false;
    options.data_checksums = Some(true);
    postgres::initdb(&binaries(major), &spec.data_dir, &spec.user, &options).await.unwrap();
    let search = BinarySearch::default();
    let fresh = postgres::read_control_data(&search, &spec.data_dir).await.unwrap();
    assert_eq!(fresh.state, ClusterState::ShutDown);
    assert_eq!(fresh.timeline, 1);
    assert!(fresh.data_checksums);
    assert!(fresh.checkpoint_lsn > Lsn(0));
    assert_eq!(fresh.control_version, postgres::controldata::control_version(major));
    // Read in UTC: initdb's checkpoint was written moments ago.
    let written = fresh.checkpoint_time.expect("the checkpoint time is understood");
    let age = chrono::Utc::now() - written;
    assert!(age >= chrono::Duration::seconds(-2) && age < chrono::Duration::minutes(10), "{age}");
    assert_eq!(fresh.min_recovery_lsn, Lsn(0), "never in archive recovery");
    assert_eq!(fresh.max_prepared_transactions, Some(0));

    let mut instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();
    let admin = instance.admin().await.unwrap();
    admin
        .client()
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
        .await
        .unwrap();
    admin.checkpoint().await.unwrap();
    drop(admin);
    let running = postgres::read_control_data(&search, &spec.data_dir).await.unwrap();
    assert_eq!(running.state, ClusterState::InProduction);
    assert!(running.checkpoint_lsn > fresh.checkpoint_lsn);
    assert_eq!(running.system_identifier, fresh.system_identifier);
    instance.stop(StopMode::Fast, STEP).await.unwrap();

    // Checksums off: the flag 18 needs, the default elsewhere.
    let spec = sandbox.spec("plain");
    options.data_checksums = Some(false);
    postgres::initdb(&binaries(major), &spec.data_dir, &spec.user, &options).await.unwrap();
    assert!(!postgres::read_control_data(&search, &spec.data_dir).await.unwrap().data_checksums);
}
per_major!(control_data);
