//! `scion-bench`: the benchmark harness of issue #8. It runs a real `scion-server` on sparse
//! image pools (btrfs, ZFS on zfs-fuse) holding a pgbench-filled golden copy, and measures
//! clone-ready latency, the alternatives on the same data in the same run, clones per host and
//! API latency, then prints Markdown tables for BENCHMARKS.md. Must run as root.
//!
//! With `--physical` it measures physical mode instead (issue #12, `physical.rs`), with
//! `--runaway` per-clone limits (`runaway.rs`), with `--wake` scale to zero (`wake.rs`).
//!
//! `scripts/bench` builds it in release mode and runs it; see `--help` for the flags.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark reports on stdout")]

mod alternatives;
mod cluster;
mod physical;
mod report;
mod runaway;
mod scion;
mod server;
mod stats;
mod tls;
mod wake;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::alternatives::Method;
use crate::cluster::{Backend, Loaded, Pool};
use crate::report::{AltResult, Report, ScionRun, SizeResult};
use crate::server::Server;

/// Bytes of data directory per pgbench scale unit (scale 68 ≈ 1 GB, 680 ≈ 10 GB).
const BYTES_PER_SCALE: f64 = 14.7e6;

#[derive(Debug, Parser)]
#[command(name = "scion-bench", about = "Scion's benchmark harness (issue #8); run as root")]
struct Args {
    /// Source sizes, like 100MB,1GB,10GB (pgbench scale = size / 14.7 MB, at least 1).
    #[arg(long, value_delimiter = ',', default_value = "100MB,1GB,10GB", value_parser = parse_size)]
    sizes: Vec<u64>,
    /// Pools to run Scion on.
    #[arg(long, value_delimiter = ',', default_value = "btrfs,zfs", value_parser = parse_backend)]
    backends: Vec<Backend>,
    /// Timed clones per size and backend (each destroyed before the next).
    #[arg(long, default_value_t = 50)]
    clones: usize,
    /// Clones to keep running at once in the density phase (0: skip density and API latency).
    #[arg(long, default_value_t = 200)]
    density: usize,
    /// The size whose btrfs pool runs the density phase (default: the first size).
    #[arg(long, value_parser = parse_size)]
    density_size: Option<u64>,
    /// GET requests per endpoint in the API latency phase.
    #[arg(long, default_value_t = 200)]
    api_requests: usize,
    /// Runs per alternative.
    #[arg(long, default_value_t = 5)]
    alt_runs: usize,
    /// Runs per alternative that copies every byte, at sizes of at least --large-from.
    #[arg(long, default_value_t = 1)]
    alt_runs_large: usize,
    /// From this size on, copying alternatives run --alt-runs-large times.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    large_from: u64,
    /// Resets and destroys timed per kind (an untouched clone, one after deleting every row of
    /// `pgbench_accounts`), alternated, on each backend's server without a warm pool; 0 skips.
    #[arg(long, default_value_t = 10)]
    discard_runs: usize,
    /// Bursts of concurrent creates timed on each backend's server with the warm pool
    /// (--warm-pool), each sent once the pool is full; empty skips them.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    bursts: Vec<usize>,
    /// Skip the alternatives.
    #[arg(long)]
    no_alternatives: bool,
    /// Also time clones with a warm pool of this many clones (the server's `warm_pool_size`),
    /// waiting (untimed) before each create until the pool is full again; 0 skips it.
    #[arg(long, default_value_t = 2)]
    warm_pool: usize,
    /// ZFS runs only at sizes up to this (zfs-fuse is slow to fill).
    #[arg(long, value_parser = parse_size)]
    zfs_max_size: Option<u64>,
    /// The PostgreSQL major of the golden copy (Scion's clones) and of the alternatives that
    /// are not tied to 15.
    #[arg(long, default_value_t = 18)]
    major: u8,
    /// Where pool images and scratch files go (a temp dir inside it is removed at the end).
    #[arg(long, default_value = "/var/tmp/scion-bench")]
    dir: PathBuf,
    /// First of the consecutive loopback ports used (API, clones, local servers). The default
    /// lies above Linux's ephemeral range (32768–60999) and above the tests' ports.
    #[arg(long, default_value_t = 61000)]
    port_from: u16,
    /// The scion-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure physical mode (issue #12) at each of --sizes instead: freshness, snapshot cuts
    /// and the sync instance's lag, points in time, the initial copy against pg_basebackup.
    /// Of the other flags only --sizes, --major, --dir, --port-from, --server-bin and --out
    /// apply.
    #[arg(long)]
    physical: bool,
    /// Measure per-clone limits (issue #16) at the first of --sizes instead: ten clones running
    /// pgbench with no runaway clone, next to one under a CPU and memory limit, and next to
    /// one without limits. Of the other flags only --sizes, --major, --dir, --port-from,
    /// --server-bin, --out and --runaway-seconds apply.
    #[arg(long)]
    runaway: bool,
    /// Measure scale to zero (issue #16) at the first of --sizes instead: the first connection
    /// to a stopped clone (login to `SELECT 1`) against a cold create and a warm claim, with
    /// `GET /status` while the clones are stopped. Of the other flags only --sizes, --clones,
    /// --fleet, --collection-rounds, --api-requests, --major, --dir, --port-from, --server-bin and --out apply.
    #[arg(long)]
    wake: bool,
    /// Wake: also make this many more clones on one host, stop all but a tenth of them, and
    /// measure memory and disk per clone, `GET /status`, `GET /clones` and the background
    /// collection's rounds then (0 skips).
    #[arg(long, default_value_t = 0)]
    fleet: usize,
    /// Wake with --fleet: background collection rounds to time (one every 15 s).
    #[arg(long, default_value_t = 8)]
    collection_rounds: usize,
    /// Runaway: seconds of pgbench per scenario.
    #[arg(long, default_value_t = 20)]
    runaway_seconds: u64,
    /// Physical: freshness samples per sync mode, and snapshot cuts under write load.
    #[arg(long, default_value_t = 10)]
    physical_runs: usize,
    /// Physical: initial copies timed per method (Scion's and a bare pg_basebackup, alternated).
    #[arg(long, default_value_t = 3)]
    copy_runs: usize,
    /// Physical: the amounts of WAL after a kept standby snapshot at which points in time are
    /// snapshotted and cloned.
    #[arg(long, value_delimiter = ',', default_value = "16MB,128MB,512MB", value_parser = parse_size)]
    pitr_wal: Vec<u64>,
    /// Physical: the source's `archive_timeout` in seconds during the archive-only freshness
    /// runs (an idle source archives nothing without it).
    #[arg(long, default_value_t = 10)]
    archive_timeout: u32,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, unit) = upper
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((upper.as_str(), ""), |at| upper.split_at(at));
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size like 100MB"))?;
    let factor = match unit {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return Err(format!("{text:?}: the unit must be B, KB, MB or GB")),
    };
    Ok((number * factor) as u64)
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    match text.trim() {
        "btrfs" => Ok(Backend::Btrfs),
        "zfs" => Ok(Backend::Zfs),
        other => Err(format!("unknown backend {other:?} (btrfs, zfs)")),
    }
}

