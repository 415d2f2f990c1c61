//! Fidelity: a logical clone is its source. One source with the database-level properties
//! (owner, ACL with CONNECT revoked from PUBLIC, comment, `ALTER DATABASE … SET`, `ALTER ROLE …
//! IN DATABASE … SET`, connection limit, encoding, locale, provider), an ICU cluster default, a
//! libc database, an ICU database, an ICU collation, roles with settings, large objects, a
//! partitioned table and extensions is retrieved as a directory dump (with a rename), a stream,
//! custom and plain dump files, and partially (a table list, dumped and streamed); each target
//! is compared with the source through `pg_dump --create --schema-only` of each database,
//! `pg_dumpall --globals-only`, the database rows of `pg_database`, catalogue counts per object
//! kind, per-table checksums and an `ORDER BY` under ICU.
//!
//! What is documented as not carried, and so normalised away before comparing:
//! - role passwords (`dump.role_passwords` is off by default);
//! - pg_dump's comment lines and the random `\restrict` keys of its output;
//! - a database's name, where `database_rename` renames it;
//! - for dump files, roles (restored only from a live source: the test creates them first) and
//!   the cluster's locale, which comes from the dump of `postgres` (else the first dump, else
//!   `C.UTF-8`) and is said in the warnings;
//! - for partial retrieval, the tables and objects that were not asked for.
//!
//! The ICU parts need binaries built with ICU: the major is a parameter, and [`icu_binaries`]
//! takes the project's build (`scripts/setup` installs ICU builds of 14 to 18), else Debian's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use exec::Cmd;
use postgres::{BinarySearch, InitDbOptions, PgBinaries};
use retrieval::{Pipeline, RetrievalConfig, Summary, Target};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Fingerprints, Inspect, SOURCE_PASSWORD, SOURCE_USER, Sandbox, SourceDb, major, os_user,
};

/// Words whose order differs between ICU (`de-DE`) and the C locale.
const WORDS: &[&str] = &["b", "B", "a", "ä", "z", "Z", "ö", "Äpfel", "apfel"];

/// A build of `major` with ICU: the one the project installs if it has ICU, else Debian's.
async fn icu_binaries(major_number: u8) -> Option<BinarySearch> {
    let debian = BinarySearch {
        bin_dirs: vec![(
            major(major_number),
            PathBuf::from(format!("/usr/lib/postgresql/{major_number}/bin")),
        )],
        ..BinarySearch::default()
    };
    for search in [BinarySearch::default(), debian] {
        let Ok(binaries) = search.locate(major(major_number)) else { continue };
        let Ok(pg_config) = binaries.tool("pg_config") else { continue };
        let Ok(configure) = Cmd::new(pg_config).arg("--configure").output().await else {
            continue;
        };
        if configure.stdout_text().contains("--with-icu") {
            return Some(search);
        }
    }
    None
}

struct Fixture {
    sandbox: Sandbox,
    search: BinarySearch,
    binaries: PgBinaries,
    source: SourceDb,
    major: u8,
}

impl Fixture {
    /// An ICU cluster (`C.UTF-8`, ICU `en-US`) with the data set below.
    async fn start(major_number: u8, search: BinarySearch) -> Fixture {
        let sandbox = Sandbox::new();
        let binaries = search.locate(major(major_number)).unwrap();
        let mut options = InitDbOptions::new("postgres");
        options.sync = false;
        options.locale = Some("C.UTF-8".into());
        options.locale_provider = Some("icu".into());
        options.provider_locale = Some("en-US".into());
        let source = SourceDb::start_with(&sandbox, &binaries, &options, Vec::new()).await;
        populate(&source).await;
        Fixture { sandbox, search, binaries, source, major: major_number }
    }

    fn pipeline(&self, config: RetrievalConfig) -> Pipeline {
        Pipeline::new(config, self.search.clone(), os_user()).unwrap()
    }

    fn config(&self) -> RetrievalConfig {
        let mut config = RetrievalConfig {
            source: Some(self.source.source_config()),
            target_major: self.major,
            ..RetrievalConfig::default()
        };
        config.restore.parallel_jobs = 2;
        // What is compared does not depend on statistics or frozen rows; the directory case
        // turns them back on.
        config.restore.analyze = false;
        config.restore.freeze = false;
        config
    }

    fn target(&self, case: &str) -> Target {
        let dir = self.sandbox.path().join(case);
        std::fs::create_dir_all(&dir).unwrap();
        Target::new(dir.join("data"), dir.join("run"))
    }

    async fn run(&self, config: RetrievalConfig, target: &Target) -> Summary {
        self.pipeline(config).run(target, &CancellationToken::new()).await.unwrap()
    }

