//! Restores from existing dump files: plain SQL compressed with gzip and bzip2, and a custom-format
//! archive, found by content in `restore.from_dump`.

use std::io::Write;

use retrieval::{RetrievalConfig, Target};
use tokio_util::sync::CancellationToken;

use crate::support::{Inspect, Sandbox, SourceDb, assert_same_data, pg_dump, pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_plain_gzip_bzip2_and_custom_dumps() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.populate().await;
    source.sql("postgres", "CREATE DATABASE notes; ").await;
    source.sql("notes", "CREATE TABLE note (id int, body text); INSERT INTO note SELECT i, 'n' || i FROM generate_series(1, 700) i;").await;
    let dumps = sandbox.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();

    // Without roles in the target, the dumps leave owners and grants out, as operators do.
    // app: plain with CREATE DATABASE, gzip. shop: plain without it, bzip2 (the database is
    // created from the file name). notes: custom format, restored with `--no-owner`.
    let app = pg_dump(&source, "app", &["--create", "--no-owner", "--no-privileges"]).await;
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dumps.join("app.sql.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&app).unwrap();
    gz.finish().unwrap();
    let shop = pg_dump(&source, "shop", &["--no-owner", "--no-privileges"]).await;
    let mut bz = bzip2::write::BzEncoder::new(
        std::fs::File::create(dumps.join("shop.sql.bz2")).unwrap(),
        bzip2::Compression::fast(),
    );
    bz.write_all(&shop).unwrap();
    bz.finish().unwrap();
    let notes = pg_dump(&source, "notes", &["--format=custom", "--create"]).await;
    std::fs::write(dumps.join("notes.dump"), notes).unwrap();

    let mut config = RetrievalConfig { target_major: 16, ..RetrievalConfig::default() };
    config.restore.from_dump = Some(dumps);
    config.restore.parallel_jobs = 2;
    config.restore.custom_options.push("--no-owner".into());
    let target = sandbox.target();
    let summary = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap();
    let names: Vec<&str> =
        summary.databases.iter().map(|database| database.name.as_str()).collect();
    assert_eq!(names, ["app", "notes", "shop"]);
    assert_eq!(summary.source_major, None);

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    assert_same_data(&source, &inspect, &[("app", "app"), ("shop", "shop"), ("notes", "notes")])
        .await;
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_in_a_locale_this_host_lacks_is_refused_before_any_work() {
    let sandbox = Sandbox::new();
    let dumps = sandbox.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    // What pg_dump --create writes for a database in a locale that is not installed here.
    std::fs::write(
        dumps.join("odd.sql"),
        "CREATE DATABASE odd WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'xx_XX.UTF-8';\n\\connect odd\nCREATE TABLE t (id int);\n",
    )
    .unwrap();
    let mut config = RetrievalConfig { target_major: 16, ..RetrievalConfig::default() };
    config.restore.from_dump = Some(dumps);
    let target = sandbox.target();
    let error = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(error.kind(), "tool_missing", "{error}");
    assert!(error.to_string().contains("locale xx_XX.UTF-8"), "{error}");
    assert!(!target.data_dir.join("PG_VERSION").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_dump_s_ignored_errors_are_warnings() {
    let sandbox = Sandbox::new();
    let dumps = sandbox.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    // psql goes past both failed statements and exits 0; the rows still arrive.
    std::fs::write(
        dumps.join("app.sql"),
        "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (2);\n\
         ALTER TABLE missing ADD COLUMN x int;\nCREATE EXTENSION no_such_extension;\n",
    )
    .unwrap();
    let mut config = RetrievalConfig { target_major: 16, ..RetrievalConfig::default() };
    config.restore.from_dump = Some(dumps.clone());
    config.restore.ignore_errors = true;
    // Named, so that the cluster's locale is no warning of its own.
    config.restore.initdb_locale = Some("C.UTF-8".to_owned());
    let target = sandbox.target();
    let summary = pipeline(config.clone()).run(&target, &CancellationToken::new()).await.unwrap();
    assert_eq!(summary.warning_count, 2, "{:?}", summary.warnings);
    let text = summary.warnings.join("\n");
    for needle in ["app: restore errors ignored", "\"missing\" does not exist", "no_such_extension"]
    {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    let inspect = Inspect::start(&sandbox, &target, 16).await;
    let rows: i64 =
        inspect.connect("app").await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2);
    drop(inspect);

    // Without ignore_errors the same dump fails the run.
    config.restore.ignore_errors = false;
    let error = pipeline(config)
        .run(
            &Target::new(sandbox.path().join("strict"), sandbox.path().join("run-strict")),
            &CancellationToken::new(),
        )
        .await;
    assert!(error.is_err(), "{error:?}");
}
