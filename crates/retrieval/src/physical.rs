//! Physical retrieval's initial copy: a whole cluster copied into an empty directory the engine
//! gives (the golden dataset's PGDATA), as the servers' OS user, then made a standby that
//! replays WAL from the source (streaming, with a replication slot) and/or an archive
//! (`restore_command`).
//!
//! - [`InitialCopy`] — the run: probe, copy with the configured tool, check the result, write
//!   the standby's settings through `postgres::standby`; progress on the `watch` channel
//!   (bytes of the total, rate, time left);
//! - `basebackup` — `pg_basebackup -X stream -C -S <slot>` and the slot's removal;
//! - `pgbackrest` — `pgbackrest restore --type=standby` from a repository;
//! - `custom` — any command line with `PGDATA` and the source's `PG*` variables;
//! - `meter` — the copy's progress: a tool's own report, or the directory's growth;
//! - [`promote`] — a crash-consistent copy of the standby made a promoted, prepared data
//!   directory, at the latest WAL or a point in time.
//!
//! Full refreshes copy into a new dataset while the previous standby keeps running, so every
//! dataset has its own slot ([`slot_name`]). The sync instance, snapshots and promotion are
//! the engine's; this module only leaves a directory that starts as a standby.

mod basebackup;
mod custom;
mod meter;
mod pgbackrest;
pub mod promote;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use exec::Cmd;
use postgres::{BinarySearch, OsUser, PgBinaries, PgMajor};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RetrievalConfig;
pub use crate::config::physical::{
    CustomConfig, PgBackRestConfig, PhysicalConfig, PhysicalTool, SyncConfig, slot_name,
};
use crate::error::{Error, Result, classify};
use crate::progress::{Progress, Reporter, Stage, StageTiming};
use crate::source::Source;

/// `application_name` of the standby's walreceiver on the source, when no slot names it.
pub const STANDBY_APPLICATION_NAME: &str = "scion_standby";

/// Where one initial copy writes.
#[derive(Debug, Clone)]
pub struct CopyTarget {
    /// The new golden dataset's PGDATA: missing or empty.
    pub data_dir: PathBuf,
    /// A private directory for the tools' logs (not inside `data_dir`).
    pub run_dir: PathBuf,
    /// The dataset's unique name (e.g. `data_20260101120000`): the slot is
    /// [`slot_name`]`(physical.slot, dataset)`.
    pub dataset: String,
    /// Where to keep the replication password for the standby's `primary_conninfo` (a libpq
    /// password file, owned by the servers' OS user, outside the data directory so no snapshot
    /// carries it). Without it, or without a source password, the conninfo names no password
    /// (a `.pgpass` of the OS user, certificates or trust must do).
    pub passfile: Option<PathBuf>,
}

/// The outcome of a successful copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopySummary {
    /// The tool that copied.
    pub tool: PhysicalTool,
    /// When the copy started: the data is at least this fresh once the standby has caught up.
    pub data_state_at: DateTime<Utc>,
    /// The copy's major.
    pub major: u8,
    /// The source's major, when a source is configured.
    pub source_major: Option<u8>,
    /// The replication slot the copy created on the source (pg_basebackup).
    pub slot: Option<String>,
    /// Bytes copied.
    pub bytes: u64,
    /// The standby's settings as written (no secret: the password is in the passfile).
    pub standby_settings: Vec<(String, String)>,
    /// How long each stage took.
    pub stages: Vec<StageTiming>,
    /// The whole run.
    pub total: Duration,
}

/// A validated physical configuration bound to binaries and an OS user, ready to copy.
#[derive(Debug)]
pub struct InitialCopy {
    config: RetrievalConfig,
    physical: PhysicalConfig,
    search: BinarySearch,
    user: OsUser,
    progress: watch::Sender<Progress>,
}

/// What a tool needs for one copy.
pub(crate) struct Step<'a> {
    pub(crate) copy: &'a InitialCopy,
    pub(crate) source: Option<&'a Source>,
    pub(crate) target: &'a CopyTarget,
    pub(crate) reporter: &'a Reporter,
    pub(crate) cancel: &'a CancellationToken,
}

