//! Physical mode's glue: the engine's retrieval as logical (a pipeline) or physical (an
//! initial copy, then snapshots cut from the sync instance and promoted), the physical full
//! refresh, physical snapshots, and what a golden dataset leaves behind when it goes (its
//! replication slot and password file).
//!
//! A physical snapshot never stops the sync instance: the storage snapshot of its dataset is
//! crash-consistent (what `retrieval::physical::promote` expects), its clone `promoted_<ts>` is
//! recovered, promoted and prepared by a temporary server, and the snapshot of that clone is
//! the one recorded. The live standby's snapshot is kept beside it (recorded in the store with
//! the moment its promotion reached) as the start of points in time: a clone of it is still a
//! standby and replays the archive to any later target. It goes when its snapshot does; an
//! intent names both until they are recorded, so a crash leaves nothing the next start cannot
//! remove.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::{BinarySearch, OsUser};
use retrieval::physical::promote::{Promotion, PromotionConfig, RecoveryTarget, WalPoint};
use retrieval::{CopyTarget, InitialCopy, Pipeline, Progress, RetrievalConfig, Target};
use storage::{DatasetName, DestroyMode, SnapshotName, ThinStorage};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::pool::{Pool, promotion_names};
use crate::refresh::{CURRENT_DATA_KEY, RefreshStatus};
use crate::snapshot::SnapshotView;
use crate::standby::{SyncKind, SyncSettings};
use crate::store::StandbySnapshot;
use crate::{Engine, failpoint};

/// The directory under the state directory that holds each golden dataset's replication
/// password file: outside every dataset, so no snapshot carries it, and shown read-only to the
/// sync instance's sandbox.
pub(crate) const PASSFILE_DIR: &str = "passfiles";
/// How often dropping an old dataset's slot is tried: its walsender may take a moment to go
/// after the standby stopped.
pub(crate) const SLOT_DROP_ATTEMPTS: u32 = 5;

/// The engine's retrieval, chosen by the configuration.
#[derive(Debug, Clone)]
pub(crate) enum Retrieval {
    /// Logical mode: dump and restore into each new golden dataset.
    Logical(Arc<Pipeline>),
    /// Logical mode with continuous refresh: dump and restore, then a sync instance that
    /// subscribes to the source; snapshots cut from it.
    Continuous(Arc<Pipeline>, Arc<Live>),
    /// Physical mode: a copy that a standby keeps current, snapshots through promotion.
    Physical(Arc<Physical>),
}

/// Physical mode's parts.
#[derive(Debug)]
pub(crate) struct Physical {
    config: RetrievalConfig,
    copy: InitialCopy,
    live: Arc<Live>,
    /// The kept standby snapshots' oldest and newest points (`point_in_time.rs`), once read
    /// from the store; `None` until then and after each change to their records.
    pub(crate) kept_span: Mutex<Option<Option<(WalPoint, WalPoint)>>>,
}

/// What the modes with a sync instance share: its settings, and snapshots cut from it.
#[derive(Debug)]
pub(crate) struct Live {
    promotion: Promotion,
    sync: SyncSettings,
    snapshot_timetable: Option<String>,
    /// Physical mode keeps each snapshot's standby snapshot for points in time; a
    /// subscriber's copy has no WAL archive to replay, so continuous mode keeps none.
    keeps_standby_snapshots: bool,
}

impl Physical {
    /// The promotion of copies of the standby (snapshots, points in time).
    pub(crate) fn promotion(&self) -> &Promotion {
        &self.live.promotion
    }
}

impl Live {
    /// The snapshot timetable, if one is set.
    pub(crate) fn snapshot_timetable(&self) -> Option<&str> {
        self.snapshot_timetable.as_deref()
    }
}

/// The sync instance's settings from a `sync` section.
fn sync_settings(sync: &retrieval::config::SyncConfig, kind: SyncKind) -> SyncSettings {
    SyncSettings {
        enabled: sync.enabled,
        health_interval: sync.health_interval,
        configs: sync.configs.clone(),
        kind,
    }
}

