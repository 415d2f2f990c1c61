//! Which databases a run restores and with which client tools: probed from a live source, or
//! found as existing dumps.

use std::path::PathBuf;

use postgres::PgMajor;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Job, Logical, Tools, job};
use crate::archive::{self};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::source::Source;

impl Logical<'_> {
    /// Probes the source and decides the databases and the tools.
    pub(crate) async fn plan_live(
        &self,
        source: &Source,
        target_major: PgMajor,
        cancel: &CancellationToken,
        warnings: &mut Vec<String>,
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
            warnings.push(format!(
                "PostgreSQL {wanted} has no client tools here; dumping and restoring with PostgreSQL {}'s",
                tools.binaries.major()
            ));
        }
        Ok((jobs, Some(probe.major), tools))
    }

    /// Finds the existing dumps to restore.
    pub(crate) fn plan_files(
        &self,
        target_major: PgMajor,
    ) -> Result<(Vec<Job>, Option<PgMajor>, Tools)> {
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
    pub(crate) fn client_tools(&self, at_least: PgMajor, names: &[&str]) -> Result<Tools> {
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
    pub(crate) fn newest_tool(&self, name: &str) -> Result<PathBuf> {
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
}
