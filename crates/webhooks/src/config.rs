//! The `[webhooks]` configuration: DBLab's hook list plus Scion's delivery settings, and its validation.

use std::fmt;
use std::time::Duration;

use api_types::WebhookEvent;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Time allowed for one attempt, from connecting to receiving the response status.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per event and hook, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Backoff before the first retry; it doubles with each further retry.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest backoff between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Events waiting per hook before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The `[webhooks]` section.
///
/// ```toml
/// timeout = "10s"
/// max_attempts = 5
/// backoff_base = "500ms"
/// backoff_max = "30s"
/// queue_capacity = 1024
///
/// [[hooks]]
/// url = "https://hooks.example.com/dblab"
/// secret = "..."
/// trigger = ["clone_create", "clone_delete"]
/// ```
///
/// Durations are humantime strings (`"250ms"`, `"10s"`, `"1m"`). Unknown keys and unknown event names are
/// errors. A hook with an empty `trigger` list receives nothing, as in DBLab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The receivers.
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
    /// Time allowed for one attempt.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts per event and hook, the first one included (at least 1).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff before the first retry.
    #[serde(default = "default_backoff_base", with = "duration")]
    pub backoff_base: Duration,
    /// Longest backoff.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Events waiting per hook before new ones are dropped (at least 1).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            hooks: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_backoff_base() -> Duration {
    DEFAULT_BACKOFF_BASE
}
fn default_backoff_max() -> Duration {
    DEFAULT_BACKOFF_MAX
}
fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

/// One receiver (`[[webhooks.hooks]]`), as in DBLab's `webhooks.hooks`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Where to POST; `http` or `https` with a host.
    pub url: String,
    /// Sent as `DBLab-Webhook-Token` and used to sign; empty means neither.
    #[serde(default)]
    pub secret: String,
    /// The events this hook receives.
    #[serde(default)]
    pub trigger: Vec<WebhookEvent>,
}

impl fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret.is_empty() { "" } else { "***" };
        f.debug_struct("HookConfig")
            .field("url", &self.url)
            .field("secret", &secret)
            .field("trigger", &self.trigger)
            .finish()
    }
}

/// A configuration the dispatcher cannot run with. DBLab skips bad URLs silently; Scion refuses them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A hook URL does not parse.
    #[error("webhooks.hooks[{index}]: invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// Position in `hooks`.
        index: usize,
        /// The URL as configured.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A hook URL is not `http` or `https`, or has no host.
    #[error("webhooks.hooks[{index}]: url {url:?} must be http:// or https:// with a host")]
    UnsupportedUrl {
        /// Position in `hooks`.
        index: usize,
        /// The URL as configured.
        url: String,
    },
    /// `max_attempts` is 0.
    #[error("webhooks.max_attempts must be at least 1")]
    ZeroAttempts,
    /// `queue_capacity` is 0.
    #[error("webhooks.queue_capacity must be at least 1")]
    ZeroQueueCapacity,
    /// `timeout` is 0.
    #[error("webhooks.timeout must be greater than 0")]
    ZeroTimeout,
    /// `backoff_base` is larger than `backoff_max`.
    #[error("webhooks.backoff_base ({base:?}) is larger than webhooks.backoff_max ({max:?})")]
    BackoffBaseAboveMax {
        /// The configured base.
        base: Duration,
        /// The configured maximum.
        max: Duration,
    },
}

impl WebhooksConfig {
    /// Checks the settings and parses every hook URL, in hook order.
    pub fn validate(&self) -> Result<Vec<Url>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::ZeroQueueCapacity);
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.backoff_base > self.backoff_max {
            return Err(ConfigError::BackoffBaseAboveMax {
                base: self.backoff_base,
                max: self.backoff_max,
            });
        }
        self.hooks.iter().enumerate().map(|(index, hook)| parse_url(index, &hook.url)).collect()
    }
}

fn parse_url(index: usize, url: &str) -> Result<Url, ConfigError> {
    let parsed = Url::parse(url).map_err(|error| ConfigError::InvalidUrl {
        index,
        url: url.to_owned(),
        reason: error.to_string(),
    })?;
    let web = matches!(parsed.scheme(), "http" | "https");
    if !web || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::UnsupportedUrl { index, url: url.to_owned() });
    }
    Ok(parsed)
}

/// Humantime strings for durations (`"500ms"`, `"10s"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
