//! The engine's metrics: DBLab's `dblab_*` gauges, computed from memory at scrape time with the
//! names and labels of DBLab's exporter (reference §8), and Scion's own `scion_*` metrics.
//!
//! DBLab metrics that have no meaning here are left out rather than faked: the compression
//! ratio and the data's logical size on a btrfs pool mounted with compression, which btrfs
//! does not keep. The pool's snapshot bytes, logical size and compression ratio are read by the
//! background collection (`usage`), never at scrape time. Clone CPU and memory come from
//! `/proc` (see `usage`). The physical-mode `dblab_sync_*`
//! family is exported only when a sync instance is recorded, from the supervisor's last pass.
//!
//! `dblab_sync_status` carries DBLab's status code as its `status` label (`OK`, `Down`,
//! `Error`, …), as DBLab's exporter does; DBLab's own alert rule `DBLabSyncDown` matches
//! `status="down"` and `status="error"`, which that exporter never sets. So that dashboards
//! keyed on DBLab's values and that published rule both work unchanged, the current status is
//! exported under both spellings (`Down` and `down`), each with value 1.
//!
//! The gauges that mirror `/status` are computed from the state `/status` is: the instance status
//! through [`InstanceHealth`], shared with the HTTP view, and retrieval from the same view.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::CloneState;
use crate::reconcile::DifferenceKind;
use crate::refresh::{RefreshStatus, RetrievalView};
use crate::{Engine, EngineStatus};

/// The instance's own status, decided once from the engine's state for both `/status` (its
/// `status` object) and `/metrics` (`dblab_instance_status_code`), so that they never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    /// The subsystems that need attention, in the order `/status` names them (`retrieving`,
    /// `synchronization`, `reconciliation`, `pool`); empty when the instance is ready.
    pub attention: Vec<&'static str>,
    /// What is wrong with the pool's space (low, or below its minimum), if anything.
    pub pool_space: Option<String>,
    /// How many warnings the refresh that made the current data had, if any.
    pub retrieval_warnings: Option<u64>,
}

impl InstanceHealth {
    /// The health of an instance with this status and retrieval: a failed refresh, current
    /// data from a refresh with warnings (something of the source did not arrive), a sync
    /// instance that is down or in error, a clone server that failed or lost its dataset
    /// (reconciliation), or a pool low on free space needs attention.
    pub fn of(status: &EngineStatus, retrieval: &RetrievalView) -> InstanceHealth {
        let mut attention = Vec::new();
        let retrieval_warnings = retrieval.warnings().map(|(count, _)| count);
        if retrieval.status == RefreshStatus::Failed || retrieval_warnings.is_some() {
            attention.push("retrieving");
        }
        if matches!(status.synchronization.code, crate::SyncCode::Down | crate::SyncCode::Error) {
            attention.push("synchronization");
        }
        if status.reconciliation.differences.iter().any(|difference| {
            matches!(difference.kind, DifferenceKind::ServerFailed | DifferenceKind::MissingDataset)
        }) {
            attention.push("reconciliation");
        }
        let pool_space =
            status.pool_space.and_then(|space| crate::space::describe(space, status.pool_min_free));
        if pool_space.is_some() {
            attention.push("pool");
        }
        InstanceHealth { attention, pool_space, retrieval_warnings }
    }

    /// `/status`' message when something needs attention: DBLab's sentence, then what is
    /// wrong with the pool's space, which DBLab's UI shows with the warning.
    pub fn message(&self) -> String {
        let mut message = format!("Subsystems that need attention: {}", self.attention.join(", "));
        if let Some(count) = self.retrieval_warnings {
            let plural = if count == 1 { "" } else { "s" };
            message.push_str(&format!(
                ". The last refresh finished with {count} warning{plural}: see retrieving.warnings"
            ));
        }
        if let Some(pool_space) = &self.pool_space {
            message.push_str(". ");
            message.push_str(pool_space);
        }
        message
    }

    /// Whether nothing needs attention (`/status` says `OK`).
    pub fn is_ok(&self) -> bool {
        self.attention.is_empty()
    }

    /// DBLab's `dblab_instance_status_code`: 0 for `OK`, 1 for `WARNING`.
    pub fn code(&self) -> i64 {
        if self.is_ok() { 0 } else { 1 }
    }
}

