//! The `[retrieval]` section of Scion's configuration, its defaults, and `validate()`, which
//! refuses a bad configuration with every problem listed before any work starts.
//!
//! Names follow DBLab's logical jobs (§6.2–6.4 and 6.8 of the reference) in snake_case:
//! `logicalDump.options.parallelJobs` is `dump.parallel_jobs`, `databaseRename` is
//! `database_rename`, `refresh.timetable` is `timetable`. Secrets are never in the file: the
//! source password is read from the environment variable named by `source.password_env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod continuous;
pub mod physical;
mod rename;

pub use continuous::ContinuousConfig;
pub use physical::{
    CustomConfig, PgBackRestConfig, PhysicalConfig, PhysicalTool, SyncConfig, slot_name,
};
pub use rename::{check_rename_name, rename_problems};

/// The default target major, when the configuration names none.
pub const DEFAULT_TARGET_MAJOR: u8 = 17;
/// The default `pg_dump`/`pg_restore` jobs (DBLab's default).
pub const DEFAULT_PARALLEL_JOBS: u32 = 1;
/// The default number of SQL files of one preprocessing sub-directory run at once (DBLab's).
pub const DEFAULT_PREPROCESSING_WORKERS: u32 = 2;
/// The database preprocessing SQL runs in, and the target's connection database: it is never
/// renamed (DBLab's `global.database.dbname`).
pub const CONNECTION_DATABASE: &str = "postgres";
/// The default source port.
pub const DEFAULT_SOURCE_PORT: u16 = 5432;
/// The default source user and database.
pub const DEFAULT_SOURCE_USER: &str = "postgres";
/// The default `pg_restore` options: tablespaces of the source do not exist in the target.
pub const DEFAULT_RESTORE_OPTIONS: &[&str] = &["--no-tablespaces"];
/// Settings of the temporary target instance during a restore, before the user's `configs`.
/// Durability is off because a failed run is thrown away whole; the pipeline syncs the data
/// directory once after the clean stop instead.
pub const DEFAULT_RESTORE_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("synchronous_commit", "off"),
    ("autovacuum", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "1h"),
    ("shared_buffers", "256MB"),
    ("maintenance_work_mem", "256MB"),
];
/// The setting that keeps a server from running any subscription: every server of continuous
/// mode but the sync instance (the restore's target, promotions) runs with it, so no copy of
/// the golden data ever connects to the source's slot.
pub const NO_APPLY_WORKERS: (&str, &str) = ("max_logical_replication_workers", "0");
const MAX_JOBS: u32 = 128;
pub(crate) const MAX_NAME_BYTES: usize = 63;

/// The `[retrieval]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// The live source database; required unless `restore.from_dump` names existing dumps.
    pub source: Option<SourceConfig>,
    /// The databases to retrieve, each with optional table filters; empty means all databases
    /// the source user can connect to (templates excluded).
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// pg_dump settings.
    pub dump: DumpConfig,
    /// pg_restore settings.
    pub restore: RestoreConfig,
    /// SQL and a script run on the restored data before the snapshot.
    pub preprocessing: PreprocessingConfig,
    /// Databases to rename before the snapshot, `old = "new"` (DBLab's `databaseRename`).
    pub database_rename: BTreeMap<String, String>,
    /// The target's major version (13 to 18); may be newer than the source's.
    pub target_major: u8,
    /// A standard 5-field cron expression (UTC) for full refreshes; none means on demand only.
    pub timetable: Option<String>,
    /// Do not refresh when the engine starts; only on the timetable or on demand.
    pub skip_start_refresh: bool,
    /// Physical mode: a physical copy kept current by a standby (DBLab's `physicalRestore`).
    /// Its presence chooses the mode; the logical keys (`databases`, `[dump]`, `[restore]`)
    /// are then refused.
    pub physical: Option<PhysicalConfig>,
    /// Logical mode's continuous refresh: after the restore, logical replication from the
    /// source keeps the golden copy current, and snapshots are cut from it.
    pub continuous: Option<ContinuousConfig>,
    /// Masking of personal data before the snapshot, in both modes.
    pub masking: Option<crate::masking::MaskingConfig>,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            source: None,
            databases: BTreeMap::new(),
            dump: DumpConfig::default(),
            restore: RestoreConfig::default(),
            preprocessing: PreprocessingConfig::default(),
            database_rename: BTreeMap::new(),
            target_major: DEFAULT_TARGET_MAJOR,
            timetable: None,
            skip_start_refresh: false,
            physical: None,
            continuous: None,
            masking: None,
        }
    }
}

