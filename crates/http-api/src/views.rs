//! Engine records turned into DBLab's JSON shapes (`api-types`).

use api_types::{
    Alert, AlertLevel, AlertType, RetrievalDatabase, RetrievalProgress, RetrievalWarnings,
};
use api_types::{BranchProtection, BranchView, SnapshotDetails};
use api_types::{
    Clone, CloneMetadata, Cloning, Database, Difference, FileSystem, Instance, LocalTime,
    MajorExtensions, PoolEntry, PoolStatus, Protection, ProtectionLimits, Provisioner,
    Reconciliation, RetrievalMode, RetrievalStatus, Retrieving, Snapshot, Status, StatusCode,
    Synchronization,
};
use chrono::{DateTime, Utc};
use engine::{
    BranchRecord, CloneState, CloneView, CommitView, EngineStatus, InstanceHealth, RefreshStatus,
    RetrievalView, SnapshotRecord, SnapshotView, SyncCode, SyncView,
};

/// The database a connection string names when the request named none.
const DEFAULT_DB_NAME: &str = "postgres";

fn status_code(state: CloneState) -> StatusCode {
    match state {
        CloneState::Creating => StatusCode::Creating,
        CloneState::Ok => StatusCode::Ok,
        CloneState::Resetting => StatusCode::Resetting,
        CloneState::Deleting => StatusCode::Deleting,
        CloneState::Exporting => StatusCode::Exporting,
        CloneState::Fatal => StatusCode::Fatal,
    }
}

/// DBLab shows lease settings in whole minutes.
fn whole_minutes(minutes: f64) -> u64 {
    minutes.round().clamp(0.0, u64::MAX as f64) as u64
}

pub(crate) fn protection_limits(lease: f64, max: f64) -> ProtectionLimits {
    ProtectionLimits {
        lease_duration_minutes: whole_minutes(lease),
        max_duration_minutes: whole_minutes(max),
    }
}

pub(crate) fn snapshot(view: &SnapshotView) -> Snapshot {
    let record = &view.record;
    Snapshot {
        id: record.id.clone(),
        created_at: Some(LocalTime::from(record.created_at)),
        data_state_at: Some(LocalTime::from(record.data_state_at)),
        physical_size: record.physical_size,
        logical_size: record.logical_size,
        pool: record.pool.clone(),
        num_clones: view.clones.len() as i64,
        clones: view.clones.clone(),
        branch: record.branch.clone(),
        message: record.message.clone(),
        protection: protection(record.protected, record.protected_till, record.delete_at),
        masked: record.masked,
    }
}

fn protection(
    protected: bool,
    till: Option<DateTime<Utc>>,
    delete_at: Option<DateTime<Utc>>,
) -> Protection {
    Protection {
        protected,
        protected_till: till.filter(|_| protected).map(LocalTime::from),
        delete_at: delete_at.map(LocalTime::from),
    }
}

/// What DBLab keeps in `dblab:datastateat`: `YYYYMMDDHHMMSS`, in UTC, the same stamp the
/// engine puts in snapshot names.
fn data_state_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M%S").to_string()
}

/// `<pool>/<dataset>` of a snapshot: its ID without the `@<tag>`.
fn snapshot_dataset(record: &SnapshotRecord) -> String {
    let dataset = record.storage_name.split_once('@').map_or("", |(dataset, _)| dataset);
    format!("{}/{dataset}", record.pool)
}

/// DBLab's "no parent" in branch shapes.
const NONE: &str = "-";

pub(crate) fn commit(view: &CommitView) -> SnapshotDetails {
    let record = &view.record;
    SnapshotDetails {
        id: record.id.clone(),
        parent: record.parent_id.clone().unwrap_or_else(|| NONE.to_owned()),
        child: view.children.clone(),
        branch: view.heads_of.clone(),
        root: view.forks.clone(),
        data_state_at: data_state_stamp(record.data_state_at),
        message: record.message.clone(),
        dataset: snapshot_dataset(record),
        clones: view.clone_datasets.clone(),
        num_clones: view.clones.len() as i64,
        protection: protection(record.protected, record.protected_till, record.delete_at),
        masked: record.masked,
    }
}

fn branch_protection(record: &BranchRecord) -> Protection {
    protection(record.protected, record.protected_till, record.delete_at)
}

