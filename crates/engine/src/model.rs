//! The engine's records of clones, snapshots and branches, as kept in memory and in the store.
//!
//! These are domain records, not wire shapes: the HTTP layer turns them into `api-types` views.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Where a clone is in its lifecycle (DBLab's clone status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloneState {
    /// The dataset is being cloned and the server started.
    Creating,
    /// The server accepts connections.
    Ok,
    /// The clone is being moved to another snapshot.
    Resetting,
    /// The clone is being destroyed.
    Deleting,
    /// An observation's stop is collecting the clone's statistics (DBLab's `EXPORTING`).
    Exporting,
    /// Creating, resetting or running the clone failed; the message says why.
    Fatal,
}

impl CloneState {
    /// Every state, in lifecycle order.
    pub const ALL: [CloneState; 6] = [
        CloneState::Creating,
        CloneState::Ok,
        CloneState::Resetting,
        CloneState::Deleting,
        CloneState::Exporting,
        CloneState::Fatal,
    ];

    /// DBLab's status code on the wire and in the store.
    pub fn code(self) -> &'static str {
        match self {
            CloneState::Creating => "CREATING",
            CloneState::Ok => "OK",
            CloneState::Resetting => "RESETTING",
            CloneState::Deleting => "DELETING",
            CloneState::Exporting => "EXPORTING",
            CloneState::Fatal => "FATAL",
        }
    }

    /// Parses a status code as written by [`CloneState::code`].
    pub fn from_code(code: &str) -> Option<CloneState> {
        CloneState::ALL.into_iter().find(|state| state.code() == code)
    }
}

/// A clone: a writable dataset made from a snapshot plus the Postgres server running on it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneRecord {
    /// The clone ID (DBLab's rules).
    pub id: String,
    /// The snapshot the clone was made from (or last reset to).
    pub snapshot_id: String,
    /// The branch the clone works on.
    pub branch: String,
    /// Incremented by each reset, so that datasets holding commits survive a reset.
    pub revision: u32,
    /// The pool that holds the clone's dataset.
    pub pool: String,
    /// The clone's dataset within its pool.
    pub dataset: String,
    /// The TCP port the clone's server listens on; unique among clones.
    pub port: u16,
    /// The lifecycle state.
    pub state: CloneState,
    /// A human-readable line about the state (the error for `Fatal`).
    pub state_message: String,
    /// The login role created in the clone for its user.
    pub username: String,
    /// The SCRAM-SHA-256 verifier of the user's password; the plaintext is never stored.
    pub password_verifier: String,
    /// True when the user owns the databases instead of being a superuser.
    pub restricted: bool,
    /// The database the connection string names, when the request gave one.
    pub db_name: Option<String>,
    /// Whether the clone is protected from deletion.
    pub protected: bool,
    /// When protection ends; `None` with `protected` means until lifted.
    pub protected_till: Option<DateTime<Utc>>,
    /// True once the expiry warning for the current lease has been sent.
    pub protection_warning_sent: bool,
    /// When the clone was requested.
    pub created_at: DateTime<Utc>,
    /// How long the last create or reset took until the server was ready, in seconds.
    pub cloning_time_seconds: Option<f64>,
    /// Postgres settings the request asked for; applied at every start of the clone.
    pub extra_conf: BTreeMap<String, String>,
    /// The CPU and memory limits the request asked for, over the configuration's at every
    /// start of the clone.
    pub limits: crate::quota::CloneLimits,
    /// When the clone was stopped (scale to zero): its dataset, port and credentials stay,
    /// its server does not run, and the first connection to its port starts it. `None` while
    /// its server runs (or is to run).
    pub stopped_at: Option<DateTime<Utc>>,
    /// The user asked for a client certificate: over TLS it logs in with one, not with its
    /// password (`docs/tls.md`). Applied again at every reset.
    pub cert_login: bool,
    /// The port the clone's server runs with when it is not the clone's own: a warm clone
    /// that a reset claimed keeps the port it was started on (its socket is named after it),
    /// and the engine holds the clone's port and carries its connections to that socket
    /// (`wake.rs`). `None` otherwise; cleared when that server stops.
    pub server_port: Option<u16>,
}

impl CloneRecord {
    /// The port the clone's server runs with, which names its socket: the clone's own, or
    /// the claimed warm clone's ([`CloneRecord::server_port`]).
    pub fn socket_port(&self) -> u16 {
        self.server_port.unwrap_or(self.port)
    }
}

/// A clone of the warm pool: a dataset and a running server made ahead of demand, not yet any
/// user's. Recorded so that a restart can find and remove what an earlier run left running.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmRecord {
    /// The ID the clone gets when a create names none; also names its log file until then.
    pub id: String,
    /// The snapshot it was made from.
    pub snapshot_id: String,
    /// That snapshot's branch, whose directory holds the dataset.
    pub branch: String,
    /// The dataset within the pool.
    pub dataset: String,
    /// The port its server listens on, reserved in the port pool.
    pub port: u16,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A snapshot: a read-only, point-in-time image of a dataset that clones start from.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    /// The snapshot ID as shown by the API: `<pool>/<dataset>@<tag>`.
    pub id: String,
    /// The pool that holds the snapshot.
    pub pool: String,
    /// The snapshot's name within its pool (`<dataset>@<tag>`).
    pub storage_name: String,
    /// The branch whose history holds the snapshot.
    pub branch: String,
    /// The previous snapshot on the branch, if any.
    pub parent_id: Option<String>,
    /// The commit message, empty for snapshots made by retrieval.
    pub message: String,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// The time the data in the snapshot reflects.
    pub data_state_at: DateTime<Utc>,
    /// Bytes the snapshot holds on its own in the pool.
    pub physical_size: u64,
    /// Bytes of data the snapshot refers to.
    pub logical_size: u64,
    /// Whether the snapshot is protected from deletion and retention.
    pub protected: bool,
    /// When protection ends, if it does.
    pub protected_till: Option<DateTime<Utc>>,
    /// When the snapshot is scheduled for deletion, if it is.
    pub delete_at: Option<DateTime<Utc>>,
    /// Whether its data was masked (`[retrieval.masking]`), or comes from a masked snapshot.
    pub masked: bool,
}

/// A branch: a named pointer to a head snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchRecord {
    /// The branch name.
    pub name: String,
    /// The newest snapshot on the branch.
    pub head_snapshot_id: String,
    /// The snapshot the branch forked from; `None` for `main`.
    pub base_snapshot_id: Option<String>,
    /// When the branch was created.
    pub created_at: DateTime<Utc>,
    /// Whether the branch is protected from deletion.
    pub protected: bool,
    /// When protection ends, if it does.
    pub protected_till: Option<DateTime<Utc>>,
    /// When the branch is scheduled for deletion, if it is.
    pub delete_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip() {
        for state in CloneState::ALL {
            assert_eq!(CloneState::from_code(state.code()), Some(state));
        }
        assert_eq!(CloneState::from_code("ok"), None);
    }
}