/// How to reach the source: a libpq connection string, or separate fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// A libpq URI or `key=value` string, without a password; excludes `host`/`port`/
    /// `dbname`/`username`.
    pub connection_string: Option<String>,
    /// Host name or address.
    pub host: Option<String>,
    /// Port.
    pub port: u16,
    /// The database to connect to for probing and listing databases.
    pub dbname: String,
    /// The user.
    pub username: String,
    /// The environment variable holding the password (e.g. `SCION_SOURCE_PASSWORD`).
    pub password_env: Option<String>,
    /// Or a file whose first line is the password, readable only by the engine (mode 0600);
    /// `POST /admin/config` writes one under the state directory when DBLab's UI sends a
    /// password. Read again at every retrieval run.
    pub password_file: Option<PathBuf>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            connection_string: None,
            host: None,
            port: DEFAULT_SOURCE_PORT,
            dbname: DEFAULT_SOURCE_USER.to_owned(),
            username: DEFAULT_SOURCE_USER.to_owned(),
            password_env: None,
            password_file: None,
        }
    }
}

/// One database to retrieve.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Only these tables (pg_dump `--table` patterns; pg_restore `--table` names for dump
    /// files). Empty means all.
    pub tables: Vec<String>,
    /// Leave these tables out (pg_dump `--exclude-table` patterns; live sources only).
    pub exclude_tables: Vec<String>,
}

/// pg_dump settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DumpConfig {
    /// `pg_dump --jobs`.
    pub parallel_jobs: u32,
    /// Extra pg_dump options, appended as given (e.g. `--no-comments`).
    pub custom_options: Vec<String>,
    /// The directory dumps are written to, `<location>/<database>` each; unset, `dump` in the
    /// run's own directory ([`crate::Target::dump_dir`]), which the engine keeps under its state
    /// directory, so two engines never share one.
    pub location: Option<PathBuf>,
    /// Stream `pg_dump -Fc` into `pg_restore` with no dump on disk. Single job only: a parallel
    /// restore needs a seekable archive.
    pub immediate_restore: bool,
    /// Keep the dump after a successful restore (it is removed otherwise).
    pub keep: bool,
    /// Copy roles from the source (`pg_dumpall --roles-only`) so owners and grants restore.
    pub roles: bool,
    /// Copy role passwords too (needs a superuser on the source). Clones reset passwords anyway.
    pub role_passwords: bool,
}

impl Default for DumpConfig {
    fn default() -> Self {
        DumpConfig {
            parallel_jobs: DEFAULT_PARALLEL_JOBS,
            custom_options: Vec::new(),
            location: None,
            immediate_restore: false,
            keep: false,
            roles: true,
            role_passwords: false,
        }
    }
}

/// pg_restore settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreConfig {
    /// `pg_restore --jobs` (directory and custom dumps; plain SQL is single-threaded).
    pub parallel_jobs: u32,
    /// Extra pg_restore options, appended as given.
    pub custom_options: Vec<String>,
    /// Restore existing dumps from this directory instead of dumping a live source: a
    /// sub-directory with `toc.dat` (directory format), a custom-format file, or plain SQL
    /// (`.sql`, `.sql.gz`, `.sql.bz2`); the database name is the file name without extensions.
    pub from_dump: Option<PathBuf>,
    /// Keep going past restore errors (pg_restore without `--exit-on-error`, psql without
    /// `ON_ERROR_STOP`); the count is reported as a warning.
    pub ignore_errors: bool,
    /// Leave row-level security policies out (DBLab's `skipPolicies`).
    pub skip_policies: bool,
    /// Run ANALYZE on the restored databases, so clones start with statistics.
    pub analyze: bool,
    /// Run VACUUM (FREEZE) on the restored databases. Freshly restored rows carry no hint bits
    /// and are not frozen, so each clone would otherwise rewrite every page it reads (setting
    /// hint bits) and run insert- and wraparound-driven autovacuums of its own: copy-on-write
    /// copies of the whole database, clone by clone. Done once here, clones share those pages.
    pub freeze: bool,
    /// Settings of the temporary target instance, on top of [`DEFAULT_RESTORE_SETTINGS`].
    pub configs: BTreeMap<String, String>,
    /// The target cluster's encoding; by default the source's template1's (or, for dump
    /// files, the dumped database's).
    pub initdb_encoding: Option<String>,
    /// The target cluster's LC_COLLATE and LC_CTYPE (a locale installed on this host); by
    /// default the source's template1's.
    pub initdb_locale: Option<String>,
    /// The target cluster's default collation provider: `libc`, `icu` (15 and later, with
    /// PostgreSQL built with ICU) or `builtin` (17 and later); by default the source's
    /// template1's.
    pub initdb_locale_provider: Option<String>,
    /// The provider's locale (ICU locale such as `en-US`, or builtin `C` / `C.UTF-8`); required
    /// with `initdb_locale_provider` `icu` or `builtin`.
    pub initdb_provider_locale: Option<String>,
}

