//! `/snapshots`, `/snapshot`, `/snapshot/clone` and `/snapshot/{id}`; snapshot IDs contain `/`
//! and `@`, so the ID is the rest of the path.

use api_types::{
    ApiError, CreateSnapshotRequest, ProtectionUpdateRequest, Response as OkResponse,
    SnapshotCloneRequest, SnapshotId,
};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiFailure;
use crate::extract::{Body, OptionalBody, Params};
use crate::openapi::{InsufficientStorage, InternalError, Unauthorized};
use crate::{AppState, views};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/snapshots", get(list).fallback(super::method_not_allowed))
        .route("/snapshot", post(create).fallback(super::method_not_allowed))
        .route("/snapshot/clone", post(snapshot_clone).fallback(super::method_not_allowed))
        .route(
            "/snapshot/{*id}",
            get(show).delete(delete).patch(update).fallback(super::method_not_allowed),
        )
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only the snapshots of this branch (400 when there is no such branch).
    branch: Option<String>,
    /// Only the snapshots of this pool.
    dataset: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// Delete even when clones depend on the snapshot (`true` or `false`).
    #[param(value_type = Option<bool>)]
    force: Option<String>,
}

/// Checks an ID from the path with DBLab's rule before it reaches the engine.
fn snapshot_id(id: &str) -> Result<&str, ApiFailure> {
    SnapshotId::parse(id).map_err(|error| ApiFailure::bad_request(error.to_string()))?;
    Ok(id)
}

/// List snapshots, newest first.
#[utoipa::path(
    get,
    path = "/snapshots",
    operation_id = "snapshots",
    tag = "Snapshots",
    security(("verification_token" = [])),
    params(ListParams),
    responses(
        (
            status = 200,
            description = "The snapshots, newest first.",
            body = Vec<api_types::Snapshot>
        ),
        (
            status = 400,
            description = "An unknown branch, or bad query parameters.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
    )
)]
async fn list(
    State(state): State<AppState>,
    Params(params): Params<ListParams>,
) -> Result<Json<Vec<api_types::Snapshot>>, ApiFailure> {
    if let Some(branch) = params.branch.as_deref().filter(|branch| !branch.is_empty()) {
        // The branch is named in the query, not the path: an unknown one is a bad request.
        state.engine.branch(branch).map_err(|error| match error {
            engine::Error::NotFound(message) => ApiFailure::bad_request(message),
            other => other.into(),
        })?;
    }
    let snapshots = state.engine.snapshots();
    Ok(Json(
        snapshots
            .iter()
            .filter(|view| {
                params
                    .branch
                    .as_deref()
                    .is_none_or(|branch| branch.is_empty() || view.record.branch == branch)
                    && params
                        .dataset
                        .as_deref()
                        .is_none_or(|pool| pool.is_empty() || view.record.pool == pool)
            })
            .map(views::snapshot)
            .collect(),
    ))
}

/// Get a snapshot.
#[utoipa::path(
    get,
    path = "/snapshot/{id}",
    operation_id = "getSnapshot",
    tag = "Snapshots",
    security(("verification_token" = [])),
    params((
        "id" = SnapshotId,
        Path,
        description = "The snapshot ID, e.g. `pool/data@snapshot_20240501120000`. It contains `/` \
            and `@`; send them as they are, not percent-encoded."
    )),
    responses(
        (status = 200, description = "The snapshot.", body = api_types::Snapshot),
        (status = 400, description = "An invalid snapshot ID.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No snapshot with this ID.", body = ApiError),
    )
)]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    let view = state.engine.snapshot(snapshot_id(&id)?)?;
    Ok(Json(views::snapshot(&view)))
}

/// Snapshot the pool's data now, or (physical mode) at a moment of the WAL window.
///
/// The new snapshot becomes the head of `main`; retention then applies. With
/// `recoveryTarget` (Scion, physical mode), the snapshot holds the data as it was at that time
/// or WAL location: a copy of the standby from before it replays the WAL archive up to it.
#[utoipa::path(
    post,
    path = "/snapshot",
    operation_id = "createSnapshot",
    tag = "Snapshots",
    security(("verification_token" = [])),
    request_body(
        content = Option<CreateSnapshotRequest>,
        description = "Which pool, and the moment; may be empty (the engine's pool, now)."
    ),
    responses(
        (status = 200, description = "The new snapshot.", body = api_types::Snapshot),
        (status = 400, description = "Malformed JSON, an unknown pool, or a recovery target \
            that is malformed, outside the WAL window (the message names it), or given in \
            logical mode.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
    )
)]
async fn create(
    State(state): State<AppState>,
    OptionalBody(request): OptionalBody<CreateSnapshotRequest>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    if !request.pool_name.is_empty() && request.pool_name != state.engine.pool().name() {
        return Err(ApiFailure::bad_request(format!("pool {:?} not found", request.pool_name)));
    }
    let view = match request.recovery_target {
        Some(target) => state.engine.create_snapshot_at_point(recovery_target(&target)?).await?,
        None => state.engine.create_snapshot().await?,
    };
    Ok(Json(views::snapshot(&view)))
}

