//! `/clones`, `/clone`, `/clone/{id}` and `/clone/{id}/reset`.
//!
//! Scion's extension: `POST /clone?wait=<seconds>` and `POST /clone/{id}/reset?wait=<seconds>`
//! answer once the clone is ready (or failed), instead of at once with `CREATING`; DBLab's
//! clients poll every second, this saves them the wait.

use std::time::Duration;

use api_types::{ApiError, CloneId, CreateCloneRequest, PatchCloneRequest, ResetCloneRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{CloneRequest, ProtectionRequest, ResetTarget};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiFailure;
use crate::extract::{Body, OptionalBody, Params};
use crate::openapi::{InsufficientStorage, InternalError, Unauthorized, Unavailable};
use crate::{AppState, listing, views};

/// The longest `wait` a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/clones", get(list).fallback(super::method_not_allowed))
        .route("/clone", post(create).fallback(super::method_not_allowed))
        .route(
            "/clone/{id}",
            get(show).patch(update).delete(destroy).fallback(super::method_not_allowed),
        )
        .route("/clone/{id}/reset", post(reset).fallback(super::method_not_allowed))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitParams {
    /// Scion's extension: seconds to wait for the clone to settle before answering; longer
    /// waits (`inf` too) are cut to 600.
    #[param(minimum = 0)]
    wait: Option<f64>,
}

impl WaitParams {
    fn duration(&self) -> Result<Option<Duration>, ApiFailure> {
        match self.wait {
            None => Ok(None),
            // Cut before converting: `Duration` cannot hold 2^64 seconds and more.
            Some(seconds) if seconds >= 0.0 => {
                Ok(Some(Duration::from_secs_f64(seconds.min(MAX_WAIT.as_secs_f64()))))
            }
            // Negative, or NaN.
            Some(_) => Err(ApiFailure::bad_request("wait must be a number of seconds >= 0")),
        }
    }
}

/// The longest `db.db_name`: Postgres' identifier limit (`NAMEDATALEN - 1`); it would
/// truncate a longer one. The OpenAPI document says the same (`DatabaseRequest`).
pub(crate) const MAX_DB_NAME_BYTES: usize = 63;

/// `db.db_name`: a name Postgres can hold as it is.
fn check_db_name(name: &str) -> Result<(), ApiFailure> {
    if name.contains('\0') {
        return Err(ApiFailure::bad_request("db.db_name must not contain a NUL byte"));
    }
    if name.len() > MAX_DB_NAME_BYTES {
        return Err(ApiFailure::bad_request(format!(
            "db.db_name is {} bytes; Postgres names are at most {MAX_DB_NAME_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

pub(super) fn limits(state: &AppState) -> api_types::ProtectionLimits {
    let config = state.engine.config();
    let cloning = &config.cloning;
    views::protection_limits(
        cloning.protection_lease_duration_minutes,
        cloning.protection_max_duration_minutes,
    )
}

/// List clones, newest first.
#[utoipa::path(
    get,
    path = "/clones",
    operation_id = "listClones",
    tag = "Clones",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "Every clone, newest first.", body = Vec<api_types::Clone>),
        (status = 401, response = Unauthorized),
    )
)]
async fn list(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    // DBLab lists clones newest first: `clones_json` reverses the engine's oldest first.
    let body = listing::clones_json(&state.engine.clones(), limits(&state))
        .map_err(|error| listing::serialization_failed(&error))?;
    Ok(listing::json_response(body))
}

/// Get a clone.
#[utoipa::path(
    get,
    path = "/clone/{id}",
    operation_id = "getClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID.")),
    responses(
        (status = 200, description = "The clone.", body = api_types::Clone),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
    )
)]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Clone>, ApiFailure> {
    let view = state.engine.clone_view(&id)?;
    Ok(Json(views::clone(&view, limits(&state))))
}

/// Create a clone.
///
/// Answers at once with status `CREATING`; the clone becomes `OK` (or `FATAL`) in the background.
/// Scion's extension: with `?wait=<seconds>` the answer comes once the clone has settled, or when
/// the wait is over, whichever is first.
#[utoipa::path(
    post,
    path = "/clone",
    operation_id = "createClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(WaitParams),
    request_body(content = CreateCloneRequest, description = "The clone to create."),
    responses(
        (
            status = 201,
            description = "The new clone (`CREATING`, or settled when `wait` was given).",
            body = api_types::Clone
        ),
        (
            status = 400,
            description = "Malformed JSON, a bad `wait`, an invalid clone ID or username, a \
                missing `db.username` or `db.password`, a weak password, a bad `extra_conf` \
                setting, a clone ID already in use, or a client certificate asked for while \
                TLS is off.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (
            status = 404,
            description = "The snapshot or branch asked for does not exist.",
            body = ApiError
        ),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
        (status = 503, response = Unavailable),
    )
)]
async fn create(
    State(state): State<AppState>,
    Params(params): Params<WaitParams>,
    Body(request): Body<CreateCloneRequest>,
) -> Result<Response, ApiFailure> {
    let wait = params.duration()?;
    let db = request.db.unwrap_or_default();
    check_db_name(&db.db_name)?;
    let request = CloneRequest {
        id: Some(request.id).filter(|id| !id.is_empty()),
        snapshot_id: request.snapshot.map(|snapshot| snapshot.id).filter(|id| !id.is_empty()),
        branch: Some(request.branch).filter(|branch| !branch.is_empty()),
        protection: ProtectionRequest {
            protected: request.protected,
            duration_minutes: request.protection_duration_minutes,
        },
        username: db.username,
        password: db.password,
        restricted: db.restricted,
        db_name: Some(db.db_name).filter(|name| !name.is_empty()),
        extra_conf: request.extra_conf,
        limits: request
            .limits
            .map(|limits| engine::CloneLimits {
                cpu: limits.cpu,
                memory: limits.memory,
                disk: limits.disk,
            })
            .unwrap_or_default(),
        client_certificate: request.client_certificate,
    };
    let (mut view, certificate) = state.engine.create_clone_with_certificate(request).await?;
    if let Some(wait) = wait
        && let Some(settled) = state.engine.wait_settled(&view.record.id, wait).await?
    {
        view = settled;
    }
    let mut clone = views::clone(&view, limits(&state));
    clone.client_certificate = certificate.map(views::client_certificate);
    Ok((StatusCode::CREATED, Json(clone)).into_response())
}

