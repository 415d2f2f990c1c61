//! `pg_basebackup` from a primary or a replica: `-X stream` with a replication slot the copy
//! creates (`-C -S`), so the source keeps every WAL segment from the copy's start until the
//! standby streams from the slot; and the slot's removal when its dataset goes.

use std::path::Path;

use postgres::BinarySearch;
use tokio_util::sync::CancellationToken;

use super::{Step, meter, run_tool, tool_command};
use crate::error::{Error, Result, classify};
use crate::progress::Stage;
use crate::source::Source;

/// Copies the source into the target directory as the servers' OS user, creating `slot`.
pub(crate) async fn copy(step: &Step<'_>, source: &Source, tool: &Path, slot: &str) -> Result<u64> {
    let mut cmd = tool_command(tool, step.user())
        .arg(format!("--dbname={}", source.conninfo(&source.connection_database())))
        .arg("--pgdata")
        .arg(&step.target.data_dir)
        .args(["--wal-method=stream", "--create-slot", "--checkpoint=fast"])
        .arg(format!("--slot={slot}"))
        .args(["--progress", "--verbose", "--no-password"])
        .env("PGAPPNAME", crate::SOURCE_APPLICATION_NAME)
        .env("PGCONNECT_TIMEOUT", "10");
    if let Some(password) = source.password() {
        cmd = cmd.secret_env("PGPASSWORD", password).redact(password.to_owned());
    }
    run_tool(step, cmd, meter::basebackup_progress, None, false).await
}

/// Whether the replication slot `slot` exists on the source.
pub(crate) async fn slot_exists(
    search: &BinarySearch,
    source: &Source,
    slot: &str,
    cancel: &CancellationToken,
) -> Result<bool> {
    let query = format!(
        "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        postgres::sql::quote_literal(slot)
    );
    Ok(query_count(search, source, &query, cancel).await? > 0)
}

/// Drops `slot` on the source if it exists; whether it did. A slot a running standby still
/// uses cannot be dropped: the error says so.
pub(crate) async fn drop_slot(
    search: &BinarySearch,
    source: &Source,
    slot: &str,
    cancel: &CancellationToken,
) -> Result<bool> {
    let query = format!(
        "SELECT count(pg_catalog.pg_drop_replication_slot(slot_name)) \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        postgres::sql::quote_literal(slot)
    );
    Ok(query_count(search, source, &query, cancel).await? > 0)
}

async fn query_count(
    search: &BinarySearch,
    source: &Source,
    query: &str,
    cancel: &CancellationToken,
) -> Result<u64> {
    let psql = super::newest_tool(search, "psql", None)?;
    let output = source
        .command(psql, &source.connection_database())
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", query])
        .cancel_on(cancel.clone())
        .output_any_status()
        .await
        .map_err(|error| crate::run::spawn_error(Stage::Copying, &error))?;
    if !output.status.success() {
        return Err(classify(Stage::Copying, None, &output.stderr_text()));
    }
    let text = output.stdout_text();
    text.trim().parse().map_err(|_| Error::Failed {
        stage: Stage::Copying,
        stderr_tail: format!("unexpected answer about a replication slot: {text:?}"),
    })
}
