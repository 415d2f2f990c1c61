//! The `[webhooks]` configuration: TOML parsing, defaults, unknown keys, and typed errors for bad values.

use std::sync::Arc;
use std::time::Duration;

use api_types::WebhookEvent;
use webhooks::{
    ConfigError, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_TIMEOUT, Dispatcher, MemorySink, StartError, WebhooksConfig,
};

use crate::hook;

#[test]
fn parses_a_full_section() {
    let text = r#"
        timeout = "3s"
        max_attempts = 7
        backoff_base = "250ms"
        backoff_max = "1m"
        queue_capacity = 64

        [[hooks]]
        url = "https://hooks.example.com/dblab"
        secret = "s3cr3t"
        trigger = ["clone_create", "clone_protection_expiring", "branch_delete"]

        [[hooks]]
        url = "http://127.0.0.1:9000/x"
    "#;
    let config: WebhooksConfig = toml::from_str(text).expect("parse");
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert_eq!(config.max_attempts, 7);
    assert_eq!(config.backoff_base, Duration::from_millis(250));
    assert_eq!(config.backoff_max, Duration::from_secs(60));
    assert_eq!(config.queue_capacity, 64);
    assert_eq!(
        config.hooks[0].trigger,
        [
            WebhookEvent::CloneCreate,
            WebhookEvent::CloneProtectionExpiring,
            WebhookEvent::BranchDelete
        ]
    );
    assert_eq!(config.hooks[1].secret, "");
    assert!(config.hooks[1].trigger.is_empty());
    let urls = config.validate().expect("valid");
    assert_eq!(urls[0].as_str(), "https://hooks.example.com/dblab");
}

#[test]
fn defaults_are_the_named_constants() {
    let config: WebhooksConfig = toml::from_str("").expect("parse");
    assert_eq!(config, WebhooksConfig::default());
    assert_eq!(config.timeout, DEFAULT_TIMEOUT);
    assert_eq!(config.max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(config.backoff_base, DEFAULT_BACKOFF_BASE);
    assert_eq!(config.backoff_max, DEFAULT_BACKOFF_MAX);
    assert_eq!(config.queue_capacity, DEFAULT_QUEUE_CAPACITY);
    assert!(config.validate().expect("valid").is_empty());
}

#[test]
fn unknown_keys_events_and_bad_durations_are_errors() {
    let cases = [
        ("retries = 3", "unknown field `retries`"),
        (
            "[[hooks]]\nurl = \"http://a/\"\ntriggers = [\"clone_create\"]",
            "unknown field `triggers`",
        ),
        (
            "[[hooks]]\nurl = \"http://a/\"\ntrigger = [\"clone_created\"]",
            "unknown variant `clone_created`",
        ),
        ("timeout = \"soon\"", "soon"),
        ("timeout = 10", "invalid type"),
        ("[[hooks]]\nsecret = \"x\"", "missing field `url`"),
    ];
    for (text, expected) in cases {
        let error = toml::from_str::<WebhooksConfig>(text).expect_err(text).to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn bad_urls_are_typed_errors() {
    let with_url = |url: &str| WebhooksConfig {
        hooks: vec![hook("https://ok.example.com/", "", &[]), hook(url, "", &[])],
        ..WebhooksConfig::default()
    };
    for url in ["not a url", "", "http://", "//host/path"] {
        assert!(
            matches!(with_url(url).validate(), Err(ConfigError::InvalidUrl { index: 1, .. })),
            "{url:?}: {:?}",
            with_url(url).validate()
        );
    }
    for url in ["ftp://host/x", "file:///etc/passwd", "unix:/run/hook.sock", "mailto:a@b"] {
        assert_eq!(
            with_url(url).validate(),
            Err(ConfigError::UnsupportedUrl { index: 1, url: url.to_owned() }),
            "{url:?}"
        );
    }
}

#[test]
fn bad_delivery_settings_are_typed_errors() {
    let base = WebhooksConfig::default;
    assert_eq!(
        WebhooksConfig { max_attempts: 0, ..base() }.validate(),
        Err(ConfigError::ZeroAttempts)
    );
    assert_eq!(
        WebhooksConfig { queue_capacity: 0, ..base() }.validate(),
        Err(ConfigError::ZeroQueueCapacity)
    );
    assert_eq!(
        WebhooksConfig { timeout: Duration::ZERO, ..base() }.validate(),
        Err(ConfigError::ZeroTimeout)
    );
    let inverted = WebhooksConfig {
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(1),
        ..base()
    };
    assert!(matches!(inverted.validate(), Err(ConfigError::BackoffBaseAboveMax { .. })));
}

#[tokio::test]
async fn the_dispatcher_refuses_an_invalid_config() {
    let config =
        WebhooksConfig { hooks: vec![hook("gopher://x", "", &[])], ..WebhooksConfig::default() };
    let error = Dispatcher::start(&config, Arc::new(MemorySink::new())).expect_err("invalid");
    assert!(matches!(error, StartError::Config(ConfigError::UnsupportedUrl { index: 0, .. })));
}

#[test]
fn debug_output_hides_secrets() {
    let text = format!(
        "{:?}",
        hook("https://h.example.com/", "very-secret-value", &[WebhookEvent::CloneCreate])
    );
    assert!(!text.contains("very-secret-value"), "{text}");
    assert!(text.contains("***"));
}
