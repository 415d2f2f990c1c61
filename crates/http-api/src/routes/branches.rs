//! `/branches`, `/branch`, `/branch/snapshot` (commit), `/branch/snapshot/{id}`,
//! `/branch/{branchName}/log` and `/branch/{branchName}`: DBLab 4.0's branching.

use api_types::{
    ApiError, BranchName, BranchProtection, CommitRequest, CommitResponse, CreateBranchRequest,
    CreateBranchResponse, ProtectionUpdateRequest, Response as OkResponse, SnapshotDetails,
    SnapshotId,
};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::ProtectionUpdate;

use crate::error::ApiFailure;
use crate::extract::Body;
use crate::openapi::{InsufficientStorage, InternalError, Unauthorized};
use crate::{AppState, views};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/branches", get(list).fallback(super::method_not_allowed))
        .route("/branch", post(create).fallback(super::method_not_allowed))
        .route("/branch/snapshot", post(commit).fallback(super::method_not_allowed))
        .route("/branch/snapshot/{*id}", get(show_commit).fallback(super::method_not_allowed))
        .route("/branch/{branchName}/log", get(log).fallback(super::method_not_allowed))
        .route(
            "/branch/{branchName}",
            axum::routing::delete(delete).patch(update).fallback(super::method_not_allowed),
        )
}

/// Checks a branch name from the path with DBLab's rule before it reaches the engine.
fn branch_name(name: &str) -> Result<&str, ApiFailure> {
    BranchName::parse(name).map_err(|error| ApiFailure::bad_request(error.to_string()))?;
    Ok(name)
}

/// The engine's form of a PATCH body; a zero `deleteAt` (`""`) counts as absent.
pub(super) fn protection_update(request: &ProtectionUpdateRequest) -> ProtectionUpdate {
    ProtectionUpdate {
        protected: request.protected,
        duration_minutes: request.protection_duration_minutes,
        delete_at: request.delete_at.and_then(api_types::LocalTime::get),
    }
}

/// List branches.
#[utoipa::path(
    get,
    path = "/branches",
    operation_id = "listBranches",
    tag = "Branches",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "Every branch, by name.", body = Vec<api_types::BranchView>),
        (status = 401, response = Unauthorized),
    )
)]
async fn list(State(state): State<AppState>) -> Json<Vec<api_types::BranchView>> {
    Json(state.engine.branches().iter().map(views::branch).collect())
}

/// Create a branch from the head of a branch, from a snapshot, or at a point in time.
///
/// The new branch starts with one snapshot holding exactly the data of its base; clones made
/// on it (`"branch"` in `POST /clone`) start from its head. With `recoveryTarget` (Scion,
/// physical mode) its base is the data exactly at that time or LSN, replayed from the newest
/// snapshot at or before it, which is its fork point. Emits the `branch_create` webhook.
#[utoipa::path(
    post,
    path = "/branch",
    operation_id = "createBranch",
    tag = "Branches",
    security(("verification_token" = [])),
    request_body = CreateBranchRequest,
    responses(
        (status = 200, description = "Created.", body = CreateBranchResponse),
        (
            status = 400,
            description = "Malformed JSON, an invalid or taken name, neither `baseBranch` nor \
                `snapshotID`, an unknown base, or a `recoveryTarget` outside the WAL window \
                (named in the message), with a base, or in logical mode.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
    )
)]
async fn create(
    State(state): State<AppState>,
    Body(request): Body<CreateBranchRequest>,
) -> Result<Json<CreateBranchResponse>, ApiFailure> {
    let view = match &request.recovery_target {
        Some(_) if !request.base_branch.is_empty() || !request.snapshot_id.is_empty() => {
            return Err(ApiFailure::bad_request(
                "recoveryTarget picks its own base (the newest snapshot at or before it): leave baseBranch and snapshotID out".to_owned(),
            ));
        }
        Some(target) => {
            let at = super::snapshots::recovery_target(target)?;
            state.engine.create_branch_at_point(&request.branch_name, at).await?
        }
        None => {
            state
                .engine
                .create_branch(
                    &request.branch_name,
                    Some(request.base_branch.as_str()),
                    Some(request.snapshot_id.as_str()),
                )
                .await?
        }
    };
    Ok(Json(CreateBranchResponse { name: view.record.name }))
}