pub(crate) fn branch(view: &engine::BranchView) -> BranchView {
    BranchView {
        name: view.record.name.clone(),
        base_dataset: view.head.pool.clone(),
        parent: view.parent.clone().unwrap_or_else(|| NONE.to_owned()),
        data_state_at: data_state_stamp(view.head.data_state_at),
        snapshot_id: view.head.id.clone(),
        dataset: snapshot_dataset(&view.head),
        num_snapshots: view.num_snapshots as i64,
        protection: branch_protection(&view.record),
        masked: view.head.masked,
    }
}

pub(crate) fn branch_protection_view(view: &engine::BranchView) -> BranchProtection {
    BranchProtection { name: view.record.name.clone(), protection: branch_protection(&view.record) }
}

pub(crate) fn clone(view: &CloneView, limits: ProtectionLimits) -> Clone {
    Clone {
        snapshot: view.snapshot.as_deref().map(snapshot),
        ..clone_without_snapshot(view, limits)
    }
}

/// [`clone`] with `snapshot` left `None`: a list fills it in from each snapshot's JSON
/// (`listing`).
pub(crate) fn clone_without_snapshot(view: &CloneView, limits: ProtectionLimits) -> Clone {
    let record = &view.record;
    // Like DBLab, the connection details appear once the server exists.
    let connectable = record.state != CloneState::Creating;
    let db_name = record.db_name.clone().unwrap_or_else(|| DEFAULT_DB_NAME.to_owned());
    let db = Database {
        conn_str: if connectable {
            Database::format_conn_str(&view.access_host, record.port, &record.username, &db_name)
        } else {
            String::new()
        },
        host: if connectable { view.access_host.clone() } else { String::new() },
        port: if connectable { record.port.to_string() } else { String::new() },
        username: record.username.clone(),
        password: String::new(),
        db_name,
        owner_user: String::new(),
    };
    let code = status_code(record.state);
    Clone {
        id: record.id.clone(),
        snapshot: None,
        branch: record.branch.clone(),
        revision: i64::from(record.revision),
        protected: record.protected,
        protected_till: if record.protected {
            record.protected_till.map(LocalTime::from)
        } else {
            None
        },
        delete_at: None,
        created_at: Some(LocalTime::from(record.created_at)),
        status: Status::new(code, record.state_message.clone()),
        stopped_at: record.stopped_at.map(LocalTime::from),
        db,
        metadata: CloneMetadata {
            clone_diff_size: view.diff_size,
            logical_size: view.logical_size(),
            cloning_time: record.cloning_time_seconds.unwrap_or(0.0),
            max_idle_minutes: whole_minutes(view.max_idle_minutes),
            protection_limits: limits,
        },
        limits: (!view.limits.is_empty()).then_some(api_types::CloneLimits {
            cpu: view.limits.cpu,
            memory: view.limits.memory,
            disk: view.limits.disk,
        }),
        usage: view.usage.map(|usage| api_types::CloneUsage {
            memory: usage.memory_bytes,
            memory_peak: usage.memory_peak_bytes,
            oom_kills: usage.oom_kills,
            cpu_usage_micros: usage.cpu_usage_us,
            cpu_throttled_periods: usage.cpu_throttled_periods,
        }),
        client_certificate: None,
    }
}

/// A client certificate as a create's answer carries it.
pub(crate) fn client_certificate(
    issued: engine::ClientCertificate,
) -> api_types::ClientCertificate {
    api_types::ClientCertificate { certificate: issued.certificate, key: issued.key, ca: issued.ca }
}

/// `config_locked`: whether `POST /admin/config` is refused (no file, or
/// `[server] disable_config_modification`), which DBLab's UI reads to lock its configuration tab.
///
/// From the engine's identity alone: `/healthz` builds no clone views (a thousand of them took
/// milliseconds).
pub(crate) fn engine_info(engine: &engine::Engine, config_locked: bool) -> api_types::Engine {
    api_types::Engine {
        version: engine.version().to_owned(),
        edition: "community".to_owned(),
        billing_active: None,
        instance_id: engine.instance_id().to_owned(),
        started_at: Some(LocalTime::from(engine.started_at())),
        telemetry: None,
        disable_config_modification: Some(config_locked),
    }
}

