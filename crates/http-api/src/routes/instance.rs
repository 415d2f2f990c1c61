//! `/instance/warm-pool` and `/webhooks/deliveries`: what only Scion has beside the instance's
//! status, the warm pool's fill and the record of webhook deliveries (Scion's extensions).

use api_types::{WarmPool, WebhookDelivery};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiFailure;
use crate::extract::Params;
use crate::openapi::{InternalError, Unauthorized};
use crate::{AppState, views};

/// Deliveries shown when the request names no `limit`.
const DEFAULT_DELIVERIES: usize = 50;
/// The most deliveries one request gets.
const MAX_DELIVERIES: usize = 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instance/warm-pool", get(warm_pool).fallback(super::method_not_allowed))
        .route("/webhooks/deliveries", get(deliveries).fallback(super::method_not_allowed))
}

/// The warm pool: its size now, the warm clones ready per snapshot (Scion's extension).
#[utoipa::path(
    get,
    path = "/instance/warm-pool",
    operation_id = "warmPool",
    tag = "Instance",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "The warm pool's fill.", body = WarmPool),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn warm_pool(State(state): State<AppState>) -> Json<WarmPool> {
    Json(views::warm_pool(&state.engine.warm_pool()))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveriesQuery {
    /// How many of the newest deliveries to return: 50 by default, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The newest webhook deliveries, newest first: each event sent to each hook, its attempts and
/// how it ended (Scion's extension; the engine keeps the last 10,000).
#[utoipa::path(
    get,
    path = "/webhooks/deliveries",
    operation_id = "webhookDeliveries",
    tag = "Instance",
    security(("verification_token" = [])),
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "The deliveries, newest first.", body = Vec<WebhookDelivery>),
        (status = 400, description = "A `limit` that is not a whole number from 1 to 1000.", body = api_types::ApiError),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Params(query): Params<DeliveriesQuery>,
) -> Result<Json<Vec<WebhookDelivery>>, ApiFailure> {
    let limit = query.limit.unwrap_or(DEFAULT_DELIVERIES);
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(ApiFailure::bad_request(format!(
            "limit must be from 1 to {MAX_DELIVERIES}, not {limit}"
        )));
    }
    let records = state.engine.deliveries(limit)?;
    Ok(Json(records.iter().map(views::delivery).collect()))
}