impl Default for RestoreConfig {
    fn default() -> Self {
        RestoreConfig {
            parallel_jobs: DEFAULT_PARALLEL_JOBS,
            custom_options: DEFAULT_RESTORE_OPTIONS
                .iter()
                .map(|option| (*option).to_owned())
                .collect(),
            from_dump: None,
            ignore_errors: false,
            skip_policies: false,
            analyze: true,
            freeze: true,
            configs: BTreeMap::new(),
            initdb_encoding: None,
            initdb_locale: None,
            initdb_locale_provider: None,
            initdb_provider_locale: None,
        }
    }
}

/// Query preprocessing and the preprocessing script (DBLab's `queryPreprocessing` and
/// `preprocessingScript`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessingConfig {
    /// A directory of `.sql` files run in name order; the files of each sub-directory run in
    /// parallel (sub-directories in name order).
    pub query_path: Option<PathBuf>,
    /// SQL run after the files.
    pub inline: Option<String>,
    /// How many files of one sub-directory run at once.
    pub max_parallel_workers: u32,
    /// The database the SQL runs in (files may `\connect` elsewhere).
    pub database: String,
    /// An executable run after the SQL, with `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` and
    /// `PGDATA` pointing at the running target.
    pub script: Option<PathBuf>,
}

impl Default for PreprocessingConfig {
    fn default() -> Self {
        PreprocessingConfig {
            query_path: None,
            inline: None,
            max_parallel_workers: DEFAULT_PREPROCESSING_WORKERS,
            database: CONNECTION_DATABASE.to_owned(),
            script: None,
        }
    }
}

/// Options the pipeline sets itself; a custom option repeating one would break it.
const DUMP_OWNED_OPTIONS: &[&str] = &[
    "-f",
    "--file",
    "-F",
    "--format",
    "-j",
    "--jobs",
    "-d",
    "--dbname",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
];
const RESTORE_OWNED_OPTIONS: &[&str] = &[
    "-f",
    "--file",
    "-F",
    "--format",
    "-j",
    "--jobs",
    "-d",
    "--dbname",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
    "-L",
    "--use-list",
    "-C",
    "--create",
];

