//! Full refresh from a real source database: data arrives in a new snapshot while clones keep
//! running on theirs, and a failed refresh leaves everything as it was.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgMajor, RoleKind, ServerSettings,
    StopMode,
};
use serde_json::Value;
use test_support::{TestDir, files_holding, free_port_range};

use crate::harness::{SOURCE_PASSWORD, SOURCE_PASSWORD_ENV, TestServer, connect};

/// A source cluster with a password-protected superuser and one database of orders.
pub(crate) struct Source {
    instance: Option<Instance>,
    spec: InstanceSpec,
    port: u16,
    _dir: TestDir,
}

impl Source {
    pub(crate) async fn start() -> Source {
        let dir = TestDir::new("scion-source-");
        let user = OsUser::lookup("postgres").unwrap();
        let binaries = BinarySearch::default().locate(PgMajor::new(16).unwrap()).unwrap();
        let data_dir = dir.path().join("data");
        postgres::initdb(&binaries, &data_dir, &user, &InitDbOptions::new("postgres"))
            .await
            .unwrap();
        let port = *free_port_range(1).start();
        let socket_dir: PathBuf = dir.path().join("sock");
        let spec = InstanceSpec::new(
            &data_dir,
            ServerSettings::new(port, &socket_dir),
            "postgres",
            dir.path().join("log"),
            user,
        );
        let mut instance = Instance::start(&binaries, spec.clone()).await.unwrap();
        let admin = instance.admin().await.unwrap();
        admin.create_or_replace_role("reader", SOURCE_PASSWORD, RoleKind::Superuser).await.unwrap();
        admin.client().batch_execute("CREATE DATABASE shop").await.unwrap();
        drop(admin);
        let source = Source { instance: Some(instance), spec, port, _dir: dir };
        source
            .sql(
                "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
                    INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g",
            )
            .await;
        source
    }

    async fn sql(&self, statements: &str) {
        let admin =
            postgres::Admin::connect(&self.spec.settings.socket_dir, self.port, "postgres", "shop")
                .await
                .unwrap();
        admin.client().batch_execute(statements).await.unwrap();
    }

    async fn stop(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, Duration::from_secs(30)).await.unwrap();
        }
    }

    /// The `[retrieval]` section that dumps it (`shop` renamed `shop_dev`).
    pub(crate) fn config(&self) -> String {
        format!(
            "[retrieval]\ntarget_major = 16\n[retrieval.source]\nhost = \"127.0.0.1\"\nport = {}\n\
             dbname = \"postgres\"\nusername = \"reader\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\
             [retrieval.database_rename]\nshop = \"shop_dev\"\n",
            self.port
        )
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        test_support::stop_postmasters_under(self._dir.path());
    }
}

