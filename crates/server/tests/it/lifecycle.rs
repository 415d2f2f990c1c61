//! The whole clone lifecycle over HTTP, as DBLab's CLI drives it.

use std::collections::HashSet;

use serde_json::json;

use crate::harness::{TestServer, clone_request, connect, connect_with};

#[tokio::test]
async fn create_connect_isolate_reset_destroy() {
    let server = TestServer::start("").await;

    // DBLab's asynchronous create: 201 with CREATING, then poll until OK.
    let (status, created) = server.post("/clone", clone_request("alpha")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"]["code"], "CREATING");
    assert_eq!(created["id"], "alpha");
    let alpha = server.wait_while("alpha", "CREATING").await.expect("the clone exists");
    assert_eq!(alpha["status"]["code"], "OK", "{alpha}");
    assert_eq!(alpha["db"]["password"], "", "the password is never sent back");
    assert!(alpha["db"]["port"].is_string(), "DBLab sends the port as a string");

    let beta = server.create_clone("beta").await;
    assert_ne!(alpha["db"]["port"], beta["db"]["port"]);

    let client = connect(&alpha).await.expect("connect with the clone's credentials");
    client
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('mine')")
        .await
        .unwrap();
    let other = connect(&beta).await.unwrap();
    let visible = other.query_one("SELECT to_regclass('notes') IS NOT NULL", &[]).await.unwrap();
    assert!(!visible.get::<_, bool>(0), "a write in alpha shows in beta");
    assert!(connect_with(&alpha, "Not-the-password-1!").await.is_err());
    drop(client);
    drop(other);

    // Both listings know both clones; /status is what DBLab's CLI lists from.
    let (_, clones) = server.get("/clones").await;
    let ids: HashSet<_> =
        clones.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, HashSet::from(["alpha".to_owned(), "beta".to_owned()]));
    let (_, status) = server.get("/status").await;
    assert_eq!(status["cloning"]["numClones"], 2);
    assert_eq!(status["status"]["code"], "OK");
    assert!(status["pools"][0]["fileSystem"]["size"].as_u64().unwrap() > 0);

    // Reset: RESETTING, then OK on the same port with the same credentials, changes gone.
    let (status, body) = server.post("/clone/alpha/reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let reset = server.wait_while("alpha", "RESETTING").await.unwrap();
    assert_eq!(reset["status"]["code"], "OK", "{reset}");
    assert_eq!(reset["db"]["port"], alpha["db"]["port"]);
    let client = connect(&reset).await.expect("same credentials after reset");
    let gone = client.query_one("SELECT to_regclass('notes') IS NULL", &[]).await.unwrap();
    assert!(gone.get::<_, bool>(0), "reset kept alpha's changes");
    drop(client);

    // Destroy: DELETING, then 404.
    let (status, _) = server.call(reqwest::Method::DELETE, "/clone/alpha", None).await;
    assert_eq!(status, 200);
    assert!(server.wait_while("alpha", "DELETING").await.is_none());
    let (status, error) = server.get("/clone/alpha").await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "NOT_FOUND");
    assert!(connect(&alpha).await.is_err(), "the destroyed clone's server still answers");
    assert_eq!(crate::harness::clone_datasets(&server.pool_dir()), ["branch/main/beta/r0"]);
}

#[tokio::test]
async fn protected_clones_cannot_be_destroyed_until_unprotected() {
    let server = TestServer::start("").await;
    let (status, clone) = server
        .post(
            "/clone?wait=120",
            json!({"id": "guarded", "protected": true, "protectionDurationMinutes": 120,
                   "db": {"username": "tester", "password": crate::harness::PASSWORD}}),
        )
        .await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["protected"], true);
    assert!(clone["protectedTill"].is_string(), "{clone}");

    let (status, error) = server.call(reqwest::Method::DELETE, "/clone/guarded", None).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "BAD_REQUEST");
    let (_, still) = server.get("/clone/guarded").await;
    assert_eq!(still["status"]["code"], "OK");

    let (status, patched) = server
        .call(reqwest::Method::PATCH, "/clone/guarded", Some(json!({"protected": false})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["protected"], false);
    assert!(patched.get("protectedTill").is_none(), "{patched}");
    // Scion's `wait` answers once the clone is gone.
    let (status, _) = server.call(reqwest::Method::DELETE, "/clone/guarded?wait=60", None).await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/clone/guarded").await.0, 404);
}

#[tokio::test]
async fn fifty_concurrent_creates_get_distinct_ports() {
    let server = TestServer::start_with_ports("", 60).await;
    let creates = (0..50).map(|n| {
        let http = server.http.clone();
        let url = format!("{}/clone", server.url);
        tokio::spawn(async move {
            let response = http
                .post(url)
                .header("Verification-Token", crate::harness::TOKEN)
                .json(&clone_request(&format!("c{n:02}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
        })
    });
    for create in creates {
        create.await.unwrap();
    }
    let mut ports = HashSet::new();
    for n in 0..50 {
        let clone = server.wait_while(&format!("c{n:02}"), "CREATING").await.unwrap();
        assert_eq!(clone["status"]["code"], "OK", "{clone}");
        assert!(
            ports.insert(clone["db"]["port"].as_str().unwrap().to_owned()),
            "port shared: {clone}"
        );
    }
    assert_eq!(ports.len(), 50);
}

/// `/status` and `/clones` serialize each snapshot's view once and copy it into each of its
/// clones (`http_api::listing`): the bytes on the wire must be those of the plain serialization
/// of what they say, as DBLab's clients decode it.
#[tokio::test]
async fn status_and_clones_are_the_plain_serialization() {
    let server = TestServer::start("").await;
    let ids = ["one", "two", "three"];
    for id in ids {
        server.create_clone(id).await;
    }
    for path in ["/status", "/clones"] {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .header("Verification-Token", crate::harness::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        let body = response.bytes().await.unwrap();
        let (plain, clones) = if path == "/status" {
            let instance: api_types::Instance = serde_json::from_slice(&body).unwrap();
            (serde_json::to_vec(&instance).unwrap(), instance.cloning.clones)
        } else {
            let clones: Vec<api_types::Clone> = serde_json::from_slice(&body).unwrap();
            (serde_json::to_vec(&clones).unwrap(), clones)
        };
        assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&plain), "{path}");
        assert_eq!(clones.len(), 3, "{path}");
        for clone in &clones {
            let mut listed = clone.snapshot.as_ref().expect("a snapshot").clones.clone();
            listed.sort();
            assert_eq!(listed, ["one", "three", "two"], "{path}: {}", clone.id);
        }
    }
}
