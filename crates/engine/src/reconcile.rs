//! Start-up reconciliation of the three sources of truth: the store (what the engine promised),
//! the pool (which datasets exist) and the running processes (which clones are up).
//!
//! Every difference is repaired where that is safe and reported in every case: in the log, in
//! `/status` and in the `scion_reconcile_differences` metric. Nothing is deleted that a user
//! might still want: an orphan dataset is reported, not destroyed; a clone whose dataset is gone
//! is kept as `FATAL` with the reason, not forgotten.

use api_types::WebhookEvent;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use storage::{DatasetName, DestroyMode, ThinStorage};
use tracing::{Instrument, info, info_span, warn};

use crate::audit;
use crate::model::{BranchRecord, CloneRecord, CloneState, SnapshotRecord};
use crate::pool::Pool;
use crate::servers::Server;
use crate::store::CatalogChange;
use crate::{Engine, MAIN_BRANCH};

/// What reconciliation found at the last start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    /// When it ran.
    pub at: Option<DateTime<Utc>>,
    /// Every difference, in the order found.
    pub differences: Vec<Difference>,
}

/// One difference between the store, the pool and the running processes.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What kind of difference.
    pub kind: DifferenceKind,
    /// The clone ID, snapshot ID or dataset concerned.
    pub object: String,
    /// What was found and what was done about it.
    pub detail: String,
}

/// The kinds of difference, each with a stable name for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DifferenceKind {
    /// A clone's server was not running (after a host reboot, or it died) and was started.
    ServerRestarted,
    /// A clone's server could not be started or adopted; the clone is `FATAL`.
    ServerFailed,
    /// A clone's dataset is gone; the clone is `FATAL`.
    MissingDataset,
    /// A clone was being created, reset or deleted when the engine stopped; the operation was
    /// run again.
    InterruptedOperation,
    /// A dataset exists in the pool that no record accounts for; it is kept.
    OrphanDataset,
    /// A snapshot exists in the pool that the catalog does not record; it is kept.
    OrphanSnapshot,
    /// A dataset or snapshot that an interrupted operation made (the store recorded its intent
    /// to make it); it is removed.
    RemovedLeftover,
    /// A snapshot record whose snapshot is gone from the pool; it is removed from the catalog
    /// when no clone uses it.
    MissingSnapshot,
    /// A snapshot of the data in the pool that the catalog did not know; it is added.
    UnrecordedSnapshot,
    /// The control group of a clone that no longer exists; it is removed unless a process
    /// still runs in it.
    LeftoverCgroup,
}

impl DifferenceKind {
    /// Every kind.
    pub const ALL: [DifferenceKind; 10] = [
        DifferenceKind::ServerRestarted,
        DifferenceKind::ServerFailed,
        DifferenceKind::MissingDataset,
        DifferenceKind::InterruptedOperation,
        DifferenceKind::OrphanDataset,
        DifferenceKind::OrphanSnapshot,
        DifferenceKind::RemovedLeftover,
        DifferenceKind::MissingSnapshot,
        DifferenceKind::UnrecordedSnapshot,
        DifferenceKind::LeftoverCgroup,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::ServerRestarted => "server_restarted",
            DifferenceKind::ServerFailed => "server_failed",
            DifferenceKind::MissingDataset => "missing_dataset",
            DifferenceKind::InterruptedOperation => "interrupted_operation",
            DifferenceKind::OrphanDataset => "orphan_dataset",
            DifferenceKind::OrphanSnapshot => "orphan_snapshot",
            DifferenceKind::RemovedLeftover => "removed_leftover",
            DifferenceKind::MissingSnapshot => "missing_snapshot",
            DifferenceKind::UnrecordedSnapshot => "unrecorded_snapshot",
            DifferenceKind::LeftoverCgroup => "leftover_cgroup",
        }
    }
}

impl Reconciliation {
    /// How many differences of `kind` were found.
    pub fn count(&self, kind: DifferenceKind) -> usize {
        self.differences.iter().filter(|difference| difference.kind == kind).count()
    }

    fn report(
        &mut self,
        kind: DifferenceKind,
        object: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.differences.push(Difference { kind, object: object.into(), detail: detail.into() });
    }
}

