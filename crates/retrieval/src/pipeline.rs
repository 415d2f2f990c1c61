//! One retrieval run, stage by stage: probe the source; dump each database while a temporary
//! target is initdb'd and started (or start it, then stream); copy roles; restore; preprocess;
//! vacuum (freeze, analyze); rename; checkpoint; stop cleanly.
//!
//! This module decides the order of the stages and what outlives a failing one; the tools are
//! in `logical` and the temporary target server in `target`. The run stops the
//! target on every path out, cleanly on success (then the data directory is synced once) and
//! immediately on failure. On failure the data directory is left as it is for the engine to
//! discard: it must never be snapshotted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use exec::Cmd;
use postgres::{BinarySearch, Instance, OsUser, PgBinaries, PgMajor, StopMode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::physical::slot_name;
use crate::config::{RetrievalConfig, SourceConfig};
use crate::error::{Error, Result};
use crate::logical::replication::{self, DropPublications, ExportedSlot, Replication};
use crate::logical::{Job, Logical, SourceLocales, Step, Tools, dumps_created_at};
use crate::prepare;
use crate::progress::{Progress, Reporter, Stage, StageTiming};
use crate::source::Source;
pub use crate::target::{DEFAULT_ADMIN_ROLE, Target};
use crate::target::{STOP_STEP, start_target, target_error};

/// The outcome of a successful run (kept by the engine across restarts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// When the data was read from the source: the start of the first dump (for existing dumps,
    /// the archive's creation time, or the file's modification time for plain SQL).
    pub data_state_at: DateTime<Utc>,
    /// The source's major, for live sources.
    pub source_major: Option<u8>,
    /// The target's major.
    pub target_major: u8,
    /// The major of the pg_dump/pg_restore used.
    pub tools_major: u8,
    /// The databases now in the target.
    pub databases: Vec<DatabaseSummary>,
    /// Tables with data restored, all databases.
    pub tables: u64,
    /// Bytes dumped (dump size) or streamed.
    pub bytes: u64,
    /// How long each stage took.
    pub stages: Vec<StageTiming>,
    /// The whole run.
    pub total: Duration,
    /// Things that did not fail the run but deserve a look (ignored restore errors, role
    /// statements that failed, tablespaces left out, newer tools than asked for).
    pub warnings: Vec<String>,
    /// Continuous refresh: each database's slot on the source and publication, which the
    /// engine drops with the data.
    #[serde(default)]
    pub replication: Vec<Replication>,
    /// How many problems the warnings stand for: each restore error ignored counts once
    /// (pg_restore's own count), every other warning once.
    pub warning_count: u64,
    /// What masking rewrote, when `[retrieval.masking]` changed data.
    #[serde(default)]
    pub masking: Option<crate::masking::MaskingRun>,
}

/// How many warning lines a report shows ([`Summary::warning_lines`]).
pub const WARNING_LINES: usize = 10;
/// The longest warning line a report shows, in bytes; longer ones are cut.
const WARNING_LINE_BYTES: usize = 300;

impl Summary {
    /// The first `limit` lines of the warnings, each cut to a readable length.
    pub fn warning_lines(&self, limit: usize) -> Vec<String> {
        self.warnings
            .iter()
            .flat_map(|warning| warning.lines())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .take(limit)
            .map(|line| {
                if line.len() <= WARNING_LINE_BYTES {
                    return line.to_owned();
                }
                let mut end = WARNING_LINE_BYTES;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &line[..end])
            })
            .collect()
    }
}

/// The problems `warnings` stand for: a restore's warning ends with pg_restore's own count of
/// the errors it ignored ("errors ignored on restore: 3").
fn count_warnings(warnings: &[String]) -> u64 {
    warnings
        .iter()
        .map(|warning| {
            warning
                .rsplit_once("errors ignored on restore:")
                .and_then(|(_, count)| count.split_whitespace().next()?.parse::<u64>().ok())
                .filter(|count| *count > 0)
                .unwrap_or(1)
        })
        .sum()
}

/// One database of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSummary {
    /// Its name in the target (after renames).
    pub name: String,
    /// Its name in the source (or dump file).
    pub source_name: String,
    /// Tables with data.
    pub tables: u64,
    /// Bytes of its dump (or streamed).
    pub bytes: u64,
}

/// A validated configuration bound to binaries and an OS user, ready to run.
#[derive(Debug)]
pub struct Pipeline {
    config: RetrievalConfig,
    search: BinarySearch,
    user: OsUser,
    progress: watch::Sender<Progress>,
}

