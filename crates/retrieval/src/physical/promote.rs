//! Promotion: a crash-consistent copy of a running standby (the engine snapshots the sync
//! instance's dataset without stopping it and clones the snapshot) becomes a primary of its own,
//! prepared like a logical run's target and stopped cleanly, ready for its snapshot; at the end
//! of the WAL or at a point in time (a target time or LSN inside the WAL window).
//!
//! Stages: read the copy's control data and the end of its own WAL; rewrite its recovery
//! settings (`postgres::recovery`: `recovery.signal`, the target, `restore_command`,
//! `recovery_target_action = promote`, no standby link, no archiving); start a temporary server
//! on it, sandboxed like a logical run's target, which replays WAL and promotes itself before it
//! accepts a connection; verify it is out of recovery; read `dataStateAt`; run the preprocessing
//! SQL and script and the renames (the code logical mode runs, `crate::prepare`); CHECKPOINT; stop
//! cleanly; remove the recovery settings. On failure the server is stopped and the directory is
//! left for the engine to discard.
//!
//! `dataStateAt` is the last replayed commit's time, from the first of these that knows it
//! (DBLab §6.6 has the same chain, in another order since it reads the sync instance first):
//! 1. `pg_last_xact_replay_timestamp()`, which stays fixed after promotion at the last commit
//!    recovery replayed;
//! 2. `pg_last_committed_xact()` when `track_commit_timestamp` is on (read before preprocessing
//!    commits anything), for a recovery that replayed no commit;
//! 3. the last COMMIT record in the copy's own `pg_wal` at or before the replay end, read with
//!    `pg_waldump` before the start (`postgres::wal`);
//! 4. the time of the copy's latest checkpoint (restartpoint) from `pg_controldata`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use postgres::{BinarySearch, Instance, OsUser, PgBinaries, PgMajor, RecoveryPlan, StopMode};
pub use postgres::{Lsn, RecoveryTarget};
use serde::{Serialize, Serializer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{PreprocessingConfig, RetrievalConfig, rename_problems};
use crate::error::{Error, Result};
use crate::prepare;
use crate::progress::{Progress, Reporter, Stage, StageTiming};
use crate::target::{STOP_STEP, Target, target_error};

/// How long recovery (the replay up to the promotion) may take by default.
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a promotion needs besides the copy.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionConfig {
    /// The command that fetches archived WAL (`%f`, `%p`), run by the server as its OS user
    /// inside its sandbox; `None` replays the copy's `pg_wal` only (a point in time then needs
    /// that WAL to reach the target).
    pub restore_command: Option<String>,
    /// Host directories `restore_command` reads (a local WAL archive), shown read-only in the
    /// server's sandbox.
    pub restore_dirs: Vec<PathBuf>,
    /// The preprocessing SQL and script, as in logical mode.
    pub preprocessing: PreprocessingConfig,
    /// Database renames, as in logical mode (DBLab §6.8).
    pub database_rename: BTreeMap<String, String>,
    /// Server settings for the promotion server (memory for a long replay, say).
    pub settings: Vec<(String, String)>,
    /// How long the replay up to the promotion may take.
    pub recovery_timeout: Duration,
    /// A copy of continuous refresh's golden data (a primary with subscriptions): the server
    /// runs with no apply worker, and the subscriptions are detached and dropped before the
    /// snapshot, so no clone ever connects to the source.
    pub detach_subscriptions: bool,
    /// Masking of personal data, as in logical mode.
    pub masking: Option<crate::masking::MaskingConfig>,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            restore_command: None,
            restore_dirs: Vec::new(),
            preprocessing: PreprocessingConfig::default(),
            database_rename: BTreeMap::new(),
            settings: Vec::new(),
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            detach_subscriptions: false,
            masking: None,
        }
    }
}

impl PromotionConfig {
    /// The preprocessing and renames of `config` (the same keys as logical mode), with
    /// `restore_command`.
    pub fn from_retrieval(config: &RetrievalConfig, restore_command: Option<String>) -> Self {
        PromotionConfig {
            restore_command,
            preprocessing: config.preprocessing.clone(),
            database_rename: config.database_rename.clone(),
            ..PromotionConfig::default()
        }
        .with_masking(config)
    }

    /// With the masking of `config` (and the settings masking needs), when it has anything to
    /// do: every promoted copy is masked, as logical mode's data is.
    #[must_use]
    pub fn with_masking(mut self, config: &RetrievalConfig) -> Self {
        if config.masks() {
            self.masking = config.masking.clone();
            self.settings.extend(
                crate::masking::TARGET_SETTINGS
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
            );
        }
        self
    }

