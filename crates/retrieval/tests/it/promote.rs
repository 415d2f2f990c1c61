//! Promotion of a copy of a running standby, as the engine will do it: a real source primary
//! archiving its WAL to a local directory, a standby made with `pg_basebackup -R -X stream` on a
//! btrfs image pool, replaying from the source and from the archive; a snapshot of its dataset
//! taken while it runs, cloned, and promoted at the latest WAL (with preprocessing and a rename),
//! at a target time and at a target LSN between two known commits, and refused outside the WAL
//! window.
//!
//! One test per major shares one source and one standby across the scenarios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use exec::Cmd;
use postgres::{BinarySearch, InitDbOptions, Instance, InstanceSpec, ServerSettings, StopMode};
use retrieval::Error;
use retrieval::masking::{MaskingConfig, Rule};
use retrieval::physical::promote::{
    DataStateSource, Lsn, Promotion, PromotionConfig, PromotionSummary, RecoveryTarget, WalPoint,
    wal_window,
};
use storage::{DatasetName, SnapshotName, StorageBackend, ThinStorage};
use test_support::{PoolKind, TestPool};
use tokio_util::sync::CancellationToken;

use crate::support::{Inspect, Sandbox, connect, free_port, major, os_user};

const ADMIN: &str = "postgres";
const STOP: Duration = Duration::from_secs(30);
/// How long the standby and the archiver may take to catch up; generous, never expected.
const CATCH_UP: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_copy_of_a_running_standby_16() {
    promotes_a_copy_of_a_running_standby(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_copy_of_a_running_standby_17() {
    promotes_a_copy_of_a_running_standby(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_copy_of_a_running_standby_18() {
    promotes_a_copy_of_a_running_standby(18).await;
}

async fn promotes_a_copy_of_a_running_standby(major_number: u8) {
    let sandbox = Sandbox::new();
    let pool = TestPool::new(PoolKind::Btrfs, 1024).await;
    let storage = pool.open().await;
    let archive = sandbox.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    std::os::unix::fs::chown(&archive, Some(os_user().uid), Some(os_user().gid)).unwrap();

    let source = Primary::start(&sandbox, major_number, &archive).await;
    source
        .sql(
            "CREATE TABLE t (id int PRIMARY KEY, phase text, note text);
             INSERT INTO t SELECT i, 'before', 'secret ' || i FROM generate_series(1, 50) i;",
        )
        .await;
    source.sql("CREATE DATABASE app").await;
    let standby = Standby::start(&sandbox, &source, &storage, &archive).await;
    // Committed while the standby runs: what it replays, and the copy holds.
    source
        .sql("INSERT INTO t SELECT i, 'before', 'secret ' || i FROM generate_series(51, 100) i")
        .await;
    standby.catch_up(&source).await;

    // What the engine reads from the sync instance before it snapshots it: the oldest moment
    // of the window.
    let oldest = standby.replayed().await;
    let snapshot = SnapshotName::new(standby.dataset.clone(), "s1").unwrap();
    storage.snapshot(&snapshot).await.unwrap();

    // Two commits the point-in-time targets fall between, archived.
    source.sql("INSERT INTO t SELECT i, 'a', '' FROM generate_series(101, 110) i").await;
    let between_time = source.clock().await;
    let between_lsn = source.current_lsn().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    source.sql("INSERT INTO t SELECT i, 'b', '' FROM generate_series(111, 120) i").await;
    let last_archived = source.archive_current_segment().await;

    let search = BinarySearch::default();
    let window = wal_window(&search, major(major_number), oldest, &archive, None).await.unwrap();
    assert_eq!(window.oldest, oldest);
    assert!(window.newest.at > between_time, "{window}");
    assert!(window.newest.lsn > between_lsn, "{window}");
    // Bounded by the source's last archived segment (the newest here), the same window.
    let bounded =
        wal_window(&search, major(major_number), oldest, &archive, Some(&last_archived)).await;
    assert_eq!(bounded.unwrap(), window);

    // The copy alone (no archive), at its own end, with preprocessing and a rename.
    let copy = Copy::clone(&storage, &snapshot, "latest", &sandbox).await;
    let mut config = PromotionConfig::default();
    config.preprocessing.inline = Some("UPDATE t SET note = 'masked'".to_owned());
    config.database_rename.insert("app".to_owned(), "app_renamed".to_owned());
    let summary = copy.promoted(config, RecoveryTarget::Latest).await;
    assert_eq!(summary.major, major_number);
    assert_eq!(summary.data_state_source, DataStateSource::ReplayTimestamp);
    assert!(summary.data_state_at <= between_time, "{summary:?}");
    assert!(summary.lsn >= oldest.lsn, "{summary:?}");
    assert!(!postgres::recovery::recovery_pending(&copy.target.data_dir), "no signal file left");
    let inspect = copy.inspect(&sandbox, major_number).await;
    assert_eq!(inspect.phases().await, [("before".to_owned(), 100)]);
    assert_eq!(inspect.notes().await, ["masked"]);
    let databases = inspect.inspect.databases().await;
    assert!(databases.contains(&"app_renamed".to_owned()), "{databases:?}");
    assert!(!databases.contains(&"app".to_owned()), "{databases:?}");
    inspect.accepts_writes().await;
    inspect.inspect.stop().await;

    // Masking runs on a promoted copy as it does in logical mode: no original note is left.
    let copy = Copy::clone(&storage, &snapshot, "masked", &sandbox).await;
    let key_file = sandbox.path().join("masking.key");
    std::fs::write(&key_file, "promotion-masking-key\n").unwrap();
    let notes = BTreeMap::from([("note".to_owned(), Rule::Hash { length: None })]);
    let config = PromotionConfig {
        masking: Some(MaskingConfig {
            key_file: Some(key_file),
            tables: BTreeMap::from([("t".to_owned(), notes)]),
            ..MaskingConfig::default()
        }),
        ..PromotionConfig::default()
    };
    let summary = copy.promoted(config, RecoveryTarget::Latest).await;
    assert_eq!(summary.masking.map(|run| (run.tables, run.rows)), Some((1, 100)));
    let inspect = copy.inspect(&sandbox, major_number).await;
    let notes = inspect.notes().await;
    assert_eq!(notes.len(), 100, "distinct notes stay distinct");
    assert!(notes.iter().all(|note| note.len() == 64 && !note.contains("secret")), "{notes:?}");
    inspect.inspect.stop().await;

    // A target time between the two commits, with WAL from the archive.
    let target = RecoveryTarget::Time(between_time);
    window.check(&target).unwrap();
    let copy = Copy::clone(&storage, &snapshot, "at-time", &sandbox).await;
    let summary = copy.promoted(archive_config(&archive), target).await;
    assert!(summary.data_state_at <= between_time, "{summary:?}");
    assert!(summary.data_state_at > oldest.at, "{summary:?}");
    assert!(summary.wal_replayed_bytes > 0, "{summary:?}");
    let inspect = copy.inspect(&sandbox, major_number).await;
    assert_eq!(inspect.phases().await, [("a".to_owned(), 10), ("before".to_owned(), 100)]);
    inspect.accepts_writes().await;
    inspect.inspect.stop().await;

    // A target LSN between them.
    let target = RecoveryTarget::Lsn(between_lsn);
    window.check(&target).unwrap();
    let copy = Copy::clone(&storage, &snapshot, "at-lsn", &sandbox).await;
    let summary = copy.promoted(archive_config(&archive), target).await;
    assert!(summary.lsn >= between_lsn, "{summary:?}");
    let inspect = copy.inspect(&sandbox, major_number).await;
    assert_eq!(inspect.phases().await, [("a".to_owned(), 10), ("before".to_owned(), 100)]);
    inspect.accepts_writes().await;
    inspect.inspect.stop().await;

    // Outside the window: the engine's check names it; the server's own refusal is typed too.
    let late = RecoveryTarget::Time(window.newest.at + chrono::Duration::hours(1));
    let error = window.check(&late).unwrap_err();
    assert!(matches!(error, Error::OutsideWalWindow { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("outside the WAL window"), "{text}");
    assert!(text.contains(&window.newest.lsn.to_string()), "{text}");
    let early = RecoveryTarget::Lsn(Lsn(oldest.lsn.0 - 1));
    assert!(matches!(window.check(&early), Err(Error::OutsideWalWindow { .. })));
    let copy = Copy::clone(&storage, &snapshot, "too-late", &sandbox).await;
    let error = copy.promote(archive_config(&archive), late).await.unwrap_err();
    match &error {
        Error::TargetUnreachable { reason, .. } => {
            assert!(reason.contains("WAL ends before it"), "{reason}");
        }
        other => panic!("expected TargetUnreachable, got {other:?}"),
    }
    let copy = Copy::clone(&storage, &snapshot, "too-early", &sandbox).await;
    let error = copy.promote(archive_config(&archive), RecoveryTarget::Lsn(Lsn(0x100))).await;
    match error.unwrap_err() {
        Error::TargetUnreachable { reason, .. } => {
            assert!(reason.contains("consistent"), "{reason}")
        }
        other => panic!("expected TargetUnreachable, got {other:?}"),
    }

    standby.stop().await;
    source.stop().await;
}

fn archive_config(archive: &Path) -> PromotionConfig {
    PromotionConfig {
        restore_command: Some(format!("cp {}/%f %p", archive.display())),
        restore_dirs: vec![archive.to_path_buf()],
        ..PromotionConfig::default()
    }
}

/// A source primary that archives its WAL with `cp`.
struct Primary {
    instance: Option<Instance>,
    socket_dir: PathBuf,
    port: u16,
}

impl Primary {
    async fn start(sandbox: &Sandbox, major_number: u8, archive: &Path) -> Primary {
        let binaries = BinarySearch::default().locate(major(major_number)).unwrap();
        let data_dir = sandbox.path().join("primary");
        let mut options = InitDbOptions::new(ADMIN);
        options.sync = false;
        postgres::initdb(&binaries, &data_dir, &os_user(), &options).await.unwrap();
        let port = free_port();
        let socket_dir = sandbox.path().join("psock");
        let mut settings = ServerSettings::new(port, &socket_dir);
        settings.extra = vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), format!("cp %p {}/%f", archive.display())),
            ("fsync".into(), "off".into()),
        ];
        let spec = InstanceSpec::new(
            &data_dir,
            settings,
            ADMIN,
            sandbox.path().join("primary.log"),
            os_user(),
        );
        let mut instance = Instance::start(&binaries, spec).await.unwrap();
        // Scion's pg_hba.conf has no replication line; the standby replicates over the socket.
        let hba = data_dir.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).unwrap();
        text.push_str("local replication all trust\n");
        std::fs::write(&hba, text).unwrap();
        let admin = instance.admin().await.unwrap();
        admin.client().batch_execute("SELECT pg_reload_conf()").await.unwrap();
        Primary { instance: Some(instance), socket_dir, port }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.socket_dir).port(self.port).user(ADMIN).dbname("postgres");
        connect(config).await
    }

    async fn sql(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    }

    /// The source's clock, after every commit so far.
    async fn clock(&self) -> DateTime<Utc> {
        let row = self
            .client()
            .await
            .query_one(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
                &[],
            )
            .await
            .unwrap();
        parse_utc(&row.get::<_, String>(0))
    }

    async fn current_lsn(&self) -> Lsn {
        let row =
            self.client().await.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap();
        row.get::<_, String>(0).parse().unwrap()
    }

    /// Switches to a new segment and waits until the archiver has copied the old one, whose
    /// name it returns.
    async fn archive_current_segment(&self) -> String {
        let client = self.client().await;
        let row = client.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).await.unwrap();
        let segment: String = row.get(0);
        wait_until("the archiver copies the switched segment", || async {
            let row = client
                .query_one("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", &[])
                .await
                .unwrap();
            row.get::<_, String>(0).as_str() >= segment.as_str()
        })
        .await;
        segment
    }

    async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, STOP).await.unwrap();
        }
    }
}