/// State that outlives a failing stage: what must be cleaned up.
#[derive(Debug, Default)]
struct RunState {
    instance: Option<Instance>,
    warnings: Vec<String>,
    created_dumps: Vec<PathBuf>,
    /// Continuous refresh's slots (and publications) on the source, named before they are
    /// made: a failed run drops them.
    replication: Vec<Replication>,
}

impl Pipeline {
    /// Validates `config` and binds it to the binaries in `search`, run as `user`.
    pub fn new(config: RetrievalConfig, search: BinarySearch, user: OsUser) -> Result<Self> {
        config.validate()?;
        if config.is_physical() {
            // Running the logical stages on a physical configuration would dump every database.
            return Err(Error::invalid(
                "[retrieval.physical] is physical mode, which the logical pipeline does not run: its initial copy is retrieval::InitialCopy",
            ));
        }
        let (progress, _) = watch::channel(Progress::default());
        Ok(Pipeline { config, search, user, progress })
    }

    /// The configuration.
    pub fn config(&self) -> &RetrievalConfig {
        &self.config
    }

    /// Follows the progress of runs (the latest state; cheap to clone and to poll).
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Runs the whole retrieval into `target`. On error, the temporary instance is stopped and
    /// the data directory is left for the caller to discard.
    pub async fn run(&self, target: &Target, cancel: &CancellationToken) -> Result<Summary> {
        let started = Instant::now();
        let mut reporter = Reporter::new(self.progress.clone());
        let mut state = RunState::default();
        let result = self.run_inner(target, cancel, &mut reporter, &mut state).await;
        if let Some(instance) = state.instance.take() {
            // Only a failed run gets here with a live instance; its data is discarded anyway.
            if let Err(error) = instance.stop(StopMode::Immediate, STOP_STEP).await {
                warn!(%error, "stop the temporary target after a failure");
            }
        }
        if result.is_err() && !state.replication.is_empty() {
            for error in
                self.drop_replication(&state.replication, DropPublications::CreatedByRun).await
            {
                warn!(%error, "drop a failed run's replication slot or publication on the source");
            }
        }
        match result {
            Ok(mut summary) => {
                reporter.finish(None);
                summary.replication = std::mem::take(&mut state.replication);
                summary.stages = reporter.stages.clone();
                summary.total = started.elapsed();
                summary.warnings = state.warnings;
                summary.warning_count = count_warnings(&summary.warnings);
                // What the run did stays readable after it: its totals, not the last stage's.
                reporter.update(|progress| {
                    progress.bytes_done = summary.bytes;
                    progress.bytes_total = Some(summary.bytes);
                    progress.tables_done = summary.tables;
                    progress.tables_total = Some(summary.tables);
                    progress.database = None;
                    progress.databases = summary.databases.clone();
                });
                if !summary.warnings.is_empty() {
                    warn!(
                        count = summary.warning_count,
                        first = %summary.warning_lines(WARNING_LINES).join(" | "),
                        "retrieval finished with warnings"
                    );
                }
                info!(
                    databases = summary.databases.len(),
                    tables = summary.tables,
                    bytes = summary.bytes,
                    total_s = summary.total.as_secs_f64(),
                    "retrieval finished"
                );
                Ok(summary)
            }
            Err(error) => {
                reporter.finish(Some(error.to_string()));
                warn!(%error, kind = error.kind(), "retrieval failed");
                Err(error)
            }
        }
    }

