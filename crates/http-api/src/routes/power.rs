//! `/clone/{id}/stop` and `/clone/{id}/start`: scale to zero by hand (Scion's extension).

use api_types::{ApiError, CloneId};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

use crate::error::ApiFailure;
use crate::openapi::{InternalError, Unauthorized};
use crate::{AppState, views};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/clone/{id}/stop", post(stop).fallback(super::method_not_allowed))
        .route("/clone/{id}/start", post(start).fallback(super::method_not_allowed))
}

/// Stop a clone's server (Scion's extension).
///
/// Its dataset, port, credentials and protection stay, and its memory goes to zero; the
/// clone stays `OK` with `stoppedAt` set. The engine holds its port: the first connection
/// starts the server and is served. Stopping a stopped clone changes nothing.
#[utoipa::path(
    post,
    path = "/clone/{id}/stop",
    operation_id = "stopClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID.")),
    responses(
        (status = 200, description = "The stopped clone.", body = api_types::Clone),
        (status = 400, description = "The clone is not `OK`.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Clone>, ApiFailure> {
    let view = state.engine.stop_clone(&id).await?;
    Ok(Json(views::clone(&view, super::clones::limits(&state))))
}

/// Start a stopped clone's server (Scion's extension).
///
/// What the first connection to a stopped clone does; answers once the server accepts
/// connections. Starting a running clone changes nothing.
#[utoipa::path(
    post,
    path = "/clone/{id}/start",
    operation_id = "startClone",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = CloneId, Path, description = "The clone ID.")),
    responses(
        (status = 200, description = "The running clone.", body = api_types::Clone),
        (status = 400, description = "The clone is not `OK`.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, description = "The server could not start.", body = ApiError),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Clone>, ApiFailure> {
    let view = state.engine.start_clone(&id).await?;
    Ok(Json(views::clone(&view, super::clones::limits(&state))))
}
