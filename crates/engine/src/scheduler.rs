//! The engine's background loops: the lease checker, idle cleanup, the retention sweeper, the
//! space collector, the sync instance's supervisor, the renewal of the clones' server
//! certificates and, when retrieval has a timetable, scheduled full refreshes.
//!
//! Each loop runs on the engine's task tracker and stops when its cancellation token fires.
//! Every pass reads its interval and whether it is enabled from the configuration, so that a
//! changed configuration takes effect at the next pass. A loop's work never holds the state
//! lock across a wait, so the API stays responsive while a check talks to dozens of clones.

use std::time::{Duration, Instant};

use api_types::WebhookEvent;
use chrono::{DateTime, Utc};
use storage::{DatasetName, ThinStorage};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Engine;
use crate::config::{EngineConfig, minutes};
use crate::error::Error;
use crate::events::{clone_payload, expiring_payload};
use crate::lease::{self, LeaseAction, Protection};
use crate::model::{CloneRecord, CloneState};
use crate::state;
use crate::usage;

/// How a lease check says, under the lock, that a clone needs nothing.
const NOTHING_TO_DO: &str = "the lease needs nothing";

/// How often pool and clone sizes are collected for `/status` and `/metrics` (DBLab: 15 s).
pub(crate) const COLLECT_INTERVAL: Duration = Duration::from_secs(15);

pub(crate) fn spawn_loops(engine: &Engine) {
    spawn_every(
        engine,
        "lease_checker",
        |config| config.cloning.protection_check_interval,
        |_| true,
        FirstRun::AtStart,
        |engine| async move {
            engine.check_leases();
        },
    );
    spawn_every(
        engine,
        "idle_cleanup",
        |config| config.cloning.idle_check_interval,
        |config| config.cloning.max_idle_minutes > 0.0,
        FirstRun::AtStart,
        |engine| async move {
            engine.clean_up_idle().await;
        },
    );
    spawn_every(
        engine,
        "idle_stop",
        |config| config.cloning.idle_check_interval,
        |config| !config.cloning.stop_idle_after.is_zero(),
        FirstRun::AfterInterval,
        |engine| async move {
            engine.stop_idle().await;
        },
    );
    spawn_every(
        engine,
        "retention_sweeper",
        |config| config.retention.check_interval,
        |_| true,
        FirstRun::AfterInterval,
        |engine| async move {
            let report = engine.sweep().await;
            if report != crate::SweepReport::default() {
                debug!(?report, "retention sweep");
            }
        },
    );
    spawn_every(
        engine,
        "space_collector",
        |_| COLLECT_INTERVAL,
        |_| true,
        FirstRun::AtStart,
        |engine| async move {
            engine.collect_space().await;
        },
    );
    spawn_every(
        engine,
        "certificate_renewal",
        |config| config.tls.check_interval,
        |config| config.tls.enabled,
        FirstRun::AfterInterval,
        |engine| async move {
            engine.renew_certificates().await;
        },
    );
    // Always: a reload may add retrieval or set its timetable.
    spawn_timetable(engine);
    if engine.live_retrieval().is_some_and(|live| live.snapshot_timetable().is_some()) {
        spawn_snapshot_timetable(engine);
    }
    spawn_sync_supervisor(engine);
}

/// Supervises the sync instance (physical mode) every `health_interval` of its settings, read
/// at every pass like the other loops' configuration: a pass with no sync instance recorded
/// does nothing but say so.
fn spawn_sync_supervisor(engine: &Engine) {
    let engine = engine.clone();
    let cancel = engine.inner.cancel.clone();
    engine.inner.tasks.clone().spawn(
        async move {
            loop {
                let started = tokio::time::Instant::now();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = engine.supervise_sync() => {}
                }
                let next = started + engine.sync_health_interval();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep_until(next) => {}
                }
            }
            debug!("loop stopped");
        }
        .instrument(info_span!("loop", name = "sync_supervisor")),
    );
}

