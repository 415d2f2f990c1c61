//! Shared fixtures: a temp directory with a fresh cluster, free ports, TCP clients, and a guard
//! that kills a server a failed test left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use postgres::{
    BinarySearch, InitDbOptions, InstanceSpec, OsUser, PgBinaries, PgMajor, ServerSettings,
};

/// The engine's admin role in the tests, as in most real clusters.
pub(crate) const ADMIN: &str = "postgres";
/// How long one stop mode may take before escalation, in the tests.
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// Generates one `#[tokio::test]` per major for `async fn $case(major: PgMajor)`.
macro_rules! per_major {
    ($case:ident) => {
        mod $case {
            async fn run(major: u8) {
                super::$case(postgres::PgMajor::new(major).unwrap()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg13() {
                run(13).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg14() {
                run(14).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg15() {
                run(15).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg16() {
                run(16).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg17() {
                run(17).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pg18() {
                run(18).await;
            }
        }
    };
}
pub(crate) use per_major;

pub(crate) fn binaries(major: PgMajor) -> PgBinaries {
    BinarySearch::default().locate(major).unwrap()
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
/// (found by working directory, so one still starting is stopped too), then removes everything.
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("scion-pg-it-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A spec for the data directory `name` in this sandbox, on a fresh port.
    pub(crate) fn spec(&self, name: &str) -> InstanceSpec {
        let settings = ServerSettings::new(free_port(), self.path().join(format!("{name}.sock")));
        InstanceSpec::new(
            self.path().join(name),
            settings,
            ADMIN,
            self.path().join(format!("{name}.log")),
            os_user(),
        )
    }

    /// A new cluster of `major` in `name`, with its spec.
    pub(crate) async fn cluster(&self, major: PgMajor, name: &str) -> InstanceSpec {
        let spec = self.spec(name);
        let mut options = InitDbOptions::new(ADMIN);
        options.sync = false;
        postgres::initdb(&binaries(major), &spec.data_dir, &spec.user, &options).await.unwrap();
        spec
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        test_support::stop_postmasters_under(self.path());
    }
}

/// A TCP connection to 127.0.0.1:`port` as `user` with `password` (SCRAM over the wire).
pub(crate) async fn tcp_connect(
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects over TCP with a password and checks `SELECT 1` and the session user.
pub(crate) async fn assert_login(port: u16, user: &str, password: &str) {
    let client = tcp_connect(port, user, password)
        .await
        .unwrap_or_else(|error| panic!("login as {user:?} failed: {error}"));
    let row = client.query_one("SELECT 1::int4, session_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), user);
}

/// Checks that a TCP login as `user` with `password` is refused for a wrong password.
pub(crate) async fn assert_login_refused(port: u16, user: &str, password: &str) {
    let Err(error) = tcp_connect(port, user, password).await else {
        panic!("login as {user:?} with {password:?} succeeded");
    };
    let code = error.code().cloned();
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "expected a password failure, got {error}"
    );
}
