//! Full refresh: a retrieval run into a new dataset, then a snapshot of it that becomes the head
//! of `main`, while existing clones keep running on their own snapshots.
//!
//! Each run gets a fresh golden dataset (`data_<YYYYMMDDHHMMSS>`), so a failed or cancelled run
//! never touches the data earlier snapshots came from: it is discarded whole, with an alert.
//! Once a run succeeds, its dataset becomes the pool's current data (`POST /snapshot` takes
//! snapshots of it) and older snapshots without clones fall under retention; a golden dataset
//! whose last snapshot is gone is destroyed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use retrieval::pipeline::WARNING_LINES;
use retrieval::{Pipeline, Progress, RetrievalConfig, Summary, Target};
use storage::{DatasetName, DestroyMode, ThinStorage};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Error, Result};
use crate::model::SnapshotRecord;
use crate::physical::Retrieval;
use crate::pool::Pool;
use crate::snapshot::{Placement, SnapshotKind, SnapshotView};
use crate::store::CatalogChange;
use crate::{Engine, failpoint};

/// The intent a refresh records for its dumps, which live outside the pool.
const PARTIAL_DUMP_INTENT: &str = "retrieval dump";

/// The store key naming the dataset that holds the pool's current data.
pub(crate) const CURRENT_DATA_KEY: &str = "current_data_dataset";
/// The store's meta key for the summary of the refresh that made the current data, with that
/// data's dataset: its warnings stay true of the data across restarts.
const LAST_SUMMARY_KEY: &str = "last_refresh_summary";

/// The store's meta key naming the unmasked snapshot the engine protects
/// (`masking.keep_unmasked`), whose protection the next one lifts.
const KEPT_UNMASKED_KEY: &str = "kept_unmasked_snapshot";

/// What [`LAST_SUMMARY_KEY`] holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeptSummary {
    dataset: String,
    summary: Summary,
}

/// Where retrieval stands, as `/status` → `retrieving` shows it (DBLab's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStatus {
    /// No retrieval is configured, or none has run.
    Inactive,
    /// A refresh is scheduled to start.
    Pending,
    /// Data is being retrieved.
    Refreshing,
    /// The retrieved data is being snapshotted.
    Snapshotting,
    /// The last refresh succeeded.
    Finished,
    /// The last refresh failed; earlier snapshots are intact.
    Failed,
}

impl RefreshStatus {
    /// DBLab's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Inactive => "inactive",
            RefreshStatus::Pending => "pending",
            RefreshStatus::Refreshing => "refreshing",
            RefreshStatus::Snapshotting => "snapshotting",
            RefreshStatus::Finished => "finished",
            RefreshStatus::Failed => "failed",
        }
    }
}

/// One kind of alert with its count, as DBLab keeps them (`refresh_failed`, `refresh_skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshAlert {
    /// `error` or `warning`.
    pub level: &'static str,
    /// The last message.
    pub message: String,
    /// When it last happened.
    pub last_seen: DateTime<Utc>,
    /// How often it happened.
    pub count: u64,
}

/// What the engine knows about retrieval, for `/status` and `/instance/retrieval`.
#[derive(Debug, Clone)]
pub struct RetrievalView {
    /// Whether a retrieval is configured at all.
    pub configured: bool,
    /// Whether the pool's data is a physical copy, kept current by a sync instance.
    pub physical: bool,
    /// The status.
    pub status: RefreshStatus,
    /// When the last successful refresh finished.
    pub last_refresh: Option<DateTime<Utc>>,
    /// When the timetable runs the next one.
    pub next_refresh: Option<DateTime<Utc>>,
    /// Alerts by type.
    pub alerts: BTreeMap<&'static str, RefreshAlert>,
    /// The running (or last) run's progress.
    pub progress: Option<Progress>,
    /// The last successful run.
    pub last_summary: Option<Summary>,
}

impl RetrievalView {
    /// DBLab's retrieval mode: `physical` when a sync instance keeps the data current,
    /// `logical` when another retrieval is configured, `unknown` otherwise.
    pub fn mode(&self) -> &'static str {
        if self.physical {
            "physical"
        } else if self.configured {
            "logical"
        } else {
            "unknown"
        }
    }

    /// The warnings of the refresh that made the current data, when it had any: how many
    /// problems, and the first lines.
    pub fn warnings(&self) -> Option<(u64, Vec<String>)> {
        self.last_summary
            .as_ref()
            .filter(|summary| !summary.warnings.is_empty())
            .map(|summary| (summary.warning_count, summary.warning_lines(WARNING_LINES)))
    }
}

