//! Command-line flags: where the configuration is and the few values worth overriding per run.
//! Secrets are deliberately not flags (they would show in `ps`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// Scion's engine: thin, writable PostgreSQL clones in milliseconds, with a DBLab-compatible API.
#[derive(Debug, Clone, Parser)]
#[command(name = "scion-server", version)]
pub(crate) struct Args {
    /// The configuration file (TOML); also `SCION_CONFIG`.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The address the API listens on (overrides `[server] host` and `SCION_HOST`).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// The API port (overrides `[server] port` and `SCION_PORT`).
    #[arg(long)]
    pub port: Option<u16>,
    /// The state directory (overrides `[server] state_dir` and `SCION_STATE_DIR`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Check the configuration, print the effective one (secrets hidden) and exit.
    #[arg(long)]
    pub check_config: bool,
}
