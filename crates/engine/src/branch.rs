//! Branches: named pointers to head snapshots with a history of commits (DBLab 4.0's model,
//! reference §5), kept in the engine's store instead of ZFS user properties.
//!
//! Layout in the pool: a branch forked from snapshot `S` owns the dataset `branch/<name>`, a
//! clone of `S`, and starts with its snapshot `branch/<name>@<YYYYMMDDHHMMSS>`, whose parent is
//! `S`. A commit snapshots a clone's dataset `branch/<name>/<clone>/r<N>` and becomes the new
//! head; its parent is the previous head. So every snapshot knows its branch and its parent, and
//! a branch knows its head and the snapshot it forked from (its fork point).
//!
//! Deletion never touches `main`, a protected branch, a branch another branch forks from or one
//! with clones; what goes is exactly what lies under `branch/<name>`.

use std::collections::BTreeSet;

use api_types::{BranchName, WebhookEvent};
use chrono::{DateTime, Utc};
use storage::{DatasetName, DestroyMode, SnapshotName, ThinStorage};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::lease::Protection;
use crate::model::{BranchRecord, CloneRecord, CloneState, SnapshotRecord};
use crate::pool::Pool;
use crate::snapshot::SnapshotView;
use crate::store::CatalogChange;
use crate::{Engine, MAIN_BRANCH, State};

/// A name no branch may take: `/branch/snapshot` is DBLab's commit endpoint, so such a branch
/// could not be deleted or patched over HTTP.
const RESERVED_BRANCH_NAME: &str = "snapshot";

/// A branch being created: its checked name, its dataset (made) and first snapshot (not yet),
/// and the intent that names both.
pub(crate) struct NewBranch<'a> {
    pub(crate) name: String,
    pub(crate) dataset: DatasetName,
    pub(crate) first: SnapshotName,
    pub(crate) intent: crate::intent::Intent<'a>,
}

/// A new branch's name, checked: valid, and not the commit endpoint's.
pub(crate) fn new_branch_name(name: &str) -> Result<String> {
    let name = BranchName::parse(name)
        .map_err(|error| Error::InvalidInput(error.to_string()))?
        .into_string();
    if name == RESERVED_BRANCH_NAME {
        return Err(Error::InvalidInput(format!(
            "{name:?} is reserved: /branch/{name} is the commit endpoint"
        )));
    }
    Ok(name)
}

/// A branch with what is derived from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchView {
    /// The stored record.
    pub record: BranchRecord,
    /// Its head snapshot.
    pub head: SnapshotRecord,
    /// The branch of the snapshot it forked from; `None` for `main`.
    pub parent: Option<String>,
    /// Snapshots from the head to the root of its history.
    pub num_snapshots: usize,
}

/// A snapshot seen as a commit: its place in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitView {
    /// The stored record.
    pub record: SnapshotRecord,
    /// Snapshots whose parent it is.
    pub children: Vec<String>,
    /// Branches whose head it is.
    pub heads_of: Vec<String>,
    /// Branches that forked from it.
    pub forks: Vec<String>,
    /// IDs of the clones made from it.
    pub clones: Vec<String>,
    /// Datasets made from it: its clones' and its forks'.
    pub clone_datasets: Vec<String>,
}

impl Engine {
    /// Every branch, by name.
    pub fn branches(&self) -> Vec<BranchView> {
        let state = self.read_state();
        state.branches.values().filter_map(|record| branch_view_in(&state, record)).collect()
    }

    /// One branch.
    pub fn branch(&self, name: &str) -> Result<BranchView> {
        let state = self.read_state();
        let record = state.branches.get(name).ok_or_else(|| branch_not_found(name))?;
        branch_view_in(&state, record).ok_or_else(|| {
            Error::NotFound(format!("the head of branch {name:?} is missing from the catalog"))
        })
    }