/// Runs full refreshes on the retrieval timetable.
fn spawn_timetable(engine: &Engine) {
    let engine = engine.clone();
    let cancel = engine.inner.cancel.clone();
    engine.inner.tasks.clone().spawn(
        async move {
            loop {
                engine.update_next_refresh();
                let Some(next) = engine.retrieval().next_refresh else {
                    // No timetable: wait for a reload that may set one.
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = engine.inner.reconfigured.notified() => continue,
                    }
                };
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = engine.inner.reconfigured.notified() => continue,
                    () = tokio::time::sleep(wait) => {}
                }
                match engine.full_refresh() {
                    Ok(()) => info!("scheduled full refresh started"),
                    Err(error) => warn!(error = %error, "scheduled full refresh skipped"),
                }
                // Never fire twice for the same minute.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(info_span!("loop", name = "refresh_timetable")),
    );
}

/// Cuts snapshots from the sync instance on `[retrieval.physical]` or `[retrieval.continuous]`
/// `snapshot_timetable`.
fn spawn_snapshot_timetable(engine: &Engine) {
    let engine = engine.clone();
    let cancel = engine.inner.cancel.clone();
    engine.inner.tasks.clone().spawn(
        async move {
            while let Some(next) = engine.next_physical_snapshot(Utc::now()) {
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                match engine.create_snapshot().await {
                    Ok(view) => info!(head = %view.record.id, "scheduled snapshot done (or skipped: no new data)"),
                    Err(error) => {
                        warn!(error = %error, "scheduled snapshot failed; earlier snapshots are untouched");
                        engine.refresh_state().alert(
                            "snapshot_failed",
                            "error",
                            format!("a scheduled snapshot of the sync instance failed: {error}"),
                        );
                    }
                }
                // Never fire twice for the same minute.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(info_span!("loop", name = "snapshot_timetable")),
    );
}

/// When a loop first runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirstRun {
    /// At once, then every interval.
    AtStart,
    /// One interval after start: for work that must not race the engine's first requests.
    AfterInterval,
}

/// Runs `work` every `interval` of the configuration while `enabled` says so, both read
/// at every pass. A pass that outlasts its interval delays the next one rather than bunching
/// them up.
fn spawn_every<F, Fut>(
    engine: &Engine,
    name: &'static str,
    interval: fn(&EngineConfig) -> Duration,
    enabled: fn(&EngineConfig) -> bool,
    first: FirstRun,
    work: F,
) where
    F: Fn(Engine) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let engine_for_loop = engine.clone();
    let cancel = engine.inner.cancel.clone();
    engine.inner.tasks.spawn(
        async move {
            let engine = engine_for_loop;
            let mut next = match first {
                FirstRun::AtStart => tokio::time::Instant::now(),
                FirstRun::AfterInterval => tokio::time::Instant::now() + interval(&engine.config()),
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep_until(next) => {}
                }
                let started = tokio::time::Instant::now();
                if enabled(&engine.config()) {
                    work(engine.clone()).await;
                }
                next = started + interval(&engine.config());
            }
            debug!("loop stopped");
        }
        .instrument(info_span!("loop", name)),
    );
}

