//! TLS on clones through the real server: the CA certificate without a token, a create that
//! asks for a client certificate gets it once, and a server with TLS off serves no CA and
//! refuses to issue one.

use serde_json::{Value, json};

use crate::harness::{PASSWORD, TestServer};

async fn ca_certificate(server: &TestServer) -> (u16, String) {
    let response = server.http.get(format!("{}/tls/ca.crt", server.url)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn certificate_request(id: &str) -> Value {
    json!({"id": id, "clientCertificate": true, "db": {"username": "alice", "password": PASSWORD}})
}

#[tokio::test]
async fn a_create_hands_out_a_client_certificate_once() {
    let server = TestServer::start("").await;
    let (status, ca) = ca_certificate(&server).await;
    assert_eq!(status, 200, "{ca}");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    let (status, created) = server.post("/clone?wait=120", certificate_request("certs")).await;
    assert_eq!(status, 201, "{created}");
    let issued = &created["clientCertificate"];
    assert_eq!(issued["ca"], ca.as_str());
    assert!(issued["certificate"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(issued["key"].as_str().unwrap().contains("PRIVATE KEY"));
    // Only that answer carries it.
    let (_, shown) = server.get("/clone/certs").await;
    assert!(shown.get("clientCertificate").is_none(), "{shown}");
    let (_, listed) = server.get("/clones").await;
    assert!(!listed.to_string().contains("PRIVATE KEY"), "{listed}");
    // The key file of the server's certificate is the servers' OS user's, outside PGDATA.
    let port = created["db"]["port"].as_str().unwrap();
    let key = server.state_dir().join("engine/tls/servers").join(port).join("server.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn without_tls_there_is_no_ca_and_no_client_certificate() {
    let server = TestServer::start("\n[tls]\nenabled = false").await;
    let (status, body) = ca_certificate(&server).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post("/clone", certificate_request("refused")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "BAD_REQUEST");
    let (_, clones) = server.get("/clones").await;
    assert_eq!(clones, json!([]));
}
