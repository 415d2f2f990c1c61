//! Logical retrieval's tools: plan the databases and pick the client tools (`plan`), dump them
//! and copy roles (`dump`), restore dumps (`restore`) or stream a dump into a restore (`stream`),
//! and VACUUM the result. The pipeline decides the order of the stages and owns the target
//! server; physical retrieval will be a sibling of this module.

mod dump;
mod plan;
pub(crate) mod replication;
mod restore;
mod stream;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use exec::Cmd;
use postgres::{BinarySearch, PgBinaries};
use tokio_util::sync::CancellationToken;

use crate::archive::{DumpFile, Toc};
use crate::config::{DatabaseConfig, RetrievalConfig};
use crate::error::{Error, Result, classify};
use crate::progress::{Reporter, Stage};
use crate::run::{Finished, spawn_error};
use crate::source::SourceDatabase;
use crate::target::Target;

pub(crate) use plan::{SourceLocales, lacks_icu};

/// The logical tools bound to a run's configuration and binaries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logical<'a> {
    pub(crate) config: &'a RetrievalConfig,
    pub(crate) search: &'a BinarySearch,
}

/// One database to restore, and how.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The database name in the source (or dump).
    pub(crate) name: String,
    pub(crate) filter: DatabaseConfig,
    /// How to create it when the dump does not (table-filtered dumps, plain SQL without CREATE).
    pub(crate) create: Option<SourceDatabase>,
    /// The dump, once there is one.
    pub(crate) dump: Option<DumpFile>,
    pub(crate) tables: u64,
    pub(crate) bytes: u64,
    /// The snapshot a continuous refresh's slot exported, which the dump reads.
    pub(crate) snapshot: Option<String>,
}

/// What the per-database steps of one stage share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step<'a> {
    pub(crate) tools: &'a Tools,
    pub(crate) target: &'a Target,
    pub(crate) reporter: &'a Reporter,
    pub(crate) cancel: &'a CancellationToken,
}

impl Job {
    pub(crate) fn dump_file(&self) -> Result<DumpFile> {
        self.dump.clone().ok_or_else(|| Error::Failed {
            stage: Stage::Restoring,
            stderr_tail: format!("no dump of {} to restore", self.name),
        })
    }

    pub(crate) fn is_full(&self) -> bool {
        self.filter.tables.is_empty() && self.filter.exclude_tables.is_empty()
    }
}

/// The client tools of one major.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) binaries: PgBinaries,
}

impl Tools {
    pub(crate) fn path(&self, tool: &str) -> Result<PathBuf> {
        self.binaries.tool(tool).map_err(|error| Error::ToolMissing {
            tool: tool.to_owned(),
            detail: error.to_string(),
        })
    }
}

impl Logical<'_> {
    /// `vacuumdb --all` with FREEZE and/or ANALYZE, as configured.
    pub(crate) async fn vacuum(
        &self,
        tools: &Tools,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let restore = &self.config.restore;
        let mode: &[&str] = match (restore.freeze, restore.analyze) {
            (true, true) => &["--freeze", "--analyze"],
            (true, false) => &["--freeze"],
            (false, _) => &["--analyze-only"],
        };
        let output = target
            .command(tools.path("vacuumdb")?)
            .args(mode)
            .args(["--all", "--quiet"])
            .arg(format!("--jobs={}", self.config.restore.parallel_jobs))
            .arg(format!("--host={}", target.socket_dir().display()))
            .arg(format!("--port={}", target.port))
            .arg(format!("--username={}", target.admin_role))
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| spawn_error(Stage::Analyzing, &error))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(classify(Stage::Analyzing, None, &output.stderr_text()))
        }
    }
}

pub(crate) fn job(name: &str, filter: DatabaseConfig, create: Option<SourceDatabase>) -> Job {
    Job { name: name.to_owned(), filter, create, dump: None, tables: 0, bytes: 0, snapshot: None }
}

pub(crate) fn reporter_tables(reporter: &Reporter) -> u64 {
    reporter.get().tables_done
}

pub(crate) fn reporter_bytes(reporter: &Reporter) -> u64 {
    reporter.get().bytes_done
}

/// Fails with the classified error when a tool exited unsuccessfully.
pub(crate) fn check(
    finished: &Finished,
    stage: Stage,
    database: &str,
    server_log: Option<&str>,
) -> Result<()> {
    if finished.status.success() {
        return Ok(());
    }
    let text = match server_log {
        Some(server_log) => format!("{}\n{server_log}", finished.log),
        None => finished.log.clone(),
    };
    Err(classify(stage, Some(database), &text))
}

/// The archive's table of contents with the database's own entries, which pg_restore lists
/// only with `--create` (see [`Toc`]).
pub(crate) async fn list(
    pg_restore: &Path,
    archive: &Path,
    cancel: &CancellationToken,
) -> Result<Toc> {
    let output = Cmd::new(pg_restore)
        .args(["--list", "--create"])
        .arg(archive)
        .env("TZ", "UTC")
        .cancel_on(cancel.clone())
        .output()
        .await
        .map_err(|error| spawn_error(Stage::Restoring, &error))?;
    Ok(Toc::new(output.stdout_text()))
}

pub(crate) fn dumps_created_at(jobs: &[Job], tocs: &[Option<Toc>]) -> DateTime<Utc> {
    jobs.iter()
        .zip(tocs)
        .filter_map(|(job, toc)| {
            toc.as_ref().and_then(Toc::created_at).or_else(|| {
                let path = &job.dump.as_ref()?.path;
                let modified = std::fs::metadata(path).ok()?.modified().ok()?;
                Some(DateTime::<Utc>::from(modified))
            })
        })
        .min()
        .unwrap_or_else(Utc::now)
}