impl Retrieval {
    /// Binds `config` to the binaries and the servers' OS user: physical mode when it has
    /// `[retrieval.physical]`.
    pub(crate) fn new(
        config: &RetrievalConfig,
        search: &BinarySearch,
        user: &OsUser,
    ) -> Result<Retrieval> {
        let Some(physical) = &config.physical else {
            let pipeline = Arc::new(Pipeline::new(config.clone(), search.clone(), user.clone())?);
            let Some(continuous) = config.continuous.as_ref() else {
                return Ok(Retrieval::Logical(pipeline));
            };
            // Renames were made in the golden copy by its restore; preprocessing runs again on
            // each snapshot, for the rows replicated since, and masking runs there only (the
            // golden copy keeps replicating original rows).
            let promotion = Promotion::new(
                PromotionConfig {
                    preprocessing: config.preprocessing.clone(),
                    detach_subscriptions: true,
                    ..PromotionConfig::default()
                }
                .with_masking(config),
                search.clone(),
                user.clone(),
            )?;
            let live = Live {
                promotion,
                sync: sync_settings(&continuous.sync, SyncKind::Subscriber),
                snapshot_timetable: continuous.snapshot_timetable().map(str::to_owned),
                keeps_standby_snapshots: false,
            };
            return Ok(Retrieval::Continuous(pipeline, Arc::new(live)));
        };
        let restore_command = physical.effective_restore_command().map(str::to_owned);
        let promotion = Promotion::new(
            PromotionConfig {
                restore_dirs: physical.restore_dirs.clone(),
                ..PromotionConfig::from_retrieval(config, restore_command)
            },
            search.clone(),
            user.clone(),
        )?;
        let copy = InitialCopy::new(config.clone(), search.clone(), user.clone())?;
        let live = Live {
            promotion,
            sync: sync_settings(&physical.sync, SyncKind::Standby),
            snapshot_timetable: physical.snapshot_timetable().map(str::to_owned),
            keeps_standby_snapshots: true,
        };
        Ok(Retrieval::Physical(Arc::new(Physical {
            config: config.clone(),
            copy,
            live: Arc::new(live),
            kept_span: Mutex::new(None),
        })))
    }

    /// The retrieval section.
    pub(crate) fn config(&self) -> &RetrievalConfig {
        match self {
            Retrieval::Logical(pipeline) | Retrieval::Continuous(pipeline, _) => pipeline.config(),
            Retrieval::Physical(physical) => &physical.config,
        }
    }

    /// The running (or last) run's progress: a dump and restore, or an initial copy.
    pub(crate) fn progress(&self) -> Progress {
        match self {
            Retrieval::Logical(pipeline) | Retrieval::Continuous(pipeline, _) => {
                pipeline.subscribe().borrow().clone()
            }
            Retrieval::Physical(physical) => physical.copy.subscribe().borrow().clone(),
        }
    }

    /// The sync instance's parts, in the modes that have one.
    pub(crate) fn live(&self) -> Option<Arc<Live>> {
        match self {
            Retrieval::Logical(_) => None,
            Retrieval::Continuous(_, live) => Some(live.clone()),
            Retrieval::Physical(physical) => Some(physical.live.clone()),
        }
    }
}

impl Engine {
    /// Physical mode's parts, when the engine runs in physical mode.
    pub(crate) fn physical_retrieval(&self) -> Option<Arc<Physical>> {
        match self.retrieval_setup() {
            Some(Retrieval::Physical(physical)) => Some(physical),
            _ => None,
        }
    }

    /// The directories the sync instance's `restore_command` reads (`[retrieval.physical]
    /// restore_dirs`), shown read-only in its sandbox.
    pub(crate) fn sync_restore_dirs(&self) -> Vec<PathBuf> {
        self.physical_retrieval()
            .map(|physical| physical.copy.physical().restore_dirs.clone())
            .unwrap_or_default()
    }

    /// The sync instance's parts, when the mode has one (physical, continuous).
    pub(crate) fn live_retrieval(&self) -> Option<Arc<Live>> {
        self.retrieval_setup().as_ref().and_then(Retrieval::live)
    }

    /// The replication password file of the standby on `dataset`.
    fn passfile_of(&self, dataset: &DatasetName) -> PathBuf {
        self.inner.state_dir.join(PASSFILE_DIR).join(dataset.as_str().replace('/', "_"))
    }

