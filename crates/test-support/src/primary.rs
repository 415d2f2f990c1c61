//! A source primary for physical mode's tests: a real PostgreSQL on a loopback port that lets a
//! replication role stream, with a table the cases write to, and the standby a copy tool makes
//! of it (`pg_basebackup` through a slot); or one whose WAL pgBackRest archives into a local
//! repository with a real stanza and a full backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgMajor, ServerSettings,
};
use tokio_postgres::{Client, NoTls};

use crate::TestDir;

/// The role a standby streams as, trusted for replication on loopback only.
pub const REPLICATOR: &str = "replicator";
/// The source's superuser, which a physical copy of it has: the engine's admin role there.
pub const ADMIN: &str = "postgres";

/// A source primary on a loopback port, with a table the cases write to.
#[derive(Debug)]
pub struct Primary {
    pub instance: Option<Instance>,
    pub port: u16,
    pub binaries: postgres::PgBinaries,
    spec: InstanceSpec,
    dir: TestDir,
    pgbackrest: Option<PathBuf>,
}

/// Debian's pgBackRest, which supports PostgreSQL up to 15.
pub const PGBACKREST: &str = "/usr/bin/pgbackrest";

impl Primary {
    pub async fn start(major: u8) -> Primary {
        Primary::start_with(major, Vec::new()).await
    }

    /// A primary with `wal_level = logical`, a source for continuous refresh.
    pub async fn start_logical(major: u8) -> Primary {
        Primary::start_with(major, vec![("wal_level".into(), "logical".into())]).await
    }

