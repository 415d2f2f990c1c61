//! Masking work on a copy of prepared data (the engine clones a snapshot or keeps a dataset for
//! it): a temporary server, sandboxed and socket-only like a refresh's target, on which either
//! the PII check runs on demand (`scion masking check`, the copy thrown away after) or the rules
//! are applied to data whose unmasked state a snapshot kept (`masking.keep_unmasked`).

use postgres::{BinarySearch, Instance, OsUser, PgMajor, StopMode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pii::Finding;
use super::{MaskingConfig, MaskingRun, TARGET_SETTINGS, run};
use crate::error::{Error, Result};
use crate::progress::Stage;
use crate::target::{STOP_STEP, Target, target_error};

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The databases checked.
    pub databases: Vec<String>,
    /// The columns that look personal and have no rule.
    pub findings: Vec<Finding>,
    /// What is wrong with the rules against the catalog (unknown tables and columns, types,
    /// unique indexes, foreign keys), each naming its key.
    pub problems: Vec<String>,
}

/// Starts the temporary server on the copy in `target.data_dir`, as `user`, with `extra`
/// settings.
async fn start(
    search: &BinarySearch,
    user: &OsUser,
    target: &Target,
    extra: Vec<(String, String)>,
) -> Result<Instance> {
    let major = PgMajor::of_data_dir(&target.data_dir)
        .map_err(|error| target_error(Stage::Masking, &error))?;
    let binaries = crate::physical::promote::locate(search, major)?;
    std::fs::create_dir_all(&target.run_dir)
        .map_err(|error| Error::io("create run directory", &target.run_dir, error))?;
    let mut settings = target.settings();
    settings.extra = extra;
    let spec = target.spec(settings, user)?;
    Instance::start(&binaries, spec).await.map_err(|error| target_error(Stage::Masking, &error))
}

/// Runs `work` until it ends or `cancel` fires.
async fn cancellable<T>(
    work: impl Future<Output = Result<T>>,
    cancel: &CancellationToken,
) -> Result<T> {
    tokio::select! {
        result = work => result,
        () = cancel.cancelled() => Err(Error::Cancelled { stage: Stage::Masking }),
    }
}

/// Checks `config` against the copy in `target.data_dir` and stops its server at once: the
/// copy is thrown away, so nothing needs a clean shutdown.
pub async fn check_copy(
    config: &MaskingConfig,
    search: &BinarySearch,
    user: &OsUser,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<CheckReport> {
    let instance = start(search, user, target, Vec::new()).await?;
    let result = cancellable(run::check_target(config, target), cancel).await;
    if let Err(error) = instance.stop(StopMode::Immediate, STOP_STEP).await {
        warn!(%error, "stop the masking check's server");
    }
    if let Ok(report) = &result {
        info!(
            databases = report.databases.len(),
            findings = report.findings.len(),
            problems = report.problems.len(),
            "masking check finished"
        );
    }
    result
}

/// Masks the copy in `target.data_dir` in place (`config` names its databases as the copy
/// does, after renames), analyzes the masked tables again so that no statistic keeps an
/// original value, and stops its server cleanly, ready for a snapshot. On error the server is
/// stopped at once and the copy must be discarded.
pub async fn mask_copy(
    config: &MaskingConfig,
    search: &BinarySearch,
    user: &OsUser,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Option<MaskingRun>> {
    let extra = TARGET_SETTINGS
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let mut instance = start(search, user, target, extra).await?;
    let result = cancellable(
        async {
            let run = run::mask_analyzed(config, target, cancel).await?;
            let admin =
                instance.admin().await.map_err(|error| target_error(Stage::Stopping, &error))?;
            admin.checkpoint().await.map_err(|error| target_error(Stage::Stopping, &error))?;
            Ok(run)
        },
        cancel,
    )
    .await;
    let mode = if result.is_ok() { StopMode::Fast } else { StopMode::Immediate };
    let stopped = instance.stop(mode, STOP_STEP).await;
    let run = result?;
    stopped.map_err(|error| target_error(Stage::Stopping, &error))?;
    Ok(run)
}
