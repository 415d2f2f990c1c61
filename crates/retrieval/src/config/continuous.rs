//! The `[retrieval.continuous]` section: logical mode's continuous refresh (after the dump and
//! restore, logical replication keeps the golden copy current) — its publication, slot base
//! name, snapshot timetable and sync instance settings; and its validation.
//!
//! Its presence turns it on. It needs a live source (a dump file has nothing to replicate
//! from) and whole databases: a table list is followed only through a publication the operator
//! made for exactly those tables (`publication`), never through the engine's own, which is
//! `FOR ALL TABLES`.

use serde::{Deserialize, Serialize};

use super::physical::{SyncConfig, check_slot_base};
use super::{MAX_NAME_BYTES, RetrievalConfig};

/// The default base name of continuous mode's logical replication slots; each golden
/// dataset and database gets its own (`<base>_<dataset>_<n>`).
pub const DEFAULT_LOGICAL_SLOT: &str = "scion_logical";
/// The publication the engine creates (`FOR ALL TABLES`) in each dumped database when the
/// configuration names none.
pub const DEFAULT_PUBLICATION: &str = "scion_continuous";

/// `[retrieval.continuous]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContinuousConfig {
    /// A publication that exists in every dumped database of the source, to subscribe to;
    /// unset, the engine creates `scion_continuous` (`FOR ALL TABLES`) where it is missing,
    /// and drops what it created when its slots go.
    pub publication: Option<String>,
    /// The base name of the logical replication slots the engine creates on the source.
    pub slot: String,
    /// A standard 5-field cron expression (UTC) for snapshots of the sync instance.
    pub snapshot_timetable: Option<String>,
    /// The sync instance: the golden copy's server, a primary with subscriptions.
    pub sync: SyncConfig,
}

impl Default for ContinuousConfig {
    fn default() -> Self {
        ContinuousConfig {
            publication: None,
            slot: DEFAULT_LOGICAL_SLOT.to_owned(),
            snapshot_timetable: None,
            sync: SyncConfig::default(),
        }
    }
}

impl ContinuousConfig {
    /// The snapshot timetable, if set and not empty.
    pub fn snapshot_timetable(&self) -> Option<&str> {
        self.snapshot_timetable.as_deref().filter(|text| !text.trim().is_empty())
    }

    /// The publication subscribed to, and whether the engine owns it (creates it where it is
    /// missing and drops what it created).
    pub fn publication(&self) -> (&str, bool) {
        match &self.publication {
            Some(name) => (name, false),
            None => (DEFAULT_PUBLICATION, true),
        }
    }

