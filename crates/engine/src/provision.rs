//! Provisioning: the slow parts of a create and a reset, run in the background. A clone's
//! dataset is cloned from its snapshot, its server started and its role set up; a reset
//! replaces the dataset (moving to the next revision when commits hold the old one); the
//! outcome is recorded through the clone transition.

use std::time::{Duration, Instant};

use api_types::WebhookEvent;
use chrono::Utc;
use postgres::Instance;
use storage::{DestroyMode, ThinStorage};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::{Error, Result};
use crate::events::clone_payload;
use crate::model::{CloneRecord, CloneState};
use crate::servers::Server;
use crate::state;
use crate::{Engine, failpoint};

impl Engine {
    /// Makes the clone's dataset from its snapshot, starts its server and sets up its role.
    pub(crate) async fn provision(&self, record: &CloneRecord) -> Result<Instance> {
        let dataset = storage::DatasetName::new(record.dataset.clone())?;
        let started = Instant::now();
        let (mut instance, cloned) =
            self.clone_and_start(&record.snapshot_id, &dataset, Server::of_clone(record)).await?;
        let configured = match instance.admin().await {
            Ok(admin) => self.inner.servers.configure_roles(&admin, record).await,
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

    /// Clones `snapshot_id` into `dataset` and starts `server` on it; returns the server and
    /// how long the storage clone took. On failure no dataset is left behind.
    pub(crate) async fn clone_and_start(
        &self,
        snapshot_id: &str,
        dataset: &storage::DatasetName,
        server: Server<'_>,
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
        let storage = self.inner.pool.storage();
        storage.clone_snapshot(&snapshot_name, dataset).await?;
        failpoint::hit("clone.dataset_created");
        // Every new dataset of a clone gets its quota (a create, a reset, a warm clone): a
        // clone, unlike its origin, starts without one.
        if let Some(disk) = self.inner.servers.limits_of(server.own_limits()).disk
            && let Err(error) = storage.set_quota(dataset, disk).await
        {
            self.destroy_clone_dataset(dataset).await;
            return Err(error.into());
        }
        let cloned = started.elapsed();
        match self.inner.servers.start(server, &self.inner.pool.pgdata_of(dataset)).await {
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
        self.inner.servers.stop_now(instance).await;
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

    /// Rebuilds a clone in the background (reset, or an interrupted create or reset after a
    /// restart) and records the outcome.
    pub(crate) fn spawn_rebuild(&self, record: CloneRecord, event: WebhookEvent) {
        let engine = self.clone();
        let span = info_span!("rebuild_clone", clone_id = %record.id);
        self.inner
            .tasks
            .spawn(async move { engine.rebuild_and_record(record, event).await }.instrument(span));
    }

    /// Rebuilds a clone and records the outcome: `OK`, or `FATAL` with the error.
    pub(crate) async fn rebuild_and_record(&self, record: CloneRecord, event: WebhookEvent) {
        let started = Instant::now();
        match self.rebuild(record.clone()).await {
            Ok((record, instance)) => {
                self.finish_provisioning(&record, Ok(instance), started, event);
            }
            Err(error) => self.finish_provisioning(&record, Err(error), started, event),
        }
    }

    /// Reset's slow part: stop, replace the dataset, start, reapply the role.
    async fn rebuild(&self, mut record: CloneRecord) -> Result<(CloneRecord, Instance)> {
        self.discard_server(&record).await?;
        let dataset = storage::DatasetName::new(record.dataset.clone())?;
        let mut revision = record.revision;
        match self.inner.pool.storage().destroy_dataset(&dataset, DestroyMode::Refuse).await {
            Ok(()) | Err(storage::Error::NotFound(_)) => {}
            // Commits were made from this revision: keep it, move to the next one.
            Err(storage::Error::HasDependents { .. }) => revision += 1,
            Err(error) => return Err(error.into()),
        }
        failpoint::hit("reset.dataset_destroyed");
        // A ready warm clone of the snapshot takes the old server's place at once.
        if let Some(claimed) = self.claim_warm_for_reset(&record).await {
            self.remove_empty_clone_parent(&dataset).await;
            return claimed;
        }
        // A reset may also move the clone to another branch, whose directory it then lives in.
        let (revision, target) = self.free_clone_dataset(&record.branch, &record.id, revision)?;
        // A warm clone an earlier reset claimed: the new server takes the clone's own port.
        let server_port = record.server_port.take();
        if target.as_str() != record.dataset || server_port.is_some() {
            // Moving to another branch, or off a claimed warm clone's dataset, can leave the
            // old parent empty.
            self.remove_empty_clone_parent(&dataset).await;
            record.revision = revision;
            record.dataset = target.to_string();
            self.transition(&record.id, state::PROVISIONING, |stored| {
                stored.revision = record.revision;
                stored.dataset = record.dataset.clone();
                stored.server_port = None;
                Ok(())
            })?;
            self.release_server_port(server_port);
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
                self.inner.servers.insert(&id, instance);
                let updated = self.transition(&id, state::PROVISIONING, |stored| {
                    stored.state = CloneState::Ok;
                    stored.state_message =
                        "Clone is ready to accept Postgres connections.".to_owned();
                    stored.cloning_time_seconds = Some(elapsed);
                    stored.stopped_at = None;
                    Ok(())
                });
                match updated {
                    Ok(record) => {
                        self.inner.state.touch(&id, Utc::now());
                        self.inner.metrics.clone_ready.observe(elapsed);
                        info!(clone_id = %id, port = record.port, elapsed_ms = elapsed * 1000.0, "clone ready");
                        self.inner.events.emit(&clone_payload(
                            event,
                            &record,
                            &self.config().cloning.access_host,
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
                if let Err(store_error) = self.transition(&id, state::PROVISIONING, |stored| {
                    stored.state = CloneState::Fatal;
                    stored.state_message = message.clone();
                    Ok(())
                }) {
                    warn!(clone_id = %id, error = %store_error, "failed to record a failed clone");
                }
            }
        }
    }
}

/// Milliseconds, for the timings in the log.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
