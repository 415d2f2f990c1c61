//! Benchmark (not a test): time to snapshot, and to clone, a dataset that holds a real, cleanly
//! stopped Postgres data directory filled by `pgbench -i`, on each thin backend.
//!
//! Run as root:
//! `cargo bench -p storage --bench snapshot_clone -- --scales 64,640 --backends btrfs,btrfs-quota,zfs,xfs --runs 20`
//!
//! It makes the pgbench data directory once per scale under `--work-dir` (on the root
//! filesystem). For each backend it copies each scale's directory into a dataset of a fresh
//! image-file pool, waits `--settle-seconds` (15) for the copies' aftermath to pass, then times
//! `snapshot` and `clone_snapshot` through the storage trait, runs interleaved across the
//! scales' pools (with `--together`, across all backends' pools) so that the rows compared see the
//! same (shared, noisy) machine. On plain btrfs each run
//! also times the `btrfs subvolume snapshot` commands the backend used to run, on the same pool,
//! in alternating order: the before/after comparison under identical conditions (leave it out
//! with `--no-baseline`, so that nothing else runs between the timed operations). It prints one
//! markdown table row per backend and scale, with how busy the machine was (load, I/O pressure)
//! around the timed runs. Everything it made is torn down at the end.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::print_stderr, reason = "progress goes to stderr")]
#![allow(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;
use storage::provision::{ImageFs, ImagePool};
use storage::{BackendConfig, DatasetName, DestroyMode, StorageBackend, ThinStorage};

const POSTGRES_UID: u32 = 101;
const GIB: u64 = 1024 * 1024 * 1024;
const LONG: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug)]
struct Args {
    scales: Vec<u32>,
    backends: Vec<String>,
    runs: usize,
    settle: Duration,
    /// Time the `btrfs` program next to the ioctls on plain btrfs.
    baseline: bool,
    /// Interleave the runs of all backends, not only of one backend's scales.
    together: bool,
    work_dir: PathBuf,
    pg_bin: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        scales: vec![64],
        backends: vec!["btrfs".into(), "btrfs-quota".into(), "zfs".into(), "xfs".into()],
        runs: 20,
        settle: Duration::from_secs(15),
        baseline: true,
        together: false,
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
            "--no-baseline" => args.baseline = false,
            "--together" => args.together = true,
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

/// Timings of one way of taking a snapshot and a clone.
#[derive(Default)]
struct Samples {
    snapshots: Vec<Duration>,
    clones: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, snapshot: Duration, clone: Duration) {
        self.snapshots.push(snapshot);
        self.clones.push(clone);
    }

    /// One table row; `busy` is the load and I/O pressure columns.
    fn row(self, label: &str, scale: u32, data_bytes: u64, busy: &str) -> String {
        let runs = self.snapshots.len();
        let both = self.snapshots.iter().zip(&self.clones).map(|(s, c)| *s + *c).collect();
        let (snap_med, snap_p95) = summary(self.snapshots);
        let (clone_med, clone_p95) = summary(self.clones);
        let (both_med, both_p95) = summary(both);
        format!(
            "| {label} | {scale} | {:.2} GB | {runs} | {snap_med:.1} | {snap_p95:.1} | {clone_med:.1} | {clone_p95:.1} | {both_med:.1} | {both_p95:.1} | {busy} |",
            data_bytes as f64 / 1e9,
        )
    }
}

/// One pool holding one scale's data directory, with what was timed on it.
struct Pool {
    scale: u32,
    data_bytes: u64,
    dir: PathBuf,
    image: ImagePool,
    backend: StorageBackend,
    /// Through the storage trait.
    storage: Samples,
    /// Through the `btrfs` program, as the btrfs backend did before it called the ioctls.
    program: Option<Samples>,
}

