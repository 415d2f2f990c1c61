//! The warm pool (design §9): clones started ahead of demand on the head of `main`, so that a
//! create which can use one only renames its log and sets up its role on a server that already
//! accepts connections.
//!
//! A warm clone is an ordinary clone dataset (`branch/main/<id>/r0`) with a running server, a
//! reserved port and an open admin session, recorded in the store's `warm_clones` table but not
//! shown anywhere a user's clones are. A create claims one in the same store transaction that
//! records the user's clone. One filler task keeps the pool at its size on the current head and
//! discards warm clones of any other snapshot; it holds the snapshot lock while it makes one, so
//! a snapshot deletion never races a warm clone being made from it. A restart discards whatever
//! an earlier run left (see [`Engine::discard_leftover_warm`]); shutdown discards the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use postgres::{Admin, Instance};
use storage::DatasetName;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Engine;
use crate::config::MAX_WARM_POOL_SIZE;
use crate::error::{Error, Result};
use crate::model::{CloneRecord, SnapshotRecord, WarmRecord};
use crate::servers::Server;

/// How long the filler waits before trying again after a failure, when nothing wakes it.
const RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// The largest recent burst sizes the pool for this long after it.
const BURST_MEMORY: Duration = Duration::from_secs(600);

/// How many warm clones to keep: the configured size, raised to the largest recent burst of
/// creates in flight at once (so that a burst like it finds its clones started), never above
/// [`MAX_WARM_POOL_SIZE`]; a pool that is off stays off. Creates one after another are no
/// burst: the pool refills between them.
pub(crate) fn target_size(configured: usize, largest_burst: usize) -> usize {
    if configured == 0 {
        return 0;
    }
    configured.max(largest_burst.min(MAX_WARM_POOL_SIZE))
}

/// The warm clones that are ready, and the filler's wake-up call.
#[derive(Debug, Default)]
pub(crate) struct WarmPool {
    ready: Mutex<Vec<WarmClone>>,
    wake: tokio::sync::Notify,
    /// Whether the filler is making a warm clone, which holds a port meanwhile.
    making: AtomicBool,
    /// Wakes creates waiting for a warm clone in the making to be ready (or to fail).
    settled: tokio::sync::Notify,
    /// Creates in flight now.
    in_flight: AtomicUsize,
    /// When creates arrived and how many were then in flight, over the last [`BURST_MEMORY`],
    /// oldest first.
    creates: Mutex<VecDeque<(Instant, usize)>>,
}

/// A warm clone that is ready to be claimed.
#[derive(Debug)]
pub(crate) struct WarmClone {
    pub(crate) record: WarmRecord,
    instance: Instance,
    /// The session that confirmed the start, kept so that a claim sets the role up at once.
    admin: Admin,
}

impl WarmClone {
    /// Whether its server and the engine's session to it are still up.
    fn is_alive(&self) -> bool {
        self.instance.is_running() && !self.admin.is_closed()
    }
}

