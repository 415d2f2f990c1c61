//! Physical mode measured through a real `scion-server` (issue #12): freshness from a commit
//! on the source to a clone that sees it (streaming and archive-only sync instances), the time
//! to cut a snapshot from the running standby and the standby's lag meanwhile, snapshots at a
//! point in time against the WAL they replay, and Scion's initial copy against a bare
//! `pg_basebackup` of the same source in the same run.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api_types::{CreateSnapshotRequest, RecoveryTargetRequest, RetrievalStatus, Retrieving};
use exec::Cmd;
use postgres::OsUser;
use test_support::primary::{ADMIN, Primary, REPLICATOR};

use crate::cluster::{Backend, Pool};
use crate::report::{Report, ms};
use crate::scion::{self, CLONE_PASSWORD, CLONE_USER};
use crate::server::{Extra, Server, TOKEN};
use crate::stats::{Summary, millis};
use crate::{SizeCtx, pool_size, progress, scale_for, size_label, sync_all};

/// How long a copy, a refresh or a promotion may take on a busy machine at 10 GB.
const LONG: Duration = Duration::from_secs(3 * 3600);
/// How long a commit may take to reach a clone before the run gives up.
const FRESH_TIMEOUT: Duration = Duration::from_secs(600);
/// The slot base name of the benchmark's servers.
const SLOT: &str = "scion_bench";
/// The replication role's password: the source asks for it on every loopback login of that
/// role, as a production source would, so Scion's copy, its probe and the bare copy all pay
/// the same SCRAM exchange.
const SOURCE_PASSWORD: &str = "Repl-bench-pass!";
/// The variable the server reads it from (`[retrieval.source] password_env`).
const SOURCE_PASSWORD_ENV: &str = "SCION_BENCH_SOURCE_PASSWORD";
/// Rows of `pgbench_accounts` per pgbench scale unit.
const ROWS_PER_SCALE: u64 = 100_000;
/// Rows each WAL-generating update touches.
const UPDATE_CHUNK: u64 = 5_000;
/// The write load's idle window before the first timed cut, and its pause after each.
const LAG_BASELINE: Duration = Duration::from_secs(3);
const LAG_PAUSE: Duration = Duration::from_secs(1);
const LAG_SAMPLE: Duration = Duration::from_millis(100);

/// One freshness sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fresh {
    /// From the commit's acknowledgement to a clone that returned the row, ms.
    pub(crate) visible_ms: f64,
    /// `POST /snapshot` calls it took (the earlier ones found nothing new).
    pub(crate) cuts: u32,
}

/// One point-in-time sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PitrPoint {
    /// WAL between the kept standby snapshot's moment and the target, bytes.
    pub(crate) wal_bytes: u64,
    /// `POST /snapshot` with the target, ms.
    pub(crate) snapshot_ms: f64,
    /// The clone of that snapshot, ready, ms.
    pub(crate) clone_ms: f64,
}

/// The sync instance's lag as the source sees it, sampled while no cut ran and during cuts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lag {
    /// `pg_current_wal_lsn() - replay_lsn`, bytes.
    pub(crate) idle_bytes: Vec<f64>,
    pub(crate) cut_bytes: Vec<f64>,
}

/// Everything measured at one source size.
#[derive(Debug, Clone)]
pub(crate) struct PhysicalResult {
    pub(crate) size: u64,
    pub(crate) scale: u32,
    pub(crate) database_bytes: u64,
    pub(crate) load_seconds: f64,
    /// The bare `pg_basebackup` and Scion's initial copy (stage `copying`), ms.
    pub(crate) copy_raw: Vec<f64>,
    pub(crate) copy_scion: Vec<f64>,
    pub(crate) fresh_streaming: Vec<Fresh>,
    pub(crate) fresh_archive: Vec<Fresh>,
    /// `POST /snapshot` under a write load, ms.
    pub(crate) cuts: Vec<f64>,
    pub(crate) lag: Lag,
    pub(crate) pitr: Vec<PitrPoint>,
    pub(crate) archive_timeout: u32,
}