    /// A physical full refresh into the new, still unmade golden dataset `dataset`: the initial
    /// copy, the sync instance moved onto it, and its first snapshot. On failure the previous
    /// golden dataset and its sync instance are as they were and the new one is gone.
    pub(crate) async fn physical_refresh(
        &self,
        physical: &Physical,
        dataset: DatasetName,
    ) -> Result<String> {
        let storage = self.inner.pool.storage();
        let intent = self.intend(&[&dataset])?;
        let mountpoint = storage.create_dataset(&dataset).await?;
        failpoint::hit("refresh.dataset_created");
        let target = CopyTarget {
            data_dir: Pool::pgdata(&mountpoint),
            run_dir: self.retrieval_run_dir(),
            dataset: dataset.to_string(),
            passfile: Some(self.passfile_of(&dataset)),
        };
        if let Err(error) = physical.copy.run(&target, &self.inner.cancel).await {
            if self.discard_golden(&dataset).await {
                intent.settle();
            }
            return Err(Error::Retrieval(error));
        }
        failpoint::hit("refresh.restored");
        let previous = self.current_data_dataset();
        let snapshot = self.go_live(&physical.live, &dataset, intent).await?;
        // The old data may stay for its kept standby snapshots; its slot must not keep
        // holding WAL on the source meanwhile.
        if previous != dataset {
            self.release_golden(&previous).await;
        }
        self.release_abandoned_replication().await;
        self.destroy_unused_data(&previous).await;
        Ok(snapshot)
    }