    async fn run_inner(
        &self,
        target: &Target,
        cancel: &CancellationToken,
        reporter: &mut Reporter,
        state: &mut RunState,
    ) -> Result<Summary> {
        let config = &self.config;
        let logical = Logical { config, search: &self.search };
        reporter.stage(Stage::Probing);
        let target_major =
            PgMajor::new(config.target_major).map_err(|error| Error::invalid(error.to_string()))?;
        let target_binaries =
            self.search.locate(target_major).map_err(|error| Error::ToolMissing {
                tool: format!("PostgreSQL {target_major} server"),
                detail: error.to_string(),
            })?;
        let source = config.source.as_ref().map(Source::new).transpose()?;
        let (mut jobs, source_major, tools, source_locales) = match &source {
            Some(source) => {
                logical.plan_live(source, target_major, cancel, &mut state.warnings).await?
            }
            None => {
                let (jobs, source_major, tools) = logical.plan_files(target_major)?;
                (jobs, source_major, tools, SourceLocales::default())
            }
        };
        if let (Some(source), Some(source_major)) = (&source, source_major)
            && config.is_continuous()
        {
            replication::check_source(source, tools.path("psql")?, source_major.number(), cancel)
                .await?;
        }
        let mut carried = Vec::new();
        if let (Some(source), Some(source_major)) = (&source, source_major) {
            carried = self
                .check_source(
                    source,
                    source_major,
                    &jobs,
                    &tools,
                    &target_binaries,
                    cancel,
                    &mut state.warnings,
                )
                .await?;
        }
        let carried = &carried;

        std::fs::create_dir_all(&target.run_dir)
            .map_err(|error| Error::io("create run directory", &target.run_dir, error))?;
        let locale = logical
            .target_locale(source_locales, &jobs, &tools, target, cancel, &mut state.warnings)
            .await?;
        let locale = &locale;
        let databases = jobs.len();
        // The target server, started alike whichever way the data arrives.
        let start = || {
            start_target(&target_binaries, target, &self.user, config, databases, locale, carried)
        };
        let data_state_at = match &source {
            Some(source) if !config.dump.immediate_restore => {
                // initdb and the target's start need nothing from the dump: they run while
                // pg_dump does, and the stage is reported as dumping.
                reporter.stage(Stage::Dumping);
                let data_state_at = Utc::now();
                let step = Step { tools: &tools, target, reporter, cancel };
                let created = &mut state.created_dumps;
                let replications = &mut state.replication;
                let dumping = async {
                    for (index, job) in jobs.iter_mut().enumerate() {
                        let slot =
                            self.begin_replication(&step, source, job, index, replications).await?;
                        let dumped = logical.dump(&step, source, job, index, created).await;
                        ExportedSlot::released(slot, dumped).await?;
                    }
                    Ok::<(), Error>(())
                };
                let preparing = start();
                let (dumped, started) = tokio::join!(dumping, preparing);
                match (dumped, started) {
                    (Ok(()), Ok(instance)) => state.instance = Some(instance),
                    (Err(error), Ok(instance)) => {
                        state.instance = Some(instance);
                        return Err(error);
                    }
                    // A source-side failure of the dump says more than the target's.
                    (Err(error), Err(_)) | (Ok(()), Err(error)) => return Err(error),
                }
                if config.dump.roles {
                    reporter.stage(Stage::Roles);
                    logical.copy_roles(source, &tools, target, &mut state.warnings, cancel).await?;
                }
                reporter.stage(Stage::Restoring);
                let step = Step { tools: &tools, target, reporter, cancel };
                logical.restore_all(&step, &mut jobs, &mut state.warnings).await?;
                data_state_at
            }
            Some(source) => {
                reporter.stage(Stage::Preparing);
                state.instance = Some(start().await?);
                if config.dump.roles {
                    reporter.stage(Stage::Roles);
                    logical.copy_roles(source, &tools, target, &mut state.warnings, cancel).await?;
                }
                reporter.stage(Stage::Streaming);
                let data_state_at = Utc::now();
                let step = Step { tools: &tools, target, reporter, cancel };
                for (index, job) in jobs.iter_mut().enumerate() {
                    let slot = self
                        .begin_replication(&step, source, job, index, &mut state.replication)
                        .await?;
                    let streamed =
                        logical.stream(&step, source, job, index, &mut state.warnings).await;
                    ExportedSlot::released(slot, streamed).await?;
                }
                data_state_at
            }
            None => {
                reporter.stage(Stage::Preparing);
                state.instance = Some(start().await?);
                reporter.stage(Stage::Restoring);
                let step = Step { tools: &tools, target, reporter, cancel };
                let tocs = logical.restore_all(&step, &mut jobs, &mut state.warnings).await?;
                dumps_created_at(&jobs, &tocs)
            }
        };

        if let Some(source) = &source {
            for replication in &state.replication {
                replication::create_subscription(
                    source,
                    tools.path("psql")?,
                    target,
                    replication,
                    target_major.number(),
                    cancel,
                )
                .await?;
            }
        }

        let preprocessing = &config.preprocessing;
        if preprocessing.query_path.is_some()
            || preprocessing.inline.is_some()
            || preprocessing.script.is_some()
        {
            reporter.stage(Stage::Preprocessing);
            let psql = tools.path("psql")?;
            prepare::preprocess(preprocessing, &psql, target, cancel).await?;
        }
        // Continuous refresh masks each snapshot's copy instead: the golden copy keeps
        // applying the source's original rows.
        let masking = if config.is_continuous() {
            None
        } else {
            prepare::mask(config.masking.as_ref(), target, reporter, cancel).await?
        };
        // After preprocessing, so that the rows masking rewrote are frozen and counted too.
        if config.restore.analyze || config.restore.freeze {
            reporter.stage(Stage::Analyzing);
            logical.vacuum(&tools, target, cancel).await?;
        }
        let instance = state.instance.as_mut().ok_or_else(|| Error::Failed {
            stage: Stage::Renaming,
            stderr_tail: "the target instance is gone".to_owned(),
        })?;
        let admin =
            instance.admin().await.map_err(|error| target_error(Stage::Renaming, &error))?;
        if !config.database_rename.is_empty() {
            reporter.stage(Stage::Renaming);
            prepare::rename(admin.client(), &config.database_rename).await?;
        }

        reporter.stage(Stage::Stopping);
        admin.checkpoint().await.map_err(|error| target_error(Stage::Stopping, &error))?;
        drop(admin);
        if let Some(instance) = state.instance.take() {
            instance
                .stop(StopMode::Fast, STOP_STEP)
                .await
                .map_err(|error| target_error(Stage::Stopping, &error))?;
        }
        // The restore ran with fsync off: make the files durable once, now.
        Cmd::new("sync").arg("--file-system").arg(&target.data_dir).run().await.map_err(
            |error| Error::Failed { stage: Stage::Stopping, stderr_tail: error.to_string() },
        )?;
        if !config.dump.keep {
            for dump in state.created_dumps.drain(..) {
                let _ = std::fs::remove_dir_all(&dump);
            }
        }

        let databases: Vec<DatabaseSummary> = jobs
            .iter()
            .map(|job| DatabaseSummary {
                name: config
                    .database_rename
                    .get(&job.name)
                    .cloned()
                    .unwrap_or_else(|| job.name.clone()),
                source_name: job.name.clone(),
                tables: job.tables,
                bytes: job.bytes,
            })
            .collect();
        Ok(Summary {
            data_state_at,
            source_major: source_major.map(PgMajor::number),
            target_major: target_major.number(),
            tools_major: tools.binaries.major().number(),
            tables: databases.iter().map(|database| database.tables).sum(),
            bytes: databases.iter().map(|database| database.bytes).sum(),
            databases,
            stages: Vec::new(),
            total: Duration::ZERO,
            warnings: Vec::new(),
            warning_count: 0,
            replication: Vec::new(),
            masking,
        })
    }