    /// A snapshot with its place in the history.
    pub fn commit(&self, snapshot_id: &str) -> Result<CommitView> {
        let state = self.read_state();
        let record = state
            .snapshots
            .iter()
            .find(|snapshot| snapshot.id == snapshot_id)
            .ok_or_else(|| Error::NotFound(format!("snapshot {snapshot_id:?} not found")))?;
        Ok(self.commit_view_in(&state, record))
    }

    /// The history of a branch, from its head to the root, following parents across the
    /// branches it forked from.
    pub fn branch_log(&self, name: &str) -> Result<Vec<CommitView>> {
        let state = self.read_state();
        let branch = state.branches.get(name).ok_or_else(|| branch_not_found(name))?;
        Ok(history(&state, &branch.head_snapshot_id)
            .into_iter()
            .map(|record| self.commit_view_in(&state, record))
            .collect())
    }

    fn commit_view_in(&self, state: &State, record: &SnapshotRecord) -> CommitView {
        let children = state
            .snapshots
            .iter()
            .filter(|snapshot| snapshot.parent_id.as_deref() == Some(record.id.as_str()))
            .map(|snapshot| snapshot.id.clone())
            .collect();
        let heads_of = state
            .branches
            .values()
            .filter(|branch| branch.head_snapshot_id == record.id)
            .map(|branch| branch.name.clone())
            .collect();
        let forks: Vec<String> = state
            .branches
            .values()
            .filter(|branch| branch.base_snapshot_id.as_deref() == Some(record.id.as_str()))
            .map(|branch| branch.name.clone())
            .collect();
        let on_it: Vec<&CloneRecord> = state
            .clones
            .values()
            .map(|entry| &entry.record)
            .filter(|clone| clone.snapshot_id == record.id)
            .collect();
        let pool = self.inner.pool.name();
        let clone_datasets = on_it
            .iter()
            .map(|clone| format!("{pool}/{}", clone.dataset))
            .chain(forks.iter().filter_map(|fork| {
                let dataset = self.inner.pool.branch_dataset(fork).ok()?;
                Some(format!("{pool}/{dataset}"))
            }))
            .collect();
        CommitView {
            record: record.clone(),
            children,
            heads_of,
            forks,
            clones: on_it.iter().map(|clone| clone.id.clone()).collect(),
            clone_datasets,
        }
    }

    /// Refuses a branch name that is taken; call under the snapshot lock.
    pub(crate) fn ensure_no_branch(&self, name: &str) -> Result<()> {
        if self.read_state().branches.contains_key(name) {
            return Err(Error::AlreadyExists(format!("branch {name:?} already exists")));
        }
        Ok(())
    }

    /// Creates branch `name` from the head of `base_branch` or from `snapshot_id` (which wins):
    /// a writable copy of that snapshot and a first snapshot of it, which becomes the head.
    pub async fn create_branch(
        &self,
        name: &str,
        base_branch: Option<&str>,
        snapshot_id: Option<&str>,
    ) -> Result<BranchView> {
        let name = new_branch_name(name)?;
        let base_branch = base_branch.filter(|base| !base.is_empty());
        let snapshot_id = snapshot_id.filter(|id| !id.is_empty());
        if base_branch == Some(name.as_str()) {
            return Err(Error::InvalidInput(format!(
                "branch {name:?} cannot be its own base branch"
            )));
        }
        let _serial = self.inner.snapshot_lock.lock().await;
        self.ensure_no_branch(&name)?;
        // The base is named in the body, not the path: a missing one is a bad request.
        let base = if let Some(id) = snapshot_id {
            self.snapshot_record(id)
        } else if let Some(base) = base_branch {
            self.branch(base).map(|view| view.head)
        } else {
            return Err(Error::InvalidInput("give a base branch or a snapshot ID".to_owned()));
        };
        let base = base.map_err(|error| match error {
            Error::NotFound(message) => Error::InvalidInput(message),
            other => other,
        })?;
        let base_name = self.storage_name(&base)?;
        self.ensure_space("create branch").await?;
        let storage = self.inner.pool.storage();
        let dataset = self.inner.pool.branch_dataset(&name)?;
        let now = Utc::now();
        let first = self.inner.pool.new_commit_name(&dataset, now, |_| false)?;
        let intent = self.intend(&[&dataset, &first])?;
        match storage.clone_snapshot(&base_name, &dataset).await {
            Ok(_) => failpoint::hit("branch.dataset_created"),
            Err(storage::Error::AlreadyExists(_)) => {
                // Not ours: the audit must not take it for this operation's leftover.
                intent.settle();
                return Err(Error::AlreadyExists(format!(
                    "the pool already holds a dataset {dataset} (left from an earlier branch \
                     {name:?}?); remove it first"
                )));
            }
            Err(error) => {
                intent.settle();
                return Err(error.into());
            }
        }
        // The branch starts with exactly the data of its base.
        let new = NewBranch { name, dataset, first, intent };
        self.finish_branch(new, &base, base.data_state_at, base.logical_size).await
    }

