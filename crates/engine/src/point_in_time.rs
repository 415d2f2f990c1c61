//! Points in time (physical mode, beyond DBLab): snapshots and branches of the data exactly at
//! a time or an LSN inside the WAL window, and the window itself.
//!
//! Both replay the same way: the newest kept standby snapshot at or before the target (a
//! crash-consistent copy of the sync instance, kept beside each physical snapshot) is cloned
//! into a new dataset, which a temporary server recovers from the archive up to the target,
//! promotes and prepares (`retrieval::physical::promote`). A snapshot at a point is then
//! recorded on `main`; a branch at a point owns the replayed dataset as `branch/<name>`, so
//! `main` and its head are untouched, and forks from the physical snapshot its replay started
//! from (`docs/point-in-time.md`).

use chrono::Utc;
use retrieval::Target;
use retrieval::physical::promote::{Lsn, PromotionSummary, RecoveryTarget, WalPoint, WalWindow};
use storage::{DatasetName, SnapshotName, ThinStorage};
use tracing::{info, warn};

use crate::branch::{BranchView, NewBranch, new_branch_name};
use crate::error::{Error, Result};
use crate::physical::Physical;
use crate::pool::{Pool, promotion_names};
use crate::snapshot::SnapshotView;
use crate::sync::lock;
use crate::{Engine, failpoint};

/// What a replay to a point made: the kept standby snapshot's physical snapshot it started
/// from, and the promotion's summary.
struct Replayed {
    base_snapshot_id: String,
    summary: PromotionSummary,
}

impl Engine {
    /// Physical mode's parts, or the error a point in time gets in logical mode.
    fn point_in_time_mode(&self) -> Result<std::sync::Arc<Physical>> {
        self.physical_retrieval().ok_or_else(|| {
            Error::InvalidInput(
                "a point in time needs physical mode ([retrieval.physical]): logical mode has no WAL to replay".to_owned(),
            )
        })
    }