impl Engine {
    /// Compares the store with the pool and the processes, repairs what is safe, and reports
    /// everything.
    pub(crate) async fn reconcile(&self) -> Reconciliation {
        let mut report = Reconciliation { at: Some(Utc::now()), differences: Vec::new() };
        for branch in self.finish_branch_deletions().await {
            report.report(
                DifferenceKind::InterruptedOperation,
                &branch,
                "a branch deletion a crash interrupted; finished",
            );
        }
        if let Some(dump) = self.remove_partial_dump() {
            report.report(
                DifferenceKind::RemovedLeftover,
                dump.display().to_string(),
                "the dump of an interrupted refresh; removed",
            );
        }
        let listing = match self.inner.pool.storage().list().await {
            Ok(listing) => listing,
            Err(error) => {
                // Without a listing nothing can be compared; every clone stays as recorded and
                // the problem shows in /status.
                warn!(error = %error, "failed to list the pool for reconciliation");
                report.report(
                    DifferenceKind::ServerFailed,
                    self.inner.pool.name(),
                    format!("listing the pool failed: {error}"),
                );
                return report;
            }
        };
        self.reconcile_snapshots(&listing, &mut report);
        for name in self.release_orphan_standby_snapshots().await {
            report.report(
                DifferenceKind::RemovedLeftover,
                name,
                "the standby snapshot kept for a snapshot that is gone; removed",
            );
        }
        let clones: Vec<CloneRecord> =
            self.read_state().clones.values().map(|entry| entry.record.clone()).collect();
        let mut interrupted = Vec::new();
        for record in clones {
            if let Some(record) = self.reconcile_clone(record, &listing, &mut report).await {
                interrupted.push(record);
            }
        }
        // Every recorded clone holds its port by now, so the operations run again below cannot
        // take each other's; and they are over before the engine starts its loops and the warm
        // pool, which could otherwise collide with them.
        for record in interrupted {
            self.finish_interrupted(record).await;
        }
        // The warm pool's leftovers are gone by now: every group a port no clone holds is left
        // by a crash between a server's end and its group's removal.
        let held: BTreeSet<u16> =
            self.read_state().clones.values().map(|entry| entry.record.port).collect();
        for (group, detail) in self.inner.servers.quotas().remove_leftovers(&held) {
            report.report(DifferenceKind::LeftoverCgroup, group, detail);
        }
        self.audit_pool(&mut report).await;
        report
    }

    /// Audits the whole pool (after the interrupted operations are finished, so that their
    /// datasets are recorded): every dataset and snapshot no record accounts for is reported,
    /// and removed where an unfinished operation's intent names it.
    async fn audit_pool(&self, report: &mut Reconciliation) {
        let storage = self.inner.pool.storage();
        let listing = match storage.list().await {
            Ok(listing) => listing,
            Err(error) => {
                warn!(error = %error, "failed to list the pool for the audit");
                return;
            }
        };
        let known = self.known_objects();
        let mut kept = Vec::new();
        for leftover in audit::leftovers(&listing, &known) {
            let object = leftover.object.clone();
            if leftover.remove {
                let removed = if leftover.snapshot {
                    match object.parse::<storage::SnapshotName>() {
                        Ok(name) => storage.destroy_snapshot(&name, DestroyMode::Refuse).await,
                        Err(error) => Err(error),
                    }
                } else {
                    match DatasetName::new(object.clone()) {
                        Ok(name) => {
                            // A temporary server (a promotion's, a restore's) outlived the
                            // crash: it goes first, or it would keep the dataset busy.
                            self.inner
                                .servers
                                .stop_leftover(&self.inner.pool.pgdata_of(&name))
                                .await;
                            storage.destroy_dataset(&name, DestroyMode::Refuse).await
                        }
                        Err(error) => Err(error),
                    }
                };
                match removed {
                    Ok(()) | Err(storage::Error::NotFound(_)) => report.report(
                        DifferenceKind::RemovedLeftover,
                        &object,
                        "an interrupted operation made it and nothing records it; removed",
                    ),
                    Err(error) => {
                        // Its intent stays, so that the next start tries again.
                        kept.push(object.clone());
                        report.report(
                        if leftover.snapshot {
                            DifferenceKind::OrphanSnapshot
                        } else {
                            DifferenceKind::OrphanDataset
                        },
                        &object,
                        format!(
                            "an interrupted operation made it; removing it failed ({error}), so it is kept"
                        ),
                    );
                    }
                }
            } else if leftover.snapshot {
                report.report(
                    DifferenceKind::OrphanSnapshot,
                    &object,
                    "no catalog record owns this snapshot; it is kept for inspection",
                );
            } else {
                let running = listing
                    .datasets
                    .iter()
                    .find(|dataset| dataset.name.as_str() == object)
                    .is_some_and(|dataset| {
                        postgres::datadir::has_postmaster_pid(&Pool::pgdata(&dataset.mountpoint))
                    });
                report.report(
                    DifferenceKind::OrphanDataset,
                    &object,
                    format!(
                        "no record owns this dataset; it is kept for inspection{}",
                        if running { " (a server may still run on it)" } else { "" }
                    ),
                );
            }
        }
        // Every other intent is settled now: its object is recorded or removed.
        let intents: Vec<String> =
            known.intents.into_iter().filter(|intent| !kept.contains(intent)).collect();
        self.settle_intents(&intents);
    }

