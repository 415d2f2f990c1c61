//! Integration tests of the HTTP API: the OpenAPI document against the committed copy and
//! against the routes a real engine serves.

use std::sync::Arc;

use axum::Router;
use engine::{Engine, EngineConfig, EngineDeps, NoEvents, Pool};
use http_api::{AppState, Token};
use test_support::{TestPool, free_port_range};

mod extensions;
mod full_pool;
mod openapi;
mod routes;

/// A real engine on `pool` (named `test_pool`) with `ports` clone ports, and the router over it
/// that takes `token`; `pool_setup` adjusts the pool first (its minimum free space, say).
pub(crate) async fn start_app(
    pool: &TestPool,
    ports: u16,
    token: &str,
    pool_setup: impl FnOnce(Pool) -> Pool,
) -> (Engine, Router) {
    start_app_with(pool, ports, token, pool_setup, EngineConfig::default()).await
}

/// [`start_app`] with `config` (its clone ports replaced).
pub(crate) async fn start_app_with(
    pool: &TestPool,
    ports: u16,
    token: &str,
    pool_setup: impl FnOnce(Pool) -> Pool,
    mut config: EngineConfig,
) -> (Engine, Router) {
    let range = free_port_range(ports);
    config.cloning.port_from = *range.start();
    config.cloning.port_to = *range.end();
    let deps = EngineDeps {
        pool: pool_setup(Pool::new("test_pool", pool.open().await).expect("open the pool")),
        state_dir: pool.scratch("state"),
        events: Arc::new(NoEvents),
        version: "test".to_owned(),
    };
    let engine = Engine::start(config, deps).await.expect("start the engine");
    let router = http_api::router(AppState {
        engine: engine.clone(),
        token: Token::new(token),
        metrics: Vec::new(),
        config: None,
        logs: None,
        ws_tokens: http_api::WsTokens::default(),
    });
    (engine, router)
}
