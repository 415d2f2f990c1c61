//! One retrieval run: probe the source; dump each database while a temporary target is
//! initdb'd and started (or start it, then stream); copy roles; restore; preprocess; vacuum
//! (freeze, analyze); rename; checkpoint; stop cleanly.
//!
//! The run owns the temporary target instance: it listens on no TCP address (only a unix
//! socket in the run directory), runs with durability off (see
//! [`crate::config::DEFAULT_RESTORE_SETTINGS`]), and is stopped on every path out, cleanly on
//! success (then the data directory is synced once) and immediately on failure. On failure the
//! data directory is left as it is for the engine to discard: it must never be snapshotted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use exec::Cmd;
use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor,
    ServerSettings, StopMode,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::{self, DumpFile, DumpFormat, Toc, size_of};
use crate::config::{CONNECTION_DATABASE, DatabaseConfig, RetrievalConfig};
use crate::error::{Error, Result, classify, last_error_lines};
use crate::pipe::{self, Input};
use crate::prepare;
use crate::progress::{Progress, Reporter, Stage, StageTiming};
use crate::run::{Finished, count_table_lines, run_logged, spawn_error};
use crate::source::{Source, SourceDatabase, conninfo_value, filter_roles_sql};

/// The default admin role of the target cluster (initdb's bootstrap superuser).
pub const DEFAULT_ADMIN_ROLE: &str = "postgres";
/// How long each stop mode of the target may take before escalation.
const STOP_STEP: Duration = Duration::from_secs(120);
/// How much of the target server's log is searched for a reason when a restore fails.
const SERVER_LOG_TAIL: usize = 8192;

/// Where a run writes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target PGDATA: missing, empty, or an initdb'd cluster of the target major.
    pub data_dir: PathBuf,
    /// A private directory for the socket, logs and pipes of the run; keep it short (the
    /// socket path must fit in 107 bytes).
    pub run_dir: PathBuf,
    /// The port number of the temporary instance; it only names the unix socket (no TCP).
    pub port: u16,
    /// The target's bootstrap superuser.
    pub admin_role: String,
}

impl Target {
    /// A target with the default admin role and port 5432 (socket only).
    pub fn new(data_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Target {
            data_dir: data_dir.into(),
            run_dir: run_dir.into(),
            port: 5432,
            admin_role: DEFAULT_ADMIN_ROLE.to_owned(),
        }
    }

    fn socket_dir(&self) -> PathBuf {
        self.run_dir.join("sock")
    }

    fn conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir().to_string_lossy()),
            self.port,
            conninfo_value(&self.admin_role),
            conninfo_value(database)
        )
    }

    /// A client tool run against the target.
    fn command(&self, tool: PathBuf) -> Cmd {
        Cmd::new(tool)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TZ", "UTC")
            .env("PGAPPNAME", crate::source::SOURCE_APPLICATION_NAME)
    }
}

/// The outcome of a successful run.
#[derive(Debug, Clone, Serialize)]
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
    /// statements that failed, newer tools than asked for).
    pub warnings: Vec<String>,
}

/// One database of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// One database to restore, and how.
#[derive(Debug, Clone)]
struct Job {
    /// The database name in the source (or dump).
    name: String,
    filter: DatabaseConfig,
    /// How to create it when the dump does not (table-filtered dumps, plain SQL without CREATE).
    create: Option<SourceDatabase>,
    /// The dump, once there is one.
    dump: Option<DumpFile>,
    tables: u64,
    bytes: u64,
}

/// What the per-database steps of one stage share.
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    tools: &'a Tools,
    target: &'a Target,
    reporter: &'a Reporter,
    cancel: &'a CancellationToken,
}

impl Job {
    fn dump_file(&self) -> Result<DumpFile> {
        self.dump.clone().ok_or_else(|| Error::Failed {
            stage: Stage::Restoring,
            stderr_tail: format!("no dump of {} to restore", self.name),
        })
    }

    fn is_full(&self) -> bool {
        self.filter.tables.is_empty() && self.filter.exclude_tables.is_empty()
    }
}

/// State that outlives a failing stage: what must be cleaned up.
#[derive(Debug, Default)]
struct RunState {
    instance: Option<Instance>,
    warnings: Vec<String>,
    created_dumps: Vec<PathBuf>,
}

/// The client tools of one major.
#[derive(Debug, Clone)]
struct Tools {
    binaries: PgBinaries,
}