/// Commit a clone: snapshot its data into its branch.
///
/// The clone's server is checkpointed, then its dataset is snapshotted atomically; the
/// snapshot becomes the branch's head and the previous head its parent.
#[utoipa::path(
    post,
    path = "/branch/snapshot",
    operation_id = "createBranchSnapshot",
    tag = "Branches",
    security(("verification_token" = [])),
    request_body = CommitRequest,
    responses(
        (status = 200, description = "The new head's ID.", body = CommitResponse),
        (
            status = 400,
            description = "Malformed JSON, no `cloneID`, a clone that is not running, or its \
                branch is gone.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
    )
)]
async fn commit(
    State(state): State<AppState>,
    Body(request): Body<CommitRequest>,
) -> Result<Json<CommitResponse>, ApiFailure> {
    if request.clone_id.is_empty() {
        return Err(ApiFailure::bad_request("cloneID is required"));
    }
    let view = state.engine.commit_clone(&request.clone_id, &request.message).await?;
    Ok(Json(CommitResponse { snapshot_id: view.record.id }))
}

/// Get a commit: a snapshot with its place in the history.
#[utoipa::path(
    get,
    path = "/branch/snapshot/{id}",
    operation_id = "getCommit",
    tag = "Branches",
    security(("verification_token" = [])),
    params((
        "id" = SnapshotId,
        Path,
        description = "The snapshot ID, e.g. `pool/branch/dev/c1/r0@20240501120000`. It contains \
            `/` and `@`; send them as they are, not percent-encoded."
    )),
    responses(
        (status = 200, description = "The commit.", body = SnapshotDetails),
        (status = 400, description = "An invalid snapshot ID.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No snapshot with this ID.", body = ApiError),
    )
)]
async fn show_commit(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SnapshotDetails>, ApiFailure> {
    SnapshotId::parse(&id).map_err(|error| ApiFailure::bad_request(error.to_string()))?;
    let view = state.engine.commit(&id)?;
    Ok(Json(views::commit(&view)))
}

/// A branch's history, from its head to the root.
///
/// Follows parents across the branches it forked from, down to the first snapshot of the data.
#[utoipa::path(
    get,
    path = "/branch/{branchName}/log",
    operation_id = "getBranchLog",
    tag = "Branches",
    security(("verification_token" = [])),
    params(("branchName" = api_types::BranchName, Path, description = "The branch.")),
    responses(
        (status = 200, description = "The commits, head first.", body = Vec<SnapshotDetails>),
        (status = 400, description = "An invalid branch name.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No branch with this name.", body = ApiError),
    )
)]
async fn log(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<SnapshotDetails>>, ApiFailure> {
    let commits = state.engine.branch_log(branch_name(&name)?)?;
    Ok(Json(commits.iter().map(views::commit).collect()))
}

/// Delete a branch with its snapshots.
///
/// Refused for `main`, a protected branch, a branch another branch forks from, and a branch
/// with clones. Emits the `branch_delete` webhook.
#[utoipa::path(
    delete,
    path = "/branch/{branchName}",
    operation_id = "deleteBranch",
    tag = "Branches",
    security(("verification_token" = [])),
    params(("branchName" = api_types::BranchName, Path, description = "The branch.")),
    responses(
        (
            status = 200,
            description = "Deleted.",
            body = OkResponse,
            example = json!({"status": "OK", "message": "Deleted branch"})
        ),
        (
            status = 400,
            description = "An invalid name, or the deletion is refused: `main`, protected, a \
                fork point of other branches, or it has clones.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No branch with this name.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OkResponse>, ApiFailure> {
    state.engine.delete_branch(branch_name(&name)?).await?;
    Ok(Json(OkResponse { status: "OK".to_owned(), message: "Deleted branch".to_owned() }))
}

/// Protect a branch, lift its protection, or schedule its deletion.
///
/// `protected: true` protects it forever, or for `protectionDurationMinutes` (capped by the
/// server's `protection_max_duration_minutes`) and clears a scheduled deletion; `deleteAt`
/// schedules deletion and clears protection; `protected: false` alone lifts protection.
#[utoipa::path(
    patch,
    path = "/branch/{branchName}",
    operation_id = "updateBranch",
    tag = "Branches",
    security(("verification_token" = [])),
    params(("branchName" = api_types::BranchName, Path, description = "The branch.")),
    request_body = ProtectionUpdateRequest,
    responses(
        (status = 200, description = "The branch's protection now.", body = BranchProtection),
        (
            status = 400,
            description = "Malformed JSON, an invalid name, neither `protected` nor `deleteAt`, \
                or `protected: true` with `deleteAt`.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No branch with this name.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(request): Body<ProtectionUpdateRequest>,
) -> Result<Json<BranchProtection>, ApiFailure> {
    let view = state.engine.update_branch(branch_name(&name)?, protection_update(&request))?;
    Ok(Json(views::branch_protection_view(&view)))
}
