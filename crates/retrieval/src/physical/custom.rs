//! The custom tool: any command line, run by `/bin/sh -c` as the servers' OS user with
//! `PGDATA` (the empty target directory), the source's `PG*` variables and `PGPASSWORD`; WAL-G
//! (`wal-g backup-fetch "$PGDATA" LATEST`) and other tools plug in here. It reports nothing
//! Scion can read, so progress is the directory's growth against the source's database sizes.

use super::{Step, run_tool, tool_command};
use crate::error::Result;

/// Runs the command into the target directory.
pub(crate) async fn run(step: &Step<'_>) -> Result<u64> {
    let command = step.physical().custom.command.clone();
    let mut cmd = tool_command("/bin/sh", step.user())
        .args(["-c", &command])
        .env("PGDATA", &step.target.data_dir);
    let mut total = None;
    if let Some(source) = step.source {
        for (name, value) in source.libpq_env() {
            cmd = cmd.env(name, value);
        }
        if let Some(password) = source.password() {
            cmd = cmd.secret_env("PGPASSWORD", password).redact(password.to_owned());
        }
        total = database_sizes(step, source).await;
    }
    run_tool(step, cmd, |_| None, total, true).await
}

/// The sum of the source's database sizes, the bulk of what a physical copy brings; `None`
/// when the source cannot tell (the tool may copy from an archive, not from it).
async fn database_sizes(step: &Step<'_>, source: &crate::source::Source) -> Option<u64> {
    let psql = super::newest_tool(&step.copy.search, "psql", None).ok()?;
    let output = source
        .command(psql, &source.connection_database())
        .args(["-X", "-A", "-t", "-q", "-c"])
        .arg("SELECT sum(pg_catalog.pg_database_size(oid))::bigint FROM pg_catalog.pg_database")
        .cancel_on(step.cancel.clone())
        .output()
        .await
        .ok()?;
    output.stdout_text().trim().parse().ok()
}
