//! Benchmark (not a test): time to snapshot, and to clone, a dataset that holds a real, cleanly
//! stopped Postgres data directory filled by `pgbench -i`, on each thin backend.
//!
//! Run as root:
//! `cargo bench -p storage --bench snapshot_clone -- --scales 64,640 --backends btrfs,btrfs-quota,zfs,xfs --runs 20`
//!
//! It makes the pgbench data directory once per scale under `--work-dir` (on the root
//! filesystem), copies it into a dataset of a fresh image-file pool per backend, waits
//! `--settle-seconds` (15) for the copy's aftermath to pass, then times `snapshot` and
//! `clone_snapshot` through the storage trait, and prints one markdown table row per backend
//! and scale, with how busy the machine was (load, I/O pressure) around the timed runs.
//! Everything it made is torn down at the end.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::print_stderr, reason = "progress goes to stderr")]
#![allow(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;
use storage::provision::{ImageFs, ImagePool};
use storage::{BackendConfig, DestroyMode, StorageBackend, ThinStorage};

const POSTGRES_UID: u32 = 101;
const GIB: u64 = 1024 * 1024 * 1024;
const LONG: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug)]
struct Args {
    scales: Vec<u32>,
    backends: Vec<String>,
    runs: usize,
    settle: Duration,
    work_dir: PathBuf,
    pg_bin: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        scales: vec![64],
        backends: vec!["btrfs".into(), "btrfs-quota".into(), "zfs".into(), "xfs".into()],
        runs: 20,
        settle: Duration::from_secs(15),
        work_dir: PathBuf::from("/var/tmp/scion-bench-storage"),
        pg_bin: PathBuf::from("/opt/scion/postgres/17/bin"),
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = || raw.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scales" => args.scales = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--backends" => args.backends = value().split(',').map(str::to_owned).collect(),
            "--runs" => args.runs = value().parse().unwrap(),
            "--settle-seconds" => args.settle = Duration::from_secs(value().parse().unwrap()),
            "--work-dir" => args.work_dir = value().into(),
            "--pg-bin" => args.pg_bin = value().into(),
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

async fn postgres_gid() -> u32 {
    let out = Cmd::new("id").args(["-g", "postgres"]).output().await.unwrap();
    out.stdout_text().trim().parse().unwrap()
}

/// Makes (once) a stopped Postgres data directory filled by `pgbench -i -s scale`.
async fn pgbench_datadir(args: &Args, scale: u32) -> PathBuf {
    let gid = postgres_gid().await;
    let dir = args.work_dir.join(format!("pgdata-s{scale}"));
    if dir.join("PG_VERSION").exists() && !dir.join("postmaster.pid").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let socket = args.work_dir.join("socket");
    std::fs::create_dir_all(&socket).unwrap();
    std::os::unix::fs::chown(&args.work_dir, Some(POSTGRES_UID), Some(gid)).unwrap();
    std::os::unix::fs::chown(&socket, Some(POSTGRES_UID), Some(gid)).unwrap();
    let bin = |name: &str| args.pg_bin.join(name);
    let as_pg = |cmd: Cmd| cmd.user(POSTGRES_UID, gid).timeout(LONG);
    eprintln!("initdb + pgbench -i -s {scale} into {}", dir.display());
    as_pg(Cmd::new(bin("initdb")).args(["--no-sync", "-U", "postgres", "-D"]).arg(&dir))
        .run()
        .await
        .unwrap();
    let port = "55432";
    let options = format!("-p {port} -k {} -c listen_addresses=''", socket.display());
    as_pg(Cmd::new(bin("pg_ctl")).args(["start", "-w", "-l"]).arg(dir.join("log")))
        .args(["-o", &options, "-D"])
        .arg(&dir)
        .run()
        .await
        .unwrap();
    let started = Instant::now();
    let loaded = as_pg(Cmd::new(bin("pgbench")).args(["-i", "-q", "-s", &scale.to_string()]))
        .args(["-h"])
        .arg(&socket)
        .args(["-p", port, "-U", "postgres", "postgres"])
        .run()
        .await;
    eprintln!("pgbench -i -s {scale}: {:?}", started.elapsed());
    // A clean (fast) shutdown, as the engine does before a snapshot.
    as_pg(Cmd::new(bin("pg_ctl")).args(["stop", "-m", "fast", "-w", "-D"]).arg(&dir))
        .run()
        .await
        .unwrap();
    loaded.unwrap();
    dir
}

async fn du(path: &Path) -> u64 {
    let out = Cmd::new("du").args(["-sb"]).arg(path).output().await.unwrap();
    out.stdout_text().split_whitespace().next().unwrap().parse().unwrap()
}

/// How busy the shared machine is: the 1-minute load average, and the share of the last 10 s
/// in which some task waited for I/O (PSI; a snapshot's commit waits for a disk flush, so this
/// is what moves btrfs's figures most).
fn busy() -> (String, String) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap();
    let load = load.split_whitespace().next().unwrap().to_owned();
    let io = std::fs::read_to_string("/proc/pressure/io").unwrap_or_default();
    let io = io.split_whitespace().find_map(|word| word.strip_prefix("avg10=")).unwrap_or("?");
    (load, format!("{io}%"))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(percentile(&samples, 0.5)), ms(percentile(&samples, 0.95)))
}