/// Buckets for clone-ready latency, in seconds: fine around the 50 ms target, coarse beyond.
const READY_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Metrics the engine updates as it works.
#[derive(Debug)]
pub(crate) struct EngineMetrics {
    /// Time from a create or reset request to a server that accepts the clone's user.
    pub(crate) clone_ready: Histogram,
    /// Creates and resets that ended `FATAL`.
    pub(crate) clone_failures: Counter,
    /// Creates that claimed a warm clone, with the warm pool on.
    pub(crate) warm_hits: Counter,
    /// Creates that found no warm clone to claim, with the warm pool on.
    pub(crate) warm_misses: Counter,
    /// Warm clones that failed to start.
    pub(crate) warm_failures: Counter,
    collection: Mutex<Collection>,
    collection_errors: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Collection {
    finished_at: Option<chrono::DateTime<Utc>>,
    duration: Duration,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            clone_ready: Histogram::new(READY_BUCKETS),
            clone_failures: Counter::default(),
            warm_hits: Counter::default(),
            warm_misses: Counter::default(),
            warm_failures: Counter::default(),
            collection: Mutex::new(Collection::default()),
            collection_errors: AtomicU64::new(0),
        }
    }
}

impl EngineMetrics {
    pub(crate) fn record_collection(&self, duration: Duration, errors: u64) {
        let mut collection = self.collection.lock().unwrap_or_else(|p| p.into_inner());
        *collection = Collection { finished_at: Some(Utc::now()), duration };
        self.collection_errors.fetch_add(errors, Ordering::Relaxed);
    }
}

pub(crate) fn register(engine: &Engine, registry: &mut Registry) {
    let metrics = &engine.inner.metrics;
    registry.register(
        "scion_clone_ready_seconds",
        "Time from a clone create or reset request to a server that accepts the clone's user",
        metrics.clone_ready.clone(),
    );
    for (name, help, counter) in [
        (
            "scion_clone_failures",
            "Clone creates and resets that ended FATAL",
            &metrics.clone_failures,
        ),
        ("scion_warm_pool_hits", "Clone creates that claimed a warm clone", &metrics.warm_hits),
        (
            "scion_warm_pool_misses",
            "Clone creates that found no warm clone to claim while the warm pool is on",
            &metrics.warm_misses,
        ),
        ("scion_warm_pool_failures", "Warm clones that failed to start", &metrics.warm_failures),
    ] {
        registry.register(name, help, counter.clone());
    }
    registry.register_collector(Box::new(Snapshot::capture(engine)));
}

