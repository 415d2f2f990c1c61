//! CPU and memory of clone servers, read from `/proc` by the collector loop, for DBLab's
//! `dblab_clone_total_cpu_usage_percent`, `dblab_clone_avg_cpu_usage_percent` and
//! `dblab_clone_total_memory_usage_bytes` (DBLab reads them from `docker stats`).
//!
//! Memory is PSS summed over a server's processes, so shared buffers and shared libraries are
//! split among the processes that map them instead of being counted once per process. CPU is the
//! change of user plus system time between two collections. The tracker also keeps the pool's
//! snapshot bytes and compression the collection read, for the `dblab_disk_*` series that
//! `statvfs` cannot give.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// A running clone's written bytes are measured again once every this many rounds (of
/// [`crate::scheduler::COLLECT_INTERVAL`]) even when its server shows no writes.
pub(crate) const REMEASURE_EVERY: u32 = 20;

/// One clone's figures, as of the last collection.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CloneUsage {
    /// CPU used since the previous collection, in percent of one core; `None` on the first.
    pub(crate) cpu_percent: Option<f64>,
    /// PSS of all its processes, in bytes.
    pub(crate) memory_bytes: u64,
}

/// What one clone server's processes showed in one pass over `/proc`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ServerSample {
    /// User plus system time, clock ticks.
    ticks: u64,
    memory_bytes: u64,
    mark: WriteMark,
}

/// What a server has written, as its processes count it (`write_bytes` of `/proc/<pid>/io`:
/// bytes sent, or dirtied, towards storage), with the processes counted: when neither changed,
/// its dataset did not either, unless a session wrote and ended in between.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WriteMark {
    pids: Vec<u32>,
    written: u64,
}

/// When a clone's written bytes were last measured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SizeMark {
    /// The dataset measured (a reset moves the clone to another).
    dataset: String,
    /// Its server's write mark then; `None` when no server of it was held.
    mark: Option<WriteMark>,
}

/// What the previous collection saw, to turn CPU time into a rate and to skip measuring clones
/// that wrote nothing.
#[derive(Debug, Default)]
pub(crate) struct UsageTracker {
    previous: HashMap<String, (Instant, u64)>,
    pub(crate) latest: HashMap<String, CloneUsage>,
    sized: HashMap<String, SizeMark>,
    /// Rounds of [`UsageTracker::due_for_size`] so far: a running clone's periodic measure
    /// falls in the rounds of its own slot ([`slot`]).
    round: u64,
    /// The pool's snapshot bytes, logical size and compression ratio, as the last collection
    /// read them; `None` until one did.
    pub(crate) pool: Option<storage::PoolUsage>,
    /// When [`UsageTracker::pool`] was read.
    pool_mark: Option<PoolMark>,
}

/// When the pool's usage was last read: the snapshots then (by ID), and rounds since.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolMark {
    snapshots: Vec<String>,
    rounds: u32,
}

impl UsageTracker {
    /// Records the samples of every running clone taken at `now`; clones not listed are
    /// forgotten.
    pub(crate) fn record(&mut self, samples: &HashMap<String, ServerSample>, now: Instant) {
        let ticks_per_second = clock_ticks_per_second();
        let mut previous = HashMap::new();
        let mut latest = HashMap::new();
        for (id, sample) in samples {
            let ticks = sample.ticks;
            let cpu_percent = self.previous.get(id).and_then(|(then, before)| {
                let seconds = now.duration_since(*then).as_secs_f64();
                (seconds > 0.0 && ticks >= *before)
                    .then(|| (ticks - before) as f64 / ticks_per_second / seconds * 100.0)
            });
            previous.insert(id.clone(), (now, ticks));
            latest
                .insert(id.clone(), CloneUsage { cpu_percent, memory_bytes: sample.memory_bytes });
        }
        self.previous = previous;
        self.latest = latest;
    }

    /// Which of `clones` (ID and dataset) to measure this round, given their servers'
    /// `samples` (see [`remeasure`]); clones not listed are forgotten.
    pub(crate) fn due_for_size(
        &mut self,
        clones: &[(String, String)],
        samples: &HashMap<String, ServerSample>,
    ) -> HashSet<String> {
        let listed: HashSet<&String> = clones.iter().map(|(id, _)| id).collect();
        self.sized.retain(|id, _| listed.contains(id));
        self.round += 1;
        let mut due = HashSet::new();
        for (id, dataset) in clones {
            let current = samples.get(id).map(|sample| &sample.mark);
            let periodic = self.round % u64::from(REMEASURE_EVERY) == slot(id);
            let unchanged =
                self.sized.get(id).is_some_and(|last| !remeasure(last, dataset, current, periodic));
            if !unchanged {
                due.insert(id.clone());
            }
        }
        due
    }

