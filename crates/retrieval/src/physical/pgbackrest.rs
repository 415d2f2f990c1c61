//! pgBackRest: `pgbackrest restore --type=standby` of the stanza's latest backup (or the one
//! `options` pick) from its repository into the target directory, as the servers' OS user.
//! The total is the backup's size from `pgbackrest info`; progress is the percentage of each
//! restored file that `--log-level-console=detail` prints.
//!
//! pgBackRest writes its own recovery settings (`restore_command = 'pgbackrest … archive-get'`,
//! `standby.signal`) unless `restore_command` is configured, which is passed as
//! `--recovery-option`.

use exec::Cmd;

use super::{Step, meter, run_tool, tool_command};
use crate::config::physical::{PgBackRestConfig, find_program};
use crate::error::{Error, Result};
use crate::progress::Stage;

/// Restores the stanza into the target directory.
pub(crate) async fn restore(step: &Step<'_>) -> Result<u64> {
    let config = &step.physical().pgbackrest;
    let path = std::env::var("PATH").unwrap_or_default();
    let program = find_program("pgbackrest", &path).ok_or_else(|| Error::ToolMissing {
        tool: "pgbackrest".to_owned(),
        detail: format!("not found in PATH {path}; install Debian's pgbackrest package"),
    })?;
    let total = backup_size(step, &program, config).await;
    let mut cmd = base_command(step, &program, config)
        .arg(format!("--pg1-path={}", step.target.data_dir.display()))
        .args(["--type=standby", "--log-level-console=detail", "--log-level-stderr=warn"]);
    if let Some(command) = step.physical().effective_restore_command() {
        cmd = cmd.arg(format!("--recovery-option=restore_command={command}"));
    }
    let cmd = cmd.args(&config.options).arg("restore");
    let parse = move |text: &str| {
        let percent = meter::pgbackrest_percent(text)?;
        let total = total?;
        Some(((total as f64 * percent / 100.0) as u64, Some(total)))
    };
    run_tool(step, cmd, parse, total, false).await
}

fn base_command(step: &Step<'_>, program: &std::path::Path, config: &PgBackRestConfig) -> Cmd {
    let mut cmd = tool_command(program, step.user()).arg(format!("--stanza={}", config.stanza));
    if let Some(file) = &config.config {
        cmd = cmd.arg(format!("--config={}", file.display()));
    }
    cmd
}

/// The size of the database in the newest backup (`pgbackrest info --output=json`); `None` when
/// it cannot be told, which only costs the progress its total.
async fn backup_size(
    step: &Step<'_>,
    program: &std::path::Path,
    config: &PgBackRestConfig,
) -> Option<u64> {
    let output = base_command(step, program, config)
        .args(["--output=json", "info"])
        .cancel_on(step.cancel.clone())
        .output()
        .await;
    match output {
        Ok(output) => newest_backup_size(&output.stdout_text()),
        Err(error) => {
            tracing::warn!(%error, stage = %Stage::Copying, "pgbackrest info");
            None
        }
    }
}

/// `[{"backup": [{"info": {"size": N}}, …]}]` → the last backup's N.
fn newest_backup_size(json: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get(0)?.get("backup")?.as_array()?.last()?.get("info")?.get("size")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_newest_backups_size() {
        let json = r#"[{"backup":[{"info":{"size":100}},{"info":{"size":23456,"delta":1}}],"name":"main"}]"#;
        assert_eq!(newest_backup_size(json), Some(23456));
        assert_eq!(newest_backup_size(r#"[{"backup":[],"name":"main"}]"#), None);
        assert_eq!(newest_backup_size("not json"), None);
    }
}