async fn wait_refresh(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, retrieving) = server.get("/instance/retrieval").await;
        assert_eq!(status, 200, "{retrieving}");
        if done(&retrieving) {
            return retrieving;
        }
        assert!(
            Instant::now() < deadline,
            "refresh did not finish: {retrieving}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn order_count(clone: &Value) -> i64 {
    let mut clone = clone.clone();
    clone["db"]["dbName"] = Value::from("shop_dev");
    let client = connect(&clone).await.expect("connect to the renamed database");
    client.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn refresh_brings_new_data_without_touching_running_clones() {
    let mut source = Source::start().await;
    // With a warm pool, which must follow each new snapshot and never serve an old one.
    let server = TestServer::start(&format!("warm_pool_size = 1\n{}", source.config())).await;

    // The first refresh runs at start.
    let first =
        wait_refresh(&server, |r| r["status"] == "finished" || r["status"] == "failed").await;
    assert_eq!(first["status"], "finished", "{first}\n{}", server.log());
    assert_eq!(first["mode"], "logical");
    let old = server.create_clone("before").await;
    assert_eq!(
        order_count(&old).await,
        1000,
        "the clone holds the source's data under its new name"
    );

    // The source changes; a refresh picks it up while the clone keeps running.
    source.sql("INSERT INTO orders SELECT g, 1 FROM generate_series(1001, 1500) g").await;
    let (status, started) = server.post("/full-refresh", Value::Null).await;
    assert_eq!(status, 200, "{started}");
    let (status, again) = server.post("/full-refresh", Value::Null).await;
    assert!(status == 400 || status == 200, "{again}");
    let second = wait_refresh(&server, |r| {
        r["status"] == "finished" && r["lastRefresh"] != first["lastRefresh"]
    })
    .await;
    let new = server.create_clone("after").await;
    let (_, snapshots) = server.get("/snapshots").await;
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots}");
    assert_ne!(
        new["snapshot"]["id"], old["snapshot"]["id"],
        "new clones start from the new snapshot"
    );
    assert_eq!(order_count(&new).await, 1500);
    assert_eq!(order_count(&old).await, 1000, "the running clone was touched by the refresh");
    server.wait_warm(1.0).await;
    let warm = server.create_clone("warm-after").await;
    assert_eq!(warm["snapshot"]["id"], new["snapshot"]["id"], "a warm clone of the old data");
    assert_eq!(order_count(&warm).await, 1500);
    let (_, snapshots) = server.get("/snapshots").await;
    assert!(
        second["alerts"].as_object().is_none_or(|alerts| !alerts.contains_key("refresh_failed"))
    );

    // A refresh that cannot reach the source fails with an alert and changes nothing.
    source.stop().await;
    server.post("/full-refresh", Value::Null).await;
    let failed = wait_refresh(&server, |r| r["status"] == "failed").await;
    assert!(
        failed["alerts"]["refresh_failed"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{failed}"
    );
    let (_, status) = server.get("/status").await;
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);
    let (_, after_failure) = server.get("/snapshots").await;
    assert_eq!(after_failure, snapshots, "a failed refresh changed the snapshots");
    assert_eq!(order_count(&new).await, 1500);
    assert_eq!(order_count(&old).await, 1000);
    let data_dirs: Vec<_> = std::fs::read_dir(server.pool_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("data"))
        .collect();
    assert!(data_dirs.len() <= 2, "the failed run's dataset was left behind: {data_dirs:?}");
}

/// A server whose refresh of `source` masks `customers.email` (with `settings` added to
/// `[retrieval.masking]`), once that refresh finished; the key's directory lives as long.
async fn masked_server(source: &Source, settings: &str) -> (TestServer, TestDir) {
    let keys = TestDir::new("scion-masking-key-");
    let key_file = keys.path().join("masking.key");
    std::fs::write(&key_file, "server-test-masking-key\n").unwrap();
    let masking = format!(
        "[retrieval.masking]\nkey_file = \"{}\"\n{settings}[retrieval.masking.tables.customers]\nemail = {{ rule = \"email\" }}\n",
        key_file.display()
    );
    let server = TestServer::start(&format!("{}{masking}", source.config())).await;
    let done =
        wait_refresh(&server, |r| r["status"] == "finished" || r["status"] == "failed").await;
    assert_eq!(done["status"], "finished", "{done}\n{}", server.log());
    (server, keys)
}

#[tokio::test]
async fn a_masked_refresh_gives_masked_snapshots_and_clones_without_the_originals() {
    let source = Source::start().await;
    source
        .sql(
            "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL UNIQUE); \
             INSERT INTO customers SELECT g, 'buyer' || g || '@corp-mail.test' FROM generate_series(1, 50) g; \
             ALTER TABLE orders ADD COLUMN customer_id int REFERENCES customers (id); \
             UPDATE orders SET customer_id = 1 + id % 50",
        )
        .await;
    let (server, _keys) = masked_server(&source, "").await;

    let (_, snapshots) = server.get("/snapshots").await;
    let snapshots = snapshots.as_array().unwrap().clone();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["masked"], true, "{}", snapshots[0]);
    let clone = server.create_clone("masked").await;
    assert_eq!(clone["snapshot"]["masked"], true, "{clone}");
    let mut shop = clone.clone();
    shop["db"]["dbName"] = Value::from("shop_dev");
    let client = connect(&shop).await.expect("connect to the masked clone");
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM customers WHERE email LIKE '%corp-mail.test'), \
                    (SELECT count(DISTINCT email) FROM customers), \
                    (SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "an original e-mail reached the clone");
    assert_eq!(row.get::<_, i64>(1), 50);
    assert_eq!(row.get::<_, i64>(2), 1000);

    // A commit of the masked clone is masked too.
    let (status, commit) = server
        .post("/branch/snapshot", serde_json::json!({"cloneID": "masked", "message": "m"}))
        .await;
    assert_eq!(status, 200, "{commit}");
    let id = commit["snapshotID"].as_str().expect("a snapshot ID");
    let (_, snapshots) = server.get("/snapshots").await;
    let committed = snapshots.as_array().unwrap().iter().find(|snapshot| snapshot["id"] == id);
    assert_eq!(
        committed.map(|snapshot| snapshot["masked"].clone()),
        Some(Value::Bool(true)),
        "{snapshots}"
    );
    // Branches and their logs show the kind too.
    let (_, branches) = server.get("/branches").await;
    let main = branches.as_array().unwrap().iter().find(|branch| branch["name"] == "main");
    assert_eq!(main.map(|branch| branch["masked"].clone()), Some(Value::Bool(true)), "{branches}");
    let (_, log) = server.get("/branch/main/log").await;
    let kinds: Vec<&Value> = log.as_array().unwrap().iter().map(|entry| &entry["masked"]).collect();
    assert_eq!(kinds, [&Value::Bool(true), &Value::Bool(true)], "{log}");
}