impl RetrievalConfig {
    /// Checks everything that can be checked without running anything: names, rename rules,
    /// job counts, options, the timetable, and that configured files exist. Lists every problem.
    pub fn validate(&self) -> Result<()> {
        if let Some(physical) = &self.physical {
            return self.validate_physical(physical);
        }
        let mut problems = Vec::new();
        self.check_source(&mut problems);
        if let Some(continuous) = &self.continuous {
            problems.extend(continuous.problems(self));
        }
        if let Err(error) = postgres::PgMajor::new(self.target_major) {
            problems.push(format!("target_major: {error}"));
        }
        for (name, database) in &self.databases {
            if let Err(problem) = check_database_name(name) {
                problems.push(format!("databases: {problem}"));
            }
            for table in database.tables.iter().chain(&database.exclude_tables) {
                if table.trim().is_empty() || table.chars().any(char::is_control) {
                    problems.push(format!("databases.{name}: table pattern {table:?} is empty or has control characters"));
                }
            }
            if self.restore.from_dump.is_some() && !database.exclude_tables.is_empty() {
                problems.push(format!(
                    "databases.{name}.exclude_tables: pg_restore cannot exclude tables from a dump file; list `tables` instead"
                ));
            }
        }
        self.check_jobs(&mut problems);
        check_options(
            "dump.custom_options",
            &self.dump.custom_options,
            DUMP_OWNED_OPTIONS,
            &mut problems,
        );
        check_options(
            "restore.custom_options",
            &self.restore.custom_options,
            RESTORE_OWNED_OPTIONS,
            &mut problems,
        );
        if let Some(location) = &self.dump.location
            && !location.is_absolute()
        {
            problems.push(format!("dump.location {} must be an absolute path", location.display()));
        }
        for (name, value) in &self.restore.configs {
            if name.is_empty() || value.chars().any(char::is_control) {
                problems
                    .push(format!("restore.configs: {name:?} = {value:?} is not a valid setting"));
            }
        }
        self.check_preprocessing(&mut problems);
        if let Some(masking) = &self.masking {
            problems.extend(masking.problems());
        }
        self.check_keep_unmasked(&mut problems);
        self.check_initdb(&mut problems);
        problems.extend(rename_problems(&self.database_rename, &self.databases));
        if let Some(timetable) = &self.timetable
            && let Err(problem) = parse_timetable(timetable)
        {
            problems.push(problem);
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::InvalidConfig { problems }) }
    }

    /// Whether logical mode's continuous refresh is on (`[retrieval.continuous]` is present).
    pub fn is_continuous(&self) -> bool {
        self.continuous.is_some() && self.physical.is_none()
    }

    /// Whether masking rewrites data or checks it (`[retrieval.masking]` with a rule that is
    /// not `keep`, or the PII refusal).
    pub fn masks(&self) -> bool {
        self.masking.as_ref().is_some_and(crate::masking::MaskingConfig::is_active)
    }

    /// Whether a refresh keeps its data unmasked beside the masked head
    /// (`masking.keep_unmasked`), which only logical full refreshes do.
    pub fn keeps_unmasked(&self) -> bool {
        self.masking.as_ref().is_some_and(|masking| masking.keep_unmasked)
            && !self.is_continuous()
            && !self.is_physical()
    }

    fn check_keep_unmasked(&self, problems: &mut Vec<String>) {
        if self.masking.as_ref().is_some_and(|masking| masking.keep_unmasked)
            && (self.is_continuous() || self.is_physical())
        {
            problems.push(
                "masking.keep_unmasked applies to logical full refreshes only, not to physical mode or continuous refresh".to_owned(),
            );
        }
    }

    /// Whether this is physical mode (`[retrieval.physical]` is present).
    pub fn is_physical(&self) -> bool {
        self.physical.is_some()
    }

    /// Physical mode's checks: the section itself, the source when set, no logical key, and
    /// what the snapshot stage shares with logical mode (preprocessing, renames, timetable).
    fn validate_physical(&self, physical: &PhysicalConfig) -> Result<()> {
        let mut problems = Vec::new();
        for key in self.logical_keys() {
            problems.push(format!(
                "[retrieval.physical] and the logical key {key} exclude each other: physical mode copies whole clusters, so remove {key} (or remove [retrieval.physical] for logical mode)"
            ));
        }
        if let Some(source) = &self.source {
            source.check(&mut problems);
        }
        let path = std::env::var("PATH").unwrap_or_default();
        problems.extend(physical.problems(self.source.is_some(), &path));
        if let Some(continuous) = &self.continuous {
            problems.extend(continuous.problems(self));
        }
        self.check_preprocessing(&mut problems);
        if let Some(masking) = &self.masking {
            problems.extend(masking.problems());
        }
        self.check_keep_unmasked(&mut problems);
        problems.extend(rename_problems(&self.database_rename, &BTreeMap::new()));
        if let Some(timetable) = &self.timetable
            && let Err(problem) = parse_timetable(timetable)
        {
            problems.push(problem);
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::InvalidConfig { problems }) }
    }

    /// The logical-mode keys set to anything but their defaults.
    fn logical_keys(&self) -> Vec<&'static str> {
        let (dump, restore) = (DumpConfig::default(), RestoreConfig::default());
        let checks = [
            ("databases", !self.databases.is_empty()),
            ("dump.parallel_jobs", self.dump.parallel_jobs != dump.parallel_jobs),
            ("dump.custom_options", self.dump.custom_options != dump.custom_options),
            ("dump.location", self.dump.location != dump.location),
            ("dump.immediate_restore", self.dump.immediate_restore != dump.immediate_restore),
            ("dump.keep", self.dump.keep != dump.keep),
            ("dump.roles", self.dump.roles != dump.roles),
            ("dump.role_passwords", self.dump.role_passwords != dump.role_passwords),
            ("restore.parallel_jobs", self.restore.parallel_jobs != restore.parallel_jobs),
            ("restore.custom_options", self.restore.custom_options != restore.custom_options),
            ("restore.from_dump", self.restore.from_dump != restore.from_dump),
            ("restore.ignore_errors", self.restore.ignore_errors != restore.ignore_errors),
            ("restore.skip_policies", self.restore.skip_policies != restore.skip_policies),
            ("restore.analyze", self.restore.analyze != restore.analyze),
            ("restore.freeze", self.restore.freeze != restore.freeze),
            ("restore.configs", self.restore.configs != restore.configs),
        ];
        checks.into_iter().filter(|(_, set)| *set).map(|(key, _)| key).collect()
    }

    fn check_source(&self, problems: &mut Vec<String>) {
        match (&self.source, &self.restore.from_dump) {
            (None, None) => problems.push(
                "set either [retrieval.source] (dump a live database) or restore.from_dump (restore existing dumps)"
                    .to_owned(),
            ),
            (Some(_), Some(_)) => problems.push(
                "[retrieval.source] and restore.from_dump exclude each other: remove one".to_owned(),
            ),
            (Some(source), None) => source.check(problems),
            (None, Some(dir)) => {
                if !dir.is_dir() {
                    problems.push(format!("restore.from_dump: {} is not a directory", dir.display()));
                }
                if self.dump.immediate_restore {
                    problems.push("dump.immediate_restore needs a live source, not restore.from_dump".to_owned());
                }
            }
        }
    }

    fn check_jobs(&self, problems: &mut Vec<String>) {
        for (key, jobs) in [
            ("dump.parallel_jobs", self.dump.parallel_jobs),
            ("restore.parallel_jobs", self.restore.parallel_jobs),
            ("preprocessing.max_parallel_workers", self.preprocessing.max_parallel_workers),
        ] {
            if !(1..=MAX_JOBS).contains(&jobs) {
                problems.push(format!("{key} = {jobs}: must be between 1 and {MAX_JOBS}"));
            }
        }
        if self.dump.immediate_restore && self.restore.skip_policies {
            problems.push(
                "restore.skip_policies filters the archive's table of contents, which a stream (dump.immediate_restore) does not have before it is restored"
                    .to_owned(),
            );
        }
        if self.dump.immediate_restore
            && (self.dump.parallel_jobs > 1 || self.restore.parallel_jobs > 1)
        {
            problems.push(
                "dump.immediate_restore streams one custom-format archive, which pg_restore can only read with one job: set dump.parallel_jobs and restore.parallel_jobs to 1, or turn immediate_restore off"
                    .to_owned(),
            );
        }
    }

    fn check_initdb(&self, problems: &mut Vec<String>) {
        let restore = &self.restore;
        for (key, value) in [
            ("initdb_encoding", &restore.initdb_encoding),
            ("initdb_locale", &restore.initdb_locale),
            ("initdb_provider_locale", &restore.initdb_provider_locale),
        ] {
            if let Some(value) = value
                && (value.trim().is_empty()
                    || !value.chars().all(|c| c.is_ascii_graphic() && c != '\'' && c != '"'))
            {
                problems.push(format!(
                    "restore.{key} = {value:?}: must be a non-empty name of printable ASCII characters without quotes or spaces"
                ));
            }
        }
        let provider = restore.initdb_locale_provider.as_deref();
        let minimum = match provider {
            None | Some("libc") => 13,
            Some("icu") => 15,
            Some("builtin") => 17,
            Some(other) => {
                problems.push(format!(
                    "restore.initdb_locale_provider = {other:?}: must be libc, icu or builtin"
                ));
                13
            }
        };
        if self.target_major < minimum {
            problems.push(format!(
                "restore.initdb_locale_provider = {:?} needs target_major {minimum} or later",
                provider.unwrap_or_default()
            ));
        }
        match (provider, &restore.initdb_provider_locale) {
            (Some("icu" | "builtin"), None) => problems.push(format!(
                "restore.initdb_locale_provider = {:?} needs restore.initdb_provider_locale (for example \"en-US\" for icu, \"C.UTF-8\" for builtin)",
                provider.unwrap_or_default()
            )),
            (None | Some("libc"), Some(_)) => problems.push(
                "restore.initdb_provider_locale is only for restore.initdb_locale_provider = \"icu\" or \"builtin\""
                    .to_owned(),
            ),
            _ => {}
        }
    }

    fn check_preprocessing(&self, problems: &mut Vec<String>) {
        let preprocessing = &self.preprocessing;
        if let Some(path) = &preprocessing.query_path
            && !path.is_dir()
        {
            problems
                .push(format!("preprocessing.query_path: {} is not a directory", path.display()));
        }
        if let Some(script) = &preprocessing.script
            && !is_executable(script)
        {
            problems.push(format!(
                "preprocessing.script: {} is not an executable file",
                script.display()
            ));
        }
        if let Err(problem) = check_database_name(&preprocessing.database) {
            problems.push(format!("preprocessing.database: {problem}"));
        }
    }

    /// The next full refresh after `after`, from the timetable; `None` without a timetable.
    pub fn next_refresh(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let Some(timetable) = &self.timetable else { return Ok(None) };
        let cron = parse_timetable(timetable).map_err(Error::invalid)?;
        cron.find_next_occurrence(&after, false)
            .map(Some)
            .map_err(|error| Error::invalid(format!("timetable {timetable:?}: {error}")))
    }

    /// The settings of the temporary target instance: the defaults, then `restore.configs`.
    pub fn restore_settings(&self) -> Vec<(String, String)> {
        let mut settings: BTreeMap<String, String> = DEFAULT_RESTORE_SETTINGS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        settings.extend(self.restore.configs.clone());
        if self.masks() && !self.is_continuous() {
            settings.extend(
                crate::masking::TARGET_SETTINGS
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
            );
        }
        if self.is_continuous() {
            // The restore creates enabled subscriptions: only the sync instance may run them.
            settings.insert(NO_APPLY_WORKERS.0.to_owned(), NO_APPLY_WORKERS.1.to_owned());
        }
        settings.into_iter().collect()
    }
}

