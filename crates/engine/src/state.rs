//! The in-memory state (the copy of the store that serves every read) and its only mutators:
//! the catalog change and the clone transition.
//!
//! Every change is written to the store first and to memory second, under the state's write
//! lock, so a crash never shows a state that was not saved and no reader sees half a change.
//! A clone changes only through [`SharedState::transition`] (and its siblings `register` and
//! `forget`, which share its one guard): the caller names the states the clone may be in, and
//! they are checked under the lock against the record as it is then, never against a copy read
//! earlier. So a clone in a transitional state stays with the task that put it there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::model::{BranchRecord, CloneRecord, CloneState, SnapshotRecord};
use crate::store::{CatalogChange, Store};
use crate::sync::{read, write};

/// A clone that is settled: no task owns it, so an operation may start on it.
pub(crate) const SETTLED: &[CloneState] = &[CloneState::Ok, CloneState::Fatal];
/// A clone being made (created or reset): its task records the outcome.
pub(crate) const PROVISIONING: &[CloneState] = &[CloneState::Creating, CloneState::Resetting];
/// A clone being destroyed: its task forgets it or records the failure.
pub(crate) const DELETING: &[CloneState] = &[CloneState::Deleting];
/// Any clone: for changes beside the lifecycle (protection) and for reconciliation's repairs.
pub(crate) const ANY: &[CloneState] = &CloneState::ALL;

/// What the engine holds in memory: the store's records plus what only lives in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) clones: BTreeMap<String, CloneEntry>,
    /// Newest first.
    pub(crate) snapshots: Vec<SnapshotRecord>,
    pub(crate) branches: BTreeMap<String, BranchRecord>,
}

#[derive(Debug, Clone)]
pub(crate) struct CloneEntry {
    pub(crate) record: CloneRecord,
    /// The last time the clone was seen in use (or became ready), for idle cleanup.
    pub(crate) last_active: DateTime<Utc>,
    /// Bytes written in the clone since it was made, as of the last space collection.
    pub(crate) diff_size: u64,
    /// Bytes the clone's data refers to, shared with its snapshot or not, as of the last
    /// space collection; `None` until one measured it.
    pub(crate) referenced: Option<u64>,
}

/// The state behind its lock, with the notification of clone changes.
#[derive(Debug)]
pub(crate) struct SharedState {
    state: std::sync::RwLock<State>,
    changed: watch::Sender<u64>,
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState { state: Default::default(), changed: watch::channel(0).0 }
    }
}

/// How a clone is registered: as a new clone, or by claiming a warm clone whose record goes
/// in the same store transaction.
pub(crate) enum Registration {
    /// A clone made for this create.
    New(CloneRecord),
    /// A clone that takes over the warm clone with this ID.
    ClaimWarm { record: CloneRecord, warm_id: String },
}