/// The physical benchmarks at `ctx.size`: a source primary archiving into a local directory,
/// loaded by pgbench, then a streaming sync instance and an archive-only one, each a
/// `scion-server` of its own on a btrfs pool of its own.
pub(crate) async fn run_size(ctx: &SizeCtx<'_>, report: &mut Report) -> Result<()> {
    let args = ctx.args;
    let scale = scale_for(ctx.size);
    let archive = ctx.dir.join("archive");
    let user = OsUser::lookup("postgres")?;
    std::fs::create_dir(&archive)?;
    nix::unistd::chown(&archive, Some(user.uid.into()), Some(user.gid.into()))?;
    progress(&format!(
        "physical {}: source PostgreSQL {}, pgbench -i -s {scale}",
        size_label(ctx.size),
        args.major
    ));
    let mut source = Primary::start_archiving(args.major, &archive).await;
    source.require_password(SOURCE_PASSWORD).await;
    let started = Instant::now();
    let database_bytes = load(&source, scale).await?;
    let mut result = PhysicalResult {
        size: ctx.size,
        scale,
        database_bytes,
        load_seconds: started.elapsed().as_secs_f64(),
        copy_raw: Vec::new(),
        copy_scion: Vec::new(),
        fresh_streaming: Vec::new(),
        fresh_archive: Vec::new(),
        cuts: Vec::new(),
        lag: Lag::default(),
        pitr: Vec::new(),
        archive_timeout: args.archive_timeout,
    };
    progress(&format!("loaded {} MB in {:.0} s", database_bytes / 1_000_000, result.load_seconds));
    let outcome = async {
        streaming_phase(ctx, &source, &archive, &mut result).await?;
        archive_phase(ctx, &source, &archive, &mut result).await
    }
    .await;
    // What was measured is kept even when a later phase failed.
    report.physical.push(result);
    source.stop().await;
    outcome
}

/// `pgbench -i` into the source's `postgres` database (server-side generation), then a
/// checkpoint; returns the database's size. The load's WAL is not archived: every copy starts
/// after it, and at 10 GB it would double the disk the run needs.
async fn load(source: &Primary, scale: u32) -> Result<u64> {
    let instance = source.instance.as_ref().context("the source is not running")?;
    source.sql("ALTER SYSTEM SET max_wal_size = '4GB'").await;
    source.sql("ALTER SYSTEM SET archive_command = '/bin/true'").await;
    source.sql("SELECT pg_reload_conf()").await;
    Cmd::new(source.binaries.tool("pgbench")?)
        .args(["-i", "-q", "-I", "dtGvp", "-s", &scale.to_string(), "-U", ADMIN])
        .args(["-p", &source.port.to_string()])
        .arg("-h")
        .arg(&instance.spec().settings.socket_dir)
        .arg("postgres")
        .timeout(LONG)
        .run()
        .await
        .context("pgbench -i on the source")?;
    // The default max_wal_size again, so the checkpoint removes the load's WAL.
    source.sql("ALTER SYSTEM RESET max_wal_size").await;
    source.sql("SELECT pg_reload_conf()").await;
    source.sql("CHECKPOINT").await;
    source.sql("ALTER SYSTEM RESET archive_command").await;
    source.sql("SELECT pg_reload_conf()").await;
    // The archiver rereads its command at once; from here on every segment reaches the archive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    source.archive_current_segment().await;
    let row = source.connect().await.query_one("SELECT pg_database_size('postgres')", &[]).await?;
    Ok(u64::try_from(row.get::<_, i64>(0))?)
}

/// A TOML basic string (the paths and commands here are ASCII).
fn toml_string(text: &str) -> String {
    format!("{text:?}")
}

/// The sections every physical server shares: a snapshot limit that keeps every snapshot the
/// run makes (retention would take the kept standby snapshots the points in time start from)
/// and the sync instance, checked often so `/status` follows it closely.
fn common_config() -> &'static str {
    "[snapshots]\nretention_limit = 1000\n\n"
}

const SYNC_CONFIG: &str =
    "\n[retrieval.physical.sync]\nenabled = true\nhealth_interval = \"250ms\"\n";

/// `pg_basebackup` with a slot, streaming from the source and restoring from the archive.
fn streaming_config(source: &Primary, archive: &Path) -> String {
    let archive_text = archive.display().to_string();
    format!(
        "{}[retrieval]\n[retrieval.source]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{REPLICATOR}\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\n\
         [retrieval.physical]\ntool = \"pg_basebackup\"\nslot = \"{SLOT}\"\n\
         restore_command = {}\nrestore_dirs = [{}]\n{SYNC_CONFIG}",
        common_config(),
        source.port,
        toml_string(&format!("cp {archive_text}/%f %p")),
        toml_string(&archive_text),
    )
}

