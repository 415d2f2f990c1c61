//! Snapshots: the catalog, taking one of the pool's data, deletion with its dependency rules,
//! and count-based retention.
//!
//! A snapshot of the data is recorded on the `main` branch, whose head it becomes (the branch is
//! created with the first snapshot). Deleting one splices it out of its branch's history; a
//! fork point of a branch, a branch's first snapshot and `main`'s only one are never deleted.
//! Retention never deletes a snapshot that has clones, is protected, or is a head.

use std::collections::BTreeSet;

use api_types::WebhookEvent;
use chrono::{DateTime, Utc};
use storage::{DestroyMode, SnapshotName, ThinStorage};
use tracing::{info, warn};

use crate::clone::branch_or_main;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::intent::Intent;
use crate::lease::Protection;
use crate::model::{BranchRecord, CloneState, SnapshotRecord};
use crate::pool::Pool;
use crate::state;
use crate::store::CatalogChange;
use crate::{Engine, MAIN_BRANCH, State};

/// A snapshot with the clones that run on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotView {
    /// The stored record.
    pub record: SnapshotRecord,
    /// IDs of the clones made from it.
    pub clones: Vec<String>,
    /// Whether it is the head of its branch.
    pub is_head: bool,
}

/// Where a new snapshot of the data goes on `main`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placement<'a> {
    /// The new head, with the old head as parent.
    Head,
    /// Beside the head, as a child of the snapshot named (a point in time's base; a kept
    /// unmasked snapshot's, the masked head's own parent), the head left where it is.
    Beside(Option<&'a str>),
}

/// What a new snapshot of the data is: masked, protected.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SnapshotKind {
    /// Its data was masked.
    pub(crate) masked: bool,
    /// Protected from deletion and retention from the start (a kept unmasked snapshot).
    pub(crate) protected: bool,
}

impl Engine {
    /// Every snapshot, newest first.
    pub fn snapshots(&self) -> Vec<SnapshotView> {
        let state = self.read_state();
        state.snapshots.iter().map(|snapshot| self.snapshot_view_in(&state, snapshot)).collect()
    }

    /// One snapshot.
    pub fn snapshot(&self, id: &str) -> Result<SnapshotView> {
        let state = self.read_state();
        let record = state
            .snapshots
            .iter()
            .find(|snapshot| snapshot.id == id)
            .ok_or_else(|| snapshot_not_found(id))?;
        Ok(self.snapshot_view_in(&state, record))
    }

    pub(crate) fn snapshot_view_in(&self, state: &State, record: &SnapshotRecord) -> SnapshotView {
        let clones = state
            .clones
            .values()
            .filter(|entry| entry.record.snapshot_id == record.id)
            .map(|entry| entry.record.id.clone())
            .collect();
        self.snapshot_view_with(state, record, clones)
    }

    /// The view of `record` whose clones are `clones` (in the state's order).
    pub(crate) fn snapshot_view_with(
        &self,
        state: &State,
        record: &SnapshotRecord,
        clones: Vec<String>,
    ) -> SnapshotView {
        let is_head = state
            .branches
            .get(&record.branch)
            .is_some_and(|branch| branch.head_snapshot_id == record.id);
        SnapshotView { record: record.clone(), clones, is_head }
    }

    pub(crate) fn snapshot_record(&self, id: &str) -> Result<SnapshotRecord> {
        self.read_state()
            .snapshots
            .iter()
            .find(|snapshot| snapshot.id == id)
            .cloned()
            .ok_or_else(|| snapshot_not_found(id))
    }

    /// The snapshot with the newest data.
    pub(crate) fn latest_snapshot(&self) -> Result<SnapshotRecord> {
        self.read_state()
            .snapshots
            .iter()
            .max_by_key(|snapshot| (snapshot.data_state_at, snapshot.created_at))
            .cloned()
            .ok_or_else(|| Error::NotFound("there are no snapshots yet".to_owned()))
    }

    /// The snapshot a create request means: the given one, else the head of the given branch
    /// (`main` by default).
    pub(crate) fn resolve_snapshot(
        &self,
        snapshot_id: Option<&str>,
        branch: Option<&str>,
    ) -> Result<SnapshotRecord> {
        if let Some(id) = snapshot_id.filter(|id| !id.is_empty()) {
            return self.snapshot_record(id);
        }
        let branch = branch_or_main(branch);
        let head = self
            .read_state()
            .branches
            .get(branch)
            .map(|branch| branch.head_snapshot_id.clone())
            .ok_or_else(|| Error::NotFound(format!("branch {branch:?} not found")))?;
        self.snapshot_record(&head)
    }

