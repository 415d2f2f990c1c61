//! The routes, one module per resource; each handler parses, calls one engine method and
//! returns a view.

mod clones;
mod health;
mod snapshots;

use axum::Router;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiFailure;

/// Routes that need no token: `/healthz` and `/metrics`.
pub(crate) fn public() -> Router<AppState> {
    health::routes()
}

/// Routes behind the `Verification-Token` check.
pub(crate) fn protected() -> Router<AppState> {
    Router::new().merge(clones::routes()).merge(snapshots::routes()).merge(health::status_routes())
}

/// Unknown paths: DBLab's generic 404 body.
pub(crate) async fn not_found() -> Response {
    ApiFailure::not_found(api_types::ApiError::NOT_FOUND_MESSAGE).into_response()
}

/// Known paths with a method they do not take.
pub(crate) async fn method_not_allowed() -> Response {
    ApiFailure::method_not_allowed().into_response()
}
