//! Scion's wire contract: every JSON shape that crosses the REST API or a webhook, wire-compatible with DBLab Engine 4.x.
//!
//! The types mirror DBLab's Go models field for field (names as on the wire, camelCase where DBLab uses it,
//! Go's `omitempty` as `skip_serializing_if`, Go pointers as `Option` that serialize to `null`).
//! Response types are what Scion writes and what the API client reads; request types accept and ignore unknown
//! fields and treat `null` like an absent field, as DBLab's Go decoder does.
//!
//! What is deliberately *not* here: HTTP routing, status-code plumbing beyond the number each [`ErrorCode`] maps
//! to, and any engine logic. The crate depends on serde and chrono only, so the CLI and API client build without
//! the engine. The optional `openapi` feature adds `utoipa` and implements `utoipa::ToSchema` for every type, for
//! the API's OpenAPI document.
//!
//! Known divergence: Go's `encoding/json` matches field names case-insensitively (`"ID"` fills `id`); serde matches
//! them exactly. DBLab's own clients send the exact names, so this matters only for hand-written requests.
#![warn(missing_docs)]

#[macro_use]
mod macros;
mod serde_util;

mod branch;
mod clone;
mod delivery;
mod error;
mod ids;
mod instance;
mod masking;
mod observation;
#[cfg(feature = "openapi")]
mod openapi;
mod protection;
mod retrieval;
mod snapshot;
mod source;
mod status;
mod time;
mod webhook;

pub use branch::{
    BranchProtection, BranchView, CommitRequest, CommitResponse, CreateBranchRequest,
    CreateBranchResponse,
};
pub use clone::{
    ClientCertificate, Clone, CloneLimits, CloneMetadata, CloneUsage, CreateCloneRequest, Database,
    DatabaseRequest, PatchCloneRequest, ResetCloneRequest, SnapshotRef, parse_bytes,
};
pub use delivery::{DeliveryRecord, DropReason, Outcome, UnknownOutcome};
pub use error::{ApiError, ErrorCode, Response, WsToken};
pub use ids::{
    BranchName, CloneId, IdError, IdKind, MAX_BRANCH_NAME_LEN, MAX_CLONE_ID_LEN,
    MAX_SNAPSHOT_ID_LEN, SnapshotId,
};
pub use instance::{
    Cloning, Difference, Engine, FileSystem, Instance, MajorExtensions, PoolEntry, PoolStatus,
    Provisioner, Reconciliation, Synchronization, WarmPool, WarmSnapshot,
};
pub use masking::{MaskingCheck, UnmaskedColumn};
pub use observation::{
    ARTIFACT_TYPES, Checklist, ObjectsStat, ObservationConfig, ObservationInterval,
    ObservationResult, ObservationSession, ObservationSummary, STATUS_FAILED, STATUS_PASSED,
    StartObservationRequest, StopObservationRequest, SummaryArtifact, SummaryDbSize,
    SummaryDuration, SummaryLocks, SummaryLogErrors,
};
pub use protection::{Protection, ProtectionLimits};
pub use retrieval::{
    Activity, Alert, AlertLevel, AlertType, PgActivityEvent, RetrievalDatabase, RetrievalMode,
    RetrievalProgress, RetrievalStatus, RetrievalWarnings, Retrieving, WalPoint, WalWindow,
};
pub use snapshot::{
    CreateSnapshotRequest, ProtectionUpdateRequest, RecoveryTargetRequest, Snapshot,
    SnapshotCloneRequest, SnapshotDetails,
};
pub use source::{
    DbSourceResponse, ProbeSourceRequest, ProposedConfig, ProposedSource, SourceDatabase,
    SourceProblem, SourceReport, TestDbSourceRequest,
};
pub use status::{Status, StatusCode};
pub use time::{LocalTime, TimeParseError};
pub use webhook::{UnknownEvent, WebhookDelivery, WebhookEvent, WebhookPayload};
