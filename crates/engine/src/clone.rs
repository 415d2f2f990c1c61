//! The clone lifecycle: create, reset, destroy and protect, as DBLab does them (reference §4),
//! with the slow parts run in the background while the caller gets the clone at once.
//!
//! State machine (DBLab's codes): `CREATING → OK | FATAL`, `OK | FATAL → RESETTING → OK | FATAL`,
//! `OK | FATAL → DELETING → gone`. A clone in a transitional state belongs to the task that put
//! it there; other operations on it are refused until it settles. Every transition is written
//! to the store before it shows in memory, so a crash never reports a state that was not saved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api_types::{CloneId, WebhookEvent};
use chrono::Utc;
use postgres::{HbaSettings, HostAuth, Instance, InstanceSpec, PgMajor, RoleKind, ServerSettings};
use rand::Rng;
use storage::{DestroyMode, ThinStorage};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::HostAuthMethod;
use crate::error::{Error, Result};
use crate::events::clone_payload;
use crate::lease::{self, ProtectionRequest};
use crate::model::{CloneRecord, CloneState};
use crate::{CloneEntry, CloneView, Engine, MAIN_BRANCH, STOP_STEP_TIMEOUT};

/// What a caller asks for when creating a clone.
#[derive(Debug, Clone, Default)]
pub struct CloneRequest {
    /// The clone ID; generated when absent.
    pub id: Option<String>,
    /// The snapshot to clone; wins over `branch`.
    pub snapshot_id: Option<String>,
    /// The branch whose head to clone when no snapshot is given (default `main`).
    pub branch: Option<String>,
    /// Deletion protection.
    pub protection: ProtectionRequest,
    /// The login role to create in the clone.
    pub username: String,
    /// Its password; only a SCRAM verifier of it is kept.
    pub password: String,
    /// Make the role the owner of the databases instead of a superuser.
    pub restricted: bool,
    /// The database named in the connection string.
    pub db_name: Option<String>,
    /// Postgres settings for this clone only.
    pub extra_conf: BTreeMap<String, String>,
}

/// Which snapshot a reset moves a clone to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    /// The snapshot the clone runs on now (discard its changes).
    Current,
    /// The newest snapshot.
    Latest,
    /// A given snapshot.
    Snapshot(String),
}

/// Settings every clone starts with unless the configuration or the request says otherwise.
///
/// No logical replication apply workers: a clone of a subscriber must not pull changes from the
/// source's publishers (nor advance their slots), and without workers the launcher process is
/// not started at all, which saves a process and about 2 ms of CPU per start.
const CLONE_DEFAULT_SETTINGS: &[(&str, &str)] = &[("max_logical_replication_workers", "0")];

/// How a create gets its server.
enum Start {
    /// Cloned and started for this clone.
    Cold,
    /// A ready warm clone of the same snapshot, claimed.
    Claim(crate::warm::WarmClone),
    /// Cloned and started, on the port of a warm clone that is removed first.
    Evict(crate::warm::WarmClone),
}

/// A new clone ID in the style of DBLab's xid: 20 lower-case letters and digits.
pub(crate) fn generate_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

impl Engine {
    /// Every clone, oldest first.
    pub fn clones(&self) -> Vec<CloneView> {
        let state = self.read_state();
        let mut clones: Vec<CloneView> =
            state.clones.values().map(|entry| self.view(&state, entry)).collect();
        clones.sort_by(|a, b| {
            a.record.created_at.cmp(&b.record.created_at).then(a.record.id.cmp(&b.record.id))
        });
        clones
    }

    /// One clone.
    pub fn clone_view(&self, id: &str) -> Result<CloneView> {
        let state = self.read_state();
        let entry = state.clones.get(id).ok_or_else(|| not_found(id))?;
        Ok(self.view(&state, entry))
    }

    fn view(&self, state: &crate::State, entry: &CloneEntry) -> CloneView {
        let snapshot = state
            .snapshots
            .iter()
            .find(|snapshot| snapshot.id == entry.record.snapshot_id)
            .map(|snapshot| self.snapshot_view_in(state, snapshot));
        CloneView {
            record: entry.record.clone(),
            snapshot,
            diff_size: entry.diff_size,
            access_host: self.inner.config.cloning.access_host.clone(),
            max_idle_minutes: self.inner.config.cloning.max_idle_minutes,
        }
    }