impl SharedState {
    /// A consistent view for reading; hold it only across memory work, never across a wait.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        read(&self.state)
    }

    /// Subscribes to clone changes (each bumps the version).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify_changed(&self) {
        self.changed.send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Replaces memory with the store's records, at start.
    pub(crate) fn load(&self, store: &Store) -> Result<()> {
        let clones = store.clones()?;
        let snapshots = store.snapshots()?;
        let branches = store.branches()?;
        let now = Utc::now();
        let mut state = write(&self.state);
        state.snapshots = snapshots;
        state.branches = branches.into_iter().map(|branch| (branch.name.clone(), branch)).collect();
        state.clones = clones
            .into_iter()
            .map(|record| {
                let entry = CloneEntry { record, last_active: now, diff_size: 0, referenced: None };
                (entry.record.id.clone(), entry)
            })
            .collect();
        Ok(())
    }

    /// Writes a catalog change to the store in one transaction, then to memory.
    pub(crate) fn apply_catalog(&self, store: &Store, change: CatalogChange) -> Result<()> {
        let mut state = write(&self.state);
        store.apply(&change)?;
        apply_to_memory(&mut state, change);
        Ok(())
    }

    /// Takes a branch and its snapshots out of memory, when `check` allows it under the lock,
    /// while its datasets are destroyed; [`SharedState::apply_catalog`] then forgets them in
    /// the store, or [`SharedState::restore_branch`] puts them back. Creates re-check their
    /// snapshot under the lock, so none can start on the branch in between.
    pub(crate) fn withdraw_branch(
        &self,
        name: &str,
        check: impl FnOnce(&State) -> Result<BranchRecord>,
    ) -> Result<(BranchRecord, Vec<SnapshotRecord>)> {
        let mut state = write(&self.state);
        let record = check(&state)?;
        let owned: Vec<SnapshotRecord> =
            state.snapshots.iter().filter(|snapshot| snapshot.branch == name).cloned().collect();
        state.branches.remove(name);
        state.snapshots.retain(|snapshot| snapshot.branch != name);
        Ok((record, owned))
    }

    /// Puts back what [`SharedState::withdraw_branch`] took out.
    pub(crate) fn restore_branch(&self, record: BranchRecord, owned: Vec<SnapshotRecord>) {
        let mut state = write(&self.state);
        state.branches.insert(record.name.clone(), record);
        state.snapshots.extend(owned);
        sort_snapshots(&mut state.snapshots);
    }

    /// Changes a clone in one of the states `from` (checked under the lock): `change` edits a
    /// copy of its record, and may refuse by returning an error; the result is saved, then
    /// shown. Returns the record as saved.
    pub(crate) fn transition(
        &self,
        store: &Store,
        id: &str,
        from: &[CloneState],
        change: impl FnOnce(&mut CloneRecord) -> Result<()>,
    ) -> Result<CloneRecord> {
        self.transition_with(store, id, from, None, change)
    }

    /// A [`SharedState::transition`] that claims the warm clone `warm_id` for the clone (a
    /// reset): its record goes in the same store transaction.
    pub(crate) fn transition_claiming(
        &self,
        store: &Store,
        id: &str,
        from: &[CloneState],
        warm_id: &str,
        change: impl FnOnce(&mut CloneRecord) -> Result<()>,
    ) -> Result<CloneRecord> {
        self.transition_with(store, id, from, Some(warm_id), change)
    }

    fn transition_with(
        &self,
        store: &Store,
        id: &str,
        from: &[CloneState],
        warm_id: Option<&str>,
        change: impl FnOnce(&mut CloneRecord) -> Result<()>,
    ) -> Result<CloneRecord> {
        let record = {
            let mut state = write(&self.state);
            let mut record = state
                .clones
                .get(id)
                .map(|entry| entry.record.clone())
                .ok_or_else(|| not_found(id))?;
            change(&mut record)?;
            commit(&mut state, store, id, Some(from), Step::Update(&record, warm_id))?;
            record
        };
        self.notify_changed();
        Ok(record)
    }

    /// Records a new clone in state `CREATING`: `make` decides it from the state under the
    /// lock, with what it took for it (it may refuse, or return `None` when it decided
    /// nothing), and the clone's ID must not be taken. When the clone cannot be recorded,
    /// `undo` gets back what `make` took.
    pub(crate) fn register<T>(
        &self,
        store: &Store,
        make: impl FnOnce(&State) -> Result<Option<(Registration, T)>>,
        undo: impl FnOnce(T),
    ) -> Result<Option<(CloneRecord, T)>> {
        let registered = {
            let mut state = write(&self.state);
            let Some((registration, taken)) = make(&state)? else { return Ok(None) };
            let (record, warm_id) = match registration {
                Registration::New(record) => (record, None),
                Registration::ClaimWarm { record, warm_id } => (record, Some(warm_id)),
            };
            let id = record.id.clone();
            let step = Step::Insert(&record, warm_id.as_deref());
            if let Err(error) = commit(&mut state, store, &id, None, step) {
                undo(taken);
                return Err(error);
            }
            (record, taken)
        };
        self.notify_changed();
        Ok(Some(registered))
    }

    /// Forgets a clone in one of the states `from` (checked under the lock): store, then
    /// memory.
    pub(crate) fn forget(&self, store: &Store, id: &str, from: &[CloneState]) -> Result<()> {
        commit(&mut write(&self.state), store, id, Some(from), Step::Remove)?;
        self.notify_changed();
        Ok(())
    }

    /// Notes that a clone was seen in use at `seen` (or became ready then).
    pub(crate) fn touch(&self, id: &str, seen: DateTime<Utc>) {
        if let Some(entry) = write(&self.state).clones.get_mut(id) {
            entry.last_active = entry.last_active.max(seen);
        }
    }

    /// Records a clone's space from the last collection.
    pub(crate) fn set_disk_usage(&self, id: &str, space: storage::DatasetSpace) {
        if let Some(entry) = write(&self.state).clones.get_mut(id) {
            entry.diff_size = space.written;
            entry.referenced = Some(space.referenced);
        }
    }
}

