//! `/instance/retrieval` and `/full-refresh`.

use api_types::{Response as OkResponse, Retrieving};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::ApiFailure;
use crate::{AppState, views};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instance/retrieval", get(show).fallback(super::method_not_allowed))
        .route("/full-refresh", post(full_refresh).fallback(super::method_not_allowed))
}

/// Retrieval status, alerts and (Scion's extensions) the running refresh's progress and, in
/// physical mode, the WAL window of points in time.
#[utoipa::path(
    get,
    path = "/instance/retrieval",
    operation_id = "instanceRetrieval",
    tag = "Instance",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "Retrieval status, alerts and progress.", body = Retrieving),
        (status = 401, response = crate::openapi::Unauthorized),
    )
)]
pub(crate) async fn show(State(state): State<AppState>) -> Json<Retrieving> {
    let mut retrieving = views::retrieving(&state.engine.retrieval());
    retrieving.wal_window = state.engine.point_in_time_window().map(|w| views::wal_window(&w));
    Json(retrieving)
}

/// Starts a full refresh into a new dataset; clones keep running meanwhile.
#[utoipa::path(
    post,
    path = "/full-refresh",
    operation_id = "fullRefresh",
    tag = "Instance",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "The refresh started.", body = OkResponse),
        (
            status = 400,
            description = "No retrieval is configured, or a refresh is already running.",
            body = api_types::ApiError
        ),
        (status = 401, response = crate::openapi::Unauthorized),
    )
)]
pub(crate) async fn full_refresh(
    State(state): State<AppState>,
) -> Result<Json<OkResponse>, ApiFailure> {
    state.engine.full_refresh()?;
    Ok(Json(OkResponse { status: "OK".to_owned(), message: "Full refresh started".to_owned() }))
}
