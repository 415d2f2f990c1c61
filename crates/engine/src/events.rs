//! Where the engine's events go: DBLab's webhook payloads handed to an [`EventSink`].
//!
//! The engine only builds payloads; delivery (HTTP, signatures, retries) belongs to the
//! `webhooks` crate, which the server plugs in. A sink must return at once: emitting is on the
//! clone path.

use std::fmt;
use std::sync::Mutex;

use api_types::{LocalTime, WebhookEvent, WebhookPayload};
use chrono::{DateTime, Utc};

use crate::model::CloneRecord;

/// Receives the engine's events.
pub trait EventSink: Send + Sync + fmt::Debug {
    /// Takes one event; must not block.
    fn emit(&self, payload: &WebhookPayload);
}

/// A sink that drops every event, for engines without webhooks.
#[derive(Debug, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _payload: &WebhookPayload) {}
}

/// A sink that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct RecordedEvents {
    events: Mutex<Vec<WebhookPayload>>,
}

impl RecordedEvents {
    /// The events emitted so far.
    pub fn events(&self) -> Vec<WebhookPayload> {
        crate::sync::lock(&self.events).clone()
    }
}

impl EventSink for RecordedEvents {
    fn emit(&self, payload: &WebhookPayload) {
        crate::sync::lock(&self.events).push(payload.clone());
    }
}

/// The payload of a clone event, with the connection fields DBLab sends.
pub(crate) fn clone_payload(
    event: WebhookEvent,
    clone: &CloneRecord,
    access_host: &str,
) -> WebhookPayload {
    let mut payload = WebhookPayload::basic(event, clone.id.clone());
    payload.host = access_host.to_owned();
    payload.port = clone.port;
    payload.username = clone.username.clone();
    payload.dbname = clone.db_name.clone().unwrap_or_default();
    payload.container_name = clone.id.clone();
    payload
}

/// The payload of `clone_protection_expiring`.
pub(crate) fn expiring_payload(
    clone: &CloneRecord,
    access_host: &str,
    till: DateTime<Utc>,
    expires_in_hours: u32,
) -> WebhookPayload {
    let mut payload = clone_payload(WebhookEvent::CloneProtectionExpiring, clone, access_host);
    payload.protected_till = Some(LocalTime::from(till));
    payload.expires_in_hours = expires_in_hours;
    payload
}