/// The same copy run as a custom command without `[retrieval.source]`: the standby has no
/// `primary_conninfo` and follows the archive only.
fn archive_only_config(source: &Primary, archive: &Path) -> Result<String> {
    let archive_text = archive.display().to_string();
    let tool = source.binaries.tool("pg_basebackup")?;
    let command = format!(
        "{} -d 'host=127.0.0.1 port={} user={REPLICATOR} password={SOURCE_PASSWORD}' -X stream --checkpoint=fast -D \"$PGDATA\"",
        tool.display(),
        source.port
    );
    Ok(format!(
        "{}[retrieval]\n[retrieval.physical]\ntool = \"custom\"\nrestore_dirs = [{}]\n\n\
         [retrieval.physical.custom]\ncommand = {}\nrestore_command = {}\n{SYNC_CONFIG}",
        common_config(),
        toml_string(&archive_text),
        toml_string(&command),
        toml_string(&format!("cp {archive_text}/%f %p")),
    ))
}

/// Starts a server with `config` on a new btrfs pool and waits until its first copy, sync
/// instance and snapshot are done; returns it with the copy's time.
async fn start_server(
    ctx: &SizeCtx<'_>,
    pool: &Pool,
    name: &str,
    config: &str,
) -> Result<(Server, f64)> {
    let state = ctx.dir.join(format!("state-{name}"));
    let server = Server::start(
        ctx.server_bin,
        &state,
        &pool.image.backend_config(),
        ctx.api_port,
        ctx.clone_ports,
        0,
        Extra { config, secrets: &[(SOURCE_PASSWORD_ENV, SOURCE_PASSWORD)] },
    )
    .await?;
    match until_refreshed(&server).await {
        Ok(copy_ms) => Ok((server, copy_ms)),
        Err(error) => {
            let error = error.context(server.log_tail());
            server.stop().await;
            Err(error)
        }
    }
}