    /// Continuous refresh, before `job`'s dump: its publication on the source, and its slot
    /// created with an exported snapshot that the dump then reads (`job.snapshot`). The slot is
    /// named in `replications` before it exists. `None` without continuous refresh.
    async fn begin_replication(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &mut Job,
        index: usize,
        replications: &mut Vec<Replication>,
    ) -> Result<Option<ExportedSlot>> {
        let Step { tools, target, cancel, .. } = *step;
        let Some(continuous) =
            self.config.continuous.as_ref().filter(|_| self.config.is_continuous())
        else {
            return Ok(None);
        };
        let psql = tools.path("psql")?;
        let publication = continuous.publication();
        let created =
            replication::ensure_publication(source, psql.clone(), &job.name, publication, cancel)
                .await?;
        let dataset = target.dataset.as_deref().unwrap_or("data");
        let slot = slot_name(&continuous.slot, &format!("{dataset}_{index}"));
        replications.push(Replication {
            database: job.name.clone(),
            slot: slot.clone(),
            publication: publication.0.to_owned(),
            publication_created: created,
            publication_owned: publication.1,
        });
        let exported =
            ExportedSlot::create(source, psql, &job.name, &slot, (&target.run_dir, index), cancel)
                .await?;
        info!(database = %job.name, %slot, snapshot = %exported.snapshot, "replication slot created; the dump reads its snapshot");
        job.snapshot = Some(exported.snapshot.clone());
        Ok(Some(exported))
    }

    /// Drops the slots a continuous run into `dataset` created on the source, for a run that
    /// was interrupted (the engine crashed) before its summary recorded them; returns their
    /// names. Nothing without continuous refresh.
    pub async fn drop_interrupted_slots(&self, dataset: &str) -> Result<Vec<String>> {
        let (Some(continuous), Some(source)) = (&self.config.continuous, &self.config.source)
        else {
            return Ok(Vec::new());
        };
        let source = Source::new(source)?;
        let psql = crate::physical::newest_tool(&self.search, "psql", None)?;
        replication::drop_slots_of(
            &source,
            psql,
            &continuous.slot,
            dataset,
            &CancellationToken::new(),
        )
        .await
    }

