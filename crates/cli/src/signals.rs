//! Stopping the long-running commands on a signal: a cancellation token cancelled at the first
//! SIGINT or SIGTERM (and SIGHUP where asked), so their cleanup runs before they exit.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Cancels `stop` at the first SIGINT or SIGTERM, or SIGHUP when `hangup`; if the signals
/// cannot be watched, says so and leaves `stop` alone.
pub(crate) async fn stop_on_signal(stop: CancellationToken, hangup: bool) {
    let watched = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hang_up)) = watched else {
        warn!("failed to watch the signals; only SIGKILL stops this process");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        _ = hang_up.recv(), if hangup => {}
    }
    stop.cancel();
}
