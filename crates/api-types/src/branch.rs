//! Branches on the wire: the branch list item, create and commit requests and their answers.

use serde::{Deserialize, Serialize};

use crate::Protection;
use crate::serde_util::null_as_default;

/// A branch as returned by `GET /branches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BranchView {
    /// Branch name.
    pub name: String,
    /// Dataset the branch was created from.
    #[serde(default, rename = "baseDataset", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub base_dataset: String,
    /// The branch it forked from, `-` if none.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub parent: String,
    /// Head data timestamp as `YYYYMMDDHHMMSS`.
    #[serde(default, rename = "dataStateAt", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub data_state_at: String,
    /// Head snapshot ID.
    #[serde(default, rename = "snapshotID", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub snapshot_id: String,
    /// The branch dataset.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub dataset: String,
    /// Number of snapshots on the branch.
    #[serde(default, rename = "numSnapshots", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub num_snapshots: i64,
    /// Protection and scheduled deletion.
    #[serde(flatten)]
    pub protection: Protection,
    /// Scion: the head's data is masked (`[retrieval.masking]`); sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
}

/// `PATCH /branch/{name}` answer: the protection part of a [`BranchView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BranchProtection {
    /// Branch name.
    pub name: String,
    /// Protection and scheduled deletion.
    #[serde(flatten)]
    pub protection: Protection,
}

/// `POST /branch` body: one of `baseBranch` and `snapshotID` is required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateBranchRequest {
    /// The new branch's name.
    #[serde(default, rename = "branchName", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required, value_type = crate::BranchName))]
    pub branch_name: String,
    /// Fork from this branch's head.
    #[serde(
        default,
        rename = "baseBranch",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub base_branch: String,
    /// Fork from this snapshot.
    #[serde(
        default,
        rename = "snapshotID",
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub snapshot_id: String,
    /// Scion's addition (physical mode): fork the branch from the data exactly at this time or
    /// LSN inside the WAL window (`GET /instance/retrieval` shows it), replayed from the newest
    /// snapshot at or before it, instead of from a base branch or snapshot. A target outside
    /// the window, or in logical mode, is refused with 400.
    #[serde(default, rename = "recoveryTarget", skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<crate::RecoveryTargetRequest>,
}

/// `POST /branch` answer: `{"name": "<branchName>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateBranchResponse {
    /// The created branch.
    pub name: String,
}

/// `POST /branch/snapshot` body ("commit"): snapshot a clone into its branch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitRequest {
    /// The clone to commit.
    #[serde(default, rename = "cloneID", deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(required, value_type = crate::CloneId))]
    pub clone_id: String,
    /// Commit message.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub message: String,
}

/// `POST /branch/snapshot` answer: `{"snapshotID": "<pool>/branch/<b>/<clone>/r<n>@<YYYYMMDDHHMMSS>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitResponse {
    /// The new snapshot's ID.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
}