    /// A new branch's dataset exists: its first snapshot is taken and recorded as its head,
    /// with `base` as its parent and fork point and `data_state_at` as its data's moment, in
    /// one catalog change. On failure the dataset goes and the intent settles.
    pub(crate) async fn finish_branch(
        &self,
        new: NewBranch<'_>,
        base: &SnapshotRecord,
        data_state_at: DateTime<Utc>,
        logical_size: u64,
    ) -> Result<BranchView> {
        let NewBranch { name, dataset, first, intent } = new;
        let storage = self.inner.pool.storage();
        let now = Utc::now();
        if let Err(error) = storage.snapshot(&first).await {
            if self.discard(&dataset).await {
                intent.settle();
            }
            return Err(error.into());
        }
        let head = SnapshotRecord {
            id: self.inner.pool.snapshot_id(&first),
            pool: self.inner.pool.name().to_owned(),
            storage_name: first.to_string(),
            branch: name.clone(),
            parent_id: Some(base.id.clone()),
            message: String::new(),
            created_at: now,
            data_state_at,
            physical_size: 0,
            logical_size,
            protected: false,
            protected_till: None,
            delete_at: None,
            // A branch holds its base's data, masked or not.
            masked: base.masked,
        };
        let record = BranchRecord {
            name: name.clone(),
            head_snapshot_id: head.id.clone(),
            base_snapshot_id: Some(base.id.clone()),
            created_at: now,
            protected: false,
            protected_till: None,
            delete_at: None,
        };
        let change = CatalogChange {
            upsert_snapshots: vec![head],
            upsert_branches: vec![record],
            ..CatalogChange::default()
        };
        if let Err(error) = self.apply_catalog(change) {
            if self.discard(&dataset).await {
                intent.settle();
            }
            return Err(error);
        }
        intent.settle();
        info!(branch = %name, base = %base.id, "branch created");
        self.inner
            .events
            .emit(&api_types::WebhookPayload::basic(WebhookEvent::BranchCreate, &name));
        self.branch(&name)
    }

    /// Commits a clone: a `CHECKPOINT` (so a clone of the commit has little WAL to replay),
    /// then an atomic snapshot of its dataset, which becomes the head of the clone's branch.
    pub async fn commit_clone(&self, clone_id: &str, message: &str) -> Result<CommitView> {
        let record = self.snapshot_clone_dataset(clone_id, message, true).await?;
        self.commit(&record.id)
    }

    /// Snapshots a clone's dataset without moving its branch's head (DBLab's
    /// `POST /snapshot/clone`); the snapshot's parent is the clone's snapshot.
    pub async fn snapshot_clone(&self, clone_id: &str) -> Result<SnapshotView> {
        let record = self.snapshot_clone_dataset(clone_id, "", false).await?;
        self.snapshot(&record.id)
    }