impl Step<'_> {
    fn physical(&self) -> &PhysicalConfig {
        &self.copy.physical
    }

    fn user(&self) -> &OsUser {
        &self.copy.user
    }

    fn log_path(&self) -> PathBuf {
        self.target.run_dir.join("copy.log")
    }
}

impl InitialCopy {
    /// Validates `config`, which must be physical mode's, and binds it to the binaries in
    /// `search`, run as `user`.
    pub fn new(config: RetrievalConfig, search: BinarySearch, user: OsUser) -> Result<Self> {
        config.validate()?;
        let physical = config.physical.clone().ok_or_else(|| {
            Error::invalid("the initial copy needs [retrieval.physical] (physical mode)")
        })?;
        let (progress, _) = watch::channel(Progress::default());
        Ok(InitialCopy { config, physical, search, user, progress })
    }

    /// The physical section.
    pub fn physical(&self) -> &PhysicalConfig {
        &self.physical
    }

    /// Follows the progress of copies.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The replication slot a copy into `dataset` creates, if the tool creates one.
    pub fn slot_for(&self, dataset: &str) -> Option<String> {
        (self.physical.tool == PhysicalTool::PgBasebackup)
            .then(|| slot_name(&self.physical.slot, dataset))
    }

    /// Copies the source into `target.data_dir` and makes it a standby. On error, a slot the
    /// copy created is dropped, and the directory is left for the caller to discard.
    pub async fn run(
        &self,
        target: &CopyTarget,
        cancel: &CancellationToken,
    ) -> Result<CopySummary> {
        let started = Instant::now();
        let mut reporter = Reporter::new(self.progress.clone());
        let source = match self.config.source.as_ref().map(Source::new).transpose() {
            Ok(source) => source,
            Err(error) => {
                reporter.finish(Some(error.to_string()));
                return Err(error);
            }
        };
        let result = self.run_inner(source.as_ref(), target, cancel, &mut reporter).await;
        match result {
            Ok(mut summary) => {
                reporter.finish(None);
                summary.stages = reporter.stages.clone();
                summary.total = started.elapsed();
                info!(
                    tool = summary.tool.as_str(),
                    bytes = summary.bytes,
                    total_s = summary.total.as_secs_f64(),
                    "initial copy finished"
                );
                Ok(summary)
            }
            Err(error) => {
                if let (Some(source), Some(slot)) = (&source, self.slot_for(&target.dataset))
                    && let Err(drop_error) = basebackup::drop_slot(
                        &self.search,
                        source,
                        &slot,
                        &CancellationToken::new(),
                    )
                    .await
                {
                    warn!(%drop_error, slot, "drop the slot of a failed copy");
                }
                reporter.finish(Some(error.to_string()));
                warn!(%error, kind = error.kind(), "initial copy failed");
                Err(error)
            }
        }
    }