impl Engine {
    /// One pass of the lease checker: warn about leases ending soon, lift expired ones.
    ///
    /// Each decision is made again under the state lock, on the record as it is then: a
    /// request may have renewed or lifted the protection since the list was read.
    pub(crate) fn check_leases(&self) {
        let now = Utc::now();
        let config = &self.config().cloning;
        // A first look on a copy picks the clones that may need something, so that the write
        // lock is taken only for them.
        let ids: Vec<String> = self
            .read_state()
            .clones
            .values()
            .map(|entry| &entry.record)
            .filter(|record| {
                let protection =
                    Protection { protected: record.protected, till: record.protected_till };
                lease::check(protection, record.protection_warning_sent, config, now)
                    != LeaseAction::None
            })
            .map(|record| record.id.clone())
            .collect();
        for id in ids {
            let mut action = LeaseAction::None;
            let updated = self.transition(&id, state::ANY, |record| {
                let protection =
                    Protection { protected: record.protected, till: record.protected_till };
                action = lease::check(protection, record.protection_warning_sent, config, now);
                match action {
                    LeaseAction::None => return Err(Error::Refused(NOTHING_TO_DO.to_owned())),
                    LeaseAction::Warn { .. } => record.protection_warning_sent = true,
                    LeaseAction::Expire => {
                        record.protected = false;
                        record.protected_till = None;
                        record.protection_warning_sent = false;
                    }
                }
                Ok(())
            });
            let record = match updated {
                Ok(record) => record,
                Err(Error::Refused(reason)) if reason == NOTHING_TO_DO => continue,
                // Destroyed meanwhile: nothing to check.
                Err(Error::NotFound(_)) => continue,
                Err(error) => {
                    warn!(clone_id = %id, error = %error, "failed to record a lease change");
                    continue;
                }
            };
            match action {
                LeaseAction::None => {}
                LeaseAction::Warn { till, expires_in_hours } => {
                    info!(clone_id = %id, %till, "clone protection expiring");
                    self.inner.events.emit(&expiring_payload(
                        &record,
                        &config.access_host,
                        till,
                        expires_in_hours,
                    ));
                }
                LeaseAction::Expire => {
                    info!(clone_id = %id, "clone protection expired");
                    self.inner.events.emit(&clone_payload(
                        WebhookEvent::CloneProtectionExpired,
                        &record,
                        &config.access_host,
                    ));
                }
            }
        }
    }

    /// One pass of idle cleanup: a clone with no sessions and no activity for
    /// `max_idle_minutes`, not protected, is destroyed (a `FATAL` one once it is that old).
    pub(crate) async fn clean_up_idle(&self) {
        let max_idle = minutes(self.config().cloning.max_idle_minutes);
        let Ok(max_idle) = chrono::Duration::from_std(max_idle) else { return };
        let candidates: Vec<(CloneRecord, DateTime<Utc>)> = self
            .read_state()
            .clones
            .values()
            .map(|entry| (entry.record.clone(), entry.last_active))
            .collect();
        for (record, last_active) in candidates {
            let now = Utc::now();
            let protection =
                Protection { protected: record.protected, till: record.protected_till };
            if protection.is_active(now) {
                continue;
            }
            let idle = match record.state {
                // A stopped clone has had no session since it stopped.
                CloneState::Ok if record.stopped_at.is_some() => {
                    now - record.stopped_at.map_or(last_active, |at| at.max(last_active))
                        >= max_idle
                }
                CloneState::Ok => {
                    let last_active = self.observe_activity(&record, last_active).await;
                    now - last_active >= max_idle
                }
                CloneState::Fatal => now - record.created_at >= max_idle,
                CloneState::Creating
                | CloneState::Resetting
                | CloneState::Deleting
                | CloneState::Exporting => false,
            };
            if !idle {
                continue;
            }
            info!(clone_id = %record.id, "destroying idle clone");
            let deleting = self.transition(&record.id, state::SETTLED, |stored| {
                // Re-check under the lock: a request may have protected or changed it.
                let protection =
                    Protection { protected: stored.protected, till: stored.protected_till };
                if protection.is_active(Utc::now()) {
                    return Err(Error::Refused("changed during the idle check".to_owned()));
                }
                stored.state = CloneState::Deleting;
                stored.state_message = "Clone is being deleted: idle.".to_owned();
                Ok(())
            });
            if let Ok(record) = deleting
                && let Err(error) = self.teardown(&record).await
            {
                warn!(clone_id = %record.id, error = %error, "failed to destroy idle clone");
            }
        }
    }

    /// Asks the clone's server about its sessions and returns when it was last active; a
    /// clone whose server cannot be asked counts as active, so a glitch never deletes one.
    pub(crate) async fn observe_activity(
        &self,
        record: &CloneRecord,
        last_active: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let activity = match self.inner.servers.admin_session(record).await {
            Ok(admin) => admin.activity().await,
            Err(error) => Err(error),
        };
        let now = Utc::now();
        let seen = match activity {
            Ok(activity) if activity.sessions > 0 => now,
            Ok(activity) => activity
                .last_activity
                .map(DateTime::<Utc>::from)
                .map_or(last_active, |last| last.max(last_active)),
            Err(error) => {
                warn!(clone_id = %record.id, error = %error, "failed to read clone activity");
                now
            }
        };
        self.inner.state.touch(&record.id, seen);
        seen
    }