    async fn snapshot_clone_dataset(
        &self,
        clone_id: &str,
        message: &str,
        advance_head: bool,
    ) -> Result<SnapshotRecord> {
        let clone = self.clone_view(clone_id)?.record;
        if clone.state != CloneState::Ok {
            return Err(Error::Refused(format!(
                "clone {clone_id:?} is {}; only a running clone can be committed",
                clone.state.code()
            )));
        }
        // The CHECKPOINT below writes the clone's dirty buffers: on a full pool it PANICs the
        // clone's server.
        let operation = if advance_head { "commit clone" } else { "snapshot clone" };
        self.ensure_space(operation).await?;
        let _serial = self.inner.snapshot_lock.lock().await;
        let branch = self.read_state().branches.get(&clone.branch).cloned().ok_or_else(|| {
            Error::InvalidInput(format!(
                "branch {:?} of clone {clone_id:?} not found",
                clone.branch
            ))
        })?;
        // A stopped clone (scale to zero) is started: its CHECKPOINT runs like any other's, on
        // the port its server now listens on.
        let clone = self.wake(clone_id).await?;
        let admin = self.inner.servers.admin_session(&clone).await?;
        admin.checkpoint().await?;
        drop(admin);
        let dataset = DatasetName::new(clone.dataset.clone())?;
        let masked = self
            .read_state()
            .snapshots
            .iter()
            .any(|snapshot| snapshot.id == clone.snapshot_id && snapshot.masked);
        let now = Utc::now();
        let name = {
            let state = self.read_state();
            let taken: BTreeSet<&str> =
                state.snapshots.iter().map(|snapshot| snapshot.storage_name.as_str()).collect();
            if advance_head {
                self.inner.pool.new_commit_name(&dataset, now, |name| {
                    taken.contains(name.to_string().as_str())
                })?
            } else {
                self.inner.pool.new_snapshot_name(&dataset, now, "", |name| {
                    taken.contains(name.to_string().as_str())
                })?
            }
        };
        let storage = self.inner.pool.storage();
        let intent = self.intend(&[&name])?;
        if let Err(error) = storage.snapshot(&name).await {
            intent.settle();
            return Err(error.into());
        }
        failpoint::hit("commit.snapshot_taken");
        let logical_size = match storage.dataset_space(&dataset).await {
            Ok(space) => space.referenced,
            Err(error) => {
                warn!(error = %error, "failed to read the clone's size");
                0
            }
        };
        let record = SnapshotRecord {
            id: self.inner.pool.snapshot_id(&name),
            pool: self.inner.pool.name().to_owned(),
            storage_name: name.to_string(),
            branch: branch.name.clone(),
            parent_id: Some(if advance_head {
                branch.head_snapshot_id.clone()
            } else {
                clone.snapshot_id.clone()
            }),
            message: message.to_owned(),
            created_at: now,
            data_state_at: now,
            physical_size: 0,
            logical_size,
            protected: false,
            protected_till: None,
            delete_at: None,
            // A commit holds what its clone started from, masked or not, and what was written
            // since.
            masked,
        };
        let upsert_branches = if advance_head {
            vec![BranchRecord { head_snapshot_id: record.id.clone(), ..branch }]
        } else {
            Vec::new()
        };
        let change = CatalogChange {
            upsert_snapshots: vec![record.clone()],
            upsert_branches,
            ..CatalogChange::default()
        };
        if let Err(error) = self.apply_catalog(change) {
            match storage.destroy_snapshot(&name, DestroyMode::Refuse).await {
                Ok(()) => intent.settle(),
                Err(cleanup) => {
                    warn!(snapshot = %name, error = %cleanup, "failed to remove an unrecorded snapshot")
                }
            }
            return Err(error);
        }
        intent.settle();
        info!(clone_id, snapshot_id = %record.id, branch = %record.branch, advance_head, "clone snapshotted");
        if !advance_head {
            // A commit is not a `snapshot_create` in DBLab; a snapshot of a clone is.
            self.inner
                .events
                .emit(&api_types::WebhookPayload::basic(WebhookEvent::SnapshotCreate, &record.id));
        }
        Ok(record)
    }

