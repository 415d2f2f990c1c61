//! Failures that must be refused early or reported as the right variant: invalid rename maps
//! (before any work), a wrong password, an unreachable source, a missing database, and a full
//! disk in the middle of a restore.

use std::collections::BTreeMap;

use retrieval::{DatabaseConfig, Error, Pipeline, RetrievalConfig, Stage};
use storage::provision::{ImageFs, ImagePool};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Inspect, Sandbox, SourceDb, free_port, live_config, os_user, pg_dump, pipeline,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rename_maps_are_refused_before_any_work() {
    let sandbox = Sandbox::new();
    // No source is running at all: validation must fail before anything tries to connect.
    let mut config = retrieval::RetrievalConfig {
        source: Some(retrieval::SourceConfig {
            host: Some("127.0.0.1".into()),
            port: free_port(),
            ..Default::default()
        }),
        ..Default::default()
    };
    config.dump.location = Some(sandbox.path().join("dump"));
    for (renames, needle) in [
        (vec![("a", "b"), ("b", "c")], "chained rename"),
        (vec![("a", "x"), ("b", "x")], "both renamed to"),
        (vec![("a", "a")], "renamed to itself"),
        (vec![("postgres", "main")], "connection database"),
        (vec![("a", "bad name!")], "not a valid database name"),
    ] {
        config.database_rename =
            renames.iter().map(|(old, new)| ((*old).to_owned(), (*new).to_owned())).collect();
        let error = Pipeline::new(config.clone(), postgres::BinarySearch::default(), os_user())
            .unwrap_err();
        match error {
            Error::InvalidConfig { problems } => {
                assert!(
                    problems.iter().any(|problem| problem.contains(needle)),
                    "{needle}: {problems:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!sandbox.path().join("target").exists());
    assert!(!sandbox.path().join("dump").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_failures_map_to_their_variants() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    let target = sandbox.target();
    let cancel = CancellationToken::new();

    // A wrong password: the environment variable holds another value.
    let mut config = live_config(&sandbox, &source, 16);
    let wrong_env = "SCION_TEST_WRONG_PASSWORD";
    #[allow(unsafe_code, reason = "test-only; this variable is set once, by this test only")]
    // SAFETY: only this test uses this variable, and it writes it before any reader runs.
    unsafe {
        std::env::set_var(wrong_env, "not the password");
    }
    config.source.as_mut().unwrap().password_env = Some(wrong_env.into());
    let pipeline_wrong = pipeline(config);
    let progress = pipeline_wrong.subscribe();
    let error = pipeline_wrong.run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::AuthFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("password authentication failed"), "{error}");
    assert_eq!(progress.borrow().stage, Stage::Failed);
    assert!(progress.borrow().error.is_some());
    assert!(!target.data_dir.exists(), "the probe failed before the target was touched");

    // An unset password variable is a configuration error.
    let mut config = live_config(&sandbox, &source, 16);
    config.source.as_mut().unwrap().password_env = Some("SCION_TEST_UNSET_VARIABLE".into());
    let error = pipeline(config).run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");

    // Nothing listens on this port.
    let mut config = live_config(&sandbox, &source, 16);
    config.source.as_mut().unwrap().port = free_port();
    let error = pipeline(config).run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::SourceUnreachable { .. }), "{error:?}");

    // A database that does not exist, asked for explicitly.
    let mut config = live_config(&sandbox, &source, 16);
    config.databases = BTreeMap::from([("nope".to_owned(), DatabaseConfig::default())]);
    let error = pipeline(config).run(&target, &cancel).await.unwrap_err();
    match &error {
        Error::DatabaseMissing { database, .. } => assert_eq!(database, "nope"),
        other => panic!("{other:?}"),
    }

    // The source's connection database itself missing is the same variant.
    let mut config = live_config(&sandbox, &source, 16);
    config.source.as_mut().unwrap().dbname = "gone".into();
    let error = pipeline(config).run(&target, &cancel).await.unwrap_err();
    assert!(
        matches!(&error, Error::DatabaseMissing { database, .. } if database == "gone"),
        "{error:?}"
    );
    assert!(!target.data_dir.exists());
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_restore_is_no_space() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    // About 120 MB of poorly compressible rows: more than the target filesystem has left.
    source
        .sql(
            "postgres",
            "CREATE TABLE bulk AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) AS filler \
             FROM generate_series(1, 1000000) i;",
        )
        .await;
    let image = ImagePool::new(
        sandbox.path().join("small.img"),
        96 << 20,
        ImageFs::Ext4,
        sandbox.path().join("small"),
    );
    image.ensure().await.unwrap();
    let mut target = sandbox.target();
    target.data_dir = sandbox.path().join("small/pgdata");
    let mut config = live_config(&sandbox, &source, 16);
    config.restore.configs.insert("max_wal_size".into(), "64MB".into());
    let result = pipeline(config).run(&target, &CancellationToken::new()).await;
    image.teardown(true).await.unwrap();
    source.stop().await;
    match result {
        Err(Error::NoSpace { stage, detail }) => {
            assert_eq!(stage, Stage::Restoring, "{detail}");
            assert!(detail.to_ascii_lowercase().contains("no space left on device"), "{detail}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

/// A source with ICU collations and an ICU database is refused on a target built without ICU
/// (the build `scripts/setup` keeps for this), before any dump: the message names what needs
/// ICU and what to install. On the ICU build, the same collation arrives and sorts, and the
/// finished run's totals stay in the progress.
async fn sorted_people(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client.query("SELECT name FROM people ORDER BY name", &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_needs_icu_is_refused_on_a_target_without_it() {
    let sandbox = Sandbox::new();
    let (number, bin_dir) = test_support::non_icu_bin_dir();
    let source = SourceDb::start(&sandbox, number).await;
    for statement in [
        "CREATE DATABASE app",
        "CREATE DATABASE plain",
        "CREATE DATABASE icu_db TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'und'",
    ] {
        source.sql("postgres", statement).await;
    }
    source
        .sql(
            "app",
            "CREATE COLLATION german (provider = icu, locale = 'de-u-co-phonebk');
             CREATE TABLE people (name text COLLATE german);
             INSERT INTO people VALUES ('Müller'), ('Mueller'), ('Muff'), ('Mus');
             CREATE TABLE tags (tag text COLLATE \"und-x-icu\");",
        )
        .await;
    source.sql("plain", "CREATE TABLE t (x text)").await;
    let cancel = CancellationToken::new();
    let target = sandbox.target();

    let mut search = postgres::BinarySearch::default();
    search.bin_dirs.push((postgres::PgMajor::new(number).unwrap(), bin_dir.clone()));
    let config = live_config(&sandbox, &source, number);
    let refused = Pipeline::new(config.clone(), search, os_user()).unwrap();
    let progress = refused.subscribe();
    let error = refused.run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::IcuMissing { .. }), "{error:?}");
    assert_eq!(error.kind(), "icu_missing");
    let message = error.to_string();
    for needle in [
        "ICU collations in app: pg_catalog.\"und-x-icu\", public.german",
        "databases with the ICU locale provider: icu_db",
        &bin_dir.join("postgres").display().to_string(),
        "server built with ICU",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert!(!message.contains("plain"), "{message}");
    assert_eq!(progress.borrow().stage, Stage::Failed);
    assert!(!target.data_dir.exists(), "refused before the target was made");
    assert!(!sandbox.path().join("dump").exists(), "refused before any dump");

    // Dump files of that source are refused the same way, before any restore: an archive with
    // the ICU collations, a plain dump of an ICU database.
    let dumps = sandbox.path().join("icu-dumps");
    std::fs::create_dir(&dumps).unwrap();
    let archive = pg_dump(&source, "app", &["--format=custom"]).await;
    std::fs::write(dumps.join("app.dump"), archive).unwrap();
    let plain = pg_dump(&source, "icu_db", &["--create"]).await;
    std::fs::write(dumps.join("icu_db.sql"), plain).unwrap();
    let mut files = RetrievalConfig { target_major: number, ..RetrievalConfig::default() };
    files.restore.from_dump = Some(dumps);
    let mut search = postgres::BinarySearch::default();
    search.bin_dirs.push((postgres::PgMajor::new(number).unwrap(), bin_dir.clone()));
    let error =
        Pipeline::new(files, search, os_user()).unwrap().run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::IcuMissing { .. }), "{error:?}");
    let message = error.to_string();
    for needle in ["ICU collations in ", "app.dump", "databases with the ICU locale provider in "] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert!(!target.data_dir.exists(), "refused before the target was made");

    // A target cluster asked for with the ICU provider is refused the same way, though no
    // database to restore needs ICU.
    let mut icu_cluster = config.clone();
    icu_cluster.databases = BTreeMap::from([("plain".to_owned(), DatabaseConfig::default())]);
    icu_cluster.restore.initdb_locale_provider = Some("icu".to_owned());
    icu_cluster.restore.initdb_provider_locale = Some("und".to_owned());
    let mut search = postgres::BinarySearch::default();
    search.bin_dirs.push((postgres::PgMajor::new(number).unwrap(), bin_dir.clone()));
    let error = Pipeline::new(icu_cluster, search, os_user())
        .unwrap()
        .run(&target, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::IcuMissing { .. }), "{error:?}");
    assert!(error.to_string().contains("the ICU locale provider"), "{error}");
    assert!(!target.data_dir.exists(), "refused before the target was made");
    assert!(!sandbox.path().join("dump").exists(), "refused before any dump");

    // The ICU build takes the collation, which sorts as on the source.
    let mut config = config;
    config.databases = BTreeMap::from([("app".to_owned(), DatabaseConfig::default())]);
    let accepted = pipeline(config);
    let progress = accepted.subscribe();
    let summary = accepted.run(&target, &cancel).await.unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let finished = progress.borrow().clone();
    assert_eq!(finished.stage, Stage::Finished);
    assert_eq!(finished.tables_done, summary.tables);
    assert_eq!(finished.tables_total, Some(summary.tables));
    assert!(finished.bytes_done > 0 && finished.bytes_done == summary.bytes, "{finished:?}");
    assert_eq!(finished.databases, summary.databases);
    let inspect = Inspect::start(&sandbox, &target, number).await;
    let sorted = sorted_people(&inspect.connect("app").await).await;
    assert_eq!(sorted, sorted_people(&source.connect("app").await).await);
    // Phonebook German sorts "ü" as "ue"; with bytes, "Muff" would come before "Müller".
    assert_eq!(sorted, ["Mueller", "Müller", "Muff", "Mus"]);
    inspect.stop().await;
    source.stop().await;
}
