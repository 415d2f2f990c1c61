//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the `api-types` schemas; served at `GET /api/openapi.json` and committed as
//! `docs/api/openapi.json` (a test keeps the two equal).

use std::sync::OnceLock;

use api_types::{ApiError, CloneId, SnapshotId};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, PathItem, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::auth::TOKEN_HEADER;
use crate::error::ApiFailure;
use crate::routes::{
    admin, branches, clones, health, instance, logs, masking, observation, power, retrieval,
    snapshots, source, tls,
};

/// The name the protected operations' `security` refers to.
const SECURITY_SCHEME: &str = "verification_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Scion API",
        description = "Scion's REST API: DBLab Engine 4.x's paths, JSON shapes and errors, \
            so DBLab's CLI, UI and clients work unchanged.\n\n\
            Every operation except `/healthz`, `/metrics`, `/tls/ca.crt` and this document needs the \
            `Verification-Token` header (when the server has a token configured). Every 4xx and \
            5xx answer carries DBLab's error object `{\"code\": ..., \"message\": ...}`, also \
            an unknown path (404 `NOT_FOUND`) and a known path with a method it does not take \
            (405 `METHOD_NOT_ALLOWED`, where DBLab sends a bare 405).\n\n\
            Limits: a request body of at most 64 KiB (413 `PAYLOAD_TOO_LARGE`), a request \
            target of at most 8 KiB (414 `URI_TOO_LONG`), at most 16 KiB of headers (431 \
            `REQUEST_HEADER_FIELDS_TOO_LARGE`); the field limits are in the schemas.\n\n\
            Scion's extensions: `wait` on `POST /clone`, `POST /clone/{id}/reset` and \
            `DELETE /clone/{id}`, `reconciliation` in `/status`, `progress` in `retrieving`, `numClones` in \
            `SnapshotDetails`, the codes `NO_CAPACITY` and `SHUTTING_DOWN` (503), and \
            `INSUFFICIENT_STORAGE` (507) for an operation refused because the pool's free space \
            is below its minimum (`[pool] min_free_space`), `GET /clone/{id}/logs`, scale to zero \
            (`POST /clone/{id}/stop` and `/start` and the clone's `stoppedAt`), \
            `GET /instance/warm-pool`, `GET /webhooks/deliveries`, \
            `GET /observation/sessions/{clone_id}`, and TLS on clones: `GET /tls/ca.crt` and \
            `clientCertificate` in `POST /clone`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::status,
        health::healthz,
        health::metrics,
        tls::ca_certificate,
        serve,
        snapshots::list,
        snapshots::create,
        snapshots::show,
        snapshots::delete,
        snapshots::update,
        snapshots::snapshot_clone,
        clones::list,
        clones::create,
        clones::show,
        clones::update,
        clones::destroy,
        clones::reset,
        power::stop,
        power::start,
        branches::list,
        branches::create,
        branches::commit,
        branches::show_commit,
        branches::log,
        branches::delete,
        branches::update,
        retrieval::show,
        retrieval::full_refresh,
        instance::warm_pool,
        instance::deliveries,
        admin::show,
        admin::apply,
        admin::yaml,
        admin::ws_auth,
        logs::instance_logs,
        logs::clone_logs,
        source::test_db_source,
        source::probe_source,
        masking::check,
        observation::start,
        observation::stop,
        observation::summary,
        observation::download,
        observation::sessions,
    ),
    components(
        schemas(ApiError, CloneId, SnapshotId, observation::SessionId, admin::WsToken),
        responses(Unauthorized, InternalError, Unavailable, InsufficientStorage)
    ),
    modifiers(&SecuritySchemes, &UniqueOperationIds, &OptionalBodies),
    tags(
        (name = "Instance", description = "Status, health, metrics and this document."),
        (name = "Snapshots", description = "Snapshots of the pool's data; clones are made from them."),
        (name = "Clones", description = "Thin clones: writable Postgres servers on a snapshot."),
        (name = "Branches", description = "Named lines of snapshots: create, commit a clone, \
            log, protect and delete."),
        (name = "Observation", description = "Observation sessions: watch a clone for dangerous \
            locks while a migration runs, then read the verdict, the summary and the artifacts."),
        (name = "Admin", description = "The configuration, changed live, and the engine's log."),
    )
)]
struct ApiDoc;

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served and committed: JSON with two-space indentation and a final newline.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&openapi()).map(|mut text| {
        text.push('\n');
        text
    })
}

