//! `/observation/start`, `/observation/stop`, `/observation/summary/{clone_id}/{session_id}` and
//! `/observation/download`: DBLab's observation sessions, without its Platform (sessions,
//! summaries and artifacts are the engine's own and survive a restart); and Scion's
//! `/observation/sessions/{clone_id}`, a clone's sessions.

use api_types::{
    ApiError, CloneId, ObservationResult, ObservationSession, ObservationSummary,
    StartObservationRequest, StopObservationRequest,
};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::ObservationRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiFailure;
use crate::extract::{Body, Params};
use crate::openapi::{InternalError, Unauthorized};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/observation/start", post(start).fallback(super::method_not_allowed))
        .route("/observation/stop", post(stop).fallback(super::method_not_allowed))
        .route(
            "/observation/summary/{clone_id}/{session_id}",
            get(summary).fallback(super::method_not_allowed),
        )
        .route("/observation/download", get(download).fallback(super::method_not_allowed))
        .route(
            "/observation/sessions/{clone_id}",
            get(sessions).fallback(super::method_not_allowed),
        )
}

/// The session as DBLab shows it: the result with its intervals once stopped, and with
/// `running` also while it runs (an empty status, the intervals so far).
fn session_view(record: ObservationRecord, running: bool) -> ObservationSession {
    let warning_intervals = record.warning_intervals();
    let total_intervals = record.intervals.len() as u64;
    let so_far = || engine::SessionResult {
        status: String::new(),
        checklist: api_types::Checklist::default(),
        total_duration: (chrono::Utc::now() - record.started_at).as_seconds_f64(),
    };
    let result = record.result.or_else(|| running.then(so_far));
    let result = result.map(|result| ObservationResult {
        status: result.status,
        intervals: record.intervals,
        summary: ObservationSummary {
            total_duration: result.total_duration,
            total_intervals,
            warning_intervals,
            checklist: result.checklist,
        },
    });
    ObservationSession {
        session_id: record.session_id,
        started_at: Some(record.started_at),
        finished_at: record.finished_at,
        config: record.config,
        tags: record.tags,
        artifacts: record.artifacts,
        result,
    }
}

fn required(name: &str, value: &str) -> Result<(), ApiFailure> {
    if value.is_empty() {
        return Err(ApiFailure::bad_request(format!("{name} is required")));
    }
    Ok(())
}

fn session_id(text: &str) -> Result<u64, ApiFailure> {
    text.parse().map_err(|_| {
        ApiFailure::bad_request(format!("session_id must be a whole number, not {text:?}"))
    })
}

/// Start observing a clone.
///
/// Resets the clone's statistics and checks every `observation_interval` seconds for an
/// `AccessExclusiveLock` held longer than `max_lock_duration` (zero settings take DBLab's
/// defaults: 10, 10 and 3600 seconds). A clone has at most one running session.
#[utoipa::path(
    post,
    path = "/observation/start",
    operation_id = "startObservation",
    tag = "Observation",
    security(("verification_token" = [])),
    request_body(content = StartObservationRequest, description = "The clone and the settings."),
    responses(
        (status = 200, description = "The running session.", body = ObservationSession),
        (
            status = 400,
            description = "Malformed JSON, no `clone_id`, a clone that is not `OK` or already \
                observed.",
            body = ApiError
        ),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    Body(request): Body<StartObservationRequest>,
) -> Result<Json<ObservationSession>, ApiFailure> {
    required("clone_id", &request.clone_id)?;
    let record = state.engine.start_observation(request).await?;
    Ok(Json(session_view(record, false)))
}