async fn setup(args: &Args, name: &str, scale: u32, source: &Path, data_bytes: u64) -> Pool {
    let dir = args.work_dir.join(format!("pool-{name}-s{scale}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let size = (data_bytes * 2).max(8 * GIB);
    let fs = match name {
        "btrfs" | "btrfs-quota" | "btrfs-noflush" => ImageFs::Btrfs,
        "zfs" => ImageFs::Zfs { pool: format!("scion_bench_{}_{scale}", std::process::id()) },
        "xfs" => ImageFs::Xfs,
        "ext4" => ImageFs::Ext4,
        other => panic!("unknown backend {other}"),
    };
    // `btrfs-noflush` is the embedded pool with `image_flush = false` (mounted `nobarrier`).
    let image = ImagePool::new(dir.join("pool.img"), size, fs, dir.join("mnt"))
        .with_flush(name != "btrfs-noflush");
    image.ensure().await.unwrap();
    let config = match image.backend_config() {
        BackendConfig::Btrfs { root, .. } if name == "btrfs-quota" => {
            BackendConfig::Btrfs { root, quota: true }
        }
        config => config,
    };
    let backend = StorageBackend::open(&config).await.unwrap();
    let mount = backend.create_dataset(&"data".parse().unwrap()).await.unwrap();
    // The clones' parent exists before timing, as it does on a pool in use.
    backend.create_dataset(&"clones".parse().unwrap()).await.unwrap();
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
    let program = (name == "btrfs" && args.baseline).then(Samples::default);
    Pool { scale, data_bytes, dir, image, backend, storage: Samples::default(), program }
}

impl Pool {
    /// Run `run`: a snapshot and a clone through the trait and, on plain btrfs, through the
    /// `btrfs` program too, in an order that alternates from run to run.
    async fn time(&mut self, run: usize) {
        let program_first = run % 2 == 1;
        if program_first {
            self.time_program(run).await;
        }
        let dataset: DatasetName = "data".parse().unwrap();
        let snapshot = dataset.snapshot(&format!("b{run}")).unwrap();
        let started = Instant::now();
        self.backend.snapshot(&snapshot).await.unwrap();
        let snapshot_took = started.elapsed();
        let clone = format!("clones/c{run}").parse().unwrap();
        let started = Instant::now();
        self.backend.clone_snapshot(&snapshot, &clone).await.unwrap();
        self.storage.push(snapshot_took, started.elapsed());
        if !program_first {
            self.time_program(run).await;
        }
    }

    /// The commands the btrfs backend ran before: `btrfs subvolume snapshot [-r]`. Paths
    /// follow the backend's layout (snapshots under `.snapshots`), so teardown finds them.
    async fn time_program(&mut self, run: usize) {
        let Some(samples) = &mut self.program else { return };
        let data = self.backend.mountpoint(&"data".parse().unwrap());
        let root = data.parent().unwrap();
        let snapshot = root.join(format!(".snapshots/data@p{run}"));
        let started = Instant::now();
        let snapshot_cmd =
            Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&data).arg(&snapshot);
        snapshot_cmd.output().await.unwrap();
        let snapshot_took = started.elapsed();
        let clone = root.join(format!("clones/p{run}"));
        let started = Instant::now();
        let clone_cmd =
            Cmd::new("btrfs").args(["subvolume", "snapshot"]).arg(&snapshot).arg(&clone);
        clone_cmd.output().await.unwrap();
        samples.push(snapshot_took, started.elapsed());
    }

    async fn report_and_teardown(self, name: &str, busy: &str) {
        println!("{}", self.storage.row(name, self.scale, self.data_bytes, busy));
        if let Some(program) = self.program {
            let label = format!("{name} via the `btrfs` program (before)");
            println!("{}", program.row(&label, self.scale, self.data_bytes, busy));
        }
        eprintln!("{name} s{}: thin={}", self.scale, self.backend.capabilities().thin);
        let data = "data".parse().unwrap();
        self.backend.destroy_dataset(&data, DestroyMode::WithDependents).await.unwrap();
        self.backend
            .destroy_dataset(&"clones".parse().unwrap(), DestroyMode::Refuse)
            .await
            .unwrap();
        drop(self.backend);
        self.image.teardown(true).await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Times backends: a pool per backend and scale, runs interleaved across the pools (in an
/// order that alternates), so that every row compared in one call saw the same machine.
async fn bench_backends(args: &Args, names: &[String], sources: &[(u32, PathBuf, u64)]) {
    let mut pools = Vec::new();
    for name in names {
        for (scale, source, data_bytes) in sources {
            pools.push((name, setup(args, name, *scale, source, *data_bytes).await));
        }
    }
    // Let the copies' aftermath (background writeback, the I/O pressure average they raised)
    // pass, so the timed runs and the busy columns show the operations and the other tenants.
    tokio::time::sleep(args.settle).await;
    let before = busy();
    for run in 0..args.runs {
        if run % 2 == 0 {
            for (_, pool) in &mut pools {
                pool.time(run).await;
            }
        } else {
            for (_, pool) in pools.iter_mut().rev() {
                pool.time(run).await;
            }
        }
    }
    let after = busy();
    let busy = format!("{}–{} | {}–{}", before.0, after.0, before.1, after.1);
    for (name, pool) in pools {
        pool.report_and_teardown(name, &busy).await;
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.work_dir).unwrap();
    println!(
        "| backend | pgbench scale | data dir | runs | snapshot median ms | snapshot p95 ms | clone median ms | clone p95 ms | snapshot+clone median ms | snapshot+clone p95 ms | load avg (1 min) before–after | I/O pressure (some, avg10) before–after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut sources = Vec::new();
    for &scale in &args.scales {
        let source = pgbench_datadir(&args, scale).await;
        let data_bytes = du(&source).await;
        sources.push((scale, source, data_bytes));
    }
    if args.together {
        bench_backends(&args, &args.backends, &sources).await;
    } else {
        for backend in &args.backends {
            bench_backends(&args, std::slice::from_ref(backend), &sources).await;
        }
    }
}
