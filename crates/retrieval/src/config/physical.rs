//! The `[retrieval.physical]` section: the initial copy's tool (pg_basebackup, pgBackRest, a
//! custom command), its replication slot, the WAL archive's `restore_command`, the snapshot
//! timetable, and the sync instance's settings; and its validation.
//!
//! Physical mode is chosen by the presence of this section (DBLab chooses it by listing
//! `physicalRestore` among the jobs), and mixing it with the logical keys is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default replication slot's base name; each golden dataset gets its own slot,
/// [`slot_name`]`(slot, dataset)`.
pub const DEFAULT_SLOT: &str = "scion_standby";
/// The default pgBackRest stanza.
pub const DEFAULT_STANZA: &str = "main";
/// The default interval of the sync instance's health checks (DBLab's 5 s).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// PostgreSQL's limit on a replication slot name (NAMEDATALEN - 1).
pub const MAX_SLOT_NAME: usize = 63;

/// The tool of the initial copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PhysicalTool {
    /// `pg_basebackup -X stream` from a primary or a replica, with a replication slot.
    #[default]
    #[serde(rename = "pg_basebackup")]
    PgBasebackup,
    /// `pgbackrest restore --type=standby` from a repository.
    #[serde(rename = "pgbackrest")]
    PgBackRest,
    /// Any command line, run with `PGDATA` and the source's `PG*` variables.
    #[serde(rename = "custom")]
    Custom,
}

impl PhysicalTool {
    /// The name in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            PhysicalTool::PgBasebackup => "pg_basebackup",
            PhysicalTool::PgBackRest => "pgbackrest",
            PhysicalTool::Custom => "custom",
        }
    }
}

/// The `[retrieval.physical]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhysicalConfig {
    /// The tool of the initial copy.
    pub tool: PhysicalTool,
    /// pg_basebackup: the base name of the replication slot the copy creates (`-C -S`); the
    /// slot of a dataset is [`slot_name`]`(slot, dataset)`, dropped with the dataset.
    pub slot: String,
    /// Fetches WAL from an archive (`%f`, `%p`) for the standby and for points in time; empty
    /// means none (pgBackRest then keeps its own `archive-get`).
    pub restore_command: Option<String>,
    /// Directories `restore_command` reads (a local WAL archive, a backup tool's configuration
    /// and repository), shown read-only to the sandbox of the sync instance and of promotions
    /// (snapshots, points in time); absolute and existing.
    pub restore_dirs: Vec<PathBuf>,
    /// A standard 5-field cron expression (UTC) for snapshots of the sync instance.
    pub snapshot_timetable: Option<String>,
    /// pgBackRest settings.
    pub pgbackrest: PgBackRestConfig,
    /// The custom tool.
    pub custom: CustomConfig,
    /// The sync instance: the standby on the golden dataset.
    pub sync: SyncConfig,
}

impl Default for PhysicalConfig {
    fn default() -> Self {
        PhysicalConfig {
            tool: PhysicalTool::default(),
            slot: DEFAULT_SLOT.to_owned(),
            restore_command: None,
            restore_dirs: Vec::new(),
            snapshot_timetable: None,
            pgbackrest: PgBackRestConfig::default(),
            custom: CustomConfig::default(),
            sync: SyncConfig::default(),
        }
    }
}

/// `[retrieval.physical.pgbackrest]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgBackRestConfig {
    /// The stanza to restore.
    pub stanza: String,
    /// pgBackRest's configuration file; unset, pgBackRest's default.
    pub config: Option<PathBuf>,
    /// Extra arguments of `pgbackrest restore` (for example `--set=…`, `--repo=2`).
    pub options: Vec<String>,
}

impl Default for PgBackRestConfig {
    fn default() -> Self {
        PgBackRestConfig { stanza: DEFAULT_STANZA.to_owned(), config: None, options: Vec::new() }
    }
}

/// `[retrieval.physical.custom]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomConfig {
    /// A command line run by `/bin/sh -c` as the servers' OS user, with `PGDATA` (the empty
    /// target directory) and the source's `PG*` variables; it must leave a data directory there.
    pub command: String,
    /// Fetches WAL for the standby (`%f`, `%p`); it replaces `[retrieval.physical]
    /// restore_command` for this tool.
    pub restore_command: Option<String>,
}

/// `[retrieval.physical.sync]`: the sync instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Keep a standby running on the golden dataset; snapshots on a timetable need it.
    pub enabled: bool,
    /// How often the engine checks the sync instance's health, e.g. "5s".
    #[serde(with = "duration_text")]
    pub health_interval: Duration,
    /// Settings of the standby (e.g. `shared_buffers`); a hot-standby parameter lower than the
    /// primary's is raised to the primary's.
    pub configs: BTreeMap<String, String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            enabled: true,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            configs: BTreeMap::new(),
        }
    }
}