    /// Every problem, each naming its key.
    pub fn validate(&self) -> Result<()> {
        let mut problems = rename_problems(&self.database_rename, &BTreeMap::new());
        if let Some(command) = &self.restore_command
            && (command.trim().is_empty() || command.chars().any(char::is_control))
        {
            problems.push(
                "restore_command: must be a non-empty command line without control characters"
                    .to_owned(),
            );
        }
        for dir in &self.restore_dirs {
            if !dir.is_absolute() || !dir.is_dir() {
                problems.push(format!(
                    "restore_dirs: {} is not an existing absolute directory",
                    dir.display()
                ));
            }
        }
        for (name, _) in &self.settings {
            if postgres::recovery::STRIPPED.contains(&name.to_ascii_lowercase().as_str()) {
                problems.push(format!("promotion settings: {name} is set by the promotion itself"));
            }
        }
        if let Err(error) = postgres::conf::check_settings(
            self.settings.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        ) {
            problems.push(format!("promotion settings: {error}"));
        }
        if self.recovery_timeout.is_zero() {
            problems.push("recovery_timeout: must be more than zero".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::InvalidConfig { problems }) }
    }
}

/// Where `dataStateAt` came from (see the module's chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataStateSource {
    /// `pg_last_xact_replay_timestamp()`.
    ReplayTimestamp,
    /// `pg_last_committed_xact()` (`track_commit_timestamp`).
    CommitTimestamp,
    /// The last COMMIT record in the copy's `pg_wal`.
    WalDump,
    /// The copy's latest checkpoint time.
    Checkpoint,
}

/// The outcome of a successful promotion.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionSummary {
    /// The last replayed commit's time.
    pub data_state_at: DateTime<Utc>,
    /// Which step of the chain gave it.
    pub data_state_source: DataStateSource,
    /// The target asked for.
    pub target: String,
    /// The end of the replayed WAL.
    #[serde(serialize_with = "lsn_text")]
    pub lsn: Lsn,
    /// Where replay started: the redo point of the copy's latest restartpoint.
    #[serde(serialize_with = "lsn_text")]
    pub replayed_from: Lsn,
    /// WAL bytes replayed (from `replayed_from` to `lsn`).
    pub wal_replayed_bytes: u64,
    /// The copy's major.
    pub major: u8,
    /// How long each stage took.
    pub stages: Vec<StageTiming>,
    /// The whole promotion.
    pub total: Duration,
    /// Things that did not fail the promotion but deserve a look.
    pub warnings: Vec<String>,
    /// What masking rewrote, when `[retrieval.masking]` changed data.
    pub masking: Option<crate::masking::MaskingRun>,
}

fn lsn_text<S: Serializer>(lsn: &Lsn, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(lsn)
}

/// A moment the WAL can be replayed to: a commit's time and a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WalPoint {
    /// The time of the commit there.
    pub at: DateTime<Utc>,
    /// The WAL location.
    #[serde(serialize_with = "lsn_text")]
    pub lsn: Lsn,
}

/// The moments a point-in-time promotion can reach: from the oldest snapshot's state to the
/// newest commit in the WAL archive, both included. Shown as it is in `/instance/retrieval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WalWindow {
    /// The oldest reachable moment: the oldest snapshot's `dataStateAt` and LSN.
    pub oldest: WalPoint,
    /// The newest reachable moment: the archive's last commit, and its last record.
    pub newest: WalPoint,
}

impl WalWindow {
    /// Whether `target` lies inside the window (the latest WAL always does).
    pub fn contains(&self, target: &RecoveryTarget) -> bool {
        match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Time(at) => self.oldest.at <= *at && *at <= self.newest.at,
            RecoveryTarget::Lsn(lsn) => self.oldest.lsn <= *lsn && *lsn <= self.newest.lsn,
        }
    }

    /// [`Error::OutsideWalWindow`] unless the window contains `target`.
    pub fn check(&self, target: &RecoveryTarget) -> Result<()> {
        if self.contains(target) {
            Ok(())
        } else {
            Err(Error::OutsideWalWindow { target: target.to_string(), window: *self })
        }
    }
}

impl fmt::Display for WalWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        write!(
            f,
            "the oldest reachable moment is {} (LSN {}) and the newest {} (LSN {})",
            time(self.oldest.at),
            self.oldest.lsn,
            time(self.newest.at),
            self.newest.lsn
        )
    }
}

