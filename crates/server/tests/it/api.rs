//! Bad input, auth, snapshots, health and metrics: DBLab's answers, and nothing changed.

use serde_json::{Value, json};

use crate::harness::{TOKEN, TestServer, clone_request};

async fn raw(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request =
        server.http.request(method, format!("{}{path}", server.url)).body(body.to_owned());
    if let Some(token) = token {
        request = request.header("Verification-Token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_the_right_error_and_change_nothing() {
    let server = TestServer::start("").await;
    server.create_clone("keeper").await;
    let before = server.get("/clones").await.1;

    type Case<'a> = (reqwest::Method, &'a str, Option<&'a str>, String, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (reqwest::Method::GET, "/clones", None, String::new(), 401, "UNAUTHORIZED"),
        (reqwest::Method::GET, "/status", Some("wrong-token"), String::new(), 401, "UNAUTHORIZED"),
        (reqwest::Method::POST, "/clone", Some(TOKEN), "{not json".to_owned(), 400, "BAD_REQUEST"),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            clone_request("../../etc").to_string(),
            400,
            "BAD_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            clone_request("bad id;rm").to_string(),
            400,
            "BAD_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            json!({"id": "nouser", "db": {"password": crate::harness::PASSWORD}}).to_string(),
            400,
            "BAD_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            json!({"id": "weak", "db": {"username": "u", "password": "password"}}).to_string(),
            400,
            "BAD_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            json!({"id": "ghost-snap", "snapshot": {"id": "dblab_pool/data@nope"},
                   "db": {"username": "u", "password": crate::harness::PASSWORD}})
            .to_string(),
            404,
            "NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/clone",
            Some(TOKEN),
            clone_request("keeper").to_string(),
            400,
            "BAD_REQUEST",
        ),
        (reqwest::Method::GET, "/clone/nobody", Some(TOKEN), String::new(), 404, "NOT_FOUND"),
        (reqwest::Method::DELETE, "/clone/nobody", Some(TOKEN), String::new(), 404, "NOT_FOUND"),
        (
            reqwest::Method::POST,
            "/clone/nobody/reset",
            Some(TOKEN),
            String::new(),
            404,
            "NOT_FOUND",
        ),
        (reqwest::Method::PATCH, "/clone/keeper", Some(TOKEN), "[]".to_owned(), 400, "BAD_REQUEST"),
        (
            reqwest::Method::GET,
            "/snapshot/dblab_pool/data@missing",
            Some(TOKEN),
            String::new(),
            404,
            "NOT_FOUND",
        ),
        (
            reqwest::Method::GET,
            "/snapshot/no-at-sign",
            Some(TOKEN),
            String::new(),
            400,
            "BAD_REQUEST",
        ),
        (
            reqwest::Method::DELETE,
            "/snapshot/dblab_pool/data@x?force=maybe",
            Some(TOKEN),
            String::new(),
            400,
            "BAD_REQUEST",
        ),
        (reqwest::Method::GET, "/no/such/path", Some(TOKEN), String::new(), 404, "NOT_FOUND"),
    ];
    for (method, path, token, body, status, code) in cases {
        let (got, error) = raw(&server, method.clone(), path, token, &body).await;
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{method} {path}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {error}"
        );
    }
    assert_eq!(server.get("/clones").await.1, before, "a refused request changed the clones");
}