    /// Deletes a branch with its own snapshots and datasets; refused for `main`, a protected
    /// branch, a branch that other branches fork from, and a branch with clones.
    pub async fn delete_branch(&self, name: &str) -> Result<()> {
        let _serial = self.inner.snapshot_lock.lock().await;
        self.delete_branch_locked(name, Utc::now()).await
    }

    pub(crate) async fn delete_branch_locked(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        if name == MAIN_BRANCH {
            return Err(Error::Refused("branch main cannot be deleted".to_owned()));
        }
        // The checks and the removal from memory happen under one lock, so a clone cannot be
        // created on the branch between them: creation re-checks its snapshot under it.
        let (record, owned) = self.inner.state.withdraw_branch(name, |state| {
            let record = state.branches.get(name).cloned().ok_or_else(|| branch_not_found(name))?;
            if (Protection { protected: record.protected, till: record.protected_till })
                .is_active(now)
            {
                return Err(Error::Refused(format!(
                    "branch {name:?} is protected; lift protection first"
                )));
            }
            let owned_ids: BTreeSet<&str> = state
                .snapshots
                .iter()
                .filter(|snapshot| snapshot.branch == name)
                .map(|snapshot| snapshot.id.as_str())
                .collect();
            let forks: Vec<&str> = state
                .branches
                .values()
                .filter(|branch| branch.name != name)
                .filter(|branch| {
                    branch.base_snapshot_id.as_deref().is_some_and(|base| owned_ids.contains(base))
                })
                .map(|branch| branch.name.as_str())
                .collect();
            if !forks.is_empty() {
                return Err(Error::Refused(format!(
                    "branch {name:?} is the fork point of branch(es) {}; delete them first",
                    forks.join(", ")
                )));
            }
            let clones: Vec<&str> = state
                .clones
                .values()
                .map(|entry| &entry.record)
                .filter(|clone| {
                    owned_ids.contains(clone.snapshot_id.as_str())
                        || Pool::is_in_branch(&clone.dataset, name)
                })
                .map(|clone| clone.id.as_str())
                .collect();
            if !clones.is_empty() {
                return Err(Error::Refused(format!(
                    "branch {name:?} has clones: {}; destroy them first",
                    clones.join(", ")
                )));
            }
            let children_elsewhere: Vec<&str> = state
                .snapshots
                .iter()
                .filter(|snapshot| snapshot.branch != name)
                .filter(|snapshot| {
                    snapshot.parent_id.as_deref().is_some_and(|parent| owned_ids.contains(parent))
                })
                .map(|snapshot| snapshot.id.as_str())
                .collect();
            if !children_elsewhere.is_empty() {
                return Err(Error::Refused(format!(
                    "snapshots of other branches descend from branch {name:?}: {}",
                    children_elsewhere.join(", ")
                )));
            }
            Ok(record)
        })?;
        // A crash from here on leaves the deletion for the next start to finish: without the
        // intent, its missing snapshots would be forgotten and the branch kept, pointing back
        // at its base.
        let intent_name = deleting_branch_intent(name);
        let intent = match self.intend(&[&intent_name]) {
            Ok(intent) => intent,
            Err(error) => {
                self.inner.state.restore_branch(record, owned);
                return Err(error);
            }
        };
        if let Err(error) = self.destroy_branch_datasets(name).await {
            // Nothing was forgotten yet: put the branch back as it was.
            self.inner.state.restore_branch(record, owned);
            intent.settle();
            return Err(error);
        }
        failpoint::hit("branch.datasets_destroyed");
        let change = CatalogChange {
            delete_snapshots: owned.iter().map(|snapshot| snapshot.id.clone()).collect(),
            delete_branches: vec![name.to_owned()],
            ..CatalogChange::default()
        };
        self.apply_catalog(change)?;
        intent.settle();
        info!(branch = %name, snapshots = owned.len(), "branch deleted");
        self.inner.events.emit(&api_types::WebhookPayload::basic(WebhookEvent::BranchDelete, name));
        Ok(())
    }

