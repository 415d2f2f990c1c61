//! Physical mode's initial copy against real sources: pg_basebackup (PostgreSQL 16, 17 and 14,
//! and from a replica of 17), the custom tool driving pg_basebackup (16), and pgBackRest from a
//! local repository with a real stanza (Debian's 15). Each copy is started as a standby with the `postgres` crate and
//! must replay a row committed on the source after the copy; slots exist after the copy and are
//! gone after the drop; progress reaches its total. One source per major serves every case.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::{BinarySearch, Instance, InstanceSpec, PgMajor, ServerSettings, StopMode};
use retrieval::physical::{CopyTarget, InitialCopy, PhysicalConfig, PhysicalTool, slot_name};
use retrieval::{Progress, RetrievalConfig, Stage};
use tokio_util::sync::CancellationToken;

use crate::support::{
    DEBIAN_15, Sandbox, SourceDb, connect, debian_search, free_port, major, os_user,
};
use test_support::primary::pgbackrest;

const STOP: Duration = Duration::from_secs(30);
/// How long a standby may take to replay a row (a safety net, not a measurement).
const REPLAY_WAIT: Duration = Duration::from_secs(60);

/// Lets the retrieval role replicate from loopback, and gives the source a table to write to.
async fn prepare_source(source: &SourceDb, sandbox: &Sandbox) {
    let hba = sandbox.path().join("source/pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("host replication all 127.0.0.1/32 scram-sha-256\n");
    std::fs::write(&hba, text).unwrap();
    source
        .sql("postgres", "SELECT pg_reload_conf(); CREATE TABLE IF NOT EXISTS marks (label text PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO marks VALUES ('before') ON CONFLICT DO NOTHING;")
        .await;
    // Some data worth copying, so progress has something to count.
    source
        .sql("postgres", "CREATE TABLE IF NOT EXISTS filler AS SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 40000) i")
        .await;
}

pub(crate) fn physical_config(
    source: Option<&SourceDb>,
    physical: PhysicalConfig,
) -> RetrievalConfig {
    RetrievalConfig {
        source: source.map(SourceDb::source_config),
        physical: Some(physical),
        ..RetrievalConfig::default()
    }
}

pub(crate) fn copy_target(sandbox: &Sandbox, name: &str) -> CopyTarget {
    CopyTarget {
        data_dir: sandbox.path().join(name).join("data"),
        run_dir: sandbox.path().join(format!("{name}-run")),
        dataset: format!("data_{name}"),
        passfile: Some(sandbox.path().join(format!("{name}.pass"))),
    }
}

/// Records every progress update of the copy while it runs.
fn record(copy: &InitialCopy) -> tokio::task::JoinHandle<Vec<Progress>> {
    let mut receiver = copy.subscribe();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while receiver.changed().await.is_ok() {
            let progress = receiver.borrow_and_update().clone();
            let done = matches!(progress.stage, Stage::Finished | Stage::Failed);
            seen.push(progress);
            if done {
                break;
            }
        }
        seen
    })
}

/// The copy's progress went forward, never past its total, and ended at the total.
fn assert_progress(seen: &[Progress], copied: u64) {
    let last = seen.last().unwrap();
    assert_eq!(last.stage, Stage::Finished, "{last:?}");
    assert_eq!(last.bytes_done, copied);
    assert_eq!(last.bytes_total, Some(copied));
    let copying: Vec<&Progress> = seen.iter().filter(|p| p.stage == Stage::Copying).collect();
    assert!(!copying.is_empty(), "the copying stage was reported: {seen:?}");
    for pair in copying.windows(2) {
        assert!(pair[1].bytes_done >= pair[0].bytes_done, "{pair:?}");
    }
    for progress in &copying {
        if let Some(total) = progress.bytes_total {
            assert!(progress.bytes_done <= total, "{progress:?}");
        }
    }
    assert!(copied > 5 * 1024 * 1024, "a cluster is several megabytes: {copied}");
}

/// The copy started as a standby.
struct Standby {
    instance: Option<Instance>,
    socket_dir: PathBuf,
    port: u16,
}