impl PhysicalConfig {
    /// The `restore_command` of the configured tool, if any (empty means none).
    pub fn effective_restore_command(&self) -> Option<&str> {
        let command = match self.tool {
            PhysicalTool::Custom => {
                self.custom.restore_command.as_deref().or(self.restore_command.as_deref())
            }
            _ => self.restore_command.as_deref(),
        };
        command.filter(|command| !command.trim().is_empty())
    }

    /// The snapshot timetable, if set and not empty.
    pub fn snapshot_timetable(&self) -> Option<&str> {
        self.snapshot_timetable.as_deref().filter(|text| !text.trim().is_empty())
    }

    /// Every problem of this section, each naming its key. `has_source` tells whether
    /// `[retrieval.source]` is set; `path` is where programs are looked for (the engine's
    /// `PATH`).
    pub(crate) fn problems(&self, has_source: bool, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for dir in &self.restore_dirs {
            if !dir.is_absolute() || !dir.is_dir() {
                problems.push(format!(
                    "physical.restore_dirs: {} is not an existing absolute directory",
                    dir.display()
                ));
            }
        }
        match self.tool {
            PhysicalTool::PgBasebackup => {
                if !has_source {
                    problems.push(
                        "physical.tool = \"pg_basebackup\" copies from a live server: set [retrieval.source]"
                            .to_owned(),
                    );
                }
                if let Err(problem) = check_slot_base(&self.slot) {
                    problems.push(format!("physical.slot: {problem}"));
                }
            }
            PhysicalTool::PgBackRest => {
                if find_program("pgbackrest", path).is_none() {
                    problems.push(format!(
                        "physical.tool = \"pgbackrest\": the pgbackrest program is not installed (not found in PATH {path}); install Debian's pgbackrest package"
                    ));
                }
                let stanza = &self.pgbackrest.stanza;
                if stanza.is_empty()
                    || !stanza.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    problems.push(format!(
                        "physical.pgbackrest.stanza = {stanza:?}: letters, digits, `_`, `-` and `.` only"
                    ));
                }
                if let Some(config) = &self.pgbackrest.config
                    && !config.is_file()
                {
                    problems.push(format!(
                        "physical.pgbackrest.config: {} is not a file",
                        config.display()
                    ));
                }
                for option in &self.pgbackrest.options {
                    let name = option.split('=').next().unwrap_or_default();
                    if !option.starts_with("--") {
                        problems.push(format!(
                            "physical.pgbackrest.options: {option:?} is not an option (`--name=value`)"
                        ));
                    } else if PGBACKREST_OWNED.contains(&name) {
                        problems.push(format!(
                            "physical.pgbackrest.options: {option:?} is set by Scion itself"
                        ));
                    }
                }
            }
            PhysicalTool::Custom => {
                let command = self.custom.command.trim();
                match command.split_whitespace().next() {
                    None => problems.push(
                        "physical.custom.command is empty: name the command that fills $PGDATA"
                            .to_owned(),
                    ),
                    Some(program) => {
                        if find_program(program, path).is_none() {
                            problems.push(format!(
                                "physical.custom.command: its program {program:?} is not found (not an executable path, nor in PATH {path})"
                            ));
                        }
                    }
                }
            }
        }
        for (key, command) in [
            ("physical.restore_command", &self.restore_command),
            ("physical.custom.restore_command", &self.custom.restore_command),
        ] {
            if let Some(command) = command
                && command.chars().any(char::is_control)
            {
                problems.push(format!("{key} has control characters"));
            }
        }
        problems.extend(self.sync.problems("physical", self.snapshot_timetable()));
        for owned in ["primary_conninfo", "primary_slot_name", "restore_command", "hot_standby"] {
            if self.sync.configs.contains_key(owned) {
                problems.push(format!(
                    "physical.sync.configs: {owned} is set by Scion itself (see physical.restore_command and [retrieval.source])"
                ));
            }
        }
        problems
    }
}

impl SyncConfig {
    /// The problems of a section's sync instance and its snapshot timetable, each named
    /// `<section>.…`.
    pub(crate) fn problems(&self, section: &str, snapshot_timetable: Option<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(timetable) = snapshot_timetable {
            if let Err(problem) = super::parse_timetable(timetable) {
                problems.push(format!("{section}.snapshot_{problem}"));
            }
            if !self.enabled {
                problems.push(format!(
                    "{section}.snapshot_timetable needs the sync instance: snapshots are cut from it, so set {section}.sync.enabled = true or remove the timetable"
                ));
            }
        }
        if self.health_interval.is_zero() {
            problems.push(format!("{section}.sync.health_interval must be more than 0"));
        }
        if let Err(error) = postgres::conf::check_settings(
            self.configs.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        ) {
            problems.push(format!("{section}.sync.configs: {error}"));
        }
        problems
    }
}

