//! `scion teleport serve`: the webhook receiver (`POST /teleport-sync`, Scion's signature
//! checked before anything else) and the reconciliation loop, both applying changes through
//! one [`Registrar`] that serializes every `tctl` call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api_client::Client;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::resources::{self, CloneEntry, Naming, Plan};
use super::tctl::{Removed, Tctl};

/// DBLab's limit on a webhook body.
const MAX_BODY: usize = 1 << 20;

/// Applies clone changes to Teleport. Its lock is held for a whole webhook or reconciliation
/// pass, so a pass never works from a clone list that a webhook has since made stale.
#[derive(Debug)]
pub(crate) struct Registrar {
    tctl: Tctl,
    naming: Naming,
    /// Where the API app points (`--dblab-url`); `None` when its name is not one Teleport
    /// accepts for an app.
    app_uri: Option<String>,
    lock: Mutex<()>,
}

/// What a reconciliation pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pass {
    Skipped(String),
    Applied { registered: usize, removed: usize, failed: usize },
}

impl Registrar {
    pub(crate) fn new(tctl: Tctl, naming: Naming, app_uri: Option<String>) -> Registrar {
        Registrar { tctl, naming, app_uri, lock: Mutex::new(()) }
    }

    async fn create_clone(&self, clone: &CloneEntry) -> anyhow::Result<String> {
        if Naming::owner_dropped(clone) {
            warn!(clone_id = %clone.id, owner = %clone.owner, "the clone's owner is not a valid label value; registering it without dblab_user");
        }
        let name = self.naming.clone_name(&clone.id, clone.port);
        self.tctl.create(&self.naming.db_document(clone)).await?;
        Ok(name)
    }

    /// Registers a clone (`clone_create`).
    pub(crate) async fn register(&self, clone: &CloneEntry) -> anyhow::Result<String> {
        let _guard = self.lock.lock().await;
        self.create_clone(clone).await
    }

    /// Removes a clone's resource (`clone_delete`).
    pub(crate) async fn remove(
        &self,
        clone_id: &str,
        port: u16,
    ) -> anyhow::Result<(String, Removed)> {
        let _guard = self.lock.lock().await;
        let name = self.naming.clone_name(clone_id, port);
        let removed = self.tctl.remove("db", &name).await?;
        Ok((name, removed))
    }

    /// One pass: the clone list against this instance's resources, then the API app.
    pub(crate) async fn reconcile(&self, api: &Client) -> Pass {
        let _guard = self.lock.lock().await;
        let clones = match api.clones().await {
            Ok(clones) => clones,
            Err(error) => return Pass::Skipped(format!("cannot list the clones: {error:#}")),
        };
        let registered = match self.tctl.databases().await {
            Ok(registered) => registered,
            Err(error) => return Pass::Skipped(format!("cannot list the db resources: {error:#}")),
        };
        let clones: Vec<CloneEntry> = clones.iter().filter_map(CloneEntry::from_api).collect();
        let (register, remove) = match resources::plan(&self.naming, &clones, &registered) {
            Plan::SkipEmptyCloneList { registered } => {
                return Pass::Skipped(format!(
                    "the API listed no clones while {registered} db resources of this instance \
                     are registered; not removing them"
                ));
            }
            Plan::Apply { register, remove } => (register, remove),
        };
        let mut failed = 0;
        for clone in &register {
            match self.create_clone(clone).await {
                Ok(name) => info!(%name, clone_id = %clone.id, "reconcile: registered"),
                Err(error) => {
                    failed += 1;
                    error!("reconcile: failed to {error:#}");
                }
            }
        }
        for name in &remove {
            match self.tctl.remove("db", name).await {
                Ok(_) => info!(%name, "reconcile: removed"),
                Err(error) => {
                    failed += 1;
                    error!("reconcile: failed to {error:#}");
                }
            }
        }
        if let Err(error) = self.ensure_app().await {
            failed += 1;
            error!("reconcile: failed to {error:#}");
        }
        Pass::Applied { registered: register.len(), removed: remove.len(), failed }
    }