/// Computes the WAL window from what the engine knows: `oldest`, the oldest snapshot's
/// `dataStateAt` and LSN, and the newest WAL in `archive_dir` (the directory `restore_command`
/// reads), read with `pg_waldump` of the server major `major`. `last_archived_wal`, the
/// source's `pg_stat_archiver.last_archived_wal`, when known, bounds the segments read. An
/// archive with nothing newer than `oldest` gives a window of that one moment.
pub async fn wal_window(
    search: &BinarySearch,
    major: PgMajor,
    oldest: WalPoint,
    archive_dir: &Path,
    last_archived_wal: Option<&str>,
) -> Result<WalWindow> {
    let binaries = locate(search, major)?;
    let end = postgres::wal::archive_end(&binaries, archive_dir, last_archived_wal)
        .await
        .map_err(|error| target_error(Stage::Probing, &error))?;
    let mut newest = oldest;
    if let Some(end) = end {
        newest.lsn = newest.lsn.max(end.last_record);
        if let Some((at, _)) = end.last_commit {
            newest.at = newest.at.max(at);
        }
    }
    Ok(WalWindow { oldest, newest })
}

/// A validated promotion configuration bound to binaries and an OS user, ready to run.
#[derive(Debug)]
pub struct Promotion {
    config: PromotionConfig,
    search: BinarySearch,
    user: OsUser,
    progress: watch::Sender<Progress>,
}

/// What the chain of `dataStateAt` reads after the promotion.
#[derive(Debug, Default)]
struct Replayed {
    replay_at: Option<DateTime<Utc>>,
    replay_lsn: Option<Lsn>,
    committed_at: Option<DateTime<Utc>>,
}

impl Promotion {
    /// Validates `config` and binds it to the binaries in `search`, run as `user`.
    pub fn new(config: PromotionConfig, search: BinarySearch, user: OsUser) -> Result<Self> {
        config.validate()?;
        let (progress, _) = watch::channel(Progress::default());
        Ok(Promotion { config, search, user, progress })
    }

    /// Follows the progress of promotions.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Promotes the copy in `target.data_dir` at `recovery`. The engine checks the target
    /// against [`wal_window`] first; the server's own refusal (the WAL ends before the target,
    /// or the target lies before the copy is consistent) is [`Error::TargetUnreachable`]. On
    /// error the server is stopped and the directory is left for the caller to discard.
    pub async fn run(
        &self,
        target: &Target,
        recovery: RecoveryTarget,
        cancel: &CancellationToken,
    ) -> Result<PromotionSummary> {
        let started = Instant::now();
        let mut reporter = Reporter::new(self.progress.clone());
        let mut instance = None;
        let mut warnings = Vec::new();
        let result = self
            .run_inner(target, recovery, cancel, &mut reporter, &mut instance, &mut warnings)
            .await;
        if let Some(instance) = instance.take() {
            // Only a failed promotion gets here with a live server; its data is discarded.
            if let Err(error) = instance.stop(StopMode::Immediate, STOP_STEP).await {
                warn!(%error, "stop the promotion server after a failure");
            }
        }
        match result {
            Ok(mut summary) => {
                reporter.finish(None);
                summary.stages = reporter.stages.clone();
                summary.total = started.elapsed();
                summary.warnings = warnings;
                info!(
                    data_state_at = %summary.data_state_at,
                    source = ?summary.data_state_source,
                    lsn = %summary.lsn,
                    wal_replayed_bytes = summary.wal_replayed_bytes,
                    total_s = summary.total.as_secs_f64(),
                    "promotion finished"
                );
                Ok(summary)
            }
            Err(error) => {
                reporter.finish(Some(error.to_string()));
                warn!(%error, kind = error.kind(), "promotion failed");
                Err(error)
            }
        }
    }

