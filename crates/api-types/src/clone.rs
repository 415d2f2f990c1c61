//! Clones on the wire: the `Clone` object and the create, patch and reset requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{CloneId, IdError};
use crate::serde_util::null_as_default;
use crate::{LocalTime, ProtectionLimits, Snapshot, Status};

/// A clone as returned by `GET /clone/{id}`, `GET /clones`, `POST /clone` and in `/status` → `cloning.clones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Clone {
    /// The clone ID.
    pub id: String,
    /// The snapshot the clone was made from (`null` if unknown).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub snapshot: Option<Snapshot>,
    /// The branch the clone belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub branch: String,
    /// The clone's dataset revision (`r<N>`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub revision: i64,
    /// Whether deletion protection is on.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub protected: bool,
    /// When protection ends; omitted when unprotected or protected indefinitely.
    #[serde(default, rename = "protectedTill", skip_serializing_if = "Option::is_none")]
    pub protected_till: Option<LocalTime>,
    /// Scheduled deletion; DBLab never sets it for clones, so it is `null`.
    #[serde(default, rename = "deleteAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub delete_at: Option<LocalTime>,
    /// When the clone was requested.
    #[serde(default, rename = "createdAt")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub created_at: Option<LocalTime>,
    /// Lifecycle status.
    pub status: Status,
    /// Scion's extension (scale to zero): when the clone's server was stopped; omitted while
    /// it runs. A stopped clone stays `OK`: the first connection to its port starts it.
    #[serde(default, rename = "stoppedAt", skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<LocalTime>,
    /// How to connect.
    pub db: Database,
    /// Sizes, timings and the limits that apply to this clone.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub metadata: CloneMetadata,
    /// The CPU, memory and disk limits the clone runs with (Scion's addition; omitted when it
    /// has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CloneLimits>,
    /// What the clone's server has used, as its control group counts (Scion's addition;
    /// omitted for a clone without limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CloneUsage>,
    /// Scion's addition: the client certificate a create asked for (`clientCertificate`),
    /// only in that create's answer. Its key is kept nowhere: this answer is the only copy.
    #[serde(default, rename = "clientCertificate", skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate for a clone's user (`Clone.clientCertificate`), all PEM: over TLS the
/// user logs in with it instead of a password.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientCertificate {
    /// The certificate; its common name is the clone's user.
    pub certificate: String,
    /// Its private key (PKCS#8).
    pub key: String,
    /// The CA certificate that signed it and the clones' server certificates.
    pub ca: String,
}

/// A clone's CPU, memory and disk limits (`Clone.limits`, `CreateCloneRequest.limits`); an
/// absent field is unlimited (in a request: the server's default).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloneLimits {
    /// CPU time in cores (`1.5`: one and a half cores' worth per period), at least 0.01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in bytes, at least 16 MiB; a backend past it is killed and the server recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Disk quota in bytes: the most the clone's dataset may refer to, its snapshot's data
    /// included (more than the snapshot's size, at least 16 MiB); a write past it fails with
    /// "Disk quota exceeded" in that clone only. btrfs and ZFS pools only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

/// A size in bytes from `1048576`, `512MB`, `512MiB`, `2 GB`, `64kB`: the suffixes are binary
/// (as in Postgres' settings, `MB` is 2^20).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a size (like 512MB or 2GB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?} has an unknown unit (use kB, MB, GB or TB)")),
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// What a limited clone's server has used (`Clone.usage`); a counter the host does not keep
/// is omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloneUsage {
    /// Memory charged to the clone now, page cache included, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// The most memory charged at once, in bytes.
    #[serde(default, rename = "memoryPeak", skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<u64>,
    /// Processes the kernel killed for the memory limit.
    #[serde(default, rename = "oomKills", skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
    /// CPU time used, in microseconds.
    #[serde(default, rename = "cpuUsageMicros", skip_serializing_if = "Option::is_none")]
    pub cpu_usage_micros: Option<u64>,
    /// Periods in which the CPU limit held the clone back.
    #[serde(default, rename = "cpuThrottledPeriods", skip_serializing_if = "Option::is_none")]
    pub cpu_throttled_periods: Option<u64>,
}

/// How to connect to a clone (`Clone.db`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Database {
    /// `host=<host> port=<port> user=<username> dbname=<dbName>`; empty until the clone is ready.
    #[serde(default, rename = "connStr", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub conn_str: String,
    /// The host clients should connect to; empty until ready.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub host: String,
    /// The port, **as a string** (DBLab's quirk); empty until ready.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub port: String,
    /// The clone's database user.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub username: String,
    /// Always empty: the password is never sent back.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub password: String,
    /// The database to connect to.
    #[serde(default, rename = "dbName", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub db_name: String,
    /// The authenticated user the clone is bound to, when user binding is on.
    #[serde(default, rename = "ownerUser", skip_serializing_if = "String::is_empty")]
    pub owner_user: String,
}

