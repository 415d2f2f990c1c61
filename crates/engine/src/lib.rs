//! Scion's domain core: the [`Engine`] and everything it decides about clones, snapshots,
//! branches and leases.
//!
//! It knows nothing of HTTP, JSON framing or command-line parsing; the `http-api` and `server`
//! crates translate to and from it. State lives in three places, each the truth for one thing
//! (ARCHITECTURE.md): the [`store`] for what the engine promised, the pool for which datasets
//! exist, running processes for which clones are up. The in-memory copy of the store serves
//! every read, so `/status` and `/clones` never wait for a subprocess.

mod audit;
mod branch;
mod clone;
pub mod config;
mod continuous;
pub mod error;
mod events;
mod failpoint;
mod intent;
mod lease;
mod limits;
mod logs;
mod masking_check;
mod metrics;
mod model;
mod observation;
mod observer;
pub mod password;
mod physical;
mod point_in_time;
mod pool;
mod ports;
mod protection;
mod provision;
mod quota;
mod reconcile;
mod reconfigure;
mod refresh;
mod scheduler;
mod servers;
mod snapshot;
mod source_check;
mod space;
mod standby;
mod state;
pub mod store;
mod sweeper;
mod sync;
mod tls;
mod usage;
mod wake;
mod warm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::PgMajor;
use storage::{PoolSpace, ThinStorage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use branch::{BranchView, CommitView};
pub use clone::{CloneRequest, ResetTarget};
pub use config::{EngineConfig, TlsConfig};
pub use continuous::INTERRUPTED_REFRESH_KEY;
pub use error::{Error, Result};
pub use events::{EventSink, NoEvents, RecordedEvents};
pub use exec::Usage as CgroupUsage;
pub use lease::{Protection, ProtectionRequest};
pub use logs::{LogChunk, MAX_TAIL_BYTES};
pub use masking_check::MaskingCheck;
pub use metrics::InstanceHealth;
pub use model::{BranchRecord, CloneRecord, CloneState, SnapshotRecord};
pub use observation::{ObservationRecord, SessionResult};
pub use pool::{MinFreeSpace, Pool};
pub use protection::ProtectionUpdate;
pub use quota::{CloneLimits, parse_bytes};
pub use reconcile::{Difference, DifferenceKind, Reconciliation};
pub use reconfigure::{Reconfigured, split as split_reconfiguration};
pub use refresh::{RefreshAlert, RefreshStatus, RetrievalView};
pub use retrieval::Error as RetrievalError;
pub use retrieval::check::{Problem, ProblemKind, SourceReport as SourceCheckReport};
pub use retrieval::physical::promote::{Lsn, RecoveryTarget, WalPoint, WalWindow};
pub use servers::MajorExtensions;
pub use snapshot::SnapshotView;
pub use source_check::{PROPOSED_PASSWORD_ENV, SourceCheckRequest, SourceProbe};
pub use space::SpaceLevel;
pub use standby::{
    DEFAULT_HEALTH_INTERVAL, SyncCode, SyncKind, SyncSettings, SyncView, record_sync,
};
pub use sweeper::SweepReport;
pub use tls::ClientCertificate;

use crate::metrics::EngineMetrics;
use crate::ports::PortPool;
use crate::servers::Servers;
use crate::state::SharedState;
pub(crate) use crate::state::{CloneEntry, State};
use crate::store::Store;
use crate::sync::{read, write};

/// The branch every pool has from its first snapshot.
pub const MAIN_BRANCH: &str = "main";

/// What the engine is built from, besides its configuration.
#[derive(Debug)]
pub struct EngineDeps {
    /// The pool clones and snapshots live in.
    pub pool: Pool,
    /// The engine's own directory: its database, clone sockets and logs.
    pub state_dir: PathBuf,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// The version shown in `/healthz` and `/status`.
    pub version: String,
}

/// The engine: a cheap handle, shared by the HTTP handlers and the background loops.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The live configuration, replaced whole by [`Engine::reconfigure`]; readers take a
    /// snapshot through [`Engine::config`]. What needs a restart stays as at the start there.
    config: RwLock<Arc<EngineConfig>>,
    /// Woken by a reload, for loops that wait on something the configuration sets (the refresh
    /// timetable).
    reconfigured: tokio::sync::Notify,
    pool: Pool,
    store: Store,
    ports: PortPool,
    /// Every clone server: specs, binaries, OS user, sockets, logs, handles, roles.
    servers: Servers,
    state_dir: PathBuf,
    events: Arc<dyn EventSink>,
    /// The in-memory state; changed only through its own methods.
    state: SharedState,
    metrics: EngineMetrics,
    started_at: DateTime<Utc>,
    instance_id: String,
    version: String,
    reconciliation: RwLock<Reconciliation>,
    space: RwLock<Option<PoolSpace>>,
    /// Serialises snapshot creation and deletion, which read and rewrite branch heads.
    snapshot_lock: tokio::sync::Mutex<()>,
    /// One masking check at a time: its temporary server's socket lives in one run directory.
    masking_check_lock: tokio::sync::Mutex<()>,
    /// Retrieval, when configured: logical (a pipeline) or physical (an initial copy and
    /// promotions).
    retrieval: RwLock<Option<physical::Retrieval>>,
    refresh: Mutex<refresh::RefreshState>,
    refresh_running: AtomicBool,
    usage: Mutex<usage::UsageTracker>,
    warm: warm::WarmPool,
    /// The sync instance of physical mode.
    standby: standby::Standby,
    /// Observation sessions and their loops.
    observations: observation::Observations,
    /// Scale to zero: the ports the engine holds for stopped clones, each clone's power lock.
    fronts: wake::Fronts,
    /// Why the last destroy of a clone failed, for [`Engine::wait_destroyed`].
    destroy_failures: Mutex<HashMap<String, Error>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// The warm pool's fill, built from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPoolView {
    /// How many warm clones the pool keeps now ([`Engine::warm_target`]).
    pub target: usize,
    /// Whether a warm clone is being started.
    pub making: bool,
    /// Ready warm clones per snapshot ID, most first.
    pub by_snapshot: Vec<(String, usize)>,
}