#[tokio::test]
async fn a_refresh_that_keeps_unmasked_data_gives_a_masked_head_and_a_protected_unmasked_snapshot()
{
    let source = Source::start().await;
    source
        .sql(
            "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL UNIQUE); \
             INSERT INTO customers SELECT g, 'buyer' || g || '@corp-mail.test' FROM generate_series(1, 50) g; \
             CREATE INDEX ON customers (email text_pattern_ops);",
        )
        .await;
    let (server, _keys) =
        masked_server(&source, "keep_unmasked = true\ndatabases = [\"shop\"]\n").await;

    // One refresh, two snapshots of its data: the masked head, the unmasked one protected.
    let (_, snapshots) = server.get("/snapshots").await;
    let snapshots = snapshots.as_array().unwrap().clone();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let (masked, unmasked): (Vec<&Value>, Vec<&Value>) =
        snapshots.iter().partition(|snapshot| snapshot["masked"] == true);
    let (masked, unmasked) = (masked[0], unmasked[0]);
    assert!(unmasked["id"].as_str().unwrap().ends_with("_unmasked"), "{unmasked}");
    assert_eq!(unmasked["protected"], true, "{unmasked}");
    assert_ne!(masked["protected"], true, "{masked}");
    assert_eq!(masked["dataStateAt"], unmasked["dataStateAt"]);
    let dataset = |snapshot: &Value| {
        let id = snapshot["id"].as_str().unwrap();
        id.split_once('/').unwrap().1.split_once('@').unwrap().0.to_owned()
    };
    assert_eq!(dataset(masked), dataset(unmasked), "both from the refresh's one dataset");

    // A clone that names no snapshot gets the masked data.
    let clone = server.create_clone("everyone").await;
    assert_eq!(clone["snapshot"]["id"], masked["id"], "{clone}");
    assert_eq!(clone["snapshot"]["masked"], true, "{clone}");
    let originals = "SELECT count(*) FROM customers WHERE email LIKE '%@corp-mail.test'";
    let mut shop = clone.clone();
    shop["db"]["dbName"] = Value::from("shop_dev");
    let client = connect(&shop).await.expect("connect to the masked clone");
    assert_eq!(client.query_one(originals, &[]).await.unwrap().get::<_, i64>(0), 0);
    assert_eq!(
        client
            .query_one("SELECT count(DISTINCT email) FROM customers", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        50
    );
    // The masked data's files hold no original value (no dead row, index entry, statistic or WAL).
    let data = server.pool_dir().join(dataset(masked)).join("data");
    assert!(!files_holding(&data, b"@example.").is_empty(), "the scan reads the masked rows");
    assert_eq!(files_holding(&data, b"buyer17@corp-mail.test"), Vec::<String>::new());

    // The DBA's clone of the unmasked snapshot has the originals.
    let mut request = crate::harness::clone_request("dba");
    request["snapshot"] = serde_json::json!({ "id": unmasked["id"] });
    let (status, dba) = server.post("/clone?wait=120", request).await;
    assert_eq!(status, 201, "{dba}");
    assert_eq!(dba["snapshot"]["id"], unmasked["id"], "{dba}");
    assert_eq!(dba["snapshot"].get("masked"), None, "{dba}");
    let mut shop = dba.clone();
    shop["db"]["dbName"] = Value::from("shop_dev");
    let client = connect(&shop).await.expect("connect to the unmasked clone");
    assert_eq!(client.query_one(originals, &[]).await.unwrap().get::<_, i64>(0), 50);
}

/// The pool's top-level datasets and directories, to see that a check leaves none behind.
fn pool_entries(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.pool_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_masking_check_lists_unruled_personal_columns_and_rule_problems() {
    let source = Source::start().await;
    source
        .sql(
            "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL UNIQUE, phone text, contact text, vip boolean); \
             INSERT INTO customers SELECT g, 'buyer' || g || '@corp-mail.test', '+49 30 ' || (1000000 + g), \
               'write to buyer' || g || '@corp-mail.test', g % 2 = 0 FROM generate_series(1, 50) g",
        )
        .await;
    // `shop` is renamed to `shop_dev` after masking: the check reads it under its new name.
    let (server, _keys) = masked_server(&source, "databases = [\"shop\"]\n").await;
    let (_, snapshots) = server.get("/snapshots").await;
    let snapshot_id = snapshots[0]["id"].clone();
    let before = pool_entries(&server);

    let (status, check) = server.post("/admin/masking/check", Value::Null).await;
    assert_eq!(status, 200, "{check}\n{}", server.log());
    assert_eq!(check["snapshotID"], snapshot_id, "{check}");
    assert_eq!(check["snapshotMasked"], true, "{check}");
    assert_eq!(check["databases"], serde_json::json!(["shop_dev"]), "{check}");
    let found: Vec<(String, String, String, String, String)> = check["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| {
            let field = |name: &str| column[name].as_str().unwrap().to_owned();
            (field("database"), field("schema"), field("table"), field("column"), field("kind"))
        })
        .collect();
    let expected = |column: &str, kind: &str| {
        ("shop_dev".into(), "public".into(), "customers".into(), column.into(), kind.into())
    };
    assert_eq!(found, [expected("phone", "phone"), expected("contact", "text_with_email")]);
    assert!(check["columns"][1]["why"].as_str().unwrap().contains("50 of 50"), "{check}");
    assert_eq!(check["problems"], serde_json::json!([]), "{check}");
    assert_eq!(pool_entries(&server), before, "the check's temporary clone is gone");

    // The rules against the data, after a reload: a column the table lacks is a problem.
    let text = std::fs::read_to_string(server.config_path()).unwrap();
    let text = format!("{text}[retrieval.masking.tables.orders]\nnope = {{ rule = \"null\" }}\n");
    std::fs::write(server.config_path(), text).unwrap();
    server.hangup();
    server.wait_log("configuration file applied", 1).await;
    let (status, check) = server.post("/admin/masking/check", Value::Null).await;
    assert_eq!(status, 200, "{check}");
    let problems = check["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{check}");
    assert!(
        problems[0].as_str().unwrap().contains("table public.orders has no column \"nope\""),
        "{check}"
    );
}

#[tokio::test]
async fn a_refresh_interrupted_by_a_crash_leaves_nothing_behind() {
    let source = Source::start().await;
    // Dumps kept after a restore, so that the crash finds one on disk.
    let config = format!("{}[retrieval.dump]\nkeep = true\n", source.config());
    let mut server = TestServer::start(&config).await;
    let first =
        wait_refresh(&server, |r| r["status"] == "finished" || r["status"] == "failed").await;
    assert_eq!(first["status"], "finished", "{first}\n{}", server.log());
    let dump = server.state_dir().join("engine/retrieval/dump");
    assert!(
        dump.exists(),
        "the first refresh kept no dump in the state directory: {:?}\n{}",
        std::fs::read_dir(server.state_dir().join("engine/retrieval"))
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect::<Vec<_>>()),
        server.log()
    );

    // The crash comes after the restore into the new dataset, before its snapshot.
    server.relaunch_crashing_at("refresh.restored").await;
    let (status, started) = server.post("/full-refresh", Value::Null).await;
    assert_eq!(status, 200, "{started}");
    crate::crashes::assert_recovered(&mut server, "refresh.restored", "data_").await;
    assert!(!dump.exists(), "the interrupted refresh's dump is still there");

    // The data is the first refresh's, and the next refresh works.
    let clone = server.create_clone("after-crash").await;
    assert_eq!(order_count(&clone).await, 1000);
    let (status, started) = server.post("/full-refresh", Value::Null).await;
    assert_eq!(status, 200, "{started}");
    let second = wait_refresh(&server, |r| {
        r["status"] == "finished" && r["lastRefresh"] != first["lastRefresh"]
    })
    .await;
    assert_eq!(second["status"], "finished", "{second}");

    // A crash right after the new golden dataset is made, before anything is restored into it.
    server.relaunch_crashing_at("refresh.dataset_created").await;
    let (status, started) = server.post("/full-refresh", Value::Null).await;
    assert_eq!(status, 200, "{started}");
    crate::crashes::assert_recovered(&mut server, "refresh.dataset_created", "data_").await;
    let clone = server.create_clone("after-second-crash").await;
    assert_eq!(order_count(&clone).await, 1000);
}