impl Database {
    /// DBLab's connection string format.
    pub fn format_conn_str(host: &str, port: u16, username: &str, db_name: &str) -> String {
        format!("host={host} port={port} user={username} dbname={db_name}")
    }
}

/// Sizes, timings and limits of a clone (`Clone.metadata`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloneMetadata {
    /// Bytes the clone has written on top of its snapshot.
    #[serde(default, rename = "cloneDiffSize", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub clone_diff_size: u64,
    /// Logical size of the clone's data in bytes: what its files refer to, shared with its
    /// snapshot or not, as the last size collection measured it (its snapshot's size until
    /// then), as DBLab's `logicalreferenced`.
    #[serde(default, rename = "logicalSize", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub logical_size: u64,
    /// Seconds from request to ready.
    #[serde(default, rename = "cloningTime", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub cloning_time: f64,
    /// Idle minutes after which the clone is destroyed (0: never).
    #[serde(default, rename = "maxIdleMinutes", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub max_idle_minutes: u64,
    /// The server's protection lease settings.
    #[serde(flatten)]
    pub protection_limits: ProtectionLimits,
}

/// `POST /clone` body (DBLab's `types.CloneCreateRequest`).
///
/// Every field may be absent or `null`; unknown fields are ignored. The server checks that `db`, `db.username`
/// and `db.password` are present and that `id`, when not empty, is a valid [`CloneId`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateCloneRequest {
    /// Requested clone ID; empty means "generate one".
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub id: String,
    /// Turn deletion protection on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protected: bool,
    /// Lease length in minutes when `protected` (absent: the server default; 0: indefinite, still capped).
    #[serde(
        default,
        rename = "protectionDurationMinutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub protection_duration_minutes: Option<u64>,
    /// Branch whose head snapshot to use when `snapshot` is absent (default `main`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub branch: String,
    /// Explicit snapshot; wins over `branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,
    /// Extra Postgres settings for this clone.
    #[serde(
        default,
        rename = "extra_conf",
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub extra_conf: BTreeMap<String, String>,
    /// The database user to create in the clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required, nullable = false))]
    pub db: Option<DatabaseRequest>,
    /// CPU, memory and disk limits for this clone, each over the server's `[clone]` default
    /// (Scion's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CloneLimits>,
    /// Scion's addition: issue the user a client certificate, returned once in the answer
    /// (`Clone.clientCertificate`); over TLS the user then logs in with it, not its password.
    #[serde(
        default,
        rename = "clientCertificate",
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub client_certificate: bool,
}

impl CreateCloneRequest {
    /// The requested clone ID: `None` when empty (generate one), an error when invalid.
    pub fn clone_id(&self) -> Result<Option<CloneId>, IdError> {
        if self.id.is_empty() { Ok(None) } else { CloneId::parse(self.id.as_str()).map(Some) }
    }
}

/// `{"id": "<snapshot ID>"}` inside a clone request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotRef {
    /// The snapshot ID.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
}

/// The `db` object of a clone request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseRequest {
    /// User to create (required): a Postgres role name, at most 63 bytes, no NUL byte.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required, min_length = 1, max_length = 63))]
    pub username: String,
    /// Its password (required; DBLab demands 60 bits of entropy): at most 1024 bytes, no NUL
    /// byte (the engine's `password::MAX_PASSWORD_BYTES`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required, min_length = 1, max_length = 1024))]
    pub password: String,
    /// A non-superuser that owns every database object instead of a superuser.
    #[serde(default, deserialize_with = "null_as_default")]
    pub restricted: bool,
    /// Database the restricted user works in: at most 63 bytes, no NUL byte.
    #[serde(
        default,
        rename = "db_name",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(max_length = 63))]
    pub db_name: String,
}

/// `PATCH /clone/{id}` body: two-state, a missing or false `protected` clears protection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchCloneRequest {
    /// Protection on or off.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protected: bool,
    /// Lease length in minutes (absent: the server default).
    #[serde(
        default,
        rename = "protectionDurationMinutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub protection_duration_minutes: Option<u64>,
}

/// `POST /clone/{id}/reset` body; both fields set is a 400, neither means "the clone's current snapshot".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetCloneRequest {
    /// Snapshot to reset to.
    #[serde(
        default,
        rename = "snapshotID",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub snapshot_id: String,
    /// Reset to the newest snapshot across pools.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub latest: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64kB"), Ok(64 << 10));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }
}
