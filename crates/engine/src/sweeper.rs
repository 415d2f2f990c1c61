//! The retention sweeper: deletes snapshots and branches that nothing uses once their
//! scheduled time has come, and schedules unused ones itself when configured (DBLab's
//! auto-delete, reference §5.5).
//!
//! Safe-only: an object that is protected or in use never goes, and its schedule is cleared, so
//! a branch that gets a clone again is not deleted later by a stale schedule. Deletion goes
//! through the same code as a user's delete, which checks every rule again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::config::minutes;
use crate::model::{BranchRecord, SnapshotRecord};
use crate::pool::Pool;
use crate::protection::{Guard, Guarded};
use crate::store::CatalogChange;
use crate::{Engine, MAIN_BRANCH, State};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Snapshot IDs and branch names newly scheduled for deletion.
    pub scheduled: Vec<String>,
    /// Snapshot IDs and branch names whose schedule was cleared because they are in use or
    /// protected.
    pub cleared: Vec<String>,
    /// Snapshot IDs and branch names deleted.
    pub deleted: Vec<String>,
}

/// What the sweeper decides for one object.
enum Verdict {
    Keep,
    Clear,
    Schedule(DateTime<Utc>),
    Delete,
}

fn verdict(guard: Guard, in_use: bool, unused_minutes: f64, now: DateTime<Utc>) -> Verdict {
    if in_use || guard.protection.is_active(now) {
        return if guard.delete_at.is_some() { Verdict::Clear } else { Verdict::Keep };
    }
    match guard.delete_at {
        Some(at) if at <= now => Verdict::Delete,
        Some(_) => Verdict::Keep,
        None if unused_minutes > 0.0 => {
            let delay = chrono::Duration::from_std(minutes(unused_minutes)).unwrap_or_default();
            Verdict::Schedule(now + delay)
        }
        None => Verdict::Keep,
    }
}

/// The outcome for one record: a changed record to save, or a key to delete.
enum Decision<T> {
    Nothing,
    Save(T),
    Delete(String),
}

impl<T> Decision<T> {
    fn apply(self, saves: &mut Vec<T>, deletions: &mut Vec<String>) {
        match self {
            Decision::Nothing => {}
            Decision::Save(record) => saves.push(record),
            Decision::Delete(key) => deletions.push(key),
        }
    }
}

/// Decides for one snapshot or branch and notes schedules set or cleared in `report`.
fn decide<T: Guarded>(
    record: &T,
    in_use: bool,
    unused_minutes: f64,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Decision<T> {
    let guard = record.guard();
    let (delete_at, list) = match verdict(guard, in_use, unused_minutes, now) {
        Verdict::Keep => return Decision::Nothing,
        Verdict::Delete => return Decision::Delete(record.key().to_owned()),
        Verdict::Clear => (None, &mut report.cleared),
        Verdict::Schedule(at) => (Some(at), &mut report.scheduled),
    };
    list.push(record.key().to_owned());
    let mut changed = record.clone();
    changed.set_guard(Guard { delete_at, ..guard });
    Decision::Save(changed)
}

impl Engine {
    /// Runs one sweep now: deletes due, unused, unprotected snapshots and branches (at most
    /// `retention.max_deletions_per_tick`), and schedules or clears the others.
    pub async fn sweep(&self) -> SweepReport {
        let _serial = self.inner.snapshot_lock.lock().await;
        let config = self.config();
        let config = &config.retention;
        let now = Utc::now();
        let mut report = SweepReport::default();
        let mut change = CatalogChange::default();
        let mut due_snapshots = Vec::new();
        let mut due_branches = Vec::new();
        {
            let state = self.read_state();
            for snapshot in &state.snapshots {
                // Snapshots of the data are left to count-based retention unless a user
                // scheduled one; commits are the sweeper's.
                let data = Pool::is_data_snapshot(&snapshot.storage_name);
                let minutes = if data { 0.0 } else { config.unused_snapshot_minutes };
                let in_use = snapshot_in_use(&state, snapshot, data);
                let decision = decide(snapshot, in_use, minutes, now, &mut report);
                decision.apply(&mut change.upsert_snapshots, &mut due_snapshots);
            }
            for branch in state.branches.values().filter(|branch| branch.name != MAIN_BRANCH) {
                let in_use = branch_in_use(&state, branch);
                let minutes = config.unused_branch_minutes;
                let decision = decide(branch, in_use, minutes, now, &mut report);
                decision.apply(&mut change.upsert_branches, &mut due_branches);
            }
        }
        if let Err(error) = self.apply_catalog(change) {
            warn!(error = %error, "the sweeper failed to save schedules");
        }
        let mut budget = config.max_deletions_per_tick;
        for name in due_branches {
            if budget == 0 {
                break;
            }
            match self.delete_branch_locked(&name, now).await {
                Ok(()) => {
                    budget -= 1;
                    info!(branch = %name, "unused branch deleted by the sweeper");
                    report.deleted.push(name);
                }
                Err(error) => warn!(branch = %name, error = %error, "the sweeper kept a branch"),
            }
        }
        for id in due_snapshots {
            if budget == 0 {
                break;
            }
            // A branch deleted above may have taken the snapshot with it.
            if self.snapshot_record(&id).is_err() {
                continue;
            }
            match self.delete_snapshot_locked(&id, false).await {
                Ok(()) => {
                    budget -= 1;
                    info!(snapshot_id = %id, "unused snapshot deleted by the sweeper");
                    report.deleted.push(id);
                }
                Err(error) => {
                    warn!(snapshot_id = %id, error = %error, "the sweeper kept a snapshot")
                }
            }
        }
        // On ZFS a kept standby snapshot outlives its snapshot while a copy replayed from it
        // (a point in time, a branch at one) still exists; it goes once that copy has.
        for name in self.release_orphan_standby_snapshots().await {
            info!(snapshot = %name, "kept standby snapshot released: nothing is cloned from it any more");
        }
        report
    }
}

/// A snapshot is in use while a clone runs on it, a branch has it as head or fork point, or
/// (for a commit) another snapshot descends from it.
fn snapshot_in_use(state: &State, snapshot: &SnapshotRecord, data: bool) -> bool {
    state.clones.values().any(|entry| entry.record.snapshot_id == snapshot.id)
        || state.branches.values().any(|branch| {
            branch.head_snapshot_id == snapshot.id
                || branch.base_snapshot_id.as_deref() == Some(snapshot.id.as_str())
        })
        || (!data
            && state
                .snapshots
                .iter()
                .any(|other| other.parent_id.as_deref() == Some(snapshot.id.as_str())))
}

/// A branch is in use while a clone runs on one of its snapshots or in its datasets, or
/// another branch forks from it.
fn branch_in_use(state: &State, branch: &BranchRecord) -> bool {
    let own: BTreeSet<&str> = state
        .snapshots
        .iter()
        .filter(|snapshot| snapshot.branch == branch.name)
        .map(|snapshot| snapshot.id.as_str())
        .collect();
    state.clones.values().any(|entry| {
        own.contains(entry.record.snapshot_id.as_str())
            || Pool::is_in_branch(&entry.record.dataset, &branch.name)
    }) || state.branches.values().any(|other| {
        other.name != branch.name
            && other.base_snapshot_id.as_deref().is_some_and(|base| own.contains(base))
    })
}