/// `line` without the terminal colour codes a log may carry.
fn without_colours(line: &str) -> String {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A refresh whose restore drops an object (with `ignore_errors`) and leaves a tablespace out
/// finishes as a warning: listed in `/instance/retrieval` and `/status`, an alert, the
/// instance's health at `WARNING`, a line in the log; and the finished run's totals stay.
#[tokio::test]
async fn a_refresh_with_ignored_errors_finishes_as_a_warning() {
    let mut source = Source::start().await;
    let tablespace = source._dir.path().join("tablespace");
    std::fs::create_dir(&tablespace).unwrap();
    let user = OsUser::lookup("postgres").unwrap();
    std::os::unix::fs::chown(&tablespace, Some(user.uid), Some(user.gid)).unwrap();
    let admin = postgres::Admin::connect(
        &source.spec.settings.socket_dir,
        source.port,
        "postgres",
        "postgres",
    )
    .await
    .unwrap();
    admin
        .client()
        .batch_execute(&format!("CREATE TABLESPACE archive LOCATION '{}'", tablespace.display()))
        .await
        .unwrap();
    drop(admin);
    // pg_restore loads table data in name order, so `guarded`'s rows meet a check whose lookup
    // table is still empty: its COPY fails, and the table arrives without its rows.
    source
        .sql(
            "CREATE TABLE zz_allowed (v int PRIMARY KEY); \
             INSERT INTO zz_allowed SELECT generate_series(1, 10); \
             CREATE FUNCTION is_allowed(int) RETURNS bool LANGUAGE plpgsql STABLE \
               AS $$ BEGIN RETURN EXISTS (SELECT 1 FROM public.zz_allowed WHERE v = $1); END $$; \
             CREATE TABLE guarded (v int CHECK (is_allowed(v))); \
             INSERT INTO guarded SELECT generate_series(1, 10); \
             CREATE TABLE archived (id int) TABLESPACE archive; \
             INSERT INTO archived SELECT generate_series(1, 5);",
        )
        .await;
    let config = format!("{}[retrieval.restore]\nignore_errors = true\n", source.config());
    let mut server = TestServer::start(&config).await;
    let retrieving =
        wait_refresh(&server, |r| r["status"] == "finished" || r["status"] == "failed").await;
    assert_eq!(retrieving["status"], "finished", "{retrieving}\n{}", server.log());

    let warnings = &retrieving["warnings"];
    assert_eq!(warnings["count"], 2, "one ignored restore error, one tablespace: {retrieving}");
    let first: Vec<&str> =
        warnings["first"].as_array().unwrap().iter().map(|line| line.as_str().unwrap()).collect();
    assert!(first.iter().any(|line| line.contains("tablespace archive")), "{first:?}");
    assert!(first.iter().any(|line| line.contains("shop: restore errors ignored")), "{first:?}");
    assert!(
        first.iter().any(|line| line.contains("is_allowed") || line.contains("guarded")),
        "{first:?}"
    );
    let alert = &retrieving["alerts"]["refresh_warnings"];
    assert_eq!(alert["level"], "warning", "{retrieving}");
    assert!(alert["message"].as_str().unwrap().contains("2 warnings"), "{alert}");
    assert!(retrieving["alerts"].get("refresh_failed").is_none(), "{retrieving}");

    // The finished run's totals, not the last stage's zeros.
    let progress = &retrieving["progress"];
    assert_eq!(progress["stage"], "finished", "{progress}");
    assert!(progress["bytesDone"].as_u64().unwrap() > 0, "{progress}");
    assert_eq!(progress["bytesDone"], progress["bytesTotal"], "{progress}");
    assert_eq!(progress["tablesDone"], progress["tablesTotal"], "{progress}");
    let databases = progress["databases"].as_array().unwrap();
    let shop = databases.iter().find(|database| database["name"] == "shop_dev").unwrap();
    assert!(shop["bytes"].as_u64().unwrap() > 0, "{progress}");
    let tables: u64 = databases.iter().map(|database| database["tables"].as_u64().unwrap()).sum();
    assert_eq!(progress["tablesDone"].as_u64().unwrap(), tables, "{progress}");
    assert!(tables >= 3, "orders, zz_allowed and archived at least: {progress}");

    let (_, status) = server.get("/status").await;
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);
    let message = status["status"]["message"].as_str().unwrap();
    assert!(message.contains("retrieving") && message.contains("2 warnings"), "{message}");
    assert_eq!(status["retrieving"]["warnings"], *warnings);
    let metrics = server.metrics().await;
    assert_eq!(crate::harness::metric(&metrics, "dblab_instance_status_code"), Some(1.0));
    let log = server.log();
    let warned: Vec<String> = log
        .lines()
        .filter(|line| line.contains("retrieval finished with warnings"))
        .map(without_colours)
        .collect();
    assert_eq!(warned.len(), 1, "one line per run: {log}");
    assert!(warned[0].contains("WARN") && warned[0].contains("count=2"), "{}", warned[0]);
    assert!(warned[0].contains("tablespace archive"), "{}", warned[0]);

    // The warnings stay true of the data after a restart of the engine.
    server.kill();
    server.launch().await;
    let (_, retrieving) = server.get("/instance/retrieval").await;
    assert_eq!(retrieving["warnings"], *warnings, "{retrieving}");
    assert_eq!(retrieving["alerts"]["refresh_warnings"]["level"], "warning", "{retrieving}");
    let (_, status) = server.get("/status").await;
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);

    // The clone shows what the warnings say: the rows of `guarded` did not arrive.
    let clone = server.create_clone("warned").await;
    let mut shop = clone.clone();
    shop["db"]["dbName"] = Value::from("shop_dev");
    let client = connect(&shop).await.unwrap();
    let guarded: i64 = client.query_one("SELECT count(*) FROM guarded", &[]).await.unwrap().get(0);
    assert_eq!(guarded, 0);
    let archived: i64 =
        client.query_one("SELECT count(*) FROM archived", &[]).await.unwrap().get(0);
    assert_eq!(archived, 5, "the table of the left-out tablespace arrived in the default one");
    source.stop().await;
}

