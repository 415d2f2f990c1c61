//! Retrieval state on the wire: `/status` → `retrieving` and `GET /instance/retrieval`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LocalTime;
use crate::serde_util::null_as_default;

wire_enum! {
    /// How data gets into the pool.
    pub enum RetrievalMode {
        /// `pg_dump` / `pg_restore`.
        Logical = "logical",
        /// Base backup plus a standby.
        Physical = "physical",
        /// Not configured.
        Unknown = "unknown",
    }
}

wire_enum! {
    /// The retrieval state machine (reference §6.1).
    pub enum RetrievalStatus {
        /// Nothing running.
        Inactive = "inactive",
        /// Waiting for configuration.
        Pending = "pending",
        /// The last run failed.
        Failed = "failed",
        /// A refresh is running.
        Refreshing = "refreshing",
        /// A refresh finished and the pool was switched.
        Renewed = "renewed",
        /// Snapshots are being taken.
        Snapshotting = "snapshotting",
        /// The run finished.
        Finished = "finished",
    }
}

wire_enum! {
    /// The key of an entry in `retrieving.alerts`.
    pub enum AlertType {
        /// A refresh failed.
        RefreshFailed = "refresh_failed",
        /// A refresh was skipped (for example, no free pool).
        RefreshSkipped = "refresh_skipped",
        /// Scion's addition: a refresh finished with warnings (restore errors ignored, objects
        /// skipped, tablespaces left out); `retrieving.warnings` lists them.
        RefreshWarnings = "refresh_warnings",
    }
}

wire_enum! {
    /// How serious an alert is.
    pub enum AlertLevel {
        /// An error.
        Error = "error",
        /// A warning.
        Warning = "warning",
        /// Unknown severity.
        Unknown = "unknown",
    }
}

/// `/status` → `retrieving`, and `GET /instance/retrieval` (which adds `activity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Retrieving {
    /// Retrieval mode.
    pub mode: RetrievalMode,
    /// Current state.
    pub status: RetrievalStatus,
    /// When the last refresh finished.
    #[serde(default, rename = "lastRefresh")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_refresh: Option<LocalTime>,
    /// When the next scheduled refresh starts.
    #[serde(default, rename = "nextRefresh")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub next_refresh: Option<LocalTime>,
    /// Alerts keyed by type (an object, not the array the DBLab spec claims).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub alerts: BTreeMap<AlertType, Alert>,
    /// Live activity on the source and target, only while refreshing; `null` otherwise.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub activity: Option<Activity>,
    /// Scion's extension: what the running (or last) refresh is doing. Absent from DBLab's
    /// responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RetrievalProgress>,
    /// Scion's extension: the warnings of the refresh that made the current data, when it had
    /// any. Absent from DBLab's responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<RetrievalWarnings>,
    /// Scion's extension, physical mode: the moments `POST /snapshot` with a `recoveryTarget`
    /// can reach, once a snapshot was taken. Absent from DBLab's responses.
    #[serde(default, rename = "walWindow", skip_serializing_if = "Option::is_none")]
    pub wal_window: Option<WalWindow>,
}

/// The WAL window of points in time: both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalWindow {
    /// The oldest reachable moment: the oldest snapshot that kept its standby copy.
    pub oldest: WalPoint,
    /// The newest reachable moment the engine knows of: the sync instance's last replayed
    /// commit (the WAL archive may end earlier).
    pub newest: WalPoint,
}

/// A moment of the WAL: a commit's time and a WAL location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalPoint {
    /// The commit's time.
    pub at: LocalTime,
    /// The WAL location (`X/Y`).
    pub lsn: String,
}

/// Scion's list of what a refresh did not carry (`retrieving.warnings`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetrievalWarnings {
    /// How many problems: each restore error ignored counts once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub count: u64,
    /// The first lines of the warnings.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub first: Vec<String>,
}

/// One database of a finished refresh (`retrieving.progress.databases`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetrievalDatabase {
    /// Its name in the pool (after renames).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub name: String,
    /// Bytes of its dump (or streamed).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub bytes: u64,
    /// Tables with data.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub tables: u64,
}

/// Scion's progress report of a refresh (`retrieving.progress`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetrievalProgress {
    /// The stage: `pending`, `probing`, `preparing`, `roles`, `dumping`, `restoring`,
    /// `streaming`, `analyzing`, `preprocessing`, `renaming`, `stopping`, `copying`,
    /// `configuring` (physical mode), `finished`, `failed`.
    pub stage: String,
    /// The database being worked on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Bytes done in this stage.
    #[serde(default, rename = "bytesDone")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub bytes_done: u64,
    /// Bytes expected in this stage, when known.
    #[serde(default, rename = "bytesTotal", skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// The stage's average rate so far, bytes per second, when it counts bytes.
    #[serde(default, rename = "bytesPerSecond", skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// Seconds left in this stage at that rate, when the total is known.
    #[serde(default, rename = "etaSeconds", skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Tables done in this stage.
    #[serde(default, rename = "tablesDone")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub tables_done: u64,
    /// Tables expected in this stage, when known.
    #[serde(default, rename = "tablesTotal", skip_serializing_if = "Option::is_none")]
    pub tables_total: Option<u64>,
    /// When the run started.
    #[serde(default, rename = "startedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<LocalTime>,
    /// The error, once the run has failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Once the run has finished, each database's totals (the counters above are then the
    /// run's totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<RetrievalDatabase>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// Severity.
    pub level: AlertLevel,
    /// What happened.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
    /// When it last happened.
    #[serde(default, rename = "lastSeen")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_seen: Option<LocalTime>,
    /// How many times it happened.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub count: i64,
}

/// Backends active on the source and target during a refresh.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activity {
    /// On the source database.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub source: Vec<PgActivityEvent>,
    /// On the pool's Postgres.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub target: Vec<PgActivityEvent>,
}

/// One `pg_stat_activity` row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PgActivityEvent {
    /// Role name.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub user: String,
    /// Query text.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub query: String,
    /// Seconds the query has run.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub duration: f64,
    /// `wait_event_type`.
    #[serde(default, rename = "waitEventType", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub wait_event_type: String,
    /// `wait_event`.
    #[serde(default, rename = "waitEvent", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub wait_event: String,
}