    /// Every dataset and snapshot the store accounts for, and the intents of unfinished
    /// operations.
    fn known_objects(&self) -> audit::Known {
        let mut known = audit::Known { intents: self.intents(), ..audit::Known::default() };
        known.datasets.insert(self.current_data_dataset().to_string());
        // The sync instance's golden dataset, and the server running on it, are its own.
        known.datasets.extend(self.sync_dataset());
        known.datasets.extend(self.inner.pool.containers());
        let state = self.read_state();
        for entry in state.clones.values() {
            known.datasets.insert(entry.record.dataset.clone());
        }
        for snapshot in &state.snapshots {
            known.snapshots.insert(snapshot.storage_name.clone());
            // A destroyed clone's dataset stays while it holds commits.
            if let Some(dataset) = Pool::snapshot_dataset(&snapshot.storage_name) {
                known.datasets.insert(dataset.to_owned());
            }
        }
        // Physical mode keeps the standby snapshot each snapshot was cut from (points in time).
        match self.inner.store.standby_snapshots() {
            Ok(kept) => known.snapshots.extend(kept.into_iter().map(|kept| kept.storage_name)),
            Err(error) => warn!(error = %error, "failed to read the kept standby snapshots"),
        }
        for branch in state.branches.keys().filter(|name| name.as_str() != MAIN_BRANCH) {
            if let Ok(dataset) = self.inner.pool.branch_dataset(branch) {
                known.datasets.insert(dataset.to_string());
            }
        }
        known
    }

    fn reconcile_snapshots(&self, listing: &storage::Listing, report: &mut Reconciliation) {
        let known: Vec<SnapshotRecord> = self.read_state().snapshots.clone();
        let in_use: BTreeSet<String> = self
            .read_state()
            .clones
            .values()
            .map(|entry| entry.record.snapshot_id.clone())
            .collect();
        for record in &known {
            let present = record
                .storage_name
                .parse()
                .ok()
                .is_some_and(|name| listing.snapshot(&name).is_some());
            if present {
                continue;
            }
            if in_use.contains(&record.id) {
                report.report(
                    DifferenceKind::MissingSnapshot,
                    &record.id,
                    "the snapshot is gone from the pool; kept in the catalog because clones use it",
                );
            } else if let Err(error) = self.forget_missing_snapshot(record) {
                warn!(snapshot_id = %record.id, error = %error, "failed to forget a missing snapshot");
            } else {
                report.report(
                    DifferenceKind::MissingSnapshot,
                    &record.id,
                    "the snapshot is gone from the pool; removed from the catalog",
                );
            }
        }
        let data = self.inner.pool.data_dataset();
        let known_names: BTreeSet<String> =
            known.iter().map(|record| record.storage_name.clone()).collect();
        // A snapshot an interrupted operation took is the audit's to remove, not to adopt: the
        // operation never decided where it belongs in the history.
        let intents = self.intents();
        // Physical mode's kept standby snapshots are not snapshots of the data users clone.
        let standby: BTreeSet<String> = self
            .inner
            .store
            .standby_snapshots()
            .map(|kept| kept.into_iter().map(|kept| kept.storage_name).collect())
            .unwrap_or_default();
        for snapshot in listing.snapshots_of(&data) {
            let name = snapshot.name.to_string();
            if known_names.contains(&name) || intents.contains(&name) || standby.contains(&name) {
                continue;
            }
            let id = self.inner.pool.snapshot_id(&snapshot.name);
            let now = Utc::now();
            let record = SnapshotRecord {
                id: id.clone(),
                pool: self.inner.pool.name().to_owned(),
                storage_name: snapshot.name.to_string(),
                branch: MAIN_BRANCH.to_owned(),
                parent_id: None,
                message: String::new(),
                created_at: now,
                data_state_at: now,
                physical_size: 0,
                logical_size: 0,
                protected: false,
                protected_till: None,
                delete_at: None,
                // Found without a record: nothing tells that it was masked.
                masked: false,
            };
            match self.adopt_snapshot(record) {
                Ok(()) => report.report(
                    DifferenceKind::UnrecordedSnapshot,
                    &id,
                    "a snapshot of the data the catalog did not know; added to it",
                ),
                Err(error) => {
                    warn!(snapshot_id = %id, error = %error, "failed to add an unrecorded snapshot")
                }
            }
        }
    }

