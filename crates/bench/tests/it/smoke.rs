//! The harness end to end at a tiny size: a real `scion-server` on a btrfs image pool, a
//! pgbench scale-1 source, two timed clones, every alternative once, density and API
//! latency with a few clones. Checks that every row of the report is there with plausible
//! numbers (non-zero, p95 not below the median) and that nothing is left mounted; no timing
//! asserts.

use std::path::{Path, PathBuf};

use test_support::{TestDir, free_port_range};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_reports_every_row_and_cleans_up() {
    let dir = TestDir::new("scion-bench-it-");
    let report = run_bench(
        &dir,
        &[
            "--sizes",
            "10MB",
            "--backends",
            "btrfs",
            "--clones",
            "2",
            "--density",
            "3",
            "--api-requests",
            "5",
            "--alt-runs",
            "1",
            "--bursts",
            "3",
            "--discard-runs",
            "1",
            "--major",
            "18",
        ],
    )
    .await;

    let latency = row(&report, "| btrfs | ");
    assert_eq!(latency[3], "2", "{report}");
    let (median, p95) = (millis(&latency[4]), millis(&latency[5]));
    assert!(median > 0.0 && p95 >= median, "median {median}, p95 {p95}:\n{report}");
    assert!(millis(&latency[8]) > 0.0, "server cloningTime:\n{report}");
    let warm = row(&report, "| btrfs, warm pool 2 | ");
    assert_eq!(warm[3], "2", "{report}");
    assert!(millis(&warm[4]) > 0.0 && millis(&warm[5]) >= millis(&warm[4]), "{report}");
    assert!(row(&report, "| 10 MB | Scion, btrfs, warm pool 2 |")[7].ends_with('×'), "{report}");

    assert_eq!(row(&report, "| 10 MB | Scion, btrfs |")[7], "1.0×", "{report}");
    for (method, majors) in [
        ("STRATEGY WAL_LOG`", &["15", "18"][..]),
        ("STRATEGY FILE_COPY`", &["15", "18"][..]),
        ("`file_copy_method = clone`", &["18"][..]),
        ("pg_restore`", &["18"][..]),
        ("`cp -a", &["18"][..]),
    ] {
        for major in majors {
            let found = report
                .lines()
                .map(cells)
                .find(|cells| cells.len() > 7 && cells[2].contains(method) && cells[3] == *major)
                .unwrap_or_else(|| panic!("no row for {method} on {major}:\n{report}"));
            assert_eq!(found[4], "1", "{report}");
            let (median, max) = (millis(&found[5]), millis(&found[6]));
            assert!(median > 0.0 && max >= median, "{found:?}");
            assert!(found[7].ends_with('×'), "{found:?}");
        }
    }

    let density = row(&report, "| 3 | ");
    assert_eq!(density[2], "3", "all three clones ran at once:\n{report}");
    assert_eq!(density[3], "–", "{report}");
    let pss: Vec<f64> = density[4].split(" / ").map(|v| number(v, "MiB")).collect();
    assert!(pss[0] > 0.0 && pss[1] >= pss[0], "PSS {pss:?}");
    // Fewer clones than the fresh measure needs: only the whole phase's growth.
    assert!(density[6].starts_with("– / ") && density[6].ends_with("KiB"), "{report}");
    for endpoint in ["| `GET /status` |", "| `GET /clones` |"] {
        let api = row(&report, endpoint);
        assert_eq!(api[2], "3", "{report}");
        let (median, p99) = (millis(&api[4]), millis(&api[5]));
        assert!(median > 0.0 && p99 >= median, "{api:?}");
    }
    assert!(report.contains("load average"), "{report}");

    // A burst of three with two warm clones, and one dirty and one untouched reset and
    // destroy; the source says what WAL it holds.
    let burst = report
        .lines()
        .map(cells)
        .find(|cells| cells.len() == 11 && cells[2] == "btrfs" && cells[4] == "3")
        .unwrap_or_else(|| panic!("no burst row:\n{report}"));
    assert!(burst[1].contains("; WAL "), "{burst:?}");
    let claims: u32 = burst[5].parse().unwrap();
    assert!((1..=3).contains(&claims), "{burst:?}");
    assert!(millis(&burst[6]) > 0.0 && millis(&burst[9]) >= millis(&burst[6]), "{burst:?}");
    let discards = report
        .lines()
        .map(cells)
        .find(|cells| cells.len() == 10 && cells[2] == "btrfs" && cells[3] == "100000")
        .unwrap_or_else(|| panic!("no reset and destroy row:\n{report}"));
    assert_eq!(discards[4], "1", "{discards:?}");
    for pair in &discards[5..9] {
        let median = pair.split(" / ").next().unwrap();
        assert!(millis(median) > 0.0, "{discards:?}");
    }

    assert_cleaned_up(&dir);
}