/// Retrieval state kept in memory.
#[derive(Debug)]
pub(crate) struct RefreshState {
    pub(crate) status: RefreshStatus,
    pub(crate) last_refresh: Option<DateTime<Utc>>,
    pub(crate) next_refresh: Option<DateTime<Utc>>,
    pub(crate) alerts: BTreeMap<&'static str, RefreshAlert>,
    pub(crate) last_summary: Option<Summary>,
}

impl Default for RefreshState {
    fn default() -> Self {
        RefreshState {
            status: RefreshStatus::Inactive,
            last_refresh: None,
            next_refresh: None,
            alerts: BTreeMap::new(),
            last_summary: None,
        }
    }
}

impl RefreshState {
    pub(crate) fn alert(&mut self, kind: &'static str, level: &'static str, message: String) {
        let now = Utc::now();
        let entry = self.alerts.entry(kind).or_insert(RefreshAlert {
            level,
            message: message.clone(),
            last_seen: now,
            count: 0,
        });
        entry.message = message;
        entry.last_seen = now;
        entry.count += 1;
    }

    /// Drops the alerts of `kinds`: what they reported is over.
    pub(crate) fn clear_alerts(&mut self, kinds: &[&str]) {
        self.alerts.retain(|kind, _| !kinds.contains(kind));
    }
}

impl Engine {
    /// The dataset that holds the pool's current data.
    pub(crate) fn current_data_dataset(&self) -> DatasetName {
        self.inner
            .store
            .meta(CURRENT_DATA_KEY)
            .ok()
            .flatten()
            .and_then(|name| DatasetName::new(name).ok())
            .unwrap_or_else(|| self.inner.pool.data_dataset())
    }

    /// Retrieval as it stands.
    pub fn retrieval(&self) -> RetrievalView {
        let state = self.refresh_state();
        RetrievalView {
            configured: self.retrieval_setup().is_some(),
            physical: self.physical_retrieval().is_some()
                || self
                    .sync_settings()
                    .is_some_and(|settings| settings.kind == crate::standby::SyncKind::Standby),
            status: state.status,
            last_refresh: state.last_refresh,
            next_refresh: state.next_refresh,
            alerts: state.alerts.clone(),
            progress: self.retrieval_setup().as_ref().map(Retrieval::progress),
            last_summary: state.last_summary.clone(),
        }
    }

