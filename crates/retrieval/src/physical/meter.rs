//! The initial copy's progress: what a tool reports of its own (pg_basebackup's `--progress`
//! kilobytes, pgBackRest's percentage of the backup's size), or the target directory's growth
//! for tools that report nothing; the rate and the time left come from `Reporter::bytes`.

use std::sync::{Mutex, PoisonError};

use crate::progress::Reporter;

/// Progress of one copy; reported to from the tool's output and from the directory's size,
/// both while the tool runs, hence the interior mutability (a mutex, so that the engine's
/// task running a copy may move between threads).
pub(crate) struct Meter<'a> {
    reporter: &'a Reporter,
    /// Bytes done and the total, if known.
    state: Mutex<(u64, Option<u64>)>,
}

impl<'a> Meter<'a> {
    /// A meter with the total known beforehand, if any.
    pub(crate) fn new(reporter: &'a Reporter, total: Option<u64>) -> Self {
        reporter.bytes(0, total);
        Meter { reporter, state: Mutex::new((0, total)) }
    }

    /// A report: `done` bytes, and the tool's own total when it tells one. Totals are
    /// estimates (a backup's size before its WAL, the source's databases) that the copy may
    /// pass; then the total grows with it.
    pub(crate) fn report(&self, done: u64, total: Option<u64>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if total.is_some() {
            state.1 = total;
        }
        // Never backwards, and never past the total.
        state.0 = state.0.max(done);
        let done = state.0;
        let total = state.1.map(|total| total.max(done));
        drop(state);
        self.reporter.bytes(done, total);
    }

    /// The copy is done and `copied` bytes are in the directory: that is the total it turned
    /// out to be (estimates are before the copy, and streamed WAL is on top of them).
    pub(crate) fn finish(self, copied: u64) -> u64 {
        let copied = copied.max(self.state.lock().unwrap_or_else(PoisonError::into_inner).0);
        self.reporter.bytes(copied, Some(copied));
        copied
    }
}

/// pg_basebackup's `--progress` line `   1234/5678 kB (21%), 0/1 tablespace …` as bytes; the
/// last such line of `text`.
pub(crate) fn basebackup_progress(text: &str) -> Option<(u64, Option<u64>)> {
    text.lines().rev().find_map(|line| {
        let (numbers, _) = line.trim_start().split_once(" kB (")?;
        let (done, total) = numbers.split_once('/')?;
        let done: u64 = done.trim().parse().ok()?;
        let total: u64 = total.trim().parse().ok()?;
        Some((done * 1024, Some(total * 1024)))
    })
}

/// The percentage of pgBackRest's last `restore file … (440KB, 12.34%)` detail line of `text`.
pub(crate) fn pgbackrest_percent(text: &str) -> Option<f64> {
    text.lines().rev().filter(|line| line.contains("restore file")).find_map(|line| {
        let end = line.find("%)")?;
        let start = line[..end].rfind([' ', '('])? + 1;
        line[start..end].parse::<f64>().ok().filter(|percent| (0.0..=100.0).contains(percent))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basebackup_progress() {
        let text = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
            0/30123 kB (0%), 0/1 tablespace (/tmp/x/data/backup_label )\n\
            30140/30140 kB (100%), 1/1 tablespace\n\
            pg_basebackup: base backup completed\n";
        assert_eq!(basebackup_progress(text), Some((30140 * 1024, Some(30140 * 1024))));
        assert_eq!(basebackup_progress("nothing here\n"), None);
    }

    #[test]
    fn parses_pgbackrest_percentages() {
        let text = "P01 DETAIL: restore file /d/base/1/1249 (440KB, 12.34%) checksum 1a2b\n\
            P01 DETAIL: restore file /d/base/1/1259 (120KB, 56.5%) checksum 3c4d\n\
            P00 INFO: write updated /d/postgresql.auto.conf\n";
        assert_eq!(pgbackrest_percent(text), Some(56.5));
        assert_eq!(pgbackrest_percent("P00 INFO: restore command begin\n"), None);
    }
}
