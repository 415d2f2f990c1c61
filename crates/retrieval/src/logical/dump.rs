//! `pg_dump` of each database into a directory-format dump, and `pg_dumpall --roles-only`
//! replayed into the target.

use std::path::PathBuf;

use exec::Cmd;
use tokio_util::sync::CancellationToken;

use super::{Job, Logical, Step, Tools, check, reporter_bytes, reporter_tables};
use crate::archive::{DumpFile, DumpFormat, size_of};
use crate::config::CONNECTION_DATABASE;
use crate::error::{Error, Result, classify, last_error_lines};
use crate::progress::Stage;
use crate::run::{count_table_lines, run_logged, spawn_error};
use crate::source::{Source, filter_roles_sql};
use crate::target::{Target, target_roles};

impl Logical<'_> {
    pub(crate) async fn copy_roles(
        &self,
        source: &Source,
        tools: &Tools,
        target: &Target,
        warnings: &mut Vec<String>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let sql = source
            .dump_roles(tools.path("pg_dumpall")?, self.config.dump.role_passwords, cancel)
            .await?;
        let existing = target_roles(target).await?;
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
            warnings.push(format!("roles: {}", last_error_lines(&errors)));
        }
        Ok(())
    }

    pub(crate) async fn dump(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &mut Job,
        index: usize,
        created: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        let location = self.config.dump.location.clone().unwrap_or_else(|| target.dump_dir());
        let location = &location;
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
    pub(crate) fn dump_command(&self, source: &Source, tools: &Tools, job: &Job) -> Result<Cmd> {
        let mut cmd = source.command(tools.path("pg_dump")?, &job.name).arg("--verbose");
        if job.is_full() {
            cmd = cmd.arg("--create");
        }
        if let Some(snapshot) = &job.snapshot {
            cmd = cmd.arg(format!("--snapshot={snapshot}"));
        }
        for table in &job.filter.tables {
            cmd = cmd.arg(format!("--table={table}"));
        }
        for table in &job.filter.exclude_tables {
            cmd = cmd.arg(format!("--exclude-table={table}"));
        }
        Ok(cmd.args(&self.config.dump.custom_options))
    }
}
