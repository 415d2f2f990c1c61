//! `/admin/masking/check`: the PII check and the masking rules' validation, on demand.

use api_types::MaskingCheck;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use crate::error::ApiFailure;
use crate::{AppState, views};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/admin/masking/check", post(check).fallback(super::method_not_allowed))
}

/// Check the masking rules against the data (Scion's).
///
/// Reads the newest snapshot of the retrieved data on `main` (the unmasked one when a refresh
/// kept both) through a temporary clone, destroyed afterwards; the source and the clones are not
/// read. Answers the columns that look personal (by name, or by a sample of their values) and
/// have no rule in `[retrieval.masking]`, and what is wrong with the rules against the data.
/// Sampled values are only compared, never returned or logged.
#[utoipa::path(
    post,
    path = "/admin/masking/check",
    operation_id = "maskingCheck",
    tag = "Admin",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "What the check found; empty lists when nothing.", body = MaskingCheck),
        (status = 400, description = "No retrieval is configured.", body = api_types::ApiError),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No snapshot of retrieved data exists yet.", body = api_types::ApiError),
        (status = 500, response = crate::openapi::InternalError),
    )
)]
pub(crate) async fn check(State(state): State<AppState>) -> Result<Json<MaskingCheck>, ApiFailure> {
    let check = state.engine.check_masking().await?;
    Ok(Json(views::masking_check(&check)))
}