    async fn inspect(&self, target: &Target) -> Inspect {
        Inspect::start_with(&self.sandbox, target, &self.binaries).await
    }

    fn source_conninfo(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={SOURCE_USER} dbname={database}", self.source.port)
    }

    async fn tool(&self, tool: &str, conninfo: &str, args: &[&str]) -> String {
        let output = Cmd::new(self.binaries.tool(tool).unwrap())
            .arg(format!("--dbname={conninfo}"))
            .args(args)
            .secret_env("PGPASSWORD", SOURCE_PASSWORD)
            .output()
            .await
            .unwrap_or_else(|error| panic!("{tool} {args:?}: {error}"));
        output.stdout_text()
    }

    /// Dumps of the source's databases into `<sandbox>/<case>-dumps`, with `args`.
    async fn dump_files(&self, case: &str, databases: &[&str], args: &[&str]) -> PathBuf {
        let dir = self.sandbox.path().join(format!("{case}-dumps"));
        std::fs::create_dir_all(&dir).unwrap();
        for database in databases {
            let file = dir.join(format!("{database}.dump"));
            let file_arg = format!("--file={}", file.display());
            let mut all = args.to_vec();
            all.push(&file_arg);
            self.tool("pg_dump", &self.source_conninfo(database), &all).await;
        }
        dir
    }

    /// A target cluster initialized like the source and holding its roles, as an operator
    /// restoring dump files prepares one.
    async fn prepared_target(&self, case: &str) -> Target {
        let target = self.target(case);
        let mut options = InitDbOptions::new("postgres");
        options.sync = false;
        options.locale = Some("C.UTF-8".into());
        options.locale_provider = Some("icu".into());
        options.provider_locale = Some("en-US".into());
        postgres::initdb(&self.binaries, &target.data_dir, &os_user(), &options).await.unwrap();
        let globals = self
            .tool(
                "pg_dumpall",
                &self.source_conninfo("postgres"),
                &["--globals-only", "--no-role-passwords"],
            )
            .await;
        let inspect = self.inspect(&target).await;
        // Not ON_ERROR_STOP: the bootstrap role exists already.
        Cmd::new(self.binaries.tool("psql").unwrap())
            .args(["-X", "-q"])
            .arg(format!("--dbname={}", inspect.conninfo("postgres")))
            .stdin_bytes(globals.into_bytes())
            .output_any_status()
            .await
            .unwrap();
        inspect.stop().await;
        target
    }
}