/// DBLab's UI and `dblab local-install` set the source through `POST /admin/config`: the change
/// is applied without a restart, and the next refresh uses it.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_changed_through_the_api_is_used_by_the_next_refresh() {
    let source = Source::start().await;
    let unused_port = *free_port_range(1).start();
    let config = source
        .config()
        .replacen("target_major = 16\n", "target_major = 16\nskip_start_refresh = true\n", 1)
        .replacen(&format!("port = {}\n", source.port), &format!("port = {unused_port}\n"), 1)
        // DBLab's UI sends the password with the source; it goes to a file of its own.
        .replacen(&format!("password_env = \"{SOURCE_PASSWORD_ENV}\"\n"), "", 1);
    let server = TestServer::start(&config).await;
    let (status, projection) = server.get("/admin/config").await;
    assert_eq!(status, 200, "{projection}");
    assert_eq!(projection["retrievalMode"], "logical");
    let connection =
        &projection["retrieval"]["spec"]["logicalDump"]["options"]["source"]["connection"];
    assert_eq!(connection["port"], unused_port);

    let (status, applied) = server
        .post(
            "/admin/config",
            serde_json::json!({
                "retrievalMode": "logical",
                "retrieval": { "spec": { "logicalDump": { "options": {
                    "source": { "connection": { "port": source.port, "password": SOURCE_PASSWORD } },
                    "databases": { "shop": {} },
                } } } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    let options = &applied["retrieval"]["spec"]["logicalDump"]["options"];
    assert_eq!(options["source"]["connection"]["port"], source.port);
    assert_eq!(options["databases"], serde_json::json!({ "shop": {} }));
    assert!(options["source"]["connection"].get("password").is_none(), "{applied}");
    let file = std::fs::read_to_string(server.config_path()).unwrap();
    assert!(!file.contains(SOURCE_PASSWORD), "{file}");
    let secret = server.state_dir().join("secrets/source-password");
    assert!(file.contains(&format!("password_file = \"{}\"", secret.display())), "{file}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let (status, started) = server.post("/full-refresh", Value::Null).await;
    assert_eq!(status, 200, "{started}");
    let done =
        wait_refresh(&server, |r| r["status"] == "finished" || r["status"] == "failed").await;
    assert_eq!(done["status"], "finished", "{done}\n{}", server.log());
    let clone = server.create_clone("from-new-source").await;
    assert_eq!(order_count(&clone).await, 1000);
}