/// A standby made with `pg_basebackup -R -X stream` into a dataset of the pool, streaming from
/// the primary and restoring from the archive.
struct Standby {
    instance: Option<Instance>,
    dataset: DatasetName,
    socket_dir: PathBuf,
    port: u16,
}

impl Standby {
    async fn start(
        sandbox: &Sandbox,
        source: &Primary,
        storage: &StorageBackend,
        archive: &Path,
    ) -> Standby {
        let dataset = DatasetName::new("standby").unwrap();
        let mountpoint = storage.create_dataset(&dataset).await.unwrap();
        let data_dir = mountpoint.join("data");
        let major = source.instance.as_ref().unwrap().major();
        let binaries = BinarySearch::default().locate(major).unwrap();
        Cmd::new(binaries.tool("pg_basebackup").unwrap())
            .arg("-D")
            .arg(&data_dir)
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"])
            .arg(format!("--host={}", source.socket_dir.display()))
            .arg(format!("--port={}", source.port))
            .arg(format!("--username={ADMIN}"))
            .timeout(Duration::from_secs(300))
            .run()
            .await
            .unwrap();
        // The servers' libpqwalreceiver loads the system's libpq (Debian's 15: their RUNPATH
        // names the build machine's directory), which refuses the options a newer pg_basebackup
        // writes (`sslcertmode`, `sslnegotiation`): keep only the connection itself.
        let auto = data_dir.join("postgresql.auto.conf");
        let text: String = std::fs::read_to_string(&auto)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("primary_conninfo"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(
            &auto,
            format!(
                "{text}primary_conninfo = 'host={} port={} user={ADMIN}'\n",
                source.socket_dir.display(),
                source.port
            ),
        )
        .unwrap();
        let port = free_port();
        let socket_dir = sandbox.path().join("ssock");
        let mut settings = ServerSettings::new(port, &socket_dir);
        settings.extra =
            vec![("restore_command".into(), format!("cp {}/%f %p", archive.display()))];
        let spec = InstanceSpec::new(
            &data_dir,
            settings,
            ADMIN,
            sandbox.path().join("standby.log"),
            os_user(),
        );
        let instance = Instance::start(&binaries, spec).await.unwrap();
        Standby { instance: Some(instance), dataset, socket_dir, port }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.socket_dir).port(self.port).user(ADMIN).dbname("postgres");
        connect(config).await
    }