impl Tools {
    fn path(&self, tool: &str) -> Result<PathBuf> {
        self.binaries.tool(tool).map_err(|error| Error::ToolMissing {
            tool: tool.to_owned(),
            detail: error.to_string(),
        })
    }
}

impl Pipeline {
    /// Validates `config` and binds it to the binaries in `search`, run as `user`.
    pub fn new(config: RetrievalConfig, search: BinarySearch, user: OsUser) -> Result<Self> {
        config.validate()?;
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
        match result {
            Ok(mut summary) => {
                reporter.finish(None);
                summary.stages = reporter.stages.clone();
                summary.total = started.elapsed();
                summary.warnings = state.warnings;
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
        reporter.stage(Stage::Probing);
        let target_major =
            PgMajor::new(config.target_major).map_err(|error| Error::invalid(error.to_string()))?;
        let target_binaries =
            self.search.locate(target_major).map_err(|error| Error::ToolMissing {
                tool: format!("PostgreSQL {target_major} server"),
                detail: error.to_string(),
            })?;
        let source = config.source.as_ref().map(Source::new).transpose()?;
        let (mut jobs, source_major, tools) = match &source {
            Some(source) => self.plan_live(source, target_major, cancel, state).await?,
            None => self.plan_files(target_major)?,
        };

        std::fs::create_dir_all(&target.run_dir)
            .map_err(|error| Error::io("create run directory", &target.run_dir, error))?;
        let databases = jobs.len();
        let data_state_at = match &source {
            Some(source) if !config.dump.immediate_restore => {
                // initdb and the target's start need nothing from the dump: they run while
                // pg_dump does, and the stage is reported as dumping.
                reporter.stage(Stage::Dumping);
                let data_state_at = Utc::now();
                let step = Step { tools: &tools, target, reporter, cancel };
                let created = &mut state.created_dumps;
                let dumping = async {
                    for (index, job) in jobs.iter_mut().enumerate() {
                        self.dump(&step, source, job, index, created).await?;
                    }
                    Ok::<(), Error>(())
                };
                let preparing = self.start_target(&target_binaries, target, databases);
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
                    self.copy_roles(source, &tools, target, state, cancel).await?;
                }
                reporter.stage(Stage::Restoring);
                let step = Step { tools: &tools, target, reporter, cancel };
                self.restore_all(&step, &mut jobs, state).await?;
                data_state_at
            }
            Some(source) => {
                reporter.stage(Stage::Preparing);
                state.instance =
                    Some(self.start_target(&target_binaries, target, databases).await?);
                if config.dump.roles {
                    reporter.stage(Stage::Roles);
                    self.copy_roles(source, &tools, target, state, cancel).await?;
                }
                reporter.stage(Stage::Streaming);
                let data_state_at = Utc::now();
                let step = Step { tools: &tools, target, reporter, cancel };
                for (index, job) in jobs.iter_mut().enumerate() {
                    self.stream(&step, source, job, index).await?;
                }
                data_state_at
            }
            None => {
                reporter.stage(Stage::Preparing);
                state.instance =
                    Some(self.start_target(&target_binaries, target, databases).await?);
                reporter.stage(Stage::Restoring);
                let step = Step { tools: &tools, target, reporter, cancel };
                let tocs = self.restore_all(&step, &mut jobs, state).await?;
                dumps_created_at(&jobs, &tocs)
            }
        };

        let preprocessing = &config.preprocessing;
        if preprocessing.query_path.is_some()
            || preprocessing.inline.is_some()
            || preprocessing.script.is_some()
        {
            reporter.stage(Stage::Preprocessing);
            let psql = tools.path("psql")?;
            prepare::preprocess(preprocessing, &psql, target, cancel).await?;
        }
        // After preprocessing, so that the rows masking rewrote are frozen and counted too.
        if config.restore.analyze || config.restore.freeze {
            reporter.stage(Stage::Analyzing);
            self.vacuum(&tools, target, cancel).await?;
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
        })
    }