/// What [`commit`] writes.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// A new clone; with a warm clone's ID when it claims one.
    Insert(&'a CloneRecord, Option<&'a str>),
    /// A changed record of a clone; with a warm clone's ID when it claims one (a reset).
    Update(&'a CloneRecord, Option<&'a str>),
    /// The clone is gone.
    Remove,
}

/// The one guard of every clone change, under the write lock: a new clone's ID must be free,
/// and an existing clone must be in one of `from`. Then the store, then memory.
fn commit(
    state: &mut State,
    store: &Store,
    id: &str,
    from: Option<&[CloneState]>,
    step: Step<'_>,
) -> Result<()> {
    let current = state.clones.get(id).map(|entry| &entry.record);
    match (from, current) {
        (None, Some(_)) => {
            return Err(Error::AlreadyExists(format!("clone with ID {id:?} already exists")));
        }
        (Some(_), None) => return Err(not_found(id)),
        (Some(from), Some(current)) if !from.contains(&current.state) => {
            return Err(not_in(current, from));
        }
        _ => {}
    }
    match step {
        Step::Insert(record, warm_id) => {
            match warm_id {
                Some(warm_id) => store.claim_warm(warm_id, record)?,
                None => store.insert_clone(record)?,
            }
            let entry = CloneEntry {
                record: record.clone(),
                last_active: Utc::now(),
                diff_size: 0,
                referenced: None,
            };
            state.clones.insert(id.to_owned(), entry);
        }
        Step::Update(record, warm_id) => {
            match warm_id {
                Some(warm_id) => store.claim_warm_for_reset(warm_id, record)?,
                None => store.update_clone(record)?,
            }
            if let Some(entry) = state.clones.get_mut(id) {
                entry.record = record.clone();
            }
        }
        Step::Remove => {
            store.delete_clone(id)?;
            state.clones.remove(id);
        }
    }
    Ok(())
}

fn apply_to_memory(state: &mut State, change: CatalogChange) {
    state.snapshots.retain(|snapshot| !change.delete_snapshots.contains(&snapshot.id));
    for record in change.upsert_snapshots {
        match state.snapshots.iter_mut().find(|snapshot| snapshot.id == record.id) {
            Some(stored) => *stored = record,
            None => state.snapshots.push(record),
        }
    }
    sort_snapshots(&mut state.snapshots);
    for name in &change.delete_branches {
        state.branches.remove(name);
    }
    for branch in change.upsert_branches {
        state.branches.insert(branch.name.clone(), branch);
    }
}

fn sort_snapshots(snapshots: &mut [SnapshotRecord]) {
    snapshots.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::NotFound(format!("clone {id:?} not found"))
}

/// Why a clone cannot make a transition: busy with another task's operation, or not in a
/// state the transition starts from.
fn not_in(record: &CloneRecord, from: &[CloneState]) -> Error {
    if matches!(
        record.state,
        CloneState::Creating | CloneState::Resetting | CloneState::Deleting | CloneState::Exporting
    ) {
        return Error::Refused(format!(
            "clone {:?} is busy ({}); try again when it is OK",
            record.id,
            record.state.code()
        ));
    }
    let expected: Vec<&str> = from.iter().map(|state| state.code()).collect();
    Error::Refused(format!(
        "clone {:?} is {}; this needs it {}",
        record.id,
        record.state.code(),
        expected.join(" or ")
    ))
}