    async fn ensure_app(&self) -> anyhow::Result<()> {
        let Some(uri) = &self.app_uri else { return Ok(()) };
        let name = resources::app_name(self.naming.environment());
        if !self.tctl.exists("app", &name).await? {
            self.tctl.create(&self.naming.app_document(uri)).await?;
            info!(%name, "reconcile: registered the API app");
        }
        Ok(())
    }
}

/// What the handler reads of a webhook body; other fields and unknown events are ignored.
#[derive(Debug, Deserialize)]
struct Payload {
    event_type: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    owner_user: String,
}

#[derive(Debug)]
struct Service {
    registrar: Arc<Registrar>,
    secret: String,
}

/// The sidecar's HTTP routes: `POST /teleport-sync` (other methods 405).
pub(crate) fn router(registrar: Arc<Registrar>, secret: String) -> Router {
    Router::new()
        .route("/teleport-sync", post(teleport_sync))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Service { registrar, secret }))
}

async fn teleport_sync(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(signature) =
        headers.get(webhooks::SIGNATURE_HEADER).and_then(|value| value.to_str().ok())
    else {
        warn!("webhook: no {} header", webhooks::SIGNATURE_HEADER);
        return (StatusCode::UNAUTHORIZED, "unauthorized\n".to_owned());
    };
    let now = chrono::Utc::now();
    if let Err(error) = webhooks::verify_signature(
        &service.secret,
        signature,
        &body,
        now,
        webhooks::DEFAULT_TOLERANCE,
    ) {
        warn!("webhook: refused: {error}");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n".to_owned());
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(error) => {
            warn!("webhook: not a webhook payload: {error}");
            return (StatusCode::BAD_REQUEST, format!("bad request: {error}\n"));
        }
    };
    let event = payload.event_type.as_str();
    if !matches!(event, "clone_create" | "clone_delete") {
        return (StatusCode::OK, "ignored\n".to_owned());
    }
    // A payload that can never name a resource is not worth a retry: 400, not DBLab's 500.
    if payload.entity_id.is_empty() || payload.port == 0 {
        warn!(event, "webhook: no entity_id or port");
        return (
            StatusCode::BAD_REQUEST,
            "bad request: entity_id and port are required\n".to_owned(),
        );
    }
    // On a task of its own: a sender that hangs up must not cancel tctl halfway.
    let registrar = Arc::clone(&service.registrar);
    let create = event == "clone_create";
    let work = tokio::spawn(async move {
        if create {
            let clone =
                CloneEntry { id: payload.entity_id, port: payload.port, owner: payload.owner_user };
            registrar.register(&clone).await.map(|name| format!("registered {name}"))
        } else {
            registrar.remove(&payload.entity_id, payload.port).await.map(|(name, removed)| {
                match removed {
                    Removed::Deleted => format!("removed {name}"),
                    Removed::Absent => format!("{name} was not registered"),
                }
            })
        }
    });
    match work.await {
        Ok(Ok(done)) => {
            info!(event, "webhook: {done}");
            (StatusCode::OK, format!("{done}\n"))
        }
        Ok(Err(failure)) => {
            error!(event, "webhook: failed to {failure:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".to_owned())
        }
        Err(join) => {
            error!(event, "webhook: the work stopped: {join}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".to_owned())
        }
    }
}

/// Runs reconciliation passes, the first at once, until `stop`.
pub(crate) async fn reconcile_loop(
    registrar: Arc<Registrar>,
    api: Client,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        match registrar.reconcile(&api).await {
            Pass::Skipped(why) => warn!("reconcile: pass skipped: {why}"),
            Pass::Applied { registered, removed, failed } => {
                info!(registered, removed, failed, "reconcile: pass done");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Serves until SIGINT or SIGTERM, then lets requests in flight finish.
pub(crate) async fn serve(
    listen: &str,
    app: Router,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let address: SocketAddr = listener.local_addr().context("read the listening address")?;
    info!(%address, "teleport sidecar listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("serve webhooks")
}
