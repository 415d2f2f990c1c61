//! Integration tests for webhook delivery against real HTTP receivers on 127.0.0.1.
//!
//! Waits are bounded by a generous guard ([`within`]) so a broken build fails instead of hanging; no assertion
//! depends on how long anything takes. Receivers that must stay busy are held on a gate the test releases.

mod config;
mod delivery;
mod isolation;
mod receiver;
mod retries;
mod shutdown;
mod signature;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api_types::{WebhookEvent, WebhookPayload};
use webhooks::{Dispatcher, HookConfig, MemorySink, WebhooksConfig};

/// Upper bound for any single wait in these tests; reaching it means the code under test is broken.
const GUARD: Duration = Duration::from_secs(60);

/// Runs `step`, failing the test if it does not finish within [`GUARD`].
async fn within<F: Future>(step: F) -> F::Output {
    tokio::time::timeout(GUARD, step).await.expect("test step did not finish within the guard")
}

/// A hook receiving the given events.
fn hook(url: &str, secret: &str, trigger: &[WebhookEvent]) -> HookConfig {
    HookConfig { url: url.to_owned(), secret: secret.to_owned(), trigger: trigger.to_vec() }
}

/// Delivery settings that keep retry tests quick: short backoff, three attempts.
fn fast_config(hooks: Vec<HookConfig>) -> WebhooksConfig {
    WebhooksConfig {
        hooks,
        timeout: Duration::from_secs(30),
        max_attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..WebhooksConfig::default()
    }
}

/// Starts a dispatcher with an in-memory sink.
fn start(config: &WebhooksConfig) -> (Dispatcher, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new());
    let dispatcher = Dispatcher::start(config, sink.clone()).expect("start dispatcher");
    (dispatcher, sink)
}

/// A clone event payload for clone `id`.
fn clone_payload(event: WebhookEvent, id: &str) -> WebhookPayload {
    WebhookPayload::clone_event(event, id, "127.0.0.1", 6000, "alice", "postgres")
}
