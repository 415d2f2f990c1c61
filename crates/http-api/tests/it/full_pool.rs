//! A full pool over HTTP, on a small real btrfs image filled with a real file: every operation
//! that writes to the pool answers the documented 507 `INSUFFICIENT_STORAGE` with a message that
//! says so, `/status` is a WARNING that names the pool, and both return to normal once the file
//! is removed. Then, on this logical-mode engine, `POST /snapshot` with a `recoveryTarget`
//! answers 400.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use engine::{CloneRequest, CloneState, MinFreeSpace};
use http_api::TOKEN_HEADER;
use serde_json::{Value, json};
use test_support::{PoolKind, TestPool};
use tower::ServiceExt;

const TOKEN: &str = "full-pool-test-token";
const MIB: u64 = 1 << 20;
const PASSWORD: &str = "Sc1on-test-pass!";

async fn send(router: &Router, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(TOKEN_HEADER, TOKEN)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("build the request");
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("read body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn status(router: &Router) -> Value {
    let request = Request::builder()
        .uri("/status")
        .header(TOKEN_HEADER, TOKEN)
        .body(Body::empty())
        .expect("build the request");
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("read body");
    serde_json::from_slice::<Value>(&bytes).expect("a JSON status")["status"].clone()
}

/// Whether the OpenAPI document lists `code` for `method path`.
fn documented(path: &str, method: &Method, code: &str) -> bool {
    let document = http_api::openapi();
    let item = &document.paths.paths[path];
    let operation = match *method {
        Method::POST => item.post.as_ref(),
        _ => None,
    };
    operation.is_some_and(|operation| operation.responses.responses.contains_key(code))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_answers_507_and_status_warns_until_space_is_freed() {
    let pool = TestPool::new(PoolKind::Btrfs, 512).await;
    let (engine, router) =
        crate::start_app(&pool, 3, TOKEN, |pool| pool.with_min_free(MinFreeSpace::Bytes(64 * MIB)))
            .await;
    let request = CloneRequest {
        id: Some("busy".to_owned()),
        username: "tester".to_owned(),
        password: PASSWORD.to_owned(),
        ..CloneRequest::default()
    };
    engine.create_clone(request).await.expect("create a clone");
    let view = engine.wait_settled("busy", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(view.record.state, CloneState::Ok, "{}", view.record.state_message);
    assert_eq!(status(&router).await["code"], "OK");

    let filler = pool.fill(16 * MIB);

    let clone = json!({"id": "late", "db": {"username": "tester", "password": PASSWORD}});
    let writes = [
        (Method::POST, "/clone", "/clone", clone.clone()),
        (Method::POST, "/clone/busy/reset", "/clone/{id}/reset", json!({"latest": false})),
        (Method::POST, "/snapshot", "/snapshot", json!({})),
        (Method::POST, "/snapshot/clone", "/snapshot/clone", json!({"cloneID": "busy"})),
        (Method::POST, "/branch/snapshot", "/branch/snapshot", json!({"cloneID": "busy"})),
        (Method::POST, "/branch", "/branch", json!({"branchName": "dev", "baseBranch": "main"})),
    ];
    for (method, uri, path, body) in &writes {
        let (code, answer) = send(&router, method.clone(), uri, body.clone()).await;
        assert_eq!(code, StatusCode::INSUFFICIENT_STORAGE, "{method} {uri}: {answer}");
        assert_eq!(answer["code"], "INSUFFICIENT_STORAGE", "{method} {uri}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("out of space"), "{method} {uri}: {answer}");
        assert!(documented(path, method, "507"), "{method} {path} does not document its 507");
    }
    let busy = engine.clone_view("busy").expect("the clone is kept");
    assert_eq!(busy.record.state, CloneState::Ok, "{}", busy.record.state_message);
    let warning = status(&router).await;
    assert_eq!(warning["code"], "WARNING", "{warning}");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Subsystems that need attention: pool"), "{warning}");
    assert!(message.contains("out of space"), "{warning}");

    filler.remove();
    let (code, answer) = send(&router, Method::POST, "/clone", clone).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let (code, answer) =
        send(&router, Method::POST, "/snapshot/clone", json!({"cloneID": "busy"})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(status(&router).await["code"], "OK");

    // A snapshot at a point in time needs physical mode; a malformed target is refused as such.
    for (target, needle) in [
        (json!({"time": "2026-12-02T10:00:00Z"}), "needs physical mode"),
        (json!({"lsn": "nowhere"}), "not a WAL location"),
        (json!({"time": "yesterday"}), "not an RFC 3339 time"),
        (json!({}), "exactly one of time and lsn"),
    ] {
        let body = json!({"recoveryTarget": target});
        let (code, answer) = send(&router, Method::POST, "/snapshot", body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{target}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{target}: {answer}");
    }
    engine.wait_settled("late", Duration::from_secs(60)).await.unwrap();
    engine.shutdown(Duration::from_secs(30)).await;
}
