//! Which databases a run restores and with which client tools: probed from a live source, or
//! found as existing dumps.

use std::path::PathBuf;

use postgres::PgMajor;
use tokio_util::sync::CancellationToken;
use tracing::info;

use exec::Cmd;

use super::{Job, Logical, Tools, job, list};
use crate::archive;
use crate::config::{CONNECTION_DATABASE, DatabaseConfig};
use crate::error::{Error, Result};
use crate::progress::Stage;
use crate::source::Source;
use crate::target::{ClusterLocale, Target, check_host_locales, existing_major};

/// What a live source says about locales: its template1's, and the libc locales of the
/// databases to restore.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceLocales {
    pub(crate) template: Option<ClusterLocale>,
    pub(crate) databases: Vec<String>,
}

impl Logical<'_> {
    /// Probes the source and decides the databases and the tools.
    pub(crate) async fn plan_live(
        &self,
        source: &Source,
        target_major: PgMajor,
        cancel: &CancellationToken,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<Job>, Option<PgMajor>, Tools, SourceLocales)> {
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
        let locales = SourceLocales {
            template: probe.template.clone(),
            databases: jobs
                .iter()
                .filter_map(|job| job.create.as_ref())
                .flat_map(|database| [database.collate.clone(), database.ctype.clone()])
                .collect(),
        };
        Ok((jobs, Some(probe.major), tools, locales))
    }

    /// The encoding and locale to initdb the target with: the configuration's overrides over
    /// the source's template1's; without a live source, over what a dump's `CREATE DATABASE`
    /// says (the `postgres` database's, else the first's), else UTF8 and `C.UTF-8`, which the
    /// warnings say. Fails before any work when this host lacks a libc locale the target
    /// cluster or a database to restore needs. A target that holds a cluster already keeps its
    /// own.
    pub(crate) async fn target_locale(
        &self,
        source: SourceLocales,
        jobs: &[Job],
        tools: &Tools,
        target: &Target,
        cancel: &CancellationToken,
        warnings: &mut Vec<String>,
    ) -> Result<ClusterLocale> {
        let restore = &self.config.restore;
        self.check_dumps_need_no_icu(jobs, tools, cancel).await?;
        let dumped = match source.template {
            Some(_) => Vec::new(),
            None => self.dumped_locales(jobs, tools, target, cancel).await?,
        };
        let databases: Vec<&str> = source
            .databases
            .iter()
            .map(String::as_str)
            .chain(dumped.iter().flat_map(|(_, locale)| [&*locale.collate, &*locale.ctype]))
            .collect();
        check_host_locales(&databases, "a database to restore").await?;
        if existing_major(&target.data_dir)?.is_some() {
            // The cluster is there already and keeps its own locale; nothing is initdb'd.
            return Ok(ClusterLocale::fallback());
        }
        let (found, origin) = match source.template {
            Some(template) => (template, "the source's template1".to_owned()),
            None => match dumped
                .iter()
                .find(|(database, _)| database == CONNECTION_DATABASE)
                .or_else(|| dumped.first())
                .cloned()
            {
                Some((database, locale)) => {
                    if !ClusterLocale::overridden(restore) {
                        warnings.push(format!(
                            "no live source: the target cluster takes the encoding and locale of the dump of {database} ({locale})"
                        ));
                    }
                    (locale, format!("the dump of {database}"))
                }
                None => {
                    let locale = ClusterLocale::fallback();
                    if !ClusterLocale::overridden(restore) {
                        warnings.push(format!(
                            "neither a source's template1 nor a dump says the cluster's locale: the target cluster is initialized with {locale}"
                        ));
                    }
                    (locale, "the default".to_owned())
                }
            },
        };
        let locale = found.with_overrides(restore);
        let why = if ClusterLocale::overridden(restore) {
            "the target cluster ([retrieval.restore] initdb_*)".to_owned()
        } else {
            format!("the target cluster (as {origin})")
        };
        check_host_locales(&[&locale.collate, &locale.ctype], &why).await?;
        if locale.provider == "icu" {
            self.check_icu(&format!("{why}: the ICU locale provider"))?;
        }
        info!(%locale, "target cluster locale");
        Ok(locale)
    }

    /// Refuses `needs` (something that takes ICU) when the target's server is built without
    /// ICU: initdb would fail only after the dumps.
    fn check_icu(&self, needs: &str) -> Result<()> {
        match self.target_without_icu()? {
            Some(binaries) => Err(Error::icu_missing(&binaries, needs.to_owned())),
            None => Ok(()),
        }
    }

    /// The target's server binaries when they are built without ICU.
    fn target_without_icu(&self) -> Result<Option<postgres::PgBinaries>> {
        let major = PgMajor::new(self.config.target_major)
            .map_err(|error| Error::invalid(error.to_string()))?;
        let binaries = self.search.locate(major).map_err(|error| Error::ToolMissing {
            tool: format!("PostgreSQL {major} server"),
            detail: error.to_string(),
        })?;
        Ok(lacks_icu(&binaries)?.then_some(binaries))
    }

    /// Refuses dump files that need ICU when the target's server is built without it, before
    /// any restore: the schema of each archive (`pg_restore --schema-only`) or each plain
    /// dump is read for ICU collations and databases. Only read on such a target.
    async fn check_dumps_need_no_icu(
        &self,
        jobs: &[Job],
        tools: &Tools,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let dumps: Vec<_> = jobs.iter().filter_map(|job| job.dump.as_ref()).collect();
        if dumps.is_empty() {
            return Ok(());
        }
        let Some(binaries) = self.target_without_icu()? else { return Ok(()) };
        let mut needs = Vec::new();
        for dump in dumps {
            let found = if dump.format.is_archive() {
                let output = Cmd::new(tools.path("pg_restore")?)
                    .args(["--schema-only", "--create", "--file=-"])
                    .arg(&dump.path)
                    .cancel_on(cancel.clone())
                    .output()
                    .await
                    .map_err(|error| crate::run::spawn_error(Stage::Probing, &error))?;
                archive::icu_mentions(output.stdout_text().as_bytes())
            } else {
                archive::icu_mentions(archive::plain_reader(&dump.path, dump.format)?)
            }
            .map_err(|error| Error::io("read dump", &dump.path, error))?;
            if !found.is_empty() {
                needs.push(format!("{} in {}", found.join(", "), dump.path.display()));
            }
        }
        if needs.is_empty() { Ok(()) } else { Err(Error::icu_missing(&binaries, needs.join("; "))) }
    }

    /// The database and locale of each dump's `CREATE DATABASE` (dumps without one are left
    /// out).
    async fn dumped_locales(
        &self,
        jobs: &[Job],
        tools: &Tools,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<Vec<(String, ClusterLocale)>> {
        let mut found = Vec::new();
        for (index, dump) in jobs.iter().filter_map(|job| job.dump.as_ref()).enumerate() {
            let sql = if dump.format.is_archive() {
                let pg_restore = tools.path("pg_restore")?;
                let toc = list(&pg_restore, &dump.path, cancel).await?;
                let Some(entry) = toc.database_entries().lines().next().map(str::to_owned) else {
                    continue;
                };
                let list_path = target.run_dir.join(format!("locale-{index}.list"));
                std::fs::write(&list_path, format!("{entry}\n"))
                    .map_err(|error| Error::io("write restore list", &list_path, error))?;
                let output = Cmd::new(pg_restore)
                    .args(["--create", "--file=-"])
                    .arg(format!("--use-list={}", list_path.display()))
                    .arg(&dump.path)
                    .cancel_on(cancel.clone())
                    .output()
                    .await
                    .map_err(|error| crate::run::spawn_error(Stage::Preparing, &error))?;
                output.stdout_text()
            } else {
                archive::plain_head(&dump.path, dump.format)?
            };
            if let Some(create) = archive::parse_create_database(&sql) {
                let database =
                    archive::plain_creates_database(&sql).unwrap_or_else(|| dump.database.clone());
                found.push((database, ClusterLocale::from_create(create)));
            }
        }
        Ok(found)
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

/// Whether the server of `binaries` is built without ICU.
pub(crate) fn lacks_icu(binaries: &postgres::PgBinaries) -> Result<bool> {
    let supports = binaries
        .supports_icu()
        .map_err(|error| Error::Failed { stage: Stage::Probing, stderr_tail: error.to_string() })?;
    Ok(!supports)
}
