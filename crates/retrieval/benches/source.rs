//! What the retrieval benchmarks share: a sandbox, a fresh source cluster with the `bench`
//! superuser and database, and the live configuration that reads it.

#![allow(dead_code, reason = "each benchmark uses the part it needs")]

use std::collections::BTreeMap;
use std::time::Duration;

use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor,
    ServerSettings,
};
use retrieval::{DatabaseConfig, RetrievalConfig, SourceConfig};

pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-pw";
pub(crate) const PASSWORD_ENV: &str = "SCION_BENCH_SOURCE_PASSWORD";
pub(crate) const DATABASE: &str = "bench";
pub(crate) const STOP: Duration = Duration::from_secs(300);

/// A running source in its own sandbox (removed on drop).
pub(crate) struct BenchSource {
    pub(crate) sandbox: tempfile::TempDir,
    pub(crate) binaries: PgBinaries,
    pub(crate) user: OsUser,
    pub(crate) instance: Instance,
    pub(crate) port: u16,
}

/// Sets the password variable (call first, while single-threaded), makes a sandbox under `dir`
/// named `prefix…`, and starts a source of `major` with `shared_buffers` and `extra` settings,
/// the `bench` role and database.
pub(crate) async fn start(
    dir: &str,
    prefix: &str,
    major: u8,
    shared_buffers: &str,
    extra: Vec<(String, String)>,
) -> BenchSource {
    #[allow(unsafe_code, reason = "set once, before any other thread reads the environment")]
    // SAFETY: called at the start of main; nothing else reads the environment yet.
    unsafe {
        std::env::set_var(PASSWORD_ENV, PASSWORD);
    }
    let binaries = BinarySearch::default().locate(PgMajor::new(major).unwrap()).unwrap();
    let user = OsUser::lookup("postgres").unwrap();
    let sandbox = tempfile::Builder::new().prefix(prefix).tempdir_in(dir).unwrap();
    let root = sandbox.path();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let source_dir = root.join("source");
    let mut options = InitDbOptions::new("postgres");
    options.sync = false;
    postgres::initdb(&binaries, &source_dir, &user, &options).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = ServerSettings::new(port, root.join("ssock"));
    settings.shared_buffers = shared_buffers.into();
    settings.extra = extra;
    let spec =
        InstanceSpec::new(&source_dir, settings, "postgres", root.join("source.log"), user.clone());
    let mut instance = Instance::start(&binaries, spec).await.unwrap();
    let admin = instance.admin().await.unwrap();
    // Two statements: CREATE DATABASE cannot run in a batch's implicit transaction.
    for statement in [
        format!("CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
    ] {
        admin.client().batch_execute(&statement).await.unwrap();
    }
    drop(admin);
    BenchSource { sandbox, binaries, user, instance, port }
}

impl BenchSource {
    /// A libpq connection string to `database` as the bench role.
    pub(crate) fn conninfo(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={USER} dbname={database}", self.port)
    }

    /// Logical retrieval of the bench database into a target of `major`.
    pub(crate) fn config(&self, major: u8) -> RetrievalConfig {
        RetrievalConfig {
            source: Some(SourceConfig {
                host: Some("127.0.0.1".into()),
                port: self.port,
                username: USER.into(),
                password_env: Some(PASSWORD_ENV.into()),
                ..SourceConfig::default()
            }),
            databases: BTreeMap::from([(DATABASE.to_owned(), DatabaseConfig::default())]),
            target_major: major,
            ..RetrievalConfig::default()
        }
    }
}
