//! The OpenAPI document against the router over a real engine: every documented operation is
//! served, answers with a documented status and asks for the token exactly when the document
//! says so; every other method on a documented path is a 405; every route in the source is
//! documented.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use engine::{Engine, EngineConfig, EngineDeps, NoEvents, Pool};
use http_api::TOKEN_HEADER;
use serde_json::Value;
use test_support::{PoolKind, TestPool};
use tower::ServiceExt;
use utoipa::openapi::path::Operation;

const TOKEN: &str = "openapi-test-token";
const POOL_NAME: &str = "test_pool";

/// Every method a request can have besides HEAD, which axum answers wherever GET is served.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::PUT,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
    Method::TRACE,
];

fn operation<'a>(item: &'a utoipa::openapi::PathItem, method: &Method) -> Option<&'a Operation> {
    match *method {
        Method::GET => item.get.as_ref(),
        Method::PUT => item.put.as_ref(),
        Method::POST => item.post.as_ref(),
        Method::DELETE => item.delete.as_ref(),
        Method::OPTIONS => item.options.as_ref(),
        Method::PATCH => item.patch.as_ref(),
        Method::TRACE => item.trace.as_ref(),
        _ => None,
    }
}

/// A concrete URI for a documented path: IDs that name nothing, so that no request changes
/// anything.
fn concrete(path: &str) -> String {
    path.replace("/snapshot/{id}", &format!("/snapshot/{POOL_NAME}/data@no_such_snapshot"))
        .replace("{id}", "no-such-clone")
        .replace("{branchName}", "no-such-branch")
}

/// Sends one request; a body that is not JSON, so that no handler with a body acts on it.
async fn send(router: &Router, method: &Method, uri: &str, token: bool) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method.clone()).uri(uri);
    if token {
        request = request.header(TOKEN_HEADER, TOKEN);
    }
    let body = if *method == Method::GET { Body::empty() } else { Body::from("{") };
    let response = router
        .clone()
        .oneshot(request.body(body).expect("build the request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("read body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn is_fallback(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::NOT_FOUND && body["message"] == api_types::ApiError::NOT_FOUND_MESSAGE
}

/// The paths of every `.route("...")` in the route modules, in OpenAPI's notation.
fn routes_in_source() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("routes.rs")];
    for entry in std::fs::read_dir(src.join("routes")).expect("read src/routes") {
        files.push(entry.expect("read src/routes").path());
    }
    let mut paths = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a route module");
        for (_, rest) in text.match_indices(".route(").map(|(at, _)| text.split_at(at + 7)) {
            let Some(literal) = rest.trim_start().strip_prefix('"') else { continue };
            let path = literal.split('"').next().expect("a closed string literal");
            // axum's wildcard `{*id}` is OpenAPI's `{id}`.
            paths.insert(path.replace("{*", "{"));
        }
    }
    paths
}

#[test]
fn openapi_documents_every_route_in_the_source() {
    let documented: BTreeSet<String> = http_api::openapi().paths.paths.keys().cloned().collect();
    let in_source = routes_in_source();
    assert!(in_source.contains("/clone/{id}"), "the source scan found {in_source:?}");
    assert_eq!(documented, in_source, "documented paths vs routes in src/routes*.rs");
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_matches_the_router() {
    let pool = TestPool::new(PoolKind::Btrfs, 512).await;
    let (engine, router) = crate::start_app(&pool, 2, TOKEN, |pool| pool).await;

    let document = http_api::openapi();
    let mut checked = 0;
    for (path, item) in &document.paths.paths {
        let uri = concrete(path);
        for method in &METHODS {
            let (status, body) = send(&router, method, &uri, true).await;
            let Some(operation) = operation(item, method) else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is not documented but answers {status}: {body}"
                );
                continue;
            };
            assert!(!is_fallback(status, &body), "{method} {path} is documented but not routed");
            assert!(
                operation.responses.responses.contains_key(status.as_str()),
                "{method} {uri} answered {status}, which the document does not list: {body}"
            );
            if status.is_client_error() || status.is_server_error() {
                assert!(body["code"].is_string(), "{method} {uri}: error without a code: {body}");
            }

            let secured = operation.security.as_ref().is_some_and(|security| !security.is_empty());
            assert_eq!(
                operation.responses.responses.contains_key("401"),
                secured,
                "{method} {path}: a 401 answer is documented exactly on secured operations"
            );
            let (status, _) = send(&router, method, &uri, false).await;
            assert_eq!(
                status == StatusCode::UNAUTHORIZED,
                secured,
                "{method} {uri} without a token answered {status}; documented as secured: {secured}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} operations checked");
    engine.shutdown(Duration::from_secs(30)).await;
}

/// A state directory that cannot be made is the engine's failure (an I/O error, a 500 at the
/// edge), not bad input from a caller.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_directory_that_cannot_be_made_is_an_io_error() {
    let pool = TestPool::new(PoolKind::Btrfs, 512).await;
    let blocker = pool.scratch("scratch").join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write the blocking file");
    let deps = EngineDeps {
        pool: Pool::new(POOL_NAME, pool.open().await).expect("open the pool"),
        state_dir: blocker.join("state"),
        events: Arc::new(NoEvents),
        version: "test".to_owned(),
    };
    let error = Engine::start(EngineConfig::default(), deps).await.expect_err("no state directory");
    assert!(matches!(error, engine::Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("a-file"), "the message names the path: {error}");
    let failure = http_api::ApiFailure::from(error);
    assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