    fn forget_missing_snapshot(&self, record: &SnapshotRecord) -> crate::Result<()> {
        let change = {
            let state = self.read_state();
            let mut change =
                CatalogChange { delete_snapshots: vec![record.id.clone()], ..Default::default() };
            for branch in
                state.branches.values().filter(|branch| branch.head_snapshot_id == record.id)
            {
                match record.parent_id.clone() {
                    Some(parent) => change
                        .upsert_branches
                        .push(BranchRecord { head_snapshot_id: parent, ..branch.clone() }),
                    None => change.delete_branches.push(branch.name.clone()),
                }
            }
            change
        };
        self.inner.state.apply_catalog(&self.inner.store, change)
    }

    fn adopt_snapshot(&self, record: SnapshotRecord) -> crate::Result<()> {
        let mut change = CatalogChange::default();
        if !self.read_state().branches.contains_key(MAIN_BRANCH) {
            change.upsert_branches.push(BranchRecord {
                name: MAIN_BRANCH.to_owned(),
                head_snapshot_id: record.id.clone(),
                base_snapshot_id: None,
                created_at: record.created_at,
                protected: false,
                protected_till: None,
                delete_at: None,
            });
        }
        change.upsert_snapshots.push(record);
        self.inner.state.apply_catalog(&self.inner.store, change)
    }

    /// Reconciles one clone; returns it when an operation on it was interrupted and must be
    /// run again.
    async fn reconcile_clone(
        &self,
        record: CloneRecord,
        listing: &storage::Listing,
        report: &mut Reconciliation,
    ) -> Option<CloneRecord> {
        let id = record.id.clone();
        // A recorded clone holds its port whatever its state (being rebuilt, FATAL): it is
        // kept until the clone is destroyed, so no other clone is ever given it.
        // So does the server of a warm clone a reset claimed, on its own port.
        for port in [Some(record.port), record.server_port].into_iter().flatten() {
            match self.inner.ports.claim(port) {
                Ok(reservation) => {
                    reservation.keep();
                }
                Err(error) => report.report(
                    DifferenceKind::ServerFailed,
                    &id,
                    format!("its port is unusable: {error}"),
                ),
            }
        }
        let dataset_exists = DatasetName::new(record.dataset.clone())
            .ok()
            .is_some_and(|name| listing.dataset(&name).is_some());
        // An observation's stop was interrupted: the clone itself is unchanged, so it is OK
        // again, and the observation component finishes the stop once the clone is up.
        let record = if record.state == CloneState::Exporting {
            report.report(
                DifferenceKind::InterruptedOperation,
                &id,
                "an observation's export was interrupted; the clone is OK again",
            );
            let settled = self.transition(&id, &[CloneState::Exporting], |stored| {
                stored.state = CloneState::Ok;
                stored.state_message = "Clone is ready to accept Postgres connections.".to_owned();
                Ok(())
            });
            match settled {
                Ok(record) => record,
                Err(error) => {
                    warn!(clone_id = %id, error = %error, "failed to settle an exporting clone");
                    return None;
                }
            }
        } else {
            record
        };
        match record.state {
            CloneState::Deleting => {
                report.report(
                    DifferenceKind::InterruptedOperation,
                    &id,
                    "deletion was interrupted; finished",
                );
                return Some(record);
            }
            CloneState::Creating | CloneState::Resetting => {
                report.report(
                    DifferenceKind::InterruptedOperation,
                    &id,
                    format!("{} was interrupted; run again from its snapshot", record.state.code()),
                );
                return Some(record);
            }
            CloneState::Fatal | CloneState::Exporting => {}
            CloneState::Ok if !dataset_exists => {
                report.report(
                    DifferenceKind::MissingDataset,
                    &id,
                    "its dataset is gone; the clone is FATAL",
                );
                let _ = self.transition(&id, &[CloneState::Ok], |stored| {
                    stored.state = CloneState::Fatal;
                    stored.state_message =
                        format!("the clone's dataset {} is gone", stored.dataset);
                    Ok(())
                });
            }
            CloneState::Ok => {
                if !self.reconcile_power(&record).await {
                    self.bring_up(record, report).await;
                }
            }
        }
        None
    }

