//! Source checks through the real binary: `POST /admin/test-db-source` and `POST
//! /admin/probe-source` against a real PostgreSQL 16 whose login role can read one table of a
//! database but not another, with an extension; bad input answers `{code, message}`.

use serde_json::json;
use test_support::primary::{Primary, REPLICATOR};

use crate::harness::TestServer;

const PASSWORD: &str = "s0urce-check";

#[tokio::test(flavor = "multi_thread")]
async fn test_db_source_and_probe_source_report_what_a_dump_would_meet() {
    let source = Primary::start(16).await;
    source.require_password(PASSWORD).await;
    source.sql("CREATE DATABASE shop").await;
    let shop = postgres::Admin::connect(source.socket_dir(), source.port, "postgres", "shop")
        .await
        .unwrap();
    shop.client()
        .batch_execute(&format!(
            "CREATE EXTENSION hstore; \
             CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE secret (id int); \
             GRANT SELECT ON orders TO {REPLICATOR}"
        ))
        .await
        .unwrap();
    drop(shop);
    let server = TestServer::start("").await;
    let port = source.port.to_string();
    let request = |password: &str, databases: &[&str]| {
        json!({"host": "127.0.0.1", "port": port, "dbname": "postgres", "username": REPLICATOR,
               "password": password, "db_list": databases})
    };

    // A table the role cannot read: DBLab's warning shape, and the whole report beside it.
    let (status, body) = server.post("/admin/test-db-source", request(PASSWORD, &["shop"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "warning", "{body}");
    assert_eq!(body["result"], "missing_privilege", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("no SELECT on public.secret"), "{body}");
    assert!(!message.contains("orders"), "{body}");
    assert!(body["dbVersion"].as_str().unwrap().starts_with("16."), "{body}");
    assert!(body["tuningParams"]["work_mem"].is_string(), "{body}");
    let database = &body["report"]["databases"][0];
    assert_eq!(database["name"], "shop", "{body}");
    assert!(database["sizeBytes"].as_u64().unwrap() > 0, "{body}");
    assert!(database["extensions"]["hstore"].is_string(), "{body}");
    assert_eq!(body["report"]["problems"][0]["kind"], "missing_privilege", "{body}");

    // Readable everywhere: ok.
    source.sql(&format!("GRANT pg_read_all_data TO {REPLICATOR}")).await;
    let (status, body) = server.post("/admin/test-db-source", request(PASSWORD, &["shop"])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(body["result"], "ok", "{body}");

    // A database that is not there, a wrong password, a bad port.
    let (_, body) = server.post("/admin/test-db-source", request(PASSWORD, &["nope"])).await;
    assert_eq!(body["result"], "unverified_database", "{body}");
    let (status, body) = server.post("/admin/test-db-source", request("wrong", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["result"].as_str()),
        (Some("error"), Some("connection_error"))
    );
    assert!(body["message"].as_str().unwrap().contains("authentication"), "{body}");
    let (status, body) =
        server.post("/admin/test-db-source", json!({"host": "127.0.0.1", "port": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_REQUEST")), "{body}");

    // A proposed configuration from a URL.
    let url = format!("postgres://{REPLICATOR}@127.0.0.1:{port}/shop");
    let (status, body) =
        server.post("/admin/probe-source", json!({"url": url, "password": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pgMajorVersion"], 16, "{body}");
    assert_eq!(body["source"]["dbname"], "shop", "{body}");
    assert_eq!(body["detectedProvider"], "generic", "{body}");
    let databases: Vec<&str> =
        body["databases"].as_array().unwrap().iter().filter_map(|d| d.as_str()).collect();
    assert!(databases.contains(&"shop") && databases.contains(&"postgres"), "{body}");
    assert!(body["sharedPreloadLibraries"].as_str().unwrap().contains("pg_stat_statements"));
    assert_eq!(body["memoryProbed"], true, "{body}");
    let config: toml::Table = toml::from_str(body["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["retrieval"]["source"]["username"].as_str(), Some(REPLICATOR), "{body}");
    assert!(config["retrieval"]["databases"].get("shop").is_some(), "{body}");
    for (body, expected) in [
        (json!({"url": format!("postgres://{REPLICATOR}:pw@127.0.0.1/shop")}), "holds a password"),
        (json!({"url": "host=a,b user=x"}), "several hosts"),
        (json!({}), "url is required"),
        (json!({"url": url, "password": "wrong"}), "authentication"),
    ] {
        let (status, refused) = server.post("/admin/probe-source", body).await;
        assert_eq!((status, refused["code"].as_str()), (400, Some("BAD_REQUEST")), "{refused}");
        assert!(refused["message"].as_str().unwrap().contains(expected), "{refused}");
    }
}
