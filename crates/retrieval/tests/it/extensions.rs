//! Extensions beyond contrib: a source on Debian's PostgreSQL 15 using PostGIS, pg_cron (with
//! its preload library and `cron.database_name`), pg_partman, HypoPG and pg_repack restores into
//! a target on the same install, and a copy of it runs each extension; the same source against
//! Scion's own 15 build (no such packages) is refused before any restore work, naming every
//! missing extension and its package; a preload library the target lacks is reported.

use postgres::{BinarySearch, InitDbOptions};
use retrieval::{Error, Pipeline};
use tokio_util::sync::CancellationToken;

use crate::support::{
    DEBIAN_15, Inspect, Sandbox, SourceDb, debian_search, live_config, major, os_user,
};

/// A source on Debian's 15 preloading `preload`, with `settings` besides.
async fn debian_source(sandbox: &Sandbox, preload: &str, settings: &[(&str, &str)]) -> SourceDb {
    let binaries = debian_search().locate(major(15)).unwrap();
    assert_eq!(binaries.bin_dir(), std::path::Path::new(DEBIAN_15));
    let mut options = InitDbOptions::new("postgres");
    options.sync = false;
    let mut extra = vec![("shared_preload_libraries".to_owned(), preload.to_owned())];
    extra.extend(settings.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
    SourceDb::start_with(sandbox, &binaries, &options, extra).await
}

/// `app` using the five extensions, with data in each that a restore must carry.
async fn populate_extensions(source: &SourceDb) {
    source.sql("postgres", "CREATE DATABASE app").await;
    source
        .sql(
            "app",
            "CREATE EXTENSION postgis;
             CREATE EXTENSION pg_cron;
             CREATE SCHEMA partman;
             CREATE EXTENSION pg_partman SCHEMA partman;
             CREATE EXTENSION hypopg;
             CREATE EXTENSION pg_repack;
             CREATE TABLE places (id int PRIMARY KEY, name text, geom geometry(Point, 4326));
             INSERT INTO places VALUES (1, 'a', ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326)),
                                       (2, 'b', ST_SetSRID(ST_MakePoint(13.40, 52.52), 4326));
             SELECT cron.schedule('nightly-vacuum', '0 3 * * *', 'VACUUM places');
             CREATE TABLE events (id bigint, created timestamptz NOT NULL) PARTITION BY RANGE (created);
             SELECT partman.create_parent('public.events', 'created', 'native', 'daily');
             INSERT INTO events VALUES (1, now());",
        )
        .await;
}