/// A point-in-time view of the engine for `/status`, built from memory.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    /// The engine's instance ID (stable across restarts).
    pub instance_id: String,
    /// The engine's version.
    pub version: String,
    /// When the engine started.
    pub started_at: DateTime<Utc>,
    /// The pool's name.
    pub pool_name: String,
    /// The pool's backend (`btrfs`, `zfs`, `dir`).
    pub pool_mode: String,
    /// Whether the pool's snapshots and clones share blocks.
    pub pool_thin: bool,
    /// The pool's space, from the last collection or the last operation's check.
    pub pool_space: Option<PoolSpace>,
    /// The free space the pool keeps: operations that write to it are refused below it.
    pub pool_min_free: MinFreeSpace,
    /// The newest snapshot's data time.
    pub data_state_at: Option<DateTime<Utc>>,
    /// The newest snapshot's logical size.
    pub data_size: u64,
    /// Every clone, oldest first.
    pub clones: Vec<CloneView>,
    /// The mean time from request to ready over clones that have one, in seconds.
    pub expected_cloning_time: f64,
    /// Differences found at start between the store, the pool and running processes.
    pub reconciliation: Reconciliation,
    /// The lease settings, for the `cloning` section.
    pub protection_lease_duration_minutes: f64,
    /// See [`EngineStatus::protection_lease_duration_minutes`].
    pub protection_max_duration_minutes: f64,
    /// The sync instance (physical mode), as its last check saw it.
    pub synchronization: SyncView,
    /// The extensions each installed major can create.
    pub extensions: Vec<MajorExtensions>,
}

/// A clone with what the engine knows about it beyond its record.
#[derive(Debug, Clone)]
pub struct CloneView {
    /// The stored record.
    pub record: CloneRecord,
    /// The snapshot it runs on, if it still exists; one view shared by the clones of a
    /// snapshot in a list ([`Engine::clones`]), since it lists them all.
    pub snapshot: Option<Arc<SnapshotView>>,
    /// The CPU and memory limits its server runs with (its own over the configuration's).
    pub limits: CloneLimits,
    /// What its server has used, as its control group counts (a limited clone only).
    pub usage: Option<CgroupUsage>,
    /// Bytes written since it was made, as of the last collection.
    pub diff_size: u64,
    /// Bytes its data refers to, shared with its snapshot or not (its logical size), as of the
    /// last collection; `None` until one measured it.
    pub referenced: Option<u64>,
    /// The host clients connect to.
    pub access_host: String,
    /// The idle timeout in minutes.
    pub max_idle_minutes: f64,
}

