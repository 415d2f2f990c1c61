//! Benchmark, not a test: Scion's logical refresh against the same `pg_dump -Fd -jN` plus
//! `pg_restore -jN` run by hand, side by side on one pgbench source.
//!
//! ```text
//! cargo bench -p retrieval --bench logical_refresh -- --scale 70 --jobs 2 --major 17 --runs 2
//! ```
//!
//! The source is a fresh cluster filled by `pgbench -i -s SCALE` (scale 70 ≈ 1 GB, 700 ≈ 10 GB).
//! Each run does both, alternating which goes first:
//! - raw: a target cluster is initdb'd and started (not timed) with the same settings Scion's
//!   temporary target uses, then `pg_dump -Fd -jN` and `pg_restore -jN --create` are timed;
//! - Scion: the whole [`Pipeline::run`] is timed: probe, initdb, start, roles, dump, restore,
//!   CHECKPOINT, clean stop and sync (ANALYZE off, as the raw tools do none).
//!
//! The ratio is Scion's total over raw dump + restore. `sync` runs (untimed) before each turn,
//! so neither pays for the write-back of the other's dirty pages; Scion's own final sync of the
//! target is inside its total.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark fails loudly on any unexpected error")]

use std::path::Path;
use std::time::{Duration, Instant};

use exec::Cmd;
use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor,
    ServerSettings, StopMode,
};
use retrieval::{Pipeline, Stage, Target};
use tokio_util::sync::CancellationToken;

mod source;

use source::{DATABASE, PASSWORD, STOP, USER};

struct Args {
    scale: u32,
    jobs: u32,
    major: u8,
    runs: u32,
    dir: String,
}

fn args() -> Args {
    let mut args = Args { scale: 10, jobs: 2, major: 17, runs: 1, dir: "/tmp".into() };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--scale" => args.scale = value().parse().unwrap(),
            "--jobs" => args.jobs = value().parse().unwrap(),
            "--major" => args.major = value().parse().unwrap(),
            "--runs" => args.runs = value().parse().unwrap(),
            "--dir" => args.dir = value(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    args
}

fn secs(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64())
}

