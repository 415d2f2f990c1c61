//! Preparing the restored data for its snapshot: query preprocessing (SQL files in name order,
//! each sub-directory's files in parallel, then inline SQL), the preprocessing script, and the
//! masking of personal data (`[retrieval.masking]`, after preprocessing so that it sees what
//! preprocessing made), and the database renames (DBLab §6.6 and §6.8).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exec::Cmd;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::PreprocessingConfig;
use crate::error::{Error, Result, classify};
use crate::masking::{MaskingConfig, MaskingRun};
use crate::progress::{Reporter, Stage};
use crate::target::Target;

/// Runs the SQL files, the inline SQL and the script against the running target.
pub(crate) async fn preprocess(
    config: &PreprocessingConfig,
    psql: &Path,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<()> {
    if let Some(dir) = &config.query_path {
        for entry in sorted_entries(dir)? {
            if entry.is_dir() {
                let files: Vec<PathBuf> =
                    sorted_entries(&entry)?.into_iter().filter(|path| is_sql(path)).collect();
                run_parallel(config, psql, target, files, cancel).await?;
            } else if is_sql(&entry) {
                run_sql(psql, target, &config.database, SqlInput::File(entry), cancel).await?;
            }
        }
    }
    if let Some(sql) = &config.inline {
        run_sql(psql, target, &config.database, SqlInput::Text(sql.clone()), cancel).await?;
    }
    if let Some(script) = &config.script {
        let output = Cmd::new(script)
            .env("PGHOST", target.run_dir.join("sock"))
            .env("PGPORT", target.port.to_string())
            .env("PGUSER", &target.admin_role)
            .env("PGDATABASE", &config.database)
            .env("PGDATA", &target.data_dir)
            .current_dir(&target.run_dir)
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| crate::run::spawn_error(Stage::Preprocessing, &error))?;
        if !output.status.success() {
            return Err(Error::Failed {
                stage: Stage::Preprocessing,
                stderr_tail: format!(
                    "script {} {}: {}",
                    script.display(),
                    output.status,
                    crate::error::tail_chars(
                        &format!("{}\n{}", output.stdout_text(), output.stderr_text()),
                        2000
                    )
                ),
            });
        }
    }
    Ok(())
}

async fn run_parallel(
    config: &PreprocessingConfig,
    psql: &Path,
    target: &Target,
    files: Vec<PathBuf>,
    cancel: &CancellationToken,
) -> Result<()> {
    let workers = usize::try_from(config.max_parallel_workers).unwrap_or(1).max(1);
    let permits = Arc::new(Semaphore::new(workers));
    let mut tasks = JoinSet::new();
    for file in files {
        let permits = permits.clone();
        let psql = psql.to_path_buf();
        let target = target.clone();
        let database = config.database.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            run_sql(&psql, &target, &database, SqlInput::File(file), &cancel).await
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|error| Error::Failed {
            stage: Stage::Preprocessing,
            stderr_tail: error.to_string(),
        })?;
        if let (Err(error), None) = (result, &first_error) {
            first_error = Some(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

enum SqlInput {
    File(PathBuf),
    Text(String),
}

async fn run_sql(
    psql: &Path,
    target: &Target,
    database: &str,
    input: SqlInput,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut cmd = Cmd::new(psql)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--host={}", target.run_dir.join("sock").display()))
        .arg(format!("--port={}", target.port))
        .arg(format!("--username={}", target.admin_role))
        .arg(format!("--dbname={database}"))
        .cancel_on(cancel.clone());
    let what = match &input {
        SqlInput::File(path) => {
            cmd = cmd.arg(format!("--file={}", path.display()));
            path.display().to_string()
        }
        SqlInput::Text(sql) => {
            cmd = cmd.stdin_bytes(sql.clone());
            "inline SQL".to_owned()
        }
    };
    let output = cmd
        .output_any_status()
        .await
        .map_err(|error| crate::run::spawn_error(Stage::Preprocessing, &error))?;
    if output.status.success() {
        return Ok(());
    }
    Err(match classify(Stage::Preprocessing, Some(database), &output.stderr_text()) {
        Error::Failed { stage, stderr_tail } => {
            Error::Failed { stage, stderr_tail: format!("{what}: {stderr_tail}") }
        }
        other => other,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list", dir, error))?;
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    paths.sort();
    Ok(paths)
}

fn is_sql(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|extension| extension == "sql")
}

/// Masks the running target when `config` has anything to do (a rule that changes data, or
/// the PII refusal); the same step in both modes, never on the source.
pub(crate) async fn mask(
    config: Option<&MaskingConfig>,
    target: &Target,
    reporter: &mut Reporter,
    cancel: &CancellationToken,
) -> Result<Option<MaskingRun>> {
    let Some(config) = config.filter(|config| config.is_active()) else {
        return Ok(None);
    };
    reporter.stage(Stage::Masking);
    if config.keep_unmasked {
        // The engine records this data unmasked, then masks it in place for the head
        // (`masking::mask_copy`): refuse now what masking would, before anything is recorded.
        crate::masking::refuse_target(config, target).await?;
        return Ok(None);
    }
    crate::masking::mask_target(config, target, cancel).await
}

/// Renames databases (`ALTER DATABASE … RENAME`), after checking that each source exists and
/// each target does not; the map was validated already (no chains, so order does not matter).
pub(crate) async fn rename(
    client: &tokio_postgres::Client,
    renames: &BTreeMap<String, String>,
) -> Result<()> {
    let failed = |error: tokio_postgres::Error| Error::Failed {
        stage: Stage::Renaming,
        stderr_tail: error.to_string(),
    };
    for (old, new) in renames {
        let exists = |name: &str| {
            let name = name.to_owned();
            async move {
                client
                    .query_opt("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", &[&name])
                    .await
                    .map(|row| row.is_some())
            }
        };
        if !exists(old).await.map_err(failed)? {
            return Err(Error::DatabaseMissing {
                database: old.clone(),
                detail: format!("it is in database_rename ({old} → {new}) but was not retrieved"),
            });
        }
        if exists(new).await.map_err(failed)? {
            return Err(Error::Failed {
                stage: Stage::Renaming,
                stderr_tail: format!(
                    "cannot rename {old:?} to {new:?}: a database {new:?} exists already"
                ),
            });
        }
        let statement = format!(
            "ALTER DATABASE {} RENAME TO {}",
            postgres::sql::quote_ident(old),
            postgres::sql::quote_ident(new)
        );
        client.batch_execute(&statement).await.map_err(failed)?;
        tracing::info!(%old, %new, "database renamed");
    }
    Ok(())
}