    async fn run_inner(
        &self,
        source: Option<&Source>,
        target: &CopyTarget,
        cancel: &CancellationToken,
        reporter: &mut Reporter,
    ) -> Result<CopySummary> {
        reporter.stage(Stage::Probing);
        let source_major = match source {
            Some(source) => {
                let psql = newest_tool(&self.search, "psql", None)?;
                let probe = source.probe(psql.clone(), cancel).await?;
                // Checked before the copy, which may take hours: the standby is that major, and
                // it needs every extension's files the source's databases use.
                let binaries = self.server_binaries(probe.major)?;
                let databases: Vec<String> =
                    probe.databases.iter().map(|database| database.name.clone()).collect();
                match crate::extensions::preflight(
                    source,
                    psql,
                    &databases,
                    &self.search,
                    &binaries,
                    cancel,
                )
                .await
                {
                    Ok(_) => {}
                    Err(error @ (Error::ExtensionsMissing { .. } | Error::Cancelled { .. })) => {
                        return Err(error);
                    }
                    // A replication role may not read every database: the copy does not need
                    // to, so the check gives way rather than the copy.
                    Err(error) => warn!(%error, "the source's extensions could not be checked"),
                }
                Some(probe.major)
            }
            None => None,
        };
        prepare_dir(&target.data_dir, &self.user)?;
        std::fs::create_dir_all(&target.run_dir)
            .map_err(|error| Error::io("create run directory", &target.run_dir, error))?;

        reporter.stage(Stage::Copying);
        let data_state_at = Utc::now();
        let step = Step { copy: self, source, target, reporter, cancel };
        let slot = self.slot_for(&target.dataset);
        let bytes = match self.physical.tool {
            PhysicalTool::PgBasebackup => {
                let source = source.ok_or_else(|| {
                    Error::invalid("physical.tool = \"pg_basebackup\" needs [retrieval.source]")
                })?;
                let tool = newest_tool(&self.search, "pg_basebackup", source_major)?;
                let slot = slot.as_deref().unwrap_or(&self.physical.slot);
                basebackup::copy(&step, source, &tool, slot).await?
            }
            PhysicalTool::PgBackRest => pgbackrest::restore(&step).await?,
            PhysicalTool::Custom => custom::run(&step).await?,
        };
        let major = PgMajor::of_data_dir(&target.data_dir).map_err(|error| Error::Failed {
            stage: Stage::Copying,
            stderr_tail: format!(
                "the {} copy left no data directory in {}: {error}",
                self.physical.tool.as_str(),
                target.data_dir.display()
            ),
        })?;
        if let Some(source_major) = source_major
            && source_major != major
        {
            return Err(Error::UnsupportedVersion {
                detail: format!(
                    "the copy holds PostgreSQL {major} data but the source runs {source_major}"
                ),
            });
        }
        self.server_binaries(major)?;
        // A custom tool may have left files of other owners; the server needs them all.
        self.user.own_data_dir(&target.data_dir).map_err(|error| postgres_error(&error))?;

        reporter.stage(Stage::Configuring);
        // The copy's totals stay in view until the end: configuring takes a moment, and a
        // finished copy then shows what it copied.
        reporter.bytes(bytes, Some(bytes));
        let standby = self.standby_config(source, target, slot.as_deref())?;
        let files =
            postgres::standby::configure(&self.search, &target.data_dir, &self.user, &standby)
                .await
                .map_err(|error| postgres_error(&error))?;
        Ok(CopySummary {
            tool: self.physical.tool,
            data_state_at,
            major: major.number(),
            source_major: source_major.map(PgMajor::number),
            slot,
            bytes,
            standby_settings: files.settings,
            stages: Vec::new(),
            total: Duration::ZERO,
        })
    }

    /// The standby's recovery settings: streaming from the source when one is configured
    /// (through the copy's slot, for pg_basebackup), the archive's `restore_command`, and the
    /// sync instance's settings. The password goes to the passfile.
    fn standby_config(
        &self,
        source: Option<&Source>,
        target: &CopyTarget,
        slot: Option<&str>,
    ) -> Result<postgres::standby::StandbyConfig> {
        let primary_conninfo = match source {
            Some(source) => {
                let application_name = slot.unwrap_or(STANDBY_APPLICATION_NAME);
                let mut extra = vec![("application_name", application_name.to_owned())];
                if let (Some(path), Some(password)) = (&target.passfile, source.password()) {
                    postgres::standby::write_passfile(path, &self.user, password)
                        .map_err(|error| postgres_error(&error))?;
                    extra.push(("passfile", path.to_string_lossy().into_owned()));
                }
                let extra: Vec<(&str, &str)> =
                    extra.iter().map(|(key, value)| (*key, value.as_str())).collect();
                Some(source.conninfo_with(&source.connection_database(), &extra))
            }
            None => None,
        };
        // pgBackRest writes its own archive-get command unless one is configured.
        let restore_command = self.physical.effective_restore_command().map(str::to_owned);
        Ok(postgres::standby::StandbyConfig {
            primary_conninfo,
            primary_slot_name: slot.map(str::to_owned),
            restore_command,
            settings: self.physical.sync.configs.clone(),
        })
    }

    /// Drops the replication slot `slot` on the source (a no-op when it is gone); the engine
    /// calls it when the dataset whose standby used it is destroyed, after stopping that
    /// standby (an active slot cannot be dropped). Returns whether a slot was dropped.
    pub async fn drop_slot(&self, slot: &str, cancel: &CancellationToken) -> Result<bool> {
        let source = self.source()?;
        basebackup::drop_slot(&self.search, &source, slot, cancel).await
    }