    async fn run_inner(
        &self,
        target: &Target,
        recovery: RecoveryTarget,
        cancel: &CancellationToken,
        reporter: &mut Reporter,
        slot: &mut Option<Instance>,
        warnings: &mut Vec<String>,
    ) -> Result<PromotionSummary> {
        let data_dir = &target.data_dir;
        reporter.stage(Stage::Preparing);
        let major = PgMajor::of_data_dir(data_dir)
            .map_err(|error| target_error(Stage::Preparing, &error))?;
        let binaries = locate(&self.search, major)?;
        let control = postgres::read_control_data(&self.search, data_dir)
            .await
            .map_err(|error| target_error(Stage::Preparing, &error))?;
        if let RecoveryTarget::Lsn(lsn) = recovery
            && lsn < control.min_recovery_lsn
        {
            return Err(Error::TargetUnreachable {
                target: recovery.to_string(),
                reason: format!(
                    "the copy is consistent only from LSN {}, after the target",
                    control.min_recovery_lsn
                ),
            });
        }
        std::fs::create_dir_all(&target.run_dir)
            .map_err(|error| Error::io("create run directory", &target.run_dir, error))?;
        // Before the start, while the copy's pg_wal is as the standby left it: the third step
        // of the dataStateAt chain.
        let copy_wal = match postgres::wal::data_dir_end(&binaries, data_dir).await {
            Ok(end) => end,
            Err(error) => {
                warnings.push(format!("cannot read the copy's WAL with pg_waldump: {error}"));
                None
            }
        };
        let removed = postgres::recovery::prepare_promotion(data_dir, &self.user)
            .map_err(|error| target_error(Stage::Preparing, &error))?;
        if !removed.is_empty() {
            info!(?removed, "standby and archiving settings removed from the copy");
        }
        check_cancel(cancel, Stage::Preparing)?;

        reporter.stage(Stage::Recovering);
        let plan =
            RecoveryPlan { target: recovery, restore_command: self.config.restore_command.clone() };
        let mut settings = target.settings();
        settings.extra = plan.settings();
        // Replaying a PREPARE TRANSACTION needs a slot for it, even without hot standby.
        if let Some(prepared) = control.max_prepared_transactions.filter(|count| *count > 0) {
            settings.extra.push(("max_prepared_transactions".to_owned(), prepared.to_string()));
        }
        settings.extra.extend(self.config.settings.iter().cloned());
        if self.config.detach_subscriptions {
            let (name, value) = crate::config::NO_APPLY_WORKERS;
            settings.extra.push((name.to_owned(), value.to_owned()));
        }
        let mut spec = target.spec(settings, &self.user)?;
        spec.read_only_dirs = self.config.restore_dirs.clone();
        spec.start_timeout = self.config.recovery_timeout;
        let started = Instance::start(&binaries, spec)
            .await
            .map_err(|error| recovery_error(&recovery, &error, target));
        let instance = slot.insert(started?);
        check_cancel(cancel, Stage::Recovering)?;
        let admin =
            instance.admin().await.map_err(|error| target_error(Stage::Recovering, &error))?;
        let client = admin.client();
        let sql_failed = |stage: Stage| {
            move |error: tokio_postgres::Error| Error::Failed {
                stage,
                stderr_tail: error.to_string(),
            }
        };
        let in_recovery: bool = client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
            .map_err(sql_failed(Stage::Recovering))?
            .get(0);
        if in_recovery {
            // Hot standby is off, so a connection means a promoted server; this only guards
            // against a settings file that turned it back on.
            let row = client
                .query_one(
                    "SELECT pg_catalog.pg_promote(true, $1)",
                    &[&i32::try_from(self.config.recovery_timeout.as_secs()).unwrap_or(i32::MAX)],
                )
                .await
                .map_err(sql_failed(Stage::Recovering))?;
            let promoted: bool = row.get(0);
            if !promoted {
                return Err(Error::Failed {
                    stage: Stage::Recovering,
                    stderr_tail: "the server is still in recovery after pg_promote()".to_owned(),
                });
            }
        }
        let replayed = read_replayed(client).await.map_err(sql_failed(Stage::Recovering))?;
        let lsn = replayed.replay_lsn.unwrap_or(control.checkpoint_lsn);
        let (data_state_at, data_state_source) = data_state_at(&replayed, copy_wal.as_ref(), lsn)
            .or_else(|| control.checkpoint_time.map(|at| (at, DataStateSource::Checkpoint)))
            .ok_or_else(|| Error::Failed {
                stage: Stage::Recovering,
                stderr_tail: "no replayed commit, commit timestamp, WAL commit record or checkpoint time tells the data's time".to_owned(),
            })?;
        info!(%data_state_at, source = ?data_state_source, %lsn, "copy promoted");
        if self.config.detach_subscriptions {
            let psql = psql(&self.search, &binaries)?;
            let detached =
                crate::logical::replication::detach_subscriptions(client, &psql, target, cancel)
                    .await?;
            info!(?detached, "subscriptions detached from the copy and dropped");
        }

        let preprocessing = &self.config.preprocessing;
        if preprocessing.query_path.is_some()
            || preprocessing.inline.is_some()
            || preprocessing.script.is_some()
        {
            reporter.stage(Stage::Preprocessing);
            let psql = psql(&self.search, &binaries)?;
            prepare::preprocess(preprocessing, &psql, target, cancel).await?;
        }
        let masking = prepare::mask(self.config.masking.as_ref(), target, reporter, cancel).await?;
        if !self.config.database_rename.is_empty() {
            reporter.stage(Stage::Renaming);
            prepare::rename(client, &self.config.database_rename).await?;
        }

        reporter.stage(Stage::Stopping);
        admin.checkpoint().await.map_err(|error| target_error(Stage::Stopping, &error))?;
        drop(admin);
        if let Some(instance) = slot.take() {
            instance
                .stop(StopMode::Fast, STOP_STEP)
                .await
                .map_err(|error| target_error(Stage::Stopping, &error))?;
        }
        // Clones of this directory start without a recovery target or restore_command: the
        // next start rewrites the settings file anyway, this makes the snapshot itself clean.
        postgres::recovery::clear_recovery(data_dir)
            .map_err(|error| target_error(Stage::Stopping, &error))?;
        let mut settings = target.settings();
        settings.extra = self.config.settings.clone();
        target
            .spec(settings, &self.user)?
            .write_config()
            .map_err(|error| target_error(Stage::Stopping, &error))?;

        Ok(PromotionSummary {
            data_state_at,
            data_state_source,
            target: recovery.to_string(),
            lsn,
            replayed_from: control.redo_lsn,
            wal_replayed_bytes: lsn.0.saturating_sub(control.redo_lsn.0),
            major: major.number(),
            stages: Vec::new(),
            total: Duration::ZERO,
            warnings: Vec::new(),
            masking,
        })
    }
}