    /// Notes that clone `id` was measured on `dataset` with its server's sample as in
    /// `samples`.
    pub(crate) fn sized(
        &mut self,
        id: &str,
        dataset: &str,
        samples: &HashMap<String, ServerSample>,
    ) {
        let mark = samples.get(id).map(|sample| sample.mark.clone());
        self.sized.insert(id.to_owned(), SizeMark { dataset: dataset.to_owned(), mark });
    }

    /// Whether to read the pool's usage this round, with `snapshots` (their IDs) in the pool:
    /// on btrfs it walks every snapshot's files, so only when the snapshots changed (a new one
    /// holds nothing alone yet, but a commit is usually what makes a clone's later writes the
    /// snapshot's alone) or after [`REMEASURE_EVERY`] rounds; a round not due counts one more.
    pub(crate) fn pool_due(&mut self, snapshots: &[String]) -> bool {
        match &mut self.pool_mark {
            Some(mark) if mark.snapshots == snapshots && mark.rounds + 1 < REMEASURE_EVERY => {
                mark.rounds += 1;
                false
            }
            _ => true,
        }
    }

    /// Keeps the pool's usage read with `snapshots` in the pool.
    pub(crate) fn pool_measured(&mut self, snapshots: Vec<String>, usage: storage::PoolUsage) {
        self.pool = Some(usage);
        self.pool_mark = Some(PoolMark { snapshots, rounds: 0 });
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

/// Whether a clone measured as `last` must be measured again on `dataset` when its server now
/// shows `current`: when it moved to another dataset, when its server wrote, started, stopped
/// or changed processes, and, while a server runs, in a `periodic` round (one of every
/// [`REMEASURE_EVERY`]). A clone without a server (stopped: 900 of 1,000 in a fleet mostly
/// asleep) is not measured again while it has none, since nothing writes to its dataset then;
/// the round its server stopped in measured what the stop wrote.
fn remeasure(last: &SizeMark, dataset: &str, current: Option<&WriteMark>, periodic: bool) -> bool {
    last.dataset != dataset || last.mark.as_ref() != current || (current.is_some() && periodic)
}

/// The round (modulo [`REMEASURE_EVERY`]) in which clone `id` is measured periodically: spread
/// by its ID, so that clones made together (a hundred started in a minute) are not all
/// walked again in the same round, which took seconds.
fn slot(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish() % u64::from(REMEASURE_EVERY)
}

/// Reads every clone server's processes (the postmaster and its children, found in one pass
/// over `/proc`: one per server would read all of `/proc` a thousand times at 1,000 clones),
/// their CPU time, PSS and written bytes. Blocking: run it off the async workers.
pub(crate) fn sample(postmasters: &[(String, u32)]) -> HashMap<String, ServerSample> {
    let wanted: HashSet<u32> = postmasters.iter().map(|(_, pid)| *pid).collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()) {
            if let Some(parent) = parent_of(pid).filter(|parent| wanted.contains(parent)) {
                children.entry(parent).or_default().push(pid);
            }
        }
    }
    postmasters
        .iter()
        .map(|(id, postmaster)| {
            let mut pids = vec![*postmaster];
            pids.extend(children.remove(postmaster).unwrap_or_default());
            pids.sort_unstable();
            let sample = ServerSample {
                ticks: pids.iter().filter_map(|pid| cpu_ticks(*pid)).sum(),
                memory_bytes: pids.iter().filter_map(|pid| pss_bytes(*pid)).sum(),
                mark: WriteMark {
                    written: pids.iter().filter_map(|pid| written_bytes(*pid)).sum(),
                    pids,
                },
            };
            (id.clone(), sample)
        })
        .collect()
}

