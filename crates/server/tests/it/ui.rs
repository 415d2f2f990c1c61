//! The web UI in a real headless Chromium against the real server: `tests/ui/e2e.py` drives
//! it with Playwright (`scripts/setup` installs both), and writes a screenshot of each page to
//! `<target>/ui-screenshots/`. Two scenarios: the daily tasks on a server without retrieval
//! (sign-in, the instance's warm pool and a failed webhook delivery, a clone's create with
//! limits, psql through the copied string, observation, stop and start, reset, protection, a
//! refused destroy, commit, a branch, the configuration changed), and physical mode (a snapshot
//! at a WAL location, a full refresh watched to its end, the configuration locked) and logical
//! mode (a full refresh with its databases, the retrieval's settings changed and refused).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::primary::{Primary, REPLICATOR};

use crate::harness::{Receiver, SOURCE_PASSWORD, SOURCE_PASSWORD_ENV, TOKEN, TestServer, run_tool};

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

/// Runs `e2e.py` against `server` with the scenario and its arguments; returns its output.
async fn browse(server: &TestServer, scenario: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/e2e.py");
    // Kept after the run: they are the test's artifacts (two of them are in docs/images/).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots");
    #[allow(clippy::disallowed_methods, reason = "the browser driver is an outside tool run as is")]
    let mut command = Command::new(python());
    command.arg(script).args([&server.url, TOKEN]).arg(psql()).arg(&shots).args(scenario);
    run_tool(server, "the browser test", command).await.0
}

#[tokio::test]
async fn the_web_ui_does_the_daily_tasks_in_a_real_browser() {
    let receiver = Receiver::start("ui-secret").await;
    // A hook nobody listens on: its deliveries fail at once, and its path looks like a secret
    // the page must not show.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start(&format!(
        "warm_pool_size = 1\n\n\
         [webhooks]\ntimeout = \"2s\"\nmax_attempts = 1\n\
         [[webhooks.hooks]]\nurl = \"http://{dead}/secret-path\"\ntrigger = [\"clone_create\"]\n\
         [[webhooks.hooks]]\nurl = \"{}\"\nsecret = \"ui-secret\"\ntrigger = [\"clone_create\"]\n",
        receiver.url
    ))
    .await;
    println!("{}", browse(&server, &["daily"]).await);
}

#[tokio::test]
async fn the_web_ui_in_physical_mode_snapshots_a_point_in_time_and_refreshes() {
    let (source, archive) = Primary::start_archiving_into_temp(16).await;
    source.require_password(SOURCE_PASSWORD).await;
    source.insert("before the copy").await;
    let server = TestServer::start(&format!(
        "[retrieval]\n[retrieval.source]\nhost = \"127.0.0.1\"\nport = {port}\n\
         username = \"{REPLICATOR}\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\
         [retrieval.physical]\ntool = \"pg_basebackup\"\nslot = \"scion_ui\"\n\
         restore_command = \"cp {archive}/%f %p\"\nrestore_dirs = [\"{archive}\"]\n\
         [retrieval.physical.sync]\nenabled = true\nhealth_interval = \"300ms\"\n",
        port = source.port,
        archive = archive.path().display(),
    ))
    .await;
    // A commit after the first snapshot, archived and replayed: the LSN before it is a moment
    // of the WAL window the page can reach.
    wait_for(&server, "the first snapshot and its WAL window", |_, retrieval| {
        retrieval["walWindow"]["oldest"]["lsn"].is_string()
    })
    .await;
    // Changes through the API off, for the configuration page to say so.
    server.disable_config_modification(1).await;
    let lsn = source.current_lsn().await;
    source.insert("after the first snapshot").await;
    source.archive_current_segment().await;
    let (_, retrieval) = server.get("/instance/retrieval").await;
    let oldest = retrieval["walWindow"]["oldest"]["at"].clone();
    wait_for(&server, "the commit replayed", |status, _| {
        status["synchronization"]["lastReplayedLsnAt"].as_str() > oldest.as_str()
    })
    .await;
    println!("{}", browse(&server, &["physical", &lsn]).await);
}

#[tokio::test]
async fn the_web_ui_in_logical_mode_refreshes_and_edits_the_retrieval() {
    let source = crate::refresh::Source::start().await;
    let server = TestServer::start(&source.config()).await;
    wait_for(&server, "the first refresh", |_, retrieval| retrieval["status"] == "finished").await;
    println!("{}", browse(&server, &["logical"]).await);
}

/// Waits until `done` holds for `/status` and `/instance/retrieval`.
async fn wait_for(
    server: &TestServer,
    what: &str,
    done: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, status) = server.get("/status").await;
        let (_, retrieval) = server.get("/instance/retrieval").await;
        assert_ne!(retrieval["status"], "failed", "{retrieval}\n{}", server.log());
        if done(&status, &retrieval) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {retrieval}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
