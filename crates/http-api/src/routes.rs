//! The routes, one module per resource; each handler parses, calls one engine method and
//! returns a view.

pub(crate) mod admin;
pub(crate) mod branches;
pub(crate) mod clones;
pub(crate) mod health;
pub(crate) mod instance;
pub(crate) mod logs;
pub(crate) mod masking;
pub(crate) mod observation;
pub(crate) mod power;
pub(crate) mod retrieval;
pub(crate) mod snapshots;
pub(crate) mod source;
pub(crate) mod tls;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiFailure;

/// Routes that need no token: `/healthz`, `/metrics`, the OpenAPI document, the clones' CA
/// certificate, and the log websocket, which checks its one-time token itself.
pub(crate) fn public() -> Router<AppState> {
    health::routes()
        .merge(logs::public_routes())
        .merge(tls::routes())
        .route("/api/openapi.json", get(crate::openapi::serve).fallback(method_not_allowed))
}

/// Routes behind the `Verification-Token` check.
pub(crate) fn protected() -> Router<AppState> {
    Router::new()
        .merge(clones::routes())
        .merge(snapshots::routes())
        .merge(branches::routes())
        .merge(health::status_routes())
        .merge(retrieval::routes())
        .merge(admin::routes())
        .merge(logs::routes())
        .merge(source::routes())
        .merge(masking::routes())
        .merge(observation::routes())
        .merge(power::routes())
        .merge(instance::routes())
}

/// Unknown paths: DBLab's generic 404 body.
pub(crate) async fn not_found() -> Response {
    ApiFailure::not_found(api_types::ApiError::NOT_FOUND_MESSAGE).into_response()
}

/// Known paths with a method they do not take.
pub(crate) async fn method_not_allowed() -> Response {
    ApiFailure::method_not_allowed().into_response()
}
