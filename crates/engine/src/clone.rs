//! The clone lifecycle: create, reset, destroy and protect, as DBLab does them (reference §4),
//! with the slow parts run in the background while the caller gets the clone at once.
//!
//! State machine (DBLab's codes): `CREATING → OK | FATAL`, `OK | FATAL → RESETTING → OK | FATAL`,
//! `OK | FATAL → DELETING → gone`. A clone in a transitional state belongs to the task that put
//! it there; other operations on it are refused until it settles. Every transition is written
//! to the store before it shows in memory, so a crash never reports a state that was not saved.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::{CloneId, WebhookEvent};
use chrono::Utc;
use rand::Rng;
use storage::{DestroyMode, ThinStorage};
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Error, Result};
use crate::events::clone_payload;
use crate::failpoint;
use crate::lease::{self, ProtectionRequest};
use crate::model::{CloneRecord, CloneState};
use crate::state::{self, Registration, not_found};
use crate::sync::lock;
use crate::{CloneEntry, CloneView, Engine, MAIN_BRANCH};

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
    /// CPU and memory limits for this clone only, over the configuration's.
    pub limits: crate::quota::CloneLimits,
    /// Issue the user a client certificate ([`Engine::create_clone_with_certificate`]), with
    /// which it logs in over TLS instead of with its password.
    pub client_certificate: bool,
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
        let config = self.config();
        // Each clone's view holds its snapshot's, which lists every clone of that snapshot
        // (DBLab's shape): built once per snapshot, not once per clone, which at 1,000 clones
        // was a million record comparisons on every `/status` and `/clones`.
        let mut by_snapshot: HashMap<&str, Vec<String>> = HashMap::new();
        for entry in state.clones.values() {
            by_snapshot
                .entry(entry.record.snapshot_id.as_str())
                .or_default()
                .push(entry.record.id.clone());
        }
        // Shared, not copied: a copy per clone was a million clone IDs at 1,000 clones.
        let snapshots: HashMap<&str, Arc<crate::SnapshotView>> = state
            .snapshots
            .iter()
            .filter_map(|snapshot| {
                let clones = by_snapshot.remove(snapshot.id.as_str())?;
                let view = self.snapshot_view_with(&state, snapshot, clones);
                Some((snapshot.id.as_str(), Arc::new(view)))
            })
            .collect();
        let mut clones: Vec<CloneView> = state
            .clones
            .values()
            .map(|entry| {
                let snapshot = snapshots.get(entry.record.snapshot_id.as_str()).map(Arc::clone);
                clone_view(entry, snapshot, &config, &self.inner.servers)
            })
            .collect();
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

    /// The log file of clone `id`'s server (`<state>/logs/<id>.log`); it may not exist yet.
    pub fn clone_log_path(&self, id: &str) -> Result<std::path::PathBuf> {
        let state = self.read_state();
        let entry = state.clones.get(id).ok_or_else(|| not_found(id))?;
        Ok(self.inner.servers.log_path(&entry.record.id))
    }

    fn view(&self, state: &crate::State, entry: &CloneEntry) -> CloneView {
        let snapshot = state
            .snapshots
            .iter()
            .find(|snapshot| snapshot.id == entry.record.snapshot_id)
            .map(|snapshot| Arc::new(self.snapshot_view_in(state, snapshot)));
        clone_view(entry, snapshot, &self.config(), &self.inner.servers)
    }

    /// Registers a clone in state `CREATING` and makes it in the background; the returned view
    /// is the clone as registered. [`Engine::wait_settled`] waits for the outcome.
    ///
    /// A ready warm clone of the same snapshot is claimed when the request asks for no settings
    /// of its own; when the port range is exhausted, a warm clone of any snapshot gives up its
    /// port.
    pub async fn create_clone(&self, request: CloneRequest) -> Result<CloneView> {
        Ok(self.create_clone_with_certificate(request).await?.0)
    }

    /// [`Engine::create_clone`], and the user's client certificate when the request asks for
    /// one (`client_certificate`): issued before the clone is registered, so a create that
    /// cannot have one changes nothing, and returned only here, never kept.
    pub async fn create_clone_with_certificate(
        &self,
        request: CloneRequest,
    ) -> Result<(CloneView, Option<crate::ClientCertificate>)> {
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
        if request.username == self.config().clone.admin_role {
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
        let servers = &self.inner.servers;
        let limits = servers.limits_of(request.limits);
        servers.quotas().check(&limits)?;
        let certificate = if request.client_certificate {
            Some(servers.tls().client_certificate(&request.username)?)
        } else {
            None
        };
        let snapshot =
            self.resolve_snapshot(request.snapshot_id.as_deref(), request.branch.as_deref())?;
        crate::quota::check_disk(&limits, self.inner.pool.storage(), &snapshot)?;
        self.ensure_space("create clone").await?;
        let now = Utc::now();
        let protection = lease::grant(request.protection, &self.config().cloning, now);
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
        let warm_enabled = self.config().cloning.warm_pool_size > 0;
        // A warm clone still being made holds a port no create can take yet: when the range is
        // otherwise full, wait for it to be ready (and then take its port) rather than fail.
        let mut waits_left = 3;
        let (record, start) = loop {
            let settled = self.inner.warm.settled();
            tokio::pin!(settled);
            settled.as_mut().enable();
            // The ID check, the port and the insert happen under the state lock, so concurrent
            // creates can neither share an ID nor a port.
            let registered = self.inner.state.register(
                &self.inner.store,
                |state| {
                    // A branch deletion removes its snapshots under this lock.
                    if !state.snapshots.iter().any(|known| known.id == snapshot.id) {
                        return Err(Error::NotFound(format!(
                            "snapshot {:?} not found",
                            snapshot.id
                        )));
                    }
                    // A warm clone runs with the configuration's settings and limits only.
                    let warm = if warm_enabled
                        && request.extra_conf.is_empty()
                        && request.limits.is_empty()
                    {
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
                    let (port, start) = match warm {
                        Some(warm) => (warm.record.port, Start::Claim(warm)),
                        None => match self.inner.ports.reserve() {
                            Ok(port) => (port.keep(), Start::Cold),
                            Err(exhausted) => match self.inner.warm.take_any() {
                                Some(warm) => (warm.record.port, Start::Evict(warm)),
                                None if self.inner.warm.making() && waits_left > 0 => {
                                    return Ok(None);
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
                        limits: request.limits,
                        stopped_at: None,
                        cert_login: request.client_certificate,
                        server_port: None,
                    };
                    // An evicted warm clone keeps its record until its server is gone, so that a crash
                    // in between leaves it to be removed at the next start, before the clone is redone.
                    let registration = match &start {
                        Start::Claim(warm) => {
                            Registration::ClaimWarm { record, warm_id: warm.record.id.clone() }
                        }
                        Start::Cold | Start::Evict(_) => Registration::New(record),
                    };
                    Ok(Some((registration, (port, start))))
                },
                |(port, start)| match start {
                    Start::Claim(warm) | Start::Evict(warm) => self.inner.warm.put_back(warm),
                    Start::Cold => self.inner.ports.release(port),
                },
            )?;
            match registered {
                Some((record, (_, start))) => break (record, start),
                // The range is full but a warm clone in the making will free a port.
                None => {
                    waits_left -= 1;
                    let wait = self.config().clone.start_timeout;
                    let _ = tokio::time::timeout(wait, settled).await;
                }
            }
        };
        if warm_enabled {
            self.inner.warm.begin_create(Instant::now());
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
                    engine.inner.warm.end_create();
                    engine.inner.warm.wake();
                }
            }
            .instrument(span),
        );
        Ok((self.clone_view(&id)?, certificate))
    }

    /// Waits until the clone is no longer `CREATING` or `RESETTING` (or is gone, for
    /// `DELETING`), at most `timeout`, and returns it as it then is.
    pub async fn wait_settled(&self, id: &str, timeout: Duration) -> Result<Option<CloneView>> {
        let mut changes = self.inner.state.subscribe();
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
        let protection = lease::grant(request, &self.config().cloning, Utc::now());
        self.transition(id, state::ANY, |record| {
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
        // Before the clone changes state: a refused reset leaves it running as it was.
        let limits = self.inner.servers.limits_of(current.limits);
        crate::quota::check_disk(&limits, self.inner.pool.storage(), &snapshot)?;
        self.ensure_space("reset clone").await?;
        let record = self.transition(id, state::SETTLED, |record| {
            record.state = CloneState::Resetting;
            record.state_message = "Clone is being reset.".to_owned();
            // A stopped clone comes back running from a reset.
            record.stopped_at = None;
            record.snapshot_id = snapshot.id.clone();
            record.branch = snapshot.branch.clone();
            Ok(())
        })?;
        info!(clone_id = %id, snapshot_id = %snapshot.id, "resetting clone");
        self.spawn_rebuild(record, WebhookEvent::CloneReset);
        self.clone_view(id)
    }

    /// Destroys a clone in the background; refused while it is protected (unless it failed)
    /// or busy with another operation.
    pub async fn destroy_clone(&self, id: &str) -> Result<()> {
        let now = Utc::now();
        let record = self.transition(id, state::SETTLED, |record| {
            let protection =
                lease::Protection { protected: record.protected, till: record.protected_till };
            if protection.is_active(now) && record.state != CloneState::Fatal {
                return Err(Error::Refused(format!(
                    "clone {:?} is protected{}; lift protection first",
                    record.id,
                    record.protected_till.map(|till| format!(" until {till}")).unwrap_or_default()
                )));
            }
            record.state = CloneState::Deleting;
            record.state_message = "Clone is being deleted.".to_owned();
            Ok(())
        })?;
        info!(clone_id = %id, "destroying clone");
        let engine = self.clone();
        let span = info_span!("destroy_clone", clone_id = %id);
        lock(&self.inner.destroy_failures).remove(id);
        self.inner.tasks.spawn(
            async move {
                if let Err(error) = engine.teardown(&record).await {
                    lock(&engine.inner.destroy_failures).insert(record.id.clone(), error);
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Waits for a destroy that [`Engine::destroy_clone`] started, at most `timeout`: `None`
    /// once the clone is gone, the clone as it is when the destroy still runs, and the
    /// destroy's own error (a server-side one: storage, Postgres, the state database) when it
    /// failed, leaving the clone `FATAL` with the reason.
    pub async fn wait_destroyed(&self, id: &str, timeout: Duration) -> Result<Option<CloneView>> {
        let still = self.wait_settled(id, timeout).await?;
        if still.as_ref().is_some_and(|view| view.record.state == CloneState::Fatal)
            && let Some(error) = lock(&self.inner.destroy_failures).remove(id)
        {
            return Err(error);
        }
        Ok(still)
    }

    /// Stops the clone's server, destroys its dataset and forgets it. Used by destroy, idle
    /// cleanup and forced snapshot deletion; the clone must be `DELETING`.
    pub(crate) async fn teardown(&self, record: &CloneRecord) -> Result<()> {
        if let Err((step, error)) = self.remove_clone_resources(record).await {
            // The clone stays, FATAL, saying which step failed and how, so that it can be
            // destroyed again once the cause is gone; a waiter gets the error itself.
            let message = format!(
                "destroying the clone failed {step}: {error}; the clone is kept, destroy it \
                 again once the cause is fixed"
            );
            warn!(clone_id = %record.id, %message, "failed to destroy a clone");
            let _ = self.transition(&record.id, state::DELETING, |record| {
                record.state = CloneState::Fatal;
                record.state_message = message.clone();
                Ok(())
            });
            return Err(error);
        }
        self.inner.state.forget(&self.inner.store, &record.id, state::DELETING)?;
        self.forget_observations(&record.id);
        self.forget_front(&record.id);
        self.inner.ports.release(record.port);
        self.release_server_port(record.server_port);
        // The freed port may be what the warm pool was short of.
        self.inner.warm.wake();
        self.inner.events.emit(&clone_payload(
            WebhookEvent::CloneDelete,
            record,
            &self.config().cloning.access_host,
        ));
        info!(clone_id = %record.id, "clone destroyed");
        Ok(())
    }

    /// Stops the clone's server and destroys its dataset; on failure, says at which step.
    async fn remove_clone_resources(
        &self,
        record: &CloneRecord,
    ) -> Result<(), (&'static str, Error)> {
        self.discard_server(record).await.map_err(|error| ("stopping its server", error))?;
        failpoint::hit("destroy.server_stopped");
        let step = "destroying its dataset (its server is stopped)";
        let dataset = storage::DatasetName::new(record.dataset.clone())
            .map_err(|error| (step, error.into()))?;
        match self.inner.pool.storage().destroy_dataset(&dataset, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {
                self.remove_empty_clone_parent(&dataset).await
            }
            // Snapshots of the clone's dataset are commits that branches still use; the
            // dataset goes when its branch does.
            Err(storage::Error::HasDependents { dependents, .. }) => {
                info!(clone_id = %record.id, ?dependents, "keeping the clone's dataset for its commits");
            }
            Err(error) => return Err((step, error.into())),
        }
        self.inner.servers.remove_socket_dir(record.port);
        self.inner.servers.quotas().remove(record.port);
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

    /// Stops the clone's server, whether this engine holds its handle or not, for a reset or
    /// a destroy: its data is thrown away, so no shutdown checkpoint writes it first. A start
    /// or stop of it (scale to zero) is over first, and the port comes back from the engine's
    /// listener (`wake.rs`), so that the server started next binds it.
    pub(crate) async fn discard_server(&self, record: &CloneRecord) -> Result<()> {
        let _turn = self.release_port(&record.id).await;
        let pgdata = self.inner.pool.pgdata_of(&storage::DatasetName::new(record.dataset.clone())?);
        self.inner.servers.discard(record, &pgdata).await
    }
}

/// A clone's view from its entry and its snapshot's view.
fn clone_view(
    entry: &CloneEntry,
    snapshot: Option<Arc<crate::SnapshotView>>,
    config: &crate::EngineConfig,
    servers: &crate::servers::Servers,
) -> CloneView {
    CloneView {
        record: entry.record.clone(),
        snapshot,
        limits: servers.limits_of(entry.record.limits),
        // A few small files of the cgroup file system, only for a limited clone.
        usage: servers.quotas().usage(entry.record.port),
        diff_size: entry.diff_size,
        referenced: entry.referenced,
        access_host: config.cloning.access_host.clone(),
        max_idle_minutes: config.cloning.max_idle_minutes,
    }
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
