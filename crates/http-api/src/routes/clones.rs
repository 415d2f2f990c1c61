//! `/clones`, `/clone`, `/clone/{id}` and `/clone/{id}/reset`.
//!
//! Scion's extension: `POST /clone?wait=<seconds>` and `POST /clone/{id}/reset?wait=<seconds>`
//! answer once the clone is ready (or failed), instead of at once with `CREATING`; DBLab's
//! clients poll every second, this saves them the wait.

use std::time::Duration;

use api_types::{CreateCloneRequest, PatchCloneRequest, ResetCloneRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{CloneRequest, ProtectionRequest, ResetTarget};
use serde::Deserialize;

use crate::error::ApiFailure;
use crate::extract::{Body, OptionalBody, Params};
use crate::{AppState, views};

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

#[derive(Debug, Default, Deserialize)]
struct WaitParams {
    /// Seconds to wait for the clone to settle.
    wait: Option<f64>,
}

impl WaitParams {
    fn duration(&self) -> Result<Option<Duration>, ApiFailure> {
        match self.wait {
            None => Ok(None),
            Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Some(Duration::from_secs_f64(seconds).min(MAX_WAIT)))
            }
            Some(_) => Err(ApiFailure::bad_request("wait must be a number of seconds >= 0")),
        }
    }
}

fn limits(state: &AppState) -> api_types::ProtectionLimits {
    let cloning = &state.engine.config().cloning;
    views::protection_limits(
        cloning.protection_lease_duration_minutes,
        cloning.protection_max_duration_minutes,
    )
}

async fn list(State(state): State<AppState>) -> Json<Vec<api_types::Clone>> {
    let limits = limits(&state);
    let mut clones: Vec<api_types::Clone> =
        state.engine.clones().iter().map(|view| views::clone(view, limits)).collect();
    // DBLab lists clones newest first.
    clones.reverse();
    Json(clones)
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Clone>, ApiFailure> {
    let view = state.engine.clone_view(&id)?;
    Ok(Json(views::clone(&view, limits(&state))))
}

async fn create(
    State(state): State<AppState>,
    Params(params): Params<WaitParams>,
    Body(request): Body<CreateCloneRequest>,
) -> Result<Response, ApiFailure> {
    let wait = params.duration()?;
    let db = request.db.unwrap_or_default();
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
    };
    let mut view = state.engine.create_clone(request).await?;
    if let Some(wait) = wait
        && let Some(settled) = state.engine.wait_settled(&view.record.id, wait).await?
    {
        view = settled;
    }
    Ok((StatusCode::CREATED, Json(views::clone(&view, limits(&state)))).into_response())
}

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

async fn destroy(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    state.engine.destroy_clone(&id).await?;
    // DBLab answers 200 with an empty body.
    Ok(StatusCode::OK)
}

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
