//! The configuration through the API and SIGHUP, applied live while clones run, and the logs:
//! the engine's over DBLab's websocket with one-time tokens, a clone's over HTTP.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};
use test_support::free_port_range;
use tokio_tungstenite::tungstenite;

use crate::harness::{TOKEN, TestServer, connect};

/// A webhook secret the masked YAML and the log must never show.
const HOOK_SECRET: &str = "hook-secret-7d2e";

fn backups(config: &Path) -> Vec<PathBuf> {
    let name = config.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let file = path.file_name().unwrap().to_str().unwrap();
            file.starts_with(&format!("{name}.")) && file.ends_with(".bak")
        })
        .collect()
}

/// `GET <path>` with the token, the answer unread (for its headers, or a body that is not JSON).
async fn get_raw(server: &TestServer, path: &str) -> reqwest::Response {
    server
        .http
        .get(format!("{}{path}", server.url))
        .header("Verification-Token", TOKEN)
        .send()
        .await
        .unwrap()
}

async fn show(clone: &Value, setting: &str) -> String {
    let client = connect(clone).await.unwrap();
    client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changes_through_the_api_apply_to_new_clones_and_keep_running_ones() {
    let server = TestServer::start(&format!(
        "[[webhooks.hooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{HOOK_SECRET}\"\n"
    ))
    .await;
    let before = server.create_clone("before-change").await;

    let (_, instance) = server.get("/status").await;
    assert_eq!(instance["engine"]["disableConfigModification"], false, "{instance}");
    let (status, projection) = server.get("/admin/config").await;
    assert_eq!(status, 200, "{projection}");
    assert_eq!(projection["retrievalMode"], "unknown");
    assert_eq!(projection["databaseConfigs"]["configs"], json!({}));

    let response = get_raw(&server, "/admin/config.yaml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml; charset=utf-8");
    let yaml = response.text().await.unwrap();
    assert!(yaml.contains("\n  port_from: "), "{yaml}");
    assert!(yaml.contains("secret: \"****\""), "{yaml}");
    assert!(!yaml.contains(HOOK_SECRET) && !yaml.contains(TOKEN), "{yaml}");

    // Bad input: every bad field named, nothing written, nothing changed.
    let file_before = std::fs::read_to_string(server.config_path()).unwrap();
    let (status, error) = server
        .post(
            "/admin/config",
            json!({
                "databaseConfigs": { "configs": { "work_mem": "9MB" } },
                "retrieval": { "spec": { "logicalDump": { "options": {
                    "parallelJobs": 0,
                    "source": { "connection": { "password": "two\nlines" } },
                } } } },
            }),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "BAD_REQUEST");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("logicalDump.options.parallelJobs"), "{message}");
    assert!(message.contains("source.connection.password: must be one line"), "{message}");
    assert!(!server.state_dir().join("secrets").exists(), "a refused change wrote a password");
    // A setting Scion controls itself would break every later clone: refused.
    let (status, error) = server
        .post("/admin/config", json!({ "databaseConfigs": { "configs": { "port": "1" } } }))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().contains("clone.settings"), "{error}");
    assert_eq!(std::fs::read_to_string(server.config_path()).unwrap(), file_before);
    assert!(backups(server.config_path()).is_empty());
    let (status, unchanged) = server.get("/admin/config").await;
    assert_eq!((status, &unchanged), (200, &projection));

    // A valid change: written with the previous file kept, applied to the next clone.
    let (status, applied) = server
        .post("/admin/config", json!({ "databaseConfigs": { "configs": { "work_mem": "9MB" } } }))
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["databaseConfigs"]["configs"], json!({ "work_mem": "9MB" }));
    let file_after = std::fs::read_to_string(server.config_path()).unwrap();
    assert!(file_after.contains("work_mem = \"9MB\""), "{file_after}");
    let kept = backups(server.config_path());
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), file_before);
    let after = server.create_clone("after-change").await;
    assert_eq!(show(&after, "work_mem").await, "9MB");
    // The running clone was not restarted: same server, old setting, still serving.
    let (_, running) = server.get("/clone/before-change").await;
    assert_eq!(running["status"]["code"], "OK");
    assert_eq!(running["db"]["port"], before["db"]["port"]);
    assert_eq!(show(&before, "work_mem").await, "4MB");

    // Turned off in the file (SIGHUP): the API refuses, naming the key.
    server.disable_config_modification(2).await;
    let (status, error) = server
        .post("/admin/config", json!({ "databaseConfigs": { "configs": { "work_mem": "1MB" } } }))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().contains("disable_config_modification"), "{error}");
    let (_, instance) = server.get("/status").await;
    assert_eq!(instance["engine"]["disableConfigModification"], true, "{instance}");
    // DBLab refuses the source checks with it.
    for (path, body) in [
        ("/admin/test-db-source", json!({ "host": "127.0.0.1", "port": "5432" })),
        ("/admin/probe-source", json!({ "url": "postgres://u@127.0.0.1:5432/postgres" })),
    ] {
        let (status, error) = server.post(path, body).await;
        assert_eq!(status, 400, "{path}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("disable_config_modification"), "{path}: {error}");
    }
    assert!(!server.log().contains(HOOK_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_moves_the_port_range_idle_time_and_leases_without_touching_running_clones() {
    let server = TestServer::start("max_idle_minutes = 120\n").await;
    let first = server.create_clone("old-range").await;
    let old_port = first["db"]["port"].clone();

    let new_range = free_port_range(5);
    let text = std::fs::read_to_string(server.config_path()).unwrap();
    let cloning = text.find("[cloning]").unwrap();
    let rewritten = format!(
        "{}[cloning]\nport_from = {}\nport_to = {}\nmax_idle_minutes = 45\n\
         protection_lease_duration_minutes = 90\n",
        &text[..cloning],
        new_range.start(),
        new_range.end()
    );
    std::fs::write(server.config_path(), rewritten).unwrap();
    server.hangup();
    server.wait_log("configuration file applied", 1).await;

    let (_, status) = server.get("/status").await;
    assert_eq!(status["cloning"]["protectionLeaseDurationMinutes"], 90, "{status}");
    let (_, running) = server.get("/clone/old-range").await;
    assert_eq!(running["status"]["code"], "OK", "{running}");
    assert_eq!(running["db"]["port"], old_port);
    assert_eq!(running["metadata"]["maxIdleMinutes"], 45);
    connect(&first).await.expect("the running clone still serves on its old port");

    let second = server.create_clone("new-range").await;
    let port: u16 = second["db"]["port"].as_str().unwrap().parse().unwrap();
    assert!(new_range.contains(&port), "{port} not in {new_range:?}");

    // An invalid file: the running configuration stays.
    let valid = std::fs::read_to_string(server.config_path()).unwrap();
    std::fs::write(
        server.config_path(),
        valid.replace("max_idle_minutes = 45", "max_idle_minutes = -3"),
    )
    .unwrap();
    server.hangup();
    server.wait_log("the running configuration stays", 1).await;
    let (_, running) = server.get("/clone/new-range").await;
    assert_eq!(running["metadata"]["maxIdleMinutes"], 45, "{running}");
    let (_, status) = server.get("/status").await;
    assert_eq!(status["cloning"]["protectionLeaseDurationMinutes"], 90);
    connect(&first).await.expect("clones keep serving after a refused reload");
}

/// Reads websocket frames until a decoded line contains `text`; returns the lines read.
async fn read_until(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    text: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no line with {text:?} in {lines:#?}"))
            .expect("the socket stays open")
            .expect("a frame");
        let tungstenite::Message::Text(encoded) = frame else { continue };
        let line = String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(encoded.as_str()).unwrap(),
        )
        .unwrap();
        let found = line.contains(text);
        lines.push(line);
        if found {
            return lines;
        }
    }
}

async fn ws_token(server: &TestServer) -> String {
    let (status, body) = server.get("/admin/ws-auth").await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn ws_url(server: &TestServer, token: &str) -> String {
    format!("{}/instance/logs?token={token}", server.url.replacen("http", "ws", 1))
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_stream_live_with_one_time_tokens_and_clone_logs_follow() {
    let server = TestServer::start("").await;
    let token = ws_token(&server).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&server, &token)).await.unwrap();
    let kept = read_until(&mut socket, "API listening").await;
    assert!(kept.iter().all(|line| line.contains(" [") && !line.contains(TOKEN)), "{kept:#?}");

    // A line written after the connection arrives live.
    let clone = server.create_clone("logged").await;
    read_until(&mut socket, "logged").await;

    // The token was used up; none at all is refused the same way.
    for url in [ws_url(&server, &token), ws_url(&server, "")] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("a used or missing token connected: {other:?}"),
        }
    }

    // The clone's own log: its tail, then what it writes next.
    let tail = get_raw(&server, "/clone/logged/logs?tail=2").await;
    assert_eq!(tail.status(), 200);
    assert_eq!(tail.headers()["content-type"], "text/plain; charset=utf-8");
    let text = tail.text().await.unwrap();
    assert!(!text.is_empty() && text.lines().count() <= 2, "{text:?}");
    let mut follow = get_raw(&server, "/clone/logged/logs?tail=1&follow=true").await;
    assert_eq!(follow.status(), 200);
    let client = connect(&clone).await.unwrap();
    client.batch_execute("DO $$ BEGIN RAISE LOG 'scion-follow-marker'; END $$").await.unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("scion-follow-marker") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, follow.chunk())
            .await
            .unwrap_or_else(|_| panic!("the marker never came: {seen:?}"))
            .unwrap()
            .expect("the followed log stays open while the clone exists");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let (status, error) = server.get("/clone/no-such-clone/logs").await;
    assert_eq!((status, error["code"].as_str()), (404, Some("NOT_FOUND")), "{error}");
    let (status, error) = server.get("/clone/logged/logs?tail=many").await;
    assert_eq!((status, error["code"].as_str()), (400, Some("BAD_REQUEST")), "{error}");
}