    /// Finishes the branch deletions a crash interrupted (named by their intents): the rest of
    /// their datasets and their rows go; returns the branches.
    pub(crate) async fn finish_branch_deletions(&self) -> Vec<String> {
        let mut finished = Vec::new();
        for intent in self.intents() {
            let Some(name) = intent.strip_prefix(DELETING_BRANCH) else { continue };
            if let Err(error) = self.destroy_branch_datasets(name).await {
                warn!(branch = %name, error = %error, "failed to finish an interrupted branch deletion");
                continue;
            }
            let owned: Vec<String> = self
                .read_state()
                .snapshots
                .iter()
                .filter(|snapshot| snapshot.branch == name)
                .map(|snapshot| snapshot.id.clone())
                .collect();
            let change = CatalogChange {
                delete_snapshots: owned,
                delete_branches: vec![name.to_owned()],
                ..CatalogChange::default()
            };
            match self.apply_catalog(change) {
                Ok(()) => {
                    self.settle_intents(std::slice::from_ref(&intent));
                    finished.push(name.to_owned());
                }
                Err(error) => {
                    warn!(branch = %name, error = %error, "failed to forget a deleted branch")
                }
            }
        }
        finished
    }

    /// Destroys every dataset under `branch/<name>`, deepest first, with its snapshots.
    async fn destroy_branch_datasets(&self, name: &str) -> Result<()> {
        let storage = self.inner.pool.storage();
        let listing = storage.list().await?;
        let mut datasets: Vec<&DatasetName> = listing
            .datasets
            .iter()
            .map(|dataset| &dataset.name)
            .filter(|dataset| Pool::is_in_branch(dataset.as_str(), name))
            .collect();
        datasets.sort_by_key(|dataset| std::cmp::Reverse(dataset.as_str().len()));
        for dataset in datasets {
            match storage.destroy_dataset(dataset, DestroyMode::WithDependents).await {
                Ok(()) | Err(storage::Error::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// The storage name of a snapshot record.
    pub(crate) fn storage_name(&self, record: &SnapshotRecord) -> Result<SnapshotName> {
        record.storage_name.parse().map_err(|error: storage::Error| {
            Error::InvalidInput(format!("snapshot {:?}: {error}", record.id))
        })
    }
}

fn branch_view_in(state: &State, record: &BranchRecord) -> Option<BranchView> {
    let head = state.snapshots.iter().find(|snapshot| snapshot.id == record.head_snapshot_id)?;
    let parent = record.base_snapshot_id.as_ref().and_then(|base| {
        state.snapshots.iter().find(|snapshot| &snapshot.id == base).map(|s| s.branch.clone())
    });
    Some(BranchView {
        record: record.clone(),
        head: head.clone(),
        parent,
        num_snapshots: history(state, &head.id).len(),
    })
}

/// The snapshots from `head` to the root, following parents; stops at a missing parent or a
/// loop, which a damaged catalog could hold.
fn history<'a>(state: &'a State, head: &str) -> Vec<&'a SnapshotRecord> {
    let mut chain = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next = Some(head.to_owned());
    while let Some(id) = next {
        if !seen.insert(id.clone()) {
            break;
        }
        let Some(record) = state.snapshots.iter().find(|snapshot| snapshot.id == id) else {
            break;
        };
        chain.push(record);
        next = record.parent_id.clone();
    }
    chain
}

fn branch_not_found(name: &str) -> Error {
    Error::NotFound(format!("branch {name:?} not found"))
}

/// The intent prefix of a branch deletion in progress.
const DELETING_BRANCH: &str = "deleting branch ";

fn deleting_branch_intent(name: &str) -> String {
    format!("{DELETING_BRANCH}{name}")
}
