//! `GET /status` → `extensions` on a real engine: every installed major with the directory its
//! clones use and the extensions that install can create. Debian's 15, named in
//! `[clone.bin_dirs]`, wins over Scion's own 15 and brings its extension packages; Scion's own
//! 16 has contrib only.

use axum::body::Body;
use axum::http::Request;
use engine::EngineConfig;
use http_api::TOKEN_HEADER;
use serde_json::Value;
use test_support::{PoolKind, TestPool};
use tower::ServiceExt;

const TOKEN: &str = "extensions-test-token";

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_the_extensions_of_each_major() {
    let pool = TestPool::new(PoolKind::Btrfs, 256).await;
    let mut config = EngineConfig::default();
    config.clone.bin_dirs.insert("15".to_owned(), "/usr/lib/postgresql/15/bin".into());
    let (_engine, router) = crate::start_app_with(&pool, 2, TOKEN, |pool| pool, config).await;
    let request = Request::builder()
        .uri("/status")
        .header(TOKEN_HEADER, TOKEN)
        .body(Body::empty())
        .expect("build the request");
    let response = router.oneshot(request).await.expect("the router answers");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("read body");
    let status: Value = serde_json::from_slice(&bytes).expect("a JSON status");
    let majors = status["extensions"].as_array().expect("extensions is a list");
    let numbers: Vec<u64> = majors.iter().filter_map(|major| major["major"].as_u64()).collect();
    assert_eq!(numbers, [13, 14, 15, 16, 17, 18], "{majors:?}");
    let of = |number: u64| {
        let major = majors.iter().find(|major| major["major"] == number).expect("listed");
        let names: Vec<&str> = major["extensions"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        (major["binDir"].as_str().expect("binDir").to_owned(), names)
    };
    let (debian, extensions) = of(15);
    assert_eq!(debian, "/usr/lib/postgresql/15/bin");
    for name in ["plpgsql", "postgis", "pg_cron", "pg_partman", "hypopg", "pg_repack", "pgaudit"] {
        assert!(extensions.contains(&name), "{name} in {extensions:?}");
    }
    let (own, extensions) = of(16);
    assert!(own.ends_with("/16/bin") && !own.starts_with("/usr/lib/postgresql"), "{own}");
    assert!(extensions.contains(&"pg_stat_statements"), "{extensions:?}");
    assert!(!extensions.contains(&"postgis"), "{extensions:?}");
    let mut sorted = extensions.clone();
    sorted.sort_unstable();
    assert_eq!(extensions, sorted);
}
