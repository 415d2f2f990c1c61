//! `scion rds-refresh`, DBLab's `rds-refresh`: refreshes a logical-mode engine from an RDS
//! snapshot through a temporary instance, so `pg_dump` never reads production. The newest
//! automated snapshot is restored into a tagged instance, the engine's source is pointed at it
//! (`POST /admin/config`) for one full refresh, and the instance is deleted. Orphans are
//! prevented in five layers: cleanup on every exit, on SIGINT/SIGTERM/SIGHUP, a state file
//! replayed by the next run, a scan for overdue tagged instances at every start, and
//! `rds-refresh cleanup --max-age`. An Aurora cluster (`source.type = "aurora-cluster"`) is
//! restored as a cluster with one instance. The AWS calls are `api` (ADR 0008), the decisions
//! `plan`.

mod api;
mod config;
mod plan;
mod sigv4;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use api_client::Client;
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::api::{Rds, Restore};
use self::config::{Config, State};
use crate::commands::Failure;

/// `scion rds-refresh [cleanup]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RdsRefreshArgs {
    #[command(subcommand)]
    pub command: Option<RdsCommand>,
    #[command(flatten)]
    pub common: Common,
    /// Check the configuration, AWS and the engine, print the plan and the cost estimate, and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not delete what an earlier run left before starting (the state file's instance and
    /// overdue tagged ones).
    #[arg(long)]
    pub skip_cleanup: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RdsCommand {
    /// Delete what earlier runs left: the state file's instance and every instance tagged
    /// ManagedBy=dblab-rds-refresh, AutoDelete=true that is overdue or older than --max-age
    /// (for cron).
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The configuration file (TOML; `${VAR}` is replaced from the environment).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the state file lives.
    #[arg(long, default_value = "./meta", value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Instances older than this are deleted [default: the configuration's clone.max_age].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,
    /// Only list what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// Crash points for the crash-injection tests, as the engine's: with
/// `SCION_FAILPOINT=<name>` the process aborts at that step, as a `kill -9` there would.
fn failpoint(name: &str) {
    static ACTIVE: OnceLock<Option<String>> = OnceLock::new();
    if ACTIVE.get_or_init(|| std::env::var("SCION_FAILPOINT").ok()).as_deref() == Some(name) {
        error!(failpoint = name, "crashing at the configured failpoint");
        std::process::abort();
    }
}

/// Runs `rds-refresh`.
pub(crate) async fn run(args: RdsRefreshArgs) -> Result<(), Failure> {
    crate::logging::init();
    let common = match &args.command {
        Some(RdsCommand::Cleanup(cleanup)) => &cleanup.common,
        None => &args.common,
    };
    let config = Config::load(&common.config).map_err(Failure::Usage)?;
    let credentials = credentials().map_err(Failure::Usage)?;
    let rds = Rds::new(&config.aws.region, config.aws.endpoint.as_deref(), credentials)
        .map_err(Failure::Usage)?;
    match args.command {
        Some(RdsCommand::Cleanup(cleanup)) => {
            let max_age = cleanup.max_age.unwrap_or(config.clone.max_age);
            let every = config.dblab.poll_interval;
            clean(&rds, &cleanup.common.state_dir, max_age, cleanup.dry_run, every)
                .await
                .map(drop)
                .map_err(Failure::Operation)
        }
        None => refresh(&config, &rds, &args).await.map_err(Failure::Operation),
    }
}

fn credentials() -> anyhow::Result<sigv4::Credentials> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    Ok(sigv4::Credentials {
        access_key_id: variable("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| anyhow!("AWS_ACCESS_KEY_ID is not set"))?,
        secret_access_key: variable("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| anyhow!("AWS_SECRET_ACCESS_KEY is not set"))?,
        session_token: variable("AWS_SESSION_TOKEN"),
    })
}

/// Deletes an instance this tool made: lifts its deletion protection, deletes it without a
/// final snapshot. `false` when it was already gone.
async fn delete_instance(rds: &Rds, id: &str) -> anyhow::Result<bool> {
    let Some(instance) = rds.instance(id).await? else { return Ok(false) };
    if instance.status == "deleting" {
        return Ok(true);
    }
    if instance.deletion_protection {
        rds.disable_deletion_protection(id).await?;
    }
    rds.delete(id).await.with_context(|| format!("delete the temporary instance {id}"))
}

/// Deletes an Aurora cluster this tool made: its members first (waiting until they are gone,
/// as RDS refuses to delete a cluster that has any), then the cluster. `false` when it was
/// already gone.
async fn delete_cluster(rds: &Rds, id: &str, every: Duration) -> anyhow::Result<bool> {
    let Some(cluster) = rds.cluster(id).await? else { return Ok(false) };
    if cluster.status == "deleting" {
        return Ok(true);
    }
    for member in &cluster.members {
        delete_instance(rds, member).await?;
    }
    for member in &cluster.members {
        while rds.instance(member).await?.is_some() {
            tokio::time::sleep(every).await;
        }
    }
    if cluster.deletion_protection {
        rds.disable_cluster_deletion_protection(id).await?;
    }
    rds.delete_cluster(id).await.with_context(|| format!("delete the temporary cluster {id}"))
}

/// Deletes the temporary instance or cluster `id`.
async fn delete_target(
    rds: &Rds,
    id: &str,
    cluster: bool,
    every: Duration,
) -> anyhow::Result<bool> {
    if cluster { delete_cluster(rds, id, every).await } else { delete_instance(rds, id).await }
}

/// Layers 3 and 4: the state file's instance, then every overdue tagged instance; returns the
/// identifiers of what it deleted (a new run must not reuse one: AWS keeps a deleted name
/// reserved for a while, and its automated snapshots keep it in their names).
async fn clean(
    rds: &Rds,
    state_dir: &Path,
    max_age: Duration,
    dry_run: bool,
    every: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut deleted = Vec::new();
    if let Some(state) = State::read(state_dir)? {
        if dry_run {
            info!(clone_id = %state.clone_id, "would delete the instance of the state file");
        } else {
            match delete_target(rds, &state.clone_id, state.is_cluster, every).await? {
                true => {
                    info!(clone_id = %state.clone_id, "deleted the instance an earlier run left");
                    deleted.push(state.clone_id.clone());
                }
                false => {
                    info!(clone_id = %state.clone_id, "the state file's instance is gone already")
                }
            }
            State::clear(state_dir)?;
        }
    }
    let now = Utc::now();
    for instance in rds.instances().await.context("list the instances")? {
        let Some(why) = plan::orphan(&instance, now, max_age) else { continue };
        if dry_run {
            info!(id = %instance.id, ?why, "would delete an orphaned temporary instance");
            continue;
        }
        delete_instance(rds, &instance.id).await?;
        warn!(id = %instance.id, ?why, "deleted an orphaned temporary instance");
        deleted.push(instance.id);
    }
    for cluster in rds.clusters().await.context("list the clusters")? {
        let Some(why) = plan::orphan_cluster(&cluster, now, max_age) else { continue };
        if dry_run {
            info!(id = %cluster.id, ?why, "would delete an orphaned temporary cluster");
            continue;
        }
        delete_cluster(rds, &cluster.id, every).await?;
        warn!(id = %cluster.id, ?why, "deleted an orphaned temporary cluster");
        deleted.push(cluster.id);
    }
    Ok(deleted)
}

async fn refresh(config: &Config, rds: &Rds, args: &RdsRefreshArgs) -> anyhow::Result<()> {
    let state_dir = &args.common.state_dir;
    let deleted = if !args.skip_cleanup && !args.dry_run {
        clean(rds, state_dir, config.clone.max_age, false, config.dblab.poll_interval)
            .await
            .context("clean up earlier runs")?
    } else {
        Vec::new()
    };
    let tls = if config.dblab.insecure {
        api_client::Tls::AcceptInvalid
    } else {
        api_client::Tls::Verify
    };
    let engine =
        Client::with_tls(&config.dblab.api_endpoint, Some(config.dblab.token.clone()), tls)?;
    engine.healthz().await.context("reach the engine")?;
    let status = engine.status().await.context("read the engine's status")?;
    let retrieval = status.retrieving.status.as_str();
    if plan::is_busy(retrieval) {
        bail!("the engine's retrieval is {retrieval}; try again once it is done");
    }
    let is_cluster = config.source.kind == "aurora-cluster";
    let source_id = &config.source.identifier;
    let exists = if is_cluster {
        rds.cluster(source_id).await?.is_some()
    } else {
        rds.instance(source_id).await?.is_some()
    };
    if !exists {
        bail!("no RDS {} {source_id}", if is_cluster { "cluster" } else { "instance" });
    }
    let snapshot = match &config.source.snapshot_identifier {
        Some(id) => {
            let found =
                if is_cluster { rds.cluster_snapshot(id).await? } else { rds.snapshot(id).await? };
            found.ok_or_else(|| anyhow!("no snapshot {id}"))?
        }
        None => {
            let snapshots = if is_cluster {
                rds.cluster_snapshots(source_id, "automated").await?
            } else {
                rds.snapshots(source_id, "automated").await?
            };
            plan::latest_automated(&snapshots)
                .cloned()
                .ok_or_else(|| anyhow!("{source_id} has no available automated snapshot"))?
        }
    };
    let now = Utc::now();
    let clone_id = plan::clone_id(now, &deleted);
    println_out(&format!(
        "refresh plan: restore snapshot {} of {} into {clone_id} ({}), dump it into the engine \
         at {}, delete it",
        snapshot.id, source_id, config.clone.instance_class, config.dblab.api_endpoint
    ));
    println_out(&plan::cost_estimate(&config.clone.instance_class, config.dblab.timeout));
    if args.dry_run {
        println_out("dry run: nothing was changed");
        return Ok(());
    }

    // Layer 2: a signal cancels the work below, and the cleanup after it still runs.
    let stop = CancellationToken::new();
    tokio::spawn(crate::signals::stop_on_signal(stop.clone(), true));
    // Layer 3: the state file names the instance before it exists.
    let state = State {
        clone_id: clone_id.clone(),
        is_cluster,
        aws_region: config.aws.region.clone(),
        created_at: now,
        delete_after: plan::delete_after(now, config.clone.max_age),
        source_id: source_id.clone(),
    };
    state.write(state_dir)?;
    failpoint("rds.state_written");
    let outcome = tokio::select! {
        outcome = with_instance(config, rds, &engine, &clone_id, &snapshot) => outcome,
        () = stop.cancelled() => Err(anyhow!("stopped by a signal")),
    };
    // Layer 1: whatever happened above, the instance goes.
    let every = config.dblab.poll_interval;
    let deletion = delete_target(rds, &clone_id, is_cluster, every);
    let cleanup = tokio::time::timeout(Duration::from_secs(600), deletion).await;
    match cleanup {
        Ok(Ok(_)) => {
            State::clear(state_dir)?;
            info!(%clone_id, "deleted the temporary instance");
        }
        Ok(Err(error)) => {
            error!("failed to {error:#}; the next run or `rds-refresh cleanup` deletes it")
        }
        Err(_) => {
            error!(%clone_id, "deleting the temporary instance timed out; the next run or `rds-refresh cleanup` deletes it")
        }
    }
    outcome
}

async fn with_instance(
    config: &Config,
    rds: &Rds,
    engine: &Client,
    clone_id: &str,
    snapshot: &api::Snapshot,
) -> anyhow::Result<()> {
    let restore = Restore {
        id: clone_id.to_owned(),
        snapshot: snapshot.id.clone(),
        class: config.clone.instance_class.clone(),
        port: config.clone.port,
        subnet_group: config.clone.subnet_group.clone(),
        security_groups: config.clone.security_groups.clone(),
        publicly_accessible: config.clone.publicly_accessible,
        iam_auth: config.clone.enable_iam_auth,
        parameter_group: config.clone.parameter_group.clone(),
        option_group: config.clone.option_group.clone(),
        storage_type: config.clone.storage_type.clone(),
        deletion_protection: config.clone.deletion_protection,
        tags: plan::clone_tags(&config.clone.tags, Utc::now(), config.clone.max_age),
    };
    let every = config.dblab.poll_interval;
    let (address, port) = if config.source.kind == "aurora-cluster" {
        let engine_name = &snapshot.engine;
        let group = config.clone.cluster_parameter_group.as_deref();
        rds.restore_cluster(&restore, engine_name, group).await.context("restore the snapshot")?;
        info!(%clone_id, snapshot = %snapshot.id, "restoring the snapshot into a temporary cluster");
        failpoint("rds.instance_created");
        wait_cluster_available(rds, clone_id, every).await?;
        let member = format!("{clone_id}-instance");
        rds.create_member(&restore, engine_name, &member)
            .await
            .context("add the cluster's instance")?;
        wait_available(rds, &member, every).await?;
        let cluster = wait_cluster_available(rds, clone_id, every).await?;
        (cluster.endpoint, cluster.port)
    } else {
        rds.restore(&restore).await.context("restore the snapshot")?;
        info!(%clone_id, snapshot = %snapshot.id, "restoring the snapshot into a temporary instance");
        failpoint("rds.instance_created");
        let instance = wait_available(rds, clone_id, every).await?;
        (instance.address, instance.port)
    };
    failpoint("rds.instance_available");
    let host = config
        .clone
        .connect_host
        .clone()
        .or(address)
        .ok_or_else(|| anyhow!("{clone_id} has no endpoint address"))?;
    let port = port.ok_or_else(|| anyhow!("{clone_id} has no endpoint port"))?;
    let mut projection = json!({"retrieval": {"spec": {"logicalDump": {"options": {"source": {"connection": {
        "host": host, "port": port, "dbname": config.source.db_name,
        "username": config.source.username, "password": config.source.password,
    }}}}}}});
    // DBLab's parallelism: half the instance's vCPUs dump, every local CPU restores.
    let spec = &mut projection["retrieval"]["spec"];
    if let Some(jobs) = plan::dump_jobs(&config.clone.instance_class) {
        spec["logicalDump"]["options"]["parallelJobs"] = json!(jobs);
    }
    if let Ok(cpus) = std::thread::available_parallelism() {
        spec["logicalRestore"] = json!({"options": {"parallelJobs": cpus.get()}});
    }
    engine.update_config(&projection).await.context("point the engine's source at the instance")?;
    info!(%host, port, "the engine's source is the temporary instance");
    failpoint("rds.config_applied");
    engine.full_refresh().await.context("start a full refresh")?;
    info!("full refresh started");
    failpoint("rds.refresh_started");
    wait_refresh(engine, config.dblab.poll_interval, config.dblab.timeout).await?;
    info!("full refresh finished");
    failpoint("rds.refresh_finished");
    Ok(())
}

async fn wait_available(rds: &Rds, id: &str, every: Duration) -> anyhow::Result<api::Instance> {
    let started = Instant::now();
    loop {
        let instance = rds.instance(id).await?.ok_or_else(|| anyhow!("{id} disappeared"))?;
        match instance.status.as_str() {
            "available" => return Ok(instance),
            "failed" | "incompatible-restore" | "incompatible-parameters" | "deleting" => {
                bail!("{id} is {}", instance.status)
            }
            _ if started.elapsed() > Duration::from_secs(2 * 3600) => {
                bail!("{id} was not available after 2 h (it is {})", instance.status)
            }
            _ => tokio::time::sleep(every).await,
        }
    }
}

async fn wait_cluster_available(
    rds: &Rds,
    id: &str,
    every: Duration,
) -> anyhow::Result<api::Cluster> {
    let started = Instant::now();
    loop {
        let cluster = rds.cluster(id).await?.ok_or_else(|| anyhow!("{id} disappeared"))?;
        match cluster.status.as_str() {
            "available" => return Ok(cluster),
            "failed" | "inaccessible-encryption-credentials" | "deleting" => {
                bail!("{id} is {}", cluster.status)
            }
            _ if started.elapsed() > Duration::from_secs(2 * 3600) => {
                bail!("{id} was not available after 2 h (it is {})", cluster.status)
            }
            _ => tokio::time::sleep(every).await,
        }
    }
}

async fn wait_refresh(engine: &Client, every: Duration, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut seen_busy = false;
    loop {
        let status = engine.status().await.context("read the engine's status")?;
        let retrieving = &status.retrieving;
        let alert = retrieving
            .alerts
            .get(&api_types::AlertType::RefreshFailed)
            .map(|alert| alert.message.as_str());
        match plan::progress(retrieving.status.as_str(), seen_busy, alert) {
            plan::Progress::Finished => return Ok(()),
            plan::Progress::Failed(message) => bail!("the refresh failed: {message}"),
            plan::Progress::Stopped => bail!("the engine went idle without finishing the refresh"),
            plan::Progress::Waiting => {}
        }
        seen_busy |= plan::is_busy(retrieving.status.as_str());
        if started.elapsed() > timeout {
            bail!("the refresh did not finish within {}", humantime::format_duration(timeout));
        }
        tokio::time::sleep(every).await;
    }
}

fn println_out(line: &str) {
    crate::commands::emit(&format!("{line}\n"));
}