/// Options of `pgbackrest restore` that Scion sets itself.
const PGBACKREST_OWNED: &[&str] = &["--stanza", "--pg1-path", "--type", "--config"];

/// The replication slot of the golden dataset named `dataset` (its last path component, e.g.
/// `data_20260101120000`, or any unique suffix): `<base>_<suffix>`, where the suffix keeps the
/// dataset's letters, digits and `_` in lower case, cut from the left to fit 63 bytes. Distinct
/// datasets get distinct slots, so a full refresh copies while the older standby keeps its own.
pub fn slot_name(base: &str, dataset: &str) -> String {
    let last = dataset.rsplit(['/', '@']).next().unwrap_or(dataset);
    let suffix: String = last
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if suffix.is_empty() {
        return base.to_owned();
    }
    let room = MAX_SLOT_NAME.saturating_sub(base.len() + 1);
    let suffix = &suffix[suffix.len().saturating_sub(room)..];
    format!("{base}_{suffix}")
}

/// A slot base name: lower-case letters, digits and `_`, leaving room for a dataset suffix.
pub(crate) fn check_slot_base(base: &str) -> Result<(), String> {
    if base.is_empty()
        || !base.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{base:?} is not a replication slot name (lower-case letters, digits and `_`)"
        ));
    }
    if base.len() > MAX_SLOT_NAME - 16 {
        return Err(format!(
            "{base:?} is too long: at most {} bytes, leaving room for the dataset suffix",
            MAX_SLOT_NAME - 16
        ));
    }
    Ok(())
}

/// The executable `program` names: a path as given, or the first match in `path`'s directories.
pub(crate) fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let candidate = Path::new(program);
        return is_executable(candidate).then(|| candidate.to_path_buf());
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Durations written as humantime strings ("5s", "1m 30s").
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"5s\": {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::config::tests::{live, problems};
    use crate::config::{DatabaseConfig, RetrievalConfig};

    const PHYSICAL: &str = r#"
timetable = "0 3 * * 1"

[source]
host = "prod-replica.internal"
username = "replicator"
password_env = "SCION_SOURCE_PASSWORD"

[physical]
tool = "pg_basebackup"
slot = "scion_standby"
restore_command = ""
snapshot_timetable = "0 */6 * * *"

[physical.pgbackrest]
stanza = "main"
options = ["--repo=1"]

[physical.custom]
command = "pg_basebackup -X stream -D \"$PGDATA\""

[physical.sync]
enabled = true
health_interval = "5s"
configs = { shared_buffers = "1GB" }

[preprocessing]
inline = "UPDATE users SET email = md5(email) || '@example.com';"

