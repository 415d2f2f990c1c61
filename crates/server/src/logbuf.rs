//! The engine's log for `/instance/logs`: a tracing layer that formats every event as DBLab's
//! UI reads its lines (`YYYY/MM/DD HH:MM:SS [LEVEL] message key=value ...`), masks the secrets
//! it is told of, keeps the last [`KEPT_LINES`] and broadcasts each new one.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use http_api::LogSource;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines kept for a client that connects later.
pub(crate) const KEPT_LINES: usize = 1000;
/// Lines a slow client may fall behind before it is told some were skipped.
const CHANNEL_CAPACITY: usize = 1024;
/// Shorter values are never taken for secrets: masking them would mangle ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// The ring of recent lines and the channel of new ones; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LogRing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kept: Mutex<VecDeque<String>>,
    sender: broadcast::Sender<String>,
    secrets: RwLock<Vec<String>>,
}

impl Default for LogRing {
    fn default() -> Self {
        LogRing {
            inner: Arc::new(Inner {
                kept: Mutex::new(VecDeque::with_capacity(KEPT_LINES)),
                sender: broadcast::channel(CHANNEL_CAPACITY).0,
                secrets: RwLock::new(Vec::new()),
            }),
        }
    }
}

impl LogRing {
    fn kept(&self) -> MutexGuard<'_, VecDeque<String>> {
        // Whole pushes and pops only: a panic cannot leave the ring half-changed.
        self.inner.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The values to mask in every later line (the API token, webhook secrets, the source
    /// password); replaces the previous list.
    pub(crate) fn set_secrets(&self, secrets: impl IntoIterator<Item = String>) {
        let secrets = secrets.into_iter().filter(|secret| secret.len() >= MIN_SECRET_LEN).collect();
        *self.inner.secrets.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = secrets;
    }

    fn push(&self, mut line: String) {
        for secret in
            self.inner.secrets.read().unwrap_or_else(|poisoned| poisoned.into_inner()).iter()
        {
            if line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), crate::yaml::MASK);
            }
        }
        // Under the ring's lock, so a subscriber sees each line once: kept or sent.
        let mut kept = self.kept();
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.inner.sender.send(line);
    }
}

impl LogSource for LogRing {
    fn subscribe(&self) -> (Vec<String>, broadcast::Receiver<String>) {
        let kept = self.kept();
        (kept.iter().cloned().collect(), self.inner.sender.subscribe())
    }
}

/// DBLab's level names, which its UI filters on.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Writes an event's message first, then its other fields as `key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for LogRing {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let level = level_name(*event.metadata().level());
        let time = chrono::Utc::now().format("%Y/%m/%d %H:%M:%S");
        self.push(format!("{time} [{level}] {}{}", line.message, line.fields));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn lines_are_formatted_masked_kept_and_sent() {
        let ring = LogRing::default();
        ring.set_secrets(["hunter22".to_owned(), "ab".to_owned()]);
        let (before, mut receiver) = ring.subscribe();
        assert!(before.is_empty());
        let subscriber = tracing_subscriber::registry().with(ring.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(token = "hunter22", port = 5, "about ab and hunter22");
        });
        let line = receiver.try_recv().unwrap();
        assert!(line.ends_with(" [WARNING] about ab and **** token=\"****\" port=5"), "{line}");
        let (kept, _) = ring.subscribe();
        assert_eq!(kept, vec![line]);
    }
}