/// Stop the clone's running session.
///
/// Records a last interval, collects the artifacts and the summary while the clone is
/// `EXPORTING`, and answers with the verdict: `passed` when the session lasted less than
/// `max_duration`, saw no dangerous lock, and `overall_error` was false.
#[utoipa::path(
    post,
    path = "/observation/stop",
    operation_id = "stopObservation",
    tag = "Observation",
    security(("verification_token" = [])),
    request_body(content = StopObservationRequest, description = "The clone and the caller's verdict."),
    responses(
        (status = 200, description = "The stopped session with its result.", body = ObservationSession),
        (status = 400, description = "Malformed JSON, no `clone_id`, a clone busy with another operation.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID, or no running session on it.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Body(request): Body<StopObservationRequest>,
) -> Result<Json<ObservationSession>, ApiFailure> {
    required("clone_id", &request.clone_id)?;
    let record = state.engine.stop_observation(&request.clone_id, request.overall_error).await?;
    Ok(Json(session_view(record, false)))
}

/// A session ID in a path: a whole number (parsed by hand, so that a bad one gets DBLab's 400
/// body); its schema for the OpenAPI document.
pub(crate) struct SessionId;

impl utoipa::PartialSchema for SessionId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{1,20}$"))
            .description(Some("An observation session's ID."))
            .examples([serde_json::json!("1")])
            .into()
    }
}

impl utoipa::ToSchema for SessionId {}

/// The summary of a stopped session.
#[utoipa::path(
    get,
    path = "/observation/summary/{clone_id}/{session_id}",
    operation_id = "observationSummary",
    tag = "Observation",
    security(("verification_token" = [])),
    params(
        ("clone_id" = CloneId, Path, description = "The observed clone."),
        ("session_id" = SessionId, Path, description = "The session."),
    ),
    responses(
        (status = 200, description = "The summary artifact.", body = api_types::SummaryArtifact),
        (status = 400, description = "A `session_id` that is not a number.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No stopped session with this ID on this clone.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Path((clone_id, session)): Path<(String, String)>,
) -> Result<Response, ApiFailure> {
    let summary = state.engine.observation_summary(&clone_id, session_id(&session)?)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], summary).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DownloadParams {
    /// One of DBLab's artifact types (`pg_stat_statements`, `pg_stat_database`, …).
    #[serde(default)]
    artifact_type: String,
    /// The observed clone.
    #[serde(default)]
    clone_id: String,
    /// The session.
    #[serde(default)]
    session_id: String,
}

/// Download an artifact of a stopped session: a JSON array of rows.
#[utoipa::path(
    get,
    path = "/observation/download",
    operation_id = "downloadObservationArtifact",
    tag = "Observation",
    security(("verification_token" = [])),
    params(DownloadParams),
    responses(
        (status = 200, description = "The artifact, a JSON array of rows.", content_type = "application/json", body = String),
        (status = 400, description = "A missing parameter, an unknown artifact type or a `session_id` that is not a number.", body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No stopped session with this ID on this clone, or no such artifact in it.", body = ApiError),
        (status = 500, response = InternalError),
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    Params(params): Params<DownloadParams>,
) -> Result<Response, ApiFailure> {
    required("artifact_type", &params.artifact_type)?;
    required("clone_id", &params.clone_id)?;
    required("session_id", &params.session_id)?;
    let session = session_id(&params.session_id)?;
    let artifact =
        state.engine.observation_artifact(&params.clone_id, session, &params.artifact_type)?;
    let disposition = format!("attachment; filename=\"{}.json\"", params.artifact_type);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        artifact,
    )
        .into_response())
}

/// A clone's observation sessions, running and stopped, newest first (Scion's extension: DBLab
/// shows a session only in the answers of its start and stop). A running session's `result`
/// has an empty status and its intervals so far, as DBLab shows a session while it runs.
#[utoipa::path(
    get,
    path = "/observation/sessions/{clone_id}",
    operation_id = "observationSessions",
    tag = "Observation",
    security(("verification_token" = [])),
    params(("clone_id" = CloneId, Path, description = "The clone.")),
    responses(
        (status = 200, description = "The clone's sessions, newest first.", body = Vec<ObservationSession>),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No clone with this ID.", body = ApiError),
    )
)]
pub(crate) async fn sessions(
    State(state): State<AppState>,
    Path(clone_id): Path<String>,
) -> Result<Json<Vec<ObservationSession>>, ApiFailure> {
    let records = state.engine.observation_sessions(&clone_id)?;
    Ok(Json(records.into_iter().map(|record| session_view(record, true)).collect()))
}