    /// Takes a snapshot of the pool's data now, records it as the new head of `main`, and
    /// applies retention.
    ///
    /// In physical mode and with continuous refresh the snapshot is cut from the sync
    /// instance's dataset and promoted ([`Engine::create_physical_snapshot`]); it is skipped,
    /// and the latest snapshot returned, when no commit was replayed since that one.
    pub async fn create_snapshot(&self) -> Result<SnapshotView> {
        if let Some(live) = self.live_retrieval() {
            return self
                .create_physical_snapshot(
                    &live,
                    retrieval::physical::promote::RecoveryTarget::Latest,
                    true,
                )
                .await;
        }
        self.create_snapshot_at(Utc::now(), self.current_data_masked()).await
    }

    /// Takes a snapshot of the pool's data, whose contents reflect `data_state_at`; `masked`
    /// says whether that data was masked.
    pub async fn create_snapshot_at(
        &self,
        data_state_at: DateTime<Utc>,
        masked: bool,
    ) -> Result<SnapshotView> {
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_space("create snapshot").await?;
        self.snapshot_data_locked(&self.current_data_dataset(), data_state_at, masked).await
    }

    /// Takes a snapshot of `data`, a dataset of the data (`main`'s), records it as the new head
    /// of `main` and applies retention; the caller holds the snapshot lock.
    pub(crate) async fn snapshot_data_locked(
        &self,
        data: &storage::DatasetName,
        data_state_at: DateTime<Utc>,
        masked: bool,
    ) -> Result<SnapshotView> {
        self.snapshot_of_data(data, data_state_at, None, masked).await
    }

    /// Takes a snapshot of `data` holding the data of a past moment (a point in time), records
    /// it on `main` as a child of `parent` (the snapshot its data was replayed from) and applies
    /// retention. The head of `main` stays: clones that name no snapshot keep getting the
    /// newest data. The caller holds the snapshot lock.
    pub(crate) async fn snapshot_past_locked(
        &self,
        data: &storage::DatasetName,
        data_state_at: DateTime<Utc>,
        parent: &str,
        masked: bool,
    ) -> Result<SnapshotView> {
        self.snapshot_of_data(data, data_state_at, Some(parent), masked).await
    }

    /// A snapshot of `data` recorded on `main`: its new head with the old head as parent, or,
    /// with `past_of`, beside the head as a child of that snapshot.
    async fn snapshot_of_data(
        &self,
        data: &storage::DatasetName,
        data_state_at: DateTime<Utc>,
        past_of: Option<&str>,
        masked: bool,
    ) -> Result<SnapshotView> {
        let (name, intent) = self.take_data_snapshot(data, "").await?;
        let placement = match past_of {
            Some(parent) => Placement::Beside(Some(parent)),
            None => Placement::Head,
        };
        let kind = SnapshotKind { masked, protected: false };
        self.record_data_snapshot(&name, intent, data_state_at, placement, kind).await
    }

    /// Takes a storage snapshot of `data`, `snapshot_<ts><suffix>`, named by the intent it
    /// returns, for [`Engine::record_data_snapshot`]; the caller holds the snapshot lock.
    pub(crate) async fn take_data_snapshot(
        &self,
        data: &storage::DatasetName,
        suffix: &str,
    ) -> Result<(SnapshotName, Intent<'_>)> {
        let storage = self.inner.pool.storage();
        let name = {
            let state = self.read_state();
            let taken: BTreeSet<&str> =
                state.snapshots.iter().map(|snapshot| snapshot.id.as_str()).collect();
            self.inner.pool.new_snapshot_name(data, Utc::now(), suffix, |name| {
                taken.contains(self.inner.pool.snapshot_id(name).as_str())
            })?
        };
        let intent = self.intend(&[&name])?;
        match storage.snapshot(&name).await {
            Ok(()) => failpoint::hit("snapshot.taken"),
            Err(storage::Error::NotFound(_)) => {
                intent.settle();
                return Err(Error::NotFound(format!(
                    "there is no data to snapshot yet ({} does not exist): wait for retrieval",
                    name.dataset()
                )));
            }
            Err(error) => {
                intent.settle();
                return Err(error.into());
            }
        }
        Ok((name, intent))
    }

