//! The `{code, message}` status object shared by clones, the instance and the synchronization instance.

use serde::{Deserialize, Serialize};

use crate::serde_util::null_as_default;

wire_enum! {
    /// A status code (DBLab's `models.StatusCode`): clone lifecycle codes, the instance-level `WARNING`, and the
    /// codes of the physical-mode synchronization instance (`Starting`, `Down`, `Not available`, `Error`).
    pub enum StatusCode {
        /// Clone ready / instance healthy / sync running.
        Ok = "OK",
        /// Clone being created (returned by `POST /clone`).
        Creating = "CREATING",
        /// Clone being reset to another snapshot.
        Resetting = "RESETTING",
        /// Clone being destroyed.
        Deleting = "DELETING",
        /// Clone busy exporting observation artifacts.
        Exporting = "EXPORTING",
        /// Clone failed; the message holds the error text.
        Fatal = "FATAL",
        /// Instance-level: a subsystem needs attention.
        Warning = "WARNING",
        /// Synchronization instance starting.
        SyncStarting = "Starting",
        /// Synchronization instance down.
        SyncDown = "Down",
        /// No synchronization instance (logical mode).
        SyncNotAvailable = "Not available",
        /// Synchronization instance in error.
        SyncError = "Error",
    }
}

#[allow(
    clippy::derivable_impls,
    reason = "the enum is declared by wire_enum!, whose derive list has no Default"
)]
impl Default for StatusCode {
    fn default() -> Self {
        Self::Ok
    }
}

impl StatusCode {
    /// DBLab's fixed message for a clone in this state (only `CREATING` and `OK` have one in the reference).
    pub fn clone_message(&self) -> Option<&'static str> {
        match self {
            Self::Creating => Some("Clone is being created."),
            Self::Ok => Some("Clone is ready to accept Postgres connections."),
            _ => None,
        }
    }
}

/// A status object: `{"code": "...", "message": "..."}`. The message is always sent, empty or not, as
/// DBLab's `models.Status` does (no `omitempty`): `synchronization.status` outside physical mode is
/// `{"code": "Not available", "message": ""}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// The status code.
    pub code: StatusCode,
    /// A human-readable explanation (for `FATAL`, the error text).
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub message: String,
}

impl Status {
    /// A status with a code and message.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A clone status with DBLab's standard message for the code (empty for codes without one).
    pub fn for_clone(code: StatusCode) -> Self {
        let message = code.clone_message().unwrap_or_default();
        Self::new(code, message)
    }
}