    /// Every problem of this section with the rest of `config`, each naming its key.
    pub(crate) fn problems(&self, config: &RetrievalConfig) -> Vec<String> {
        let mut problems = Vec::new();
        if config.physical.is_some() {
            problems.push(
                "[retrieval.continuous] is logical mode's continuous refresh: remove it or [retrieval.physical] (a physical copy is kept current by its standby already)"
                    .to_owned(),
            );
        }
        if config.source.is_none() || config.restore.from_dump.is_some() {
            problems.push(
                "[retrieval.continuous] replicates from a live source: set [retrieval.source] (restore.from_dump has nothing to replicate from)"
                    .to_owned(),
            );
        }
        if self.publication.is_none() {
            for (name, database) in &config.databases {
                if !database.tables.is_empty() || !database.exclude_tables.is_empty() {
                    problems.push(format!(
                        "databases.{name}: a table list with [retrieval.continuous] needs continuous.publication, a publication on the source for exactly those tables (the engine's own is FOR ALL TABLES and would replicate rows of tables the dump left out)"
                    ));
                }
            }
        }
        if let Some(publication) = &self.publication
            && (publication.is_empty()
                || publication.len() > MAX_NAME_BYTES
                || publication.chars().any(char::is_control))
        {
            problems.push(format!(
                "continuous.publication = {publication:?}: a publication name of 1 to {MAX_NAME_BYTES} bytes"
            ));
        }
        if let Err(problem) = check_slot_base(&self.slot) {
            problems.push(format!("continuous.slot: {problem}"));
        }
        problems.extend(self.sync.problems("continuous", self.snapshot_timetable()));
        if self.sync.configs.contains_key("max_logical_replication_workers") {
            problems.push(
                "continuous.sync.configs: max_logical_replication_workers is set by Scion itself (every server but the sync instance runs with none)"
                    .to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DatabaseConfig, SourceConfig};

    fn with(continuous: ContinuousConfig) -> RetrievalConfig {
        RetrievalConfig {
            source: Some(SourceConfig { host: Some("db".into()), ..SourceConfig::default() }),
            continuous: Some(continuous),
            ..RetrievalConfig::default()
        }
    }

    #[test]
    fn a_plain_section_with_a_live_source_is_valid() {
        let config = with(ContinuousConfig::default());
        config.validate().unwrap();
        assert_eq!(config.continuous.as_ref().unwrap().publication(), (DEFAULT_PUBLICATION, true));
        let given = ContinuousConfig { publication: Some("mine".into()), ..Default::default() };
        assert_eq!(given.publication(), ("mine", false));
    }

    #[test]
    fn problems_name_their_keys() {
        let mut config = with(ContinuousConfig {
            slot: "Bad-Slot".into(),
            snapshot_timetable: Some("not cron".into()),
            ..ContinuousConfig::default()
        });
        config.source = None;
        config.restore.from_dump = Some("/".into());
        config.databases.insert(
            "app".into(),
            DatabaseConfig { tables: vec!["public.a".into()], ..DatabaseConfig::default() },
        );
        let text = config.validate().unwrap_err().to_string();
        for expected in [
            "replicates from a live source",
            "databases.app: a table list with [retrieval.continuous] needs continuous.publication",
            "continuous.slot",
            "continuous.snapshot_timetable",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        // With the operator's publication, a table list is theirs to match.
        let mut listed = with(ContinuousConfig {
            publication: Some("app_tables".into()),
            ..ContinuousConfig::default()
        });
        listed.databases.insert(
            "app".into(),
            DatabaseConfig { tables: vec!["public.a".into()], ..DatabaseConfig::default() },
        );
        listed.validate().unwrap();
    }

    #[test]
    fn the_continuous_section_of_the_example_file_is_valid() {
        // Commented out there: uncommented here, with the example's [retrieval] keys.
        let example = include_str!("../../../../config/example.toml");
        let start = example.find("\n# [retrieval.continuous]\n").unwrap() + 1;
        let end = start + example[start..].find("\n# Physical mode").unwrap();
        let section: String = example[start..end]
            .lines()
            .map(|line| line.strip_prefix("# ").or_else(|| line.strip_prefix('#')).unwrap_or(line))
            .map(|line| format!("{line}\n"))
            .collect();
        #[derive(serde::Deserialize)]
        struct File {
            retrieval: RetrievalConfig,
        }
        let mut config = toml::from_str::<File>(&section).unwrap().retrieval;
        config.source = crate::config::tests::live().source;
        config.validate().unwrap();
        let continuous = config.continuous.unwrap();
        assert_eq!(continuous.slot, DEFAULT_LOGICAL_SLOT);
        assert_eq!(continuous.publication(), (DEFAULT_PUBLICATION, true));
        assert_eq!(continuous.snapshot_timetable(), Some("0 */6 * * *"));
        assert_eq!(continuous.sync.health_interval, std::time::Duration::from_secs(5));
    }

    #[test]
    fn physical_mode_excludes_it() {
        let mut config = with(ContinuousConfig::default());
        config.physical = Some(crate::config::PhysicalConfig::default());
        let text = config.validate().unwrap_err().to_string();
        assert!(text.contains("[retrieval.continuous] is logical mode's"), "{text}");
    }
}
