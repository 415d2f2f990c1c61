//! Successful refreshes: full, parallel, immediate (streamed), partial, renamed and
//! preprocessed, and into a newer major than the source's.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use retrieval::{DatabaseConfig, Stage};
use tokio_util::sync::CancellationToken;

use crate::support::{Inspect, Sandbox, SourceDb, assert_same_data, live_config, pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refresh_matches_the_source_table_by_table() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.populate().await;
    let mut config = live_config(&sandbox, &source, 16);
    config.dump.parallel_jobs = 2;
    config.restore.parallel_jobs = 2;
    let pipeline = pipeline(config);
    let progress = pipeline.subscribe();
    let target = sandbox.target();
    let summary = pipeline.run(&target, &CancellationToken::new()).await.unwrap();

    let names: Vec<&str> =
        summary.databases.iter().map(|database| database.name.as_str()).collect();
    assert_eq!(names, ["app", "postgres", "shop"]);
    assert_eq!(summary.source_major, Some(16));
    assert_eq!(summary.tools_major, 16);
    // customers, orders, invoices, empty_table, items, "Mixed Case".
    assert_eq!(summary.tables, 6);
    assert!(summary.bytes > 0);
    let stages: Vec<Stage> = summary.stages.iter().map(|timing| timing.stage).collect();
    // initdb and the target's start run during the dump: no separate preparing stage.
    assert!(!stages.contains(&Stage::Preparing), "{stages:?}");
    for stage in [Stage::Probing, Stage::Roles, Stage::Dumping, Stage::Restoring, Stage::Stopping] {
        assert!(stages.contains(&stage), "{stage} in {stages:?}");
    }
    assert!(summary.data_state_at <= chrono::Utc::now());
    // Progress counted the tables from the tools' verbose output and the bytes of the dump.
    let stage =
        |wanted: Stage| *summary.stages.iter().find(|timing| timing.stage == wanted).unwrap();
    assert_eq!(stage(Stage::Dumping).tables, 6);
    assert_eq!(stage(Stage::Dumping).bytes, summary.bytes);
    assert_eq!(stage(Stage::Restoring).tables, 6);
    assert!(stage(Stage::Restoring).bytes > 0, "the target's base/ grew");
    let last = progress.borrow().clone();
    assert_eq!(last.stage, Stage::Finished);
    assert_eq!(last.error, None);
    // The dump is removed after a successful restore unless `dump.keep`.
    assert!(!sandbox.path().join("dump/app").exists());

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    assert_same_data(&source, &inspect, &[("app", "app"), ("shop", "shop")]).await;
    let app = inspect.connect("app").await;
    let row = app
        .query_one(
            "SELECT (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension), \
                    (SELECT tableowner::text FROM pg_tables WHERE tablename = 'customers'), \
                    has_table_privilege('app_reader', 'sales.invoices', 'SELECT'), \
                    (SELECT count(*) FROM pg_policy), \
                    nextval('sales.counter'), \
                    (SELECT count(*) FROM sales.big_invoices)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pg_stat_statements,pgcrypto,plpgsql");
    assert_eq!(row.get::<_, String>(1), "app_owner", "owners are kept: roles were copied");
    assert!(row.get::<_, bool>(2), "grants are kept");
    assert_eq!(row.get::<_, i64>(3), 1);
    assert_eq!(row.get::<_, i64>(4), 42);
    assert!(row.get::<_, i64>(5) > 0);
    // Frozen at retrieval: every row of a restored table carries HEAP_XMIN_FROZEN, so clones
    // reading it write nothing.
    app.batch_execute("CREATE EXTENSION pageinspect").await.unwrap();
    let unfrozen = app
        .query_one(
            "SELECT count(*) FILTER (WHERE t_infomask & 768 <> 768), count(*) \
             FROM heap_page_items(get_raw_page('customers', 0)) WHERE lp_flags = 1",
            &[],
        )
        .await
        .unwrap();
    assert!(unfrozen.get::<_, i64>(1) > 0);
    assert_eq!(unfrozen.get::<_, i64>(0), 0, "rows left unfrozen");
    drop(app);
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_restore_streams_without_a_dump_on_disk() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.populate().await;
    let mut config = live_config(&sandbox, &source, 16);
    config.dump.immediate_restore = true;
    config.restore.skip_policies = false;
    let pipeline = pipeline(config);
    let target = sandbox.target();
    let summary = pipeline.run(&target, &CancellationToken::new()).await.unwrap();
    assert!(summary.stages.iter().any(|timing| timing.stage == Stage::Streaming));
    assert!(summary.stages.iter().any(|timing| timing.stage == Stage::Preparing));
    assert!(!summary.stages.iter().any(|timing| timing.stage == Stage::Dumping));
    assert!(!sandbox.path().join("dump").exists(), "nothing was written to the dump location");
    assert!(summary.bytes > 0, "bytes piped are counted");
    let streaming = summary.stages.iter().find(|timing| timing.stage == Stage::Streaming).unwrap();
    assert_eq!((streaming.bytes, streaming.tables), (summary.bytes, 6));
    assert_eq!(summary.tables, 6);

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    assert_same_data(&source, &inspect, &[("app", "app"), ("shop", "shop")]).await;
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_target_major_than_the_source_without_policies() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 14).await;
    source.populate().await;
    let mut config = live_config(&sandbox, &source, 17);
    config.restore.skip_policies = true;
    let target = sandbox.target();
    let summary = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap();
    assert_eq!(summary.source_major, Some(14));
    assert_eq!(summary.target_major, 17);
    assert_eq!(summary.tools_major, 17, "dumped with the newer major's pg_dump");
    assert_eq!(postgres::PgMajor::of_data_dir(&target.data_dir).unwrap().number(), 17);

    let inspect = Inspect::start(&sandbox, &target, 17).await;
    assert_same_data(&source, &inspect, &[("app", "app"), ("shop", "shop")]).await;
    let policies: i64 = inspect
        .connect("app")
        .await
        .query_one("SELECT count(*) FROM pg_policy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(policies, 0, "skip_policies left the RLS policy out");
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_retrieval_holds_only_the_selected_tables() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.populate().await;
    let mut config = live_config(&sandbox, &source, 16);
    config.databases = BTreeMap::from([(
        "app".to_owned(),
        DatabaseConfig {
            tables: vec!["public.customers".into(), "sales.invoices".into()],
            exclude_tables: vec![],
        },
    )]);
    config.dump.parallel_jobs = 2;
    config.restore.parallel_jobs = 2;
    let target = sandbox.target();
    let summary = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap();
    assert_eq!(summary.tables, 2);

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    assert_eq!(inspect.databases().await, ["app", "postgres"], "shop was not retrieved");
    let actual = inspect.fingerprints("app").await;
    let expected = source.fingerprints("app").await;
    let tables: Vec<&String> = actual.keys().collect();
    assert_eq!(tables, ["<large objects>", "public.customers", "sales.invoices"]);
    for table in ["public.customers", "sales.invoices"] {
        assert_eq!(actual[table], expected[table], "{table}");
    }
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_and_preprocessing_take_effect() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.populate().await;
    let queries = sandbox.path().join("queries");
    std::fs::create_dir_all(queries.join("20_parallel")).unwrap();
    std::fs::write(
        queries.join("10_mask.sql"),
        "\\connect app\nUPDATE customers SET email = 'masked-' || id;\n",
    )
    .unwrap();
    for index in 0..3 {
        std::fs::write(
            queries.join(format!("20_parallel/{index}.sql")),
            format!("\\connect shop\nCREATE TABLE parallel_{index} AS SELECT {index} AS n;\n"),
        )
        .unwrap();
    }
    let script = sandbox.path().join("hook.sh");
    let marker = sandbox.path().join("hook.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$PGUSER $PGDATABASE $(cat \"$PGDATA/PG_VERSION\")\" > {}\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut config = live_config(&sandbox, &source, 16);
    config.database_rename = BTreeMap::from([
        ("app".to_owned(), "app_dev".to_owned()),
        ("shop".to_owned(), "shop-dev".to_owned()),
    ]);
    config.preprocessing.query_path = Some(queries);
    config.preprocessing.inline = Some("CREATE TABLE inline_ran (ok bool);".into());
    config.preprocessing.script = Some(script);
    let target = sandbox.target();
    let summary = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap();
    let names: Vec<(&str, &str)> = summary
        .databases
        .iter()
        .map(|database| (database.source_name.as_str(), database.name.as_str()))
        .collect();
    assert_eq!(names, [("app", "app_dev"), ("postgres", "postgres"), ("shop", "shop-dev")]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "postgres postgres 16");

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    assert_eq!(inspect.databases().await, ["app_dev", "postgres", "shop-dev"]);
    let app = inspect.connect("app_dev").await;
    let masked: i64 = app
        .query_one("SELECT count(*) FROM customers WHERE email LIKE 'masked-%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(masked, 2000);
    let shop = inspect.connect("shop-dev").await;
    let parallel: i64 = shop
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'parallel\\_%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(parallel, 3);
    let postgres = inspect.connect("postgres").await;
    assert_eq!(postgres.query("SELECT * FROM inline_ran", &[]).await.unwrap().len(), 0);
    // Tables untouched by preprocessing are identical to the source's.
    let expected = source.fingerprints("shop").await;
    let actual = inspect.fingerprints("shop-dev").await;
    assert_eq!(actual["public.items"], expected["public.items"]);
    drop((app, shop, postgres));
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_run_and_its_target() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    let script = sandbox.path().join("slow.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = live_config(&sandbox, &source, 16);
    config.preprocessing.script = Some(script);
    let pipeline = pipeline(config);
    let mut progress = pipeline.subscribe();
    let cancel = CancellationToken::new();
    let target = sandbox.target();
    let canceller = cancel.clone();
    let watcher = tokio::spawn(async move {
        progress.wait_for(|progress| progress.stage == Stage::Preprocessing).await.unwrap();
        canceller.cancel();
    });
    let error = pipeline.run(&target, &cancel).await.unwrap_err();
    watcher.await.unwrap();
    assert!(
        matches!(error, retrieval::Error::Cancelled { stage: Stage::Preprocessing }),
        "{error:?}"
    );
    // The temporary target was stopped.
    if let Ok(Some(file)) = postgres::PidFile::read(&target.data_dir) {
        assert!(!postgres::instance::is_postmaster_of(file.pid, &target.data_dir));
    }
    // A token cancelled before the run stops it in the first stage.
    let error = pipeline.run(&sandbox.target(), &cancel).await.unwrap_err();
    assert!(matches!(error, retrieval::Error::Cancelled { stage: Stage::Probing }), "{error:?}");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_13_source_and_target_use_the_14_client_tools() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 13).await;
    source.populate().await;
    let config = live_config(&sandbox, &source, 13);
    let target = sandbox.target();
    let summary = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap();
    assert_eq!(
        (summary.source_major, summary.target_major, summary.tools_major),
        (Some(13), 13, 14)
    );
    assert!(
        summary
            .warnings
            .iter()
            .any(|warning| warning.contains("PostgreSQL 13 has no client tools")),
        "{:?}",
        summary.warnings
    );

    let inspect = Inspect::start(&sandbox, &target, 13).await;
    assert_same_data(&source, &inspect, &[("app", "app"), ("shop", "shop")]).await;
    inspect.stop().await;
    source.stop().await;
}
