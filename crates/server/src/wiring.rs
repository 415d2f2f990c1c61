//! Builds the running server from a [`Config`]: the pool (embedded or configured), the engine,
//! webhook delivery with its records in the state database, and the HTTP API with the web UI.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::Context;
use api_types::WebhookPayload;
use engine::{Engine, EngineDeps, EventSink, Pool};
use http_api::{AppState, MetricsSource, Token};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use storage::provision::{ImageFs, ImagePool};
use storage::{BackendConfig, StorageBackend};
use tokio::sync::mpsc;
use tracing::{info, warn};
use webhooks::{DeliveryRecord, DeliverySink, Dispatcher};

use crate::args::Args;
use crate::config::Config;
use crate::live::LiveConfig;
use crate::logbuf::LogRing;

/// Delivery records waiting to be written; beyond this they are logged and dropped rather than
/// slowing delivery.
const DELIVERY_RECORD_QUEUE: usize = 4096;

/// The parts of a running server.
#[derive(Debug)]
pub(crate) struct Server {
    /// The engine.
    pub engine: Engine,
    /// Webhook delivery.
    pub dispatcher: Arc<Dispatcher>,
    /// The HTTP API.
    pub router: axum::Router,
    /// The configuration, reloadable.
    pub live: Arc<LiveConfig>,
}

/// Makes the state directory, opens or creates the pool, and starts everything.
pub(crate) async fn build(config: &Config, args: Args, log: LogRing) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create state directory {}", config.state_dir.display()))?;
    // The Postgres user must reach clone sockets and data under it, but nobody else may list
    // or read what is there (the store, the pool image, logs).
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("set permissions of {}", config.state_dir.display()))?;
    let backend = open_pool(config).await?;
    let pool =
        Pool::new(&config.pool_name, backend).context("open pool")?.with_min_free(config.min_free);

    let (records, record_rx) = mpsc::channel(DELIVERY_RECORD_QUEUE);
    let dispatcher = Arc::new(
        Dispatcher::start(&config.webhooks, Arc::new(StoreSink { records }))
            .context("start webhook delivery")?,
    );
    let events = Arc::new(WebhookEvents { dispatcher: dispatcher.clone() });
    let engine = Engine::start(
        config.engine.clone(),
        EngineDeps {
            pool,
            state_dir: config.state_dir.join("engine"),
            events,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
    .await
    .context("start engine")?;
    tokio::spawn(write_delivery_records(engine.clone(), record_rx));

    let token = config.token.clone().and_then(Token::new);
    if token.is_none() {
        warn!(
            "no verification token is set: the API accepts every request (set SCION_VERIFICATION_TOKEN)"
        );
    }
    let live = Arc::new(LiveConfig::new(args, engine.clone(), log.clone(), config.clone()));
    // The web UI's files sit beside the API on its port; they are served without a token and
    // reach the engine only through the API, from the browser.
    let router = http_api::router(AppState {
        engine: engine.clone(),
        token,
        metrics: vec![Arc::new(WebhookMetrics { dispatcher: dispatcher.clone() })],
        config: Some(live.clone()),
        logs: Some(Arc::new(log)),
        ws_tokens: http_api::WsTokens::default(),
    })
    .merge(ui::router());
    Ok(Server { engine, dispatcher, router, live })
}

/// The configured pool, or the embedded default: a btrfs image under the state directory
/// when running as root, else a plain directory (not thin, and said so).
async fn open_pool(config: &Config) -> anyhow::Result<StorageBackend> {
    let backend = match &config.backend {
        Some(backend) => backend.clone(),
        None if nix::unistd::Uid::effective().is_root() => {
            let image = ImagePool::new(
                config.state_dir.join("pool.img"),
                config.image_size,
                ImageFs::Btrfs,
                config.state_dir.join("pool"),
            )
            .with_flush(config.image_flush);
            if !config.image_flush {
                warn!(
                    "pool.image_flush = false: the embedded pool skips disk flushes; a host crash or power loss can corrupt it"
                );
            }
            image.ensure().await.context("provision the embedded btrfs pool")?;
            std::fs::set_permissions(&image.mountpoint, std::fs::Permissions::from_mode(0o755))
                .context("set permissions of the pool")?;
            info!(image = %image.image.display(), mountpoint = %image.mountpoint.display(), "embedded btrfs pool ready");
            image.backend_config()
        }
        None => {
            let root = config.state_dir.join("pool");
            std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
            warn!(root = %root.display(), "not running as root: using a plain directory pool; clones are full copies unless the filesystem supports reflinks");
            BackendConfig::Dir { root }
        }
    };
    let storage = StorageBackend::open(&backend).await.context("open the pool")?;
    let capabilities = storage::ThinStorage::capabilities(&storage);
    if !capabilities.thin {
        warn!(
            "the pool makes full copies (thin: false): clones cost time and space in proportion to the data"
        );
    }
    Ok(storage)
}

/// Hands the engine's events to the webhook dispatcher, which never blocks.
#[derive(Debug)]
struct WebhookEvents {
    dispatcher: Arc<Dispatcher>,
}

impl EventSink for WebhookEvents {
    fn emit(&self, payload: &WebhookPayload) {
        self.dispatcher.emit(payload);
    }
}

/// Passes delivery records to a writer task, so a slow disk never slows delivery.
struct StoreSink {
    records: mpsc::Sender<DeliveryRecord>,
}

impl DeliverySink for StoreSink {
    fn record(&self, record: DeliveryRecord) {
        if let Err(error) = self.records.try_send(record) {
            warn!(error = %error, "dropping a webhook delivery record: the writer is behind");
        }
    }
}

async fn write_delivery_records(engine: Engine, mut records: mpsc::Receiver<DeliveryRecord>) {
    while let Some(record) = records.recv().await {
        let engine = engine.clone();
        // SQLite writes block; keep them off the async workers.
        let _ = tokio::task::spawn_blocking(move || engine.record_delivery(&record)).await;
    }
}

/// `scion_webhook_deliveries_total{event, outcome}` from the dispatcher's counters.
#[derive(Debug)]
struct WebhookMetrics {
    dispatcher: Arc<Dispatcher>,
}

impl MetricsSource for WebhookMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(WebhookCounts(self.dispatcher.metrics())));
    }
}

#[derive(Debug)]
struct WebhookCounts(webhooks::MetricsSnapshot);

impl prometheus_client::collector::Collector for WebhookCounts {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut family = encoder.encode_descriptor(
            "scion_webhook_deliveries",
            "Webhook deliveries by event and outcome; retried counts attempts beyond the first",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for event in api_types::WebhookEvent::ALL {
            let counts = self.0.get(event);
            for (outcome, value) in [
                ("delivered", counts.delivered),
                ("failed", counts.failed),
                ("retried", counts.retried),
                ("dropped", counts.dropped),
            ] {
                let labels = [("event", event.as_str()), ("outcome", outcome)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
