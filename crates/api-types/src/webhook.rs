//! Webhook events and the JSON payload POSTed for each, as DBLab sends them (reference §7).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::LocalTime;
use crate::serde_util::is_zero;

/// A webhook event type; the serialized form is DBLab's `event_type` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A clone became ready.
    CloneCreate,
    /// A clone was reset.
    CloneReset,
    /// A clone was destroyed.
    CloneDelete,
    /// A clone's protection lease is about to end.
    CloneProtectionExpiring,
    /// A clone's protection lease ended and protection was lifted.
    CloneProtectionExpired,
    /// A snapshot was created.
    SnapshotCreate,
    /// A snapshot was deleted.
    SnapshotDelete,
    /// A branch was created.
    BranchCreate,
    /// A branch was deleted.
    BranchDelete,
}

impl WebhookEvent {
    /// Every event, in a fixed order (the order of [`index`](Self::index)).
    pub const ALL: [Self; 9] = [
        Self::CloneCreate,
        Self::CloneReset,
        Self::CloneDelete,
        Self::CloneProtectionExpiring,
        Self::CloneProtectionExpired,
        Self::SnapshotCreate,
        Self::SnapshotDelete,
        Self::BranchCreate,
        Self::BranchDelete,
    ];

    /// DBLab's `event_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloneCreate => "clone_create",
            Self::CloneReset => "clone_reset",
            Self::CloneDelete => "clone_delete",
            Self::CloneProtectionExpiring => "clone_protection_expiring",
            Self::CloneProtectionExpired => "clone_protection_expired",
            Self::SnapshotCreate => "snapshot_create",
            Self::SnapshotDelete => "snapshot_delete",
            Self::BranchCreate => "branch_create",
            Self::BranchDelete => "branch_delete",
        }
    }

    /// Position in [`ALL`](Self::ALL), for per-event counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of DBLab's webhook event types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEvent(pub String);

impl fmt::Display for UnknownEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown webhook event {:?}", self.0)
    }
}

impl std::error::Error for UnknownEvent {}

impl FromStr for WebhookEvent {
    type Err = UnknownEvent;
    fn from_str(text: &str) -> Result<Self, UnknownEvent> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == text)
            .ok_or_else(|| UnknownEvent(text.to_owned()))
    }
}

/// The JSON body of a webhook POST.
///
/// Snapshot and branch events carry only `event_type` and `entity_id` (snapshot ID or branch name). Clone events
/// add the connection fields (`container_name` is the clone ID; `owner_user` only on `clone_create`); protection
/// events add `protected_till` and `expires_in_hours` (`clone_protection_expiring` only). Every optional field is
/// left out when empty, as DBLab's `omitempty` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookPayload {
    /// Which event.
    pub event_type: WebhookEvent,
    /// Clone ID, snapshot ID or branch name.
    pub entity_id: String,
    /// Host clients connect to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The clone's port.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    /// The clone's user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// The clone's database.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dbname: String,
    /// The user the clone is bound to (`clone_create` only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner_user: String,
    /// DBLab's container name, which is the clone ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    /// When protection ends (`clone_protection_expiring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_till: Option<LocalTime>,
    /// Whole hours until protection ends, at least 1 (`clone_protection_expiring`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires_in_hours: u32,
}

impl WebhookPayload {
    /// The basic payload: event type and entity ID only (snapshot and branch events).
    pub fn basic(event_type: WebhookEvent, entity_id: impl Into<String>) -> Self {
        Self {
            event_type,
            entity_id: entity_id.into(),
            host: String::new(),
            port: 0,
            username: String::new(),
            dbname: String::new(),
            owner_user: String::new(),
            container_name: String::new(),
            protected_till: None,
            expires_in_hours: 0,
        }
    }

    /// A clone event: the basic payload plus connection fields; `container_name` is the clone ID.
    pub fn clone_event(
        event_type: WebhookEvent,
        clone_id: &str,
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        dbname: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            username: username.into(),
            dbname: dbname.into(),
            container_name: clone_id.to_owned(),
            ..Self::basic(event_type, clone_id)
        }
    }
}

/// One webhook delivery as `GET /webhooks/deliveries` shows it (Scion's extension): an event
/// sent to one hook, with its attempts and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    /// The event type.
    pub event: WebhookEvent,
    /// The payload's `entity_id`: clone ID, snapshot ID or branch name.
    #[serde(rename = "entityID")]
    pub entity_id: String,
    /// The hook's origin (`scheme://host:port`): a hook's path and query often carry its
    /// secret, so they are not shown.
    pub hook: String,
    /// Attempts made (0 when dropped before the first).
    pub attempts: u32,
    /// `delivered`, `failed`, `dropped_queue_full` or `dropped_shutdown`.
    pub outcome: String,
    /// HTTP status of the last answer; absent when none came.
    #[serde(default, rename = "lastStatus", skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last attempt's error (timeout, connection error, non-2xx status), the hook named by
    /// its origin; absent when none.
    #[serde(default, rename = "lastError", skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the event was emitted.
    #[serde(rename = "emittedAt")]
    pub emitted_at: LocalTime,
    /// When the attempts ended.
    #[serde(rename = "finishedAt")]
    pub finished_at: LocalTime,
}