    pub(crate) fn refresh_state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        crate::sync::lock(&self.inner.refresh)
    }

    /// Starts a full refresh in the background. Refused when no retrieval is configured or one
    /// is already running.
    pub fn full_refresh(&self) -> Result<()> {
        let Some(retrieval) = self.retrieval_setup() else {
            return Err(Error::InvalidInput(
                "no retrieval is configured: add a [retrieval] section with a source".to_owned(),
            ));
        };
        if self.inner.refresh_running.swap(true, Ordering::SeqCst) {
            self.refresh_state().alert(
                "refresh_skipped",
                "warning",
                "a refresh was requested while another was running".to_owned(),
            );
            return Err(Error::Refused("a refresh is already running".to_owned()));
        }
        self.refresh_state().status = RefreshStatus::Pending;
        let engine = self.clone();
        self.inner.tasks.spawn(
            async move {
                engine.run_refresh(&retrieval).await;
                engine.inner.refresh_running.store(false, Ordering::SeqCst);
            }
            .instrument(info_span!("full_refresh")),
        );
        Ok(())
    }

    async fn run_refresh(&self, retrieval: &Retrieval) {
        let started = Utc::now();
        self.refresh_state().status = RefreshStatus::Refreshing;
        info!("full refresh started");
        match self.refresh_into_new_dataset(retrieval, started).await {
            Ok(snapshot_id) => {
                let mut state = self.refresh_state();
                state.status = RefreshStatus::Finished;
                state.last_refresh = Some(Utc::now());
                // Retrieval logged the warnings themselves, once, as a warning.
                let warnings =
                    state.last_summary.as_ref().map_or(0, |summary| summary.warning_count);
                info!(%snapshot_id, warnings, "full refresh finished");
            }
            Err(error) => {
                warn!(error = %error, "full refresh failed; earlier snapshots and clones are untouched");
                let mut state = self.refresh_state();
                state.status = RefreshStatus::Failed;
                state.alert("refresh_failed", "error", error.to_string());
            }
        }
        self.update_next_refresh();
    }

    async fn refresh_into_new_dataset(
        &self,
        retrieval: &Retrieval,
        started: DateTime<Utc>,
    ) -> Result<String> {
        let dataset = self.new_data_dataset(started).await?;
        match retrieval {
            Retrieval::Logical(pipeline) => self.logical_refresh(pipeline, dataset).await,
            Retrieval::Continuous(pipeline, live) => {
                self.continuous_refresh(pipeline, live, dataset).await
            }
            Retrieval::Physical(physical) => self.physical_refresh(physical, dataset).await,
        }
    }

    /// A free name for a new golden dataset, `data_<ts>` (with a suffix when taken).
    async fn new_data_dataset(&self, started: DateTime<Utc>) -> Result<DatasetName> {
        let storage = self.inner.pool.storage();
        let listing = storage.list().await?;
        let base = format!("data_{}", started.format("%Y%m%d%H%M%S"));
        let mut name = base.clone();
        for suffix in 1.. {
            let candidate = DatasetName::new(name.clone())
                .map_err(|error| Error::InvalidInput(error.to_string()))?;
            if listing.dataset(&candidate).is_none() {
                break;
            }
            name = format!("{base}_{suffix}");
        }
        DatasetName::new(name).map_err(|error| Error::InvalidInput(error.to_string()))
    }

    /// A logical run into the new golden dataset `dataset`, which it makes; on failure the
    /// dataset is gone again. The intent it returns names the dataset (and the run's dump).
    pub(crate) async fn restore_into(
        &self,
        pipeline: &Pipeline,
        dataset: &DatasetName,
    ) -> Result<(Summary, crate::intent::Intent<'_>)> {
        let storage = self.inner.pool.storage();
        // The run's dump (in its own directory unless the configuration names another) is part
        // of what an interrupted refresh leaves.
        let intent = self.intend(&[dataset, &PARTIAL_DUMP_INTENT])?;
        let mountpoint = storage.create_dataset(dataset).await?;
        failpoint::hit("refresh.dataset_created");
        let run_dir = self.retrieval_run_dir();
        if let Err(error) = std::fs::create_dir_all(&run_dir) {
            if self.discard(dataset).await {
                intent.settle();
            }
            return Err(Error::InvalidInput(format!("create {}: {error}", run_dir.display())));
        }
        let mut target = Target::new(Pool::pgdata(&mountpoint), &run_dir);
        target.admin_role = self.config().clone.admin_role.clone();
        target.dataset = Some(dataset.to_string());
        match pipeline.run(&target, &self.inner.cancel).await {
            Ok(summary) => {
                failpoint::hit("refresh.restored");
                Ok((summary, intent))
            }
            Err(error) => {
                if self.discard(dataset).await {
                    intent.settle();
                }
                Err(Error::Retrieval(error))
            }
        }
    }

    /// A logical full refresh into the new, still unmade golden dataset `dataset`.
    async fn logical_refresh(&self, pipeline: &Pipeline, dataset: DatasetName) -> Result<String> {
        let (mut summary, intent) = self.restore_into(pipeline, &dataset).await?;
        self.refresh_state().status = RefreshStatus::Snapshotting;
        let previous = self.current_data_dataset();
        self.inner.store.set_meta(CURRENT_DATA_KEY, dataset.as_str())?;
        let made = if pipeline.config().keeps_unmasked() {
            self.snapshot_kept_unmasked(pipeline.config(), &dataset, &mut summary).await
        } else {
            self.create_snapshot_at(summary.data_state_at, summary.masking.is_some()).await
        };
        match made {
            Ok(snapshot) => {
                intent.settle();
                self.release_abandoned_replication().await;
                self.keep_summary(summary);
                self.destroy_unused_data(&previous).await;
                Ok(snapshot.record.id)
            }
            Err(error) => {
                self.inner.store.set_meta(CURRENT_DATA_KEY, previous.as_str())?;
                if self.discard(&dataset).await {
                    intent.settle();
                }
                Err(error)
            }
        }
    }

    /// `masking.keep_unmasked`: the refresh's data, unmasked in `dataset`, is snapshotted as
    /// it is, then masked in place and snapshotted again; the masked snapshot becomes the head
    /// of `main` (clones that name no snapshot get it), the unmasked one is recorded beside it,
    /// protected, and the previous unmasked snapshot loses the protection the engine gave it,
    /// so retention counts it among the unmasked ones. Nothing is recorded before masking
    /// succeeded.
    async fn snapshot_kept_unmasked(
        &self,
        config: &RetrievalConfig,
        dataset: &DatasetName,
        summary: &mut Summary,
    ) -> Result<SnapshotView> {
        // Snapshots hold the databases as renamed.
        let masking = config.masking.clone().unwrap_or_default().renamed(&config.database_rename);
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_space("create snapshot").await?;
        let (unmasked, unmasked_intent) = self.take_data_snapshot(dataset, "_unmasked").await?;
        let mut target = Target::new(self.inner.pool.pgdata_of(dataset), self.retrieval_run_dir());
        target.admin_role = self.config().clone.admin_role.clone();
        let masked = retrieval::masking::mask_copy(
            &masking,
            self.inner.servers.binaries(),
            self.inner.servers.os_user(),
            &target,
            &self.inner.cancel,
        )
        .await;
        summary.masking = match masked {
            Ok(run) => run,
            Err(error) => {
                self.drop_unrecorded(&unmasked, unmasked_intent).await;
                return Err(Error::Retrieval(error));
            }
        };
        let head = match self
            .snapshot_data_locked(dataset, summary.data_state_at, summary.masking.is_some())
            .await
        {
            Ok(head) => head,
            Err(error) => {
                self.drop_unrecorded(&unmasked, unmasked_intent).await;
                return Err(error);
            }
        };
        let kind = SnapshotKind { masked: false, protected: true };
        let beside = Placement::Beside(head.record.parent_id.as_deref());
        match self
            .record_data_snapshot(&unmasked, unmasked_intent, summary.data_state_at, beside, kind)
            .await
        {
            Ok(kept) => {
                self.release_previous_unmasked(&kept.record.id);
                self.apply_retention().await;
                info!(snapshot_id = %kept.record.id, masked = %head.record.id, "unmasked data kept beside the masked head");
            }
            // The masked head stands: the refresh is done, without its unmasked copy.
            Err(error) => {
                warn!(%error, "the unmasked snapshot could not be recorded; only the masked one is kept")
            }
        }
        Ok(head)
    }

    /// Lifts the protection the engine gave the previous kept unmasked snapshot (unless someone
    /// changed it since), and names `kept` as the one it protects now.
    fn release_previous_unmasked(&self, kept: &str) {
        let previous = self.inner.store.meta(KEPT_UNMASKED_KEY).ok().flatten();
        let record = previous.and_then(|id| {
            self.read_state().snapshots.iter().find(|snapshot| snapshot.id == id).cloned()
        });
        if let Some(record) = record.filter(|record| {
            record.protected && record.protected_till.is_none() && record.delete_at.is_none()
        }) {
            let id = record.id.clone();
            let released = SnapshotRecord { protected: false, ..record };
            match self.apply_catalog(CatalogChange {
                upsert_snapshots: vec![released],
                ..CatalogChange::default()
            }) {
                Ok(()) => info!(snapshot_id = %id, "older unmasked snapshot no longer protected"),
                Err(error) => {
                    warn!(snapshot_id = %id, %error, "failed to lift an older unmasked snapshot's protection")
                }
            }
        }
        if let Err(error) = self.inner.store.set_meta(KEPT_UNMASKED_KEY, kept) {
            warn!(%error, "the kept unmasked snapshot is not remembered; its protection stays at the next refresh");
        }
    }

    /// Keeps the summary of the refresh that made the current data, in memory and in the store;
    /// its warnings, if any, become a `refresh_warnings` alert.
    pub(crate) fn keep_summary(&self, summary: Summary) {
        let kept = KeptSummary { dataset: self.current_data_dataset().to_string(), summary };
        let stored =
            serde_json::to_string(&kept).map_err(|error| error.to_string()).and_then(|text| {
                self.inner
                    .store
                    .set_meta(LAST_SUMMARY_KEY, &text)
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = stored {
            warn!(%error, "the refresh's summary is not kept across restarts");
        }
        self.remember_summary(kept.summary);
    }

    /// Whether the refresh that made the current data masked it (logical mode: a manual
    /// snapshot of the golden data is as masked as that refresh left it).
    pub(crate) fn current_data_masked(&self) -> bool {
        self.refresh_state().last_summary.as_ref().is_some_and(|summary| summary.masking.is_some())
    }

    /// Brings back, at start, the summary of the refresh that made the current data.
    pub(crate) fn restore_summary(&self) {
        let Ok(Some(text)) = self.inner.store.meta(LAST_SUMMARY_KEY) else { return };
        match serde_json::from_str::<KeptSummary>(&text) {
            Ok(kept) if kept.dataset == self.current_data_dataset().as_str() => {
                self.remember_summary(kept.summary);
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "the last refresh's summary is unreadable; left out"),
        }
    }

    fn remember_summary(&self, summary: Summary) {
        let mut state = self.refresh_state();
        if !summary.warnings.is_empty() {
            let first = summary.warning_lines(1).join("");
            let count = summary.warning_count;
            let plural = if count == 1 { "" } else { "s" };
            state.alert(
                "refresh_warnings",
                "warning",
                format!(
                    "the refresh finished with {count} warning{plural} (see retrieving.warnings): {first}"
                ),
            );
        }
        state.last_summary = Some(summary);
    }

    /// The private directory of a refresh's run: the temporary server's socket and log, and the
    /// dumps unless the configuration puts them elsewhere.
    pub(crate) fn retrieval_run_dir(&self) -> std::path::PathBuf {
        self.inner.state_dir.join("retrieval")
    }

    /// Removes the dumps of a refresh that a crash interrupted (named by the intent it recorded),
    /// from the run's own directory; returns what it removed.
    pub(crate) fn remove_partial_dump(&self) -> Option<std::path::PathBuf> {
        if !self.intents().contains(PARTIAL_DUMP_INTENT) {
            return None;
        }
        let target = retrieval::Target::new(std::path::PathBuf::new(), self.retrieval_run_dir());
        let dump = target.dump_dir();
        let removed = match std::fs::remove_dir_all(&dump) {
            Ok(()) => Some(dump),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                warn!(dir = %dump.display(), error = %error, "failed to remove an interrupted refresh's dump");
                return None;
            }
        };
        self.settle_intents(&[PARTIAL_DUMP_INTENT.to_owned()]);
        removed
    }

    /// Destroys, with everything under it, a dataset a failed operation (a refresh, a branch
    /// creation) made; a failure is logged, the operation's own error being the one to report.
    /// True when the dataset is gone.
    pub(crate) async fn discard(&self, dataset: &DatasetName) -> bool {
        match self.inner.pool.storage().destroy_dataset(dataset, DestroyMode::WithDependents).await
        {
            Ok(()) | Err(storage::Error::NotFound(_)) => true,
            Err(error) => {
                warn!(%dataset, error = %error, "failed to discard the dataset of a failed operation");
                false
            }
        }
    }

    /// Destroys a golden dataset that is no longer current and has no snapshots left.
    pub(crate) async fn destroy_unused_data(&self, dataset: &DatasetName) {
        if *dataset != self.current_data_dataset() && self.destroy_if_no_snapshots(dataset).await {
            info!(%dataset, "old data removed: no snapshot uses it any more");
            self.release_golden(dataset).await;
        }
    }

    /// Destroys `dataset` if it exists and has no snapshots; true when it did.
    pub(crate) async fn destroy_if_no_snapshots(&self, dataset: &DatasetName) -> bool {
        let storage = self.inner.pool.storage();
        let Ok(listing) = storage.list().await else { return false };
        if listing.dataset(dataset).is_none() || listing.snapshots_of(dataset).next().is_some() {
            return false;
        }
        match storage.destroy_dataset(dataset, DestroyMode::Refuse).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%dataset, error = %error, "failed to remove a dataset nothing uses");
                false
            }
        }
    }

    /// Recomputes when the timetable runs next.
    pub(crate) fn update_next_refresh(&self) {
        let next = self
            .retrieval_setup()
            .as_ref()
            .and_then(|retrieval| retrieval.config().next_refresh(Utc::now()).ok().flatten());
        self.refresh_state().next_refresh = next;
    }
}