impl Standby {
    async fn start(sandbox: &Sandbox, search: &BinarySearch, data_dir: &Path, name: &str) -> Self {
        let major = PgMajor::of_data_dir(data_dir).unwrap();
        let binaries = search.locate(major).unwrap();
        let port = free_port();
        let socket_dir = sandbox.path().join(format!("{name}-sock"));
        // On loopback, so that a copy can be taken from it as from any replica.
        let settings = ServerSettings::new(port, &socket_dir);
        let spec = InstanceSpec::new(
            data_dir,
            settings,
            "postgres",
            sandbox.path().join(format!("{name}.log")),
            os_user(),
        );
        let instance = Instance::start(&binaries, spec).await.unwrap();
        Standby { instance: Some(instance), socket_dir, port }
    }

    fn data_dir(&self) -> &Path {
        &self.instance.as_ref().unwrap().spec().data_dir
    }

    async fn client(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.socket_dir).port(self.port).user("postgres").dbname("postgres");
        connect(config).await
    }

    /// Waits until the standby has replayed the row `label`.
    async fn wait_for(&self, label: &str) {
        let client = self.client().await;
        let recovering: bool =
            client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
        assert!(recovering, "the copy runs as a standby");
        let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
        loop {
            let found: i64 = client
                .query_one("SELECT count(*) FROM marks WHERE label = $1", &[&label])
                .await
                .unwrap()
                .get(0);
            if found == 1 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{label} was not replayed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(StopMode::Fast, STOP).await.unwrap();
        }
    }
}

/// What a pg_basebackup case does besides the copy, replay and slot checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Also {
    Nothing,
    /// A second copy into another dataset while the first standby streams, as a full refresh
    /// does, each with its own slot.
    Refresh,
    /// A copy taken from the first standby (a replica), which streams from it in cascade.
    FromReplica,
}

