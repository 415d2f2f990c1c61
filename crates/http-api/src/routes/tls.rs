//! `/tls/ca.crt`: the CA certificate that signs the clones' server certificates.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiFailure;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/tls/ca.crt", get(ca_certificate).fallback(super::method_not_allowed))
}

/// The CA certificate (PEM) that signs every clone's server certificate, for clients to verify
/// clones with (`sslmode=verify-full sslrootcert=<file>`); needs no token: it holds no secret.
#[utoipa::path(
    get,
    path = "/tls/ca.crt",
    operation_id = "getCaCertificate",
    tag = "Instance",
    responses(
        (
            status = 200,
            description = "The CA certificate.",
            body = String,
            content_type = "application/x-pem-file"
        ),
        (status = 404, description = "TLS is off on clones.", body = api_types::ApiError),
        (status = 500, response = crate::openapi::InternalError),
    )
)]
pub(crate) async fn ca_certificate(State(state): State<AppState>) -> Result<Response, ApiFailure> {
    let pem = state.engine.ca_certificate()?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}