impl SourceConfig {
    fn check(&self, problems: &mut Vec<String>) {
        match &self.connection_string {
            Some(connection) => {
                if self.host.is_some() {
                    problems.push("source: set connection_string or host, not both".to_owned());
                }
                if connection.trim().is_empty() {
                    problems.push("source.connection_string is empty".to_owned());
                }
                if connection_string_has_password(connection) {
                    problems.push(
                        "source.connection_string must not contain a password: put it in the environment and name the variable in source.password_env"
                            .to_owned(),
                    );
                }
            }
            None => match &self.host {
                Some(host) if !host.trim().is_empty() => {}
                _ => problems.push("source: set connection_string or host".to_owned()),
            },
        }
        if self.username.is_empty() || self.dbname.is_empty() {
            problems.push("source.username and source.dbname must not be empty".to_owned());
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            problems.push("source: set password_env or password_file, not both".to_owned());
        }
        if let Some(file) = &self.password_file
            && !file.is_absolute()
        {
            problems.push(format!(
                "source.password_file = {:?} must be an absolute path",
                file.display()
            ));
        }
        if let Some(variable) = &self.password_env {
            let mut chars = variable.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                problems.push(format!(
                    "source.password_env = {variable:?} is not an environment variable name (it names the variable, it is not the password)"
                ));
            }
        }
    }
}

