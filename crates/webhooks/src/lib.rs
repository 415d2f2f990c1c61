//! Webhook delivery for Scion: DBLab's events and payloads, POSTed to configured receivers without ever slowing the
//! caller, signed, with a timeout per attempt, bounded retries with backoff, and a record of every delivery.
//!
//! # What a receiver gets
//!
//! One `POST` per event and matching hook, with a JSON [`WebhookPayload`](api_types::WebhookPayload) body and:
//!
//! * `Content-Type: application/json`;
//! * `DBLab-Webhook-Token: <secret>` when the hook has a secret (DBLab sends the same header, so existing
//!   receivers keep working);
//! * `Scion-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` when the hook has a secret.
//!   The timestamp is taken at each attempt, so a retry carries a fresh one. A receiver recomputes the HMAC over
//!   the decimal timestamp, a `.` and the raw body bytes, compares in constant time, and rejects timestamps too far
//!   from its clock (replay protection); [`verify_signature`] does exactly that. Unknown `key=value` pairs in the
//!   header are ignored and several `v1=` values may appear, so the scheme can evolve and secrets can rotate.
//!
//! # Delivery
//!
//! [`Dispatcher::emit`] serializes the event once and puts it on the bounded queue of every hook whose `trigger`
//! list has the event; it never blocks and never fails. A full queue drops the event for that hook, which is
//! counted and recorded. Each hook has its own worker, so a dead or hanging receiver delays only its own queue.
//! An attempt that times out, fails at the network level, or gets a 5xx or 429 answer is retried after an
//! exponential backoff with jitter (a 429's `Retry-After` is honoured up to the backoff cap), up to
//! `max_attempts`; other answers are final (2xx delivered, anything else failed; redirects are not followed).
//! Every attempt series ends in one [`DeliveryRecord`] handed to a [`DeliverySink`], and in the counters of
//! [`Dispatcher::metrics`]. [`Dispatcher::shutdown`] stops intake, lets the workers flush until a deadline, then
//! records what is left as dropped.
//!
//! Out of scope: persistence (the engine's sink writes records to SQLite) and redelivery after a restart.
#![warn(missing_docs)]

mod config;
mod dispatcher;
mod metrics;
mod record;
mod signature;

pub use config::{
    ConfigError, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_TIMEOUT, HookConfig, WebhooksConfig,
};
pub use dispatcher::{Dispatcher, ShutdownReport, StartError};
pub use metrics::{EventCounts, MetricsSnapshot};
pub use record::{DeliveryRecord, DeliverySink, DropReason, MemorySink, Outcome};
pub use signature::{
    DEFAULT_TOLERANCE, SIGNATURE_HEADER, SignatureError, TOKEN_HEADER, sign, signature_header,
    verify_signature,
};
