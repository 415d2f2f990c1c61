//! Logs: the engine's own log over DBLab's websocket `/instance/logs?token=` (lines from a
//! [`LogSource`], each a base64 text frame), and a clone server's log, `GET /clone/{id}/logs`
//! (its tail, and with `follow=true` what it writes next, until the clone is gone).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body as ResponseBody;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::ApiFailure;
use crate::extract::Params;
use crate::openapi::Unauthorized;

/// How often a followed clone log is checked for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// The engine's log as lines, secrets already masked: what `/instance/logs` streams.
pub trait LogSource: Send + Sync + fmt::Debug {
    /// The lines kept so far, oldest first, and a receiver of every line after them.
    fn subscribe(&self) -> (Vec<String>, broadcast::Receiver<String>);
}

/// Routes that check their own credentials (the one-time token in the query).
pub(crate) fn public_routes() -> Router<AppState> {
    Router::new().route("/instance/logs", get(instance_logs).fallback(super::method_not_allowed))
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/clone/{id}/logs", get(clone_logs).fallback(super::method_not_allowed))
}

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// The engine's log, live, over a websocket: the lines kept so far, then each new one, every
/// line a base64-encoded text frame (as DBLab sends them). The token comes from
/// `/admin/ws-auth` and is good for one connection within a minute.
#[utoipa::path(
    get,
    path = "/instance/logs",
    operation_id = "instanceLogs",
    tag = "Admin",
    security(("ws_token" = [])),
    params(("token" = String, Query, description = "A one-time token from `/admin/ws-auth`.")),
    responses(
        (status = 101, description = "Switching to the websocket protocol."),
        (status = 400, description = "Not a websocket request.", body = api_types::ApiError),
        (status = 401, response = Unauthorized),
    )
)]
pub(crate) async fn instance_logs(
    State(state): State<AppState>,
    Params(query): Params<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiFailure> {
    if !query.token.is_some_and(|token| state.ws_tokens.redeem(&token)) {
        return Err(ApiFailure::unauthorized());
    }
    let upgrade = upgrade.map_err(|rejection| ApiFailure::bad_request(rejection.body_text()))?;
    let Some(source) = state.logs.clone() else {
        return Err(ApiFailure::bad_request("this server keeps no log to stream"));
    };
    Ok(upgrade.on_upgrade(move |socket| stream_log(socket, source)))
}

async fn stream_log(mut socket: WebSocket, source: Arc<dyn LogSource>) {
    let (kept, mut lines) = source.subscribe();
    for line in kept {
        if send_line(&mut socket, &line).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = match line {
                    Ok(line) => line,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        format!("[WARNING] {skipped} log lines skipped: this client read too slowly")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if send_line(&mut socket, &line).await.is_err() {
                    break;
                }
            }
            message = socket.recv() => match message {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send_line(socket: &mut WebSocket, line: &str) -> Result<(), axum::Error> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(line);
    socket.send(Message::Text(encoded.into())).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Only the last this many lines (of at most the last MiB); all of that by default.
    tail: Option<usize>,
    /// Keep the answer open and send what the server writes next, until the clone is gone.
    #[serde(default)]
    follow: bool,
}

/// A clone server's log (`text/plain`): its tail, and with `follow=true` what it writes next.
#[utoipa::path(
    get,
    path = "/clone/{id}/logs",
    operation_id = "cloneLogs",
    tag = "Clones",
    security(("verification_token" = [])),
    params(("id" = api_types::CloneId, Path, description = "The clone ID."), LogQuery),
    responses(
        (status = 200, description = "The log.", content_type = "text/plain", body = String),
        (status = 400, description = "A bad query parameter.", body = api_types::ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = api_types::ApiError),
    )
)]
pub(crate) async fn clone_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(query): Params<LogQuery>,
) -> Result<Response, ApiFailure> {
    let chunk = state.engine.clone_log_tail(&id, query.tail).await?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !query.follow {
        return Ok((text_plain, chunk.text).into_response());
    }
    let engine = state.engine.clone();
    let first = Some(chunk.text);
    let stream = futures_util::stream::unfold(
        (engine, id, chunk.end, first),
        |(engine, id, offset, first)| async move {
            if let Some(text) = first {
                return Some((Ok::<_, std::io::Error>(text), (engine, id, offset, None)));
            }
            loop {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                // The clone is gone (or the engine failed to read): the answer ends.
                let chunk = engine.clone_log_after(&id, offset).await.ok()?;
                if !chunk.text.is_empty() {
                    return Some((Ok(chunk.text), (engine, id, chunk.end, None)));
                }
            }
        },
    );
    Ok((text_plain, ResponseBody::from_stream(stream)).into_response())
}