    /// Registers a clone in state `CREATING` and makes it in the background; the returned view
    /// is the clone as registered. [`Engine::wait_settled`] waits for the outcome.
    ///
    /// A ready warm clone of the same snapshot is claimed when the request asks for no settings
    /// of its own; when the port range is exhausted, a warm clone of any snapshot gives up its
    /// port.
    pub async fn create_clone(&self, request: CloneRequest) -> Result<CloneView> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let requested_id = match request.id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => Some(
                CloneId::parse(id)
                    .map_err(|error| Error::InvalidInput(error.to_string()))?
                    .into_string(),
            ),
            None => None,
        };
        if request.username.is_empty() {
            return Err(Error::InvalidInput("missing DB username".to_owned()));
        }
        if request.password.is_empty() {
            return Err(Error::InvalidInput("missing DB password".to_owned()));
        }
        postgres::sql::check_role_name(&request.username)
            .map_err(|error| Error::InvalidInput(error.to_string()))?;
        if request.username == self.inner.config.clone.admin_role {
            return Err(Error::InvalidInput(format!(
                "{:?} is the engine's admin role; choose another username",
                request.username
            )));
        }
        crate::password::check(&request.password).map_err(Error::InvalidInput)?;
        postgres::conf::check_settings(
            request.extra_conf.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .map_err(|error| Error::InvalidInput(error.to_string()))?;
        let snapshot =
            self.resolve_snapshot(request.snapshot_id.as_deref(), request.branch.as_deref())?;
        let now = Utc::now();
        let protection = lease::grant(request.protection, &self.inner.config.cloning, now);
        // SCRAM hashing is CPU work: off the async workers, so that creates do not stall the API.
        // Joining fails only when the runtime is going away.
        let password_verifier = {
            let password = request.password.clone();
            tokio::task::spawn_blocking(move || postgres::admin::password_verifier(&password))
                .await
                .map_err(|_| Error::ShuttingDown)?
        };
        // Where a cold create puts the clone. A dataset of an earlier clone with this ID may
        // still hold commits: take the next revision, as DBLab does.
        let cold_id = requested_id.clone().unwrap_or_else(generate_id);
        let (cold_revision, cold_dataset) =
            self.free_clone_dataset(&snapshot.branch, &cold_id, 0)?;
        let warm_enabled = self.inner.config.cloning.warm_pool_size > 0;
        // A warm clone still being made holds a port no create can take yet: when the range is
        // otherwise full, wait for it to be ready (and then take its port) rather than fail.
        let mut waits_left = 3;
        let (record, start) = loop {
            let settled = self.inner.warm.settled();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let registered = 'locked: {
                // The ID check, the port and the insert happen under one lock, so concurrent
                // creates can neither share an ID nor a port.
                let mut state = self.write_state();
                // A branch deletion removes its snapshots under this lock.
                if !state.snapshots.iter().any(|known| known.id == snapshot.id) {
                    return Err(Error::NotFound(format!("snapshot {:?} not found", snapshot.id)));
                }
                let warm = if warm_enabled && request.extra_conf.is_empty() {
                    self.inner.warm.take(&snapshot.id)
                } else {
                    None
                };
                let (id, revision, dataset) = match &warm {
                    Some(warm) => (
                        requested_id.clone().unwrap_or_else(|| warm.record.id.clone()),
                        0,
                        warm.record.dataset.clone(),
                    ),
                    None => (cold_id.clone(), cold_revision, cold_dataset.to_string()),
                };
                if state.clones.contains_key(&id) {
                    if let Some(warm) = warm {
                        self.inner.warm.put_back(warm);
                    }
                    return Err(Error::AlreadyExists(format!(
                        "clone with ID {id:?} already exists"
                    )));
                }
                let (port, start) = match warm {
                    Some(warm) => (warm.record.port, Start::Claim(warm)),
                    None => match self.inner.ports.reserve() {
                        Ok(port) => (port.keep(), Start::Cold),
                        Err(exhausted) => match self.inner.warm.take_any() {
                            Some(warm) => (warm.record.port, Start::Evict(warm)),
                            None if self.inner.warm.making() && waits_left > 0 => {
                                break 'locked None;
                            }
                            None => return Err(exhausted.into()),
                        },
                    },
                };
                let record = CloneRecord {
                    id: id.clone(),
                    snapshot_id: snapshot.id.clone(),
                    branch: snapshot.branch.clone(),
                    revision,
                    pool: self.inner.pool.name().to_owned(),
                    dataset,
                    port,
                    state: CloneState::Creating,
                    state_message: "Clone is being created.".to_owned(),
                    username: request.username.clone(),
                    password_verifier: password_verifier.clone(),
                    restricted: request.restricted,
                    db_name: request.db_name.clone().filter(|name| !name.is_empty()),
                    protected: protection.protected,
                    protected_till: protection.till,
                    protection_warning_sent: false,
                    created_at: now,
                    cloning_time_seconds: None,
                    extra_conf: request.extra_conf.clone(),
                };
                // An evicted warm clone keeps its record until its server is gone, so that a crash
                // in between leaves it to be removed at the next start, before the clone is redone.
                let stored = match &start {
                    Start::Claim(warm) => self.inner.store.claim_warm(&warm.record.id, &record),
                    Start::Cold | Start::Evict(_) => self.inner.store.insert_clone(&record),
                };
                if let Err(error) = stored {
                    match start {
                        Start::Claim(warm) | Start::Evict(warm) => self.inner.warm.put_back(warm),
                        Start::Cold => self.inner.ports.release(port),
                    }
                    return Err(error.into());
                }
                state.clones.insert(
                    id.clone(),
                    CloneEntry { record: record.clone(), last_active: now, diff_size: 0 },
                );
                Some((record, start))
            };
            match registered {
                Some(registered) => break registered,
                None => {
                    waits_left -= 1;
                    let wait = self.inner.config.clone.start_timeout;
                    let _ = tokio::time::timeout(wait, settled).await;
                }
            }
        };
        self.notify_changed();
        if warm_enabled {
            let metric = match start {
                Start::Claim(_) => &self.inner.metrics.warm_hits,
                Start::Cold | Start::Evict(_) => &self.inner.metrics.warm_misses,
            };
            metric.inc();
        }
        info!(clone_id = %record.id, snapshot_id = %record.snapshot_id, port = record.port, warm = matches!(start, Start::Claim(_)), "creating clone");
        let engine = self.clone();
        let span = info_span!("create_clone", clone_id = %record.id);
        let id = record.id.clone();
        self.inner.tasks.spawn(
            async move {
                let started = Instant::now();
                let outcome = match start {
                    Start::Claim(warm) => engine.finish_claim(&record, warm).await,
                    Start::Evict(warm) => {
                        engine.dispose_evicted(warm).await;
                        engine.provision(&record).await
                    }
                    Start::Cold => engine.provision(&record).await,
                };
                engine.finish_provisioning(&record, outcome, started, WebhookEvent::CloneCreate);
                if warm_enabled {
                    engine.inner.warm.wake();
                }
            }
            .instrument(span),
        );
        self.clone_view(&id)
    }

    /// Waits until the clone is no longer `CREATING` or `RESETTING` (or is gone, for
    /// `DELETING`), at most `timeout`, and returns it as it then is.
    pub async fn wait_settled(&self, id: &str, timeout: Duration) -> Result<Option<CloneView>> {
        let mut changes = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = match self.clone_view(id) {
                Ok(view) => view,
                Err(Error::NotFound(_)) => return Ok(None),
                Err(error) => return Err(error),
            };
            if !matches!(
                current.record.state,
                CloneState::Creating | CloneState::Resetting | CloneState::Deleting
            ) {
                return Ok(Some(current));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the engine is gone: report what there is.
                Ok(Err(_)) | Err(_) => return Ok(Some(current)),
            }
        }
    }

    /// Sets or lifts protection, under the lease rules.
    pub async fn update_clone(&self, id: &str, request: ProtectionRequest) -> Result<CloneView> {
        let protection = lease::grant(request, &self.inner.config.cloning, Utc::now());
        self.modify_clone(id, |record| {
            record.protected = protection.protected;
            record.protected_till = protection.till;
            record.protection_warning_sent = false;
            Ok(())
        })?;
        info!(clone_id = %id, protected = protection.protected, till = ?protection.till, "clone protection updated");
        self.clone_view(id)
    }

    /// Moves a clone to another snapshot in the background, keeping its port and credentials.
    pub async fn reset_clone(&self, id: &str, target: ResetTarget) -> Result<CloneView> {
        let current = self.clone_view(id)?.record;
        let snapshot = match target {
            ResetTarget::Current => self.snapshot_record(&current.snapshot_id)?,
            ResetTarget::Latest => self.latest_snapshot()?,
            ResetTarget::Snapshot(snapshot_id) => self.snapshot_record(&snapshot_id)?,
        };
        let record = self.modify_clone(id, |record| {
            if !matches!(record.state, CloneState::Ok | CloneState::Fatal) {
                return Err(busy(record));
            }
            record.state = CloneState::Resetting;
            record.state_message = "Clone is being reset.".to_owned();
            record.snapshot_id = snapshot.id.clone();
            record.branch = snapshot.branch.clone();
            Ok(())
        })?;
        info!(clone_id = %id, snapshot_id = %snapshot.id, "resetting clone");
        self.spawn_rebuild(record, WebhookEvent::CloneReset);
        self.clone_view(id)
    }

    /// Rebuilds a clone in the background (reset, or an interrupted create or reset after a
    /// restart) and records the outcome.
    pub(crate) fn spawn_rebuild(&self, record: CloneRecord, event: WebhookEvent) {
        let engine = self.clone();
        let span = info_span!("rebuild_clone", clone_id = %record.id);
        self.inner.tasks.spawn(
            async move {
                let started = Instant::now();
                match engine.rebuild(record.clone()).await {
                    Ok((record, instance)) => {
                        engine.finish_provisioning(&record, Ok(instance), started, event);
                    }
                    Err(error) => engine.finish_provisioning(&record, Err(error), started, event),
                }
            }
            .instrument(span),
        );
    }

    /// Destroys a clone in the background; refused while it is protected (unless it failed)
    /// or busy with another operation.
    pub async fn destroy_clone(&self, id: &str) -> Result<()> {
        let now = Utc::now();
        let record = self.modify_clone(id, |record| {
            let protection =
                lease::Protection { protected: record.protected, till: record.protected_till };
            if protection.is_active(now) && record.state != CloneState::Fatal {
                return Err(Error::Refused(format!(
                    "clone {:?} is protected{}; lift protection first",
                    record.id,
                    record.protected_till.map(|till| format!(" until {till}")).unwrap_or_default()
                )));
            }
            if !matches!(record.state, CloneState::Ok | CloneState::Fatal) {
                return Err(busy(record));
            }
            record.state = CloneState::Deleting;
            record.state_message = "Clone is being deleted.".to_owned();
            Ok(())
        })?;
        info!(clone_id = %id, "destroying clone");
        let engine = self.clone();
        let span = info_span!("destroy_clone", clone_id = %id);
        self.inner.tasks.spawn(
            async move {
                if let Err(error) = engine.teardown(&record).await {
                    warn!(error = %error, "failed to destroy clone");
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Stops the clone's server, destroys its dataset and forgets it. Used by destroy, idle
    /// cleanup and forced snapshot deletion; the clone must be `DELETING`.
    pub(crate) async fn teardown(&self, record: &CloneRecord) -> Result<()> {
        let result = self.remove_clone_resources(record).await;
        if let Err(error) = &result {
            let message = format!("failed to destroy the clone: {error}");
            let _ = self.modify_clone(&record.id, |record| {
                record.state = CloneState::Fatal;
                record.state_message = message.clone();
                Ok(())
            });
            return result;
        }
        self.inner.store.delete_clone(&record.id)?;
        self.write_state().clones.remove(&record.id);
        self.inner.ports.release(record.port);
        // The freed port may be what the warm pool was short of.
        self.inner.warm.wake();
        self.notify_changed();
        self.inner.events.emit(&clone_payload(
            WebhookEvent::CloneDelete,
            record,
            &self.inner.config.cloning.access_host,
        ));
        info!(clone_id = %record.id, "clone destroyed");
        Ok(())
    }

    async fn remove_clone_resources(&self, record: &CloneRecord) -> Result<()> {
        self.stop_server(record).await?;
        let dataset = storage::DatasetName::new(record.dataset.clone())?;
        match self.inner.pool.storage().destroy_dataset(&dataset, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {
                self.remove_empty_clone_parent(&dataset).await
            }
            // Snapshots of the clone's dataset are commits that branches still use; the
            // dataset goes when its branch does.
            Err(storage::Error::HasDependents { dependents, .. }) => {
                info!(clone_id = %record.id, ?dependents, "keeping the clone's dataset for its commits");
            }
            Err(error) => return Err(error.into()),
        }
        let socket_dir = self.socket_dir(record.port);
        if let Err(error) = std::fs::remove_dir_all(&socket_dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(error = %error, dir = %socket_dir.display(), "failed to remove socket directory");
        }
        Ok(())
    }

    /// Removes `branch/<branch>/<clone>` once its last revision is gone, so that clones that
    /// come and go leave no empty datasets behind.
    pub(crate) async fn remove_empty_clone_parent(&self, dataset: &storage::DatasetName) {
        let Some(parent) = dataset.parent() else { return };
        if parent.as_str().split('/').count() != 3 {
            return;
        }
        let storage = self.inner.pool.storage();
        // Only empty directories left (ZFS may leave a child's mountpoint): nothing to keep.
        let empty = std::fs::read_dir(storage.mountpoint(&parent)).is_ok_and(|entries| {
            entries.flatten().all(|entry| {
                std::fs::read_dir(entry.path()).is_ok_and(|mut inner| inner.next().is_none())
            })
        });
        if !empty {
            return;
        }
        match storage.destroy_dataset(&parent, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {}
            Err(error) => info!(dataset = %parent, error = %error, "kept a clone's parent dataset"),
        }
    }

    /// A new admin session to a running clone, over its private socket, in database
    /// `postgres`: for work beside the clone's lifecycle (activity checks, commits).
    pub(crate) async fn admin_session(
        &self,
        record: &CloneRecord,
    ) -> Result<postgres::Admin, postgres::Error> {
        postgres::Admin::connect(
            &self.socket_dir(record.port),
            record.port,
            &self.inner.config.clone.admin_role,
            "postgres",
        )
        .await
    }

    /// Stops the clone's server: the handle this engine holds, or the server found through
    /// `postmaster.pid` when the handle is gone (a failed adoption, a crash mid-operation).
    pub(crate) async fn stop_server(&self, record: &CloneRecord) -> Result<()> {
        let instance = self.instances().remove(&record.id);
        let instance = match instance {
            Some(instance) => instance,
            None => {
                let pgdata =
                    self.inner.pool.pgdata_of(&storage::DatasetName::new(record.dataset.clone())?);
                if !pgdata.join("postmaster.pid").exists() {
                    return Ok(());
                }
                match self.adopt_instance(record, &pgdata).await {
                    Ok(instance) => instance,
                    Err(error) => {
                        info!(clone_id = %record.id, error = %error, "no running server to stop");
                        return Ok(());
                    }
                }
            }
        };
        instance.stop(postgres::StopMode::Fast, STOP_STEP_TIMEOUT).await?;
        Ok(())
    }

    /// Makes the clone's dataset from its snapshot, starts its server and sets up its role.
    pub(crate) async fn provision(&self, record: &CloneRecord) -> Result<Instance> {
        let dataset = storage::DatasetName::new(record.dataset.clone())?;
        let started = Instant::now();
        let spec = self.instance_spec(record, &self.inner.pool.pgdata_of(&dataset));
        let (mut instance, cloned) =
            self.clone_and_start(&record.snapshot_id, &dataset, spec).await?;
        let configured = match instance.admin().await {
            Ok(admin) => self.configure_roles(&admin, record).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = configured {
            self.abandon(instance, &dataset).await;
            return Err(error);
        }
        // Where a clone's time goes, for whoever reads the log next to the benchmarks.
        let total = started.elapsed();
        if let Some(timings) = instance.start_timings() {
            debug!(
                clone_id = %record.id,
                dataset_ms = ms(cloned),
                spawned_ms = ms(timings.spawned),
                ready_ms = ms(timings.ready),
                accepting_ms = ms(timings.connected),
                roles_ms = ms(total.saturating_sub(cloned + timings.connected)),
                total_ms = ms(total),
                "clone provisioned"
            );
        }
        Ok(instance)
    }

    /// Clones `snapshot_id` into `dataset` and starts a server on it with `spec`; returns the
    /// server and how long the storage clone took. On failure no dataset is left behind.
    pub(crate) async fn clone_and_start(
        &self,
        snapshot_id: &str,
        dataset: &storage::DatasetName,
        spec: InstanceSpec,
    ) -> Result<(Instance, Duration)> {
        let snapshot = self.snapshot_record(snapshot_id)?;
        let snapshot_name = self.inner.pool.snapshot_name(&snapshot.id).ok_or_else(|| {
            Error::NotFound(format!(
                "snapshot {:?} is not in pool {}",
                snapshot.id,
                self.inner.pool.name()
            ))
        })?;
        let started = Instant::now();
        self.inner.pool.storage().clone_snapshot(&snapshot_name, dataset).await?;
        let cloned = started.elapsed();
        match self.start_with(spec).await {
            Ok(instance) => Ok((instance, cloned)),
            Err(error) => {
                self.destroy_clone_dataset(dataset).await;
                Err(error)
            }
        }
    }

    /// Gives up on a server and its dataset after a failed step: the server is stopped at once
    /// (nothing in it is anyone's yet) and the dataset destroyed.
    pub(crate) async fn abandon(&self, instance: Instance, dataset: &storage::DatasetName) {
        if let Err(error) = instance.stop(postgres::StopMode::Immediate, STOP_STEP_TIMEOUT).await {
            warn!(error = %error, %dataset, "failed to stop a server given up on");
        }
        self.destroy_clone_dataset(dataset).await;
    }

    /// Destroys a clone dataset that nothing else depends on, and its parent once empty.
    pub(crate) async fn destroy_clone_dataset(&self, dataset: &storage::DatasetName) {
        match self.inner.pool.storage().destroy_dataset(dataset, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {
                self.remove_empty_clone_parent(dataset).await
            }
            Err(error) => warn!(error = %error, %dataset, "failed to remove a clone dataset"),
        }
    }

    /// Removes the source's passwords unless kept, and sets up the clone's login role.
    async fn configure_roles(&self, admin: &postgres::Admin, record: &CloneRecord) -> Result<()> {
        if !self.inner.config.cloning.keep_user_passwords {
            admin.reset_passwords(&[record.username.as_str()]).await?;
        }
        self.create_clone_role(admin, record).await
    }

    /// Creates the clone's login role, or replaces it, from the record's verifier.
    ///
    /// The commit does not wait for the clone's WAL to reach the disk: on a pool whose flushes
    /// go through a loop device that wait is the slowest step of a warm clone's claim. The
    /// store holds the verifier durably, and a clone started again after a crash gets its role
    /// back if the crash lost it (reconciliation's `bring_up`).
    pub(crate) async fn create_clone_role(
        &self,
        admin: &postgres::Admin,
        record: &CloneRecord,
    ) -> Result<()> {
        admin.commit_without_waiting().await?;
        let kind = if record.restricted { RoleKind::Restricted } else { RoleKind::Superuser };
        admin
            .create_or_replace_role_with_verifier(&record.username, &record.password_verifier, kind)
            .await?;
        Ok(())
    }

    /// The spec a clone's server runs with: always derived from the record and the
    /// configuration, so a restart after a reboot gets the same port, socket and settings.
    pub(crate) fn instance_spec(&self, record: &CloneRecord, pgdata: &Path) -> InstanceSpec {
        self.spec_at(record.port, &record.id, &record.extra_conf, pgdata.to_path_buf())
    }

    /// The spec of a server on `dataset` listening on `port`, logging to `log_name`'s file.
    pub(crate) fn server_spec(
        &self,
        port: u16,
        log_name: &str,
        extra_conf: &BTreeMap<String, String>,
        dataset: &storage::DatasetName,
    ) -> InstanceSpec {
        self.spec_at(port, log_name, extra_conf, self.inner.pool.pgdata_of(dataset))
    }

    fn spec_at(
        &self,
        port: u16,
        log_name: &str,
        extra_conf: &BTreeMap<String, String>,
        pgdata: PathBuf,
    ) -> InstanceSpec {
        let server = &self.inner.config.clone;
        let mut settings = ServerSettings::new(port, self.socket_dir(port));
        settings.listen_addresses = server.listen_addresses.clone();
        settings.shared_buffers = server.shared_buffers.clone();
        settings.max_connections = server.max_connections;
        // Later entries win: Scion's defaults, then the configuration, then the request's.
        settings.extra = CLONE_DEFAULT_SETTINGS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .chain(
                server
                    .settings
                    .iter()
                    .chain(extra_conf)
                    .map(|(name, value)| (name.clone(), value.clone())),
            )
            .collect();
        let mut spec = InstanceSpec::new(
            pgdata,
            settings,
            &server.admin_role,
            self.log_file(log_name),
            self.inner.os_user.clone(),
        );
        spec.hba = HbaSettings {
            host_auth: match server.host_auth {
                HostAuthMethod::ScramSha256 => HostAuth::ScramSha256,
                HostAuthMethod::Md5 => HostAuth::Md5,
                HostAuthMethod::Trust => HostAuth::Trust,
            },
            ..HbaSettings::new(&server.admin_role)
        };
        spec.start_timeout = server.start_timeout;
        spec
    }

    /// The binaries of the major the data directory was made with.
    fn binaries_for(&self, pgdata: &Path) -> Result<postgres::PgBinaries> {
        Ok(self.inner.binaries.locate(PgMajor::of_data_dir(pgdata)?)?)
    }

    pub(crate) async fn start_instance(
        &self,
        record: &CloneRecord,
        pgdata: &Path,
    ) -> Result<Instance> {
        self.start_with(self.instance_spec(record, pgdata)).await
    }

    pub(crate) async fn adopt_instance(
        &self,
        record: &CloneRecord,
        pgdata: &Path,
    ) -> Result<Instance> {
        self.adopt_with(self.instance_spec(record, pgdata)).await
    }

    pub(crate) async fn start_with(&self, spec: InstanceSpec) -> Result<Instance> {
        let binaries = self.binaries_for(&spec.data_dir)?;
        Ok(Instance::start(&binaries, spec).await?)
    }

    pub(crate) async fn adopt_with(&self, spec: InstanceSpec) -> Result<Instance> {
        let binaries = self.binaries_for(&spec.data_dir)?;
        Ok(Instance::adopt(&binaries, spec).await?)
    }

    /// Reset's slow part: stop, replace the dataset, start, reapply the role.
    async fn rebuild(&self, mut record: CloneRecord) -> Result<(CloneRecord, Instance)> {
        self.stop_server(&record).await?;
        let dataset = storage::DatasetName::new(record.dataset.clone())?;
        let mut revision = record.revision;
        match self.inner.pool.storage().destroy_dataset(&dataset, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {}
            // Commits were made from this revision: keep it, move to the next one.
            Err(storage::Error::HasDependents { .. }) => revision += 1,
            Err(error) => return Err(error.into()),
        }
        // A reset may also move the clone to another branch, whose directory it then lives in.
        let (revision, target) = self.free_clone_dataset(&record.branch, &record.id, revision)?;
        if target.as_str() != record.dataset {
            // Moving to another branch, or off a claimed warm clone's dataset, can leave the
            // old parent empty.
            self.remove_empty_clone_parent(&dataset).await;
            record.revision = revision;
            record.dataset = target.to_string();
            self.modify_clone(&record.id, |stored| {
                stored.revision = record.revision;
                stored.dataset = record.dataset.clone();
                Ok(())
            })?;
        }
        let instance = self.provision(&record).await?;
        Ok((record, instance))
    }

    /// The first revision from `from` whose dataset for clone `id` on `branch` does not exist.
    pub(crate) fn free_clone_dataset(
        &self,
        branch: &str,
        id: &str,
        from: u32,
    ) -> Result<(u32, storage::DatasetName)> {
        let storage = self.inner.pool.storage();
        let mut revision = from;
        loop {
            let dataset = self.inner.pool.clone_dataset(branch, id, revision)?;
            // A directory read, not a pool listing: this is on the path of every create. An
            // empty directory is what a destroyed ZFS dataset may leave behind.
            let occupied = std::fs::read_dir(storage.mountpoint(&dataset))
                .is_ok_and(|mut entries| entries.next().is_some());
            if !occupied {
                return Ok((revision, dataset));
            }
            revision += 1;
        }
    }

    /// Records the outcome of a create or reset: `OK` with its timing and webhook, or
    /// `FATAL` with the error.
    pub(crate) fn finish_provisioning(
        &self,
        record: &CloneRecord,
        outcome: Result<Instance>,
        started: Instant,
        event: WebhookEvent,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        let id = record.id.clone();
        match outcome {
            Ok(instance) => {
                self.instances().insert(id.clone(), instance);
                let updated = self.modify_clone(&id, |stored| {
                    stored.state = CloneState::Ok;
                    stored.state_message =
                        "Clone is ready to accept Postgres connections.".to_owned();
                    stored.cloning_time_seconds = Some(elapsed);
                    Ok(())
                });
                match updated {
                    Ok(record) => {
                        if let Some(entry) = self.write_state().clones.get_mut(&id) {
                            entry.last_active = Utc::now();
                        }
                        self.inner.metrics.clone_ready.observe(elapsed);
                        info!(clone_id = %id, port = record.port, elapsed_ms = elapsed * 1000.0, "clone ready");
                        self.inner.events.emit(&clone_payload(
                            event,
                            &record,
                            &self.inner.config.cloning.access_host,
                        ));
                    }
                    Err(error) => {
                        warn!(clone_id = %id, error = %error, "failed to record a ready clone")
                    }
                }
            }
            Err(error) => {
                warn!(clone_id = %id, error = %error, "clone failed");
                self.inner.metrics.clone_failures.inc();
                let message = error.to_string();
                if let Err(store_error) = self.modify_clone(&id, |stored| {
                    stored.state = CloneState::Fatal;
                    stored.state_message = message.clone();
                    Ok(())
                }) {
                    warn!(clone_id = %id, error = %store_error, "failed to record a failed clone");
                }
            }
        }
        self.notify_changed();
    }

    /// Applies `change` to a clone's record under the state lock, saves it, and returns it.
    pub(crate) fn modify_clone(
        &self,
        id: &str,
        change: impl FnOnce(&mut CloneRecord) -> Result<()>,
    ) -> Result<CloneRecord> {
        let record = {
            let mut state = self.write_state();
            let entry = state.clones.get_mut(id).ok_or_else(|| not_found(id))?;
            let mut record = entry.record.clone();
            change(&mut record)?;
            self.inner.store.update_clone(&record)?;
            entry.record = record.clone();
            record
        };
        self.notify_changed();
        Ok(record)
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("clone {id:?} not found"))
}

fn busy(record: &CloneRecord) -> Error {
    Error::Refused(format!(
        "clone {:?} is busy ({}); try again when it is OK",
        record.id,
        record.state.code()
    ))
}

/// Whether a request's branch names `main`, the default.
pub(crate) fn branch_or_main(branch: Option<&str>) -> &str {
    branch.filter(|branch| !branch.is_empty()).unwrap_or(MAIN_BRANCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_clone_ids() {
        for _ in 0..100 {
            let id = generate_id();
            assert_eq!(id.len(), 20);
            CloneId::parse(id.clone()).unwrap();
        }
        assert_ne!(generate_id(), generate_id());
    }
}
