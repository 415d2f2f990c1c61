//! `scion rds-refresh` against moto's RDS server (PyPI `moto[server]`, installed by
//! `scripts/setup` in /opt/scion/moto, started here on a loopback port and stopped by PID) and
//! a real `scion-server` in logical mode. moto runs no database, so the temporary instance's
//! endpoint is mapped to a local PostgreSQL holding the data: the restore asks for that
//! server's port, and `clone.connect_host` names its host. Crashes are injected at each step
//! (`SCION_FAILPOINT`), and the next run must leave no orphan.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::{Cmd, ExitInfo};
use serde_json::Value;
use test_support::free_port_range;

use crate::support::{
    PASSWORD, SOURCE_PASSWORD, SourceCluster, StopOnDrop, TOKEN, TestServer, scion_bin,
};

const MOTO: &str = "/opt/scion/moto/bin";
const DEADLINE: Duration = Duration::from_secs(120);

/// moto's server on a loopback port, stopped by PID when dropped.
struct Moto {
    _process: StopOnDrop,
    url: String,
}

impl Moto {
    async fn start(dir: &Path) -> Moto {
        let port = *free_port_range(1).start();
        let log = File::create(dir.join("moto.log")).expect("create moto's log");
        let daemon = Cmd::new(format!("{MOTO}/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .spawn_daemon(log)
            .expect("start moto_server (scripts/setup installs it)");
        let moto = Moto { _process: StopOnDrop(daemon), url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while reqwest::get(format!("{}/moto-api/", moto.url)).await.is_err() {
            assert!(started.elapsed() < DEADLINE, "moto did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// Runs boto3 code with a client `rds` on this server; returns what it prints as JSON.
    async fn boto(&self, code: &str) -> Value {
        let script = format!(
            "import boto3, json, datetime\n\
             rds = boto3.client('rds', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.url
        );
        let output = Cmd::new(format!("{MOTO}/python"))
            .args(["-c", &script])
            .output()
            .await
            .expect("run boto3 against moto");
        serde_json::from_str(output.stdout_text().trim()).expect("boto3 printed JSON")
    }

    /// The identifiers of every Aurora cluster.
    async fn clusters(&self) -> Vec<String> {
        let value = self
            .boto(
                "print(json.dumps(sorted(c['DBClusterIdentifier'] \
                 for c in rds.describe_db_clusters()['DBClusters'])))",
            )
            .await;
        serde_json::from_value(value).expect("a list of names")
    }

    /// The identifiers of every instance.
    async fn instances(&self) -> Vec<String> {
        let value = self
            .boto(
                "print(json.dumps(sorted(i['DBInstanceIdentifier'] \
                 for i in rds.describe_db_instances()['DBInstances'])))",
            )
            .await;
        serde_json::from_value(value).expect("a list of names")
    }
}

/// One `scion rds-refresh` run: exit code (or signal), stdout, stderr.
async fn rds_refresh(args: &[&str], env: &[(&str, &str)]) -> (ExitInfo, String, String) {
    let mut command = Cmd::new(scion_bin())
        .arg("rds-refresh")
        .args(args.iter().copied())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RDS_TEST_DB_PASSWORD", SOURCE_PASSWORD)
        .env("RDS_TEST_TOKEN", TOKEN);
    for (key, value) in env {
        command = command.env(*key, *value);
    }
    let output = command.output_any_status().await.expect("run scion rds-refresh");
    (output.status, output.stdout_text(), output.stderr_text())
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("rds-refresh.state")
}

async fn wait_engine_idle(server: &TestServer) {
    let started = Instant::now();
    loop {
        let status = server.raw("/status").await;
        let retrieval = status["retrieving"]["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(retrieval.as_str(), "refreshing" | "snapshotting" | "pending" | "renewed") {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "the engine is still {retrieval}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rows of `shop.orders` in a fresh clone of the newest snapshot.
async fn orders_in_a_clone(server: &TestServer, id: &str) -> i64 {
    let args = ["clone", "create", "--id", id, "--username", "u", "--password", PASSWORD];
    server.scion(&args).await.ok();
    let clone = server.client().clone_status(id).await.expect("read the clone");
    let conn =
        format!("host=127.0.0.1 port={} user=u dbname=shop password={PASSWORD}", clone.db.port);
    let (db, connection) =
        tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("connect to the clone");
    let connection = tokio::spawn(connection);
    let count: i64 = db.query_one("SELECT count(*) FROM orders", &[]).await.expect("count").get(0);
    drop(db);
    let _ = connection.await;
    server.scion(&["clone", "destroy", id]).await.ok();
    count
}

/// A source cluster holding `shop.orders` (3 rows), an engine whose configured source is
/// unreachable (so only rds-refresh's can fill its pool), moto with the instance `prod` and its
/// automated snapshot, and the configuration file of `rds-refresh`.
struct Setup {
    source: SourceCluster,
    server: TestServer,
    moto: Moto,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Setup {
    /// `kind`: `rds` (an instance `prod`) or `aurora-cluster` (a cluster `prod`).
    async fn new(kind: &str, retrieval_extra: &str) -> Setup {
        let source = SourceCluster::start(
            "CREATE TABLE orders (id int PRIMARY KEY); \
             INSERT INTO orders SELECT generate_series(1, 3);",
        )
        .await;
        let server = TestServer::start(&format!(
            "\n[retrieval]\ntarget_major = 16\nskip_start_refresh = true\n\
             [retrieval.source]\nhost = \"127.0.0.1\"\nport = 1\nusername = \"nobody\"\n\
             password_env = \"SCION_TEST_SOURCE_PASSWORD\"\n{retrieval_extra}"
        ))
        .await;
        let dir = server.scratch().to_owned();
        let moto = Moto::start(&dir).await;
        let create = if kind == "rds" {
            "rds.create_db_instance(DBInstanceIdentifier='prod', DBInstanceClass='db.m5.large', \
             Engine='postgres', MasterUsername='reader', MasterUserPassword='password1', \
             AllocatedStorage=20, BackupRetentionPeriod=7, DBName='shop')\nprint('{}')"
        } else {
            "rds.create_db_cluster(DBClusterIdentifier='prod', Engine='aurora-postgresql', \
             MasterUsername='reader', MasterUserPassword='password1', BackupRetentionPeriod=7, \
             DatabaseName='shop')\nprint('{}')"
        };
        moto.boto(create).await;
        let config = dir.join("rds-refresh.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\ntype = \"{kind}\"\nidentifier = \"prod\"\ndb_name = \"shop\"\n\
                 username = \"reader\"\npassword = \"${{RDS_TEST_DB_PASSWORD}}\"\n\n\
                 [clone]\ninstance_class = \"db.t3.medium\"\nport = {}\n\
                 connect_host = \"127.0.0.1\"\ndeletion_protection = true\n\
                 tags = {{ team = \"dba\" }}\n\n\
                 [dblab]\napi_endpoint = \"{}\"\ntoken = \"${{RDS_TEST_TOKEN}}\"\n\
                 poll_interval = \"200ms\"\ntimeout = \"10m\"\n\n\
                 [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n",
                source.port(),
                server.url,
                moto.url
            ),
        )
        .expect("write the configuration");
        Setup { source, server, moto, config, state_dir: dir.join("meta") }
    }

    /// `--config <file> --state-dir <dir>`.
    fn args(&self) -> Vec<&str> {
        let config = self.config.to_str().expect("a UTF-8 path");
        vec!["--config", config, "--state-dir", self.state_dir.to_str().expect("a UTF-8 path")]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_refresh_refreshes_through_a_temporary_instance_and_leaves_no_orphan() {
    let setup = Setup::new("rds", "").await;
    let Setup { server, moto, state_dir, .. } = &setup;
    let run_args = setup.args();

    // --dry-run: the plan and the cost estimate, nothing made.
    let mut args = run_args.clone();
    args.push("--dry-run");
    let (status, stdout, stderr) = rds_refresh(&args, &[]).await;
    assert_eq!(status, ExitInfo::Code(0), "{stderr}");
    assert!(stdout.contains("refresh plan: restore snapshot rds:prod-"), "{stdout}");
    assert!(stdout.contains("cost estimate: db.t3.medium at about $0.072/hour"), "{stdout}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert_eq!(moto.instances().await, ["prod"]);
    assert!(!state_file(state_dir).exists());

    // A crash at each step, then a run: the crash's instance is deleted and the refresh done.
    let steps = [
        "rds.state_written",
        "rds.instance_created",
        "rds.instance_available",
        "rds.config_applied",
        "rds.refresh_started",
    ];
    for (round, step) in steps.iter().enumerate() {
        let (status, _, stderr) = rds_refresh(&run_args, &[("SCION_FAILPOINT", step)]).await;
        assert_eq!(status, ExitInfo::Signal(6), "{step}: {stderr}");
        assert!(state_file(state_dir).exists(), "{step}: no state file");
        let left = moto.instances().await;
        if *step != "rds.state_written" {
            assert_eq!(left.len(), 2, "{step}: {left:?}");
        }
        wait_engine_idle(server).await;
        // Runs within one second would share the instance's name; the crash's must be gone
        // before the next one is made, which the startup cleanup does.
        let (status, stdout, stderr) = rds_refresh(&run_args, &[]).await;
        assert_eq!(status, ExitInfo::Code(0), "after {step}: {stdout}\n{stderr}");
        assert_eq!(moto.instances().await, ["prod"], "after {step}: {stderr}");
        assert!(!state_file(state_dir).exists(), "after {step}");
        assert_eq!(orders_in_a_clone(server, &format!("check{round}")).await, 3, "after {step}");
    }

    // DBLab's parallelism went with the source: half of db.t3.medium's 2 vCPUs dump.
    let projection = server.raw("/admin/config").await;
    let spec = &projection["retrieval"]["spec"];
    assert_eq!(spec["logicalDump"]["options"]["parallelJobs"], 1, "{projection}");
    assert!(spec["logicalRestore"]["options"]["parallelJobs"].as_u64() >= Some(1), "{projection}");
    assert_eq!(spec["logicalDump"]["options"]["source"]["connection"]["dbname"], "shop");

    // Layer 4 and `cleanup --max-age`: tagged instances that are overdue go, others stay.
    moto.boto(
        "snap = rds.describe_db_snapshots(DBInstanceIdentifier='prod')['DBSnapshots'][0]['DBSnapshotIdentifier']\n\
         def make(name, tags):\n\
         \x20   rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=name, \
         DBSnapshotIdentifier=snap, DBInstanceClass='db.t3.micro', \
         Tags=[{'Key': k, 'Value': v} for k, v in tags.items()])\n\
         managed = {'ManagedBy': 'dblab-rds-refresh', 'AutoDelete': 'true'}\n\
         make('dblab-refresh-overdue', dict(managed, DeleteAfter='2020-01-01T00:00:00Z'))\n\
         make('dblab-refresh-young', dict(managed, DeleteAfter='2099-01-01T00:00:00Z'))\n\
         make('dblab-refresh-kept', {'ManagedBy': 'dblab-rds-refresh', 'AutoDelete': 'false'})\n\
         make('someone-elses', {})\nprint('{}')",
    )
    .await;
    let mut cleanup = vec!["cleanup"];
    cleanup.extend(run_args.iter().copied());
    let (status, _, stderr) = rds_refresh(&cleanup, &[]).await;
    assert_eq!(status, ExitInfo::Code(0), "{stderr}");
    assert_eq!(
        moto.instances().await,
        ["dblab-refresh-kept", "dblab-refresh-young", "prod", "someone-elses"],
        "{stderr}"
    );
    cleanup.extend(["--max-age", "0s"]);
    let (status, _, stderr) = rds_refresh(&cleanup, &[]).await;
    assert_eq!(status, ExitInfo::Code(0), "{stderr}");
    assert_eq!(moto.instances().await, ["dblab-refresh-kept", "prod", "someone-elses"], "{stderr}");

    server.destroy_all_clones().await;
    setup.source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_refresh_deletes_its_instance_on_sigterm() {
    // The engine's preparation waits for a file, so the refresh runs until the test says.
    let scratch = test_support::TestDir::new("scion-rds-signal-");
    let release = scratch.path().join("release");
    let script = scratch.path().join("hold.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.1; done\n", release.display()),
    )
    .expect("write the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the script executable");
    let setup = Setup::new(
        "rds",
        &format!("[retrieval.preprocessing]\nscript = \"{}\"\n", script.display()),
    )
    .await;
    let log = setup.server.scratch().join("rds-refresh.log");
    let mut command = Cmd::new(scion_bin())
        .arg("rds-refresh")
        .args(setup.args())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RDS_TEST_DB_PASSWORD", SOURCE_PASSWORD)
        .env("RDS_TEST_TOKEN", TOKEN);
    command = command.env("RUST_LOG", "info");
    let mut process = command
        .spawn_daemon(File::create(&log).expect("create the log"))
        .expect("start scion rds-refresh");
    crate::support::wait_for_line(&process, &log, "full refresh started").await;
    assert_eq!(setup.moto.instances().await.len(), 2);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(process.pid()).expect("a PID"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
    let status = process.exited().await;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status, ExitInfo::Code(1), "{output}");
    assert!(output.contains("stopped by a signal"), "{output}");
    assert_eq!(setup.moto.instances().await, ["prod"], "{output}");
    assert!(!state_file(&setup.state_dir).exists(), "{output}");
    std::fs::write(&release, "").expect("release the refresh");
    wait_engine_idle(&setup.server).await;
    setup.source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_refresh_restores_an_aurora_cluster_and_leaves_no_orphan() {
    let setup = Setup::new("aurora-cluster", "").await;
    let Setup { server, moto, state_dir, .. } = &setup;
    let run_args = setup.args();

    // A crash once the cluster and its instance are up: both are left, and the state file.
    let (status, _, stderr) =
        rds_refresh(&run_args, &[("SCION_FAILPOINT", "rds.instance_available")]).await;
    assert_eq!(status, ExitInfo::Signal(6), "{stderr}");
    let state = std::fs::read_to_string(state_file(state_dir)).expect("the state file");
    assert!(state.contains("\"is_cluster\": true"), "{state}");
    assert_eq!(moto.clusters().await.len(), 2);
    assert_eq!(moto.instances().await.len(), 1);

    // The next run deletes them (the instance first), refreshes through a new cluster and
    // deletes that one too.
    let (status, stdout, stderr) = rds_refresh(&run_args, &[]).await;
    assert_eq!(status, ExitInfo::Code(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("refresh plan: restore snapshot rds:prod-"), "{stdout}");
    assert_eq!(moto.clusters().await, ["prod"], "{stderr}");
    assert!(moto.instances().await.is_empty(), "{stderr}");
    assert!(!state_file(state_dir).exists());
    assert_eq!(orders_in_a_clone(server, "aurora").await, 3);

    // Layer 4 for clusters: an overdue tagged cluster goes with its instance.
    moto.boto(
        "snap = rds.describe_db_cluster_snapshots(DBClusterIdentifier='prod')\
         ['DBClusterSnapshots'][0]['DBClusterSnapshotIdentifier']\n\
         tags = [{'Key': 'ManagedBy', 'Value': 'dblab-rds-refresh'}, \
         {'Key': 'AutoDelete', 'Value': 'true'}, {'Key': 'DeleteAfter', 'Value': '2020-01-01T00:00:00Z'}]\n\
         rds.restore_db_cluster_from_snapshot(DBClusterIdentifier='dblab-refresh-old', \
         SnapshotIdentifier=snap, Engine='aurora-postgresql', Tags=tags, DeletionProtection=True)\n\
         rds.create_db_instance(DBInstanceIdentifier='dblab-refresh-old-instance', \
         DBInstanceClass='db.r6g.large', Engine='aurora-postgresql', \
         DBClusterIdentifier='dblab-refresh-old', Tags=tags)\nprint('{}')",
    )
    .await;
    let mut cleanup = vec!["cleanup"];
    cleanup.extend(run_args.iter().copied());
    let (status, _, stderr) = rds_refresh(&cleanup, &[]).await;
    assert_eq!(status, ExitInfo::Code(0), "{stderr}");
    assert_eq!(moto.clusters().await, ["prod"], "{stderr}");
    assert!(moto.instances().await.is_empty(), "{stderr}");
    server.destroy_all_clones().await;
    setup.source.stop().await;
}