/// This document; needs no token, like DBLab's spec files under `/api/`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "Instance",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
pub(crate) async fn serve() -> Response {
    static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| openapi_json().map_err(|error| error.to_string()));
    match document {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to serialize the OpenAPI document");
            ApiFailure::internal("the OpenAPI document could not be built; see the engine log")
                .into_response()
        }
    }
}

/// Declares a shared error response: the `ApiError` body with an example.
macro_rules! error_response {
    ($(#[$meta:meta])* $name:ident, $description:expr, $code:expr, $message:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub(crate) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), error_body($description, $code, $message))
            }
        }
    };
}

fn error_body(description: &str, code: &str, message: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ApiError")))
        .example(Some(serde_json::json!({ "code": code, "message": message })))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
        .into()
}

error_response!(
    /// 401: the `Verification-Token` header is missing or wrong.
    Unauthorized,
    "The `Verification-Token` header is missing or wrong.",
    "UNAUTHORIZED",
    ApiError::UNAUTHORIZED_MESSAGE
);

error_response!(
    /// 500: the pool, a Postgres server or the engine's state database failed.
    InternalError,
    "The pool, a Postgres server or the engine's state database failed; the engine log has \
     the cause.",
    "INTERNAL_ERROR",
    "the storage pool failed; see the engine log"
);

error_response!(
    /// 503: no capacity for another clone, or the engine is shutting down.
    Unavailable,
    "No free port for another clone (`NO_CAPACITY`), or the engine is shutting down \
     (`SHUTTING_DOWN`).",
    "NO_CAPACITY",
    "no free port in 6000..=6099: all 100 are taken by clones or other programs"
);

error_response!(
    /// 507: the pool's free space is below its minimum; the operation was refused before it
    /// changed anything.
    InsufficientStorage,
    "The pool's free space is below its minimum (`[pool] min_free_space`): the operation, which \
     writes to the pool, was refused before it changed anything. Free space (destroy clones, \
     delete snapshots or branches) and try again.",
    "INSUFFICIENT_STORAGE",
    "create clone: refused, the pool is out of space (12.0 MiB free of 512.0 MiB, below the \
     minimum of 25.6 MiB kept free); free space (destroy clones, delete snapshots or branches) \
     and try again"
);

/// Declares the `Verification-Token` header as an API-key scheme.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = ApiKey::Header(ApiKeyValue::with_description(
            TOKEN_HEADER,
            "The server's shared token; every request passes when none is configured.",
        ));
        let ws_token = ApiKey::Query(ApiKeyValue::with_description(
            "token",
            "A one-time token from `/admin/ws-auth`, good for one connection within a minute.",
        ));
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::ApiKey(scheme));
        components.add_security_scheme("ws_token", SecurityScheme::ApiKey(ws_token));
    }
}

/// One handler serving several methods (`/healthz` takes GET and POST) yields one operation ID
/// for all of them; OpenAPI wants them unique, so all but the first get the method appended.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let mut seen = Vec::new();
            for (method, operation) in operations(item) {
                let Some(id) = operation.operation_id.as_mut() else { continue };
                if seen.contains(id) {
                    id.push_str(method);
                } else {
                    seen.push(id.clone());
                }
            }
        }
    }
}

fn operations(
    item: &mut PathItem,
) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("Get", &mut item.get),
        ("Put", &mut item.put),
        ("Post", &mut item.post),
        ("Delete", &mut item.delete),
        ("Options", &mut item.options),
        ("Head", &mut item.head),
        ("Patch", &mut item.patch),
        ("Trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// A body that may be left out (`Option<T>` in an annotation) comes out as "`null` or T"; but the
/// handlers take an empty body for the default and refuse a JSON `null`, so such a body is T,
/// not required.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for (_, operation) in operations(item) {
                let Some(body) = operation.request_body.as_mut() else { continue };
                if body.required == Some(Required::True) {
                    continue;
                }
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                        && let [first, second] = one_of.items.as_slice()
                        && is_null(first)
                    {
                        content.schema = Some(second.clone());
                    }
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    let RefOr::T(Schema::Object(object)) = schema else { return false };
    object.schema_type == SchemaType::Type(Type::Null)
}
