//! `tctl`, Teleport's admin tool, run through `exec` with the sidecar's identity file and auth
//! server: create or overwrite a resource from a document on stdin, remove one, list `db`
//! resources, and ask whether a resource exists. It knows no names or labels.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use exec::{Cmd, ExecError};
use serde_json::Value;

use super::resources::Registered;

/// Longest a `tctl` call may take: one that hangs must not hold the sidecar's lock forever.
const TCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run `tctl`.
#[derive(Debug, Clone)]
pub(crate) struct Tctl {
    program: PathBuf,
    identity: PathBuf,
    auth_server: String,
}

/// What `tctl rm` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// The resource was there and is gone.
    Deleted,
    /// There was no such resource.
    Absent,
}

impl Tctl {
    pub(crate) fn new(program: PathBuf, identity: PathBuf, auth_server: String) -> Tctl {
        Tctl { program, identity, auth_server }
    }

    fn command(&self) -> Cmd {
        Cmd::new(&self.program)
            .arg("--identity")
            .arg(&self.identity)
            .arg("--auth-server")
            .arg(&self.auth_server)
            .timeout(TCTL_TIMEOUT)
    }

    /// `tctl create --force` with the document on stdin (no file name: tctl reads stdin only
    /// then; a `-` would be taken for a file of that name). `--force` overwrites a resource of
    /// the same name, so a clone registered again keeps working.
    pub(crate) async fn create(&self, document: &Value) -> anyhow::Result<()> {
        self.command()
            .args(["create", "--force"])
            .stdin_bytes(document.to_string())
            .run()
            .await
            .with_context(|| format!("register {}", describe(document)))
    }

    /// `tctl rm <kind>/<name>`; a resource that is not there is no error.
    pub(crate) async fn remove(&self, kind: &str, name: &str) -> anyhow::Result<Removed> {
        match self.command().arg("rm").arg(format!("{kind}/{name}")).run().await {
            Ok(()) => Ok(Removed::Deleted),
            Err(error) if is_not_found(&error) => Ok(Removed::Absent),
            Err(error) => Err(error).with_context(|| format!("remove {kind}/{name}")),
        }
    }

    /// Every `db` resource (`tctl get db --format=json`).
    pub(crate) async fn databases(&self) -> anyhow::Result<Vec<Registered>> {
        let output = self
            .command()
            .args(["get", "db", "--format=json"])
            .output()
            .await
            .context("list the db resources")?;
        let text = output.stdout_text();
        // tctl prints nothing rather than `[]` for an empty collection in some versions.
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).context("read the db resources tctl listed")
    }

    /// Whether `<kind>/<name>` exists (`tctl get`, whose "not found" means no).
    pub(crate) async fn exists(&self, kind: &str, name: &str) -> anyhow::Result<bool> {
        let reference = format!("{kind}/{name}");
        match self.command().args(["get", &reference, "--format=json"]).output().await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(error).with_context(|| format!("look up {reference}")),
        }
    }
}

/// tctl says `… "<name>" not found` (trace.NotFound) and exits 1.
fn is_not_found(error: &ExecError) -> bool {
    matches!(error, ExecError::Failed { .. }) && error.stderr_tail().contains("not found")
}

fn describe(document: &Value) -> String {
    let kind = document["kind"].as_str().unwrap_or("resource");
    let name = document["metadata"]["name"].as_str().unwrap_or("");
    format!("{kind}/{name}")
}