/// The password in `source.password_file`: its first line.
pub fn read_password_file(file: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// True when a libpq URI carries `user:password@` or a `password` parameter.
fn connection_string_has_password(connection: &str) -> bool {
    let lower = connection.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let rest = &connection[connection.find("://").map_or(0, |at| at + 3)..];
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let user_info = authority.rsplit_once('@').map(|(user, _)| user).unwrap_or_default();
        return user_info.contains(':') || lower.contains("password=");
    }
    lower.split_whitespace().any(|pair| pair.trim_start().starts_with("password"))
}

fn check_options(key: &str, options: &[String], owned: &[&str], problems: &mut Vec<String>) {
    for option in options {
        if !option.starts_with('-') {
            problems.push(format!("{key}: {option:?} is not an option (options start with `-`)"));
            continue;
        }
        let name = option.split('=').next().unwrap_or_default();
        let short_with_value = owned
            .iter()
            .any(|owned| owned.len() == 2 && name.starts_with(owned) && !name.starts_with("--"));
        if owned.contains(&name) || short_with_value {
            problems
                .push(format!("{key}: {option:?} is set by Scion itself and cannot be overridden"));
        }
    }
}

pub(crate) fn check_database_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('\0') || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{name:?} is not a database name (1 to {MAX_NAME_BYTES} bytes, no NUL)"
        ));
    }
    Ok(())
}