async fn bench_backend(args: &Args, name: &str, scale: u32, source: &Path, data_bytes: u64) {
    let dir = args.work_dir.join(format!("pool-{name}-s{scale}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let size = (data_bytes * 2).max(8 * GIB);
    let fs = match name {
        "btrfs" | "btrfs-quota" => ImageFs::Btrfs,
        "zfs" => ImageFs::Zfs { pool: format!("scion_bench_{}", std::process::id()) },
        "xfs" => ImageFs::Xfs,
        "ext4" => ImageFs::Ext4,
        other => panic!("unknown backend {other}"),
    };
    let image = ImagePool::new(dir.join("pool.img"), size, fs, dir.join("mnt"));
    image.ensure().await.unwrap();
    let config = match image.backend_config() {
        BackendConfig::Btrfs { root, .. } if name == "btrfs-quota" => {
            BackendConfig::Btrfs { root, quota: true }
        }
        config => config,
    };
    let backend = StorageBackend::open(&config).await.unwrap();
    let dataset = "data".parse().unwrap();
    let mount = backend.create_dataset(&dataset).await.unwrap();
    let started = Instant::now();
    Cmd::new("cp")
        .arg("-a")
        .arg(source)
        .arg(mount.join("pgdata"))
        .timeout(LONG)
        .run()
        .await
        .unwrap();
    Cmd::new("sync").run().await.unwrap();
    eprintln!("{name} s{scale}: copied the data directory in {:?}", started.elapsed());
    // Let the copy's own aftermath (background writeback, the I/O pressure average it raised)
    // pass, so the timed runs and the busy columns show the operations and the other tenants.
    tokio::time::sleep(args.settle).await;

    let (mut snaps, mut clones) = (Vec::new(), Vec::new());
    let busy_before = busy();
    for run in 0..args.runs {
        let snapshot = dataset.snapshot(&format!("b{run}")).unwrap();
        let started = Instant::now();
        backend.snapshot(&snapshot).await.unwrap();
        snaps.push(started.elapsed());
        let clone = format!("clones/c{run}").parse().unwrap();
        let started = Instant::now();
        backend.clone_snapshot(&snapshot, &clone).await.unwrap();
        clones.push(started.elapsed());
    }
    let busy_after = busy();
    let load = format!("{}–{}", busy_before.0, busy_after.0);
    let io = format!("{}–{}", busy_before.1, busy_after.1);
    let both: Vec<Duration> = snaps.iter().zip(&clones).map(|(s, c)| *s + *c).collect();
    let (snap_med, snap_p95) = summary(snaps);
    let (clone_med, clone_p95) = summary(clones);
    let (both_med, both_p95) = summary(both);
    let thin = backend.capabilities().thin;
    println!(
        "| {name} | {scale} | {:.2} GB | {} | {snap_med:.1} | {snap_p95:.1} | {clone_med:.1} | {clone_p95:.1} | {both_med:.1} | {both_p95:.1} | {load} | {io} |",
        data_bytes as f64 / 1e9,
        args.runs,
    );
    eprintln!("{name} s{scale}: thin={thin}");
    backend.destroy_dataset(&dataset, DestroyMode::WithDependents).await.unwrap();
    drop(backend);
    image.teardown(true).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.work_dir).unwrap();
    println!(
        "| backend | pgbench scale | data dir | runs | snapshot median ms | snapshot p95 ms | clone median ms | clone p95 ms | snapshot+clone median ms | snapshot+clone p95 ms | load avg (1 min) before–after | I/O pressure (some, avg10) before–after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &scale in &args.scales {
        let source = pgbench_datadir(&args, scale).await;
        let data_bytes = du(&source).await;
        for backend in &args.backends {
            bench_backend(&args, backend, scale, &source, data_bytes).await;
        }
    }
}