impl CloneView {
    /// The logical size of the clone's data (DBLab's `logicalSize`): what it refers to as last
    /// measured, its snapshot's size until then.
    pub fn logical_size(&self) -> u64 {
        self.referenced.unwrap_or_else(|| {
            self.snapshot.as_ref().map_or(0, |snapshot| snapshot.record.logical_size)
        })
    }
}

/// Creates `dir` (and its parents) and gives it `mode`; a failure is an I/O error, not the
/// caller's.
fn create_private_dir(dir: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what| move |error| Error::Io { what, path: dir.to_owned(), error };
    std::fs::create_dir_all(dir).map_err(io("create state directory"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of state directory"))
}

impl Engine {
    /// Opens the state directory, reconciles the store with the pool and the running
    /// processes, makes sure the pool has data and a first snapshot, and starts the background
    /// loops.
    pub async fn start(config: EngineConfig, deps: EngineDeps) -> Result<Engine> {
        config.validate().map_err(|error| Error::InvalidInput(error.to_string()))?;
        let EngineDeps { pool, state_dir, events, version } = deps;
        // Not world-readable: others may only pass through to the clone sockets. Logs: owner only.
        for (dir, mode) in
            [(state_dir.clone(), 0o711), (state_dir.join("sockets"), 0o755)].into_iter().chain([
                (state_dir.join("logs"), 0o700),
                (state_dir.join(servers::SANDBOX_ROOT), 0o700),
                // The servers' OS user reads its own password files there, by name only.
                (state_dir.join(physical::PASSFILE_DIR), 0o711),
            ])
        {
            create_private_dir(&dir, mode)?;
        }
        let port_count = u64::from(config.cloning.port_to - config.cloning.port_from) + 1;
        for shortfall in limits::shortfalls(port_count, &limits::read()) {
            warn!(setting = shortfall.setting, "{shortfall}");
        }
        let store = Store::open(&state_dir.join("scion.db"))?;
        let instance_id = match store.meta("instance_id")? {
            Some(id) => id,
            None => {
                let id = clone::generate_id();
                store.set_meta("instance_id", &id)?;
                id
            }
        };
        let servers = Servers::new(&config, &state_dir)?;
        if config.tls.enabled {
            // A given CA that cannot be read fails the start, not the first clone.
            servers.tls().ca_pem()?;
        }
        let ports = PortPool::new(
            config.cloning.port_from..=config.cloning.port_to,
            config.probe_address(),
        );
        let retrieval = match &config.retrieval {
            Some(retrieval) => {
                Some(physical::Retrieval::new(retrieval, servers.binaries(), servers.os_user())?)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            config: RwLock::new(Arc::new(config)),
            reconfigured: tokio::sync::Notify::new(),
            pool,
            store,
            ports,
            servers,
            state_dir,
            events,
            state: SharedState::default(),
            metrics: EngineMetrics::default(),
            started_at: Utc::now(),
            instance_id,
            version,
            reconciliation: RwLock::new(Reconciliation::default()),
            space: RwLock::new(None),
            snapshot_lock: tokio::sync::Mutex::new(()),
            masking_check_lock: tokio::sync::Mutex::new(()),
            retrieval: RwLock::new(retrieval),
            refresh: Mutex::new(refresh::RefreshState::default()),
            refresh_running: AtomicBool::new(false),
            usage: Mutex::new(usage::UsageTracker::default()),
            warm: warm::WarmPool::default(),
            standby: standby::Standby::default(),
            observations: observation::Observations::default(),
            fronts: wake::Fronts::default(),
            destroy_failures: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let engine = Engine { inner };
        engine.inner.state.load(&engine.inner.store)?;
        engine.load_sync_record()?;
        let early = engine.ensure_data().await?;
        engine.discard_leftover_warm().await;
        let mut reconciliation = engine.reconcile().await;
        reconciliation.differences.splice(0..0, early);
        for difference in &reconciliation.differences {
            warn!(kind = difference.kind.as_str(), object = %difference.object, detail = %difference.detail, "reconciliation difference");
        }
        info!(
            differences = reconciliation.differences.len(),
            clones = engine.read_state().clones.len(),
            "engine state reconciled"
        );
        *write(&engine.inner.reconciliation) = reconciliation;
        engine.resume_observations()?;
        engine.refresh_space().await;
        engine.inner.servers.refresh_extensions();
        engine.restore_summary();
        engine.release_interrupted_replication().await;
        engine.release_abandoned_replication().await;
        engine.update_next_refresh();
        scheduler::spawn_loops(&engine);
        if engine.config().cloning.warm_pool_size > 0 {
            engine.spawn_warm_pool();
        }
        let refresh_at_start = engine.config().retrieval.as_ref().is_some_and(|retrieval| {
            !retrieval.skip_start_refresh && engine.read_state().snapshots.is_empty()
        });
        if refresh_at_start {
            engine.full_refresh()?;
        }
        Ok(engine)
    }

    /// Stops the background loops and waits for running operations; clone servers keep
    /// running, to be adopted by the next start, while the warm pool's are removed.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(deadline, self.inner.tasks.wait()).await.is_err() {
            warn!(?deadline, "background work still running at shutdown");
        }
    }

    /// The configuration the engine runs with now: a snapshot, which a reload replaces and
    /// never changes.
    pub fn config(&self) -> Arc<EngineConfig> {
        read(&self.inner.config).clone()
    }

    /// The CA certificate (PEM) that signs the clones' server certificates, for clients to
    /// verify them with (`sslrootcert`); not found when TLS is off.
    pub fn ca_certificate(&self) -> Result<String> {
        let tls = self.inner.servers.tls();
        if !tls.enabled() {
            return Err(Error::NotFound("TLS is off on clones ([tls] enabled = false)".to_owned()));
        }
        tls.ca_pem()
    }

    /// One pass of the certificate renewal loop (`[tls] check_interval`): reissues the
    /// servers' certificates that need it and has their servers reload them.
    pub async fn renew_certificates(&self) {
        self.inner.servers.renew_certificates().await;
    }

    /// The retrieval the engine runs with now (a reload may replace it between refreshes).
    pub(crate) fn retrieval_setup(&self) -> Option<physical::Retrieval> {
        read(&self.inner.retrieval).clone()
    }

    /// The engine's instance ID.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The engine's version.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// When the engine started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// How many warm clones are started and waiting to be claimed.
    pub fn warm_clones(&self) -> usize {
        self.inner.warm.len()
    }

    /// How many warm clones the pool keeps now: `[cloning] warm_pool_size`, or more after a
    /// burst of creates (`warm::target_size`).
    pub fn warm_target(&self) -> usize {
        warm::target_size(
            self.config().cloning.warm_pool_size,
            self.inner.warm.recent_burst(std::time::Instant::now()),
        )
    }

    /// The warm pool as `GET /instance/warm-pool` shows it, from memory.
    pub fn warm_pool(&self) -> WarmPoolView {
        WarmPoolView {
            target: self.warm_target(),
            making: self.inner.warm.making(),
            by_snapshot: self.inner.warm.ready_by_snapshot(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A view of the whole engine for `/status`, from memory only.
    pub fn status(&self) -> EngineStatus {
        let config = self.config();
        let clones = self.clones();
        let times: Vec<f64> =
            clones.iter().filter_map(|clone| clone.record.cloning_time_seconds).collect();
        let expected_cloning_time =
            if times.is_empty() { 0.0 } else { times.iter().sum::<f64>() / times.len() as f64 };
        let state = self.read_state();
        let capabilities = self.inner.pool.storage().capabilities();
        EngineStatus {
            instance_id: self.inner.instance_id.clone(),
            version: self.inner.version.clone(),
            started_at: self.inner.started_at,
            pool_name: self.inner.pool.name().to_owned(),
            pool_mode: self.inner.pool.storage().kind().to_string(),
            pool_thin: capabilities.thin,
            pool_space: *read(&self.inner.space),
            pool_min_free: self.inner.pool.min_free(),
            data_state_at: state.snapshots.first().map(|snapshot| snapshot.data_state_at),
            data_size: state.snapshots.first().map_or(0, |snapshot| snapshot.logical_size),
            clones,
            expected_cloning_time,
            reconciliation: self.reconciliation(),
            protection_lease_duration_minutes: config.cloning.protection_lease_duration_minutes,
            protection_max_duration_minutes: config.cloning.protection_max_duration_minutes,
            synchronization: self.sync_status(),
            extensions: self.inner.servers.extensions(),
        }
    }

    /// Records a webhook delivery in the state database; failures are logged, not returned,
    /// because a lost delivery record must never fail the delivery itself.
    pub fn record_delivery(&self, record: &api_types::DeliveryRecord) {
        if let Err(error) = self.inner.store.insert_delivery(record) {
            warn!(error = %error, event = %record.event, "failed to record a webhook delivery");
        }
    }

    /// The newest `limit` webhook delivery records, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<api_types::DeliveryRecord>> {
        Ok(self.inner.store.deliveries(limit)?)
    }

    /// What the last start found out of step between the store, the pool and processes.
    pub fn reconciliation(&self) -> Reconciliation {
        read(&self.inner.reconciliation).clone()
    }

    /// Registers the engine's metrics (DBLab's `dblab_*` and Scion's `scion_*`), with values
    /// as of now, in `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        metrics::register(self, registry);
    }

    /// A consistent view of the in-memory state, for reading.
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read()
    }

    /// Changes a clone that is in one of the states `from`, checked under the state lock; see
    /// [`SharedState::transition`].
    fn transition(
        &self,
        id: &str,
        from: &[CloneState],
        change: impl FnOnce(&mut CloneRecord) -> Result<()>,
    ) -> Result<CloneRecord> {
        self.inner.state.transition(&self.inner.store, id, from, change)
    }

    /// Makes sure the pool has the golden-copy dataset with a cluster in it, and a first
    /// snapshot with a `main` branch, so that clones can be made from the first minute. An
    /// empty pool gets an empty cluster from `initdb`; retrieval replaces it with real data.
    /// Returns what it found of an interrupted earlier start, for the reconciliation report.
    async fn ensure_data(&self) -> Result<Vec<Difference>> {
        let mut found = Vec::new();
        if self.retrieval_setup().is_some() {
            // Retrieval brings the data; until its first run there is nothing to clone.
            return Ok(found);
        }
        let storage = self.inner.pool.storage();
        let data = self.current_data_dataset();
        let mut listing = storage.list().await?;
        if listing.dataset(&data).is_some() && self.intents().contains(data.as_str()) {
            // An initdb that a crash interrupted: its cluster cannot be trusted.
            warn!(%data, "removing the half-made empty cluster of an interrupted start");
            if self.discard(&data).await {
                self.settle_intents(&[data.to_string()]);
                found.push(Difference {
                    kind: DifferenceKind::RemovedLeftover,
                    object: data.to_string(),
                    detail: "an interrupted start left a half-made empty cluster; removed and made again"
                        .to_owned(),
                });
            }
            listing = storage.list().await?;
        }
        if listing.dataset(&data).is_none() {
            let intent = self.intend(&[&data])?;
            let mountpoint = storage.create_dataset(&data).await?;
            failpoint::hit("initdb.dataset_created");
            let pgdata = Pool::pgdata(&mountpoint);
            let major = PgMajor::new(self.config().clone.initdb_major)?;
            info!(pgdata = %pgdata.display(), %major, "initialising an empty cluster in the pool");
            self.inner.servers.initdb(&pgdata, major).await?;
            intent.settle();
        }
        if self.read_state().snapshots.is_empty() {
            let snapshots_on_disk = storage.list().await?;
            if snapshots_on_disk.snapshots_of(&data).next().is_none() {
                self.create_snapshot().await?;
            }
        }
        Ok(found)
    }
}
