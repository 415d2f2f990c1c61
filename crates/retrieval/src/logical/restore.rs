//! `pg_restore` of archives and `psql` of plain SQL dumps (gzip and bzip2 through a FIFO) into
//! the target.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use exec::Cmd;

use super::{Job, Logical, Step, Tools, list, reporter_tables};
use crate::archive::{self, DumpFormat, Toc, size_of};
use crate::error::{Error, Result, classify, last_error_lines};
use crate::pipe::{self, Input};
use crate::progress::Stage;
use crate::run::{Finished, count_table_lines, run_logged};
use crate::target::{
    Target, create_database, create_schemas, server_log_tail, target_has_database,
};

impl Logical<'_> {
    /// Restores every job's dump; returns the archives' tables of contents (None for plain).
    pub(crate) async fn restore_all(
        &self,
        step: &Step<'_>,
        jobs: &mut [Job],
        warnings: &mut Vec<String>,
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
                Some(toc) => self.restore_archive(step, job, toc, index, warnings).await?,
                None => self.restore_plain(step, job, index, warnings).await?,
            }
        }
        Ok(tocs)
    }

    pub(crate) async fn restore_archive(
        &self,
        step: &Step<'_>,
        job: &mut Job,
        toc: &Toc,
        index: usize,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        let dump = job.dump_file()?;
        let restore = &self.config.restore;
        let filtered = !job.filter.tables.is_empty();
        if let Some(name) = toc.database() {
            // The archive creates its database: restored under the archive's name.
            job.name = name;
        }
        if filtered && toc.database().is_some() {
            // `--table` leaves the database's own entries in (they answer to `--create` only)
            // but not the schemas, which must exist first: the database comes first, alone.
            self.restore_database_entries(step, job, &dump.path, toc, index, warnings).await?;
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
            create_schemas(target, &job.name, &toc.table_schemas()).await?;
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
        self.check_restore(&finished, target, &job.name, warnings)?;
        job.tables = toc.table_data_count();
        job.bytes = size_of(&dump.path);
        Ok(())
    }

    /// Creates the job's database from the archive's own entries only (`CREATE DATABASE` with
    /// its encoding and locale, owner, comment, ACL, settings and role settings in it), for a
    /// restore of some of its tables into it afterwards.
    pub(crate) async fn restore_database_entries(
        &self,
        step: &Step<'_>,
        job: &Job,
        archive: &Path,
        toc: &Toc,
        index: usize,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let Step { tools, target, cancel, .. } = *step;
        let list_path = target.run_dir.join(format!("database-{index}.list"));
        std::fs::write(&list_path, toc.database_entries())
            .map_err(|error| Error::io("write restore list", &list_path, error))?;
        let cmd = self
            .restore_command(tools, target, job, true, None)
            .await?
            .arg(format!("--use-list={}", list_path.display()))
            .arg(archive);
        let log = target.run_dir.join(format!("database-{index}.log"));
        let finished = run_logged(cmd, &log, Stage::Restoring, cancel, |_| {}).await?;
        self.check_restore(&finished, target, &job.name, warnings)
    }

    /// pg_restore into the target: with `--create` (connected to template1; `--clean` too when
    /// the database exists already, as `postgres` does) when the archive creates its database,
    /// else into the database, created first.
    pub(crate) async fn restore_command(
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
            if target_has_database(target, &job.name).await? {
                cmd = cmd.arg("--clean");
            }
        } else {
            create_database(target, &job.name, job.create.as_ref()).await?;
            cmd = cmd.arg(format!("--dbname={}", target.conninfo(&job.name)));
        }
        if !self.config.restore.ignore_errors {
            cmd = cmd.arg("--exit-on-error");
        }
        Ok(cmd.args(&self.config.restore.custom_options))
    }

    pub(crate) async fn restore_plain(
        &self,
        step: &Step<'_>,
        job: &mut Job,
        index: usize,
        warnings: &mut Vec<String>,
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
                create_database(target, &job.name, job.create.as_ref()).await?;
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
        self.check_restore(&finished, target, &job.name, warnings)?;
        job.tables = tables;
        job.bytes = size_of(&dump.path);
        Ok(())
    }

    pub(crate) fn check_restore(
        &self,
        finished: &Finished,
        target: &Target,
        database: &str,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        if finished.status.success() {
            // psql without ON_ERROR_STOP goes past a failed statement and exits 0: the errors
            // it ignored are only in its output.
            let ignored = psql_errors(&finished.log);
            if ignored > 0 {
                warnings.push(format!(
                    "{database}: restore errors ignored: {}\npsql: errors ignored on restore: {ignored}",
                    last_error_lines(&finished.log)
                ));
            }
            return Ok(());
        }
        let server_log = server_log_tail(target);
        let error =
            classify(Stage::Restoring, Some(database), &format!("{}\n{server_log}", finished.log));
        if self.config.restore.ignore_errors && !matches!(error, Error::NoSpace { .. }) {
            warnings.push(format!(
                "{database}: restore errors ignored: {}",
                last_error_lines(&finished.log)
            ));
            return Ok(());
        }
        Err(error)
    }
}

/// The statements psql reported as failed in `log` (`psql:<file>:<line>: ERROR:  ...`).
fn psql_errors(log: &str) -> usize {
    log.lines()
        .filter(|line| line.strip_prefix("psql:").is_some_and(|rest| rest.contains(": ERROR:")))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_statements_psql_went_past() {
        let log = "SET\nCREATE TABLE\n\
                   psql:/d/app.sql:12: ERROR:  relation \"gone\" does not exist\n\
                   psql:/d/my dumps/app.sql:40: ERROR:  syntax error at or near \"x\"\n\
                   LINE 1: x;\n\
                   psql:/d/app.sql:41: NOTICE:  ERROR: in a notice is not one\n\
                   COPY 3\n";
        assert_eq!(psql_errors(log), 2);
        assert_eq!(psql_errors("SET\nCOPY 3\n"), 0);
    }
}