/// `--wake` at a tiny size: every row with two samples (the wakes with plain and with TLS
/// logins among them), the stopped clones without a process, and the fleet's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_wake_run_reports_every_row_and_cleans_up() {
    let dir = TestDir::new("scion-bench-it-");
    let args = ["--wake", "--sizes", "10MB", "--clones", "2", "--fleet", "3", "--density", "0"];
    let more =
        ["--bursts", "1", "--api-requests", "5", "--collection-rounds", "1", "--major", "18"];
    let report = run_bench(&dir, &[&args[..], &more[..]].concat()).await;
    for prefix in [
        "| cold create",
        "| warm claim",
        "| **wake**",
        "| login → `SELECT 1` on the same clones running",
        "| login → `SELECT 1` on the same clones woken",
        "| **wake over TLS**",
        "| TLS login → `SELECT 1` on the same clones woken",
        "| reset: ",
        "| reset claiming a warm clone",
    ] {
        let found = row(&report, prefix);
        assert_eq!(found[2], "2", "{report}");
        let (median, p95) = (millis(&found[3]), millis(&found[4]));
        assert!(median > 0.0 && p95 >= median, "{found:?}");
    }
    assert_eq!(row(&report, "| `GET /status` with 3 clones, 2 of them stopped")[2], "5");
    // Only the warm-up clone ran while the two timed ones were stopped.
    assert!(report.contains("With the 2 clones stopped, 1 data directories"), "{report}");
    assert!(report.contains("3 clones on one host"), "{report}");
    assert!(report.contains("2 of them stopped, 1 running"), "{report}");
    let pss = row(&report, "| PSS of a running clone's processes");
    assert!(number(&pss[2], "MiB") > 0.0, "{pss:?}");
    for prefix in [
        "| `GET /status` (5 requests)",
        "| `GET /clones` (5 requests)",
        "| background collection round (`dblab_scrape_duration_seconds`) (",
    ] {
        let found = row(&report, prefix);
        assert!(millis(&found[2]) > 0.0, "{found:?}");
    }
    assert_cleaned_up(&dir);
}

/// Runs `scion-bench` with `args` on free ports in `dir`; its report, once it succeeded.
pub(crate) async fn run_bench(dir: &TestDir, args: &[&str]) -> String {
    // The API's port, the clones' (a woken clone holds two) and the local one.
    let ports = free_port_range(24);
    let server = server_bin().await;
    #[allow(
        clippy::disallowed_methods,
        reason = "the test runs the harness binary like a user would"
    )]
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scion-bench"))
        .args(args)
        .arg("--port-from")
        .arg(ports.start().to_string())
        .arg("--dir")
        .arg(dir.path())
        .arg("--server-bin")
        .arg(&server)
        .output()
        .expect("run scion-bench");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scion-bench failed:\n{stderr}\n{report}");
    report
}

/// Nothing left behind: no mount under the directory, and the run's temp dir removed.
pub(crate) fn assert_cleaned_up(dir: &TestDir) {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    let root = dir.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&root), "still mounted:\n{mounts}");
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read the run's directory")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The first table row starting with `prefix`, split into cells (index 0 is empty).
pub(crate) fn row(report: &str, prefix: &str) -> Vec<String> {
    report
        .lines()
        .find(|line| line.starts_with(prefix))
        .map(cells)
        .unwrap_or_else(|| panic!("no row starting {prefix:?}:\n{report}"))
}

pub(crate) fn cells(line: &str) -> Vec<String> {
    line.split('|').map(|cell| cell.trim().to_owned()).collect()
}

/// "12.3 ms" or "1.2 s" in milliseconds.
pub(crate) fn millis(cell: &str) -> f64 {
    if let Some(seconds) = cell.strip_suffix(" s") {
        return number(seconds, "") * 1000.0;
    }
    number(cell, "ms")
}

pub(crate) fn number(cell: &str, unit: &str) -> f64 {
    cell.trim()
        .trim_end_matches(unit)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number of {unit:?}"))
}

/// The `scion-server` binary: `SCION_SERVER_BIN` (scripts/test sets it), or built once into
/// this test's target directory.
async fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SCION_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_scion-bench"));
    let bin_dir = bench.parent().expect("the binary lives in a directory");
    let profile = match bin_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = bin_dir.parent().expect("the profile dir lives in the target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = exec::Cmd::new(cargo)
        .args(["build", "--quiet", "-p", "server", "--bin", "scion-server", "--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output_any_status()
        .await
        .expect("run cargo build -p server");
    assert!(output.status.success(), "cargo build -p server failed:\n{}", output.stderr_text());
    bin_dir.join("scion-server")
}