    /// Waits until the standby has replayed everything the source has written.
    async fn catch_up(&self, source: &Primary) {
        let target = source.current_lsn().await.to_string();
        let client = self.client().await;
        wait_until("the standby replays the source's WAL", || async {
            let row = client
                .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target])
                .await
                .unwrap();
            row.get::<_, bool>(0)
        })
        .await;
    }

    /// The last replayed commit and location.
    async fn replayed(&self) -> WalPoint {
        let row = self
            .client()
            .await
            .query_one(
                "SELECT to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
                        pg_last_wal_replay_lsn()::text",
                &[],
            )
            .await
            .unwrap();
        WalPoint {
            at: parse_utc(&row.get::<_, String>(0)),
            lsn: row.get::<_, String>(1).parse().unwrap(),
        }
    }

    async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, STOP).await.unwrap();
        }
    }
}

/// A clone of the standby's snapshot, and the run directory of its promotion.
struct Copy {
    target: retrieval::Target,
}

impl Copy {
    async fn clone(
        storage: &StorageBackend,
        snapshot: &SnapshotName,
        name: &str,
        sandbox: &Sandbox,
    ) -> Copy {
        let dataset = DatasetName::new(format!("promote/{name}")).unwrap();
        let mountpoint = storage.clone_snapshot(snapshot, &dataset).await.unwrap();
        Copy {
            target: retrieval::Target::new(
                mountpoint.join("data"),
                sandbox.path().join(format!("run-{name}")),
            ),
        }
    }

