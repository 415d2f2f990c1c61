//! Samples and their summaries (nearest-rank percentiles), and what the kernel reports about
//! processes, memory and the machine's load.

use std::path::Path;

use test_support::measure::kib_field;
pub(crate) use test_support::measure::{load_average, millis, percentile, pss_kib};

/// `VmRSS` of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&text, "VmRSS:").unwrap_or(0)
}

/// `MemAvailable` and `MemTotal` from /proc/meminfo, in KiB.
pub(crate) fn memory_kib() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (kib_field(&text, "MemAvailable:").unwrap_or(0), kib_field(&text, "MemTotal:").unwrap_or(0))
}

/// PSS per data directory: every process whose working directory is a directory under `root`
/// (a postmaster and all its children run in their data directory) is summed into that
/// directory's total, in KiB.
pub(crate) fn pss_by_data_dir(root: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut totals: std::collections::BTreeMap<std::path::PathBuf, u64> = Default::default();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else { continue };
        if cwd.starts_with(root) {
            *totals.entry(cwd).or_default() += pss_kib(pid);
        }
    }
    totals.into_iter().collect()
}

/// Median and p95 of a series, for the tables.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Summary {
    pub(crate) fn of(samples: &[f64]) -> Summary {
        Summary {
            n: samples.len(),
            median: percentile(samples, 50),
            p95: percentile(samples, 95),
            p99: percentile(samples, 99),
            min: percentile(samples, 0),
            max: percentile(samples, 100),
        }
    }
}
