//! Snapshots on the wire: the `Snapshot` list item, commit details, and the snapshot requests.

use serde::{Deserialize, Serialize};

use crate::serde_util::null_as_default;
use crate::{LocalTime, Protection};

/// A snapshot as returned by `GET /snapshots`, `GET /snapshot/{id}` and inside a clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// `<dataset>@<name>`.
    pub id: String,
    /// When the snapshot was taken.
    #[serde(default, rename = "createdAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub created_at: Option<LocalTime>,
    /// The point in time of the data it holds.
    #[serde(default, rename = "dataStateAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub data_state_at: Option<LocalTime>,
    /// Bytes used by the snapshot itself.
    #[serde(default, rename = "physicalSize", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub physical_size: u64,
    /// Logical size of its data in bytes.
    #[serde(default, rename = "logicalSize", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub logical_size: u64,
    /// The pool it lives in.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub pool: String,
    /// How many clones use it.
    #[serde(default, rename = "numClones", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub num_clones: i64,
    /// IDs of the clones that use it (DBLab may send `null` for none; Scion sends `[]`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub clones: Vec<String>,
    /// The branch it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub branch: String,
    /// Commit message.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
    /// Protection and scheduled deletion.
    #[serde(flatten)]
    pub protection: Protection,
    /// Scion: the data had `[retrieval.masking]` applied before the snapshot (and every clone,
    /// branch and commit made from it inherits that); sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
}

/// A commit as returned by `GET /branch/snapshot/{id}` and `GET /branch/{name}/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotDetails {
    /// Snapshot ID.
    pub id: String,
    /// Parent snapshot ID, `-` for a root.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub parent: String,
    /// Child snapshot IDs.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub child: Vec<String>,
    /// Branches whose head this is.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub branch: Vec<String>,
    /// Branches that forked from this snapshot.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub root: Vec<String>,
    /// Data timestamp as `YYYYMMDDHHMMSS` (not RFC 3339: DBLab's branch format).
    #[serde(default, rename = "dataStateAt", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub data_state_at: String,
    /// Commit message, decoded.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
    /// Dataset the snapshot belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub dataset: String,
    /// Datasets cloned from this snapshot.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub clones: Vec<String>,
    /// Scion's extension: how many clones run on this snapshot (DBLab's server leaves it out,
    /// which reads as 0).
    #[serde(default, rename = "numClones", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub num_clones: i64,
    /// Protection and scheduled deletion.
    #[serde(flatten)]
    pub protection: Protection,
    /// Scion: the snapshot's data is masked (`[retrieval.masking]`); sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
}

/// `POST /snapshot` body (optional): which pool to snapshot, and (Scion, physical mode) the
/// moment to snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSnapshotRequest {
    /// Pool name; empty means the active pool.
    #[serde(
        default,
        rename = "poolName",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub pool_name: String,
    /// Scion, physical mode only: snapshot the data as it was at this moment of the WAL
    /// window (the window is in `GET /instance/retrieval`) instead of now. A target outside
    /// the window, or in logical mode, is refused with 400.
    #[serde(default, rename = "recoveryTarget", skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<RecoveryTargetRequest>,
}

/// A moment of the source's WAL: exactly one of `time` and `lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoveryTargetRequest {
    /// The last commit at or before this time (RFC 3339, e.g. `2026-12-02T10:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-12-02T10:00:00Z"))]
    pub time: Option<String>,
    /// Up to and including the WAL record at or after this location (`X/Y`, e.g. `0/3000148`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "0/3000148"))]
    pub lsn: Option<String>,
}

/// `POST /snapshot/clone` body: snapshot a clone's dataset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotCloneRequest {
    /// The clone to snapshot.
    #[serde(default, rename = "cloneID", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required, value_type = crate::CloneId))]
    pub clone_id: String,
    /// A message (DBLab ignores it on this endpoint).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
}

/// `PATCH /snapshot/{id}` and `PATCH /branch/{name}` body: three-state protection and scheduled deletion.
///
/// Neither `protected` nor `deleteAt` is a 400; `protected: true` together with `deleteAt` is a 400.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProtectionUpdateRequest {
    /// Turn protection on or off; absent leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// Lease length in minutes when turning protection on.
    #[serde(
        default,
        rename = "protectionDurationMinutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub protection_duration_minutes: Option<u64>,
    /// Schedule deletion at this time (clears protection).
    #[serde(default, rename = "deleteAt", skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<LocalTime>,
}
