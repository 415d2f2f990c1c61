//! Samples and their summaries (nearest-rank percentiles), and what the kernel reports about
//! processes, memory and the machine's load.

use std::path::Path;
use std::time::Instant;

/// Milliseconds since `start`.
pub(crate) fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `pct` of `samples`; 0 for no samples.
pub(crate) fn percentile(samples: &[f64], pct: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The 1-, 5- and 15-minute load averages as /proc/loadavg shows them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `key:  N kB` line of a /proc file, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `Pss` from /proc/<pid>/smaps_rollup, in KiB (0 when the process is gone).
pub(crate) fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    kib_field(&text, "Pss:").unwrap_or(0)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 50), 50.0);
        assert_eq!(percentile(&samples, 95), 95.0);
        assert_eq!(percentile(&samples, 0), 1.0);
        assert_eq!(percentile(&samples, 100), 100.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }

    #[test]
    fn kib_fields_parse() {
        let text = "Rss:    100 kB\nPss:     42 kB\n";
        assert_eq!(kib_field(text, "Pss:"), Some(42));
        assert_eq!(kib_field(text, "Swap:"), None);
    }
}