/// Polls `/instance/retrieval` until a refresh has copied and finished (its first snapshot
/// made); returns how long the stage `copying` lasted, ms (to the poll's 20 ms).
async fn until_refreshed(server: &Server) -> Result<f64> {
    let http = reqwest::Client::new();
    let url = format!("{}/instance/retrieval", server.url);
    let deadline = Instant::now() + LONG;
    let mut copying: Option<Instant> = None;
    let mut copy_ms = None;
    loop {
        let retrieving: Retrieving = http
            .get(&url)
            .header("Verification-Token", TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let stage = retrieving.progress.as_ref().map(|p| p.stage.as_str()).unwrap_or_default();
        match (stage, copying) {
            ("copying", None) => copying = Some(Instant::now()),
            (stage, Some(since)) if stage != "copying" && copy_ms.is_none() => {
                copy_ms = Some(millis(since));
            }
            _ => {}
        }
        if retrieving.status == RetrievalStatus::Failed {
            let why = retrieving.progress.and_then(|p| p.error).unwrap_or_default();
            bail!("the refresh failed: {why}");
        }
        if let Some(copy_ms) = copy_ms
            && retrieving.status == RetrievalStatus::Finished
            && !server.api.snapshots(None).await?.is_empty()
        {
            return Ok(copy_ms);
        }
        if Instant::now() > deadline {
            bail!("the refresh did not finish in {LONG:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `body` against a server started with `config` (its first copy's time given) on a new
/// btrfs pool of `pool_bytes`; then stops the server, tears the pool down (with the sync
/// instance and clones on it) and removes the server's state, whatever `body` returned.
async fn on_server<T>(
    ctx: &SizeCtx<'_>,
    name: &str,
    pool_bytes: u64,
    config: &str,
    warm_up: Option<&Primary>,
    body: impl AsyncFnOnce(&Server, &Pool, f64) -> Result<T>,
) -> Result<T> {
    let pool = Pool::create(ctx.dir, Backend::Btrfs, pool_bytes).await?;
    let outcome = async {
        if let Some(source) = warm_up {
            // Untimed: the first copy into a new pool also allocates the sparse image's blocks
            // and reads the source cold, which neither method should be charged for.
            progress("warm-up copy (untimed): bare pg_basebackup into the new pool");
            raw_basebackup(source, &pool.mountpoint().join("raw")).await?;
        }
        settle(&pool).await?;
        let (server, copy_ms) = start_server(ctx, &pool, name, config).await?;
        let measured = body(&server, &pool, copy_ms).await;
        let measured = measured.map_err(|error| error.context(server.log_tail()));
        server.stop().await;
        measured
    }
    .await;
    let teardown = pool.teardown().await;
    crate::server::keep_log(&ctx.dir.join(format!("state-{name}")), name);
    std::fs::remove_dir_all(ctx.dir.join(format!("state-{name}"))).ok();
    let value = outcome?;
    teardown?;
    Ok(value)
}

/// The streaming sync instance: the initial copies, freshness, cuts under load, points in time.
async fn streaming_phase(
    ctx: &SizeCtx<'_>,
    source: &Primary,
    archive: &Path,
    result: &mut PhysicalResult,
) -> Result<()> {
    let args = ctx.args;
    progress("scion-server with a streaming sync instance: its first refresh is a timed copy");
    let config = streaming_config(source, archive);
    let outcome = on_server(
        ctx,
        "streaming",
        // The golden copy, a refresh's new one beside it, and a bare copy.
        pool_size(ctx.size, 3),
        &config,
        Some(source),
        async |server: &Server, pool: &Pool, copy_ms: f64| {
            // Scion's copy (the server's first refresh), then a bare one, in turn.
            result.copy_scion.push(copy_ms);
            let raw_dir = pool.mountpoint().join("raw");
            for n in 0..args.copy_runs {
                settle(pool).await?;
                progress(&format!("initial copy {}: bare pg_basebackup", n + 1));
                result.copy_raw.push(raw_basebackup(source, &raw_dir).await?);
                if n + 1 < args.copy_runs {
                    settle(pool).await?;
                    progress(&format!("initial copy {}: POST /full-refresh", n + 2));
                    server.api.full_refresh().await?;
                    result.copy_scion.push(until_refreshed(server).await?);
                    drop_older_snapshots(server).await?;
                }
            }
            let api = long_client(server)?;
            progress(&format!("freshness, streaming: {} commits", args.physical_runs));
            result.fresh_streaming =
                freshness(server, &api, source, "streaming", args.physical_runs).await?;
            progress(&format!("{} snapshot cuts under a write load", args.physical_runs));
            let (cuts, lag) =
                cuts_under_load(&api, source, result.scale, args.physical_runs).await?;
            result.cuts = cuts;
            result.lag = lag;
            progress("points in time");
            result.pitr =
                points_in_time(server, &api, source, &args.pitr_wal, result.scale).await?;
            Ok(())
        },
    )
    .await;
    // The stopped standby's slot would keep the source's WAL for the rest of the run.
    drop_inactive_slots(source).await;
    outcome
}

/// The archive-only sync instance: freshness with the source's `archive_timeout`.
async fn archive_phase(
    ctx: &SizeCtx<'_>,
    source: &Primary,
    archive: &Path,
    result: &mut PhysicalResult,
) -> Result<()> {
    let args = ctx.args;
    source.sql(&format!("ALTER SYSTEM SET archive_timeout = '{}s'", args.archive_timeout)).await;
    source.sql("SELECT pg_reload_conf()").await;
    progress("scion-server with an archive-only sync instance");
    let config = archive_only_config(source, archive)?;
    result.fresh_archive = on_server(
        ctx,
        "archive",
        pool_size(ctx.size, 1),
        &config,
        None,
        async |server: &Server, _: &Pool, _| {
            let api = long_client(server)?;
            progress(&format!("freshness, archive only: {} commits", args.physical_runs));
            freshness(server, &api, source, "archive", args.physical_runs).await
        },
    )
    .await?;
    Ok(())
}

/// Lets the previous copy's writes and deletions finish before the next timed copy: `sync`,
/// then btrfs's cleaner, which drops a deleted subvolume's extents in the background (after a
/// refresh the old golden dataset goes, and its cleaning would otherwise land in the next copy).
async fn settle(pool: &Pool) -> Result<()> {
    sync_all().await?;
    Cmd::new("btrfs")
        .args(["subvolume", "sync"])
        .arg(pool.mountpoint())
        .timeout(LONG)
        .run()
        .await
        .context("btrfs subvolume sync")?;
    sync_all().await
}

/// Deletes every snapshot but the newest: their kept standby snapshots go with them, and with
/// the last of those the previous refresh's golden dataset, so refreshes at 10 GB do not pile
/// up copies on the disk.
async fn drop_older_snapshots(server: &Server) -> Result<()> {
    for snapshot in server.api.snapshots(None).await?.iter().skip(1) {
        server
            .api
            .delete_snapshot(&snapshot.id, false)
            .await
            .with_context(|| format!("delete snapshot {}", snapshot.id))?;
    }
    Ok(())
}

/// A client whose calls may wait as long as a promotion at 10 GB can take.
fn long_client(server: &Server) -> Result<api_client::Client> {
    Ok(api_client::Client::new(&server.url, Some(TOKEN.to_owned()))?.with_timeout(LONG))
}

/// `pg_basebackup` as Scion runs it (`retrieval::physical::basebackup`: stream WAL, create
/// a slot, fast checkpoint, progress), as the servers' OS user into `target` on the same pool;
/// then the slot is dropped and the copy removed. Returns the tool's time, ms.
async fn raw_basebackup(source: &Primary, target: &Path) -> Result<f64> {
    let user = OsUser::lookup("postgres")?;
    std::fs::create_dir(target)?;
    nix::unistd::chown(target, Some(user.uid.into()), Some(user.gid.into()))?;
    let slot = "bench_raw_copy";
    let started = Instant::now();
    Cmd::new(source.binaries.tool("pg_basebackup")?)
        .arg(format!("--dbname=host=127.0.0.1 port={} user={REPLICATOR}", source.port))
        .arg(format!("--pgdata={}", target.display()))
        .args(["--wal-method=stream", "--create-slot", &format!("--slot={slot}")])
        .args(["--checkpoint=fast", "--progress"])
        .user(user.uid, user.gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .secret_env("PGPASSWORD", SOURCE_PASSWORD)
        .timeout(LONG)
        .run()
        .await
        .context("pg_basebackup")?;
    let elapsed = millis(started);
    source.sql(&format!("SELECT pg_drop_replication_slot('{slot}')")).await;
    std::fs::remove_dir_all(target)?;
    Ok(elapsed)
}

async fn drop_inactive_slots(source: &Primary) {
    source
        .sql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active",
        )
        .await;
}

/// `POST /snapshot` (with `target`, or of the latest replayed state).
async fn cut(
    api: &api_client::Client,
    target: Option<RecoveryTargetRequest>,
) -> Result<api_types::Snapshot> {
    let request = CreateSnapshotRequest { recovery_target: target, ..Default::default() };
    api.create_snapshot(&request).await.context("POST /snapshot")
}

/// Rows of `facts` with `note` in a clone.
async fn count_note(clone: &scion::Timed, note: &str) -> Result<i64> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(clone.port)
        .user(CLONE_USER)
        .password(CLONE_PASSWORD)
        .dbname(&clone.db)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT count(*) FROM facts WHERE note = $1", &[&note]).await?;
    Ok(row.get(0))
}

/// `runs` commits, each followed by `POST /snapshot` back to back until one is new, and a
/// clone of it that returns the row: the floor of what a timetable adds its period to.
async fn freshness(
    server: &Server,
    api: &api_client::Client,
    source: &Primary,
    mode: &str,
    runs: usize,
) -> Result<Vec<Fresh>> {
    let mut last = server.api.snapshots(None).await?.first().map(|s| s.id.clone());
    let mut samples = Vec::with_capacity(runs);
    for n in 0..runs {
        let note = format!("fresh-{mode}-{n}");
        source.insert(&note).await;
        let committed = Instant::now();
        let mut cuts = 0;
        loop {
            let snapshot = cut(api, None).await?;
            cuts += 1;
            if last.as_deref() != Some(snapshot.id.as_str()) {
                last = Some(snapshot.id.clone());
                let id = format!("fresh{n}c{cuts}");
                let clone = scion::create_ready(server, &id, Some(&snapshot.id)).await?;
                let seen = count_note(&clone, &note).await?;
                let visible_ms = millis(committed);
                scion::destroy(server, &id).await?;
                if seen == 1 {
                    samples.push(Fresh { visible_ms, cuts });
                    break;
                }
            }
            if committed.elapsed() > FRESH_TIMEOUT {
                bail!("{note} reached no clone in {FRESH_TIMEOUT:?}");
            }
        }
    }
    Ok(samples)
}

/// Cuts `runs` snapshots while a writer updates `pgbench_accounts` row by row, sampling the
/// standby's lag on the source every 100 ms: first an idle window, then each cut followed by
/// a pause.
async fn cuts_under_load(
    api: &api_client::Client,
    source: &Primary,
    scale: u32,
    runs: usize,
) -> Result<(Vec<f64>, Lag)> {
    let stop = Arc::new(AtomicBool::new(false));
    let cutting = Arc::new(AtomicBool::new(false));
    let rows = u64::from(scale) * ROWS_PER_SCALE;
    let writer = {
        let client = source.connect().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut aid: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                aid = aid % rows + 1;
                let sql = format!(
                    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = {aid}"
                );
                client.batch_execute(&sql).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, tokio_postgres::Error>(())
        })
    };
    let sampler = {
        let client = source.connect().await;
        let (stop, cutting) = (stop.clone(), cutting.clone());
        tokio::spawn(async move {
            let mut lag = Lag::default();
            while !stop.load(Ordering::Relaxed) {
                let during = cutting.load(Ordering::Relaxed);
                let row = client
                    .query_one(
                        "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::float8 \
                         FROM pg_stat_replication",
                        &[],
                    )
                    .await?;
                if let Some(bytes) = row.get::<_, Option<f64>>(0) {
                    if during { lag.cut_bytes.push(bytes) } else { lag.idle_bytes.push(bytes) }
                }
                tokio::time::sleep(LAG_SAMPLE).await;
            }
            Ok::<_, tokio_postgres::Error>(lag)
        })
    };
    let timed = async {
        tokio::time::sleep(LAG_BASELINE).await;
        let mut cuts = Vec::with_capacity(runs);
        for _ in 0..runs {
            cutting.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let outcome = cut(api, None).await;
            cuts.push(millis(started));
            cutting.store(false, Ordering::Relaxed);
            outcome?;
            tokio::time::sleep(LAG_PAUSE).await;
        }
        Ok::<_, anyhow::Error>(cuts)
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await?.context("the write load")?;
    let lag = sampler.await?.context("sampling the lag")?;
    Ok((timed?, lag))
}

/// Waits until `/status` says the sync instance has replayed up to `lsn`.
async fn wait_replayed(server: &Server, lsn: u64) -> Result<()> {
    let deadline = Instant::now() + FRESH_TIMEOUT;
    loop {
        let status = server.api.status().await?;
        let replayed = status.synchronization.map(|sync| sync.last_replayed_lsn);
        if let Some(replayed) = replayed.filter(|text| !text.is_empty())
            && parse_lsn(&replayed)? >= lsn
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the sync instance did not replay up to the targets in {FRESH_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Parses an LSN as PostgreSQL prints it (`X/Y`).
fn parse_lsn(text: &str) -> Result<u64> {
    let (high, low) = text.split_once('/').with_context(|| format!("LSN {text:?}"))?;
    Ok((u64::from_str_radix(high, 16)? << 32) | u64::from_str_radix(low, 16)?)
}

/// A fresh snapshot (its standby snapshot kept), then WAL up to each of `marks` bytes past it
/// with a marker commit at each; once archived, each marker's LSN is snapshotted with a
/// recovery target and cloned, and the clone must hold that marker and not the next.
async fn points_in_time(
    server: &Server,
    api: &api_client::Client,
    source: &Primary,
    marks: &[u64],
    scale: u32,
) -> Result<Vec<PitrPoint>> {
    source.insert("pitr-base").await;
    let base = parse_lsn(&source.current_lsn().await)?;
    let before = server.api.snapshots(None).await?.first().map(|s| s.id.clone());
    let kept = cut(api, None).await?;
    if before.as_deref() == Some(kept.id.as_str()) {
        bail!("the base snapshot of the points in time was skipped");
    }
    let rows = u64::from(scale) * ROWS_PER_SCALE;
    let mut next_aid = 1;
    let mut targets = Vec::with_capacity(marks.len());
    for (k, &mark) in marks.iter().enumerate() {
        while parse_lsn(&source.current_lsn().await)?.saturating_sub(base) < mark {
            let last = (next_aid + UPDATE_CHUNK - 1).min(rows);
            source
                .sql(&format!(
                    "UPDATE pgbench_accounts SET abalance = abalance + 1 \
                     WHERE aid BETWEEN {next_aid} AND {last}"
                ))
                .await;
            next_aid = if last >= rows { 1 } else { last + 1 };
        }
        source.insert(&format!("pitr-{k}")).await;
        let lsn = source.current_lsn().await;
        targets.push((parse_lsn(&lsn)? - base, lsn));
    }
    source.insert(&format!("pitr-{}", marks.len())).await;
    source.archive_current_segment().await;
    // The engine refuses a target past the newest moment it knows the sync instance reached.
    if let Some((_, lsn)) = targets.last() {
        wait_replayed(server, parse_lsn(lsn)?).await?;
    }
    let mut points = Vec::with_capacity(targets.len());
    for (k, (wal_bytes, lsn)) in targets.into_iter().enumerate() {
        let started = Instant::now();
        let target = RecoveryTargetRequest { lsn: Some(lsn.clone()), ..Default::default() };
        let snapshot = cut(api, Some(target)).await.with_context(|| format!("at LSN {lsn}"))?;
        let snapshot_ms = millis(started);
        let id = format!("pitr{k}");
        let clone = scion::create_ready(server, &id, Some(&snapshot.id)).await?;
        let has = count_note(&clone, &format!("pitr-{k}")).await?;
        let has_next = count_note(&clone, &format!("pitr-{}", k + 1)).await?;
        scion::destroy(server, &id).await?;
        if has != 1 || has_next != 0 {
            bail!(
                "the snapshot at LSN {lsn} holds pitr-{k} {has}× and the next marker {has_next}×"
            );
        }
        api.delete_snapshot(&snapshot.id, false).await?;
        points.push(PitrPoint { wal_bytes, snapshot_ms, clone_ms: clone.ready_ms });
    }
    Ok(points)
}

/// The physical tables of the report.
pub(crate) fn render(results: &[PhysicalResult], out: &mut String) {
    out.push_str(
        "\n#### Initial copy\n\nScion's copy is the refresh's stage `copying` as `GET /instance/retrieval` shows it (polled every 20 ms: Scion's `pg_basebackup --wal-method=stream --create-slot --checkpoint=fast --progress` with its metering, into a new btrfs dataset); the bare copy is the same `pg_basebackup` command as the servers' OS user into a directory on the same pool. An untimed bare copy first warms the new pool and the source's cache; then the two alternate: Scion (the server's first start), bare, then `POST /full-refresh` and bare in turn, each after `sync` and btrfs's cleaner have finished the previous one's writes and deletions.\n\n",
    );
    out.push_str("| source database | method | runs | median | p95 | min | max | × bare (median) | in run order |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for result in results {
        let raw = Summary::of(&result.copy_raw);
        let scion = Summary::of(&result.copy_scion);
        for (label, summary, samples) in [
            ("bare `pg_basebackup`", raw, &result.copy_raw),
            ("Scion's initial copy", scion, &result.copy_scion),
        ] {
            let in_order: Vec<String> = samples.iter().map(|&sample| ms(sample)).collect();
            let _ = writeln!(
                out,
                "| {} | {label} | {} | {} | {} | {} | {} | {} | {} |",
                source_label(result),
                summary.n,
                ms(summary.median),
                ms(summary.p95),
                ms(summary.min),
                ms(summary.max),
                ratio(summary.median, raw.median),
                in_order.join(", "),
            );
        }
    }
    // Each Scion copy beside the bare copy that follows it: the machine's drift over the run
    // (the host disk's flush latency moves by tens of percent) cancels within a pair.
    for result in results {
        let pairs: Vec<f64> = result
            .copy_scion
            .iter()
            .zip(&result.copy_raw)
            .map(|(scion, raw)| scion / raw)
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let texts: Vec<String> = pairs.iter().map(|pair| format!("{pair:.2}×")).collect();
        let _ = writeln!(
            out,
            "\n{}: Scion ÷ bare, pair by pair in run order: {}; median **{:.2}×**.",
            source_label(result),
            texts.join(", "),
            Summary::of(&pairs).median,
        );
    }
    out.push_str(
        "\n#### Freshness\n\nFrom a commit's acknowledgement on the source to a clone that returns its row: `POST /snapshot` back to back until one is new (the earlier ones found no new commit and were skipped), then `POST /clone?wait` of that snapshot and a query. A snapshot timetable adds its period on top. Streaming: `pg_basebackup` tool, the standby streams through its slot (and restores from the archive). Archive only: a custom `pg_basebackup` command without `[retrieval.source]`, the standby only has `restore_command = 'cp <archive>/%f %p'`, the source's `archive_timeout` as shown, PostgreSQL's default `wal_retrieve_retry_interval` (5 s).\n\n",
    );
    out.push_str("| source database | sync instance | commits | median | p95 | min | max | `POST /snapshot` calls per commit (median / max) |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for result in results {
        let archive = format!("archive only, `archive_timeout = {}s`", result.archive_timeout);
        for (label, samples) in
            [("streaming", &result.fresh_streaming), (archive.as_str(), &result.fresh_archive)]
        {
            if samples.is_empty() {
                continue;
            }
            let visible: Vec<f64> = samples.iter().map(|s| s.visible_ms).collect();
            let cuts: Vec<f64> = samples.iter().map(|s| f64::from(s.cuts)).collect();
            let summary = Summary::of(&visible);
            let cuts = Summary::of(&cuts);
            let _ = writeln!(
                out,
                "| {} | {label} | {} | {} | {} | {} | {} | {:.0} / {:.0} |",
                source_label(result),
                summary.n,
                ms(summary.median),
                ms(summary.p95),
                ms(summary.min),
                ms(summary.max),
                cuts.median,
                cuts.max,
            );
        }
    }
    out.push_str(
        "\n#### Snapshot cut from the sync instance, and the sync instance's lag\n\n`POST /snapshot` (storage snapshot of the live standby, its clone, the promotion: replay to the end of the WAL it holds, `CHECKPOINT`, stop, the snapshot of the result) while a writer updates one `pgbench_accounts` row every 5 ms on the source. Lag: `pg_current_wal_lsn() - replay_lsn` of the standby's walsender on the source, sampled every 100 ms, during the cuts and outside them (3 s before the first cut, 1 s after each).\n\n",
    );
    out.push_str("| source database | cuts | median | p95 | min | max | lag outside cuts median / p95 / max | lag during cuts median / p95 / max |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for result in results {
        if result.cuts.is_empty() {
            continue;
        }
        let cuts = Summary::of(&result.cuts);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            source_label(result),
            cuts.n,
            ms(cuts.median),
            ms(cuts.p95),
            ms(cuts.min),
            ms(cuts.max),
            lag_cell(&result.lag.idle_bytes),
            lag_cell(&result.lag.cut_bytes),
        );
    }
    out.push_str(
        "\n#### A snapshot at a point in time\n\nA fresh snapshot keeps its standby snapshot; the source then writes WAL (`UPDATE`s of 5,000 `pgbench_accounts` rows at a time) up to each amount with a marker commit there, switches and archives the segment. Each marker's LSN goes to `POST /snapshot` with `recoveryTarget.lsn` (the newest kept standby snapshot before it is cloned and replayed from the archive to the target), then a clone of the result, which must hold that marker and not the next. The WAL column is the source's WAL between the kept snapshot and the target; the promotion also replays what lies before it back to the standby's last restartpoint.\n\n",
    );
    out.push_str("| source database | WAL after the kept standby snapshot | `POST /snapshot` at the LSN | clone of it, ready | together |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for result in results {
        for point in &result.pitr {
            let _ = writeln!(
                out,
                "| {} | {:.0} MB | {} | {} | {} |",
                source_label(result),
                point.wal_bytes as f64 / 1e6,
                ms(point.snapshot_ms),
                ms(point.clone_ms),
                ms(point.snapshot_ms + point.clone_ms),
            );
        }
    }
}

fn source_label(result: &PhysicalResult) -> String {
    format!(
        "{} (pgbench scale {}, asked {})",
        size_label(result.database_bytes),
        result.scale,
        size_label(result.size)
    )
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 { format!("{:.2}×", value / base) } else { "–".to_owned() }
}

fn lag_cell(bytes: &[f64]) -> String {
    if bytes.is_empty() {
        return "–".to_owned();
    }
    let summary = Summary::of(bytes);
    format!(
        "{} / {} / {}",
        lag_bytes(summary.median),
        lag_bytes(summary.p95),
        lag_bytes(summary.max)
    )
}

fn lag_bytes(bytes: f64) -> String {
    if bytes >= 1_048_576.0 {
        format!("{:.1} MiB", bytes / 1_048_576.0)
    } else {
        format!("{:.0} KiB", bytes / 1024.0)
    }
}