impl WarmPool {
    fn ready(&self) -> MutexGuard<'_, Vec<WarmClone>> {
        // Only whole entries are pushed and removed; a panic cannot leave one half-made.
        crate::sync::lock(&self.ready)
    }

    /// How many warm clones are ready.
    pub(crate) fn len(&self) -> usize {
        self.ready().len()
    }

    /// Takes a warm clone of `snapshot_id` whose server is still up, if one is ready.
    pub(crate) fn take(&self, snapshot_id: &str) -> Option<WarmClone> {
        let mut ready = self.ready();
        let index = ready
            .iter()
            .position(|warm| warm.record.snapshot_id == snapshot_id && warm.is_alive())?;
        Some(ready.swap_remove(index))
    }

    /// Takes any warm clone, for its port.
    pub(crate) fn take_any(&self) -> Option<WarmClone> {
        self.ready().pop()
    }

    /// Puts back a warm clone that a create took but could not use.
    pub(crate) fn put_back(&self, warm: WarmClone) {
        self.ready().push(warm);
    }

    fn take_where(&self, condition: impl Fn(&WarmClone) -> bool) -> Vec<WarmClone> {
        let mut ready = self.ready();
        let (taken, kept) =
            std::mem::take(&mut *ready).into_iter().partition(|warm: &WarmClone| condition(warm));
        *ready = kept;
        taken
    }

    /// Whether a warm clone is being made.
    pub(crate) fn making(&self) -> bool {
        self.making.load(Ordering::SeqCst)
    }

    /// Resolves when a warm clone in the making is ready or has failed; enable it before
    /// checking [`WarmPool::making`].
    pub(crate) fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }

    /// Wakes the filler: the pool lost a clone or the head of `main` may have moved.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Notes a create that begins, which sizes the pool for the next burst; call
    /// [`WarmPool::end_create`] when it has its server.
    pub(crate) fn begin_create(&self, at: Instant) {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut creates = crate::sync::lock(&self.creates);
        forget_before(&mut creates, at);
        creates.push_back((at, in_flight));
    }

    /// Notes a create that [`WarmPool::begin_create`] noted has ended.
    pub(crate) fn end_create(&self) {
        let _ =
            self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// The most creates in flight at once in the last [`BURST_MEMORY`] before `now`.
    pub(crate) fn recent_burst(&self, now: Instant) -> usize {
        let mut creates = crate::sync::lock(&self.creates);
        forget_before(&mut creates, now);
        creates.iter().map(|(_, in_flight)| *in_flight).max().unwrap_or(0)
    }

    /// How many ready warm clones each snapshot has, most first (then by snapshot ID).
    pub(crate) fn ready_by_snapshot(&self) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let ready = self.ready();
        for warm in ready.iter() {
            *counts.entry(warm.record.snapshot_id.as_str()).or_default() += 1;
        }
        let mut counts: Vec<(String, usize)> =
            counts.into_iter().map(|(id, count)| (id.to_owned(), count)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    /// Takes the ready warm clones beyond `size`, newest first.
    fn take_excess(&self, size: usize) -> Vec<WarmClone> {
        let mut ready = self.ready();
        let excess = ready.len().saturating_sub(size);
        let keep = ready.len() - excess;
        ready.split_off(keep)
    }
}

/// Drops the creates older than [`BURST_MEMORY`] before `now`.
fn forget_before(creates: &mut VecDeque<(Instant, usize)>, now: Instant) {
    while creates.front().is_some_and(|(at, _)| now.duration_since(*at) > BURST_MEMORY) {
        creates.pop_front();
    }
}

impl Engine {
    /// Runs the filler until the engine shuts down, then discards the warm clones.
    pub(crate) fn spawn_warm_pool(&self) {
        let engine = self.clone();
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(
            async move {
                loop {
                    engine.fill_warm_pool().await;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = engine.inner.warm.wake.notified() => {}
                        () = tokio::time::sleep(RETRY_INTERVAL) => {}
                    }
                }
                engine.discard_warm_where(|_| true).await;
            }
            .instrument(info_span!("loop", name = "warm_pool")),
        );
    }

    /// Discards warm clones that are not on the head of `main`, and those beyond the pool's
    /// size once a burst is forgotten, then makes new ones until the pool is full, the ports
    /// run out, or one fails.
    async fn fill_warm_pool(&self) {
        let size = self.warm_target();
        let target = self.resolve_snapshot(None, None).ok();
        let target_id = target.as_ref().map(|snapshot| snapshot.id.clone());
        self.discard_warm_where(|warm| {
            Some(&warm.record.snapshot_id) != target_id.as_ref() || !warm.is_alive()
        })
        .await;
        for warm in self.inner.warm.take_excess(size) {
            self.discard_warm(warm).await;
        }
        let Some(target) = target else { return };
        while self.inner.warm.len() < size && !self.inner.cancel.is_cancelled() {
            let _serial = self.inner.snapshot_lock.lock().await;
            // The head may have moved while this waited for the lock; the change woke the
            // filler, which starts over on the new head.
            if self.resolve_snapshot(None, None).ok().map(|head| head.id) != target_id {
                return;
            }
            let started = Instant::now();
            self.inner.warm.making.store(true, Ordering::SeqCst);
            let made = self.make_warm(&target).await;
            if let Ok(warm) = &made {
                debug!(warm_id = %warm.record.id, port = warm.record.port, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "warm clone ready");
            }
            // Ready (or failed) before anyone waiting hears of it.
            let made = made.map(|warm| self.inner.warm.put_back(warm));
            self.inner.warm.making.store(false, Ordering::SeqCst);
            self.inner.warm.settled.notify_waiters();
            match made {
                Ok(()) => {}
                Err(Error::NoCapacity(reason)) => {
                    debug!(%reason, "warm pool not filled: no free port");
                    return;
                }
                // Nothing failed: the pool keeps its space for clones that were asked for.
                Err(Error::NoSpace(reason)) => {
                    debug!(%reason, "warm pool not filled: the pool is out of space");
                    return;
                }
                Err(error) => {
                    warn!(error = %error, "failed to make a warm clone; retrying later");
                    self.inner.metrics.warm_failures.inc();
                    return;
                }
            }
        }
    }

    async fn make_warm(&self, snapshot: &SnapshotRecord) -> Result<WarmClone> {
        self.ensure_space("make warm clone").await?;
        let id = crate::clone::generate_id();
        let (_, dataset) = self.free_clone_dataset(&snapshot.branch, &id, 0)?;
        let port = self.inner.ports.reserve()?;
        let record = WarmRecord {
            id,
            snapshot_id: snapshot.id.clone(),
            branch: snapshot.branch.clone(),
            dataset: dataset.to_string(),
            port: port.port(),
            created_at: Utc::now(),
        };
        self.inner.store.insert_warm(&record)?;
        // The warm clone's record holds the port from now on.
        port.keep();
        let started = self.clone_and_start(&snapshot.id, &dataset, Server::of_warm(&record)).await;
        let made = match started {
            Ok((mut instance, _)) => match self.prepare_warm(&mut instance).await {
                Ok(admin) => Ok(WarmClone { record: record.clone(), instance, admin }),
                Err(error) => {
                    self.abandon(instance, &dataset).await;
                    Err(error)
                }
            },
            Err(error) => Err(error),
        };
        if made.is_err() {
            self.forget_warm(&record);
        }
        made
    }

    /// What every clone gets whoever claims it: the source's passwords removed (unless kept).
    async fn prepare_warm(&self, instance: &mut Instance) -> Result<Admin> {
        let admin = instance.admin().await?;
        self.inner.servers.reset_passwords(&admin, &[]).await?;
        Ok(admin)
    }

    /// A claimed warm clone becomes `record`'s: its log takes the clone's name and the clone's
    /// role is set up over the open admin session. On failure nothing is left but the record.
    pub(crate) async fn finish_claim(
        &self,
        record: &CloneRecord,
        warm: WarmClone,
    ) -> Result<Instance> {
        let started = Instant::now();
        let WarmClone { record: warm_record, instance, admin } = warm;
        self.inner.servers.rename_log(&warm_record.id, &record.id);
        // The source's passwords went when the warm clone was made.
        match self.inner.servers.create_clone_role(&admin, record).await {
            Ok(()) => {
                debug!(clone_id = %record.id, warm_id = %warm_record.id, role_ms = started.elapsed().as_secs_f64() * 1000.0, "warm clone claimed");
                Ok(instance)
            }
            Err(error) => {
                drop(admin);
                self.abandon(instance, &DatasetName::new(record.dataset.clone())?).await;
                Err(error)
            }
        }
    }

    /// A reset's claim (`provision.rs`): a ready warm clone of the snapshot the clone is reset
    /// to becomes the clone's server, instead of a cold start. The clone keeps its ID, port,
    /// credentials and protection: the engine holds its port, as after a wake, and carries its
    /// connections to the warm server's socket, which keeps the warm clone's port
    /// ([`CloneRecord::server_port`]) until it stops. `None` when no warm clone fits (the
    /// clone has settings or limits of its own, none is ready) or its port cannot be held;
    /// the caller then makes the clone cold. The clone must be `RESETTING`, its old server
    /// gone.
    pub(crate) async fn claim_warm_for_reset(
        &self,
        record: &CloneRecord,
    ) -> Option<Result<(CloneRecord, Instance)>> {
        // A warm clone runs with the configuration's settings and limits only.
        if !record.extra_conf.is_empty() || !record.limits.is_empty() {
            return None;
        }
        let warm = self.inner.warm.take(&record.snapshot_id)?;
        if let Err(error) = self.open_front(record) {
            warn!(clone_id = %record.id, error = %error, "a reset cannot hold the clone's port; no warm clone claimed");
            self.inner.warm.put_back(warm);
            return None;
        }
        let claimed = self.inner.state.transition_claiming(
            &self.inner.store,
            &record.id,
            crate::state::PROVISIONING,
            &warm.record.id,
            |stored| {
                stored.dataset = warm.record.dataset.clone();
                stored.revision = 0;
                stored.server_port = Some(warm.record.port);
                Ok(())
            },
        );
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                warn!(clone_id = %record.id, error = %error, "failed to record a reset's warm claim");
                self.close_front(&record.id);
                self.inner.warm.put_back(warm);
                return None;
            }
        };
        // A warm clone an earlier reset claimed: its server is gone, and the record no longer
        // names its port.
        self.release_server_port(record.server_port);
        self.inner.metrics.warm_hits.inc();
        self.inner.warm.wake();
        info!(clone_id = %record.id, warm_id = %warm.record.id, port = record.port, server_port = warm.record.port, "reset claims a warm clone");
        Some(self.finish_claim(&claimed, warm).await.map(|instance| (claimed, instance)))
    }

    /// Removes a warm clone whose port a create took: its server, its dataset, then its record;
    /// the port stays taken, by the clone.
    pub(crate) async fn dispose_evicted(&self, warm: WarmClone) {
        let WarmClone { record, instance, admin } = warm;
        drop(admin);
        info!(warm_id = %record.id, port = record.port, "warm clone gives its port to a clone");
        self.remove_warm_resources(&record, Some(instance)).await;
        if let Err(error) = self.inner.store.delete_warm(&record.id) {
            warn!(warm_id = %record.id, error = %error, "failed to forget a warm clone");
        }
    }

    /// Discards the ready warm clones that `condition` picks: servers stopped, datasets
    /// destroyed, ports released, records forgotten.
    pub(crate) async fn discard_warm_where(&self, condition: impl Fn(&WarmClone) -> bool) {
        for warm in self.inner.warm.take_where(condition) {
            self.discard_warm(warm).await;
        }
    }

    async fn discard_warm(&self, warm: WarmClone) {
        let WarmClone { record, instance, admin } = warm;
        drop(admin);
        debug!(warm_id = %record.id, snapshot_id = %record.snapshot_id, "discarding warm clone");
        self.remove_warm_resources(&record, Some(instance)).await;
        self.forget_warm(&record);
    }

    /// Removes what an earlier run's warm clones left (after a crash, or a restart): their
    /// servers, found on their data directories, their datasets and their records. Runs before
    /// reconciliation, which would otherwise report their datasets as orphans.
    pub(crate) async fn discard_leftover_warm(&self) {
        let leftovers = match self.inner.store.warm_clones() {
            Ok(leftovers) => leftovers,
            Err(error) => {
                warn!(error = %error, "failed to read the warm pool's records");
                return;
            }
        };
        for record in leftovers {
            info!(warm_id = %record.id, dataset = %record.dataset, "removing a warm clone left by an earlier run");
            self.remove_warm_resources(&record, None).await;
            if let Err(error) = self.inner.store.delete_warm(&record.id) {
                warn!(warm_id = %record.id, error = %error, "failed to forget a warm clone");
            }
        }
    }

    async fn remove_warm_resources(&self, record: &WarmRecord, instance: Option<Instance>) {
        let Ok(dataset) = DatasetName::new(record.dataset.clone()) else {
            warn!(dataset = %record.dataset, "a warm clone's record names an invalid dataset");
            return;
        };
        let instance = match instance {
            Some(instance) => Some(instance),
            None => {
                let pgdata = self.inner.pool.pgdata_of(&dataset);
                self.inner.servers.adopt_if_running(Server::of_warm(record), &pgdata).await
            }
        };
        match instance {
            Some(instance) => self.abandon(instance, &dataset).await,
            None => self.destroy_clone_dataset(&dataset).await,
        }
        self.inner.servers.remove_log(&record.id);
        self.inner.servers.quotas().remove(record.port);
    }

    fn forget_warm(&self, record: &WarmRecord) {
        if let Err(error) = self.inner.store.delete_warm(&record.id) {
            warn!(warm_id = %record.id, error = %error, "failed to forget a warm clone");
        }
        self.inner.ports.release(record.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_grows_to_the_largest_recent_burst_within_bounds() {
        assert_eq!(target_size(0, 50), 0, "a pool that is off stays off");
        assert_eq!(target_size(2, 0), 2);
        assert_eq!(target_size(2, 10), 10);
        assert_eq!(target_size(8, 3), 8);
        assert_eq!(target_size(2, 500), MAX_WARM_POOL_SIZE);
    }

    #[test]
    fn a_burst_is_the_most_creates_in_flight_at_once_and_is_forgotten() {
        let pool = WarmPool::default();
        let start = Instant::now();
        // One after another: never more than one in flight.
        for n in 0..5 {
            pool.begin_create(start + Duration::from_millis(n));
            pool.end_create();
        }
        assert_eq!(pool.recent_burst(start + Duration::from_secs(1)), 1);
        // Ten at once, then they end.
        for n in 0..10 {
            pool.begin_create(start + Duration::from_secs(2) + Duration::from_millis(n));
        }
        for _ in 0..10 {
            pool.end_create();
        }
        assert_eq!(pool.recent_burst(start + Duration::from_secs(60)), 10);
        let later = start + Duration::from_secs(2) + BURST_MEMORY + Duration::from_secs(1);
        assert_eq!(pool.recent_burst(later), 0);
        // An extra end never wraps the count below zero.
        pool.end_create();
        pool.begin_create(later);
        assert_eq!(pool.recent_burst(later), 1);
    }
}