/// Every gauge value, captured at scrape time from memory.
#[derive(Debug)]
struct Snapshot {
    instance_id: String,
    version: String,
    uptime_seconds: i64,
    status_code: i64,
    retrieval_mode: &'static str,
    retrieval_status: &'static str,
    pool: String,
    pool_mode: String,
    space: Option<storage::PoolSpace>,
    pool_usage: Option<storage::PoolUsage>,
    clones_total: i64,
    clones_by_status: Vec<(&'static str, i64)>,
    clone_max_age_seconds: i64,
    clone_total_diff: i64,
    clone_total_logical: i64,
    clone_protected: i64,
    clone_total_memory_limit: i64,
    clone_disk: Vec<CloneDisk>,
    snapshots_total: i64,
    snapshot_max_age_seconds: i64,
    snapshot_total_physical: i64,
    snapshot_total_logical: i64,
    snapshot_max_data_lag_seconds: i64,
    snapshot_total_num_clones: i64,
    branches_total: i64,
    scrape_success_timestamp: Option<i64>,
    scrape_duration_seconds: f64,
    scrape_errors: u64,
    reconcile: Vec<(&'static str, i64)>,
    ports_in_use: i64,
    ports_total: i64,
    warm_pool_clones: i64,
    warm_pool_target: i64,
    clone_total_cpu_percent: f64,
    clone_avg_cpu_percent: f64,
    clone_total_memory: i64,
    sync: crate::SyncView,
}

/// Reads one figure of a clone's, `None` when it has none.
type CloneFigure = fn(&CloneDisk) -> Option<i64>;

/// One clone's disk figures, for the per-clone `scion_clone_disk_*` series.
#[derive(Debug)]
struct CloneDisk {
    id: String,
    written: i64,
    /// `None` until a collection measured it.
    referenced: Option<i64>,
    /// Its disk quota, if it has one.
    quota: Option<i64>,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Snapshot {
    fn capture(engine: &Engine) -> Snapshot {
        let now = Utc::now();
        let status = engine.status();
        let retrieval = engine.retrieval();
        let snapshots = engine.snapshots();
        let reconciliation = &status.reconciliation;
        let collection = *engine.inner.metrics.collection.lock().unwrap_or_else(|p| p.into_inner());
        let clones = &status.clones;
        let (clone_total_cpu_percent, clone_avg_cpu_percent, clone_total_memory, pool_usage) = {
            let usage = engine.inner.usage.lock().unwrap_or_else(|p| p.into_inner());
            let (total, average, memory) = usage.totals();
            (total, average, memory, usage.pool)
        };
        Snapshot {
            instance_id: status.instance_id.clone(),
            version: status.version.clone(),
            uptime_seconds: (now - status.started_at).num_seconds(),
            // The very status `/status` shows.
            status_code: InstanceHealth::of(&status, &retrieval).code(),
            retrieval_mode: retrieval.mode(),
            retrieval_status: retrieval.status.as_str(),
            pool: status.pool_name.clone(),
            pool_mode: status.pool_mode.clone(),
            space: status.pool_space,
            pool_usage,
            clones_total: clones.len() as i64,
            clones_by_status: CloneState::ALL
                .into_iter()
                .map(|state| {
                    (
                        state.code(),
                        clones.iter().filter(|clone| clone.record.state == state).count() as i64,
                    )
                })
                .collect(),
            clone_max_age_seconds: clones
                .iter()
                .map(|clone| (now - clone.record.created_at).num_seconds())
                .max()
                .unwrap_or(0),
            clone_total_diff: clones.iter().map(|clone| to_i64(clone.diff_size)).sum(),
            clone_total_logical: clones.iter().map(|clone| to_i64(clone.logical_size())).sum(),
            clone_disk: clones
                .iter()
                .map(|clone| CloneDisk {
                    id: clone.record.id.clone(),
                    written: to_i64(clone.diff_size),
                    referenced: clone.referenced.map(to_i64),
                    quota: clone.limits.disk.map(to_i64),
                })
                .collect(),
            clone_protected: clones.iter().filter(|clone| clone.record.protected).count() as i64,
            clone_total_memory_limit: clones
                .iter()
                .filter_map(|clone| clone.limits.memory)
                .map(to_i64)
                .fold(0, i64::saturating_add),
            snapshots_total: snapshots.len() as i64,
            snapshot_max_age_seconds: snapshots
                .iter()
                .map(|view| (now - view.record.created_at).num_seconds())
                .max()
                .unwrap_or(0),
            snapshot_total_physical: snapshots
                .iter()
                .map(|view| to_i64(view.record.physical_size))
                .sum(),
            snapshot_total_logical: snapshots
                .iter()
                .map(|view| to_i64(view.record.logical_size))
                .sum(),
            snapshot_max_data_lag_seconds: snapshots
                .iter()
                .map(|view| (now - view.record.data_state_at).num_seconds())
                .max()
                .unwrap_or(0),
            snapshot_total_num_clones: snapshots.iter().map(|view| view.clones.len() as i64).sum(),
            branches_total: engine.read_state().branches.len() as i64,
            scrape_success_timestamp: collection.finished_at.map(|time| time.timestamp()),
            scrape_duration_seconds: collection.duration.as_secs_f64(),
            scrape_errors: engine.inner.metrics.collection_errors.load(Ordering::Relaxed),
            reconcile: DifferenceKind::ALL
                .into_iter()
                .map(|kind| (kind.as_str(), reconciliation.count(kind) as i64))
                .collect(),
            ports_in_use: engine.inner.ports.in_use() as i64,
            ports_total: i64::from(engine.config().cloning.port_to)
                - i64::from(engine.config().cloning.port_from)
                + 1,
            warm_pool_clones: engine.inner.warm.len() as i64,
            warm_pool_target: engine.warm_target() as i64,
            clone_total_cpu_percent,
            clone_avg_cpu_percent,
            clone_total_memory: to_i64(clone_total_memory),
            sync: status.synchronization.clone(),
        }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge_f64(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn labelled(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, i64)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Snapshot {
    /// Each clone's disk usage, labelled by clone: DBLab exports only the sums.
    fn encode_clone_disk(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let families: [(&str, &str, CloneFigure); 3] = [
            (
                "scion_clone_disk_written_bytes",
                "Bytes a clone holds alone: written since it was made (DBLab's cloneDiffSize)",
                |clone| Some(clone.written),
            ),
            (
                "scion_clone_disk_referenced_bytes",
                "Bytes a clone's data refers to, shared with its snapshot or not (its logicalSize)",
                |clone| clone.referenced,
            ),
            (
                "scion_clone_disk_quota_bytes",
                "A clone's disk quota: the most its data may refer to (clones with one only)",
                |clone| clone.quota,
            ),
        ];
        for (name, help, value) in families {
            let series: Vec<_> = self
                .clone_disk
                .iter()
                .filter_map(|clone| Some((vec![("clone_id", clone.id.as_str())], value(clone)?)))
                .collect();
            labelled(e, name, help, &series)?;
        }
        Ok(())
    }

    fn encode_sync(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let sync = &self.sync;
        let code = sync.code.as_str();
        let lower = code.to_ascii_lowercase();
        let mut series = vec![(vec![("status", code)], 1)];
        if lower != code {
            series.push((vec![("status", lower.as_str())], 1));
        }
        labelled(e, "dblab_sync_status", "Sync instance status (1 for the current code)", &series)?;
        gauge(
            e,
            "dblab_sync_wal_lag_seconds",
            "Seconds the sync instance's replay is behind the source",
            sync.replication_lag,
        )?;
        gauge(
            e,
            "dblab_sync_uptime_seconds",
            "Seconds since the sync instance's server started",
            sync.replication_uptime,
        )?;
        if let Some(at) = sync.last_replayed_at {
            gauge(
                e,
                "dblab_sync_last_replayed_timestamp",
                "Unix time of the last transaction the sync instance replayed",
                at.timestamp(),
            )?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        let pool = self.pool.as_str();
        labelled(
            e,
            "dblab_instance_info",
            "Engine instance information",
            &[(
                vec![
                    ("instance_id", self.instance_id.as_str()),
                    ("version", self.version.as_str()),
                    ("edition", "community"),
                ],
                1,
            )],
        )?;
        gauge(
            e,
            "dblab_instance_uptime_seconds",
            "Seconds since the engine started",
            self.uptime_seconds,
        )?;
        gauge(
            e,
            "dblab_instance_status_code",
            "Engine status as /status shows it: 0 OK, 1 warning",
            self.status_code,
        )?;
        labelled(
            e,
            "dblab_retrieval_status",
            "Retrieval mode and status (1 for the current pair)",
            &[(vec![("mode", self.retrieval_mode), ("status", self.retrieval_status)], 1)],
        )?;
        if let Some(space) = self.space {
            let per_pool = |value: u64| [(vec![("pool", pool)], to_i64(value))];
            labelled(e, "dblab_disk_total_bytes", "Pool size in bytes", &per_pool(space.total))?;
            labelled(e, "dblab_disk_free_bytes", "Free bytes in the pool", &per_pool(space.free))?;
            labelled(e, "dblab_disk_used_bytes", "Used bytes in the pool", &per_pool(space.used))?;
            labelled(
                e,
                "dblab_disk_used_by_clones_bytes",
                "Bytes written in clones since they were made",
                &[(vec![("pool", pool)], self.clone_total_diff)],
            )?;
        }
        if let Some(usage) = self.pool_usage {
            labelled(
                e,
                "dblab_disk_used_by_snapshots_bytes",
                "Bytes only snapshots hold: what destroying them would give back",
                &[(vec![("pool", pool)], to_i64(usage.used_by_snapshots))],
            )?;
            if let Some(logical) = usage.logical_used {
                labelled(
                    e,
                    "dblab_disk_data_size_bytes",
                    "Logical size of what the pool holds, before compression",
                    &[(vec![("pool", pool)], to_i64(logical))],
                )?;
            }
            if let Some(ratio) = usage.compress_ratio {
                let mut family = e.encode_descriptor(
                    "dblab_disk_compress_ratio",
                    "Logical bytes per byte stored in the pool (1 without compression)",
                    None,
                    MetricType::Gauge,
                )?;
                ConstGauge::new(ratio).encode(family.encode_family(&[("pool", pool)])?)?;
            }
        }
        labelled(
            e,
            "dblab_pool_status",
            "Pool status (1 for the current one)",
            &[(
                vec![
                    ("pool", pool),
                    ("mode", self.pool_mode.as_str()),
                    ("status", if self.space.is_some() { "active" } else { "empty" }),
                ],
                1,
            )],
        )?;
        if self.sync.is_configured() {
            self.encode_sync(e)?;
        }
        gauge(e, "dblab_clones_total", "Clones", self.clones_total)?;
        let by_status: Vec<_> = self
            .clones_by_status
            .iter()
            .map(|(status, count)| (vec![("status", *status)], *count))
            .collect();
        labelled(e, "dblab_clones_by_status", "Clones by status", &by_status)?;
        gauge(
            e,
            "dblab_clone_max_age_seconds",
            "Age of the oldest clone",
            self.clone_max_age_seconds,
        )?;
        gauge(
            e,
            "dblab_clone_total_diff_size_bytes",
            "Bytes written in all clones since they were made",
            self.clone_total_diff,
        )?;
        gauge(
            e,
            "dblab_clone_total_logical_size_bytes",
            "Logical size of the data all clones refer to",
            self.clone_total_logical,
        )?;
        gauge(e, "dblab_clone_protected_count", "Protected clones", self.clone_protected)?;
        self.encode_clone_disk(e)?;
        gauge(
            e,
            "dblab_clone_total_memory_limit_bytes",
            "Sum of the clones' memory limits (clones without one count 0)",
            self.clone_total_memory_limit,
        )?;
        gauge_f64(
            e,
            "dblab_clone_total_cpu_usage_percent",
            "CPU used by all clone servers since the previous collection, percent of one core",
            self.clone_total_cpu_percent,
        )?;
        gauge_f64(
            e,
            "dblab_clone_avg_cpu_usage_percent",
            "Mean CPU per clone server since the previous collection, percent of one core",
            self.clone_avg_cpu_percent,
        )?;
        gauge(
            e,
            "dblab_clone_total_memory_usage_bytes",
            "Memory (PSS) of all clone servers' processes",
            self.clone_total_memory,
        )?;
        gauge(e, "dblab_snapshots_total", "Snapshots", self.snapshots_total)?;
        labelled(
            e,
            "dblab_snapshots_by_pool",
            "Snapshots by pool",
            &[(vec![("pool", pool)], self.snapshots_total)],
        )?;
        gauge(
            e,
            "dblab_snapshot_max_age_seconds",
            "Age of the oldest snapshot",
            self.snapshot_max_age_seconds,
        )?;
        gauge(
            e,
            "dblab_snapshot_total_physical_size_bytes",
            "Bytes held by snapshots alone",
            self.snapshot_total_physical,
        )?;
        gauge(
            e,
            "dblab_snapshot_total_logical_size_bytes",
            "Logical size of all snapshots",
            self.snapshot_total_logical,
        )?;
        gauge(
            e,
            "dblab_snapshot_max_data_lag_seconds",
            "Age of the oldest snapshot's data",
            self.snapshot_max_data_lag_seconds,
        )?;
        gauge(
            e,
            "dblab_snapshot_total_num_clones",
            "Clones summed over snapshots",
            self.snapshot_total_num_clones,
        )?;
        gauge(e, "dblab_branches_total", "Branches", self.branches_total)?;
        labelled(
            e,
            "dblab_datasets_total",
            "Snapshots in the pool (DBLab's dataset slots)",
            &[(vec![("pool", pool)], self.snapshots_total)],
        )?;
        labelled(
            e,
            "dblab_datasets_available",
            "Snapshots without clones",
            &[(
                vec![("pool", pool)],
                (self.snapshots_total - self.snapshot_total_num_clones).max(0),
            )],
        )?;
        if let Some(timestamp) = self.scrape_success_timestamp {
            gauge(
                e,
                "dblab_scrape_success_timestamp",
                "Unix time the last collection of sizes finished",
                timestamp,
            )?;
        }
        gauge_f64(
            e,
            "dblab_scrape_duration_seconds",
            "Duration of the last collection of sizes",
            self.scrape_duration_seconds,
        )?;
        let errors = ConstCounter::new(self.scrape_errors);
        errors.encode(e.encode_descriptor(
            "dblab_scrape_errors",
            "Errors while collecting sizes",
            None,
            errors.metric_type(),
        )?)?;
        let reconcile: Vec<_> =
            self.reconcile.iter().map(|(kind, count)| (vec![("kind", *kind)], *count)).collect();
        labelled(
            e,
            "scion_reconcile_differences",
            "Differences the last start found between the state database, the pool and processes",
            &reconcile,
        )?;
        gauge(
            e,
            "scion_clone_ports_in_use",
            "Clone ports taken, warm clones' included",
            self.ports_in_use,
        )?;
        gauge(
            e,
            "scion_warm_pool_clones",
            "Warm clones started and waiting to be claimed",
            self.warm_pool_clones,
        )?;
        gauge(
            e,
            "scion_warm_pool_target",
            "Warm clones the pool keeps now: its size, or the largest recent burst of creates",
            self.warm_pool_target,
        )?;
        gauge(
            e,
            "scion_clone_ports_total",
            "Clone ports in the configured range",
            self.ports_total,
        )?;
        Ok(())
    }
}