    /// Refreshes the pool's space, what its snapshots hold and how it compresses, and each
    /// clone's written and referenced bytes, and records how it went for the `dblab_scrape_*`
    /// metrics.
    ///
    /// At 1,000 clones this must stay cheap: the servers' processes come from one pass over
    /// `/proc` on a blocking thread, and a clone's written bytes (a walk of its files) are
    /// measured again only when its server wrote since the last measure, or after
    /// [`usage::REMEASURE_EVERY`] rounds while it runs (a session that wrote and ended between
    /// two rounds leaves no counter behind); a stopped clone's, never until it runs again.
    /// The `space_collector` loop runs it every
    /// 15 s; callers that need figures at once (tests, tools) may run a pass
    /// themselves.
    pub async fn collect_space(&self) {
        let started = Instant::now();
        let mut errors = 0;
        self.refresh_space().await;
        // Each step's end is logged with the round (debug), so a slow round says which step
        // it was: this one commits what the clones wrote (syncfs) before reading the space.
        let space_ms = crate::provision::ms(started.elapsed());
        self.inner.servers.refresh_extensions();
        let postmasters = self.inner.servers.postmasters();
        let now = Instant::now();
        let samples = tokio::task::spawn_blocking(move || usage::sample(&postmasters))
            .await
            .unwrap_or_default();
        let clones: Vec<(String, String)> = self
            .read_state()
            .clones
            .values()
            .filter(|entry| entry.record.state == CloneState::Ok)
            .map(|entry| (entry.record.id.clone(), entry.record.dataset.clone()))
            .collect();
        let due = crate::sync::lock(&self.inner.usage).due_for_size(&clones, &samples);
        let sampled_ms = crate::provision::ms(started.elapsed());
        for (id, dataset) in clones {
            if !due.contains(&id) {
                continue;
            }
            let Ok(name) = DatasetName::new(dataset.as_str()) else { continue };
            match self.inner.pool.storage().dataset_space(&name).await {
                Ok(space) => {
                    self.inner.state.set_disk_usage(&id, space);
                    crate::sync::lock(&self.inner.usage).sized(&id, &dataset, &samples);
                }
                Err(error) => {
                    errors += 1;
                    debug!(clone_id = %id, error = %error, "failed to read clone size");
                }
            }
        }
        crate::sync::lock(&self.inner.usage).record(&samples, now);
        let sized_ms = crate::provision::ms(started.elapsed());
        let snapshots: Vec<String> =
            self.read_state().snapshots.iter().map(|snapshot| snapshot.id.clone()).collect();
        let pool_due = crate::sync::lock(&self.inner.usage).pool_due(&snapshots);
        if pool_due {
            match self.inner.pool.storage().pool_usage().await {
                Ok(pool) => crate::sync::lock(&self.inner.usage).pool_measured(snapshots, pool),
                Err(error) => {
                    errors += 1;
                    debug!(error = %error, "failed to read the pool's snapshot bytes");
                }
            }
        }
        // What destroyed clones' quotas left (btrfs qgroups); nothing when nothing was destroyed.
        match self.inner.pool.storage().clear_stale_quotas().await {
            Ok(0) => {}
            Ok(cleared) => debug!(cleared, "cleared the quota groups of destroyed datasets"),
            Err(error) => {
                errors += 1;
                debug!(error = %error, "failed to clear the quota groups of destroyed datasets");
            }
        }
        let elapsed = started.elapsed();
        debug!(
            space_ms,
            sampled_ms,
            sized_ms,
            sized = due.len(),
            pool_walked = pool_due,
            elapsed_ms = crate::provision::ms(elapsed),
            errors,
            "collection round"
        );
        self.inner.metrics.record_collection(elapsed, errors);
    }
}
