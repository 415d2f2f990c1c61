//! Fixtures: a sandbox directory, a real source cluster with a password-protected role, several
//! databases, schemas, roles, extensions and large objects, and per-table fingerprints (row count
//! and checksum) to compare a target with its source.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgMajor, ServerSettings, StopMode,
};
use retrieval::{Pipeline, RetrievalConfig, SourceConfig, Target};

/// The source's password-authenticated superuser that retrieval connects as.
pub(crate) const SOURCE_USER: &str = "retriever";
pub(crate) const SOURCE_PASSWORD: &str = "s3cret 'pw'";
/// The environment variable the tests put the password in.
pub(crate) const PASSWORD_ENV: &str = "SCION_TEST_SOURCE_PASSWORD";
const ADMIN: &str = "postgres";
const STOP: Duration = Duration::from_secs(30);

pub(crate) fn major(number: u8) -> PgMajor {
    PgMajor::new(number).unwrap()
}

/// Debian's PostgreSQL 15, with the extension packages `scripts/setup` installs beside it.
pub(crate) const DEBIAN_15: &str = "/usr/lib/postgresql/15/bin";

/// The default search with Debian's 15 configured first, as `[clone.bin_dirs]` would.
pub(crate) fn debian_search() -> BinarySearch {
    let mut search = BinarySearch::default();
    search.bin_dirs.push((major(15), PathBuf::from(DEBIAN_15)));
    search
}

pub(crate) fn os_user() -> OsUser {
    OsUser::lookup("postgres").unwrap()
}

/// A free loopback port of this test process's claimed block, below the ephemeral range, so
/// no other test's connection takes it before the server binds it.
pub(crate) fn free_port() -> u16 {
    *test_support::free_port_range(1).start()
}

/// A temp directory the `postgres` user can traverse; on drop, stops every server working in it
/// (found by working directory, so one still starting is stopped too).
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        set_password_env();
        let dir = tempfile::Builder::new().prefix("scion-rt-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A target in this sandbox: `<sandbox>/target` (not created) and a run directory.
    pub(crate) fn target(&self) -> Target {
        Target::new(self.path().join("target"), self.path().join("run"))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        test_support::stop_postmasters_under(self.path());
    }
}

fn set_password_env() {
    // Tests only read this variable and always set the same value.
    #[allow(unsafe_code, reason = "test-only; every writer sets the same value")]
    // SAFETY: the value never changes once set, and the tests set it before any reader runs in
    // that test; concurrent setters write identical bytes.
    unsafe {
        if std::env::var(PASSWORD_ENV).as_deref() != Ok(SOURCE_PASSWORD) {
            std::env::set_var(PASSWORD_ENV, SOURCE_PASSWORD);
        }
    }
}

/// A running source cluster.
pub(crate) struct SourceDb {
    pub(crate) instance: Option<Instance>,
    pub(crate) port: u16,
    pub(crate) major: PgMajor,
}

/// `pg_dump` of `database` with `args`, as the retrieval role: the dump on stdout.
pub(crate) async fn pg_dump(source: &SourceDb, database: &str, args: &[&str]) -> Vec<u8> {
    let binaries = postgres::BinarySearch::default().locate(source.major).unwrap();
    exec::Cmd::new(binaries.tool("pg_dump").unwrap())
        .arg(format!(
            "--dbname=host=127.0.0.1 port={} user={SOURCE_USER} dbname={database}",
            source.port
        ))
        .args(args)
        .secret_env("PGPASSWORD", SOURCE_PASSWORD)
        .output()
        .await
        .unwrap()
        .stdout
}

impl SourceDb {
    /// initdb + start on a free loopback port, with pg_stat_statements preloaded and the
    /// retrieval role, then the standard data set.
    pub(crate) async fn start(sandbox: &Sandbox, major_number: u8) -> SourceDb {
        let binaries = BinarySearch::default().locate(major(major_number)).unwrap();
        let mut options = InitDbOptions::new(ADMIN);
        options.sync = false;
        let preload = ("shared_preload_libraries".to_owned(), "pg_stat_statements".to_owned());
        SourceDb::start_with(sandbox, &binaries, &options, vec![preload]).await
    }

