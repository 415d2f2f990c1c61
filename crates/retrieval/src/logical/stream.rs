//! `pg_dump -Fc` piped into `pg_restore` through two FIFOs, with no dump on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Job, Logical, Step, check, list, reporter_bytes, reporter_tables};
use crate::error::{Error, Result, classify};
use crate::pipe::{self, Input};
use crate::progress::Stage;
use crate::run::{count_table_lines, run_logged};
use crate::source::Source;
use crate::target::{create_schemas, server_log_tail};

impl Logical<'_> {
    /// pg_dump -Fc piped into pg_restore through two FIFOs, with no dump on disk.
    pub(crate) async fn stream(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &mut Job,
        index: usize,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let Step { tools, target, reporter, cancel } = *step;
        reporter.update(|progress| progress.database = Some(job.name.clone()));
        let filtered = !job.filter.tables.is_empty();
        if filtered {
            self.stream_database_entries(step, source, job, index, warnings).await?;
        }
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
        let restore = self.restore_command(tools, target, job, !filtered, Some(&fifo_out)).await?;
        if filtered {
            // A table-filtered dump has no CREATE SCHEMA; the schemas are only known from the
            // source, so the filter's qualified names are used.
            let schemas = qualified_schemas(&job.filter.tables);
            create_schemas(target, &job.name, &schemas).await?;
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

    /// A stream is read once, so a table-filtered one cannot create its database first with
    /// the archive's database entries (see `restore_archive`): a schema-only dump of the same
    /// tables, small, brings them.
    async fn stream_database_entries(
        &self,
        step: &Step<'_>,
        source: &Source,
        job: &Job,
        index: usize,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let Step { tools, target, cancel, .. } = *step;
        let file = target.run_dir.join(format!("database-{index}.dump"));
        let dump = self
            .dump_command(source, tools, job)?
            .arg("--schema-only")
            .arg("--format=custom")
            .arg("--no-sync")
            .arg(format!("--file={}", file.display()));
        let log = target.run_dir.join(format!("database-dump-{index}.log"));
        let dumped = run_logged(dump, &log, Stage::Streaming, cancel, |_| {}).await?;
        check(&dumped, Stage::Streaming, &job.name, None)?;
        let toc = list(&tools.path("pg_restore")?, &file, cancel).await?;
        let restored = match toc.database() {
            Some(_) => self.restore_database_entries(step, job, &file, &toc, index, warnings).await,
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&file);
        restored
    }
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