async fn start(binaries: &PgBinaries, spec: InstanceSpec) -> Instance {
    Instance::start(binaries, spec).await.unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let major = PgMajor::new(args.major).unwrap();
    let mut bench = source::start(
        &args.dir,
        "scion-rb-",
        args.major,
        "512MB",
        vec![("max_wal_size".into(), "8GB".into())],
    )
    .await;
    let (binaries, user, root) =
        (bench.binaries.clone(), bench.user.clone(), bench.sandbox.path().to_path_buf());
    let root = root.as_path();
    let conninfo = bench.conninfo(DATABASE);
    let admin = bench.instance.admin().await.unwrap();
    let started = Instant::now();
    Cmd::new(binaries.tool("pgbench").unwrap())
        .args(["-i", "-q", "-s", &args.scale.to_string()])
        .arg(format!("--dbname={conninfo}"))
        .secret_env("PGPASSWORD", PASSWORD)
        .run()
        .await
        .unwrap();
    let size: i64 =
        admin.client().query_one("SELECT pg_database_size($1)", &[&DATABASE]).await.unwrap().get(0);
    drop(admin);
    println!(
        "source: PostgreSQL {major}, pgbench scale {}, database {:.2} GB, loaded in {} s; jobs {}",
        args.scale,
        size as f64 / 1e9,
        secs(started.elapsed()),
        args.jobs
    );

    let mut config = bench.config(args.major);
    config.dump.parallel_jobs = args.jobs;
    config.restore.parallel_jobs = args.jobs;
    config.restore.analyze = false;
    config.dump.location = Some(root.join("scion-dump"));
    let settings_for_targets = config.restore_settings();
    let pipeline = Pipeline::new(config, BinarySearch::default(), user.clone()).unwrap();

    println!();
    println!(
        "| run | raw pg_dump s | raw pg_restore s | raw total s | Scion total s | Scion dump s | Scion restore s | Scion other s | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut ratios = Vec::new();
    for run in 1..=args.runs {
        let scion_first = run % 2 == 0;
        let mut raw = None;
        let mut scion = None;
        for turn in 0..2 {
            // The previous turn's dirty pages would otherwise be written back during this one.
            Cmd::new("sync").run().await.unwrap();
            if (turn == 0) == scion_first {
                scion = Some(run_scion(&pipeline, root, run).await);
            } else {
                raw = Some(
                    run_raw(
                        &binaries,
                        &user,
                        root,
                        run,
                        &conninfo,
                        args.jobs,
                        &settings_for_targets,
                    )
                    .await,
                );
            }
        }
        let (dump, restore) = raw.unwrap();
        let summary = scion.unwrap();
        let stage = |wanted: Stage| {
            summary
                .stages
                .iter()
                .find(|timing| timing.stage == wanted)
                .map(|timing| timing.duration)
                .unwrap_or_default()
        };
        let (scion_dump, scion_restore) = (stage(Stage::Dumping), stage(Stage::Restoring));
        let raw_total = dump + restore;
        let ratio = summary.total.as_secs_f64() / raw_total.as_secs_f64();
        ratios.push(ratio);
        println!(
            "| {run} | {} | {} | {} | {} | {} | {} | {} | {ratio:.3} |",
            secs(dump),
            secs(restore),
            secs(raw_total),
            secs(summary.total),
            secs(scion_dump),
            secs(scion_restore),
            secs(summary.total.saturating_sub(scion_dump + scion_restore)),
        );
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!();
    println!("mean ratio (Scion / raw): {mean:.3}");
    bench.instance.stop(StopMode::Fast, STOP).await.unwrap();
}

async fn run_scion(pipeline: &Pipeline, root: &Path, run: u32) -> retrieval::Summary {
    let target = Target::new(root.join(format!("scion-{run}")), root.join(format!("srun{run}")));
    let summary = pipeline.run(&target, &CancellationToken::new()).await.unwrap();
    std::fs::remove_dir_all(&target.data_dir).unwrap();
    std::fs::remove_dir_all(&target.run_dir).unwrap();
    summary
}

/// The by-hand baseline: returns (pg_dump time, pg_restore time).
async fn run_raw(
    binaries: &PgBinaries,
    user: &OsUser,
    root: &Path,
    run: u32,
    source_conninfo: &str,
    jobs: u32,
    target_settings: &[(String, String)],
) -> (Duration, Duration) {
    let data_dir = root.join(format!("raw-{run}"));
    let mut options = InitDbOptions::new("postgres");
    options.sync = false;
    postgres::initdb(binaries, &data_dir, user, &options).await.unwrap();
    let socket_dir = root.join(format!("rsock{run}"));
    let mut settings = ServerSettings::new(5432, &socket_dir);
    settings.listen_addresses = String::new();
    settings.max_connections = jobs * 2 + 11;
    settings.extra = target_settings.to_vec();
    let spec = InstanceSpec::new(
        &data_dir,
        settings,
        "postgres",
        root.join(format!("raw-{run}.log")),
        user.clone(),
    );
    let mut instance = start(binaries, spec).await;
    // The owner role, as an operator would create it first (not timed).
    let admin = instance.admin().await.unwrap();
    admin.client().batch_execute(&format!("CREATE ROLE {USER} LOGIN SUPERUSER")).await.unwrap();
    drop(admin);
    let dump_dir = root.join(format!("raw-dump-{run}"));

    let started = Instant::now();
    Cmd::new(binaries.tool("pg_dump").unwrap())
        .args(["--format=directory", &format!("--jobs={jobs}"), "--create"])
        .arg(format!("--file={}", dump_dir.display()))
        .arg(format!("--dbname={source_conninfo}"))
        .secret_env("PGPASSWORD", PASSWORD)
        .run()
        .await
        .unwrap();
    let dump = started.elapsed();
    let started = Instant::now();
    Cmd::new(binaries.tool("pg_restore").unwrap())
        .args([&format!("--jobs={jobs}"), "--create", "--exit-on-error", "--no-tablespaces"])
        .arg(format!(
            "--dbname=host={} port=5432 user=postgres dbname=template1",
            socket_dir.display()
        ))
        .arg(&dump_dir)
        .run()
        .await
        .unwrap();
    let restore = started.elapsed();
    instance.stop(StopMode::Fast, STOP).await.unwrap();
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::remove_dir_all(&dump_dir).unwrap();
    (dump, restore)
}