/// Parses a standard 5-field cron expression (minute hour day-of-month month day-of-week,
/// Sunday = 0 or 7, as DBLab's `refresh.timetable`).
pub fn parse_timetable(timetable: &str) -> Result<croner::Cron, String> {
    let fields = timetable.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "timetable {timetable:?}: expected 5 fields (minute hour day month weekday), found {fields}"
        ));
    }
    croner::Cron::from_str(timetable).map_err(|error| format!("timetable {timetable:?}: {error}"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;

    use super::*;

    pub(crate) fn live() -> RetrievalConfig {
        RetrievalConfig {
            source: Some(SourceConfig {
                host: Some("db.internal".into()),
                ..SourceConfig::default()
            }),
            ..RetrievalConfig::default()
        }
    }

    pub(crate) fn problems(config: &RetrievalConfig) -> Vec<String> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(Error::InvalidConfig { problems }) => problems,
            Err(other) => panic!("{other:?}"),
        }
    }

    pub(super) fn renames(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn a_minimal_live_config_is_valid() {
        assert_eq!(problems(&live()), Vec::<String>::new());
    }

    #[test]
    fn keeping_unmasked_data_is_for_logical_full_refreshes_only() {
        let masking = crate::masking::MaskingConfig {
            keep_unmasked: true,
            ..crate::masking::MaskingConfig::default()
        };
        let logical = RetrievalConfig { masking: Some(masking), ..live() };
        assert_eq!(problems(&logical), Vec::<String>::new());
        assert!(logical.keeps_unmasked());
        let continuous = RetrievalConfig {
            continuous: Some(crate::config::continuous::ContinuousConfig::default()),
            ..logical.clone()
        };
        assert!(!continuous.keeps_unmasked());
        let found = problems(&continuous);
        assert!(
            found
                .iter()
                .any(|p| p.contains("keep_unmasked applies to logical full refreshes only")),
            "{found:?}"
        );
    }

    #[test]
    fn checks_the_initdb_overrides() {
        let mut config = live();
        config.restore.initdb_locale = Some("en_US.UTF-8".into());
        config.restore.initdb_encoding = Some("UTF8".into());
        config.restore.initdb_locale_provider = Some("icu".into());
        config.restore.initdb_provider_locale = Some("en-US".into());
        assert_eq!(problems(&config), Vec::<String>::new());
        config.restore.initdb_locale_provider = Some("builtin".into());
        config.target_major = 16;
        assert!(problems(&config)[0].contains("needs target_major 17"));
        config.restore.initdb_locale_provider = Some("glibc".into());
        assert!(problems(&config)[0].contains("must be libc, icu or builtin"));
        config.restore.initdb_locale_provider = Some("icu".into());
        config.restore.initdb_provider_locale = None;
        config.restore.initdb_locale = Some("en US".into());
        let found = problems(&config);
        assert!(found.iter().any(|p| p.contains("initdb_locale = \"en US\"")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("needs restore.initdb_provider_locale")));
        let mut config = live();
        config.restore.initdb_provider_locale = Some("en-US".into());
        assert!(problems(&config)[0].contains("only for"));
        let parsed: RetrievalConfig = toml::from_str(
            "[restore]\ninitdb_encoding = \"UTF8\"\ninitdb_locale = \"C.UTF-8\"\n\
             initdb_locale_provider = \"builtin\"\ninitdb_provider_locale = \"C.UTF-8\"\n",
        )
        .unwrap();
        assert_eq!(parsed.restore.initdb_locale_provider.as_deref(), Some("builtin"));
        assert_eq!(parsed.restore.initdb_provider_locale.as_deref(), Some("C.UTF-8"));
    }

    #[test]
    fn needs_exactly_one_data_origin() {
        let none = RetrievalConfig::default();
        assert!(problems(&none)[0].contains("set either"));
        let mut both = live();
        both.restore.from_dump = Some("/tmp".into());
        assert!(problems(&both)[0].contains("exclude each other"));
    }

    #[test]
    fn refuses_passwords_in_connection_strings() {
        for connection in [
            "postgres://app:secret@db/app",
            "postgresql://app:secret@db:5432/app?sslmode=require",
            "host=db user=app password=secret dbname=app",
            "postgres://app@db/app?password=secret",
        ] {
            let mut config = live();
            let source = config.source.as_mut().unwrap();
            source.host = None;
            source.connection_string = Some(connection.into());
            assert!(
                problems(&config).iter().any(|p| p.contains("must not contain a password")),
                "{connection}"
            );
        }
        let mut config = live();
        let source = config.source.as_mut().unwrap();
        source.host = None;
        source.connection_string = Some("postgres://app@db:5432/app?sslmode=require".into());
        assert_eq!(problems(&config), Vec::<String>::new());
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut config = live();
        config.dump.parallel_jobs = 0;
        config.dump.immediate_restore = true;
        config.restore.skip_policies = true;
        config.restore.parallel_jobs = 4;
        config.dump.custom_options = vec!["--format=plain".into(), "verbose".into()];
        config.restore.custom_options = vec!["-j8".into()];
        config.target_major = 12;
        config.timetable = Some("0 0 * *".into());
        config.database_rename = renames(&[("a", "a")]);
        config.preprocessing.query_path = Some("/nonexistent-scion".into());
        config.dump.location = Some("relative".into());
        let found = problems(&config);
        for needle in [
            "dump.parallel_jobs = 0",
            "immediate_restore",
            "skip_policies",
            "\"--format=plain\" is set by Scion",
            "\"verbose\" is not an option",
            "\"-j8\" is set by Scion",
            "target_major",
            "expected 5 fields",
            "renamed to itself",
            "query_path",
            "absolute",
        ] {
            assert!(found.iter().any(|p| p.contains(needle)), "{needle}: {found:?}");
        }
    }

    #[test]
    fn timetable_gives_the_next_run() {
        let mut config = live();
        assert_eq!(config.next_refresh(Utc::now()).unwrap(), None);
        // DBLab's example: Mondays at midnight. 2026-01-01 is a Thursday.
        config.timetable = Some("0 0 * * 1".into());
        let after = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            config.next_refresh(after).unwrap(),
            Some(Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap())
        );
        config.timetable = Some("61 0 * * *".into());
        assert!(config.validate().is_err());
    }

    /// The `[retrieval]` section as an operator writes it.
    const EXAMPLE: &str = r#"