    /// Records `name`, a storage snapshot of the data that [`Engine::take_data_snapshot`]
    /// took, on `main` where `placement` says, settles its intent and applies retention; the
    /// snapshot is destroyed again when it cannot be recorded.
    pub(crate) async fn record_data_snapshot(
        &self,
        name: &SnapshotName,
        intent: Intent<'_>,
        data_state_at: DateTime<Utc>,
        placement: Placement<'_>,
        kind: SnapshotKind,
    ) -> Result<SnapshotView> {
        let storage = self.inner.pool.storage();
        let data = name.dataset().clone();
        let now = Utc::now();
        let logical_size = match storage.dataset_space(&data).await {
            Ok(space) => space.referenced,
            Err(error) => {
                warn!(error = %error, "failed to read the data's size");
                0
            }
        };
        let id = self.inner.pool.snapshot_id(name);
        let head_id = self
            .read_state()
            .branches
            .get(MAIN_BRANCH)
            .map(|branch| branch.head_snapshot_id.clone());
        let parent_id = match placement {
            Placement::Beside(parent) => parent.map(str::to_owned),
            Placement::Head => head_id,
        };
        let record = SnapshotRecord {
            id: id.clone(),
            pool: self.inner.pool.name().to_owned(),
            storage_name: name.to_string(),
            branch: MAIN_BRANCH.to_owned(),
            parent_id,
            message: String::new(),
            created_at: now,
            data_state_at,
            // A new snapshot shares every block with its dataset.
            physical_size: 0,
            logical_size,
            protected: kind.protected,
            protected_till: None,
            delete_at: None,
            masked: kind.masked,
        };
        let branch = {
            let state = self.read_state();
            match state.branches.get(MAIN_BRANCH) {
                Some(branch) if matches!(placement, Placement::Beside(_)) => branch.clone(),
                Some(branch) => BranchRecord { head_snapshot_id: id.clone(), ..branch.clone() },
                None => BranchRecord {
                    name: MAIN_BRANCH.to_owned(),
                    head_snapshot_id: id.clone(),
                    base_snapshot_id: None,
                    created_at: now,
                    protected: false,
                    protected_till: None,
                    delete_at: None,
                },
            }
        };
        if let Err(error) = self.record_snapshot(&record, &branch) {
            // Without a record the snapshot would be an orphan: take it back.
            self.drop_unrecorded(name, intent).await;
            return Err(error);
        }
        intent.settle();
        info!(snapshot_id = %id, "snapshot created");
        self.inner
            .events
            .emit(&api_types::WebhookPayload::basic(WebhookEvent::SnapshotCreate, id.clone()));
        self.apply_retention().await;
        self.snapshot(&id)
    }

    /// Destroys a storage snapshot that was never recorded and settles the intent naming it;
    /// when it cannot be destroyed, the intent stays for the next start's audit.
    pub(crate) async fn drop_unrecorded(&self, name: &SnapshotName, intent: Intent<'_>) {
        match self.inner.pool.storage().destroy_snapshot(name, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => intent.settle(),
            Err(error) => {
                warn!(%error, snapshot = %name, "failed to remove an unrecorded snapshot");
            }
        }
    }

    fn record_snapshot(&self, record: &SnapshotRecord, branch: &BranchRecord) -> Result<()> {
        self.apply_catalog(CatalogChange {
            upsert_snapshots: vec![record.clone()],
            upsert_branches: vec![branch.clone()],
            ..CatalogChange::default()
        })
    }

    /// Writes a catalog change to the store in one transaction, then to memory.
    pub(crate) fn apply_catalog(&self, change: CatalogChange) -> Result<()> {
        self.inner.state.apply_catalog(&self.inner.store, change)?;
        // The head of `main` may have moved: the warm pool follows it.
        self.inner.warm.wake();
        Ok(())
    }

    /// Deletes a snapshot. Clones made from it make this fail unless `force`, which destroys
    /// them first; a protected snapshot, a protected clone on it, or the last snapshot of a
    /// branch make it fail always.
    pub async fn delete_snapshot(&self, id: &str, force: bool) -> Result<()> {
        let _serial = self.inner.snapshot_lock.lock().await;
        self.delete_snapshot_locked(id, force).await
    }