/// pg_basebackup into a new directory: progress, the slot, the standby's replay, the drop.
async fn basebackup_case(sandbox: &Sandbox, source: &SourceDb, name: &str, also: Also) {
    let search = BinarySearch::default();
    let copy = InitialCopy::new(
        physical_config(Some(source), PhysicalConfig::default()),
        search.clone(),
        os_user(),
    )
    .unwrap();
    let target = copy_target(sandbox, name);
    let slot = copy.slot_for(&target.dataset).unwrap();
    assert_eq!(slot, slot_name("scion_standby", &target.dataset));
    let recorder = record(&copy);
    let cancel = CancellationToken::new();
    let summary = copy.run(&target, &cancel).await.unwrap();
    assert_progress(&recorder.await.unwrap(), summary.bytes);
    assert_eq!(summary.tool, PhysicalTool::PgBasebackup);
    assert_eq!(summary.major, source.major.number());
    assert_eq!(summary.slot.as_deref(), Some(slot.as_str()));
    assert!(copy.slot_exists(&slot, &cancel).await.unwrap(), "the copy created its slot");
    let settings: std::collections::BTreeMap<_, _> =
        summary.standby_settings.iter().cloned().collect();
    assert_eq!(settings["primary_slot_name"], slot);
    assert!(settings["primary_conninfo"].contains("passfile="), "{settings:?}");
    assert!(!settings["primary_conninfo"].contains(crate::support::SOURCE_PASSWORD));
    assert!(settings.contains_key("max_connections"), "{settings:?}");
    assert!(postgres::standby::is_standby(&target.data_dir));

    // A row committed after the copy streams to the standby through the slot.
    source.sql("postgres", &format!("INSERT INTO marks VALUES ('{name}-after')")).await;
    let standby = Standby::start(sandbox, &search, &target.data_dir, name).await;
    standby.wait_for("before").await;
    standby.wait_for(&format!("{name}-after")).await;
    let client = source.connect("postgres").await;
    let active: bool = client
        .query_one("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap()
        .get(0);
    assert!(active, "the standby streams from its slot");
    if also == Also::FromReplica {
        replica_case(sandbox, source, &standby, name).await;
    }
    if also == Also::Refresh {
        let next = copy_target(sandbox, &format!("{name}-next"));
        let next_slot = copy.slot_for(&next.dataset).unwrap();
        assert_ne!(next_slot, slot);
        let summary = copy.run(&next, &cancel).await.unwrap();
        assert_eq!(summary.slot.as_deref(), Some(next_slot.as_str()));
        source.sql("postgres", &format!("INSERT INTO marks VALUES ('{name}-next')")).await;
        let newer = Standby::start(sandbox, &search, &next.data_dir, &format!("{name}-next")).await;
        standby.wait_for(&format!("{name}-next")).await;
        newer.wait_for(&format!("{name}-next")).await;
        newer.stop().await;
        assert!(copy.drop_slot(&next_slot, &cancel).await.unwrap());
        assert!(copy.slot_exists(&slot, &cancel).await.unwrap(), "the older slot stays");
    }
    standby.stop().await;

    assert!(copy.drop_slot(&slot, &cancel).await.unwrap());
    assert!(!copy.slot_exists(&slot, &cancel).await.unwrap(), "the slot is gone");
    assert!(!copy.drop_slot(&slot, &cancel).await.unwrap(), "dropping again is a no-op");
}

/// pg_basebackup from a replica (`replica`, a standby of the source): the slot lives on the
/// replica, and the copy streams from it in cascade.
async fn replica_case(sandbox: &Sandbox, source: &SourceDb, replica: &Standby, name: &str) {
    let hba = replica.data_dir().join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("host replication all 127.0.0.1/32 scram-sha-256\n");
    std::fs::write(&hba, text).unwrap();
    replica.client().await.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let mut config = RetrievalConfig {
        source: Some(retrieval::SourceConfig {
            host: Some("127.0.0.1".into()),
            port: replica.port,
            username: crate::support::SOURCE_USER.into(),
            password_env: Some(crate::support::PASSWORD_ENV.into()),
            ..retrieval::SourceConfig::default()
        }),
        ..RetrievalConfig::default()
    };
    config.physical = Some(PhysicalConfig::default());
    let search = BinarySearch::default();
    let copy = InitialCopy::new(config, search.clone(), os_user()).unwrap();
    let cancel = CancellationToken::new();
    let target = copy_target(sandbox, &format!("{name}-cascade"));
    let summary = copy.run(&target, &cancel).await.unwrap();
    let slot = summary.slot.unwrap();
    assert!(copy.slot_exists(&slot, &cancel).await.unwrap(), "the slot is on the replica");
    let cascaded =
        Standby::start(sandbox, &search, &target.data_dir, &format!("{name}-cascade")).await;
    // Committed on the source, replayed by the replica, streamed on to the cascaded copy.
    source.sql("postgres", &format!("INSERT INTO marks VALUES ('{name}-cascade')")).await;
    cascaded.wait_for(&format!("{name}-cascade")).await;
    cascaded.stop().await;
    assert!(copy.drop_slot(&slot, &cancel).await.unwrap());
}

/// The custom tool driving the major's own pg_basebackup through the `PG*` variables.
async fn custom_case(sandbox: &Sandbox, source: &SourceDb) {
    let search = BinarySearch::default();
    let tool = search.locate(source.major).unwrap().tool("pg_basebackup").unwrap();
    let mut physical = PhysicalConfig { tool: PhysicalTool::Custom, ..PhysicalConfig::default() };
    physical.custom.command =
        format!("{} -X stream --checkpoint=fast -D \"$PGDATA\"", tool.display());
    // A command that finds nothing, so the standby falls back to streaming; it must land.
    physical.custom.restore_command = Some("/bin/false %f %p".into());
    let copy = InitialCopy::new(physical_config(Some(source), physical), search.clone(), os_user())
        .unwrap();
    assert_eq!(copy.slot_for("data_custom"), None, "only pg_basebackup makes slots");
    let target = copy_target(sandbox, "custom");
    let recorder = record(&copy);
    let summary = copy.run(&target, &CancellationToken::new()).await.unwrap();
    assert_progress(&recorder.await.unwrap(), summary.bytes);
    let settings: std::collections::BTreeMap<_, _> =
        summary.standby_settings.iter().cloned().collect();
    assert_eq!(settings["restore_command"], "/bin/false %f %p");
    assert!(!settings.contains_key("primary_slot_name"));

    source.sql("postgres", "INSERT INTO marks VALUES ('custom-after')").await;
    let standby = Standby::start(sandbox, &search, &target.data_dir, "custom").await;
    standby.wait_for("custom-after").await;
    standby.stop().await;
}

async fn source_for(sandbox: &Sandbox, number: u8) -> SourceDb {
    let source = SourceDb::start(sandbox, number).await;
    prepare_source(&source, sandbox).await;
    source
}

#[tokio::test(flavor = "multi_thread")]
async fn physical_pg_basebackup_and_custom_from_16() {
    let sandbox = Sandbox::new();
    let source = source_for(&sandbox, 16).await;
    basebackup_case(&sandbox, &source, "bb16", Also::Refresh).await;
    custom_case(&sandbox, &source).await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn physical_pg_basebackup_from_17_and_from_its_replica() {
    let sandbox = Sandbox::new();
    let source = source_for(&sandbox, 17).await;
    basebackup_case(&sandbox, &source, "bb17", Also::FromReplica).await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn physical_pg_basebackup_from_14() {
    let sandbox = Sandbox::new();
    let source = source_for(&sandbox, 14).await;
    basebackup_case(&sandbox, &source, "bb14", Also::Nothing).await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn physical_copy_failures_cancellation_and_mode_checks() {
    let sandbox = Sandbox::new();
    let source = source_for(&sandbox, 17).await;
    let copy = InitialCopy::new(
        physical_config(Some(&source), PhysicalConfig::default()),
        BinarySearch::default(),
        os_user(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let target = copy_target(&sandbox, "busy");
    std::fs::create_dir_all(&target.data_dir).unwrap();
    std::fs::write(target.data_dir.join("leftover"), "x").unwrap();
    let error = copy.run(&target, &cancel).await.unwrap_err();
    assert!(error.to_string().contains("is not empty"), "{error}");

    // A slot left by an earlier attempt into the same dataset makes pg_basebackup fail; the
    // failed copy drops it, so that a retry can start.
    let target = copy_target(&sandbox, "refused");
    let slot = copy.slot_for(&target.dataset).unwrap();
    source.sql("postgres", &format!("SELECT pg_create_physical_replication_slot('{slot}')")).await;
    let error = copy.run(&target, &cancel).await.unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    assert!(!copy.slot_exists(&slot, &cancel).await.unwrap());

    // A password variable that is not set fails the run before anything starts.
    let mut config = physical_config(Some(&source), PhysicalConfig::default());
    config.source.as_mut().unwrap().password_env = Some("SCION_TEST_NO_SUCH_PASSWORD".into());
    let copy = InitialCopy::new(config, BinarySearch::default(), os_user()).unwrap();
    let error = copy.run(&copy_target(&sandbox, "nopass"), &cancel).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid retrieval configuration: source.password_env names SCION_TEST_NO_SUCH_PASSWORD, which is not set in the engine's environment"
    );
    assert_eq!(copy.subscribe().borrow().stage, Stage::Failed);

    // A cancelled copy stops its tool: a throttled pg_basebackup through the custom tool,
    // cancelled once the directory grows.
    let tool = BinarySearch::default().locate(major(17)).unwrap().tool("pg_basebackup").unwrap();
    let mut physical = PhysicalConfig { tool: PhysicalTool::Custom, ..PhysicalConfig::default() };
    physical.custom.command = format!("{} --max-rate=32k -D \"$PGDATA\"", tool.display());
    let copy = InitialCopy::new(
        physical_config(Some(&source), physical),
        BinarySearch::default(),
        os_user(),
    )
    .unwrap();
    let mut progress = copy.subscribe();
    let cancel = CancellationToken::new();
    let cancelling = cancel.clone();
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let copying = {
                let now = progress.borrow_and_update();
                now.stage == Stage::Copying && now.bytes_done > 0
            };
            if copying {
                cancelling.cancel();
                return;
            }
        }
    });
    let error = copy.run(&copy_target(&sandbox, "cancelled"), &cancel).await.unwrap_err();
    assert!(matches!(error, retrieval::Error::Cancelled { stage: Stage::Copying }), "{error}");
    let client = source.connect("postgres").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let senders: i64 =
            client.query_one("SELECT count(*) FROM pg_stat_replication", &[]).await.unwrap().get(0);
        if senders == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the cancelled copy still streams");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each mode has its own runner: neither takes the other's configuration.
    let physical = physical_config(Some(&source), PhysicalConfig::default());
    let error = retrieval::Pipeline::new(physical, BinarySearch::default(), os_user()).unwrap_err();
    assert!(error.to_string().contains("InitialCopy"), "{error}");
    let logical =
        RetrievalConfig { source: Some(source.source_config()), ..RetrievalConfig::default() };
    let error = InitialCopy::new(logical, BinarySearch::default(), os_user()).unwrap_err();
    assert!(error.to_string().contains("needs [retrieval.physical]"), "{error}");
    source.stop().await;
}

// Debian's PostgreSQL 15 ([`DEBIAN_15`]) is the one Debian's pgBackRest 2.45 supports.
#[tokio::test(flavor = "multi_thread")]
async fn physical_pgbackrest_restore_from_a_local_repository() {
    let sandbox = Sandbox::new();
    let user = os_user();
    for dir in ["repo", "pblog", "pblock"] {
        user.own_dir(&sandbox.path().join(dir), 0o700).unwrap();
    }
    let conf = sandbox.path().join("pgbackrest.conf");
    let source_dir = sandbox.path().join("source");
    let socket_dir = sandbox.path().join("pbsock");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={repo}\nlog-path={log}\nlock-path={lock}\nstart-fast=y\nrepo1-retention-full=1\n\
             [main]\npg1-path={data}\npg1-port={port}\npg1-socket-path={socket}\npg1-user=postgres\n",
            repo = sandbox.path().join("repo").display(),
            log = sandbox.path().join("pblog").display(),
            lock = sandbox.path().join("pblock").display(),
            data = source_dir.display(),
            socket = socket_dir.display(),
        ),
    )
    .unwrap();

    // The source: Debian's 15, archiving into the repository through archive-push.
    let search = debian_search();
    let binaries = search.locate(major(15)).unwrap();
    assert_eq!(binaries.bin_dir(), Path::new(DEBIAN_15));
    let mut options = postgres::InitDbOptions::new("postgres");
    options.sync = false;
    postgres::initdb(&binaries, &source_dir, &user, &options).await.unwrap();
    let mut settings = ServerSettings::new(port, &socket_dir);
    settings.listen_addresses = String::new();
    settings.extra = vec![
        ("archive_mode".into(), "on".into()),
        (
            "archive_command".into(),
            format!(
                "/usr/bin/pgbackrest --config={} --stanza=main archive-push %p",
                conf.display()
            ),
        ),
        ("fsync".into(), "off".into()),
    ];
    let mut spec = InstanceSpec::new(
        &source_dir,
        settings,
        "postgres",
        sandbox.path().join("pbsource.log"),
        user.clone(),
    );
    // pgBackRest connects as the postgres OS user over the socket.
    spec.hba.admin_os_users.push(user.name.clone());
    let source = Instance::start(&binaries, spec).await.unwrap();
    let mut config = tokio_postgres::Config::new();
    config.host_path(&socket_dir).port(port).user("postgres").dbname("postgres");
    let client = connect(config).await;
    client
        .batch_execute(
            "CREATE TABLE marks (label text PRIMARY KEY, at timestamptz DEFAULT now());
             INSERT INTO marks VALUES ('before');
             CREATE TABLE filler AS SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 40000) i;",
        )
        .await
        .unwrap();
    pgbackrest(&conf, &["stanza-create"]).await;
    pgbackrest(&conf, &["--type=full", "backup"]).await;

    let mut physical =
        PhysicalConfig { tool: PhysicalTool::PgBackRest, ..PhysicalConfig::default() };
    physical.pgbackrest.config = Some(conf.clone());
    let copy =
        InitialCopy::new(physical_config(None, physical), search.clone(), user.clone()).unwrap();
    let target = copy_target(&sandbox, "pbr");
    let recorder = record(&copy);
    let summary = copy.run(&target, &CancellationToken::new()).await.unwrap();
    let seen = recorder.await.unwrap();
    assert_progress(&seen, summary.bytes);
    assert!(
        seen.iter().any(|p| p.stage == Stage::Copying && p.bytes_total.is_some()),
        "the backup's size is the total from the start"
    );
    assert_eq!(summary.major, 15);
    assert_eq!(summary.slot, None);

    // A row committed after the backup reaches the standby through the archive only.
    // Committed before the switch (one batch would be one transaction), so the segment the
    // switch archives holds the commit.
    client.batch_execute("INSERT INTO marks VALUES ('pbr-after')").await.unwrap();
    client.batch_execute("SELECT pg_switch_wal()").await.unwrap();
    let standby = Standby::start(&sandbox, &search, &target.data_dir, "pbr").await;
    standby.wait_for("before").await;
    standby.wait_for("pbr-after").await;
    standby.stop().await;
    drop(client);
    source.stop(StopMode::Fast, STOP).await.unwrap();
}