    /// A primary that archives each finished WAL segment into `archive` with `cp` (the
    /// directory must be writable by the servers' OS user).
    pub async fn start_archiving(major: u8, archive: &Path) -> Primary {
        let settings = vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), format!("cp %p {}/%f", archive.display())),
        ];
        Primary::start_with(major, settings).await
    }

    /// A primary that archives into a new temporary directory, owned by the servers' OS user
    /// (`postgres`) so that its archiver can write there; the directory goes when dropped.
    pub async fn start_archiving_into_temp(major: u8) -> (Primary, TestDir) {
        let archive = TestDir::new("scion-archive-");
        let user = OsUser::lookup("postgres").expect("the servers' OS user");
        std::os::unix::fs::chown(archive.path(), Some(user.uid), Some(user.gid))
            .expect("give the archive to the servers' OS user");
        let primary = Primary::start_archiving(major, archive.path()).await;
        (primary, archive)
    }

    /// A primary (a major pgBackRest supports: up to 15) that archives through pgBackRest's
    /// `archive-push` into a local repository under its directory, with the stanza created and
    /// a full backup taken. Everything pgBackRest reads (its configuration and the repository)
    /// is under [`Primary::pgbackrest_dir`]; it logs to no file, so a reader of that directory
    /// needs it read-only.
    pub async fn start_with_pgbackrest(major: u8) -> Primary {
        let dir = TestDir::new("scion-primary-");
        let user = OsUser::lookup("postgres").expect("the postgres OS user");
        let tool_dir = dir.path().join("pgbackrest");
        for sub in ["", "repo", "lock"] {
            user.own_dir(&tool_dir.join(sub), 0o755).expect("make pgBackRest's directories");
        }
        let conf = tool_dir.join("pgbackrest.conf");
        std::fs::write(
            &conf,
            format!(
                "[global]\nrepo1-path={repo}\nlock-path={lock}\nlog-level-file=off\n\
                 start-fast=y\nrepo1-retention-full=1\n\
                 [main]\npg1-path={data}\npg1-port={{port}}\npg1-socket-path={socket}\npg1-user={ADMIN}\n",
                repo = tool_dir.join("repo").display(),
                lock = tool_dir.join("lock").display(),
                data = dir.path().join("data").display(),
                socket = dir.path().join("socket").display(),
            ),
        )
        .expect("write pgbackrest.conf");
        let settings = vec![
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!("{PGBACKREST} --config={} --stanza=main archive-push %p", conf.display()),
            ),
        ];
        let mut primary = Primary::start_in(dir, major, settings, Some(conf)).await;
        primary.pgbackrest(&["stanza-create"]).await;
        primary.pgbackrest(&["--type=full", "backup"]).await;
        primary
    }

    /// The directory that holds pgBackRest's configuration and repository, for a primary made
    /// by [`Primary::start_with_pgbackrest`].
    pub fn pgbackrest_dir(&self) -> Option<&Path> {
        self.pgbackrest.as_deref().and_then(Path::parent)
    }

    /// pgBackRest's configuration file, for a primary made by
    /// [`Primary::start_with_pgbackrest`].
    pub fn pgbackrest_conf(&self) -> Option<&Path> {
        self.pgbackrest.as_deref()
    }

    /// Runs pgBackRest on the stanza as the servers' OS user, which connects over the socket.
    pub async fn pgbackrest(&mut self, args: &[&str]) {
        let conf = self.pgbackrest.clone().expect("a primary made with pgBackRest");
        pgbackrest(&conf, args).await;
    }

    async fn start_with(major: u8, more_settings: Vec<(String, String)>) -> Primary {
        Primary::start_in(TestDir::new("scion-primary-"), major, more_settings, None).await
    }

    async fn start_in(
        dir: TestDir,
        major: u8,
        more_settings: Vec<(String, String)>,
        pgbackrest: Option<PathBuf>,
    ) -> Primary {
        let binaries = BinarySearch::default()
            .locate(PgMajor::new(major).expect("a major"))
            .expect("the major's binaries");
        let user = OsUser::lookup("postgres").expect("the postgres OS user");
        let data_dir = dir.path().join("data");
        let mut options = InitDbOptions::new(ADMIN);
        options.sync = false;
        postgres::initdb(&binaries, &data_dir, &user, &options).await.expect("initdb the primary");
        let port = *crate::free_port_range(1).start();
        if let Some(conf) = &pgbackrest {
            let text = std::fs::read_to_string(conf).expect("read pgbackrest.conf");
            std::fs::write(conf, text.replace("{port}", &port.to_string()))
                .expect("write pgbackrest.conf");
        }
        let mut settings = ServerSettings::new(port, dir.path().join("socket"));
        settings.max_connections = 30;
        settings.extra =
            vec![("fsync".into(), "off".into()), ("wal_level".into(), "replica".into())];
        settings.extra.extend(more_settings);
        let mut spec = InstanceSpec::new(
            &data_dir,
            settings,
            ADMIN,
            dir.path().join("source.log"),
            user.clone(),
        );
        if pgbackrest.is_some() {
            // pgBackRest connects as the servers' OS user over the socket.
            spec.hba.admin_os_users.push(user.name.clone());
        }
        let mut source = Primary { instance: None, port, binaries, spec, dir, pgbackrest };
        source.run().await;
        source
            .sql(&format!(
                "CREATE ROLE {REPLICATOR} LOGIN REPLICATION; \
                 CREATE TABLE facts (id serial PRIMARY KEY, note text NOT NULL, at timestamptz DEFAULT now())"
            ))
            .await;
        source
    }

    /// Starts the server; Scion's pg_hba.conf has no replication line, so one is added for
    /// the replication role on loopback and the file reloaded.
    pub async fn run(&mut self) {
        let mut instance =
            Instance::start(&self.binaries, self.spec.clone()).await.expect("start the primary");
        let hba = self.spec.data_dir.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.push_str(&format!("host replication {REPLICATOR} 127.0.0.1/32 trust\n"));
        std::fs::write(&hba, text).expect("write pg_hba.conf");
        let admin = instance.admin().await.expect("the primary's admin session");
        admin.client().batch_execute("SELECT pg_reload_conf()").await.expect("reload the primary");
        self.instance = Some(instance);
    }

    /// Gives the replication role `password` and makes replication logins on loopback use it,
    /// so a standby streams only with its password file.
    pub async fn require_password(&self, password: &str) {
        self.sql(&format!(
            "ALTER ROLE {REPLICATOR} PASSWORD {}",
            postgres::sql::quote_literal(password)
        ))
        .await;
        let hba = self.spec.data_dir.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf").replace(
            &format!("host replication {REPLICATOR} 127.0.0.1/32 trust"),
            &format!("host replication {REPLICATOR} 127.0.0.1/32 scram-sha-256"),
        );
        std::fs::write(&hba, text).expect("write pg_hba.conf");
        self.sql("SELECT pg_reload_conf()").await;
    }

    pub async fn stop(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance
                .stop(postgres::StopMode::Fast, Duration::from_secs(30))
                .await
                .expect("stop the primary");
        }
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.spec.settings.socket_dir
    }

    pub async fn connect(&self) -> Client {
        connect(self.spec.settings.socket_dir.clone(), self.port).await
    }

    pub async fn sql(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// The source's clock, after every commit so far, in RFC 3339 (UTC, microseconds).
    pub async fn clock(&self) -> String {
        let row = self
            .connect()
            .await
            .query_one(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[],
            )
            .await
            .expect("read the primary's clock");
        row.get(0)
    }

    /// The current WAL write location, as PostgreSQL prints it.
    pub async fn current_lsn(&self) -> String {
        let row = self
            .connect()
            .await
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("read the primary's WAL location");
        row.get(0)
    }

    /// Switches to a new WAL segment and waits until the archiver has copied the old one.
    pub async fn archive_current_segment(&self) {
        let client = self.connect().await;
        let row = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .expect("switch WAL");
        let segment: String = row.get(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let row = client
                .query_one("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", &[])
                .await
                .expect("read pg_stat_archiver");
            if row.get::<_, String>(0).as_str() >= segment.as_str() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{segment} was never archived");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn insert(&self, note: &str) {
        self.sql(&format!("INSERT INTO facts (note) VALUES ('{note}')")).await;
    }

    /// A standby of this source in `pgdata` (which must not exist), made the way the copy tool
    /// makes one: `pg_basebackup -X stream -C -S <slot>` as the servers' OS user, then
    /// `standby.signal` and the connection settings. Not `-R`: its `primary_conninfo` names
    /// every option of the tool's libpq (`sslcertmode` since 16), which a server linked with
    /// an older system libpq refuses.
    pub async fn base_backup(&self, pgdata: &Path, slot: &str) {
        let user = OsUser::lookup("postgres").expect("the postgres OS user");
        std::fs::create_dir(pgdata).expect("create the standby directory");
        nix::unistd::chown(pgdata, Some(user.uid.into()), Some(user.gid.into()))
            .expect("chown the standby directory");
        std::fs::set_permissions(pgdata, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod the standby directory");
        exec::Cmd::new(self.binaries.tool("pg_basebackup").expect("pg_basebackup of the major"))
            .arg("-D")
            .arg(pgdata)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", REPLICATOR])
            .args(["-X", "stream", "-C", "-S", slot, "--checkpoint=fast"])
            .user(user.uid, user.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .timeout(Duration::from_secs(120))
            .run()
            .await
            .expect("pg_basebackup");
        let auto_conf = pgdata.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto_conf).unwrap_or_default();
        text.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user={REPLICATOR}'\nprimary_slot_name = '{slot}'\n",
            self.port
        ));
        std::fs::write(&auto_conf, text).expect("write postgresql.auto.conf");
        std::fs::write(pgdata.join("standby.signal"), "").expect("write standby.signal");
        for file in [auto_conf, pgdata.join("standby.signal")] {
            nix::unistd::chown(&file, Some(user.uid.into()), Some(user.gid.into()))
                .expect("chown the standby files");
        }
    }
}

/// Runs pgBackRest with the configuration `conf` on its stanza `main` as the servers' OS user.
pub async fn pgbackrest(conf: &Path, args: &[&str]) {
    let user = OsUser::lookup("postgres").expect("the postgres OS user");
    exec::Cmd::new(PGBACKREST)
        .arg(format!("--config={}", conf.display()))
        .arg("--stanza=main")
        .args(args)
        .user(user.uid, user.gid)
        .current_dir("/")
        .timeout(Duration::from_secs(120))
        .output()
        .await
        .unwrap_or_else(|error| panic!("pgbackrest {args:?}: {error}"));
}

impl Drop for Primary {
    fn drop(&mut self) {
        crate::stop_postmasters_under(self.dir.path());
    }
}

/// A session over a unix socket as the admin role (peer authentication maps root to it).
pub async fn connect(socket_dir: PathBuf, port: u16) -> Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(socket_dir)
        .port(port)
        .user(ADMIN)
        .dbname("postgres")
        .connect(NoTls)
        .await
        .expect("connect to the primary");
    tokio::spawn(connection);
    client
}
