//! `scion-server`: parse flags, load the configuration, start the engine and serve the API
//! until SIGINT or SIGTERM; SIGHUP reloads the configuration file. Clone servers keep running
//! across a restart of this process.

mod args;
mod config;
mod live;
mod logbuf;
mod projection;
mod wiring;
mod yaml;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::args::Args;
use crate::config::{Config, ProcessEnv};

/// How long shutdown waits for running operations and webhook deliveries.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args = Args::parse();
    // The log goes to stderr and, for `/instance/logs`, to a ring of recent lines.
    let log = logbuf::LogRing::default();
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(log.clone())
        .init();
    let config = match Config::load(&args, &ProcessEnv) {
        Ok(config) => config,
        Err(failure) => {
            error!("failed to {failure:#}");
            // 2: a configuration error, as for bad usage.
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        info!(?config.host, config.port, state_dir = %config.state_dir.display(), token = config.token.is_some(), "configuration is valid");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(failure) => {
            error!("failed to start the async runtime: {failure}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!("failed to {failure:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, args: Args, log: logbuf::LogRing) -> anyhow::Result<()> {
    let server = wiring::build(&config, args, log).await?;
    tokio::spawn(reload_on_hangup(server.live.clone()));
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("listen on {}:{}", config.host, config.port))?;
    info!(address = %listener.local_addr().context("read the listening address")?, "API listening");
    // hyper's own refusals (an oversized request line or header section) answer in JSON too.
    axum::serve(http_api::JsonRefusals(listener), server.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve the API")?;
    info!("shutting down; clone servers keep running");
    server.engine.shutdown(SHUTDOWN_DEADLINE).await;
    let report = server.dispatcher.shutdown(SHUTDOWN_DEADLINE).await;
    info!(?report, "stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        error!("failed to install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = interrupt.recv() => info!("SIGINT received"),
    }
}

/// Reloads the configuration file at every SIGHUP; a bad file leaves the running one.
async fn reload_on_hangup(live: std::sync::Arc<live::LiveConfig>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        error!(
            "failed to install the SIGHUP handler; the configuration reloads through the API only"
        );
        return;
    };
    while hangup.recv().await.is_some() {
        info!("SIGHUP received: reloading the configuration file");
        let live = live.clone();
        match tokio::task::spawn_blocking(move || live.reload_file()).await {
            Ok(Ok(restart_needed)) => info!(?restart_needed, "configuration reloaded"),
            Ok(Err(failure)) => {
                warn!("failed to {failure:#}; the running configuration stays");
            }
            Err(failure) => error!("the reload stopped: {failure}"),
        }
    }
}