    /// The second half of a refresh with a sync instance: the sync instance moved onto the
    /// filled golden dataset `dataset`, and the first snapshot cut from it; returns the
    /// snapshot's ID. On failure the sync instance is back on the previous data and `dataset`
    /// is gone (with what `release_golden` releases); `intent` names `dataset`.
    pub(crate) async fn go_live(
        &self,
        live: &Live,
        dataset: &DatasetName,
        intent: crate::intent::Intent<'_>,
    ) -> Result<String> {
        let previous = self.current_data_dataset();
        let previous_sync = self.sync_dataset().zip(self.sync_settings());
        let result = match self.start_sync(dataset, live.sync.clone()).await {
            Ok(()) => {
                self.refresh_state().status = RefreshStatus::Snapshotting;
                self.create_physical_snapshot(live, RecoveryTarget::Latest, false).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(snapshot) => {
                intent.settle();
                Ok(snapshot.record.id)
            }
            Err(error) => {
                self.restore_sync(&previous, previous_sync).await;
                if self.discard_golden(dataset).await {
                    intent.settle();
                }
                Err(error)
            }
        }
    }

    /// Puts the sync instance back on the data a failed refresh was to replace.
    async fn restore_sync(
        &self,
        previous: &DatasetName,
        previous_sync: Option<(String, SyncSettings)>,
    ) {
        let restored = match previous_sync {
            Some((dataset, settings)) => match DatasetName::new(dataset) {
                Ok(dataset) => self.start_sync(&dataset, settings).await,
                Err(error) => Err(Error::InvalidInput(error.to_string())),
            },
            None => match self.stop_sync().await {
                Ok(()) => self
                    .inner
                    .store
                    .set_meta(CURRENT_DATA_KEY, previous.as_str())
                    .map_err(Error::from),
                Err(error) => Err(error),
            },
        };
        if let Err(error) = restored {
            warn!(error = %error, data = %previous, "failed to put the sync instance back on the previous data");
        }
    }

    /// Destroys a golden dataset a failed refresh made, with its slot and password file; true
    /// when the dataset is gone.
    async fn discard_golden(&self, dataset: &DatasetName) -> bool {
        let gone = self.discard(dataset).await;
        self.release_golden(dataset).await;
        gone
    }

    /// What a destroyed golden dataset of physical mode leaves outside the pool: the
    /// replication slot its copy created on the source (dropped; a failure is logged, never
    /// fatal) and its password file. Promoted copies have neither.
    pub(crate) async fn release_golden(&self, dataset: &DatasetName) {
        let Some(physical) = self.physical_retrieval() else { return };
        if Pool::is_promoted_dataset(dataset.as_str()) {
            return;
        }
        if let Some(slot) = physical.copy.slot_for(dataset.as_str()) {
            for attempt in 1..=SLOT_DROP_ATTEMPTS {
                match physical.copy.drop_slot(&slot, &self.inner.cancel).await {
                    Ok(dropped) => {
                        info!(%slot, dropped, "replication slot of old data released");
                        break;
                    }
                    Err(error) if attempt == SLOT_DROP_ATTEMPTS => {
                        warn!(%slot, error = %error, "failed to drop the replication slot of old data: drop it on the source");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }
        let passfile = self.passfile_of(dataset);
        if let Err(error) = std::fs::remove_file(&passfile)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(file = %passfile.display(), error = %error, "failed to remove a replication password file");
        }
    }

    /// A snapshot cut from the sync instance's dataset without stopping it: a storage snapshot
    /// of the live standby, cloned, recovered to `recovery`, promoted and prepared, then
    /// snapshotted and recorded with the last replayed commit's time as `dataStateAt`. With
    /// `skip_unchanged`, a promotion that finds the same `dataStateAt` as the latest snapshot's
    /// is discarded and the latest snapshot returned.
    pub(crate) async fn create_physical_snapshot(
        &self,
        live: &Live,
        recovery: RecoveryTarget,
        skip_unchanged: bool,
    ) -> Result<SnapshotView> {
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_space("create snapshot").await?;
        let storage = self.inner.pool.storage();
        let capabilities = storage.capabilities();
        if !capabilities.atomic_snapshots {
            return Err(Error::Refused(format!(
                "snapshots cut from the running sync instance need a pool with atomic snapshots (btrfs, ZFS), not {}",
                storage.kind()
            )));
        }
        // Where a clone needs its origin (ZFS), the live server's snapshot stays as long as
        // the promoted copy cloned from it: recorded with it, and removed with it.
        let keep_standby = live.keeps_standby_snapshots || !capabilities.independent_clones;
        let golden = self.current_data_dataset();
        let listing = storage.list().await?;
        if listing.dataset(&golden).is_none() {
            return Err(Error::NotFound(format!(
                "there is no data to snapshot yet ({golden} does not exist): wait for retrieval"
            )));
        }
        let (pre, promoted) = promotion_names(&golden, Utc::now(), &listing)?;
        let intent = self.intend(&[&pre, &promoted])?;
        if let Err(error) = storage.snapshot(&pre).await {
            intent.settle();
            return Err(error.into());
        }
        failpoint::hit("physical.standby_snapshot");
        let mountpoint = match storage.clone_snapshot(&pre, &promoted).await {
            Ok(mountpoint) => mountpoint,
            Err(error) => {
                if self.remove_standby_snapshot(&pre).await {
                    intent.settle();
                }
                return Err(error.into());
            }
        };
        failpoint::hit("physical.cloned");
        let mut target = Target::new(Pool::pgdata(&mountpoint), self.promotion_run_dir());
        target.admin_role = self.config().clone.admin_role.clone();
        let summary = match live.promotion.run(&target, recovery, &self.inner.cancel).await {
            Ok(summary) => summary,
            Err(error) => {
                self.abandon_promotion(intent, &promoted, &pre).await;
                return Err(Error::Retrieval(error));
            }
        };
        // The snapshot of the data with the newest data: by dataStateAt, not by creation, so a
        // snapshot of the past (a point in time) made since does not count; commits do not.
        let latest = self
            .read_state()
            .snapshots
            .iter()
            .filter(|snapshot| Pool::is_data_snapshot(&snapshot.storage_name))
            .max_by_key(|snapshot| (snapshot.data_state_at, snapshot.created_at))
            .cloned();
        if skip_unchanged
            && let Some(latest) =
                latest.filter(|latest| latest.data_state_at == summary.data_state_at)
        {
            info!(
                data_state_at = %summary.data_state_at,
                latest = %latest.id,
                "snapshot skipped: no commit replayed since the latest snapshot"
            );
            // Nothing new because the standby is cut off from its source (not because the
            // source is idle) is worth an alert with the reason.
            let sync = self.sync_status();
            if sync.code != crate::SyncCode::Ok {
                self.refresh_state().alert(
                    "snapshot_skipped",
                    "warning",
                    format!(
                        "snapshot skipped: no commit replayed since snapshot {} ({}); the sync instance is {}: {}",
                        latest.id,
                        latest.data_state_at.to_rfc3339(),
                        sync.code.as_str(),
                        sync.message
                    ),
                );
            }
            self.abandon_promotion(intent, &promoted, &pre).await;
            return self.snapshot(&latest.id);
        }
        match self
            .snapshot_data_locked(&promoted, summary.data_state_at, summary.masking.is_some())
            .await
        {
            Ok(view) if !keep_standby => {
                if self.remove_standby_snapshot(&pre).await {
                    intent.settle();
                }
                self.refresh_state().clear_alerts(&["snapshot_skipped", "snapshot_failed"]);
                info!(
                    snapshot_id = %view.record.id,
                    data_state_at = %summary.data_state_at,
                    "snapshot of the subscriber created"
                );
                Ok(view)
            }
            Ok(view) => {
                // The standby snapshot stays, still a standby, as the start of points in time
                // from this snapshot's moment on.
                let kept = StandbySnapshot {
                    snapshot_id: view.record.id.clone(),
                    storage_name: pre.to_string(),
                    data_state_at: summary.data_state_at,
                    lsn: summary.lsn.to_string(),
                };
                let pre_kept = match self.inner.store.insert_standby_snapshot(&kept) {
                    Ok(()) => {
                        self.kept_standby_snapshots_changed();
                        true
                    }
                    Err(error) => {
                        warn!(snapshot = %pre, error = %error, "failed to record the standby snapshot for points in time; removing it");
                        self.remove_standby_snapshot(&pre).await
                    }
                };
                if pre_kept {
                    intent.settle();
                }
                self.refresh_state().clear_alerts(&["snapshot_skipped", "snapshot_failed"]);
                info!(
                    snapshot_id = %view.record.id,
                    data_state_at = %summary.data_state_at,
                    wal_replayed_bytes = summary.wal_replayed_bytes,
                    "physical snapshot created"
                );
                Ok(view)
            }
            Err(error) => {
                self.abandon_promotion(intent, &promoted, &pre).await;
                Err(error)
            }
        }
    }

    /// Removes the kept standby snapshots whose snapshot is no longer in the catalog (a crash
    /// between a snapshot's deletion and its standby snapshot's, or a snapshot gone from the
    /// pool); returns their storage names.
    pub(crate) async fn release_orphan_standby_snapshots(&self) -> Vec<String> {
        let kept = match self.inner.store.standby_snapshots() {
            Ok(kept) => kept,
            Err(error) => {
                warn!(error = %error, "failed to read the kept standby snapshots");
                return Vec::new();
            }
        };
        let recorded: std::collections::BTreeSet<String> =
            self.read_state().snapshots.iter().map(|snapshot| snapshot.id.clone()).collect();
        let mut removed = Vec::new();
        for orphan in kept.into_iter().filter(|kept| !recorded.contains(&kept.snapshot_id)) {
            if self.release_standby_snapshot(&orphan.snapshot_id).await {
                removed.push(orphan.storage_name);
            }
        }
        removed
    }

    /// Removes the standby snapshot kept for the deleted snapshot `snapshot_id`, if any, then
    /// the old golden dataset it was of when nothing else needs it.
    /// True when one was kept and is gone now.
    pub(crate) async fn release_standby_snapshot(&self, snapshot_id: &str) -> bool {
        let kept = match self.inner.store.standby_snapshots() {
            Ok(kept) => kept,
            Err(error) => {
                warn!(snapshot_id, error = %error, "failed to read the kept standby snapshots");
                return false;
            }
        };
        let Some(record) = kept.into_iter().find(|kept| kept.snapshot_id == snapshot_id) else {
            return false;
        };
        let Ok(name) = record.storage_name.parse::<SnapshotName>() else { return false };
        if !self.remove_standby_snapshot(&name).await {
            return false;
        }
        if let Err(error) = self.inner.store.delete_standby_snapshot(snapshot_id) {
            warn!(snapshot_id, error = %error, "failed to forget a removed standby snapshot");
        }
        self.kept_standby_snapshots_changed();
        self.destroy_unused_data(name.dataset()).await;
        true
    }

    /// Removes a promotion that is not recorded: its clone and, with it, the standby snapshot
    /// it was cut from; the intent is settled when both are gone.
    async fn abandon_promotion(
        &self,
        intent: crate::intent::Intent<'_>,
        promoted: &DatasetName,
        pre: &SnapshotName,
    ) {
        let promoted_gone = self.discard(promoted).await;
        if self.remove_standby_snapshot(pre).await && promoted_gone {
            intent.settle();
        }
    }

    /// Removes the live standby's snapshot, leaving its clones where they outlive it (btrfs);
    /// true when it is gone. Where they do not (ZFS), it stays while one exists.
    async fn remove_standby_snapshot(&self, name: &SnapshotName) -> bool {
        match self.inner.pool.storage().destroy_snapshot(name, DestroyMode::KeepClones).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => true,
            Err(storage::Error::HasDependents { dependents, .. }) => {
                info!(snapshot = %name, ?dependents, "the sync instance's snapshot stays while copies cloned from it exist");
                false
            }
            Err(error) => {
                warn!(snapshot = %name, error = %error, "failed to remove the sync instance's snapshot");
                false
            }
        }
    }

    /// The private directory of a promotion's temporary server (socket, log).
    pub(crate) fn promotion_run_dir(&self) -> PathBuf {
        self.inner.state_dir.join("promotion")
    }

    /// When the physical snapshot timetable runs next, if one is set.
    pub(crate) fn next_physical_snapshot(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let live = self.live_retrieval()?;
        let cron = retrieval::config::parse_timetable(live.snapshot_timetable()?).ok()?;
        cron.find_next_occurrence(&after, false).ok()
    }
}
