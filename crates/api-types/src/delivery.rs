//! The record of delivering one webhook event to one receiver, shared by the `webhooks` crate
//! (which makes it) and the engine's store (which keeps it).
//!
//! It lives here, not in `webhooks`, because the engine must not link the webhook dispatcher:
//! the engine sees only its `EventSink`, the server joins the two, and this crate is the one both
//! already depend on. It never crosses the wire.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::WebhookEvent;

/// How an attempt series ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered a final error, or every attempt failed.
    Failed,
    /// The event was never delivered because Scion gave up on it without exhausting attempts.
    Dropped(DropReason),
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The hook's queue was full when the event was emitted.
    QueueFull,
    /// The dispatcher was shutting down (the event was emitted after shutdown began, or was
    /// still queued or in flight at the shutdown deadline).
    ShuttingDown,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Self; 4] = [
        Self::Delivered,
        Self::Failed,
        Self::Dropped(DropReason::QueueFull),
        Self::Dropped(DropReason::ShuttingDown),
    ];

    /// A short name for logs, metrics labels and database columns.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped(DropReason::QueueFull) => "dropped_queue_full",
            Self::Dropped(DropReason::ShuttingDown) => "dropped_shutdown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of [`Outcome::as_str`]'s names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOutcome(pub String);

impl fmt::Display for UnknownOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown delivery outcome {:?}", self.0)
    }
}

impl std::error::Error for UnknownOutcome {}

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(text: &str) -> Result<Self, UnknownOutcome> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| UnknownOutcome(text.to_owned()))
    }
}

/// The record of delivering one event to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The event type.
    pub event: WebhookEvent,
    /// The payload's `entity_id` (clone ID, snapshot ID or branch name).
    pub entity_id: String,
    /// The hook's URL.
    pub hook_url: String,
    /// Attempts made (0 when dropped before the first).
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status of the last answer, if any.
    pub last_status: Option<u16>,
    /// Error of the last attempt (timeout, connection error, or the non-2xx status), if any.
    pub last_error: Option<String>,
    /// When `emit` was called.
    pub emitted_at: DateTime<Utc>,
    /// When the first attempt started.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When the series ended.
    pub finished_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_from_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert_eq!("lost".parse::<Outcome>(), Err(UnknownOutcome("lost".to_owned())));
    }
}