/// The parent of a process (`/proc/<pid>/stat` field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; count from after it.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Bytes a process caused to be written to storage (`write_bytes` of `/proc/<pid>/io`).
fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|line| line.strip_prefix("write_bytes:")?.trim().parse().ok())
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
        let postmasters = [("self".to_owned(), pid)];
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        let first = sample(&postmasters);
        assert!(first["self"].mark.pids.contains(&pid));
        tracker.record(&first, start);
        assert!(tracker.latest["self"].memory_bytes > 0);
        assert_eq!(tracker.latest["self"].cpu_percent, None, "no rate without a previous sample");
        // Burn some CPU so the second sample has time to count.
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert_ne!(x, 1);
        tracker.record(&sample(&postmasters), Instant::now());
        let rate = tracker.latest["self"].cpu_percent.unwrap();
        assert!(rate >= 0.0, "{rate}");
        let (total, average, memory) = tracker.totals();
        assert_eq!(total, rate);
        assert_eq!(average, rate);
        assert!(memory > 0);
    }

    fn samples(entries: &[(&str, &[u32], u64)]) -> HashMap<String, ServerSample> {
        entries
            .iter()
            .map(|(id, pids, written)| {
                let mark = WriteMark { pids: pids.to_vec(), written: *written };
                ((*id).to_owned(), ServerSample { mark, ..ServerSample::default() })
            })
            .collect()
    }

    #[test]
    fn running_clones_made_together_are_not_measured_again_together() {
        let mut tracker = UsageTracker::default();
        let ids: Vec<String> = (0..100).map(|n| format!("fleet{n}")).collect();
        let clones = datasets(&ids.iter().map(String::as_str).collect::<Vec<_>>());
        let running: Vec<(String, Vec<u32>, u64)> =
            ids.iter().enumerate().map(|(n, id)| (id.clone(), vec![n as u32], 0)).collect();
        let running: Vec<(&str, &[u32], u64)> =
            running.iter().map(|(id, pids, written)| (id.as_str(), &pids[..], *written)).collect();
        let running = samples(&running);
        assert_eq!(tracker.due_for_size(&clones, &running).len(), 100, "all measured once");
        for (id, dataset) in &clones {
            tracker.sized(id, dataset, &running);
        }
        let mut times: HashMap<String, u32> = HashMap::new();
        let mut most = 0;
        for _ in 0..REMEASURE_EVERY {
            let due = tracker.due_for_size(&clones, &running);
            most = most.max(due.len());
            for id in due {
                *times.entry(id).or_default() += 1;
            }
        }
        assert!(times.len() == 100 && times.values().all(|n| *n == 1), "{times:?}");
        // 5 a round on average; all 100 at once is what the slots prevent.
        assert!(most <= 20, "{most} of 100 idle clones measured in one round");
    }

    #[test]
    fn the_pool_is_read_again_when_its_snapshots_change_or_after_a_while() {
        let mut tracker = UsageTracker::default();
        let usage = storage::PoolUsage {
            used_by_snapshots: 1,
            logical_used: Some(2),
            compress_ratio: Some(1.0),
        };
        let one = vec!["s1".to_owned()];
        assert!(tracker.pool_due(&one), "never read");
        assert!(tracker.pool_due(&one), "a failed read is tried again");
        tracker.pool_measured(one.clone(), usage);
        assert_eq!(tracker.pool, Some(usage));
        assert!(!tracker.pool_due(&one));
        let two = vec!["s1".to_owned(), "s2".to_owned()];
        assert!(tracker.pool_due(&two), "a commit changed the snapshots");
        tracker.pool_measured(two.clone(), usage);
        let mut rounds = 1;
        while !tracker.pool_due(&two) {
            rounds += 1;
            assert!(rounds <= REMEASURE_EVERY, "never read again");
        }
        assert_eq!(rounds, REMEASURE_EVERY);
    }

    fn datasets(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| ((*id).to_owned(), format!("branch/main/{id}/r0"))).collect()
    }

    #[test]
    fn only_clones_whose_servers_wrote_or_changed_processes_are_measured_again() {
        let mut tracker = UsageTracker::default();
        let clones = datasets(&["a", "b", "c", "stopped"]);
        let first = samples(&[("a", &[1, 2], 10), ("b", &[3, 4], 10), ("c", &[5, 6], 10)]);
        let due = tracker.due_for_size(&clones, &first);
        assert_eq!(due.len(), 4, "everything is measured once");
        for (id, dataset) in &clones {
            tracker.sized(id, dataset, &first);
        }
        // a wrote, b got a new session, c and the stopped clone did nothing.
        let second = samples(&[("a", &[1, 2], 20), ("b", &[3, 4, 7], 10), ("c", &[5, 6], 10)]);
        let due = tracker.due_for_size(&clones, &second);
        let mut due: Vec<&str> = due.iter().map(String::as_str).collect();
        due.sort_unstable();
        assert_eq!(due, ["a", "b"]);
        tracker.sized("a", &clones[0].1, &second);
        tracker.sized("b", &clones[1].1, &second);
        // Unchanged clones with a server are measured again once every REMEASURE_EVERY rounds
        // all the same; a stopped one, with no server to write to its dataset, is not.
        let mut measured = 0;
        for round in 0..3 * REMEASURE_EVERY {
            let due = tracker.due_for_size(&clones, &second);
            assert!(!due.contains("stopped"), "a stopped clone measured again in round {round}");
            measured += u32::from(due.contains("c"));
        }
        assert_eq!(measured, 3, "c once every {REMEASURE_EVERY} rounds");
        // Its stop (no server any more) and its reset (another dataset) are measured.
        let stopped = samples(&[("a", &[1, 2], 20), ("b", &[3, 4, 7], 10)]);
        assert!(tracker.due_for_size(&clones, &stopped).contains("c"), "c stopped");
        let reset = datasets(&["a", "b", "c", "stopped"])
            .into_iter()
            .map(|(id, dataset)| (id, dataset.replace("r0", "r1")))
            .collect::<Vec<_>>();
        assert_eq!(tracker.due_for_size(&reset, &second).len(), 4, "all moved to r1");
        // A destroyed clone is forgotten.
        tracker.due_for_size(&clones[..1], &second);
        assert_eq!(tracker.sized.len(), 1);
    }
}
