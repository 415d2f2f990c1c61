//! CPU and memory of clone servers, read from `/proc` by the collector loop, for DBLab's
//! `dblab_clone_total_cpu_usage_percent`, `dblab_clone_avg_cpu_usage_percent` and
//! `dblab_clone_total_memory_usage_bytes` (DBLab reads them from `docker stats`).
//!
//! Memory is PSS summed over a server's processes, so shared buffers and shared libraries are
//! split among the processes that map them instead of being counted once per process. CPU is the
//! change of user plus system time between two collections.

use std::collections::HashMap;
use std::time::Instant;

/// One clone's figures, as of the last collection.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CloneUsage {
    /// CPU used since the previous collection, in percent of one core; `None` on the first.
    pub(crate) cpu_percent: Option<f64>,
    /// PSS of all its processes, in bytes.
    pub(crate) memory_bytes: u64,
}

/// What the previous collection saw, to turn CPU time into a rate.
#[derive(Debug, Default)]
pub(crate) struct UsageTracker {
    previous: HashMap<String, (Instant, u64)>,
    pub(crate) latest: HashMap<String, CloneUsage>,
}

impl UsageTracker {
    /// Records the processes of every running clone at `now`; clones not listed are forgotten.
    pub(crate) fn record(&mut self, clones: &[(String, Vec<u32>)], now: Instant) {
        let ticks_per_second = clock_ticks_per_second();
        let mut previous = HashMap::new();
        let mut latest = HashMap::new();
        for (id, pids) in clones {
            let ticks: u64 = pids.iter().filter_map(|pid| cpu_ticks(*pid)).sum();
            let memory_bytes = pids.iter().filter_map(|pid| pss_bytes(*pid)).sum();
            let cpu_percent = self.previous.get(id).and_then(|(then, before)| {
                let seconds = now.duration_since(*then).as_secs_f64();
                (seconds > 0.0 && ticks >= *before)
                    .then(|| (ticks - before) as f64 / ticks_per_second / seconds * 100.0)
            });
            previous.insert(id.clone(), (now, ticks));
            latest.insert(id.clone(), CloneUsage { cpu_percent, memory_bytes });
        }
        self.previous = previous;
        self.latest = latest;
    }

    /// Σ CPU percent, mean CPU percent over clones with a rate, Σ memory.
    pub(crate) fn totals(&self) -> (f64, f64, u64) {
        let rates: Vec<f64> = self.latest.values().filter_map(|usage| usage.cpu_percent).collect();
        let total_cpu: f64 = rates.iter().sum();
        let average = if rates.is_empty() { 0.0 } else { total_cpu / rates.len() as f64 };
        let memory = self.latest.values().map(|usage| usage.memory_bytes).sum();
        (total_cpu, average, memory)
    }
}

fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        // Linux reports 100 everywhere that matters.
        _ => 100.0,
    }
}

/// User plus system time of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Proportional set size of a process, in bytes.
fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss(&rollup)
}

fn parse_pss(rollup: &str) -> Option<u64> {
    rollup.lines().find_map(|line| {
        let kib = line.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim();
        kib.parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let stat = "4242 (postgres: check pointer) S 1 4242 4242 0 -1 4194560 210 0 0 0 \
                    17 5 0 0 20 0 1 0 123 45678 90 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
    }

    #[test]
    fn parses_pss_from_smaps_rollup() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  20480 kB\nPss:   9216 kB\n";
        assert_eq!(parse_pss(rollup), Some(9216 * 1024));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn measures_this_process() {
        let pid = std::process::id();
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        tracker.record(&[("self".to_owned(), vec![pid])], start);
        assert!(tracker.latest["self"].memory_bytes > 0);
        assert_eq!(tracker.latest["self"].cpu_percent, None, "no rate without a previous sample");
        // Burn some CPU so the second sample has time to count.
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert_ne!(x, 1);
        tracker.record(&[("self".to_owned(), vec![pid])], Instant::now());
        let rate = tracker.latest["self"].cpu_percent.unwrap();
        assert!(rate >= 0.0, "{rate}");
        let (total, average, memory) = tracker.totals();
        assert_eq!(total, rate);
        assert_eq!(average, rate);
        assert!(memory > 0);
    }
}
