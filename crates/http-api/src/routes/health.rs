//! `/healthz`, `/metrics` and `/status`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::error::ApiFailure;
use crate::openapi::Unauthorized;
use crate::{AppState, listing, views};

/// The content type of the OpenMetrics text prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz).post(healthz).fallback(super::method_not_allowed))
        .route("/metrics", get(metrics).fallback(super::method_not_allowed))
}

pub(super) fn status_routes() -> Router<AppState> {
    Router::new().route("/status", get(status).fallback(super::method_not_allowed))
}

/// The engine's version and identity; needs no token.
#[utoipa::path(
    method(get, post),
    path = "/healthz",
    operation_id = "healthz",
    tag = "Instance",
    responses((status = 200, description = "The engine is up.", body = api_types::Engine))
)]
async fn healthz(State(state): State<AppState>) -> Json<api_types::Engine> {
    Json(views::engine_info(&state.engine, state.config_locked()))
}

/// The instance's full status: pool, clones, retrieval, and Scion's reconciliation report.
///
/// Answered from memory; the DBLab CLI's `clone list` reads `cloning.clones` from here.
#[utoipa::path(
    get,
    path = "/status",
    operation_id = "status",
    tag = "Instance",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "The instance status.", body = api_types::Instance),
        (status = 401, response = Unauthorized),
    )
)]
async fn status(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let status = state.engine.status();
    let engine = views::engine_info(&state.engine, state.config_locked());
    let instance = views::instance(&status, &state.engine.retrieval(), engine);
    let body = listing::status_json(instance, &status.clones)
        .map_err(|error| listing::serialization_failed(&error))?;
    Ok(listing::json_response(body))
}

/// Prometheus metrics in the OpenMetrics text format: DBLab's `dblab_*` and Scion's `scion_*`;
/// needs no token.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "Instance",
    responses(
        (
            status = 200,
            description = "The metrics.",
            body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
        ),
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::default();
    state.engine.register_metrics(&mut registry);
    for source in &state.metrics {
        source.register(&mut registry);
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to encode metrics");
            ApiFailure::internal("metrics could not be encoded; see the engine log").into_response()
        }
    }
}