#[tokio::test]
async fn snapshots_health_and_metrics() {
    let server = TestServer::start("").await;
    // /healthz and /metrics need no token.
    let health: Value = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(health["version"].is_string() && health["instanceID"].is_string(), "{health}");

    let (_, snapshots) = server.get("/snapshots").await;
    let first = snapshots[0]["id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("dblab_pool/data@snapshot_"), "{first}");
    let (status, created) = server.post("/snapshot", Value::Null).await;
    assert_eq!(status, 200, "{created}");
    let second = created["id"].as_str().unwrap().to_owned();
    let (_, snapshots) = server.get("/snapshots").await;
    let ids: Vec<_> =
        snapshots.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    let (status, one) = server.get(&format!("/snapshot/{second}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["branch"], "main");

    // A snapshot with a clone is refused without force, and goes with it when forced.
    let clone = server.create_clone("on-second").await;
    assert_eq!(clone["snapshot"]["id"], second.as_str());
    let (status, error) =
        server.call(reqwest::Method::DELETE, &format!("/snapshot/{first}"), None).await;
    assert_eq!(status, 200, "an old snapshot without clones can be deleted: {error}");
    server.post("/snapshot", Value::Null).await;
    let (status, error) =
        server.call(reqwest::Method::DELETE, &format!("/snapshot/{second}"), None).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().contains("on-second"), "{error}");
    let (status, deleted) =
        server.call(reqwest::Method::DELETE, &format!("/snapshot/{second}?force=true"), None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(server.get("/clone/on-second").await.0, 404, "force removes dependent clones");

    let metrics = server.metrics().await;
    for name in [
        "dblab_instance_info{",
        "dblab_clones_total ",
        "dblab_disk_free_bytes{pool=\"dblab_pool\"}",
        "dblab_disk_total_bytes{pool=\"dblab_pool\"}",
        "dblab_disk_used_by_snapshots_bytes{pool=\"dblab_pool\"}",
        "dblab_disk_data_size_bytes{pool=\"dblab_pool\"}",
        "dblab_disk_compress_ratio{pool=\"dblab_pool\"} 1",
        "dblab_snapshot_max_data_lag_seconds ",
        "dblab_clone_protected_count ",
        "dblab_clone_total_memory_usage_bytes ",
        "dblab_clone_total_memory_limit_bytes ",
        "dblab_clone_total_cpu_usage_percent ",
        "scion_clone_ready_seconds_bucket",
        "scion_webhook_deliveries_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
}

/// Per-clone limits over HTTP (docs/quotas.md): the request's field over `[clone]`'s default,
/// shown with the kernel's usage, summed in the metric; a clone without limits shows neither.
#[tokio::test]
async fn a_clone_created_with_limits_shows_them_and_its_usage() {
    let server = TestServer::start("[clone]\ncpu = 0.5\n").await;
    let (_, snapshots) = server.get("/snapshots").await;
    let snapshot_size = snapshots[0]["logicalSize"].as_u64().unwrap();
    let disk = snapshot_size + (256 << 20);
    let mut request = clone_request("limited");
    request["limits"] = json!({"memory": 268435456, "disk": disk});
    let (status, clone) = server.post("/clone?wait=120", request).await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["status"]["code"], "OK", "{clone}\n{}", server.log());
    assert_eq!(clone["limits"], json!({"cpu": 0.5, "memory": 268435456, "disk": disk}));
    let (_, clone) = server.get("/clone/limited").await;
    assert!(clone["usage"]["memory"].as_u64().unwrap() > 0, "{clone}");
    assert_eq!(clone["usage"]["oomKills"], 0, "{clone}");
    let metrics = server.metrics().await;
    assert_eq!(
        crate::harness::metric(&metrics, "dblab_clone_total_memory_limit_bytes"),
        Some(268435456.0)
    );

    assert_eq!(
        crate::harness::metric(&metrics, "scion_clone_disk_quota_bytes{clone_id=\"limited\"}"),
        Some(disk as f64)
    );

    let mut refused = clone_request("refused");
    refused["limits"] = json!({"cpu": 0});
    let (status, body) = server.post("/clone", refused).await;
    assert_eq!(status, 400, "{body}");
    // A disk quota the snapshot already fills.
    let mut refused = clone_request("refused");
    refused["limits"] = json!({"disk": snapshot_size});
    let (status, body) = server.post("/clone", refused).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disk quota"), "{body}");

    // The configuration's CPU limit applies to every clone: this one has a group too.
    let plain = server.create_clone("plain").await;
    assert_eq!(plain["limits"], json!({"cpu": 0.5}));
    for id in ["limited", "plain"] {
        let (status, body) =
            server.call(reqwest::Method::DELETE, &format!("/clone/{id}"), None).await;
        assert!(status < 300, "{status} {body}");
        assert!(server.wait_while(id, "DELETING").await.is_none());
    }
}
