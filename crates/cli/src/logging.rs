//! Log lines on stderr for the long-running commands (the sidecars), filtered by `RUST_LOG`
//! (default `info`); the other commands print their results and log nothing.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger; a second call is a no-op.
pub(crate) fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
