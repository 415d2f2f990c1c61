//! Scion's REST API: DBLab Engine 4.x's paths, `Verification-Token` auth, JSON shapes and
//! `{code, message}` errors, over the [`engine::Engine`].
//!
//! Handlers parse, call one engine method and turn the result into an `api-types` view; they
//! hold no business logic. Errors are mapped to HTTP once, in [`error`]. `/healthz` and
//! `/metrics` need no token, as in DBLab, nor does the OpenAPI document at `/api/openapi.json`
//! ([`openapi()`]). Every request passes [`edge`]: size limits, JSON errors and a span with its
//! method and path.

mod auth;
mod edge;
mod error;
mod extract;
mod listing;
mod openapi;
mod routes;
mod views;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use engine::Engine;
use prometheus_client::registry::Registry;

pub use auth::{TOKEN_HEADER, Token};
pub use edge::{MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_URI_BYTES};
pub use error::ApiFailure;
pub use openapi::{openapi, openapi_json};
pub use routes::admin::{ConfigAdmin, ConfigRefusal, WsTokens, YAML_CONTENT_TYPE};
pub use routes::logs::LogSource;
pub use wire::{JsonRefusals, JsonRefusalsIo};

/// Something that adds metrics to each scrape besides the engine's own (webhook delivery
/// counts, for one).
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Registers its metrics, with values as of now.
    fn register(&self, registry: &mut Registry);
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The token clients must send; `None` lets every request in.
    pub token: Option<Token>,
    /// Extra metrics for `/metrics`.
    pub metrics: Vec<Arc<dyn MetricsSource>>,
    /// The configuration file behind `/admin/config`; `None` answers those with a 400.
    pub config: Option<Arc<dyn ConfigAdmin>>,
    /// The engine's log for `/instance/logs`; `None` refuses the websocket.
    pub logs: Option<Arc<dyn LogSource>>,
    /// The one-time tokens `/admin/ws-auth` issues and `/instance/logs` takes.
    pub ws_tokens: WsTokens,
}

impl AppState {
    /// Whether `POST /admin/config` is refused: no configuration file, or changes disabled.
    pub(crate) fn config_locked(&self) -> bool {
        self.config.as_ref().is_none_or(|config| config.modification_disabled())
    }

    /// The refusal of a source check when DBLab would refuse one: configuration changes are
    /// disabled.
    pub(crate) fn source_checks_allowed(&self) -> Result<(), error::ApiFailure> {
        if self.config.as_ref().is_some_and(|config| config.changes_disabled()) {
            return Err(error::ApiFailure::bad_request(
                "source checks are disabled with configuration changes \
                 ([server] disable_config_modification = true)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = routes::protected()
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    edge::layer(routes::public().merge(protected).fallback(routes::not_found)).with_state(state)
}