/// Turn a clone's deletion protection on or off.
///
/// Two-state, as in DBLab: a missing or false `protected` clears protection.
#[utoipa::path(
    patch,
    path = "/clone/{id}",
    operation_id = "updateClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID.")),
    request_body(content = PatchCloneRequest, description = "The protection to set."),
    responses(
        (status = 200, description = "The updated clone.", body = api_types::Clone),
        (status = 400, description = "Malformed JSON.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<PatchCloneRequest>,
) -> Result<Json<api_types::Clone>, ApiFailure> {
    let protection = ProtectionRequest {
        protected: request.protected,
        duration_minutes: request.protection_duration_minutes,
    };
    let view = state.engine.update_clone(&id, protection).await?;
    Ok(Json(views::clone(&view, limits(&state))))
}

/// Destroy a clone.
///
/// The clone turns `DELETING` and is removed in the background; poll `GET /clone/{id}` until it
/// answers 404, or (Scion's extension) pass `wait` to answer once it is gone. A deletion that
/// outlasts the wait goes on and is answered as started (200); one that fails within it is a
/// 500 with the clone's state.
#[utoipa::path(
    delete,
    path = "/clone/{id}",
    operation_id = "deleteClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID."), WaitParams),
    responses(
        (
            status = 200,
            description = "Deletion started (or, with `wait`, done or still going on); the body \
                is empty, as in DBLab."
        ),
        (
            status = 400,
            description = "The clone is protected, or busy with another operation.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
async fn destroy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<WaitParams>,
) -> Result<StatusCode, ApiFailure> {
    let wait = params.duration()?;
    state.engine.destroy_clone(&id).await?;
    if let Some(wait) = wait
        && let Some(still) = state.engine.wait_destroyed(&id, wait).await?
        && still.record.state != engine::CloneState::Deleting
    {
        // The deletion ended and left the clone behind (FATAL, with the reason): the engine
        // failed, not the request. (A storage failure comes back above as its own error.)
        return Err(ApiFailure::internal(format!(
            "clone {id:?} was not destroyed: {} {}",
            still.record.state.code(),
            still.record.state_message
        )));
    }
    // Gone, or still DELETING when the wait ran out: the deletion started, and DBLab answers
    // that with 200 and an empty body.
    Ok(StatusCode::OK)
}

/// Reset a clone to a snapshot, keeping its port and credentials.
///
/// Without a body (or with neither field) the clone goes back to its own snapshot; `latest`
/// takes the newest snapshot. The clone turns `RESETTING`, then `OK`.
#[utoipa::path(
    post,
    path = "/clone/{id}/reset",
    operation_id = "resetClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID."), WaitParams),
    request_body(
        content = Option<ResetCloneRequest>,
        description = "Where to reset to; may be empty (the clone's own snapshot)."
    ),
    responses(
        (
            status = 200,
            description = "Reset started: the body is empty, as in DBLab. Only with `wait` (Scion's \
                extension) the body is the clone as JSON (`Clone`), once settled or when the wait \
                is over."
        ),
        (
            status = 400,
            description = "Malformed JSON, a bad `wait`, both `snapshotID` and `latest`, or the \
                clone is busy with another operation.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (
            status = 404,
            description = "No clone with this ID, or the snapshot asked for does not exist.",
            body = ApiError
        ),
        (status = 500, response = InternalError),
        (status = 507, response = InsufficientStorage),
    )
)]
async fn reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<WaitParams>,
    OptionalBody(request): OptionalBody<ResetCloneRequest>,
) -> Result<Response, ApiFailure> {
    let wait = params.duration()?;
    let target = match (request.snapshot_id.is_empty(), request.latest) {
        (false, true) => {
            return Err(ApiFailure::bad_request("give either snapshotID or latest, not both"));
        }
        (false, false) => ResetTarget::Snapshot(request.snapshot_id),
        (true, true) => ResetTarget::Latest,
        (true, false) => ResetTarget::Current,
    };
    state.engine.reset_clone(&id, target).await?;
    if let Some(wait) = wait
        && let Some(settled) = state.engine.wait_settled(&id, wait).await?
    {
        return Ok(Json(views::clone(&settled, limits(&state))).into_response());
    }
    // DBLab answers 200 with an empty body.
    Ok(StatusCode::OK.into_response())
}