[database_rename]
myapp_production = "myapp"
"#;

    #[test]
    fn parses_a_physical_config() {
        let config: RetrievalConfig = toml::from_str(PHYSICAL).unwrap();
        assert_eq!(problems(&config), Vec::<String>::new());
        assert!(config.is_physical());
        let physical = config.physical.as_ref().unwrap();
        assert_eq!(physical.tool, PhysicalTool::PgBasebackup);
        assert_eq!(physical.sync.health_interval, std::time::Duration::from_secs(5));
        assert_eq!(physical.sync.configs["shared_buffers"], "1GB");
        assert_eq!(physical.effective_restore_command(), None, "empty means none");
        assert_eq!(physical.snapshot_timetable(), Some("0 */6 * * *"));
        let error = toml::from_str::<RetrievalConfig>(&PHYSICAL.replace("slot =", "slots ="))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `slots`"), "{error}");
        let error = toml::from_str::<RetrievalConfig>(&PHYSICAL.replace("\"5s\"", "\"often\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a duration"), "{error}");
        let error = toml::from_str::<RetrievalConfig>(
            &PHYSICAL.replace("\"pg_basebackup\"\n", "\"walg\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("walg"), "{error}");
    }

    #[test]
    fn the_physical_section_of_the_example_file_is_valid() {
        // Commented out there (it excludes the example's logical keys): uncommented here.
        let example = include_str!("../../../../config/example.toml");
        let start = example.find("\n# [retrieval.physical]\n").unwrap() + 1;
        let text: String = example[start..]
            .lines()
            .map(|line| line.strip_prefix("# ").or_else(|| line.strip_prefix('#')).unwrap_or(line))
            .map(|line| format!("{line}\n"))
            .collect();
        #[derive(Deserialize)]
        struct File {
            retrieval: RetrievalConfig,
        }
        let mut config = toml::from_str::<File>(&text).unwrap().retrieval;
        config.source = live().source;
        // The example's archive directory need not exist on this host: validation checks that
        // it does, so it is checked apart.
        let physical = config.physical.as_mut().unwrap();
        assert_eq!(physical.restore_dirs, [std::path::PathBuf::from("/var/lib/wal-archive")]);
        physical.restore_dirs.clear();
        assert_eq!(problems(&config), Vec::<String>::new());
        let physical = config.physical.unwrap();
        assert_eq!(physical.slot, "scion_standby");
        assert_eq!(physical.pgbackrest.stanza, "main");
        assert!(physical.custom.command.contains("$PGDATA"));
        assert_eq!(physical.sync.health_interval, std::time::Duration::from_secs(5));
    }

    #[test]
    fn physical_and_logical_keys_exclude_each_other() {
        let mut config: RetrievalConfig = toml::from_str(PHYSICAL).unwrap();
        config.dump.immediate_restore = true;
        config.databases.insert("app".into(), DatabaseConfig::default());
        config.restore.from_dump = Some("/tmp".into());
        let found = problems(&config);
        for key in ["dump.immediate_restore", "databases", "restore.from_dump"] {
            assert!(
                found
                    .iter()
                    .any(|p| p.contains("[retrieval.physical] and the logical key")
                        && p.contains(key)),
                "{key}: {found:?}"
            );
        }
    }

    #[test]
    fn physical_problems_are_listed() {
        let mut config: RetrievalConfig = toml::from_str(PHYSICAL).unwrap();
        config.source = None;
        let physical = config.physical.as_mut().unwrap();
        physical.slot = "Bad-Slot".into();
        physical.snapshot_timetable = Some("61 * * * *".into());
        physical.sync.enabled = false;
        physical.sync.configs.insert("primary_conninfo".into(), "host=x".into());
        let found = problems(&config);
        for needle in [
            "copies from a live server: set [retrieval.source]",
            "physical.slot: \"Bad-Slot\"",
            "physical.snapshot_timetable \"61 * * * *\"",
            "needs the sync instance",
            "primary_conninfo is set by Scion itself",
        ] {
            assert!(found.iter().any(|p| p.contains(needle)), "{needle}: {found:?}");
        }
    }

    #[test]
    fn slot_names_are_distinct_per_dataset_and_fit() {
        assert_eq!(
            slot_name("scion_standby", "data_20260101120000"),
            "scion_standby_data_20260101120000"
        );
        assert_eq!(
            slot_name("scion_standby", "pool/data_20260101120000"),
            "scion_standby_data_20260101120000"
        );
        assert_ne!(slot_name("s", "data_1"), slot_name("s", "data_2"));
        let long = slot_name(&"s".repeat(47), "data_20260101120000");
        assert_eq!(long.len(), MAX_SLOT_NAME);
        assert!(long.ends_with("20260101120000"), "{long}");
        assert_eq!(slot_name("s", "Data-X"), "s_datax");
        assert_eq!(slot_name("s", "--"), "s");
    }

    #[test]
    fn missing_tools_are_named() {
        let pgbackrest =
            PhysicalConfig { tool: PhysicalTool::PgBackRest, ..PhysicalConfig::default() };
        let found = pgbackrest.problems(false, "/nonexistent-scion");
        assert!(
            found.iter().any(|p| p.contains("pgbackrest program is not installed")),
            "{found:?}"
        );
        let mut custom = PhysicalConfig { tool: PhysicalTool::Custom, ..PhysicalConfig::default() };
        custom.custom.command = "wal-g-scion-missing backup-fetch \"$PGDATA\" LATEST".into();
        let found = custom.problems(false, "/usr/bin:/bin");
        assert!(
            found.iter().any(|p| p.contains("\"wal-g-scion-missing\" is not found")),
            "{found:?}"
        );
        custom.custom.command = " ".into();
        assert!(custom.problems(false, "/usr/bin")[0].contains("command is empty"));
        custom.custom.command = "/bin/sh -c true".into();
        assert_eq!(custom.problems(false, ""), Vec::<String>::new(), "no source is fine");
        custom.restore_dirs = vec!["/tmp".into(), "relative".into(), "/nonexistent-scion".into()];
        let found = custom.problems(false, "");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|p| p.starts_with("physical.restore_dirs: ")), "{found:?}");
        custom.restore_dirs.clear();
        let mut options = pgbackrest.clone();
        options.pgbackrest.options = vec!["--pg1-path=/x".into(), "delta".into()];
        options.pgbackrest.stanza = "a b".into();
        let found = options.problems(false, "/usr/bin");
        for needle in ["set by Scion itself", "is not an option", "stanza = \"a b\""] {
            assert!(found.iter().any(|p| p.contains(needle)), "{needle}: {found:?}");
        }
    }

    #[test]
    fn finds_programs() {
        assert!(find_program("sh", "/usr/bin:/bin").is_some());
        assert!(find_program("/bin/sh", "").is_some());
        assert!(find_program("scion-no-such-tool", "/usr/bin:/bin").is_none());
    }
}