target_major = 17
timetable = "0 3 * * 1"

[source]
host = "prod-replica.internal"
port = 5432
dbname = "postgres"
username = "scion_reader"
password_env = "SCION_SOURCE_PASSWORD"

[databases.myapp_production]
exclude_tables = ["audit_log"]

[databases.analytics_prod]
tables = ["public.events", "reporting.*"]

[dump]
parallel_jobs = 4
location = "/srv/scion-dump"
custom_options = ["--no-comments"]

[restore]
parallel_jobs = 4
custom_options = ["--no-tablespaces", "--no-privileges"]
skip_policies = true
configs = { work_mem = "64MB" }

[preprocessing]
inline = "UPDATE users SET email = md5(email) || '@example.com';"
max_parallel_workers = 2

[database_rename]
myapp_production = "myapp"
analytics_prod = "analytics"
"#;

    #[test]
    fn parses_the_example_and_refuses_unknown_keys() {
        let config: RetrievalConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(problems(&config), Vec::<String>::new());
        assert_eq!(config.dump.parallel_jobs, 4);
        assert_eq!(config.databases["analytics_prod"].tables.len(), 2);
        assert_eq!(config.database_rename["myapp_production"], "myapp");
        assert!(config.restore.analyze, "defaults fill what the file leaves out");
        assert!(config.restore.freeze);
        let error =
            toml::from_str::<RetrievalConfig>(&EXAMPLE.replace("skip_policies", "skip_policy"))
                .unwrap_err()
                .to_string();
        assert!(error.contains("unknown field `skip_policy`"), "{error}");
        assert!(error.contains("line"), "{error}");
        assert!(toml::from_str::<RetrievalConfig>("[source]\npassword = \"x\"").is_err());
    }

    /// Physical mode as an operator writes it.
    #[test]
    fn user_settings_override_the_restore_defaults() {
        let mut config = live();
        config.restore.configs.insert("fsync".into(), "on".into());
        config.restore.configs.insert("work_mem".into(), "64MB".into());
        let settings = config.restore_settings();
        assert!(settings.contains(&("fsync".into(), "on".into())));
        assert!(settings.contains(&("work_mem".into(), "64MB".into())));
        assert!(settings.contains(&("autovacuum".into(), "off".into())));
    }
}
