//! The dispatcher: per-hook bounded queues and workers, the attempt loop, backoff and shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use api_types::{WebhookEvent, WebhookPayload};
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::MetricsSnapshot;
use crate::config::{ConfigError, WebhooksConfig};
use crate::metrics::{Count, Counters};
use crate::record::{DeliveryRecord, DeliverySink, DropReason, Outcome};
use crate::signature::{SIGNATURE_HEADER, TOKEN_HEADER, signature_header};

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("build the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// What [`Dispatcher::shutdown`] managed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every queued delivery finished (delivered or failed) before the deadline.
    pub drained: bool,
    /// Deliveries recorded as dropped because of the shutdown: still queued or in flight at the deadline, or
    /// emitted after the shutdown began.
    pub abandoned: u64,
}

/// One queued delivery of an event to a hook.
#[derive(Debug)]
struct Job {
    event: WebhookEvent,
    entity_id: Arc<str>,
    body: Arc<str>,
    emitted_at: DateTime<Utc>,
}

/// What `emit` needs to know about a hook.
#[derive(Debug)]
struct HookEntry {
    url: Url,
    triggers: [bool; WebhookEvent::ALL.len()],
    /// `None` once shutdown has begun: the queue is closed to new events.
    queue: RwLock<Option<mpsc::Sender<Job>>>,
}

