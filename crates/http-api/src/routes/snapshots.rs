//! `/snapshots`, `/snapshot` and `/snapshot/{id}`; snapshot IDs contain `/` and `@`, so the
//! ID is the rest of the path.

use api_types::{CreateSnapshotRequest, Response as OkResponse, SnapshotId};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiFailure;
use crate::extract::{OptionalBody, Params};
use crate::{AppState, views};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/snapshots", get(list).fallback(super::method_not_allowed))
        .route("/snapshot", post(create).fallback(super::method_not_allowed))
        .route("/snapshot/{*id}", get(show).delete(delete).fallback(super::method_not_allowed))
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    branch: Option<String>,
    dataset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DeleteParams {
    force: Option<String>,
}

/// Checks an ID from the path with DBLab's rule before it reaches the engine.
fn snapshot_id(id: &str) -> Result<&str, ApiFailure> {
    SnapshotId::parse(id).map_err(|error| ApiFailure::bad_request(error.to_string()))?;
    Ok(id)
}

async fn list(
    State(state): State<AppState>,
    Params(params): Params<ListParams>,
) -> Result<Json<Vec<api_types::Snapshot>>, ApiFailure> {
    let snapshots = state.engine.snapshots();
    if let Some(branch) = params.branch.as_deref().filter(|branch| !branch.is_empty())
        && !snapshots.iter().any(|view| view.record.branch == branch)
    {
        return Err(ApiFailure::bad_request(format!("branch {branch:?} not found")));
    }
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

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    let view = state.engine.snapshot(snapshot_id(&id)?)?;
    Ok(Json(views::snapshot(&view)))
}

async fn create(
    State(state): State<AppState>,
    OptionalBody(request): OptionalBody<CreateSnapshotRequest>,
) -> Result<Json<api_types::Snapshot>, ApiFailure> {
    if !request.pool_name.is_empty() && request.pool_name != state.engine.pool().name() {
        return Err(ApiFailure::bad_request(format!("pool {:?} not found", request.pool_name)));
    }
    let view = state.engine.create_snapshot().await?;
    Ok(Json(views::snapshot(&view)))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<DeleteParams>,
) -> Result<Json<OkResponse>, ApiFailure> {
    let force = match params.force.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiFailure::bad_request(format!(
                "force must be true or false, not {other:?}"
            )));
        }
    };
    state.engine.delete_snapshot(snapshot_id(&id)?, force).await?;
    Ok(Json(OkResponse { status: "OK".to_owned(), message: "Deleted snapshot".to_owned() }))
}