    /// Probes the source and decides the databases and the tools.
    async fn plan_live(
        &self,
        source: &Source,
        target_major: PgMajor,
        cancel: &CancellationToken,
        state: &mut RunState,
    ) -> Result<(Vec<Job>, Option<PgMajor>, Tools)> {
        let psql = self.newest_tool("psql")?;
        let probe = source.probe(psql, cancel).await?;
        info!(source_major = %probe.major, version = probe.version_num, "source probed");
        if target_major < probe.major {
            return Err(Error::UnsupportedVersion {
                detail: format!(
                    "the source runs PostgreSQL {} but target_major is {target_major}: a dump cannot be restored into an older major",
                    probe.major
                ),
            });
        }
        let jobs = if self.config.databases.is_empty() {
            probe
                .databases
                .iter()
                .map(|database| {
                    job(&database.name, DatabaseConfig::default(), Some(database.clone()))
                })
                .collect()
        } else {
            let mut jobs = Vec::new();
            for (name, filter) in &self.config.databases {
                let found =
                    probe.databases.iter().find(|database| database.name == *name).ok_or_else(
                        || Error::DatabaseMissing {
                            database: name.clone(),
                            detail: "not found on the source (or it does not allow connections)"
                                .to_owned(),
                        },
                    )?;
                jobs.push(job(name, filter.clone(), Some(found.clone())));
            }
            jobs
        };
        let wanted = probe.major.max(target_major);
        let tools = self
            .client_tools(wanted, &["pg_dump", "pg_restore", "psql", "pg_dumpall", "vacuumdb"])?;
        if tools.binaries.major() != wanted {
            state.warnings.push(format!(
                "PostgreSQL {wanted} has no client tools here; dumping and restoring with PostgreSQL {}'s",
                tools.binaries.major()
            ));
        }
        Ok((jobs, Some(probe.major), tools))
    }

    /// Finds the existing dumps to restore.
    fn plan_files(&self, target_major: PgMajor) -> Result<(Vec<Job>, Option<PgMajor>, Tools)> {
        let dir = self
            .config
            .restore
            .from_dump
            .as_deref()
            .ok_or_else(|| Error::invalid("restore.from_dump is not set"))?;
        let mut dumps = archive::discover(dir)?;
        if !self.config.databases.is_empty() {
            for name in self.config.databases.keys() {
                if !dumps.iter().any(|dump| dump.database == *name) {
                    return Err(Error::DatabaseMissing {
                        database: name.clone(),
                        detail: format!("no dump of it in {}", dir.display()),
                    });
                }
            }
            dumps.retain(|dump| self.config.databases.contains_key(&dump.database));
        }
        let jobs = dumps
            .into_iter()
            .map(|dump| {
                let filter = self.config.databases.get(&dump.database).cloned().unwrap_or_default();
                let mut job = job(&dump.database, filter, None);
                job.dump = Some(dump);
                job
            })
            .collect();
        let tools = self.client_tools(target_major, &["pg_restore", "psql", "vacuumdb"])?;
        Ok((jobs, None, tools))
    }

    /// The tools of the oldest installed major at or above `at_least` that has all of `names`.
    fn client_tools(&self, at_least: PgMajor, names: &[&str]) -> Result<Tools> {
        PgMajor::all()
            .filter(|major| *major >= at_least)
            .filter_map(|major| self.search.locate(major).ok())
            .find(|binaries| names.iter().all(|name| binaries.tool(name).is_ok()))
            .map(|binaries| Tools { binaries })
            .ok_or_else(|| Error::ToolMissing {
                tool: names.join(", "),
                detail: format!(
                    "no installed PostgreSQL {at_least} or newer has them (dumps are made with the newer major of source and target); \
                     PostgreSQL 13 from npm ships no client tools, so a 13 source or target needs the 14+ client tools installed"
                ),
            })
    }

    /// The newest installed copy of a client tool (psql talks to any older server).
    fn newest_tool(&self, name: &str) -> Result<PathBuf> {
        let majors: Vec<PgMajor> = PgMajor::all().collect();
        majors
            .iter()
            .rev()
            .filter_map(|major| self.search.locate(*major).ok())
            .find_map(|binaries| binaries.tool(name).ok())
            .ok_or_else(|| Error::ToolMissing {
                tool: name.to_owned(),
                detail: "no installed PostgreSQL major has it (13 from npm ships no client tools)"
                    .to_owned(),
            })
    }