/// The settings one worker needs.
#[derive(Debug)]
struct Worker {
    url: Url,
    secret: String,
    client: Client,
    timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

/// State shared by `emit` and the workers.
struct Shared {
    counters: Counters,
    sink: Arc<dyn DeliverySink>,
    abandoned: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl Shared {
    fn drop_job(&self, job: &Job, url: &Url, reason: DropReason, attempts: u32, last: LastAttempt) {
        self.counters.add(job.event, Count::Dropped);
        if reason == DropReason::ShuttingDown {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(job, url, attempts, Outcome::Dropped(reason), last);
    }

    fn finish(&self, job: &Job, url: &Url, attempts: u32, outcome: Outcome, last: LastAttempt) {
        debug!(event = %job.event, entity = %job.entity_id, hook = %url, attempts, outcome = outcome.as_str(),
               "webhook delivery finished");
        self.sink.record(DeliveryRecord {
            event: job.event,
            entity_id: job.entity_id.to_string(),
            hook_url: url.to_string(),
            attempts,
            outcome,
            last_status: last.status,
            last_error: last.error,
            emitted_at: job.emitted_at,
            first_attempt_at: last.first_attempt_at,
            finished_at: Utc::now(),
        });
    }
}

/// What the last attempt left behind, for the record.
#[derive(Debug, Default)]
struct LastAttempt {
    status: Option<u16>,
    error: Option<String>,
    first_attempt_at: Option<DateTime<Utc>>,
}

/// The result of one attempt.
#[derive(Debug)]
enum Attempt {
    Delivered(u16),
    /// A final error answer: retrying would not help.
    Rejected(u16),
    /// A timeout, a network error, a 5xx or a 429.
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Delivers webhook events to the configured hooks in the background. See the crate docs.
///
/// Call [`shutdown`](Self::shutdown) before dropping it: dropping stops the workers at once, and what is still
/// queued is recorded as dropped.
#[derive(Debug)]
pub struct Dispatcher {
    hooks: Vec<HookEntry>,
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    cancel: CancellationToken,
}

impl Dispatcher {
    /// Validates the configuration and starts one worker per hook on the current Tokio runtime.
    pub fn start(config: &WebhooksConfig, sink: Arc<dyn DeliverySink>) -> Result<Self, StartError> {
        let urls = config.validate()?;
        let client = Client::builder()
            .user_agent(concat!("scion-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(StartError::HttpClient)?;
        let shared =
            Arc::new(Shared { counters: Counters::default(), sink, abandoned: AtomicU64::new(0) });
        let cancel = CancellationToken::new();
        let mut hooks = Vec::with_capacity(urls.len());
        let mut workers = Vec::with_capacity(urls.len());
        for (hook, url) in config.hooks.iter().zip(urls) {
            let (sender, receiver) = mpsc::channel(config.queue_capacity);
            let mut triggers = [false; WebhookEvent::ALL.len()];
            for event in &hook.trigger {
                triggers[event.index()] = true;
            }
            let worker = Worker {
                url: url.clone(),
                secret: hook.secret.clone(),
                client: client.clone(),
                timeout: config.timeout,
                max_attempts: config.max_attempts,
                backoff_base: config.backoff_base,
                backoff_max: config.backoff_max,
                shared: Arc::clone(&shared),
                cancel: cancel.clone(),
            };
            workers.push(tokio::spawn(worker.run(receiver)));
            hooks.push(HookEntry { url, triggers, queue: RwLock::new(Some(sender)) });
        }
        Ok(Self { hooks, shared, workers: Mutex::new(workers), cancel })
    }

    /// Queues `payload` for every hook whose trigger list has its event. Never blocks, never fails: an event that
    /// does not fit in a hook's queue (or arrives after shutdown began) is recorded as dropped.
    pub fn emit(&self, payload: &WebhookPayload) {
        let event = payload.event_type;
        let targets = self.hooks.iter().filter(|hook| hook.triggers[event.index()]);
        let mut targets = targets.peekable();
        if targets.peek().is_none() {
            return;
        }
        let body: Arc<str> = match serde_json::to_string(payload) {
            Ok(body) => body.into(),
            Err(error) => {
                warn!(%event, %error, "cannot serialize webhook payload; event not sent");
                return;
            }
        };
        let entity_id: Arc<str> = payload.entity_id.as_str().into();
        let emitted_at = Utc::now();
        for hook in targets {
            let job = Job {
                event,
                entity_id: Arc::clone(&entity_id),
                body: Arc::clone(&body),
                emitted_at,
            };
            let queue = hook.queue.read().unwrap_or_else(PoisonError::into_inner);
            let rejected = match queue.as_ref() {
                Some(sender) => match sender.try_send(job) {
                    Ok(()) => None,
                    Err(TrySendError::Full(job)) => Some((job, DropReason::QueueFull)),
                    Err(TrySendError::Closed(job)) => Some((job, DropReason::ShuttingDown)),
                },
                None => Some((job, DropReason::ShuttingDown)),
            };
            drop(queue);
            if let Some((job, reason)) = rejected {
                warn!(%event, entity = %job.entity_id, hook = %hook.url, ?reason, "webhook event dropped");
                self.shared.drop_job(&job, &hook.url, reason, 0, LastAttempt::default());
            }
        }
    }

    /// The delivery counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.counters.snapshot()
    }

    /// Stops accepting events, lets the workers deliver what is queued (with retries) until `deadline` has
    /// passed, then abandons the rest, recording it as dropped. Later calls return at once.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        for hook in &self.hooks {
            // Dropping the sender closes the queue: the worker drains it and exits.
            hook.queue.write().unwrap_or_else(PoisonError::into_inner).take();
        }
        let workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        let all = join_workers(workers);
        tokio::pin!(all);
        let drained = tokio::time::timeout(deadline, all.as_mut()).await.is_ok();
        if !drained {
            self.cancel.cancel();
            all.await;
        }
        ShutdownReport { drained, abandoned: self.shared.abandoned.load(Ordering::Relaxed) }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Without a shutdown, workers would keep delivering what is queued; a dropped dispatcher stops them.
        self.cancel.cancel();
    }
}

/// Waits for every worker; a worker that panicked is logged, not propagated.
async fn join_workers(workers: Vec<JoinHandle<()>>) {
    for worker in workers {
        if let Err(error) = worker.await {
            warn!(%error, "webhook worker ended abnormally");
        }
    }
}

impl Worker {
    async fn run(self, mut queue: mpsc::Receiver<Job>) {
        loop {
            let job = tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            self.deliver(&job).await;
        }
        queue.close();
        while let Ok(job) = queue.try_recv() {
            self.shared.drop_job(
                &job,
                &self.url,
                DropReason::ShuttingDown,
                0,
                LastAttempt::default(),
            );
        }
    }

    async fn deliver(&self, job: &Job) {
        let mut last = LastAttempt { first_attempt_at: Some(Utc::now()), ..LastAttempt::default() };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = tokio::select! {
                () = self.cancel.cancelled() => {
                    last.error = Some("shutdown deadline passed during the attempt".to_owned());
                    self.shared.drop_job(job, &self.url, DropReason::ShuttingDown, attempts, last);
                    return;
                }
                attempt = self.attempt(job) => attempt,
            };
            let retry_after = match attempt {
                Attempt::Delivered(status) => {
                    last.status = Some(status);
                    last.error = None;
                    self.shared.counters.add(job.event, Count::Delivered);
                    self.shared.finish(job, &self.url, attempts, Outcome::Delivered, last);
                    return;
                }
                Attempt::Rejected(status) => {
                    last.status = Some(status);
                    last.error = Some(format!("receiver answered {status}"));
                    self.fail(job, attempts, last);
                    return;
                }
                Attempt::Retryable { status, error, retry_after } => {
                    last.status = status;
                    last.error = Some(error);
                    retry_after
                }
            };
            if attempts >= self.max_attempts {
                self.fail(job, attempts, last);
                return;
            }
            self.shared.counters.add(job.event, Count::Retried);
            let delay = backoff(self.backoff_base, self.backoff_max, attempts, retry_after);
            debug!(event = %job.event, hook = %self.url, attempts, ?delay, error = ?last.error, "webhook retry");
            tokio::select! {
                () = self.cancel.cancelled() => {
                    self.shared.drop_job(job, &self.url, DropReason::ShuttingDown, attempts, last);
                    return;
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn fail(&self, job: &Job, attempts: u32, last: LastAttempt) {
        warn!(event = %job.event, entity = %job.entity_id, hook = %self.url, attempts, status = ?last.status,
              error = ?last.error, "webhook delivery failed");
        self.shared.counters.add(job.event, Count::Failed);
        self.shared.finish(job, &self.url, attempts, Outcome::Failed, last);
    }

    async fn attempt(&self, job: &Job) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(job.body.to_string());
        if !self.secret.is_empty() {
            let signature =
                signature_header(&self.secret, Utc::now().timestamp(), job.body.as_bytes());
            request =
                request.header(TOKEN_HEADER, &self.secret).header(SIGNATURE_HEADER, signature);
        }
        match request.send().await {
            Ok(response) => classify(response.status(), response.headers().get(RETRY_AFTER)),
            Err(error) => {
                Attempt::Retryable { status: None, error: describe(&error), retry_after: None }
            }
        }
    }
}

fn classify(status: StatusCode, retry_after: Option<&HeaderValue>) -> Attempt {
    let code = status.as_u16();
    if status.is_success() {
        Attempt::Delivered(code)
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = retry_after
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Attempt::Retryable {
            status: Some(code),
            error: format!("receiver answered {status}"),
            retry_after,
        }
    } else {
        Attempt::Rejected(code)
    }
}

/// The error with its causes, so "connection refused" or "timed out" is visible in the record.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out: ".to_owned() } else { String::new() };
    text.push_str(&error.to_string());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Delay before the retry that follows failed attempt number `attempt` (1-based): exponential from `base`,
/// capped at `max`, with "equal jitter" (half fixed, half random) so receivers that come back are not hit by every
/// sender at once. A `Retry-After` from the receiver raises the delay, never above `max`.
fn backoff(base: Duration, max: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let exponential = base.saturating_mul(1 << exponent).min(max);
    let half = exponential / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos));
    let delay = half + jitter;
    match retry_after {
        Some(asked) => delay.max(asked.min(max)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_chain_prints_each_cause_once() {
        // A header value with a newline makes the client builder fail.
        let cause = Client::builder().user_agent("bad\nagent").build().unwrap_err();
        let causes: Vec<String> =
            std::iter::successors(Some(&cause as &(dyn std::error::Error + 'static)), |error| {
                error.source()
            })
            .map(ToString::to_string)
            .collect();
        let chain = format!("{:#}", anyhow::Error::new(StartError::HttpClient(cause)));
        assert_eq!(chain, format!("build the webhook HTTP client: {}", causes.join(": ")));
        for cause in &causes {
            assert_eq!(chain.matches(cause.as_str()).count(), 1, "{cause:?} in {chain:?}");
        }
    }
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for (attempt, nominal) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            let nominal = Duration::from_millis(nominal);
            for _ in 0..50 {
                let delay = backoff(base, max, attempt, None);
                assert!(delay >= nominal / 2 && delay <= nominal, "attempt {attempt}: {delay:?}");
            }
        }
    }

    #[test]
    fn retry_after_raises_the_delay_up_to_the_cap() {
        let base = Duration::from_millis(10);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(base, max, 1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(backoff(base, max, 1, Some(Duration::from_secs(3600))), max);
    }

    #[test]
    fn classification() {
        assert!(matches!(classify(StatusCode::OK, None), Attempt::Delivered(200)));
        assert!(matches!(classify(StatusCode::NO_CONTENT, None), Attempt::Delivered(204)));
        assert!(matches!(classify(StatusCode::BAD_REQUEST, None), Attempt::Rejected(400)));
        assert!(matches!(classify(StatusCode::NOT_FOUND, None), Attempt::Rejected(404)));
        assert!(matches!(classify(StatusCode::FOUND, None), Attempt::Rejected(302)));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None),
            Attempt::Retryable { status: Some(503), retry_after: None, .. }
        ));
        let after = HeaderValue::from_static("7");
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(&after)),
            Attempt::Retryable { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }
}