/// The engine's target for `recoveryTarget`: exactly one of a time and an LSN.
pub(super) fn recovery_target(
    target: &api_types::RecoveryTargetRequest,
) -> Result<engine::RecoveryTarget, ApiFailure> {
    match (&target.time, &target.lsn) {
        (Some(time), None) => chrono::DateTime::parse_from_rfc3339(time)
            .map(|time| engine::RecoveryTarget::Time(time.to_utc()))
            .map_err(|error| {
                ApiFailure::bad_request(format!(
                    "recoveryTarget.time {time:?} is not an RFC 3339 time: {error}"
                ))
            }),
        (None, Some(lsn)) => {
            lsn.parse::<engine::Lsn>().map(engine::RecoveryTarget::Lsn).map_err(|()| {
                ApiFailure::bad_request(format!(
                    "recoveryTarget.lsn {lsn:?} is not a WAL location (X/Y, e.g. 0/3000148)"
                ))
            })
        }
        _ => Err(ApiFailure::bad_request(
            "recoveryTarget needs exactly one of time and lsn".to_owned(),
        )),
    }
}

/// Delete a snapshot.
///
/// Refused while the snapshot is protected, or has clones unless `force=true` (which destroys
/// them first; protected clones still refuse).
#[utoipa::path(
    delete,
    path = "/snapshot/{id}",
    operation_id = "deleteSnapshot",
    tag = "Snapshots",
    security(("verification_token" = [])),
    params((
        "id" = SnapshotId,
        Path,
        description = "The snapshot ID, e.g. `pool/data@snapshot_20240501120000`. It contains `/` \
            and `@`; send them as they are, not percent-encoded."
    ), DeleteParams),
    responses(
        (
            status = 200,
            description = "Deleted.",
            body = OkResponse,
            example = json!({"status": "OK", "message": "Deleted snapshot"})
        ),
        (
            status = 400,
            description = "An invalid snapshot ID, a bad `force`, or the deletion is refused: the \
                snapshot is protected, is the only one of its branch, or has clones (without \
                `force`, or protected ones).",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No snapshot with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<DeleteParams>,
) -> Result<Json<OkResponse>, ApiFailure> {
    let force = match params.force.as_deref() {
        // Go's strconv.ParseBool, which DBLab uses, takes these spellings.
        None | Some("" | "0" | "f" | "F" | "false" | "FALSE" | "False") => false,
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some(other) => {
            return Err(ApiFailure::bad_request(format!(
                "force must be true or false, not {other:?}"
            )));
        }
    };
    state.engine.delete_snapshot(snapshot_id(&id)?, force).await?;
    Ok(Json(OkResponse { status: "OK".to_owned(), message: "Deleted snapshot".to_owned() }))
}

/// Protect a snapshot, lift its protection, or schedule its deletion.
///
/// `protected: true` protects it forever, or for `protectionDurationMinutes` (capped by the
/// server's `protection_max_duration_minutes`) and clears a scheduled deletion; `deleteAt`
/// schedules deletion and clears protection; `protected: false` alone lifts protection.
#[utoipa::path(
    patch,
    path = "/snapshot/{id}",
    operation_id = "updateSnapshot",
    tag = "Snapshots",
    security(("verification_token" = [])),
    params((
        "id" = SnapshotId,
        Path,
        description = "The snapshot ID, e.g. `pool/data@snapshot_20240501120000`. It contains `/` \
            and `@`; send them as they are, not percent-encoded."
    )),
    request_body = ProtectionUpdateRequest,
    responses(
        (status = 200, description = "The snapshot.", body = api_types::Snapshot),
        (
            status = 400,
            description = "Malformed JSON, an invalid snapshot ID, neither `protected` nor \
                `deleteAt`, or `protected: true` with `deleteAt`.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No snapshot with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<ProtectionUpdateRequest>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    let update = super::branches::protection_update(&request);
    let view = state.engine.update_snapshot(snapshot_id(&id)?, update)?;
    Ok(Json(views::snapshot(&view)))
}

/// Snapshot a clone's data without moving its branch's head.
///
/// The clone's server is checkpointed, then its dataset snapshotted; the snapshot belongs to
/// the clone's branch and its parent is the clone's snapshot. Like DBLab, `message` is
/// ignored here (`POST /branch/snapshot` keeps it). Emits the `snapshot_create` webhook.
#[utoipa::path(
    post,
    path = "/snapshot/clone",
    operation_id = "createSnapshotOfClone",
    tag = "Snapshots",
    security(("verification_token" = [])),
    request_body = SnapshotCloneRequest,
    responses(
        (status = 200, description = "The new snapshot.", body = api_types::Snapshot),
        (
            status = 400,
            description = "An empty or malformed body, no `cloneID`, or a clone that is not \
                running.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
    )
)]
async fn snapshot_clone(
    State(state): State<AppState>,
    Body(request): Body<SnapshotCloneRequest>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    if request.clone_id.is_empty() {
        return Err(ApiFailure::bad_request("cloneID is required"));
    }
    let view = state.engine.snapshot_clone(&request.clone_id).await?;
    Ok(Json(views::snapshot(&view)))
}