    /// Whether `slot` exists on the source.
    pub async fn slot_exists(&self, slot: &str, cancel: &CancellationToken) -> Result<bool> {
        let source = self.source()?;
        basebackup::slot_exists(&self.search, &source, slot, cancel).await
    }

    fn server_binaries(&self, major: PgMajor) -> Result<PgBinaries> {
        self.search.locate(major).map_err(|error| Error::ToolMissing {
            tool: format!("PostgreSQL {major} server"),
            detail: error.to_string(),
        })
    }

    fn source(&self) -> Result<Source> {
        let config = self.config.source.as_ref().ok_or_else(|| {
            Error::invalid("replication slots live on [retrieval.source], which is not set")
        })?;
        Source::new(config)
    }
}

/// Makes `data_dir` an empty directory owned by `user`, mode 0700.
fn prepare_dir(data_dir: &Path, user: &OsUser) -> Result<()> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Failed {
                    stage: Stage::Copying,
                    stderr_tail: format!(
                        "the initial copy's target {} is not empty: the engine gives each copy a new dataset",
                        data_dir.display()
                    ),
                });
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|error| Error::io("create the data directory", data_dir, error))?;
        }
        Err(error) => return Err(Error::io("read the data directory", data_dir, error)),
    }
    user.own_dir(data_dir, 0o700).map_err(|error| postgres_error(&error))
}

/// The client tool `name` of `major` when installed, else of the newest installed major at
/// least as new (client tools read older servers).
pub(crate) fn newest_tool(
    search: &BinarySearch,
    name: &str,
    major: Option<PgMajor>,
) -> Result<PathBuf> {
    let installed: Vec<PgBinaries> = search.installed();
    let own = major
        .and_then(|major| installed.iter().find(|binaries| binaries.major() == major))
        .and_then(|binaries| binaries.tool(name).ok());
    own.or_else(|| {
        installed
            .iter()
            .rev()
            .filter(|binaries| major.is_none_or(|major| binaries.major() >= major))
            .find_map(|binaries| binaries.tool(name).ok())
    })
    .ok_or_else(|| Error::ToolMissing {
        tool: name.to_owned(),
        detail: match major {
            Some(major) => format!("no PostgreSQL {major} or newer installation has it"),
            None => "no PostgreSQL installation has it".to_owned(),
        },
    })
}

/// Maps an error of `postgres` (data directory, settings, pg_controldata).
fn postgres_error(error: &postgres::Error) -> Error {
    crate::target::target_error(Stage::Configuring, error)
}

/// A tool run as the servers' OS user, with a clean environment and the engine's `PATH` (so
/// the programs validation found are the ones that run), in a session of its own, so that a
/// cancelled run stops everything the tool started.
pub(crate) fn tool_command(program: impl AsRef<Path>, user: &OsUser) -> Cmd {
    Cmd::new(program)
        .new_session()
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()))
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .user(user.uid, user.gid)
        .current_dir("/")
}

/// Runs a copying tool to its end with its output in the log; `parse` turns each new piece of
/// output into `(done, total)` when it reports progress. The meter then reports directory
/// growth when the tool says nothing.
pub(crate) async fn run_tool(
    step: &Step<'_>,
    cmd: Cmd,
    mut parse: impl FnMut(&str) -> Option<(u64, Option<u64>)>,
    total: Option<u64>,
    measure_dir: bool,
) -> Result<u64> {
    let meter = meter::Meter::new(step.reporter, total);
    let log_path = step.log_path();
    let finished = {
        let running = crate::run::run_logged(cmd, &log_path, Stage::Copying, step.cancel, |text| {
            if let Some((done, total)) = parse(text) {
                meter.report(done, total);
            }
        });
        tokio::pin!(running);
        loop {
            tokio::select! {
                finished = &mut running => break finished?,
                () = tokio::time::sleep(crate::run::PROGRESS_TICK), if measure_dir => {
                    meter.report(crate::archive::size_of(&step.target.data_dir), None);
                }
            }
        }
    };
    if !finished.status.success() {
        return Err(classify(Stage::Copying, None, &finished.log));
    }
    let copied = crate::archive::size_of(&step.target.data_dir);
    Ok(meter.finish(copied))
}