    /// Drops continuous refresh's slots on the source (a failed run's, or those of data the
    /// engine no longer keeps) and the publications `publications` names; returns every failure
    /// (a slot still in use fails: try again once its subscriber is gone). Not cancellable: a
    /// slot left behind would keep WAL on the source forever.
    pub async fn drop_replication(
        &self,
        replications: &[Replication],
        publications: DropPublications,
    ) -> Vec<Error> {
        match &self.config.source {
            Some(source) => {
                drop_replication(source, &self.search, replications, publications).await
            }
            None => Vec::new(),
        }
    }

    /// What the probe adds before any dump or restore: a source that uses an extension the
    /// target's install lacks is refused ([`crate::extensions`]), and so is one that needs ICU
    /// when the target's server is built without it (the restore would fail on the first ICU
    /// collation, after the whole dump); the source's tablespaces that `--no-tablespaces`
    /// leaves out and its preload libraries the target lacks become warnings. Returns the
    /// preload settings the target carries.
    #[allow(clippy::too_many_arguments, reason = "the run's parts, borrowed separately")]
    async fn check_source(
        &self,
        source: &Source,
        source_major: PgMajor,
        jobs: &[Job],
        tools: &Tools,
        target_binaries: &PgBinaries,
        cancel: &CancellationToken,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(String, String)>> {
        let psql = tools.path("psql")?;
        let names: Vec<String> = jobs.iter().map(|job| job.name.clone()).collect();
        let preload = crate::extensions::preflight(
            source,
            psql.clone(),
            &names,
            &self.search,
            target_binaries,
            cancel,
        )
        .await?;
        warnings.extend(preload.warnings(target_binaries));
        if crate::logical::lacks_icu(target_binaries)? {
            let needs = source.icu_needs(psql.clone(), source_major, &names, cancel).await?;
            if !needs.is_empty() {
                return Err(Error::icu_missing(target_binaries, needs.describe()));
            }
        }
        if self.config.restore.custom_options.iter().any(|option| option == "--no-tablespaces") {
            for tablespace in source.tablespaces(psql, cancel).await? {
                warnings.push(format!(
                    "tablespace {tablespace} is not carried (--no-tablespaces): what it holds on \
                     the source is restored into the target's default tablespace"
                ));
            }
        }
        Ok(preload.carried)
    }
}

/// Drops `replications`' slots on the source `source` describes, and the publications
/// `publications` names, whatever mode the engine runs now: the slots of continuous refresh
/// outlive it when it is turned off, and only the source's address is needed to drop them.
/// Returns every failure.
pub async fn drop_replication(
    source: &SourceConfig,
    search: &BinarySearch,
    replications: &[Replication],
    publications: DropPublications,
) -> Vec<Error> {
    if replications.is_empty() {
        return Vec::new();
    }
    let source = match Source::new(source) {
        Ok(source) => source,
        Err(error) => return vec![error],
    };
    let psql = match crate::physical::newest_tool(search, "psql", None) {
        Ok(psql) => psql,
        Err(error) => return vec![error],
    };
    replication::drop_replication(
        &source,
        psql,
        replications,
        publications,
        &CancellationToken::new(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(warnings: &[&str]) -> Summary {
        Summary {
            data_state_at: Utc::now(),
            source_major: None,
            target_major: 16,
            tools_major: 16,
            databases: Vec::new(),
            tables: 0,
            bytes: 0,
            stages: Vec::new(),
            total: Duration::ZERO,
            warnings: warnings.iter().map(|warning| (*warning).to_owned()).collect(),
            warning_count: 0,
            replication: Vec::new(),
            masking: None,
        }
    }

    #[test]
    fn each_ignored_restore_error_counts_once() {
        let warnings = summary(&[
            "shop: restore errors ignored: pg_restore: error: COPY failed for table \"a\"\n\
             pg_restore: error: could not execute query\npg_restore: warning: errors ignored on restore: 3",
            "tablespace archive is not carried (--no-tablespaces)",
            "roles: ERROR: role \"x\" already exists",
        ])
        .warnings;
        assert_eq!(count_warnings(&warnings), 5);
        assert_eq!(count_warnings(&[]), 0);
    }

    #[test]
    fn warning_lines_are_the_first_lines_cut_to_length() {
        let long = format!("{}é", "x".repeat(WARNING_LINE_BYTES - 1));
        let summary = summary(&["a\n\n  b  ", &long, "c\nd"]);
        let lines = summary.warning_lines(4);
        assert_eq!(lines[..2], ["a", "b"]);
        assert_eq!(lines[2], format!("{}…", "x".repeat(WARNING_LINE_BYTES - 1)));
        assert_eq!(lines[3], "c");
        assert_eq!(summary.warning_lines(10).len(), 5);
    }
}
