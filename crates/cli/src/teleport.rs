//! `scion teleport serve`, DBLab's Teleport sidecar: keeps Teleport `db` resources in step with
//! the engine's clones, from the `clone_create` / `clone_delete` webhooks and a reconciliation
//! pass every few minutes, through `tctl`. It does not proxy traffic, and unlike DBLab's it is
//! not reserved to a paid edition. Names and labels are DBLab's (`resources`), `tctl` is run
//! through `exec` (`tctl`), the receiver and the loop are `serve`.

mod resources;
mod serve;
mod tctl;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::commands::Failure;

/// `scion teleport …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TeleportCommand {
    /// Run the webhook sidecar that registers clones as Teleport databases (`tctl`), until
    /// SIGINT or SIGTERM. Point a webhook with a secret and the triggers clone_create and
    /// clone_delete at http://<listen-addr>/teleport-sync.
    Serve(ServeArgs),
}

/// DBLab's flags, plus `--reconcile-interval`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to receive webhooks (host:port); the engine must reach it.
    #[arg(long, default_value = "localhost:9876", value_name = "ADDR")]
    pub listen_addr: String,
    /// This engine's ID in resource names and labels (letters, digits, . _ : / @ -).
    #[arg(long, value_name = "ID")]
    pub environment_id: String,
    /// The Teleport proxy or auth address tctl connects to (tctl's --auth-server).
    #[arg(long, value_name = "ADDR")]
    pub teleport_proxy: String,
    /// tctl's identity file (from tbot or `tctl auth sign`).
    #[arg(long, value_name = "FILE")]
    pub teleport_identity: PathBuf,
    /// The tctl program.
    #[arg(long, default_value = "tctl", value_name = "PATH")]
    pub tctl_path: PathBuf,
    /// The engine's API, for the clone list and the API app's address.
    #[arg(long, default_value = "http://localhost:2345", value_name = "URL")]
    pub dblab_url: String,
    /// The API's verification token.
    #[arg(long, env = "DBLAB_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub dblab_token: String,
    /// The webhook's secret: the key of the Scion-Signature HMAC every request must carry.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub webhook_secret: String,
    /// An extra label on every resource, key=value (repeatable; TELEPORT_LABELS takes a
    /// comma-separated list). `environment` may be set; dblab, dblab_instance, clone_id and
    /// dblab_user may not.
    #[arg(
        long = "label",
        env = "TELEPORT_LABELS",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        value_parser = resources::parse_label
    )]
    pub labels: Vec<(String, String)>,
    /// How often to reconcile the clones with Teleport (Scion's flag; DBLab's is fixed at 5m).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,
}

/// Runs a `teleport` command.
pub(crate) async fn run(command: TeleportCommand) -> Result<(), Failure> {
    match command {
        TeleportCommand::Serve(args) => serve_command(args).await,
    }
}

async fn serve_command(args: ServeArgs) -> Result<(), Failure> {
    crate::logging::init();
    if args.webhook_secret.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!("the webhook secret must not be empty")));
    }
    if args.reconcile_interval.is_zero() {
        return Err(Failure::Usage(anyhow::anyhow!("--reconcile-interval must be positive")));
    }
    let labels = resources::custom_labels(args.labels).map_err(usage)?;
    let naming = resources::Naming::new(&args.environment_id, labels).map_err(usage)?;
    let fragment = resources::name_fragment(&args.environment_id);
    if fragment != args.environment_id {
        warn!(
            "environment ID {:?} is written {fragment:?} in resource names; the IDs of different \
             instances must stay distinct after that",
            args.environment_id
        );
    }
    let app = resources::app_name(&args.environment_id);
    let app_uri = if resources::is_valid_app_name(&app) {
        Some(args.dblab_url.clone())
    } else {
        warn!(
            "clones are registered, but not the API app: {app:?} is not a name Teleport accepts \
             for an app (lowercase letters, digits and -, at most 63)"
        );
        None
    };
    let api = api_client::Client::new(&args.dblab_url, Some(args.dblab_token))
        .map_err(|error| Failure::Usage(error.into()))?;
    // As DBLab's sidecar does: a wrong URL or token shows at once, not in every pass's log.
    api.status().await.map_err(|error| {
        Failure::Operation(anyhow::anyhow!(
            "cannot read the engine's status at {} (--dblab-url, --dblab-token): {error}",
            args.dblab_url
        ))
    })?;

    let tctl = tctl::Tctl::new(args.tctl_path, args.teleport_identity, args.teleport_proxy);
    let registrar = Arc::new(serve::Registrar::new(tctl, naming, app_uri));
    let stop = CancellationToken::new();
    tokio::spawn(crate::signals::stop_on_signal(stop.clone(), false));
    let reconciling = tokio::spawn(serve::reconcile_loop(
        Arc::clone(&registrar),
        api,
        args.reconcile_interval,
        stop.clone(),
    ));
    let served = serve::serve(
        &args.listen_addr,
        serve::router(registrar, args.webhook_secret),
        stop.clone(),
    )
    .await;
    stop.cancel();
    let _ = reconciling.await;
    served.map_err(Failure::Operation)
}

fn usage(message: String) -> Failure {
    Failure::Usage(anyhow::anyhow!(message))
}