    /// A snapshot of the data exactly at `at`, a time or an LSN inside the WAL window: the
    /// newest kept standby snapshot at or before `at` is cloned, replays WAL from the archive
    /// (`restore_command`) up to `at`, is promoted and prepared, and the result recorded with
    /// the last replayed commit's time as `dataStateAt`. A target outside the window is
    /// [`Error::InvalidInput`] naming the window; so is one the server cannot reach (the
    /// archive ends before it).
    pub async fn create_snapshot_at_point(&self, at: RecoveryTarget) -> Result<SnapshotView> {
        let physical = self.point_in_time_mode()?;
        if at == RecoveryTarget::Latest {
            return self.create_snapshot().await;
        }
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_space("create snapshot").await?;
        let listing = self.inner.pool.storage().list().await?;
        let golden = self.current_data_dataset();
        let (_, promoted) = promotion_names(&golden, Utc::now(), &listing)?;
        let intent = self.intend(&[&promoted])?;
        let result = match self.replay_to_point(&physical, at, &listing, &promoted).await {
            Ok(replayed) => {
                let summary = replayed.summary;
                let parent = &replayed.base_snapshot_id;
                let masked = summary.masking.is_some();
                self.snapshot_past_locked(&promoted, summary.data_state_at, parent, masked)
                    .await
                    .inspect(|view| {
                        info!(
                            snapshot_id = %view.record.id,
                            target = %at,
                            from = %replayed.base_snapshot_id,
                            data_state_at = %summary.data_state_at,
                            wal_replayed_bytes = summary.wal_replayed_bytes,
                            "physical snapshot at a point in time created"
                        );
                    })
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(view) => {
                intent.settle();
                Ok(view)
            }
            Err(error) => {
                if self.discard(&promoted).await {
                    intent.settle();
                }
                Err(error)
            }
        }
    }

    /// Creates branch `name` holding the data exactly at `at`: the replay of a snapshot at a
    /// point, into the branch's own dataset, whose first snapshot is its head. It forks from
    /// the physical snapshot the replay started from; `main` is untouched.
    pub async fn create_branch_at_point(
        &self,
        name: &str,
        at: RecoveryTarget,
    ) -> Result<BranchView> {
        let physical = self.point_in_time_mode()?;
        let name = new_branch_name(name)?;
        if at == RecoveryTarget::Latest {
            return Err(Error::InvalidInput(
                "a branch at a point in time needs a time or an LSN".to_owned(),
            ));
        }
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_no_branch(&name)?;
        self.ensure_space("create branch").await?;
        let listing = self.inner.pool.storage().list().await?;
        let dataset = self.inner.pool.branch_dataset(&name)?;
        if listing.dataset(&dataset).is_some() {
            return Err(Error::AlreadyExists(format!(
                "the pool already holds a dataset {dataset} (left from an earlier branch {name:?}?); remove it first"
            )));
        }
        let first = self.inner.pool.new_commit_name(&dataset, Utc::now(), |_| false)?;
        let intent = self.intend(&[&dataset, &first])?;
        let replayed = match self.replay_to_point(&physical, at, &listing, &dataset).await {
            Ok(replayed) => replayed,
            Err(error) => {
                if self.discard(&dataset).await {
                    intent.settle();
                }
                return Err(error);
            }
        };
        let base = match self.snapshot_record(&replayed.base_snapshot_id) {
            Ok(base) => base,
            Err(error) => {
                if self.discard(&dataset).await {
                    intent.settle();
                }
                return Err(error);
            }
        };
        let logical_size = match self.inner.pool.storage().dataset_space(&dataset).await {
            Ok(space) => space.referenced,
            Err(_) => base.logical_size,
        };
        info!(
            branch = %name,
            target = %at,
            from = %base.id,
            data_state_at = %replayed.summary.data_state_at,
            wal_replayed_bytes = replayed.summary.wal_replayed_bytes,
            "branch at a point in time replayed"
        );
        let new = NewBranch { name, dataset, first, intent };
        self.finish_branch(new, &base, replayed.summary.data_state_at, logical_size).await
    }

    /// Clones the newest kept standby snapshot at or before `at` into the new dataset `into`
    /// and replays it there to `at`. Refuses a target outside the WAL window before making
    /// anything; once `into` exists, the caller removes it on failure.
    async fn replay_to_point(
        &self,
        physical: &Physical,
        at: RecoveryTarget,
        listing: &storage::Listing,
        into: &DatasetName,
    ) -> Result<Replayed> {
        let kept = self.kept_standby_snapshots(listing)?;
        let window = self.wal_window_of(&kept).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{at} cannot be reached: no standby snapshot is kept yet, so the WAL window is empty; take a snapshot first"
            ))
        })?;
        window.check(&at).map_err(|error| Error::InvalidInput(error.to_string()))?;
        let reaches = |point: &WalPoint| match at {
            RecoveryTarget::Time(time) => point.at <= time,
            RecoveryTarget::Lsn(lsn) => point.lsn <= lsn,
            RecoveryTarget::Latest => true,
        };
        let Some((base, _, base_snapshot_id)) =
            kept.iter().rev().find(|(_, point, _)| reaches(point))
        else {
            return Err(Error::InvalidInput(format!("{at} is outside the WAL window: {window}")));
        };
        let mountpoint = self.inner.pool.storage().clone_snapshot(base, into).await?;
        failpoint::hit("physical.point_cloned");
        let mut target = Target::new(Pool::pgdata(&mountpoint), self.promotion_run_dir());
        target.admin_role = self.config().clone.admin_role.clone();
        match physical.promotion().run(&target, at, &self.inner.cancel).await {
            Ok(summary) => Ok(Replayed { base_snapshot_id: base_snapshot_id.clone(), summary }),
            Err(retrieval::Error::TargetUnreachable { target, reason }) => {
                Err(Error::InvalidInput(format!(
                    "{target} cannot be reached from the WAL archive ({reason}); {window}"
                )))
            }
            Err(error) => Err(Error::Retrieval(error)),
        }
    }

    /// The kept standby snapshots that exist in `listing`, each with the moment its promotion
    /// reached and the ID of the physical snapshot it was kept for, oldest first.
    fn kept_standby_snapshots(
        &self,
        listing: &storage::Listing,
    ) -> Result<Vec<(SnapshotName, WalPoint, String)>> {
        let mut kept = Vec::new();
        for record in self.inner.store.standby_snapshots()? {
            let Ok(name) = record.storage_name.parse::<SnapshotName>() else { continue };
            let Ok(lsn) = record.lsn.parse::<Lsn>() else { continue };
            if listing.snapshot(&name).is_some() {
                kept.push((name, WalPoint { at: record.data_state_at, lsn }, record.snapshot_id));
            }
        }
        Ok(kept)
    }

    /// The moments a point in time can name: from the oldest kept standby snapshot's to the
    /// newest the engine knows the WAL holds (the newest kept one's, or the sync instance's
    /// last replayed commit). The archive may end earlier; the promotion then refuses.
    fn wal_window_of(&self, kept: &[(SnapshotName, WalPoint, String)]) -> Option<WalWindow> {
        let (_, oldest, _) = kept.first()?;
        let (_, newest, _) = kept.last()?;
        Some(self.wal_window_from((*oldest, *newest)))
    }

    /// The window from the oldest and newest kept standby snapshots' points, extended to what
    /// the sync instance replayed since.
    fn wal_window_from(&self, (oldest, mut newest): (WalPoint, WalPoint)) -> WalWindow {
        let sync = self.sync_status();
        if let Some(lsn) = sync.last_replayed_lsn.and_then(|lsn| lsn.parse::<Lsn>().ok()) {
            newest.lsn = newest.lsn.max(lsn);
        }
        if let Some(at) = sync.last_replayed_at {
            newest.at = newest.at.max(at);
        }
        WalWindow { oldest, newest }
    }

    /// The WAL window of points in time, when physical mode has kept standby snapshots.
    ///
    /// Read from memory, as every read the API serves: `GET /instance/retrieval` shows it and
    /// UIs poll that path, so a listing of the pool here ran a `btrfs subvolume list` per
    /// request and slowed the initial copy it was polled during. The kept snapshots' span is
    /// read from the store once after each change ([`Engine::kept_standby_snapshots_changed`]);
    /// a point in time itself still checks each kept snapshot against the pool.
    pub fn point_in_time_window(&self) -> Option<WalWindow> {
        let physical = self.physical_retrieval()?;
        let span = {
            let mut cached = lock(&physical.kept_span);
            match *cached {
                Some(span) => span,
                None => {
                    let span = self.kept_span_from_store()?;
                    *cached = Some(span);
                    span
                }
            }
        }?;
        Some(self.wal_window_from(span))
    }

    /// Forgets the cached span of the kept standby snapshots: the store's records changed.
    pub(crate) fn kept_standby_snapshots_changed(&self) {
        if let Some(physical) = self.physical_retrieval() {
            *lock(&physical.kept_span) = None;
        }
    }

    /// The oldest and newest kept standby snapshots' points as the store records them (none
    /// kept: `Some(None)`); `None` when the store cannot be read, which is not cached.
    fn kept_span_from_store(&self) -> Option<Option<(WalPoint, WalPoint)>> {
        let records = match self.inner.store.standby_snapshots() {
            Ok(records) => records,
            Err(error) => {
                warn!(error = %error, "failed to read the kept standby snapshots");
                return None;
            }
        };
        let points: Vec<WalPoint> = records
            .iter()
            .filter_map(|record| {
                let lsn = record.lsn.parse::<Lsn>().ok()?;
                Some(WalPoint { at: record.data_state_at, lsn })
            })
            .collect();
        Some(points.first().copied().zip(points.last().copied()))
    }
}
