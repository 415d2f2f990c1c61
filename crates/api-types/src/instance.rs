//! `GET /status` (the `Instance` object) and `GET /healthz` (the `Engine` object).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::{is_zero, null_as_default};
use crate::{Clone, LocalTime, ProtectionLimits, Retrieving, Status};

/// The full instance status, `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// `{"code":"OK","message":"Instance is ready"}`, or `WARNING` naming the subsystems that need attention.
    pub status: Status,
    /// Version and identity.
    pub engine: Engine,
    /// The pools.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub pools: Vec<PoolEntry>,
    /// Clones (the DBLab CLI's `clone list` reads `cloning.clones`).
    pub cloning: Cloning,
    /// Data retrieval state.
    pub retrieving: Retrieving,
    /// Clone runtime settings (DBLab: the Docker image and flags).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub provisioner: Provisioner,
    /// The physical-mode synchronization instance; `{"status":{"code":"Not available","message":""}}` in logical mode.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub synchronization: Option<Synchronization>,
    /// Scion's extension: what the engine's last start found out of step between its state
    /// database, the pool and the running servers. Absent from DBLab's responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
    /// Scion's extension: the extensions each PostgreSQL major installed here can create, from
    /// the install clones of that major use. Absent from DBLab's responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<MajorExtensions>>,
}

/// The extensions one installed major offers (`/status` → `extensions`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MajorExtensions {
    /// The major, e.g. 16.
    pub major: u8,
    /// The directory of the server binaries clones of this major run
    /// (`[clone.bin_dirs]`, else Scion's install, else Debian's).
    #[serde(rename = "binDir")]
    pub bin_dir: String,
    /// The extensions its extension directory has a control file for, sorted.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub extensions: Vec<String>,
}

/// Scion's report of start-up reconciliation (`/status` → `reconciliation`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reconciliation {
    /// When the engine compared its state with the pool and the processes.
    #[serde(default, rename = "checkedAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub checked_at: Option<LocalTime>,
    /// Every difference found, repaired or not.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub differences: Vec<Difference>,
}

/// One difference found by reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Difference {
    /// A stable name: `server_restarted`, `server_failed`, `missing_dataset`,
    /// `interrupted_operation`, `orphan_dataset`, `missing_snapshot`, `unrecorded_snapshot`.
    pub kind: String,
    /// The clone ID, snapshot ID or dataset concerned.
    pub object: String,
    /// What was found and what was done about it.
    pub detail: String,
}

impl Instance {
    /// DBLab's message for a healthy instance.
    pub const READY_MESSAGE: &'static str = "Instance is ready";
}

/// Version and identity of the engine; the whole body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Engine {
    /// Version string, e.g. `v4.1.0-20240501`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub version: String,
    /// `community` or `standard`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub edition: String,
    /// Billing state (Standard edition only).
    #[serde(default, rename = "billingActive", skip_serializing_if = "Option::is_none")]
    pub billing_active: Option<bool>,
    /// Instance ID.
    #[serde(default, rename = "instanceID", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub instance_id: String,
    /// When the engine started.
    #[serde(default, rename = "startedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<LocalTime>,
    /// Whether telemetry is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<bool>,
    /// Whether `POST /admin/config` is refused.
    #[serde(
        default,
        rename = "disableConfigModification",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_config_modification: Option<bool>,
}

wire_enum! {
    /// A pool's state.
    pub enum PoolStatus {
        /// Serving clones.
        Active = "active",
        /// Receiving a full refresh.
        Refreshing = "refreshing",
        /// No data yet.
        Empty = "empty",
    }
}

/// One pool in `/status` → `pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolEntry {
    /// Pool name.
    pub name: String,
    /// Storage mode (`zfs`, `lvm` in DBLab; Scion adds `btrfs` and `dir`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub mode: String,
    /// Data timestamp of the pool's newest snapshot.
    #[serde(default, rename = "dataStateAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub data_state_at: Option<LocalTime>,
    /// Pool state.
    pub status: PoolStatus,
    /// IDs of the clones on this pool.
    #[serde(default, rename = "cloneList", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub clone_list: Vec<String>,
    /// Space usage.
    #[serde(default, rename = "fileSystem")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub file_system: FileSystem,
}

/// Space usage of a pool, in bytes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileSystem {
    /// Storage mode, as in [`PoolEntry::mode`].
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub mode: String,
    /// Total size.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub size: u64,
    /// Free bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub free: u64,
    /// Used bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub used: u64,
    /// Logical size of the data.
    #[serde(default, rename = "dataSize", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub data_size: u64,
    /// Bytes held only by snapshots.
    #[serde(default, rename = "usedBySnapshots", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub used_by_snapshots: u64,
    /// Bytes held by clones.
    #[serde(default, rename = "usedByClones", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub used_by_clones: u64,
    /// Compression ratio (1.0 without compression).
    #[serde(default, rename = "compressRatio", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub compress_ratio: f64,
}

/// `/status` → `cloning`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cloning {
    /// Mean cloning time in seconds.
    #[serde(default, rename = "expectedCloningTime", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expected_cloning_time: f64,
    /// Number of clones.
    #[serde(default, rename = "numClones", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub num_clones: i64,
    /// All clones.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub clones: Vec<Clone>,
    /// The server's protection lease settings.
    #[serde(flatten)]
    pub protection_limits: ProtectionLimits,
}

/// `/status` → `provisioner`: DBLab's container settings. Scion runs no containers and reports what applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisioner {
    /// The clone image (DBLab); empty in Scion.
    #[serde(default, rename = "dockerImage", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub docker_image: String,
    /// Extra runtime settings.
    #[serde(default, rename = "containerConfig", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub container_config: BTreeMap<String, String>,
}

/// `/status` → `synchronization`: the standby that follows the source in physical mode.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Synchronization {
    /// `OK`, `Starting`, `Down`, `Not available` or `Error`.
    pub status: Status,
    /// When the standby started.
    #[serde(default, rename = "startedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<LocalTime>,
    /// Last replayed WAL position.
    #[serde(
        default,
        rename = "lastReplayedLsn",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_replayed_lsn: String,
    /// Commit time of the last replayed transaction.
    #[serde(default, rename = "lastReplayedLsnAt", skip_serializing_if = "Option::is_none")]
    pub last_replayed_lsn_at: Option<LocalTime>,
    /// Replication lag in whole seconds.
    #[serde(
        default,
        rename = "replicationLag",
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub replication_lag: i64,
    /// Standby uptime in whole seconds.
    #[serde(
        default,
        rename = "replicationUptime",
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub replication_uptime: i64,
}

impl Synchronization {
    /// What logical mode reports: `{"status":{"code":"Not available","message":""}}`.
    pub fn not_available() -> Self {
        Self { status: Status::new(crate::StatusCode::SyncNotAvailable, ""), ..Self::default() }
    }
}

/// `GET /instance/warm-pool` (Scion's extension): the warm clones started ahead of demand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmPool {
    /// How many warm clones the pool keeps now: `[cloning] warm_pool_size`, raised to the
    /// largest recent burst of creates; 0 when the warm pool is off.
    pub target: u64,
    /// Warm clones ready to be claimed.
    pub ready: u64,
    /// Whether a warm clone is being started now.
    pub making: bool,
    /// The ready warm clones per snapshot, most first.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub snapshots: Vec<WarmSnapshot>,
}

/// The warm clones ready on one snapshot (`WarmPool.snapshots`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmSnapshot {
    /// The snapshot's ID.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// Warm clones ready on it.
    pub ready: u64,
}
