//! What a run is doing right now, published through a `tokio::sync::watch` channel so the
//! engine can show it (`/instance/retrieval`, `/status`) without asking the pipeline.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A stage of a run, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not started yet.
    Pending,
    /// Checking the source: reachable, credentials, version, databases.
    Probing,
    /// initdb and start of the temporary target instance.
    Preparing,
    /// Copying roles (globals) from the source.
    Roles,
    /// pg_dump into the dump location.
    Dumping,
    /// pg_restore (or psql for plain dumps) into the target.
    Restoring,
    /// pg_dump piped into pg_restore, with no dump on disk.
    Streaming,
    /// ANALYZE of the restored databases.
    Analyzing,
    /// Physical mode: a copy of the standby replays WAL (to a target, when given) and is
    /// promoted.
    Recovering,
    /// Query preprocessing and the preprocessing script.
    Preprocessing,
    /// Masking of personal data (`[retrieval.masking]`).
    Masking,
    /// `ALTER DATABASE … RENAME`.
    Renaming,
    /// CHECKPOINT and a clean stop of the target.
    Stopping,
    /// Physical mode: the initial copy of the whole cluster (pg_basebackup, pgBackRest, custom).
    Copying,
    /// Physical mode: making the copy a standby (recovery settings, hot-standby parameters).
    Configuring,
    /// Finished successfully.
    Finished,
    /// Finished with an error.
    Failed,
}

impl Stage {
    /// True for stages whose tools talk to the source, whose libpq errors mean the source.
    pub(crate) fn touches_source(self) -> bool {
        matches!(
            self,
            Stage::Probing | Stage::Roles | Stage::Dumping | Stage::Streaming | Stage::Copying
        )
    }

    /// The name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Probing => "probing",
            Stage::Preparing => "preparing",
            Stage::Roles => "roles",
            Stage::Dumping => "dumping",
            Stage::Restoring => "restoring",
            Stage::Streaming => "streaming",
            Stage::Analyzing => "analyzing",
            Stage::Recovering => "recovering",
            Stage::Preprocessing => "preprocessing",
            Stage::Masking => "masking",
            Stage::Renaming => "renaming",
            Stage::Stopping => "stopping",
            Stage::Copying => "copying",
            Stage::Configuring => "configuring",
            Stage::Finished => "finished",
            Stage::Failed => "failed",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a run's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// The current stage.
    pub stage: Stage,
    /// The database being worked on, when the stage works per database.
    pub database: Option<String>,
    /// Bytes done in this stage: dump directory size while dumping, target `base/` growth while
    /// restoring, bytes piped while streaming.
    pub bytes_done: u64,
    /// Bytes expected in this stage, when known (the dump's size while restoring).
    pub bytes_total: Option<u64>,
    /// The stage's average rate so far, in bytes per second, when it counts bytes.
    pub bytes_per_second: Option<u64>,
    /// Seconds left in this stage at that rate, when the total is known.
    pub eta_seconds: Option<u64>,
    /// Tables whose data is done in this stage (all databases so far).
    pub tables_done: u64,
    /// Tables with data in this stage, when known (from the archive's table of contents).
    pub tables_total: Option<u64>,
    /// When the run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the current stage started.
    pub stage_started_at: Option<DateTime<Utc>>,
    /// The error, once the run has failed.
    pub error: Option<String>,
    /// Once the run has finished: each database's bytes and tables (the counters above are
    /// then the run's totals).
    pub databases: Vec<crate::pipeline::DatabaseSummary>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            stage: Stage::Pending,
            database: None,
            bytes_done: 0,
            bytes_total: None,
            bytes_per_second: None,
            eta_seconds: None,
            tables_done: 0,
            tables_total: None,
            started_at: None,
            stage_started_at: None,
            error: None,
            databases: Vec::new(),
        }
    }
}

/// How one stage went: its duration and the last counters it reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTiming {
    /// The stage.
    pub stage: Stage,
    /// Its duration (summed when it ran more than once).
    pub duration: Duration,
    /// Its final `bytes_done`.
    pub bytes: u64,
    /// Its final `tables_done`.
    pub tables: u64,
}

/// The pipeline's side of the progress channel, plus each stage's record for the summary.
#[derive(Debug)]
pub(crate) struct Reporter {
    sender: watch::Sender<Progress>,
    stage_started: std::time::Instant,
    pub(crate) stages: Vec<StageTiming>,
}

impl Reporter {
    pub(crate) fn new(sender: watch::Sender<Progress>) -> Self {
        let now = Utc::now();
        sender.send_replace(Progress {
            started_at: Some(now),
            stage_started_at: Some(now),
            ..Progress::default()
        });
        Reporter { sender, stage_started: std::time::Instant::now(), stages: Vec::new() }
    }

    /// Enters `stage`: the counters restart, the previous stage's duration is recorded (added
    /// to, when a stage repeats).
    pub(crate) fn stage(&mut self, stage: Stage) {
        let previous = self.sender.borrow().stage;
        self.close_stage(previous);
        self.sender.send_modify(|progress| {
            progress.stage = stage;
            progress.database = None;
            progress.bytes_done = 0;
            progress.bytes_total = None;
            progress.bytes_per_second = None;
            progress.eta_seconds = None;
            progress.tables_done = 0;
            progress.tables_total = None;
            progress.stage_started_at = Some(Utc::now());
        });
        tracing::info!(%stage, "retrieval stage");
    }

    fn close_stage(&mut self, stage: Stage) {
        let elapsed = self.stage_started.elapsed();
        self.stage_started = std::time::Instant::now();
        if matches!(stage, Stage::Pending | Stage::Finished | Stage::Failed) {
            return;
        }
        let (bytes, tables) = {
            let progress = self.sender.borrow();
            (progress.bytes_done, progress.tables_done)
        };
        match self.stages.iter_mut().find(|seen| seen.stage == stage) {
            Some(seen) => {
                seen.duration += elapsed;
                seen.bytes += bytes;
                seen.tables += tables;
            }
            None => self.stages.push(StageTiming { stage, duration: elapsed, bytes, tables }),
        }
    }

    /// Reports `done` of `total` bytes in the current stage, with the stage's average rate and
    /// the time left at that rate.
    pub(crate) fn bytes(&self, done: u64, total: Option<u64>) {
        let elapsed = self.stage_started.elapsed().as_secs_f64();
        let rate = (elapsed >= 0.5).then(|| (done as f64 / elapsed) as u64);
        self.sender.send_modify(|progress| {
            progress.bytes_done = done;
            progress.bytes_total = total;
            progress.bytes_per_second = rate;
            progress.eta_seconds = match (total, rate) {
                (Some(total), Some(rate)) if rate > 0 => Some(total.saturating_sub(done) / rate),
                (Some(total), _) if done >= total => Some(0),
                _ => None,
            };
        });
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut Progress)) {
        self.sender.send_modify(change);
    }

    pub(crate) fn get(&self) -> Progress {
        self.sender.borrow().clone()
    }

    pub(crate) fn current(&self) -> Stage {
        self.sender.borrow().stage
    }

    pub(crate) fn finish(&mut self, error: Option<String>) {
        let stage = if error.is_some() { Stage::Failed } else { Stage::Finished };
        let previous = self.current();
        self.close_stage(previous);
        self.sender.send_modify(|progress| {
            progress.stage = stage;
            progress.error = error;
            progress.stage_started_at = Some(Utc::now());
        });
    }
}