    async fn start_target(
        &self,
        binaries: &PgBinaries,
        target: &Target,
        databases: usize,
    ) -> Result<Instance> {
        let data_dir = &target.data_dir;
        if data_dir.join("PG_VERSION").exists() {
            let major = PgMajor::of_data_dir(data_dir)
                .map_err(|error| target_error(Stage::Preparing, &error))?;
            if major != binaries.major() {
                return Err(Error::invalid(format!(
                    "target data directory {} holds PostgreSQL {major}, but target_major is {}",
                    data_dir.display(),
                    binaries.major()
                )));
            }
        } else {
            let empty = std::fs::read_dir(data_dir)
                .map(|mut entries| entries.next().is_none())
                .unwrap_or(true);
            if !empty {
                return Err(Error::invalid(format!(
                    "target data directory {} is neither empty nor a PostgreSQL data directory",
                    data_dir.display()
                )));
            }
            let mut options = InitDbOptions::new(&target.admin_role);
            options.sync = false;
            postgres::initdb(binaries, data_dir, &self.user, &options)
                .await
                .map_err(|error| target_error(Stage::Preparing, &error))?;
        }
        let mut settings = ServerSettings::new(target.port, target.socket_dir());
        settings.listen_addresses = String::new();
        let jobs = self.config.restore.parallel_jobs.max(self.config.dump.parallel_jobs);
        settings.max_connections =
            settings.max_connections.max(jobs * 2 + 10 + u32::try_from(databases).unwrap_or(0));
        settings.extra = self.config.restore_settings();
        let spec = InstanceSpec::new(
            data_dir,
            settings,
            &target.admin_role,
            target.run_dir.join("target.log"),
            self.user.clone(),
        );
        let mut instance = Instance::start(binaries, spec)
            .await
            .map_err(|error| target_error(Stage::Preparing, &error))?;
        // The start's admin session sits in `postgres`, which a restore may drop and recreate.
        drop(instance.admin().await);
        Ok(instance)
    }