/// A Debian 15 source preloading pg_cron, with `app` using the five extensions, and the
/// configuration that retrieves `app` into a target of major 15.
async fn extensions_source(sandbox: &Sandbox) -> (SourceDb, retrieval::RetrievalConfig) {
    let source = debian_source(sandbox, "pg_cron", &[("cron.database_name", "app")]).await;
    populate_extensions(&source).await;
    let mut config = live_config(sandbox, &source, 15);
    config.databases.insert("app".to_owned(), Default::default());
    (source, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_extensions_restore_and_a_copy_runs_each_one() {
    let sandbox = Sandbox::new();
    let (source, config) = extensions_source(&sandbox).await;
    let cancel = CancellationToken::new();
    let target = sandbox.target();
    let pipeline = Pipeline::new(config, debian_search(), os_user()).unwrap();
    let summary = pipeline.run(&target, &cancel).await.unwrap();
    assert!(
        !summary.warnings.iter().any(|warning| warning.contains("pg_cron")),
        "{:?}",
        summary.warnings
    );

    // A copy as a clone starts it: its configuration preloads pg_stat_statements, which adds
    // to the source's pg_cron rather than replacing it.
    let binaries = debian_search().locate(major(15)).unwrap();
    let preload = ("shared_preload_libraries".to_owned(), "pg_stat_statements".to_owned());
    let copy = Inspect::start_configured(&sandbox, &target, &binaries, vec![preload]).await;
    let client = copy.connect("app").await;
    let row = client.query_one("SHOW shared_preload_libraries", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "pg_cron,pg_stat_statements");
    let row = client.query_one("SHOW cron.database_name", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "app");

    let distance: f64 = client
        .query_one(
            "SELECT ST_Distance(a.geom::geography, b.geom::geography) \
             FROM places a, places b WHERE a.id = 1 AND b.id = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((800_000.0..900_000.0).contains(&distance), "Paris–Berlin is {distance} m");
    let jobs: Vec<String> = client
        .query("SELECT jobname FROM cron.job ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(jobs, ["nightly-vacuum"]);
    client
        .query_one("SELECT cron.schedule('copy-job', '* * * * *', 'SELECT 1')", &[])
        .await
        .unwrap();
    let parents: i64 = client
        .query_one(
            "SELECT count(*) FROM partman.part_config WHERE parent_table = 'public.events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parents, 1);
    client.batch_execute("SELECT partman.run_maintenance()").await.unwrap();
    let rows: i64 = client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    let hypothetical: i64 = client
        .query_one("SELECT count(*) FROM hypopg_create_index('CREATE INDEX ON places (name)')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(hypothetical, 1);
    let repack: String = client.query_one("SELECT repack.version()", &[]).await.unwrap().get(0);
    assert!(repack.starts_with("pg_repack 1."), "{repack}");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_with_extensions_the_target_lacks_is_refused_before_any_restore() {
    let sandbox = Sandbox::new();
    let (source, config) = extensions_source(&sandbox).await;
    let cancel = CancellationToken::new();
    let target = sandbox.target();
    // Scion's own 15 comes first by default, and has contrib only.
    let search = BinarySearch::default();
    let own = search.locate(major(15)).unwrap();
    assert_ne!(own.bin_dir(), std::path::Path::new(DEBIAN_15), "the test needs Scion's own 15");
    let error =
        Pipeline::new(config, search, os_user()).unwrap().run(&target, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::ExtensionsMissing { .. }), "{error:?}");
    assert_eq!(error.kind(), "extensions_missing");
    let message = error.to_string();
    for needle in [
        "pg_cron 1.4-1 (database app; package postgresql-15-cron)",
        "pg_partman 4.7.2 (database app; package postgresql-15-partman)",
        "(database app; package postgresql-15-postgis-3)",
        "(database app; package postgresql-15-hypopg)",
        "(database app; package postgresql-15-repack)",
        "[clone.bin_dirs]",
        "/usr/lib/postgresql/15/bin has hypopg, pg_cron, pg_partman, pg_repack, postgis",
        &own.bin_dir().display().to_string(),
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert!(!message.contains("plpgsql"), "{message}");
    assert!(!target.data_dir.exists(), "refused before the target was made");
    assert!(!sandbox.path().join("dump").exists(), "refused before any dump");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preload_library_the_target_lacks_is_reported_and_the_others_carried() {
    let sandbox = Sandbox::new();
    let source = debian_source(
        &sandbox,
        "pgaudit,auto_explain",
        &[("auto_explain.log_min_duration", "250ms")],
    )
    .await;
    source.sql("postgres", "CREATE DATABASE app").await;
    // No table: Debian's 15.20 gives columns an attribute option (`pg_attver`) that older
    // minors and other majors reject, and the point here is the preload libraries.
    let cancel = CancellationToken::new();
    let target = sandbox.target();
    // Scion's own 16 has auto_explain (contrib) and no pgaudit.
    let mut config = live_config(&sandbox, &source, 16);
    config.databases.insert("app".to_owned(), Default::default());
    let search = BinarySearch::default();
    let summary = Pipeline::new(config, search.clone(), os_user())
        .unwrap()
        .run(&target, &cancel)
        .await
        .unwrap();
    let reported: Vec<&String> =
        summary.warnings.iter().filter(|warning| warning.contains("pgaudit")).collect();
    assert_eq!(reported.len(), 1, "{:?}", summary.warnings);
    assert!(
        reported[0].starts_with("shared_preload_libraries: the source loads pgaudit"),
        "{}",
        reported[0]
    );
    assert!(reported[0].contains("package postgresql-16-pgaudit"), "{}", reported[0]);
    assert!(!summary.warnings.iter().any(|warning| warning.contains("auto_explain")));

    let copy = Inspect::start_with(&sandbox, &target, &search.locate(major(16)).unwrap()).await;
    let client = copy.connect("app").await;
    let row = client.query_one("SHOW shared_preload_libraries", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "auto_explain");
    let row = client.query_one("SHOW auto_explain.log_min_duration", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "250ms");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_physical_copy_is_refused_before_it_starts_when_the_target_lacks_an_extension() {
    let sandbox = Sandbox::new();
    let source = debian_source(&sandbox, "", &[]).await;
    source.sql("postgres", "CREATE DATABASE geo").await;
    source.sql("geo", "CREATE EXTENSION postgis").await;
    let config = crate::physical::physical_config(
        Some(&source),
        retrieval::physical::PhysicalConfig::default(),
    );
    // Scion's own 15 comes first by default: the standby would have no PostGIS.
    let copy = retrieval::InitialCopy::new(config, BinarySearch::default(), os_user()).unwrap();
    let target = crate::physical::copy_target(&sandbox, "copy");
    let error = copy.run(&target, &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, Error::ExtensionsMissing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("(database geo; package postgresql-15-postgis-3)"), "{message}");
    assert!(!target.data_dir.exists(), "refused before the copy");
    source.stop().await;
}
