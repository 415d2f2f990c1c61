//! Crash points for crash-injection tests: with `SCION_FAILPOINT=<name>` in its environment the
//! process aborts when it reaches the point of that name, as a `kill -9` at that very step
//! would stop it. Without the variable a point costs one comparison.

use std::sync::OnceLock;

/// The environment variable that names the point to crash at.
const FAILPOINT_ENV: &str = "SCION_FAILPOINT";

/// Aborts the process if `name` is the configured crash point.
pub(crate) fn hit(name: &str) {
    static ACTIVE: OnceLock<Option<String>> = OnceLock::new();
    if ACTIVE.get_or_init(|| std::env::var(FAILPOINT_ENV).ok()).as_deref() == Some(name) {
        tracing::error!(failpoint = name, "crashing at the configured failpoint");
        std::process::abort();
    }
}