    async fn promote(
        &self,
        config: PromotionConfig,
        target: RecoveryTarget,
    ) -> Result<PromotionSummary, Error> {
        let promotion = Promotion::new(config, BinarySearch::default(), os_user()).unwrap();
        promotion.run(&self.target, target, &CancellationToken::new()).await
    }

    /// Promotes, and on failure panics with the promotion server's log.
    async fn promoted(&self, config: PromotionConfig, target: RecoveryTarget) -> PromotionSummary {
        match self.promote(config, target).await {
            Ok(summary) => summary,
            Err(error) => {
                let log = std::fs::read_to_string(self.target.run_dir.join("target.log"));
                panic!("promotion failed: {error:?}\nserver log:\n{}", log.unwrap_or_default())
            }
        }
    }

    async fn inspect(&self, sandbox: &Sandbox, major_number: u8) -> Promoted {
        let inspect = Inspect::start(sandbox, &self.target, major_number).await;
        let client = inspect.connect("postgres").await;
        let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap();
        assert!(!row.get::<_, bool>(0), "the promoted copy is out of recovery");
        Promoted { inspect, client }
    }
}

struct Promoted {
    inspect: Inspect,
    client: tokio_postgres::Client,
}

impl Promoted {
    /// Rows per phase.
    async fn phases(&self) -> Vec<(String, i64)> {
        let rows = self
            .client
            .query("SELECT phase, count(*) FROM t GROUP BY phase ORDER BY phase", &[])
            .await
            .unwrap();
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    async fn notes(&self) -> Vec<String> {
        let rows = self.client.query("SELECT DISTINCT note FROM t ORDER BY 1", &[]).await.unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    }

    async fn accepts_writes(&self) {
        self.client
            .batch_execute("INSERT INTO t VALUES (100000, 'after', 'written on the copy')")
            .await
            .unwrap();
        let row =
            self.client.query_one("SELECT count(*) FROM t WHERE id = 100000", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
    }
}

fn parse_utc(text: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc()
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