    /// initdb with `options` + start with `extra` settings on a free loopback port, with the
    /// retrieval role.
    pub(crate) async fn start_with(
        sandbox: &Sandbox,
        binaries: &postgres::PgBinaries,
        options: &InitDbOptions,
        extra: Vec<(String, String)>,
    ) -> SourceDb {
        let data_dir = sandbox.path().join("source");
        postgres::initdb(binaries, &data_dir, &os_user(), options).await.unwrap();
        let port = free_port();
        let mut settings = ServerSettings::new(port, sandbox.path().join("ssock"));
        settings.extra = extra;
        settings.extra.push(("fsync".into(), "off".into()));
        let spec = InstanceSpec::new(
            &data_dir,
            settings,
            ADMIN,
            sandbox.path().join("source.log"),
            os_user(),
        );
        let mut instance = Instance::start(binaries, spec).await.unwrap();
        let admin = instance.admin().await.unwrap();
        admin
            .client()
            .batch_execute(&format!(
                "CREATE ROLE {SOURCE_USER} LOGIN SUPERUSER PASSWORD {}",
                postgres::sql::quote_literal(SOURCE_PASSWORD)
            ))
            .await
            .unwrap();
        SourceDb { instance: Some(instance), port, major: binaries.major() }
    }

    /// The source section for this cluster, password from [`PASSWORD_ENV`].
    pub(crate) fn source_config(&self) -> SourceConfig {
        SourceConfig {
            host: Some("127.0.0.1".into()),
            port: self.port,
            username: SOURCE_USER.into(),
            password_env: Some(PASSWORD_ENV.into()),
            ..SourceConfig::default()
        }
    }

    /// Runs SQL as the retrieval role in `database`.
    pub(crate) async fn sql(&self, database: &str, sql: &str) {
        let client = self.connect(database).await;
        client.batch_execute(sql).await.unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    }

    pub(crate) async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SOURCE_USER)
            .password(SOURCE_PASSWORD)
            .dbname(database);
        connect(config).await
    }

    /// Two databases (`app` with schemas `public` and `sales`, `shop`), roles owning objects,
    /// pgcrypto and pg_stat_statements, a view, a sequence, an RLS policy and large objects.
    pub(crate) async fn populate(&self) {
        for statement in [
            "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'",
            "CREATE ROLE app_reader NOLOGIN",
            "CREATE DATABASE app OWNER app_owner",
            "CREATE DATABASE shop",
        ] {
            self.sql("postgres", statement).await;
        }
        self.sql(
            "app",
            "CREATE EXTENSION pgcrypto;
             CREATE EXTENSION pg_stat_statements;
             CREATE SCHEMA sales AUTHORIZATION app_owner;
             SET ROLE app_owner;
             CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL, secret bytea, created timestamptz);
             INSERT INTO customers (email, secret, created)
               SELECT 'user' || i || '@example.com', digest(i::text, 'sha256'), '2024-01-01'::timestamptz + i * interval '1 hour'
               FROM generate_series(1, 2000) i;
             CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint REFERENCES customers, total numeric(12,2), note text);
             INSERT INTO orders SELECT i, 1 + i % 2000, i * 1.25, repeat('x', i % 50) FROM generate_series(1, 5000) i;
             CREATE TABLE sales.invoices (id int PRIMARY KEY, amount numeric, tags text[], payload jsonb);
             INSERT INTO sales.invoices SELECT i, i * 3.5, ARRAY['a' || i, 'b'], jsonb_build_object('n', i) FROM generate_series(1, 1500) i;
             CREATE TABLE sales.empty_table (id int);
             CREATE SEQUENCE sales.counter START 42;
             CREATE VIEW sales.big_invoices AS SELECT * FROM sales.invoices WHERE amount > 100;
             ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own_orders ON orders USING (customer_id > 0);
             RESET ROLE;
             GRANT SELECT ON ALL TABLES IN SCHEMA sales TO app_reader;
             SELECT lo_from_bytea(0, convert_to('large object ' || i, 'UTF8')) FROM generate_series(1, 5) i;",
        )
        .await;
        self.sql(
            "shop",
            "CREATE TABLE items (sku text PRIMARY KEY, price numeric, stock int);
             INSERT INTO items SELECT 'sku-' || i, i / 3.0, i % 17 FROM generate_series(1, 3000) i;
             CREATE TABLE \"Mixed Case\" (\"Id\" int, value text);
             INSERT INTO \"Mixed Case\" VALUES (1, 'one'), (2, 'two');",
        )
        .await;
    }

    /// Per-table fingerprints of `database` on the source.
    pub(crate) async fn fingerprints(&self, database: &str) -> Fingerprints {
        fingerprints(&self.connect(database).await).await
    }

    pub(crate) async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, STOP).await.unwrap();
        }
    }
}