/// A size for the tables: 100 MB, 1 GB.
pub(crate) fn size_label(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{} GB", trim_float(bytes as f64 / 1e9))
    } else {
        format!("{} MB", trim_float(bytes as f64 / 1e6))
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

fn scale_for(bytes: u64) -> u32 {
    ((bytes as f64 / BYTES_PER_SCALE).round() as u32).max(1)
}

/// Ports handed out in order from `--port-from`.
struct Ports {
    next: u16,
}

impl Ports {
    fn take(&mut self, count: u16) -> Result<(u16, u16)> {
        let first = self.next;
        let last = first.checked_add(count.saturating_sub(1)).context("out of ports")?;
        self.next = last.checked_add(1).context("out of ports")?;
        Ok((first, last))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    match run(&args).await {
        Ok(report) => {
            let text = report.render();
            let failed = report.failure.is_some();
            println!("{text}");
            if let Some(out) = &args.out
                && let Err(error) = std::fs::write(out, &text)
            {
                eprintln!("scion-bench: write {}: {error}", out.display());
                std::process::exit(1);
            }
            if failed {
                std::process::exit(1);
            }
        }
        Err(error) => {
            eprintln!("scion-bench: {error:#}");
            std::process::exit(1);
        }
    }
}

fn progress(message: &str) {
    eprintln!("[bench {}] {message}", chrono::Local::now().format("%H:%M:%S"));
}

async fn run(args: &Args) -> Result<Report> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("run as root: the benchmark mounts pools and starts servers as user postgres");
    }
    if args.sizes.is_empty() || args.backends.is_empty() {
        bail!("give at least one size and one backend");
    }
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("scion-server"),
    };
    if !server_bin.is_file() {
        bail!("no scion-server at {} (build it, or pass --server-bin)", server_bin.display());
    }
    std::fs::create_dir_all(&args.dir)?;
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(&args.dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut report = Report::new(&args.dir, args.major);
    let density_size = args.density_size.unwrap_or(args.sizes[0]);
    let mut ports = Ports { next: args.port_from };
    let api_port = ports.take(1)?.0;
    let largest_burst = args.bursts.iter().max().map_or(0, |burst| burst + args.warm_pool);
    // A woken clone holds two ports: its own, and its server's private one.
    let clones = args.density.max(largest_burst).max(2 * args.clones + args.fleet).max(4) + 8;
    let clone_ports = ports.take(u16::try_from(clones)?)?;
    let local_port = ports.take(1)?.0;
    for (index, &size) in args.sizes.iter().enumerate() {
        let dir = work.path().join(format!("size-{index}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let ctx = SizeCtx {
            args,
            size,
            dir: &dir,
            server_bin: &server_bin,
            api_port,
            clone_ports,
            local_port,
            density: size == density_size && args.density > 0,
        };
        let result = if args.runaway {
            runaway::run(&ctx).await.map(|section| report.section = Some(section))
        } else if args.wake {
            wake::run(&ctx).await.map(|section| report.section = Some(section))
        } else if args.physical {
            physical::run_size(&ctx, &mut report).await
        } else {
            run_size(&ctx, &mut report).await
        };
        std::fs::remove_dir_all(&dir).ok();
        if let Err(error) = result {
            // Keep what the earlier sizes measured: a long run should not be lost to one failure.
            progress(&format!("failed: {error:#}"));
            report.failure =
                Some(format!("{} failed: {}", size_label(size), first_line(&format!("{error:#}"))));
            break;
        }
    }
    report.finish();
    Ok(report)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

struct SizeCtx<'a> {
    args: &'a Args,
    size: u64,
    dir: &'a Path,
    server_bin: &'a Path,
    api_port: u16,
    clone_ports: (u16, u16),
    local_port: u16,
    density: bool,
}

/// For the modes that run on one loaded copy (`--runaway`, `--wake`): a btrfs pool holding the
/// golden copy at the size, `work` on it, then every server under it stopped and the pool torn
/// down, whatever `work` returned.
async fn on_loaded_pool<T>(
    ctx: &SizeCtx<'_>,
    work: impl AsyncFnOnce(&Pool) -> Result<T>,
) -> Result<T> {
    let pool = Pool::create(ctx.dir, Backend::Btrfs, pool_size(ctx.size, 1)).await?;
    let result = async {
        let golden = pool.create_golden().await?;
        cluster::load(ctx.args.major, &golden, scale_for(ctx.size), ctx.local_port, ctx.dir)
            .await?;
        work(&pool).await
    }
    .await;
    cluster::stop_all_under(pool.mountpoint()).await;
    let teardown = pool.teardown().await;
    let result = result?;
    teardown?;
    Ok(result)
}

/// Pool image ceiling for a source of `size` bytes whose pool holds `clusters` loaded copies
/// of it (sparse: only what is written costs disk). Each cluster needs its data directory and
/// the WAL its copies write before checkpoints recycle it; one copy at a time (an alternative's
/// new database, or `cp -a` of a data directory) needs the same again; and a fixed margin
/// covers Scion's clones, which write little, and filesystem metadata.
fn pool_size(size: u64, clusters: u64) -> u64 {
    const GIB: u64 = 1 << 30;
    // The data directory is the database plus its indexes' share; pgbench's is about 1.2x
    // what `size` asks for at scale 680, less at small scales.
    let data = size + size / 4;
    // max_wal_size is 1 GB; a copy writing faster than the spread checkpoint lets WAL reach
    // about twice that before it is recycled, plus min_wal_size kept.
    let wal = 3 * GIB;
    let per_copy = data + wal;
    clusters * per_copy + per_copy + 4 * GIB
}

/// How many loaded clusters the btrfs pool of a size holds: the golden copy, plus each major
/// of the alternatives that is not Scion's.
fn btrfs_clusters(args: &Args) -> u64 {
    if args.no_alternatives {
        return 1;
    }
    1 + ALT_MAJORS.iter().filter(|&&major| major != args.major).count() as u64
}

/// The majors the alternatives run on (each loaded the same way as the golden copy).
const ALT_MAJORS: [u8; 2] = [18, 15];

async fn run_size(ctx: &SizeCtx<'_>, report: &mut Report) -> Result<()> {
    let args = ctx.args;
    let scale = scale_for(ctx.size);
    progress(&format!(
        "{}: btrfs pool, loading PostgreSQL {} with pgbench -i -s {scale}",
        size_label(ctx.size),
        args.major
    ));
    let btrfs =
        Pool::create(ctx.dir, Backend::Btrfs, pool_size(ctx.size, btrfs_clusters(args))).await?;
    let result = run_size_on(ctx, report, &btrfs, scale).await;
    let teardown = btrfs.teardown().await;
    result?;
    teardown
}

async fn run_size_on(
    ctx: &SizeCtx<'_>,
    report: &mut Report,
    btrfs: &Pool,
    scale: u32,
) -> Result<()> {
    let args = ctx.args;
    let golden = btrfs.create_golden().await?;
    let loaded = cluster::load(args.major, &golden, scale, ctx.local_port, ctx.dir).await?;
    progress(&format!(
        "loaded {} (database {} MB) in {:.0} s",
        size_label(loaded.data_dir_bytes),
        loaded.database_bytes / 1_000_000,
        loaded.seconds
    ));
    let mut size_result = SizeResult::new(ctx.size, scale, loaded);
    for &backend in &args.backends {
        match backend {
            Backend::Btrfs => {
                scion_phase(ctx, btrfs, &mut size_result, ctx.density).await?;
            }
            Backend::Zfs => {
                if args.zfs_max_size.is_some_and(|max| ctx.size > max) {
                    size_result
                        .notes
                        .push(format!("ZFS skipped at {} (--zfs-max-size)", size_label(ctx.size)));
                    continue;
                }
                progress("zfs pool, copying the golden data directory into it");
                let zfs = Pool::create(ctx.dir, Backend::Zfs, pool_size(ctx.size, 1)).await?;
                let outcome = async {
                    let zfs_golden = zfs.create_golden().await?;
                    let started = Instant::now();
                    cluster::copy_data_dir(&golden, &zfs_golden, false).await?;
                    sync_all().await?;
                    progress(&format!("copied in {:.0} s", started.elapsed().as_secs_f64()));
                    scion_phase(ctx, &zfs, &mut size_result, false).await
                }
                .await;
                let teardown = zfs.teardown().await;
                // zfs-fuse is a shared daemon here; losing it must not cost the btrfs figures.
                match outcome {
                    Ok(()) => {}
                    Err(error) => {
                        progress(&format!("ZFS failed: {error:#}"));
                        size_result.notes.push(format!(
                            "ZFS at {} failed: {}",
                            size_label(ctx.size),
                            first_line(&format!("{error:#}"))
                        ));
                    }
                }
                teardown?;
            }
        }
    }
    if !args.no_alternatives {
        // Whatever fails here is noted beside the figures of what did not.
        alternatives_phase(ctx, btrfs, &golden, &mut size_result, scale).await;
    }
    report.sizes.push(size_result);
    Ok(())
}

/// `sync` for the whole machine, so one phase's write-back does not land in the next.
pub(crate) async fn sync_all() -> Result<()> {
    Ok(exec::Cmd::new("sync").run().await?)
}

/// Scion on `pool`: clone-ready latency with a warm pool, then without one (and density, if
/// asked), each on a server of its own.
async fn scion_phase(
    ctx: &SizeCtx<'_>,
    pool: &Pool,
    size_result: &mut SizeResult,
    density: bool,
) -> Result<()> {
    // The warm pool's latency first: after the density phase, hundreds of clones stopping load
    // the machine for minutes.
    let warm_pool = ctx.args.warm_pool;
    let warm = if warm_pool > 0 {
        Some(scion_server_phase(ctx, pool, warm_pool, Some(&mut *size_result), false).await?)
    } else {
        None
    };
    let timed = scion_server_phase(ctx, pool, 0, Some(&mut *size_result), density).await?;
    size_result.scion.push(ScionRun { backend: pool.backend, warm_pool: 0, timed });
    if let Some(timed) = warm {
        size_result.scion.push(ScionRun { backend: pool.backend, warm_pool, timed });
    }
    Ok(())
}

async fn scion_server_phase(
    ctx: &SizeCtx<'_>,
    pool: &Pool,
    warm_pool: usize,
    results: Option<&mut SizeResult>,
    density: bool,
) -> Result<Vec<scion::Timed>> {
    let state =
        ctx.dir.join(format!("state-{}", pool.backend.label().split(' ').next().unwrap_or("pool")));
    sync_all().await?;
    progress(&format!(
        "{}: scion-server on {}, warm pool {warm_pool}",
        size_label(ctx.size),
        pool.backend.label()
    ));
    let server = Server::start(
        ctx.server_bin,
        &state,
        &pool.image.backend_config(),
        ctx.api_port,
        ctx.clone_ports,
        warm_pool,
        server::Extra::default(),
    )
    .await?;
    let outcome = async {
        progress(&format!("{} timed clones", ctx.args.clones));
        let timed = scion::clone_latency(&server, ctx.args.clones, warm_pool).await?;
        if let Some(size_result) = results {
            if warm_pool > 0 {
                for &size in &ctx.args.bursts {
                    progress(&format!("a burst of {size} creates, warm pool {warm_pool}"));
                    let found = scion::burst(&server, size, warm_pool).await?;
                    size_result.bursts.push((pool.backend, found));
                }
            } else if ctx.args.discard_runs > 0 {
                progress(&format!("{} resets and destroys of each kind", ctx.args.discard_runs));
                let found = scion::discards(&server, ctx.args.discard_runs).await?;
                size_result.discards.push((pool.backend, found));
            }
            if density {
                progress(&format!("density: up to {} clones", ctx.args.density));
                let found =
                    scion::density(&server, pool, ctx.args.density, ctx.args.api_requests).await?;
                size_result.density = Some((pool.backend, found));
            }
        }
        Ok::<_, anyhow::Error>(timed)
    }
    .await;
    let outcome = outcome.map_err(|error| error.context(server.log_tail()));
    server.stop().await;
    cluster::stop_all_under(pool.mountpoint()).await;
    std::fs::remove_dir_all(&state).ok();
    outcome
}

/// Times every alternative. One that fails (a tool's error, a full pool) is noted in
/// `size_result` and the rest still run: a long run is never lost to one of them.
async fn alternatives_phase(
    ctx: &SizeCtx<'_>,
    btrfs: &Pool,
    golden: &Path,
    size_result: &mut SizeResult,
    scale: u32,
) {
    let args = ctx.args;
    let runs = |method: Method| {
        if method.is_slow() && ctx.size >= args.large_from {
            args.alt_runs_large
        } else {
            args.alt_runs
        }
    };
    let port = ctx.local_port;
    let failed = |what: String, error: anyhow::Error| {
        progress(&format!("{what} failed: {error:#}"));
        format!("{what} at {} failed: {}", size_label(ctx.size), first_line(&format!("{error:#}")))
    };
    // The Scion major's cluster is the golden copy itself (stopped, on btrfs); others get
    // their own cluster on the same pool, loaded the same way.
    let mut clusters: Vec<(u8, PathBuf)> = vec![(args.major, golden.to_path_buf())];
    for major in ALT_MAJORS {
        if major == args.major {
            continue;
        }
        progress(&format!("loading PostgreSQL {major} for the alternatives"));
        let data_dir = btrfs.mountpoint().join(format!("alt-pg{major}")).join("data");
        let loaded: Result<Loaded> = async {
            std::fs::create_dir_all(data_dir.parent().context("parent")?)?;
            cluster::load(major, &data_dir, scale, port, ctx.dir).await
        }
        .await;
        match loaded {
            Ok(loaded) => {
                size_result.notes.push(format!(
                    "PostgreSQL {major}'s copy of the source: data directory {}, database {} MB, WAL {}",
                    size_label(loaded.data_dir_bytes),
                    loaded.database_bytes / 1_000_000,
                    size_label(loaded.wal_bytes)
                ));
                clusters.push((major, data_dir));
            }
            Err(error) => {
                let note = failed(format!("loading PostgreSQL {major}'s copy"), error);
                size_result.notes.push(note);
                cluster::stop_all_under(&data_dir).await;
                std::fs::remove_dir_all(data_dir.parent().unwrap_or(&data_dir)).ok();
            }
        }
    }
    let plan: Vec<(Method, u8)> = vec![
        (Method::WalLog, 15),
        (Method::FileCopy, 15),
        (Method::WalLog, 18),
        (Method::FileCopy, 18),
        (Method::FileCopyClone, 18),
        (Method::DumpRestore, args.major),
        (Method::CopyDataDir, args.major),
    ];
    for (method, major) in plan {
        let Some((_, data_dir)) = clusters.iter().find(|(m, _)| *m == major) else { continue };
        let runs = runs(method);
        progress(&format!("alternative on PostgreSQL {major}: {} ×{runs}", method.label()));
        let measured = async {
            sync_all().await?;
            alternatives::measure(method, major, data_dir, port, ctx.dir, runs).await
        }
        .await;
        match measured {
            Ok(samples) => size_result.alternatives.push(AltResult { method, major, samples }),
            Err(error) => {
                let note = failed(format!("{} on PostgreSQL {major}", method.label()), error);
                size_result.notes.push(note);
            }
        }
    }
    for (_, data_dir) in clusters.iter().skip(1) {
        std::fs::remove_dir_all(data_dir.parent().unwrap_or(data_dir)).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 10 GB run that ran out of space: at scale 680 the database is 10.7 GB; the pool
    /// held the golden copy (PostgreSQL 18) and PostgreSQL 15's copy, and `pg_dump |
    /// pg_restore` made a third database of the same size, each writing WAL up to twice
    /// `max_wal_size` (1 GB) before checkpoints recycle it.
    #[test]
    fn pools_hold_every_cluster_and_one_more_copy_with_their_wal() {
        for (asked, database) in [(100e6, 0.11e9), (1e9, 1.07e9), (10e9, 10.7e9)] {
            for clusters in [1, 2] {
                let copies = clusters as f64 + 1.0;
                let needed = copies * (database + 2.0 * 1024f64.powi(3));
                let size = pool_size(asked as u64, clusters) as f64;
                assert!(size >= needed, "{asked} B with {clusters} clusters: {size} < {needed}");
            }
        }
    }

    #[test]
    fn the_alternatives_add_a_cluster_for_each_other_major() {
        let args = |extra: &[&str]| {
            Args::parse_from(["scion-bench"].iter().chain(extra).copied().collect::<Vec<_>>())
        };
        assert_eq!(btrfs_clusters(&args(&[])), 2, "PostgreSQL 18 is the golden copy, 15 is added");
        assert_eq!(btrfs_clusters(&args(&["--major", "16"])), 3);
        assert_eq!(btrfs_clusters(&args(&["--no-alternatives"])), 1);
    }
}
