//! `/admin/test-db-source` and `/admin/probe-source`: checks of a source before any retrieval.

use api_types::{
    DbSourceResponse, ProbeSourceRequest, ProposedConfig, ProposedSource, SourceDatabase,
    SourceProblem, SourceReport, TestDbSourceRequest,
};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use engine::{ProblemKind, RetrievalError, SourceCheckReport as Report};

use crate::AppState;
use crate::error::ApiFailure;
use crate::extract::Body;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/test-db-source", post(test_db_source).fallback(super::method_not_allowed))
        .route("/admin/probe-source", post(probe_source).fallback(super::method_not_allowed))
}

/// Check a source for a logical retrieval.
///
/// Connects with the body's fields over the configured `[retrieval.source]` (an empty password
/// is the configured one's) and reports DBLab's `DBSource`: `status` and `result` name the worst
/// problem, `message` lists them all. Scion adds `report`: the version, the cluster's locale,
/// each database with its size and extensions, and every problem a dump would meet (tables the
/// user cannot read, extensions the target major lacks here, locales this host lacks, ICU). A
/// source that cannot be reached is a 200 with `status: error`, as in DBLab. Nothing changes.
#[utoipa::path(
    post,
    path = "/admin/test-db-source",
    operation_id = "testDbSource",
    tag = "Instance",
    security(("verification_token" = [])),
    request_body = TestDbSourceRequest,
    responses(
        (status = 200, description = "What was found.", body = DbSourceResponse),
        (
            status = 400,
            description = "Malformed JSON, a port that is not a number, no source to check, \
                an engine in physical mode, or source checks disabled with configuration changes \
                (`[server] disable_config_modification`).",
            body = api_types::ApiError
        ),
        (status = 401, response = crate::openapi::Unauthorized),
    )
)]
pub(crate) async fn test_db_source(
    State(state): State<AppState>,
    Body(request): Body<TestDbSourceRequest>,
) -> Result<Json<DbSourceResponse>, ApiFailure> {
    state.source_checks_allowed()?;
    let port =
        match request.port.trim() {
            "" => None,
            port => Some(port.parse::<u16>().map_err(|_| {
                ApiFailure::bad_request(format!("port {port:?} is not a port number"))
            })?),
        };
    let given = |text: String| Some(text).filter(|text| !text.is_empty());
    let check = engine::SourceCheckRequest {
        host: given(request.host),
        port,
        dbname: given(request.dbname),
        username: given(request.username),
        password: given(request.password),
        databases: request.db_list,
    };
    match state.engine.check_source(check).await {
        Ok(report) => Ok(Json(db_source(&report))),
        Err(engine::Error::Retrieval(error)) if is_connection_error(&error) => {
            Ok(Json(DbSourceResponse {
                status: "error".to_owned(),
                result: "connection_error".to_owned(),
                message: error.to_string(),
                ..DbSourceResponse::default()
            }))
        }
        Err(engine::Error::Retrieval(error @ RetrievalError::InvalidConfig { .. })) => {
            Err(ApiFailure::bad_request(error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Probe a source and propose a configuration (DBLab 4.2's simple mode).
///
/// `url` is a libpq URI or `key=value` string with one host and no password (`password`
/// carries it). Answers DBLab's `ProposedConfig` (Scion runs no images: `dockerImage` is the
/// detected provider, `dockerTag` the major, `resolvedImage` the binaries that would serve
/// clones here), with Scion's `config`, the proposed TOML sections for the engine's file, the
/// preload libraries left out because clones here could not load them, and the problems a
/// dump would meet. Nothing is applied.
#[utoipa::path(
    post,
    path = "/admin/probe-source",
    operation_id = "probeSource",
    tag = "Instance",
    security(("verification_token" = [])),
    request_body = ProbeSourceRequest,
    responses(
        (status = 200, description = "The proposed configuration.", body = ProposedConfig),
        (
            status = 400,
            description = "Malformed JSON, a URL with a password or several hosts, a source \
                that cannot be reached (the message says why), or source checks disabled with \
                configuration changes (`[server] disable_config_modification`).",
            body = api_types::ApiError
        ),
        (status = 401, response = crate::openapi::Unauthorized),
    )
)]
pub(crate) async fn probe_source(
    State(state): State<AppState>,
    Body(request): Body<ProbeSourceRequest>,
) -> Result<Json<ProposedConfig>, ApiFailure> {
    state.source_checks_allowed()?;
    if request.url.trim().is_empty() {
        return Err(ApiFailure::bad_request("url is required".to_owned()));
    }
    let probe = match state.engine.probe_source(&request.url, &request.password).await {
        Ok(probe) => probe,
        Err(engine::Error::Retrieval(error)) => {
            return Err(ApiFailure::bad_request(error.to_string()));
        }
        Err(error) => return Err(error.into()),
    };
    let report = &probe.report;
    let mut query_tuning = report.settings.clone();
    query_tuning.remove("shared_preload_libraries");
    Ok(Json(ProposedConfig {
        source: ProposedSource {
            host: probe.source.host.clone().unwrap_or_default(),
            port: probe.source.port,
            username: probe.source.username.clone(),
            dbname: probe.source.dbname.clone(),
        },
        detected_provider: probe.proposal.provider.to_owned(),
        docker_image: probe.proposal.provider.to_owned(),
        docker_tag: report.target_major.to_string(),
        resolved_image: probe.target_bin_dir.clone(),
        pg_major_version: report.major,
        collation_version: String::new(),
        databases: report.databases.iter().map(|database| database.name.clone()).collect(),
        shared_buffers: probe.proposal.shared_buffers.clone(),
        memory_probed: probe.proposal.memory_probed,
        shared_preload_libraries: probe.proposal.shared_preload_libraries.join(","),
        query_tuning,
        config: probe.proposal.toml.clone(),
        left_out_libraries: probe.proposal.left_out_libraries.clone(),
        problems: problems(report),
    }))
}

/// Failures of reaching the source, which DBLab answers as a `connection_error` result.
fn is_connection_error(error: &RetrievalError) -> bool {
    matches!(
        error,
        RetrievalError::SourceUnreachable { .. }
            | RetrievalError::AuthFailed { .. }
            | RetrievalError::DatabaseMissing { .. }
            | RetrievalError::UnsupportedVersion { .. }
    )
}

/// A problem kind's name on the wire.
fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::MissingDatabase => "missing_database",
        ProblemKind::MissingPrivilege => "missing_privilege",
        ProblemKind::MissingExtension => "missing_extension",
        ProblemKind::MissingLocale => "missing_locale",
        ProblemKind::IcuMissing => "icu_missing",
    }
}

/// DBLab's `result` word for a problem kind: its own where it has one.
fn result_of(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::MissingDatabase => "unverified_database",
        other => kind_name(other),
    }
}

fn problems(report: &Report) -> Vec<SourceProblem> {
    report
        .problems
        .iter()
        .map(|problem| SourceProblem {
            kind: kind_name(problem.kind).to_owned(),
            database: problem.database.clone(),
            detail: problem.detail.clone(),
        })
        .collect()
}

fn db_source(report: &Report) -> DbSourceResponse {
    let (status, result, message) = match report.problems.first() {
        None => (
            "ok",
            "ok",
            format!(
                "PostgreSQL {} with {} database(s) can be dumped and restored here",
                report.version,
                report.databases.len()
            ),
        ),
        Some(worst) => (
            "warning",
            result_of(worst.kind),
            report
                .problems
                .iter()
                .map(|problem| match &problem.database {
                    Some(database) => format!("{database}: {}", problem.detail),
                    None => problem.detail.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let mut tuning_params = report.settings.clone();
    tuning_params.remove("shared_preload_libraries");
    DbSourceResponse {
        status: status.to_owned(),
        result: result.to_owned(),
        message,
        db_version: report.version.clone(),
        tuning_params,
        report: Some(SourceReport {
            version: report.version.clone(),
            major: report.major,
            target_major: report.target_major,
            locale: report.locale.clone(),
            databases: report
                .databases
                .iter()
                .map(|database| SourceDatabase {
                    name: database.name.clone(),
                    size_bytes: database.size_bytes,
                    encoding: database.encoding.clone(),
                    collate: database.collate.clone(),
                    ctype: database.ctype.clone(),
                    extensions: database.extensions.clone(),
                })
                .collect(),
            settings: report.settings.clone(),
            problems: problems(report),
        }),
    }
}