/// `/status` without its clones: `cloning.clones` is left empty (`numClones` counts them), for
/// `listing::status_json` to write them in.
pub(crate) fn instance(
    status: &EngineStatus,
    retrieval: &RetrievalView,
    engine: api_types::Engine,
) -> Instance {
    let limits = protection_limits(
        status.protection_lease_duration_minutes,
        status.protection_max_duration_minutes,
    );
    let health = InstanceHealth::of(status, retrieval);
    let instance_status = if health.is_ok() {
        Status::new(StatusCode::Ok, Instance::READY_MESSAGE)
    } else {
        Status::new(StatusCode::Warning, health.message())
    };
    let space = status.pool_space;
    let pool = PoolEntry {
        name: status.pool_name.clone(),
        mode: status.pool_mode.clone(),
        data_state_at: status.data_state_at.map(LocalTime::from),
        status: if space.is_some() { PoolStatus::Active } else { PoolStatus::Empty },
        clone_list: status.clones.iter().map(|view| view.record.id.clone()).collect(),
        file_system: FileSystem {
            mode: status.pool_mode.clone(),
            size: space.map_or(0, |space| space.total),
            free: space.map_or(0, |space| space.free),
            used: space.map_or(0, |space| space.used),
            data_size: status.data_size,
            used_by_snapshots: 0,
            used_by_clones: status.clones.iter().map(|view| view.diff_size).sum(),
            compress_ratio: 1.0,
        },
    };
    Instance {
        status: instance_status,
        engine,
        pools: vec![pool],
        cloning: Cloning {
            expected_cloning_time: status.expected_cloning_time,
            num_clones: status.clones.len() as i64,
            clones: Vec::new(),
            protection_limits: limits,
        },
        retrieving: retrieving(retrieval),
        provisioner: Provisioner::default(),
        synchronization: Some(synchronization(&status.synchronization)),
        reconciliation: Some(Reconciliation {
            checked_at: status.reconciliation.at.map(LocalTime::from),
            differences: status
                .reconciliation
                .differences
                .iter()
                .map(|difference| Difference {
                    kind: difference.kind.as_str().to_owned(),
                    object: difference.object.clone(),
                    detail: difference.detail.clone(),
                })
                .collect(),
        }),
        extensions: Some(
            status
                .extensions
                .iter()
                .map(|major| MajorExtensions {
                    major: major.major.number(),
                    bin_dir: major.bin_dir.display().to_string(),
                    extensions: major.extensions.clone(),
                })
                .collect(),
        ),
    }
}

/// `/status` → `synchronization`: the sync instance as its last check saw it.
pub(crate) fn synchronization(view: &SyncView) -> Synchronization {
    let code = match view.code {
        SyncCode::Ok => StatusCode::Ok,
        SyncCode::Starting => StatusCode::SyncStarting,
        SyncCode::Down => StatusCode::SyncDown,
        SyncCode::Error => StatusCode::SyncError,
        SyncCode::NotAvailable => return Synchronization::not_available(),
    };
    Synchronization {
        status: Status::new(code, view.message.clone()),
        started_at: view.started_at.map(LocalTime::from),
        last_replayed_lsn: view.last_replayed_lsn.clone().unwrap_or_default(),
        last_replayed_lsn_at: view.last_replayed_at.map(LocalTime::from),
        replication_lag: view.replication_lag,
        replication_uptime: view.replication_uptime,
    }
}

/// `/status` → `retrieving`, and `GET /instance/retrieval`.
pub(crate) fn retrieving(view: &RetrievalView) -> Retrieving {
    let alerts = view
        .alerts
        .iter()
        .map(|(kind, alert)| {
            (
                AlertType::from_wire(kind),
                Alert {
                    level: AlertLevel::from_wire(alert.level),
                    message: alert.message.clone(),
                    last_seen: Some(LocalTime::from(alert.last_seen)),
                    count: i64::try_from(alert.count).unwrap_or(i64::MAX),
                },
            )
        })
        .collect();
    let status = match view.status {
        RefreshStatus::Inactive => RetrievalStatus::Inactive,
        RefreshStatus::Pending => RetrievalStatus::Pending,
        RefreshStatus::Refreshing => RetrievalStatus::Refreshing,
        RefreshStatus::Snapshotting => RetrievalStatus::Snapshotting,
        RefreshStatus::Finished => RetrievalStatus::Finished,
        RefreshStatus::Failed => RetrievalStatus::Failed,
    };
    Retrieving {
        wal_window: None,
        mode: RetrievalMode::from_wire(view.mode()),
        status,
        last_refresh: view.last_refresh.map(LocalTime::from),
        next_refresh: view.next_refresh.map(LocalTime::from),
        alerts,
        activity: None,
        progress: view.progress.as_ref().filter(|_| view.configured).map(|progress| {
            RetrievalProgress {
                stage: progress.stage.as_str().to_owned(),
                database: progress.database.clone(),
                bytes_done: progress.bytes_done,
                bytes_total: progress.bytes_total,
                bytes_per_second: progress.bytes_per_second,
                eta_seconds: progress.eta_seconds,
                tables_done: progress.tables_done,
                tables_total: progress.tables_total,
                started_at: progress.started_at.map(LocalTime::from),
                error: progress.error.clone(),
                databases: progress
                    .databases
                    .iter()
                    .map(|database| RetrievalDatabase {
                        name: database.name.clone(),
                        bytes: database.bytes,
                        tables: database.tables,
                    })
                    .collect(),
            }
        }),
        warnings: view.warnings().map(|(count, first)| RetrievalWarnings { count, first }),
    }
}

