//! `/admin/config`, `/admin/config.yaml` and `/admin/ws-auth`: the configuration through the
//! API (through [`ConfigAdmin`], which the server implements over its file) and the one-time
//! tokens of the log websocket ([`WsTokens`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiFailure;
use crate::extract::Body;
use crate::openapi::Unauthorized;

/// DBLab's content type for `/admin/config.yaml`.
pub const YAML_CONTENT_TYPE: &str = "application/yaml; charset=utf-8";

/// How long a websocket token may wait for its connection (DBLab's: one minute).
const WS_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The configuration behind `/admin/config`: the server owns its file, its reload and its
/// projection to DBLab's fields.
pub trait ConfigAdmin: Send + Sync + fmt::Debug {
    /// DBLab's projection of the running configuration: the fields its UI edits.
    fn projection(&self) -> serde_json::Value;
    /// The whole running configuration as YAML, every secret masked.
    fn yaml(&self) -> String;
    /// Whether changes through the API are refused (no file, or
    /// `[server] disable_config_modification`): `/status` → `engine.disableConfigModification`.
    fn modification_disabled(&self) -> bool;
    /// Whether `[server] disable_config_modification` is set, which in DBLab also refuses the
    /// source checks (`/admin/test-db-source`, `/admin/probe-source`); a server without a file
    /// still checks sources.
    fn changes_disabled(&self) -> bool;
    /// Applies a projection: validates it, writes the file (keeping the previous one) and
    /// reloads; answers with the new projection. Nothing changes when it fails.
    fn apply(&self, projection: serde_json::Value) -> Result<serde_json::Value, ConfigRefusal>;
}

/// Why a configuration change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRefusal {
    /// Changes through the API are off, or there is no file to write: 400.
    Refused(String),
    /// The change is invalid; the message names each bad field: 400.
    Invalid(String),
    /// Writing or applying failed on the server's side: 500.
    Failed(String),
}

impl From<ConfigRefusal> for ApiFailure {
    fn from(refusal: ConfigRefusal) -> Self {
        match refusal {
            ConfigRefusal::Refused(message) | ConfigRefusal::Invalid(message) => {
                ApiFailure::bad_request(message)
            }
            ConfigRefusal::Failed(message) => {
                tracing::error!(%message, "configuration change failed");
                ApiFailure::internal(message)
            }
        }
    }
}

/// One-time tokens for `/instance/logs`: each is good for one connection, within a minute.
#[derive(Clone, Default)]
pub struct WsTokens {
    issued: Arc<Mutex<HashMap<String, Instant>>>,
}

impl fmt::Debug for WsTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WsTokens(***)")
    }
}

impl WsTokens {
    fn issued(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // Inserts and removes only: a panic cannot leave the map half-changed.
        self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new token: 32 random bytes, hex. Expired ones are dropped here, so the map stays as
    /// small as the tokens of the last minute.
    pub(crate) fn issue(&self) -> String {
        let token: String =
            rand::random::<[u8; 32]>().iter().map(|byte| format!("{byte:02x}")).collect();
        let now = Instant::now();
        let mut issued = self.issued();
        issued.retain(|_, at| now.duration_since(*at) < WS_TOKEN_LIFETIME);
        issued.insert(token.clone(), now);
        token
    }

    /// Uses up `token`: true once, for a token issued within the last minute.
    pub(crate) fn redeem(&self, token: &str) -> bool {
        self.issued().remove(token).is_some_and(|at| at.elapsed() < WS_TOKEN_LIFETIME)
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/config", get(show).post(apply).fallback(super::method_not_allowed))
        .route("/admin/config.yaml", get(yaml).fallback(super::method_not_allowed))
        .route("/admin/ws-auth", get(ws_auth).post(ws_auth).fallback(super::method_not_allowed))
}

fn config_admin(state: &AppState) -> Result<Arc<dyn ConfigAdmin>, ApiFailure> {
    state
        .config
        .clone()
        .ok_or_else(|| ApiFailure::bad_request("this server does not manage a configuration file"))
}

/// DBLab's projection of the configuration: the fields its UI edits (`databaseConfigs`,
/// `retrieval.refresh.timetable`, the logical dump's and restore's options) and
/// `retrievalMode`; passwords are never included.
#[utoipa::path(
    get,
    path = "/admin/config",
    operation_id = "getConfig",
    tag = "Admin",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "The projection of the running configuration.", body = Object),
        (status = 400, description = "The server manages no configuration file.", body = api_types::ApiError),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    Ok(Json(config_admin(&state)?.projection()))
}

/// Changes the configuration: the body is the projection's fields to set (others stay). The
/// file is validated, written with the previous one kept beside it, and applied without
/// restarting the engine or any clone. Answers with the new projection.
#[utoipa::path(
    post,
    path = "/admin/config",
    operation_id = "setConfig",
    tag = "Admin",
    security(("verification_token" = [])),
    request_body(content = Object, description = "Projection fields to set."),
    responses(
        (status = 200, description = "The projection of the new configuration.", body = Object),
        (
            status = 400,
            description = "An invalid field (each is named), or changes through the API are \
                disabled (`[server] disable_config_modification`).",
            body = api_types::ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 500, response = crate::openapi::InternalError),
    )
)]
pub(crate) async fn apply(
    State(state): State<AppState>,
    Body(projection): Body<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let admin = config_admin(&state)?;
    // Writes a file and builds retrieval: off the async workers.
    let applied =
        tokio::task::spawn_blocking(move || admin.apply(projection)).await.map_err(|error| {
            ApiFailure::internal(format!("the configuration change stopped: {error}"))
        })??;
    Ok(Json(applied))
}

/// The whole running configuration as YAML (`application/yaml`), every secret masked.
#[utoipa::path(
    get,
    path = "/admin/config.yaml",
    operation_id = "getConfigYaml",
    tag = "Admin",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "The configuration.", content_type = "application/yaml", body = Object),
        (status = 400, description = "The server manages no configuration file.", body = api_types::ApiError),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn yaml(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let yaml = config_admin(&state)?.yaml();
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, YAML_CONTENT_TYPE)], yaml).into_response())
}

/// DBLab's `WSToken`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WsToken {
    /// A one-time token for `/instance/logs?token=`, good for a minute.
    token: String,
}

/// A one-time token for the log websocket `/instance/logs?token=`; GET as DBLab's UI sends
/// it, POST as DBLab's spec documents it.
#[utoipa::path(
    method(get, post),
    path = "/admin/ws-auth",
    operation_id = "wsAuth",
    tag = "Admin",
    security(("verification_token" = [])),
    responses(
        (status = 200, description = "A token for one connection within a minute.", body = WsToken),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn ws_auth(State(state): State<AppState>) -> Json<WsToken> {
    Json(WsToken { token: state.ws_tokens.issue() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_once() {
        let tokens = WsTokens::default();
        let token = tokens.issue();
        assert_eq!(token.len(), 64);
        assert!(!tokens.redeem("not-issued"));
        assert!(tokens.redeem(&token));
        assert!(!tokens.redeem(&token));
    }
}