    pub(crate) async fn delete_snapshot_locked(&self, id: &str, force: bool) -> Result<()> {
        let now = Utc::now();
        let view = self.snapshot(id)?;
        let record = &view.record;
        if (Protection { protected: record.protected, till: record.protected_till }).is_active(now)
        {
            return Err(Error::Refused(format!("snapshot {id:?} is protected")));
        }
        {
            let state = self.read_state();
            let forks: Vec<&str> = state
                .branches
                .values()
                .filter(|branch| branch.base_snapshot_id.as_deref() == Some(id))
                .map(|branch| branch.name.as_str())
                .collect();
            if !forks.is_empty() {
                return Err(Error::Refused(format!(
                    "snapshot {id:?} is the fork point of branch(es) {}; delete them first",
                    forks.join(", ")
                )));
            }
            let parent_branch = record.parent_id.as_ref().and_then(|parent| {
                state.snapshots.iter().find(|snapshot| &snapshot.id == parent).map(|s| &s.branch)
            });
            if view.is_head && parent_branch != Some(&record.branch) {
                return Err(Error::Refused(if record.branch == MAIN_BRANCH {
                    format!("snapshot {id:?} is the only snapshot of branch main")
                } else {
                    format!(
                        "snapshot {id:?} is the first snapshot of branch {:?}; delete the branch \
                         instead",
                        record.branch
                    )
                }));
            }
        }
        let dependents: Vec<_> =
            view.clones.iter().filter_map(|clone_id| self.clone_view(clone_id).ok()).collect();
        if let Some(protected) = dependents.iter().find(|clone| {
            Protection { protected: clone.record.protected, till: clone.record.protected_till }
                .is_active(now)
        }) {
            return Err(Error::Refused(format!(
                "snapshot {id:?} has a protected clone: {}",
                protected.record.id
            )));
        }
        if !dependents.is_empty() && !force {
            return Err(Error::Refused(format!(
                "snapshot {id:?} has dependent clones: {}; delete them first or use force",
                view.clones.join(", ")
            )));
        }
        for clone in dependents {
            // Decided again under the lock: a reset or a protection may have come since.
            let record = self.transition(&clone.record.id, state::SETTLED, |record| {
                if (Protection { protected: record.protected, till: record.protected_till })
                    .is_active(Utc::now())
                {
                    return Err(Error::Refused(format!(
                        "snapshot {id:?} has a protected clone: {}",
                        record.id
                    )));
                }
                record.state = CloneState::Deleting;
                record.state_message = "Clone is being deleted with its snapshot.".to_owned();
                Ok(())
            })?;
            self.teardown(&record).await?;
        }
        let name: SnapshotName = record
            .storage_name
            .parse()
            .map_err(|error: storage::Error| Error::InvalidInput(error.to_string()))?;
        if force {
            // Force destroys the datasets cloned from the snapshot; a commit made in one of them
            // is history that a branch still needs.
            let listing = self.inner.pool.storage().list().await?;
            let recorded: BTreeSet<String> = self
                .read_state()
                .snapshots
                .iter()
                .map(|snapshot| snapshot.storage_name.clone())
                .collect();
            let commits: Vec<String> = listing
                .dependents(&storage::Object::Snapshot(name.clone()))
                .into_iter()
                .filter_map(|object| match object {
                    storage::Object::Snapshot(dependent)
                        if recorded.contains(&dependent.to_string()) =>
                    {
                        Some(self.inner.pool.snapshot_id(&dependent))
                    }
                    _ => None,
                })
                .collect();
            if !commits.is_empty() {
                return Err(Error::Refused(format!(
                    "snapshot {id:?} has commits made from it: {}; delete their branches first",
                    commits.join(", ")
                )));
            }
        }
        // Warm clones are nobody's yet; the snapshot lock keeps new ones from being made now.
        self.discard_warm_where(|warm| warm.record.snapshot_id == id).await;
        let mode = if force { DestroyMode::WithDependents } else { DestroyMode::Refuse };
        match self.inner.pool.storage().destroy_snapshot(&name, mode).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {}
            Err(storage::Error::HasDependents { dependents, .. }) => {
                return Err(Error::Refused(format!(
                    "snapshot {id:?} has dependent datasets: {}; use force",
                    dependents.join(", ")
                )));
            }
            Err(error) => return Err(error.into()),
        }
        failpoint::hit("snapshot.destroyed");
        self.forget_snapshot(record)?;
        // The promoted copy first: on ZFS it is a clone of the kept standby snapshot.
        self.destroy_unused_dataset(name.dataset()).await;
        self.release_standby_snapshot(id).await;
        info!(snapshot_id = %id, "snapshot deleted");
        self.inner.events.emit(&api_types::WebhookPayload::basic(WebhookEvent::SnapshotDelete, id));
        Ok(())
    }

    /// After a snapshot is gone, removes the dataset it was taken of when nothing needs that
    /// any more: old data without snapshots, or a destroyed clone's dataset that only stayed
    /// for its commits. A running clone's dataset and a branch's own dataset stay.
    async fn destroy_unused_dataset(&self, dataset: &storage::DatasetName) {
        if Pool::is_data_dataset(dataset.as_str()) {
            self.destroy_unused_data(dataset).await;
            return;
        }
        let owned = {
            let state = self.read_state();
            state.clones.values().any(|entry| entry.record.dataset == dataset.as_str())
                || state.branches.keys().any(|branch| {
                    self.inner.pool.branch_dataset(branch).is_ok_and(|own| &own == dataset)
                })
        };
        if !owned && self.destroy_if_no_snapshots(dataset).await {
            info!(%dataset, "a destroyed clone's dataset removed with its last commit");
            self.remove_empty_clone_parent(dataset).await;
        }
    }

    /// Removes a snapshot from the catalog, splicing it out of its branch's history.
    fn forget_snapshot(&self, record: &SnapshotRecord) -> Result<()> {
        let change = {
            let state = self.read_state();
            let upsert_snapshots = state
                .snapshots
                .iter()
                .filter(|snapshot| snapshot.parent_id.as_deref() == Some(record.id.as_str()))
                .map(|snapshot| SnapshotRecord {
                    parent_id: record.parent_id.clone(),
                    ..snapshot.clone()
                })
                .collect();
            let upsert_branches = state
                .branches
                .values()
                .filter(|branch| branch.head_snapshot_id == record.id)
                .filter_map(|branch| {
                    let parent = record.parent_id.clone()?;
                    Some(BranchRecord { head_snapshot_id: parent, ..branch.clone() })
                })
                .collect();
            CatalogChange {
                upsert_snapshots,
                delete_snapshots: vec![record.id.clone()],
                upsert_branches,
                delete_branches: Vec::new(),
            }
        };
        self.apply_catalog(change)
    }

    /// Keeps at most `retention_limit` snapshots of the data, deleting the oldest ones that are
    /// safe to delete: no clones, not protected, not a branch head or fork point.
    pub(crate) async fn apply_retention(&self) {
        let limit = self.config().snapshots.retention_limit;
        if limit == 0 {
            return;
        }
        let now = Utc::now();
        let candidates: Vec<String> = {
            let forks: BTreeSet<String> = self
                .read_state()
                .branches
                .values()
                .filter_map(|branch| branch.base_snapshot_id.clone())
                .collect();
            let snapshots = self.snapshots();
            // Commits belong to their branches' histories: only snapshots of the data count,
            // masked and unmasked ones apart (a refresh that keeps its data unmasked makes one
            // of each, and neither kind pushes the other out).
            let mut kept = [0_usize; 2];
            snapshots
                .iter()
                .filter(|view| Pool::is_data_snapshot(&view.record.storage_name))
                .filter(|view| {
                    let count = &mut kept[usize::from(view.record.masked)];
                    *count += 1;
                    *count > limit
                })
                .filter(|view| {
                    view.clones.is_empty()
                        && !view.is_head
                        && !forks.contains(&view.record.id)
                        && !Protection {
                            protected: view.record.protected,
                            till: view.record.protected_till,
                        }
                        .is_active(now)
                })
                .map(|view| view.record.id.clone())
                .collect()
        };
        for id in candidates {
            match self.delete_snapshot_locked(&id, false).await {
                Ok(()) => info!(snapshot_id = %id, "snapshot removed by retention"),
                Err(error) => {
                    warn!(snapshot_id = %id, error = %error, "retention could not remove snapshot")
                }
            }
        }
    }
}

fn snapshot_not_found(id: &str) -> Error {
    Error::NotFound(format!("snapshot {id:?} not found"))
}
