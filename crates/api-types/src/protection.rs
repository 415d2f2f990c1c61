//! Deletion protection as it appears on snapshots, commits and branches, and the lease limits shown with clones.

use serde::{Deserialize, Serialize};

use crate::LocalTime;
use crate::serde_util::{is_zero, null_as_default};

/// `protected`, `protectedTill` and `deleteAt` of a snapshot, commit or branch (flattened into the parent object).
///
/// Protection and scheduled deletion exclude each other; both timestamps are omitted when unset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Protection {
    /// Whether deletion protection is on.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub protected: bool,
    /// When protection ends; omitted when unprotected or protected indefinitely.
    #[serde(default, rename = "protectedTill", skip_serializing_if = "Option::is_none")]
    pub protected_till: Option<LocalTime>,
    /// Scheduled automatic deletion; omitted when none.
    #[serde(default, rename = "deleteAt", skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<LocalTime>,
}

/// The server's protection lease settings, as `Clone.metadata` and `/status` → `cloning` show them (flattened);
/// each is omitted when 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProtectionLimits {
    /// The default lease in minutes when `protected` comes without a duration.
    #[serde(
        default,
        rename = "protectionLeaseDurationMinutes",
        skip_serializing_if = "is_zero",
        deserialize_with = "null_as_default"
    )]
    pub lease_duration_minutes: u64,
    /// The cap on any lease in minutes.
    #[serde(
        default,
        rename = "protectionMaxDurationMinutes",
        skip_serializing_if = "is_zero",
        deserialize_with = "null_as_default"
    )]
    pub max_duration_minutes: u64,
}