pub(crate) fn locate(search: &BinarySearch, major: PgMajor) -> Result<PgBinaries> {
    search.locate(major).map_err(|error| Error::ToolMissing {
        tool: format!("PostgreSQL {major} server"),
        detail: error.to_string(),
    })
}

/// The copy's own major's psql, else the newest installed one (npm's 13 ships none; psql
/// talks to older servers).
fn psql(search: &BinarySearch, binaries: &PgBinaries) -> Result<PathBuf> {
    if let Ok(path) = binaries.tool("psql") {
        return Ok(path);
    }
    search.installed().iter().rev().find_map(|other| other.tool("psql").ok()).ok_or_else(|| {
        Error::ToolMissing {
            tool: "psql".to_owned(),
            detail: "no installed PostgreSQL has psql, which preprocessing runs".to_owned(),
        }
    })
}

fn check_cancel(cancel: &CancellationToken, stage: Stage) -> Result<()> {
    if cancel.is_cancelled() { Err(Error::Cancelled { stage }) } else { Ok(()) }
}

/// Steps 1 to 3 of the chain (the caller adds the checkpoint time).
fn data_state_at(
    replayed: &Replayed,
    copy_wal: Option<&postgres::wal::WalEnd>,
    replay_end: Lsn,
) -> Option<(DateTime<Utc>, DataStateSource)> {
    if let Some(at) = replayed.replay_at {
        return Some((at, DataStateSource::ReplayTimestamp));
    }
    if let Some(at) = replayed.committed_at {
        return Some((at, DataStateSource::CommitTimestamp));
    }
    copy_wal
        .and_then(|end| end.last_commit)
        .filter(|(_, lsn)| *lsn <= replay_end)
        .map(|(at, _)| (at, DataStateSource::WalDump))
}

/// UTC text that keeps every microsecond (a float epoch would round them).
const UTC_TEXT: &str = "'YYYY-MM-DD HH24:MI:SS.US'";

async fn read_replayed(
    client: &tokio_postgres::Client,
) -> std::result::Result<Replayed, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT to_char(pg_catalog.pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', {UTC_TEXT}), \
                        pg_catalog.pg_last_wal_replay_lsn()::text, \
                        pg_catalog.current_setting('track_commit_timestamp') = 'on'"
            ),
            &[],
        )
        .await?;
    let mut replayed = Replayed {
        replay_at: row.get::<_, Option<String>>(0).as_deref().and_then(parse_utc),
        replay_lsn: row.get::<_, Option<String>>(1).and_then(|text| text.parse().ok()),
        committed_at: None,
    };
    if row.get::<_, bool>(2) {
        let row = client
            .query_one(
                &format!(
                    "SELECT to_char(timestamp AT TIME ZONE 'UTC', {UTC_TEXT}) \
                     FROM pg_catalog.pg_last_committed_xact()"
                ),
                &[],
            )
            .await?;
        replayed.committed_at = row.get::<_, Option<String>>(0).as_deref().and_then(parse_utc);
    }
    Ok(replayed)
}

fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|time| time.and_utc())
}

/// Maps a failed start of the promotion server, from the server's own words in its log.
fn recovery_error(target: &RecoveryTarget, error: &postgres::Error, run: &Target) -> Error {
    let log = format!("{error}\n{}", crate::target::server_log_tail(run));
    let unreachable = |reason: &str| Error::TargetUnreachable {
        target: target.to_string(),
        reason: reason.to_owned(),
    };
    if log.contains("recovery ended before configured recovery target was reached") {
        return unreachable(
            "the WAL ends before it (recovery ended before configured recovery target was reached)",
        );
    }
    if log.contains("requested recovery stop point is before consistent recovery point") {
        return unreachable(
            "it lies before the moment the copy is consistent (requested recovery stop point is before consistent recovery point)",
        );
    }
    if log.contains("WAL ends before consistent recovery point") {
        return Error::Failed {
            stage: Stage::Recovering,
            stderr_tail: "the WAL ends before the copy is consistent: restore_command must reach \
                          the WAL the standby had replayed (WAL ends before consistent recovery point)"
                .to_owned(),
        };
    }
    target_error(Stage::Recovering, error)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn point(second: u32, lsn: u64) -> WalPoint {
        WalPoint { at: Utc.with_ymd_and_hms(2026, 12, 2, 19, 0, second).unwrap(), lsn: Lsn(lsn) }
    }

    #[test]
    fn the_window_names_both_ends() {
        let window = WalWindow { oldest: point(10, 0x100), newest: point(20, 0x200) };
        assert!(window.contains(&RecoveryTarget::Latest));
        assert!(window.contains(&RecoveryTarget::Time(point(10, 0).at)));
        assert!(window.contains(&RecoveryTarget::Lsn(Lsn(0x200))));
        assert!(!window.contains(&RecoveryTarget::Lsn(Lsn(0x201))));
        let error = window.check(&RecoveryTarget::Time(point(21, 0).at)).unwrap_err();
        assert_eq!(error.kind(), "outside_wal_window");
        assert_eq!(
            error.to_string(),
            "time 2026-12-02T19:00:21Z is outside the WAL window: the oldest reachable moment is \
             2026-12-02T19:00:10Z (LSN 0/100) and the newest 2026-12-02T19:00:20Z (LSN 0/200)"
        );
    }

    #[test]
    fn the_chain_prefers_the_replay_timestamp() {
        let wal = postgres::wal::WalEnd {
            segment: "000000010000000000000003".to_owned(),
            last_record: Lsn(0x300),
            last_commit: Some((point(5, 0).at, Lsn(0x280))),
        };
        let mut replayed = Replayed {
            replay_at: Some(point(7, 0).at),
            replay_lsn: Some(Lsn(0x300)),
            committed_at: Some(point(6, 0).at),
        };
        assert_eq!(
            data_state_at(&replayed, Some(&wal), Lsn(0x300)),
            Some((point(7, 0).at, DataStateSource::ReplayTimestamp))
        );
        replayed.replay_at = None;
        assert_eq!(
            data_state_at(&replayed, Some(&wal), Lsn(0x300)).map(|(_, source)| source),
            Some(DataStateSource::CommitTimestamp)
        );
        replayed.committed_at = None;
        assert_eq!(
            data_state_at(&replayed, Some(&wal), Lsn(0x300)),
            Some((point(5, 0).at, DataStateSource::WalDump))
        );
        // A commit the recovery stopped before is not the data's time.
        assert_eq!(data_state_at(&replayed, Some(&wal), Lsn(0x200)), None);
    }

    #[test]
    fn validation_names_the_keys() {
        let mut config = PromotionConfig {
            restore_command: Some(" ".to_owned()),
            settings: vec![("recovery_target_time".to_owned(), "x".to_owned())],
            ..PromotionConfig::default()
        };
        config.database_rename.insert("a".to_owned(), "a".to_owned());
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(PromotionConfig::default().validate().is_ok());
    }
}