    async fn copy_roles(
        &self,
        source: &Source,
        tools: &Tools,
        target: &Target,
        state: &mut RunState,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let sql = source
            .dump_roles(tools.path("pg_dumpall")?, self.config.dump.role_passwords, cancel)
            .await?;
        let existing = self.target_roles(target).await?;
        let filtered = filter_roles_sql(&sql, &existing);
        // Not ON_ERROR_STOP: a role attribute the target major lacks must not stop the refresh;
        // the errors are reported as warnings.
        let output = target
            .command(tools.path("psql")?)
            .args(["-X", "-q"])
            .arg(format!("--dbname={}", target.conninfo(CONNECTION_DATABASE)))
            .stdin_bytes(filtered)
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| spawn_error(Stage::Roles, &error))?;
        let errors = output.stderr_text();
        if !output.status.success() {
            return Err(classify(Stage::Roles, None, &errors));
        }
        if errors.contains("ERROR") {
            state.warnings.push(format!("roles: {}", last_error_lines(&errors)));
        }
        Ok(())
    }

    async fn target_roles(&self, target: &Target) -> Result<Vec<String>> {
        // template1, not `postgres`: the restore may drop and recreate `postgres`.
        let admin = postgres::Admin::connect(
            &target.socket_dir(),
            target.port,
            &target.admin_role,
            "template1",
        )
        .await
        .map_err(|error| target_error(Stage::Roles, &error))?;
        let rows = admin
            .client()
            .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
            .await
            .map_err(|error| Error::Failed {
                stage: Stage::Roles,
                stderr_tail: error.to_string(),
            })?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn dump(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &mut Job,
        index: usize,
        created: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        let location = &self.config.dump.location;
        std::fs::create_dir_all(location)
            .map_err(|error| Error::io("create dump location", location, error))?;
        let dir = location.join(&job.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|error| Error::io("remove old dump", &dir, error))?;
        }
        created.push(dir.clone());
        let mut cmd = self.dump_command(source, tools, job)?;
        if !self.config.dump.keep {
            // A dump that is deleted after the restore need not survive a power loss.
            cmd = cmd.arg("--no-sync");
        }
        let cmd = cmd
            .arg("--format=directory")
            .arg(format!("--jobs={}", self.config.dump.parallel_jobs))
            .arg(format!("--file={}", dir.display()));
        reporter.update(|progress| progress.database = Some(job.name.clone()));
        let done_before = reporter_tables(reporter);
        let bytes_before = reporter_bytes(reporter);
        let mut tables = 0;
        let log = target.run_dir.join(format!("dump-{index}.log"));
        let finished = run_logged(cmd, &log, Stage::Dumping, cancel, |text| {
            tables += count_table_lines(text);
            let bytes = size_of(&dir);
            reporter.update(|progress| {
                progress.tables_done = done_before + tables;
                progress.bytes_done = bytes_before + bytes;
            });
        })
        .await?;
        check(&finished, Stage::Dumping, &job.name, None)?;
        job.bytes = size_of(&dir);
        reporter.update(|progress| progress.bytes_done = bytes_before + job.bytes);
        job.dump =
            Some(DumpFile { path: dir, format: DumpFormat::Directory, database: job.name.clone() });
        Ok(())
    }

    /// pg_dump of one database with its filters and the custom options (format and output are
    /// the caller's).
    fn dump_command(&self, source: &Source, tools: &Tools, job: &Job) -> Result<Cmd> {
        let mut cmd = source.command(tools.path("pg_dump")?, &job.name).arg("--verbose");
        if job.is_full() {
            cmd = cmd.arg("--create");
        }
        for table in &job.filter.tables {
            cmd = cmd.arg(format!("--table={table}"));
        }
        for table in &job.filter.exclude_tables {
            cmd = cmd.arg(format!("--exclude-table={table}"));
        }
        Ok(cmd.args(&self.config.dump.custom_options))
    }

    /// Restores every job's dump; returns the archives' tables of contents (None for plain).
    async fn restore_all(
        &self,
        step: &Step<'_>,
        jobs: &mut [Job],
        state: &mut RunState,
    ) -> Result<Vec<Option<Toc>>> {
        let Step { tools, reporter, cancel, .. } = *step;
        let pg_restore = tools.path("pg_restore")?;
        let mut tocs = Vec::new();
        for job in jobs.iter() {
            let Some(dump) = &job.dump else { continue };
            tocs.push(if dump.format.is_archive() {
                Some(list(&pg_restore, &dump.path, cancel).await?)
            } else {
                None
            });
        }
        let tables_total: u64 = tocs.iter().flatten().map(Toc::table_data_count).sum();
        let bytes_total: u64 =
            jobs.iter().filter_map(|job| job.dump.as_ref()).map(|dump| size_of(&dump.path)).sum();
        let all_archives = tocs.iter().all(Option::is_some);
        reporter.update(|progress| {
            progress.tables_total = all_archives.then_some(tables_total);
            progress.bytes_total = Some(bytes_total);
        });
        for (index, (job, toc)) in jobs.iter_mut().zip(&tocs).enumerate() {
            reporter.update(|progress| progress.database = Some(job.name.clone()));
            match toc {
                Some(toc) => self.restore_archive(step, job, toc, index, state).await?,
                None => self.restore_plain(step, job, index, state).await?,
            }
        }
        Ok(tocs)
    }

    async fn restore_archive(
        &self,
        step: &Step<'_>,
        job: &mut Job,
        toc: &Toc,
        index: usize,
        state: &mut RunState,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        let dump = job.dump_file()?;
        let restore = &self.config.restore;
        let filtered = !job.filter.tables.is_empty();
        if let (Some(name), false) = (toc.database(), filtered) {
            // The archive creates its database: restored under the archive's name.
            job.name = name;
        }
        let mut cmd = self
            .restore_command(tools, target, job, toc.database().is_some() && !filtered, None)
            .await?;
        if restore.skip_policies {
            let list_path = target.run_dir.join(format!("restore-{index}.list"));
            std::fs::write(&list_path, toc.without_policies())
                .map_err(|error| Error::io("write restore list", &list_path, error))?;
            cmd = cmd.arg(format!("--use-list={}", list_path.display()));
        }
        if filtered {
            self.create_schemas(target, &job.name, &toc.table_schemas()).await?;
        }
        for table in job.filter.tables.iter().filter(|_| self.config.source.is_none()) {
            cmd = cmd.arg(format!("--table={table}"));
        }
        cmd = cmd.arg(format!("--jobs={}", restore.parallel_jobs)).arg(&dump.path);
        let base = target.data_dir.join("base");
        let base_before = size_of(&base);
        let done_before = reporter_tables(reporter);
        let mut tables = 0;
        let log = target.run_dir.join(format!("restore-{index}.log"));
        let finished = run_logged(cmd, &log, Stage::Restoring, cancel, |text| {
            tables += count_table_lines(text);
            let bytes = size_of(&base).saturating_sub(base_before);
            reporter.update(|progress| {
                progress.tables_done = done_before + tables;
                progress.bytes_done = bytes;
            });
        })
        .await?;
        self.check_restore(&finished, target, &job.name, state)?;
        job.tables = toc.table_data_count();
        job.bytes = size_of(&dump.path);
        Ok(())
    }

    /// pg_restore into the target: with `--create` (connected to template1; `--clean` too when
    /// the database exists already, as `postgres` does) when the archive creates its database,
    /// else into the database, created first.
    async fn restore_command(
        &self,
        tools: &Tools,
        target: &Target,
        job: &Job,
        create: bool,
        stdin: Option<&Path>,
    ) -> Result<Cmd> {
        let pg_restore = tools.path("pg_restore")?;
        let mut cmd = match stdin {
            // pg_restore reads a named archive's header, closes the file and opens it again,
            // which loses the header of a FIFO; from stdin it keeps what it read. `exec::Cmd`
            // has no stdin redirection, so a shell does it and then becomes pg_restore.
            Some(path) => Cmd::new("sh")
                .args(["-c", r#"exec "$0" "$@" < "$SCION_STDIN""#])
                .arg(pg_restore)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("TZ", "UTC")
                .env("PGAPPNAME", crate::source::SOURCE_APPLICATION_NAME)
                .env("SCION_STDIN", path),
            None => target.command(pg_restore),
        }
        .arg("--verbose");
        if create {
            cmd = cmd.arg("--create").arg(format!("--dbname={}", target.conninfo("template1")));
            if self.target_has_database(target, &job.name).await? {
                cmd = cmd.arg("--clean");
            }
        } else {
            self.create_database(target, job).await?;
            cmd = cmd.arg(format!("--dbname={}", target.conninfo(&job.name)));
        }
        if !self.config.restore.ignore_errors {
            cmd = cmd.arg("--exit-on-error");
        }
        Ok(cmd.args(&self.config.restore.custom_options))
    }

    async fn restore_plain(
        &self,
        step: &Step<'_>,
        job: &mut Job,
        index: usize,
        state: &mut RunState,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        let dump = job.dump_file()?;
        let head = archive::plain_head(&dump.path, dump.format)?;
        let connect_to = match archive::plain_creates_database(&head) {
            Some(name) => {
                job.name = name;
                "template1".to_owned()
            }
            None => {
                self.create_database(target, job).await?;
                job.name.clone()
            }
        };
        let mut cmd = target
            .command(tools.path("psql")?)
            .arg("-X")
            .arg(format!("--dbname={}", target.conninfo(&connect_to)));
        if !self.config.restore.ignore_errors {
            cmd = cmd.args(["-v", "ON_ERROR_STOP=1"]);
        }
        let counter = Arc::new(AtomicU64::new(0));
        let fifo = target.run_dir.join(format!("plain-{index}.fifo"));
        let copy = match dump.format {
            DumpFormat::PlainGzip | DumpFormat::PlainBzip2 => {
                pipe::make_fifo(&fifo)?;
                let input = if dump.format == DumpFormat::PlainGzip {
                    Input::Gzip(dump.path.clone())
                } else {
                    Input::Bzip2(dump.path.clone())
                };
                cmd = cmd.arg(format!("--file={}", fifo.display()));
                Some(pipe::spawn_copy(input, fifo.clone(), counter.clone()))
            }
            _ => {
                cmd = cmd.arg(format!("--file={}", dump.path.display()));
                None
            }
        };
        let done_before = reporter_tables(reporter);
        let mut tables = 0;
        let log = target.run_dir.join(format!("restore-{index}.log"));
        let finished = run_logged(cmd, &log, Stage::Restoring, cancel, |text| {
            // psql prints `COPY <rows>` once per table it loads.
            tables += text.lines().filter(|line| line.starts_with("COPY ")).count() as u64;
            let piped = counter.load(Ordering::Relaxed);
            reporter.update(|progress| {
                progress.tables_done = done_before + tables;
                progress.bytes_done = piped;
            });
        })
        .await;
        if let Some(copy) = copy {
            pipe::unblock(&fifo);
            let copied = copy.await;
            let _ = std::fs::remove_file(&fifo);
            if let Ok(Err(error)) = copied
                && finished.as_ref().is_ok_and(|finished| finished.status.success())
            {
                return Err(Error::io("decompress", &dump.path, error));
            }
        }
        let finished = finished?;
        self.check_restore(&finished, target, &job.name, state)?;
        job.tables = tables;
        job.bytes = size_of(&dump.path);
        Ok(())
    }

    /// pg_dump -Fc piped into pg_restore through two FIFOs, with no dump on disk.
    async fn stream(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &mut Job,
        index: usize,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        reporter.update(|progress| progress.database = Some(job.name.clone()));
        let fifo_in = target.run_dir.join(format!("stream-{index}.in"));
        let fifo_out = target.run_dir.join(format!("stream-{index}.out"));
        pipe::make_fifo(&fifo_in)?;
        pipe::make_fifo(&fifo_out)?;
        let dump = self
            .dump_command(source, tools, job)?
            .arg("--format=custom")
            // fsync(2) on a FIFO fails with EINVAL.
            .arg("--no-sync")
            .arg(format!("--file={}", fifo_in.display()));
        let restore =
            self.restore_command(tools, target, job, job.is_full(), Some(&fifo_out)).await?;
        if !job.filter.tables.is_empty() {
            // A table-filtered dump has no CREATE SCHEMA; the schemas are only known from the
            // source, so the filter's qualified names are used.
            let schemas = qualified_schemas(&job.filter.tables);
            self.create_schemas(target, &job.name, &schemas).await?;
        }
        let counter = Arc::new(AtomicU64::new(0));
        let copy =
            pipe::spawn_copy(Input::Plain(fifo_in.clone()), fifo_out.clone(), counter.clone());
        let done_before = reporter_tables(reporter);
        let bytes_before = reporter_bytes(reporter);
        let dump_log = target.run_dir.join(format!("stream-dump-{index}.log"));
        let restore_log = target.run_dir.join(format!("stream-restore-{index}.log"));
        let dumping = async {
            let finished = run_logged(dump, &dump_log, Stage::Streaming, cancel, |_| {}).await;
            pipe::unblock(&fifo_in);
            finished
        };
        let mut tables = 0;
        let restoring = async {
            let finished = run_logged(restore, &restore_log, Stage::Streaming, cancel, |text| {
                tables += count_table_lines(text);
                let piped = counter.load(Ordering::Relaxed);
                reporter.update(|progress| {
                    progress.tables_done = done_before + tables;
                    progress.bytes_done = bytes_before + piped;
                });
            })
            .await;
            pipe::unblock(&fifo_out);
            finished
        };
        let (dumped, restored) = tokio::join!(dumping, restoring);
        let copied = copy.await;
        let _ = std::fs::remove_file(&fifo_in);
        let _ = std::fs::remove_file(&fifo_out);
        let (dumped, restored) = (dumped?, restored?);
        // A source-side error of the dump explains the restore's (an empty or cut stream); a
        // restore that died first makes the dump fail with a broken pipe, so then the restore's
        // error is the one to report.
        let dump_error = match check(&dumped, Stage::Streaming, &job.name, None) {
            Ok(()) => None,
            Err(error @ Error::Failed { .. }) => Some(error),
            Err(error) => return Err(error),
        };
        if !restored.status.success() {
            let server_log = server_log_tail(target);
            return Err(classify(
                Stage::Restoring,
                Some(&job.name),
                &format!("{}\n{server_log}", restored.log),
            ));
        }
        if let Some(error) = dump_error {
            return Err(error);
        }
        job.bytes = match copied {
            Ok(Ok(bytes)) => bytes,
            _ => counter.load(Ordering::Relaxed),
        };
        job.tables = count_table_lines(&restored.log);
        reporter.update(|progress| progress.bytes_done = bytes_before + job.bytes);
        Ok(())
    }

    fn check_restore(
        &self,
        finished: &Finished,
        target: &Target,
        database: &str,
        state: &mut RunState,
    ) -> Result<()> {
        if finished.status.success() {
            return Ok(());
        }
        let server_log = server_log_tail(target);
        let error =
            classify(Stage::Restoring, Some(database), &format!("{}\n{server_log}", finished.log));
        if self.config.restore.ignore_errors && !matches!(error, Error::NoSpace { .. }) {
            state.warnings.push(format!(
                "{database}: restore errors ignored: {}",
                last_error_lines(&finished.log)
            ));
            return Ok(());
        }
        Err(error)
    }

    /// `vacuumdb --all` with FREEZE and/or ANALYZE, as configured.
    async fn vacuum(
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

    async fn admin(&self, target: &Target, database: &str) -> Result<postgres::Admin> {
        postgres::Admin::connect(&target.socket_dir(), target.port, &target.admin_role, database)
            .await
            .map_err(|error| target_error(Stage::Restoring, &error))
    }

    async fn target_has_database(&self, target: &Target, name: &str) -> Result<bool> {
        let admin = self.admin(target, "template1").await?;
        let row = admin
            .client()
            .query_opt("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|error| Error::Failed {
                stage: Stage::Restoring,
                stderr_tail: error.to_string(),
            })?;
        Ok(row.is_some())
    }

    /// Creates the job's database unless it exists, with the source's encoding and locale.
    async fn create_database(&self, target: &Target, job: &Job) -> Result<()> {
        if self.target_has_database(target, &job.name).await? {
            return Ok(());
        }
        let mut statement =
            format!("CREATE DATABASE {} TEMPLATE template0", postgres::sql::quote_ident(&job.name));
        if let Some(source) = &job.create {
            statement.push_str(&format!(
                " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                postgres::sql::quote_literal(&source.encoding),
                postgres::sql::quote_literal(&source.collate),
                postgres::sql::quote_literal(&source.ctype)
            ));
        }
        let admin = self.admin(target, "template1").await?;
        admin.client().batch_execute(&statement).await.map_err(|error| Error::Failed {
            stage: Stage::Restoring,
            stderr_tail: format!("create database {}: {error}", job.name),
        })
    }

    async fn create_schemas(
        &self,
        target: &Target,
        database: &str,
        schemas: &[String],
    ) -> Result<()> {
        if schemas.is_empty() {
            return Ok(());
        }
        let admin = self.admin(target, database).await?;
        let statements: String = schemas
            .iter()
            .map(|schema| {
                format!("CREATE SCHEMA IF NOT EXISTS {};\n", postgres::sql::quote_ident(schema))
            })
            .collect();
        admin.client().batch_execute(&statements).await.map_err(|error| Error::Failed {
            stage: Stage::Restoring,
            stderr_tail: format!("create schemas in {database}: {error}"),
        })
    }
}

fn job(name: &str, filter: DatabaseConfig, create: Option<SourceDatabase>) -> Job {
    Job { name: name.to_owned(), filter, create, dump: None, tables: 0, bytes: 0 }
}

fn reporter_tables(reporter: &Reporter) -> u64 {
    reporter.get().tables_done
}

fn reporter_bytes(reporter: &Reporter) -> u64 {
    reporter.get().bytes_done
}

/// The schemas named in qualified table patterns (`app.orders` → `app`); patterns with
/// wildcards in the schema are skipped.
fn qualified_schemas(tables: &[String]) -> Vec<String> {
    let mut schemas: Vec<String> = tables
        .iter()
        .filter_map(|table| {
            table.split_once('.').map(|(schema, _)| schema.trim_matches('"').to_owned())
        })
        .filter(|schema| schema != "public" && !schema.contains(['*', '?']))
        .collect();
    schemas.sort();
    schemas.dedup();
    schemas
}

/// Fails with the classified error when a tool exited unsuccessfully.
fn check(
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

async fn list(pg_restore: &Path, archive: &Path, cancel: &CancellationToken) -> Result<Toc> {
    let output = Cmd::new(pg_restore)
        .arg("--list")
        .arg(archive)
        .env("TZ", "UTC")
        .cancel_on(cancel.clone())
        .output()
        .await
        .map_err(|error| spawn_error(Stage::Restoring, &error))?;
    Ok(Toc::new(output.stdout_text()))
}

fn dumps_created_at(jobs: &[Job], tocs: &[Option<Toc>]) -> DateTime<Utc> {
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

fn server_log_tail(target: &Target) -> String {
    let text = std::fs::read(target.run_dir.join("target.log"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    crate::error::tail_chars(&text, SERVER_LOG_TAIL)
}

/// Maps an error of the target instance (initdb, start, admin SQL).
fn target_error(stage: Stage, error: &postgres::Error) -> Error {
    let text = error.to_string();
    if text.to_ascii_lowercase().contains("no space left on device") {
        return Error::NoSpace { stage, detail: text };
    }
    match error {
        postgres::Error::MajorNotInstalled { .. } | postgres::Error::ToolMissing { .. } => {
            Error::ToolMissing { tool: "postgres".to_owned(), detail: text }
        }
        _ => Error::Failed { stage, stderr_tail: text },
    }
}
