//! `/healthz`, `/metrics` and `/status`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::error::ApiFailure;
use crate::{AppState, views};

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

async fn healthz(State(state): State<AppState>) -> Json<api_types::Engine> {
    Json(views::engine_info(&state.engine.status()))
}

async fn status(State(state): State<AppState>) -> Json<api_types::Instance> {
    Json(views::instance(&state.engine.status()))
}

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
            ApiFailure::from(engine::Error::InvalidInput("metrics could not be encoded".to_owned()))
                .into_response()
        }
    }
}