/// The data set: see the module's header.
async fn populate(source: &SourceDb) {
    for statement in [
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'",
        "CREATE ROLE app_reader NOLOGIN",
        "ALTER ROLE app_reader SET statement_timeout = '5s'",
        "GRANT app_reader TO app_owner",
        "CREATE DATABASE app OWNER app_owner TEMPLATE template0 LOCALE_PROVIDER libc LOCALE 'C.UTF-8' CONNECTION LIMIT 40",
        "COMMENT ON DATABASE app IS 'the application'",
        "REVOKE CONNECT, TEMPORARY ON DATABASE app FROM PUBLIC",
        "GRANT CONNECT ON DATABASE app TO app_reader",
        "ALTER DATABASE app SET search_path = sales, public",
        "ALTER ROLE app_reader IN DATABASE app SET work_mem = '8MB'",
        "CREATE DATABASE icudb TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'",
        "ALTER DATABASE icudb SET default_text_search_config = 'pg_catalog.german'",
        "COMMENT ON DATABASE postgres IS 'maintenance'",
    ] {
        source.sql("postgres", statement).await;
    }
    source
        .sql(
            "app",
            "CREATE EXTENSION hstore;
             CREATE EXTENSION citext;
             CREATE SCHEMA sales AUTHORIZATION app_owner;
             SET ROLE app_owner;
             CREATE COLLATION sales.german (provider = icu, locale = 'de-DE');
             CREATE TABLE sales.customers (id bigserial PRIMARY KEY, name text COLLATE sales.german NOT NULL,
               email citext, attrs hstore);
             CREATE INDEX ON sales.customers (name);
             INSERT INTO sales.customers (name, email, attrs)
               SELECT (ARRAY['Äpfel','apfel','Zoë','zebra','Öl','oel'])[1 + i % 6] || i, 'User' || i || '@Example.com',
                      hstore('n', i::text)
               FROM generate_series(1, 1500) i;
             CREATE TABLE sales.orders (id bigint, placed date NOT NULL, customer_id bigint REFERENCES sales.customers,
               total numeric(12,2), PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed);
             CREATE TABLE sales.orders_2024 PARTITION OF sales.orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE TABLE sales.orders_2025 PARTITION OF sales.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             CREATE TABLE sales.orders_other PARTITION OF sales.orders DEFAULT;
             INSERT INTO sales.orders SELECT i, '2024-01-01'::date + i % 900, 1 + i % 1500, i * 0.75
               FROM generate_series(1, 6000) i;
             CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE total > 1000;
             CREATE FUNCTION sales.spent(bigint) RETURNS numeric LANGUAGE sql STABLE
               AS $$ SELECT sum(total) FROM sales.orders WHERE customer_id = $1 $$;
             COMMENT ON TABLE sales.orders IS 'partitioned by year';
             CREATE TABLE sales.regions (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO sales.regions SELECT i, 'region ' || i FROM generate_series(1, 300) i;
             RESET ROLE;
             GRANT USAGE ON SCHEMA sales TO app_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA sales TO app_reader;
             SELECT lo_from_bytea(0, convert_to('large object ' || i, 'UTF8')) FROM generate_series(1, 4) i;",
        )
        .await;
    let values: Vec<String> = WORDS.iter().map(|word| format!("('{word}')")).collect();
    source
        .sql(
            "icudb",
            &format!(
                "CREATE TABLE words (w text PRIMARY KEY); INSERT INTO words VALUES {};",
                values.join(", ")
            ),
        )
        .await;
}

/// pg_dump's output without its comments, blank lines and `\restrict` keys.
fn normalise_dump(text: &str) -> String {
    text.lines()
        .filter(|line| {
            !line.starts_with("--")
                && !line.trim().is_empty()
                && !line.starts_with("\\restrict")
                && !line.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// pg_dumpall's globals without passwords (not carried by default).
fn normalise_globals(text: &str) -> String {
    normalise_dump(text)
        .lines()
        .map(|line| match line.find(" PASSWORD '") {
            Some(at) => {
                let rest = &line[at + " PASSWORD '".len()..];
                let end = rest.find('\'').map_or(rest.len(), |end| end + 1);
                format!("{}{}", &line[..at], &rest[end..])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything about one database that pg_database and its neighbours hold; the provider's
/// locale is `daticulocale` in 15 and 16, `datlocale` from 17.
const DATABASE_ROW: &str = "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
    d.datcollate::text, d.datctype::text, d.datlocprovider::text, coalesce(d.{LOCALE_COLUMN}, ''),
    coalesce(d.datcollversion, ''), d.datconnlimit::text, d.datallowconn::text, d.datistemplate::text,
    coalesce(d.datacl::text, ''), coalesce(shobj_description(d.oid, 'pg_database'), ''),
    coalesce((SELECT string_agg(coalesce(pg_get_userbyid(NULLIF(s.setrole, 0))::text, '*') || ':' || array_to_string(s.setconfig, ','), ';' ORDER BY 1)
              FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '')
    FROM pg_database d WHERE d.datname = $1";

async fn database_row(client: &tokio_postgres::Client, database: &str) -> Vec<String> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let column = if version >= 170_000 { "datlocale" } else { "daticulocale" };
    let query = DATABASE_ROW.replace("{LOCALE_COLUMN}", column);
    let row = client.query_one(&query, &[&database]).await.unwrap();
    (0..row.len()).map(|index| row.get::<_, String>(index)).collect()
}

/// How many objects of each kind the database holds (created after initdb).
const CATALOGUE_COUNTS: &str = "SELECT kind, count(*) FROM (
      SELECT 'class ' || relkind::text FROM pg_class WHERE oid >= 16384
      UNION ALL SELECT 'proc ' || prokind::text FROM pg_proc WHERE oid >= 16384
      UNION ALL SELECT 'type ' || typtype::text FROM pg_type WHERE oid >= 16384
      UNION ALL SELECT 'constraint ' || contype::text FROM pg_constraint WHERE oid >= 16384
      UNION ALL SELECT 'collation ' || collprovider::text || ' ' || coalesce(collversion, '') FROM pg_collation WHERE oid >= 16384
      UNION ALL SELECT 'namespace' FROM pg_namespace WHERE oid >= 16384
      UNION ALL SELECT 'index' FROM pg_index WHERE indexrelid >= 16384
      UNION ALL SELECT 'trigger' FROM pg_trigger WHERE oid >= 16384
      UNION ALL SELECT 'policy' FROM pg_policy
      UNION ALL SELECT 'rule' FROM pg_rewrite WHERE oid >= 16384
      UNION ALL SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
      UNION ALL SELECT 'large object' FROM pg_largeobject_metadata
      UNION ALL SELECT 'inherits' FROM pg_inherits
      UNION ALL SELECT 'partitioned table' FROM pg_partitioned_table
      UNION ALL SELECT 'sequence' FROM pg_sequence
      UNION ALL SELECT 'default' FROM pg_attrdef
      UNION ALL SELECT 'comment' FROM pg_description WHERE objoid >= 16384
      UNION ALL SELECT 'operator' FROM pg_operator WHERE oid >= 16384
    ) AS objects(kind) GROUP BY kind ORDER BY kind";

async fn catalogue_counts(client: &tokio_postgres::Client) -> BTreeMap<String, i64> {
    let rows = client.query(CATALOGUE_COUNTS, &[]).await.unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

async fn words(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client.query("SELECT w FROM words ORDER BY w", &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// The source's database `name` and the target's `as_name`: their `pg_database` rows and, when
/// `full`, their schema dumps, catalogue counts and data.
async fn compare_database(
    fixture: &Fixture,
    inspect: &Inspect,
    name: &str,
    as_name: &str,
    full: bool,
) {
    let source = fixture.source.connect(name).await;
    let target = inspect.connect(as_name).await;
    let admin_source = fixture.source.connect("postgres").await;
    let admin_target = inspect.connect("postgres").await;
    assert_eq!(
        database_row(&admin_target, as_name).await,
        database_row(&admin_source, name).await,
        "pg_database row of {name} (as {as_name})"
    );
    if !full {
        return;
    }
    let source_schema = normalise_dump(
        &fixture
            .tool("pg_dump", &fixture.source_conninfo(name), &["--create", "--schema-only"])
            .await,
    );
    let target_schema = normalise_dump(
        &fixture.tool("pg_dump", &inspect.conninfo(as_name), &["--create", "--schema-only"]).await,
    );
    let target_schema =
        if name == as_name { target_schema } else { target_schema.replace(as_name, name) };
    assert_eq!(target_schema, source_schema, "pg_dump --create --schema-only of {name}");
    assert_eq!(catalogue_counts(&target).await, catalogue_counts(&source).await, "{name}");
    let expected: Fingerprints = crate::support::fingerprints(&source).await;
    assert_eq!(crate::support::fingerprints(&target).await, expected, "{name}: data");
}

async fn compare_globals(fixture: &Fixture, inspect: &Inspect) {
    let source = normalise_globals(
        &fixture
            .tool("pg_dumpall", &fixture.source_conninfo("postgres"), &["--globals-only"])
            .await,
    );
    let target = normalise_globals(
        &fixture.tool("pg_dumpall", &inspect.conninfo("postgres"), &["--globals-only"]).await,
    );
    assert_eq!(target, source, "pg_dumpall --globals-only");
}

/// Everything of a full retrieval: globals, the templates' and every database's properties,
/// schemas, counts and data, and ICU sorting.
async fn compare_full(fixture: &Fixture, inspect: &Inspect, app_as: &str, globals: bool) {
    if globals {
        compare_globals(fixture, inspect).await;
    }
    // The cluster's locale: template1, and template0 with it.
    compare_database(fixture, inspect, "template1", "template1", false).await;
    compare_database(fixture, inspect, "postgres", "postgres", true).await;
    compare_database(fixture, inspect, "app", app_as, true).await;
    compare_database(fixture, inspect, "icudb", "icudb", true).await;
    let sorted = words(&inspect.connect("icudb").await).await;
    assert_eq!(sorted, words(&fixture.source.connect("icudb").await).await, "ICU order");
    // The database's search_path came along: unqualified names resolve in `sales`.
    let app = inspect.connect(app_as).await;
    let row = app.query_one("SELECT count(*) FROM customers", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_is_its_source_15() {
    a_clone_is_its_source(15).await;
}

/// Every case against one source of `major_number`, retrieved into targets of the same major.
async fn a_clone_is_its_source(major_number: u8) {
    let Some(search) = icu_binaries(major_number).await else {
        panic!(
            "PostgreSQL {major_number} built with ICU is not installed (scripts/setup installs Debian's)"
        );
    };
    let fixture = Fixture::start(major_number, search).await;
    // The test means something only if ICU and C sort the words differently.
    let icu_order = words(&fixture.source.connect("icudb").await).await;
    let mut c_order: Vec<String> = WORDS.iter().map(|word| (*word).to_owned()).collect();
    c_order.sort();
    assert_ne!(icu_order, c_order);

    // A missing locale is refused before any work.
    let mut config = fixture.config();
    config.restore.initdb_locale = Some("xx_XX.UTF-8".into());
    config.dump.location = Some(fixture.sandbox.path().join("refused-dump"));
    let target = fixture.target("refused");
    let error = fixture.pipeline(config).run(&target, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(error.kind(), "tool_missing", "{error}");
    assert!(error.to_string().contains("xx_XX.UTF-8"), "{error}");
    assert!(!fixture.sandbox.path().join("refused-dump").exists());
    assert!(!target.data_dir.join("PG_VERSION").exists());

    // Directory-format dumps, with a rename.
    let mut config = fixture.config();
    config.restore.analyze = true;
    config.restore.freeze = true;
    config.database_rename.insert("app".into(), "app_clone".into());
    let target = fixture.target("directory");
    fixture.run(config, &target).await;
    let inspect = fixture.inspect(&target).await;
    compare_full(&fixture, &inspect, "app_clone", true).await;
    inspect.stop().await;

    // The stream.
    let mut config = fixture.config();
    config.dump.immediate_restore = true;
    config.restore.parallel_jobs = 1;
    let target = fixture.target("stream");
    fixture.run(config, &target).await;
    let inspect = fixture.inspect(&target).await;
    compare_full(&fixture, &inspect, "app", true).await;
    inspect.stop().await;

    // Partial retrieval: a table list, dumped and streamed.
    for immediate in [false, true] {
        let mut config = fixture.config();
        config.dump.immediate_restore = immediate;
        config.restore.parallel_jobs = 1;
        // A table that needs nothing else (`--table` leaves out the collations, extensions and
        // referenced tables a table depends on).
        config.databases.insert(
            "app".into(),
            retrieval::DatabaseConfig {
                tables: vec!["sales.regions".into()],
                ..Default::default()
            },
        );
        if !immediate {
            // The configuration's choice over the source's ICU.
            config.restore.initdb_locale_provider = Some("libc".into());
        }
        let target = fixture.target(if immediate { "partial-stream" } else { "partial" });
        fixture.run(config, &target).await;
        let inspect = fixture.inspect(&target).await;
        compare_database(&fixture, &inspect, "app", "app", false).await;
        let template = database_row(&inspect.connect("postgres").await, "template1").await;
        let provider = if immediate { ["i", "en-US"] } else { ["c", ""] };
        assert_eq!(&template[1..6], ["UTF8", "C.UTF-8", "C.UTF-8", provider[0], provider[1]]);
        let client = inspect.connect("app").await;
        let row = client.query_one("SELECT count(*) FROM regions", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 300, "search_path of the partial clone");
        inspect.stop().await;
    }

    // Dump files, custom and plain, into a target prepared with the roles.
    let custom =
        fixture.dump_files("custom", &["postgres", "app", "icudb"], &["--format=custom"]).await;
    let mut config = RetrievalConfig { source: None, ..fixture.config() };
    config.restore.from_dump = Some(custom);
    let target = fixture.prepared_target("custom").await;
    fixture.run(config, &target).await;
    let inspect = fixture.inspect(&target).await;
    compare_full(&fixture, &inspect, "app", false).await;
    inspect.stop().await;

    let plain = fixture.dump_files("plain", &["app", "icudb"], &["--create"]).await;
    let mut config = RetrievalConfig { source: None, ..fixture.config() };
    config.restore.from_dump = Some(plain);
    let target = fixture.prepared_target("plain").await;
    fixture.run(config, &target).await;
    let inspect = fixture.inspect(&target).await;
    compare_database(&fixture, &inspect, "app", "app", true).await;
    compare_database(&fixture, &inspect, "icudb", "icudb", true).await;
    inspect.stop().await;

    // A dump file alone: the cluster's locale comes from its CREATE DATABASE, as a warning says.
    let alone = fixture.dump_files("alone", &["icudb"], &["--format=custom"]).await;
    let mut config = RetrievalConfig { source: None, ..fixture.config() };
    config.restore.from_dump = Some(alone);
    config.restore.custom_options.push("--no-owner".into());
    let target = fixture.target("alone");
    let summary = fixture.run(config, &target).await;
    assert!(
        summary.warnings.iter().any(|warning| warning.contains("the dump of icudb")
            && warning.contains("provider icu (de-DE)")),
        "{:?}",
        summary.warnings
    );
    let inspect = fixture.inspect(&target).await;
    let client = inspect.connect("postgres").await;
    let template = database_row(&client, "template1").await;
    assert_eq!(&template[4..6], ["i", "de-DE"], "{template:?}");
    assert_eq!(words(&inspect.connect("icudb").await).await, icu_order);
    inspect.stop().await;

    fixture.source.stop().await;
}
