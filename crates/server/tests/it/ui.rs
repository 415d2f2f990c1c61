//! The web UI in a real headless Chromium against the real server: `tests/ui/e2e.py` drives
//! it with Playwright (`scripts/setup` installs both) through sign-in, a clone's create,
//! connection with psql, reset, protection, a refused destroy, commit and a branch, and
//! writes a screenshot of each page to `<target>/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{TOKEN, TestServer, run_tool};

/// Where `scripts/setup` installs Playwright; `SCION_PLAYWRIGHT_PYTHON` overrides it.
const DEFAULT_PYTHON: &str = "/opt/scion/playwright/bin/python";

fn python() -> PathBuf {
    let path =
        std::env::var_os("SCION_PLAYWRIGHT_PYTHON").map_or(DEFAULT_PYTHON.into(), PathBuf::from);
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    path
}

/// The newest installed major's psql: the client a user would run.
fn psql() -> PathBuf {
    let newest = postgres::BinarySearch::default().installed().pop().expect("a Postgres install");
    newest.tool("psql").expect("psql beside the newest server")
}

#[tokio::test]
async fn the_web_ui_does_the_daily_tasks_in_a_real_browser() {
    let server = TestServer::start("").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/e2e.py");
    // Kept after the run: they are the test's artifacts (two of them are in docs/images/).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots");
    #[allow(clippy::disallowed_methods, reason = "the browser driver is an outside tool run as is")]
    let mut command = Command::new(python());
    command.arg(script).args([&server.url, TOKEN]).arg(psql()).arg(&shots);
    let (stdout, _) = run_tool(&server, "the browser test", command).await;
    println!("{stdout}");
}
