//! Benchmark, not a test: the cost of masking in a logical refresh, against the same refresh
//! without masking, in one run on one source.
//!
//! ```text
//! flock /work/bench.lock cargo bench -p retrieval --bench masking -- --rows 1000000 --major 17 --runs 2
//! ```
//!
//! The source holds `people` (id, a unique e-mail, name, phone, birth date, notes) and `orders`
//! (a foreign key to the e-mail), `--rows` rows each. Each run refreshes it three ways, in a
//! rotating order: without masking; masked with `compact` (the default: `VACUUM FULL` after the
//! `UPDATE`); masked without `compact`. Reported: the whole refresh, the masking stage, and the
//! prepared data directory's size (what the snapshot holds), then masking's seconds per GB of
//! masked tables and its extra disk.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark fails loudly on any unexpected error")]

use std::collections::BTreeMap;
use std::path::Path;

use exec::Cmd;
use postgres::{BinarySearch, PgMajor, StopMode};
use retrieval::masking::{MaskingConfig, Rule};
use retrieval::{Pipeline, Stage, Target};
use tokio_util::sync::CancellationToken;

mod source;

use source::{DATABASE, STOP};

const MODES: [&str; 3] = ["plain", "masked", "masked, no compact"];

struct Args {
    rows: u64,
    major: u8,
    runs: u32,
    dir: String,
}

fn args() -> Args {
    let mut args = Args { rows: 200_000, major: 17, runs: 1, dir: "/tmp".into() };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rows" => args.rows = value().parse().unwrap(),
            "--major" => args.major = value().parse().unwrap(),
            "--runs" => args.runs = value().parse().unwrap(),
            "--dir" => args.dir = value(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    args
}

fn masking(key_file: &Path, compact: bool) -> MaskingConfig {
    let people = BTreeMap::from([
        ("email".to_owned(), Rule::Email),
        ("full_name".to_owned(), Rule::Name),
        ("phone".to_owned(), Rule::Phone),
        ("born".to_owned(), Rule::DateShift { days: 30 }),
        ("notes".to_owned(), Rule::Null),
    ]);
    let orders = BTreeMap::from([("person_email".to_owned(), Rule::Email)]);
    MaskingConfig {
        key_file: Some(key_file.to_path_buf()),
        tables: BTreeMap::from([("people".to_owned(), people), ("orders".to_owned(), orders)]),
        compact,
        ..MaskingConfig::default()
    }
}

async fn bytes_under(path: &Path) -> u64 {
    let output = Cmd::new("du").arg("-sb").arg(path).output_any_status().await.unwrap();
    output.stdout_text().split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let major = PgMajor::new(args.major).unwrap();
    let bench = source::start(
        &args.dir,
        "scion-mb-",
        args.major,
        "256MB",
        vec![("max_wal_size".into(), "8GB".into()), ("fsync".into(), "off".into())],
    )
    .await;
    let root = bench.sandbox.path();
    let user = bench.user.clone();
    let key_file = root.join("masking.key");
    std::fs::write(&key_file, "bench-masking-key\n").unwrap();

    let data = postgres::Admin::connect(&root.join("ssock"), bench.port, "postgres", DATABASE)
        .await
        .unwrap();
    let rows = args.rows;
    data.client()
        .batch_execute(&format!(
            "CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, full_name text,
                                  phone text, born date, notes text);
             INSERT INTO people SELECT i, 'person' || i || '@corp-mail.test', 'Given' || i || ' Family' || i,
                    '+49 30 ' || (1000000 + i), date '1950-01-01' + (i % 20000)::int,
                    CASE WHEN i % 3 = 0 THEN 'called on ' || i END
             FROM generate_series(1, {rows}) AS i;
             CREATE TABLE orders (id bigint PRIMARY KEY, person_email text NOT NULL REFERENCES people (email),
                                  amount numeric);
             INSERT INTO orders SELECT o, 'person' || (1 + o % {rows}) || '@corp-mail.test', o * 0.5
             FROM generate_series(1, {rows}) AS o;"
        ))
        .await
        .unwrap();
    let masked_bytes: i64 = data
        .client()
        .query_one(
            "SELECT pg_total_relation_size('people') + pg_total_relation_size('orders')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(data);
    let gb = masked_bytes as f64 / 1e9;
    println!(
        "source: PostgreSQL {major}, {rows} rows in people and in orders, masked tables {gb:.3} GB with indexes"
    );

    let mut config = bench.config(args.major);
    config.dump.location = Some(root.join("dump"));
    let pipelines: Vec<Pipeline> = [None, Some(true), Some(false)]
        .into_iter()
        .map(|compact| {
            let mut config = config.clone();
            config.masking = compact.map(|compact| masking(&key_file, compact));
            Pipeline::new(config, BinarySearch::default(), user.clone()).unwrap()
        })
        .collect();

    println!();
    println!("| run | mode | refresh s | masking s | data directory MB |");
    println!("| --- | --- | --- | --- | --- |");
    let mut results: BTreeMap<usize, Vec<(f64, f64, u64)>> = BTreeMap::new();
    for run in 1..=args.runs {
        for turn in 0..MODES.len() {
            let mode = (turn + run as usize) % MODES.len();
            Cmd::new("sync").run().await.unwrap();
            let target = Target::new(
                root.join(format!("t{run}-{mode}")),
                root.join(format!("r{run}-{mode}")),
            );
            let summary = pipelines[mode].run(&target, &CancellationToken::new()).await.unwrap();
            let masking = summary
                .stages
                .iter()
                .find(|timing| timing.stage == Stage::Masking)
                .map_or(0.0, |timing| timing.duration.as_secs_f64());
            let size = bytes_under(&target.data_dir).await;
            println!(
                "| {run} | {} | {:.1} | {masking:.1} | {:.0} |",
                MODES[mode],
                summary.total.as_secs_f64(),
                size as f64 / 1e6
            );
            results.entry(mode).or_default().push((summary.total.as_secs_f64(), masking, size));
            std::fs::remove_dir_all(&target.data_dir).unwrap();
            std::fs::remove_dir_all(&target.run_dir).unwrap();
        }
    }
    let mean = |mode: usize, pick: fn(&(f64, f64, u64)) -> f64| {
        let values = &results[&mode];
        values.iter().map(pick).sum::<f64>() / values.len() as f64
    };
    println!();
    for (mode, name) in MODES.iter().enumerate().skip(1) {
        let extra_seconds = mean(mode, |row| row.0) - mean(0, |row| row.0);
        let extra_mb = (mean(mode, |row| row.2 as f64) - mean(0, |row| row.2 as f64)) / 1e6;
        println!(
            "{}: masking stage {:.1} s per GB of masked tables; refresh +{extra_seconds:.1} s ({:.1} s per GB) against plain; data directory {extra_mb:+.0} MB",
            name,
            mean(mode, |row| row.1) / gb,
            extra_seconds / gb,
        );
    }
    bench.instance.stop(StopMode::Fast, STOP).await.unwrap();
}
