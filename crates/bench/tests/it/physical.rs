//! `scion-bench --physical` end to end at a tiny size: a pgbench scale-1 source, a streaming
//! and an archive-only `scion-server` on btrfs image pools, two samples of each figure. Checks
//! that every table has its rows with plausible numbers (non-zero, p95 not below the median,
//! points in time in the order of their WAL) and that nothing is left mounted; no timing
//! asserts.

use test_support::TestDir;

use crate::smoke::{assert_cleaned_up, cells, millis, run_bench};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_physical_run_reports_every_table_and_cleans_up() {
    let dir = TestDir::new("scion-bench-phys-");
    let report = run_bench(
        &dir,
        &[
            "--physical",
            "--sizes",
            "10MB",
            "--major",
            "16",
            "--physical-runs",
            "2",
            "--copy-runs",
            "1",
            "--pitr-wal",
            "1MB,4MB",
            "--archive-timeout",
            "1",
        ],
    )
    .await;

    let bare = row_with(&report, "| bare `pg_basebackup` |");
    let scion = row_with(&report, "| Scion's initial copy |");
    for copy in [&bare, &scion] {
        assert_eq!(copy[3], "1", "{report}");
        assert!(millis(&copy[4]) > 0.0 && millis(&copy[5]) >= millis(&copy[4]), "{report}");
    }
    assert_eq!(bare[8], "1.00×", "{report}");
    assert!(scion[8].ends_with('×'), "{report}");

    for mode in ["| streaming |", "| archive only, `archive_timeout = 1s` |"] {
        let fresh = row_with(&report, mode);
        assert_eq!(fresh[3], "2", "{report}");
        assert!(millis(&fresh[4]) > 0.0 && millis(&fresh[5]) >= millis(&fresh[4]), "{report}");
    }

    let cuts = rows_after(&report, "#### Snapshot cut");
    assert_eq!(cuts.len(), 1, "{report}");
    let cuts = &cuts[0];
    assert_eq!(cuts[2], "2", "{report}");
    assert!(millis(&cuts[3]) > 0.0 && millis(&cuts[4]) >= millis(&cuts[3]), "{report}");
    assert!(cuts[7].contains(" / ") && cuts[8].contains(" / "), "lag figures: {cuts:?}");

    let points = rows_after(&report, "#### A snapshot at a point in time");
    assert_eq!(points.len(), 2, "{report}");
    let wal: Vec<f64> =
        points.iter().map(|p| p[2].trim_end_matches(" MB").parse().unwrap()).collect();
    assert!(wal[0] >= 1.0 && wal[1] >= 4.0, "WAL per point: {wal:?}");
    for point in &points {
        assert!(millis(&point[3]) > 0.0 && millis(&point[4]) > 0.0, "{point:?}");
    }
    assert!(report.contains("load average"), "{report}");

    assert_cleaned_up(&dir);
}

/// The data rows of the first table after the heading `heading`.
fn rows_after(report: &str, heading: &str) -> Vec<Vec<String>> {
    report
        .lines()
        .skip_while(|line| !line.starts_with(heading))
        .skip_while(|line| !line.starts_with("| --- "))
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .map(cells)
        .collect()
}

/// The first table row containing `cell`.
fn row_with(report: &str, cell: &str) -> Vec<String> {
    report
        .lines()
        .find(|line| line.starts_with('|') && line.contains(cell))
        .map(cells)
        .unwrap_or_else(|| panic!("no row with {cell:?}:\n{report}"))
}