    /// Adopts the clone's running server, or starts it again when it is not running.
    async fn bring_up(&self, record: CloneRecord, report: &mut Reconciliation) {
        let id = record.id.clone();
        let pgdata = match DatasetName::new(record.dataset.clone()) {
            Ok(dataset) => self.inner.pool.pgdata_of(&dataset),
            Err(error) => {
                report.report(DifferenceKind::ServerFailed, &id, error.to_string());
                return;
            }
        };
        let servers = &self.inner.servers;
        match servers.adopt(Server::of_clone(&record), &pgdata).await {
            Ok(instance) => {
                info!(clone_id = %id, pid = instance.pid(), "clone server adopted");
                servers.insert(&id, instance);
                self.reconcile_front(&record);
                return;
            }
            Err(error) => {
                info!(clone_id = %id, reason = %error, "clone server not adoptable; starting it")
            }
        }
        // A claimed warm clone's server is gone (a reboot): started again, it takes the
        // clone's own port.
        let record = match record.server_port {
            Some(server_port) => {
                match self.transition(&id, &[CloneState::Ok], |stored| {
                    stored.server_port = None;
                    Ok(())
                }) {
                    Ok(record) => {
                        self.release_server_port(Some(server_port));
                        record
                    }
                    Err(error) => {
                        report.report(DifferenceKind::ServerFailed, &id, error.to_string());
                        return;
                    }
                }
            }
            None => record,
        };
        match servers.start(Server::of_clone(&record), &pgdata).await {
            Ok(mut instance) => {
                let role = match servers.restore_missing_role(&mut instance, &record).await {
                    Ok(false) => String::new(),
                    Ok(true) => {
                        format!("; its role {:?} was lost and is set up again", record.username)
                    }
                    Err(error) => {
                        format!("; checking its role {:?} failed: {error}", record.username)
                    }
                };
                report.report(
                    DifferenceKind::ServerRestarted,
                    &id,
                    format!(
                        "its server was not running; started again on port {}{role}",
                        record.port
                    ),
                );
                servers.insert(&id, instance);
            }
            Err(error) => {
                report.report(
                    DifferenceKind::ServerFailed,
                    &id,
                    format!("its server could not start: {error}"),
                );
                let message = format!("the clone's server could not start: {error}");
                let _ = self.transition(&id, &[CloneState::Ok], |stored| {
                    stored.state = CloneState::Fatal;
                    stored.state_message = message;
                    Ok(())
                });
            }
        }
    }

    /// Runs an interrupted operation again: a deletion is finished; a create or reset removes
    /// whatever it left and makes the clone afresh from its snapshot, with the same port and
    /// credentials.
    async fn finish_interrupted(&self, record: CloneRecord) {
        let event = match record.state {
            CloneState::Deleting => {
                let span = info_span!("destroy_clone", clone_id = %record.id);
                if let Err(error) = self.teardown(&record).instrument(span).await {
                    warn!(clone_id = %record.id, error = %error, "failed to finish an interrupted deletion");
                }
                return;
            }
            CloneState::Creating => WebhookEvent::CloneCreate,
            _ => WebhookEvent::CloneReset,
        };
        let span = info_span!("rebuild_clone", clone_id = %record.id);
        self.rebuild_and_record(record, event).instrument(span).await;
    }
}
