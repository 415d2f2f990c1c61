//! What the benchmarks measure with: elapsed milliseconds, nearest-rank percentiles, and what
//! the kernel reports about a process's memory and the machine's load.

use std::time::Instant;

/// Milliseconds since `start`.
pub fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `pct` of `samples`; 0 for no samples.
pub fn percentile(samples: &[f64], pct: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The 1-, 5- and 15-minute load averages as /proc/loadavg shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `key:  N kB` line of a /proc file, in KiB.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `Pss` from `/proc/<pid>/smaps_rollup`, in KiB (0 when the process is gone).
pub fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    kib_field(&text, "Pss:").unwrap_or(0)
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