/// The WAL window of points in time, as `/instance/retrieval` shows it.
pub(crate) fn wal_window(window: &engine::WalWindow) -> api_types::WalWindow {
    let point = |point: &engine::WalPoint| api_types::WalPoint {
        at: LocalTime::from(point.at),
        lsn: point.lsn.to_string(),
    };
    api_types::WalWindow { oldest: point(&window.oldest), newest: point(&window.newest) }
}

/// The masking check's answer.
pub(crate) fn masking_check(check: &engine::MaskingCheck) -> api_types::MaskingCheck {
    api_types::MaskingCheck {
        snapshot_id: check.snapshot_id.clone(),
        snapshot_masked: check.snapshot_masked,
        databases: check.report.databases.clone(),
        columns: check
            .report
            .findings
            .iter()
            .map(|finding| api_types::UnmaskedColumn {
                database: finding.database.clone(),
                schema: finding.schema.clone(),
                table: finding.table.clone(),
                column: finding.column.clone(),
                kind: finding.kind.as_str().to_owned(),
                why: finding.reason.clone(),
            })
            .collect(),
        problems: check.report.problems.clone(),
    }
}

pub(crate) fn warm_pool(view: &engine::WarmPoolView) -> api_types::WarmPool {
    let snapshots: Vec<api_types::WarmSnapshot> = view
        .by_snapshot
        .iter()
        .map(|(id, ready)| api_types::WarmSnapshot {
            snapshot_id: id.clone(),
            ready: *ready as u64,
        })
        .collect();
    api_types::WarmPool {
        target: view.target as u64,
        ready: snapshots.iter().map(|snapshot| snapshot.ready).sum(),
        making: view.making,
        snapshots,
    }
}

/// A hook URL's origin: its path, query and user info often hold the hook's secret.
fn origin(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(uri) => {
            let host = uri.authority().map_or("", |authority| {
                let text = authority.as_str();
                text.rsplit_once('@').map_or(text, |(_, host)| host)
            });
            format!("{}://{host}", uri.scheme_str().unwrap_or("http"))
        }
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

pub(crate) fn delivery(record: &api_types::DeliveryRecord) -> api_types::WebhookDelivery {
    let hook = origin(&record.hook_url);
    api_types::WebhookDelivery {
        event: record.event,
        entity_id: record.entity_id.clone(),
        attempts: record.attempts,
        outcome: record.outcome.as_str().to_owned(),
        last_status: record.last_status,
        // The HTTP client's errors name the whole URL.
        last_error: record.last_error.as_ref().map(|error| error.replace(&record.hook_url, &hook)),
        hook,
        emitted_at: LocalTime::from(record.emitted_at),
        finished_at: LocalTime::from(record.finished_at),
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn a_hook_is_shown_by_its_origin_only() {
        for (url, shown) in [
            (
                "https://hooks.example.com/services/T0/B0/secret?token=x",
                "https://hooks.example.com",
            ),
            ("http://user:pass@127.0.0.1:9000/hook", "http://127.0.0.1:9000"),
            ("http://[::1]:8080/a", "http://[::1]:8080"),
            ("not a url", "(an invalid URL)"),
        ] {
            assert_eq!(origin(url), shown, "{url}");
        }
    }

    #[test]
    fn a_delivery_error_names_the_hook_by_its_origin() {
        let at = chrono::Utc::now();
        let record = api_types::DeliveryRecord {
            event: api_types::WebhookEvent::CloneCreate,
            entity_id: "c1".to_owned(),
            hook_url: "http://127.0.0.1:9/secret".to_owned(),
            attempts: 1,
            outcome: api_types::Outcome::Failed,
            last_status: None,
            last_error: Some(
                "error sending request for url (http://127.0.0.1:9/secret)".to_owned(),
            ),
            emitted_at: at,
            first_attempt_at: Some(at),
            finished_at: at,
        };
        let view = super::delivery(&record);
        assert_eq!(view.hook, "http://127.0.0.1:9");
        assert_eq!(
            view.last_error.as_deref(),
            Some("error sending request for url (http://127.0.0.1:9)")
        );
    }
}