pub(crate) async fn connect(config: tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Table name → (row count, checksum), plus `<large objects>`.
pub(crate) type Fingerprints = BTreeMap<String, (i64, String)>;

pub(crate) async fn fingerprints(client: &tokio_postgres::Client) -> Fingerprints {
    let tables = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut prints = Fingerprints::new();
    for row in tables {
        let table: String = row.get(0);
        let query = format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"
        );
        let row = client.query_one(&query, &[]).await.unwrap();
        prints.insert(table, (row.get(0), row.get(1)));
    }
    let row = client
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)), '') \
             FROM pg_largeobject_metadata",
            &[],
        )
        .await
        .unwrap();
    prints.insert("<large objects>".into(), (row.get(0), row.get(1)));
    prints
}

/// The target after a run, started again for inspection.
pub(crate) struct Inspect {
    instance: Option<Instance>,
    socket_dir: PathBuf,
    port: u16,
}

impl Inspect {
    pub(crate) async fn start(sandbox: &Sandbox, target: &Target, major_number: u8) -> Inspect {
        let binaries = BinarySearch::default().locate(major(major_number)).unwrap();
        Inspect::start_with(sandbox, target, &binaries).await
    }

    /// With these binaries (an ICU-capable build, say).
    pub(crate) async fn start_with(
        sandbox: &Sandbox,
        target: &Target,
        binaries: &postgres::PgBinaries,
    ) -> Inspect {
        Inspect::start_configured(sandbox, target, binaries, Vec::new()).await
    }

    /// With these binaries and `extra` settings, as a clone's configuration gives them.
    pub(crate) async fn start_configured(
        sandbox: &Sandbox,
        target: &Target,
        binaries: &postgres::PgBinaries,
        extra: Vec<(String, String)>,
    ) -> Inspect {
        let port = free_port();
        let socket_dir = sandbox.path().join("isock");
        let mut settings = ServerSettings::new(port, &socket_dir);
        settings.listen_addresses = String::new();
        settings.extra = extra;
        let spec = InstanceSpec::new(
            &target.data_dir,
            settings,
            &target.admin_role,
            sandbox.path().join("inspect.log"),
            os_user(),
        );
        let instance = Instance::start(binaries, spec).await.unwrap();
        Inspect { instance: Some(instance), socket_dir, port }
    }

    /// A libpq connection string to `database`, for client tools.
    pub(crate) fn conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user={ADMIN} dbname={database}",
            self.socket_dir.display(),
            self.port
        )
    }

    pub(crate) async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.socket_dir).port(self.port).user(ADMIN).dbname(database);
        connect(config).await
    }

    pub(crate) async fn fingerprints(&self, database: &str) -> Fingerprints {
        fingerprints(&self.connect(database).await).await
    }

    /// Names of the non-template databases.
    pub(crate) async fn databases(&self) -> Vec<String> {
        let client = self.connect("postgres").await;
        client
            .query("SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, STOP).await.unwrap();
        }
    }
}

/// A live-source configuration for `source` with small job counts and the dump in the sandbox.
pub(crate) fn live_config(
    sandbox: &Sandbox,
    source: &SourceDb,
    target_major: u8,
) -> RetrievalConfig {
    let mut config = RetrievalConfig {
        source: Some(source.source_config()),
        target_major,
        ..RetrievalConfig::default()
    };
    config.dump.location = Some(sandbox.path().join("dump"));
    config
}

pub(crate) fn pipeline(config: RetrievalConfig) -> Pipeline {
    Pipeline::new(config, BinarySearch::default(), os_user()).unwrap()
}

/// Asserts that every listed database has the same fingerprints in the target as in the source.
pub(crate) async fn assert_same_data(source: &SourceDb, inspect: &Inspect, pairs: &[(&str, &str)]) {
    for (source_name, target_name) in pairs {
        let expected = source.fingerprints(source_name).await;
        let actual = inspect.fingerprints(target_name).await;
        assert!(expected.len() > 1, "{source_name} has tables");
        assert_eq!(actual, expected, "{source_name} → {target_name}");
    }
}
