//! A typed async client for Scion's REST API, which is DBLab Engine 4.x's API plus additive extensions.
//!
//! One method per endpoint; requests and answers are the `api-types` shapes, errors are [`Error`].
//! Waiting for a clone uses Scion's `?wait=<seconds>` extension (the server answers once the clone is
//! ready), never a fixed polling interval. The one exception is [`Client::wait_clone_gone`]: the server
//! has no signal for "destroyed", so it polls with a short, growing backoff.
//!
//! Two switches for the caller: [`Tls::AcceptInvalid`] talks to a server whose certificate does not
//! verify (a self-signed one), and [`Client::with_debug`] hands a line per request and per answer to
//! a sink, with the token masked and request bodies (which may hold passwords) left out.
//!
//! What is deliberately not here: configuration files, retries of failed requests, SSH tunnels (the
//! CLI points the client at its tunnel's local end) and any output formatting; those belong to the
//! caller (the `scion` CLI).
#![warn(missing_docs)]

mod error;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::{
    BranchName, BranchProtection, BranchView, CloneId, CommitRequest, CommitResponse,
    CreateBranchRequest, CreateBranchResponse, CreateCloneRequest, CreateSnapshotRequest,
    MaskingCheck, ObservationSession, PatchCloneRequest, ProtectionUpdateRequest,
    ResetCloneRequest, Response, SnapshotCloneRequest, SnapshotDetails, SnapshotId,
    StartObservationRequest, StatusCode, StopObservationRequest, SummaryArtifact,
};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::error::Error;

/// The header that carries the API token, as in DBLab.
pub const TOKEN_HEADER: &str = "Verification-Token";

/// How long one request may take unless [`Client::with_timeout`] says otherwise (DBLab's CLI default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The first pause of [`Client::wait_clone_gone`]; it doubles up to [`MAX_POLL_INTERVAL`].
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause of [`Client::wait_clone_gone`].
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What the token looks like in debug lines.
const MASKED_TOKEN: &str = "********";

/// Whether the server's TLS certificate must verify against the system's roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tls {
    /// Refuse a certificate that does not verify (the default).
    #[default]
    Verify,
    /// Accept any certificate, e.g. a self-signed one (DBLab's `--insecure`); the connection is
    /// still encrypted but its peer is not authenticated.
    AcceptInvalid,
}

/// Receives the client's debug lines (see [`Client::with_debug`]).
pub type DebugSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A connection to one Scion (or DBLab) server: base URL, token and timeout.
///
/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
    debug: Option<DebugSink>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and panic messages.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("debug", &self.debug.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base_url` (`http://host:port`, optionally with a path prefix such as
    /// `/api`), sending `token` in the `Verification-Token` header when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, Error> {
        Client::with_tls(base_url, token, Tls::Verify)
    }

    /// [`Client::new`] with a choice about the server's TLS certificate.
    pub fn with_tls(base_url: &str, token: Option<String>, tls: Tls) -> Result<Client, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("a host is required"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("scion-api-client/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(tls == Tls::AcceptInvalid)
            .build()
            .map_err(|error| invalid(&error_chain(&error)))?;
        let token = token.filter(|token| !token.is_empty());
        Ok(Client { http, base, token, timeout: DEFAULT_TIMEOUT, debug: None })
    }

    /// The same client, handing `sink` one line before each request (method, URL, whether a token
    /// is sent, masked) and one after it (status and time taken, the body of an error answer, or
    /// the network error). Request bodies are never shown: a clone's password travels in one.
    pub fn with_debug(mut self, sink: DebugSink) -> Client {
        self.debug = Some(sink);
        self
    }

    /// The same client with another per-request timeout (a waiting request gets its wait on top).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /healthz`: version and identity; needs no token.
    pub async fn healthz(&self) -> Result<api_types::Engine, Error> {
        self.get(&["healthz"], &[]).await
    }

    /// `GET /status`: the whole instance (pools, clones, retrieval).
    pub async fn status(&self) -> Result<api_types::Instance, Error> {
        self.get(&["status"], &[]).await
    }

    /// `GET /snapshots`, newest first; `branch` keeps that branch's snapshots.
    pub async fn snapshots(&self, branch: Option<&str>) -> Result<Vec<api_types::Snapshot>, Error> {
        let query: Vec<(&str, String)> =
            branch.map(|branch| ("branch", branch.to_owned())).into_iter().collect();
        self.get(&["snapshots"], &query).await
    }

    /// `GET /snapshot/{id}`.
    pub async fn snapshot(&self, id: &str) -> Result<api_types::Snapshot, Error> {
        let path = snapshot_path(id)?;
        self.get(&path, &[]).await
    }

    /// `POST /snapshot`: snapshot the pool now (the active pool when `request.pool_name` is empty).
    pub async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
    ) -> Result<api_types::Snapshot, Error> {
        self.json(Method::POST, &["snapshot"], &[], Some(request), Duration::ZERO).await
    }

    /// `DELETE /snapshot/{id}?force=`: with `force`, clones made from it are destroyed too.
    pub async fn delete_snapshot(&self, id: &str, force: bool) -> Result<Response, Error> {
        let path = snapshot_path(id)?;
        let query = [("force", force.to_string())];
        self.json(Method::DELETE, &path, &query, None::<&()>, Duration::ZERO).await
    }

    /// `PATCH /snapshot/{id}`: protect it, lift protection, or schedule its deletion.
    pub async fn update_snapshot(
        &self,
        id: &str,
        request: &ProtectionUpdateRequest,
    ) -> Result<api_types::Snapshot, Error> {
        let path = snapshot_path(id)?;
        self.json(Method::PATCH, &path, &[], Some(request), Duration::ZERO).await
    }

    /// `POST /snapshot/clone`: snapshot a clone's data without moving its branch's head.
    pub async fn snapshot_clone(
        &self,
        request: &SnapshotCloneRequest,
    ) -> Result<api_types::Snapshot, Error> {
        self.json(Method::POST, &["snapshot", "clone"], &[], Some(request), Duration::ZERO).await
    }

    /// `GET /branches`.
    pub async fn branches(&self) -> Result<Vec<BranchView>, Error> {
        self.get(&["branches"], &[]).await
    }

    /// `POST /branch`: fork a branch from a branch's head or a snapshot.
    pub async fn create_branch(
        &self,
        request: &CreateBranchRequest,
    ) -> Result<CreateBranchResponse, Error> {
        self.json(Method::POST, &["branch"], &[], Some(request), Duration::ZERO).await
    }

    /// `POST /branch/snapshot`: commit a clone into its branch.
    pub async fn commit(&self, request: &CommitRequest) -> Result<CommitResponse, Error> {
        self.json(Method::POST, &["branch", "snapshot"], &[], Some(request), Duration::ZERO).await
    }

    /// `GET /branch/snapshot/{id}`: a snapshot with its place in the history.
    pub async fn commit_details(&self, id: &str) -> Result<SnapshotDetails, Error> {
        let path: Vec<&str> = std::iter::once("branch").chain(snapshot_path(id)?).collect();
        self.get(&path, &[]).await
    }

    /// `GET /branch/{name}/log`: the branch's history, head first.
    pub async fn branch_log(&self, name: &str) -> Result<Vec<SnapshotDetails>, Error> {
        self.get(&["branch", branch_name(name)?, "log"], &[]).await
    }

    /// `DELETE /branch/{name}`: delete a branch with its snapshots.
    pub async fn delete_branch(&self, name: &str) -> Result<Response, Error> {
        let path = ["branch", branch_name(name)?];
        self.json(Method::DELETE, &path, &[], None::<&()>, Duration::ZERO).await
    }

    /// `PATCH /branch/{name}`: protect a branch, lift protection, or schedule its deletion.
    pub async fn update_branch(
        &self,
        name: &str,
        request: &ProtectionUpdateRequest,
    ) -> Result<BranchProtection, Error> {
        let path = ["branch", branch_name(name)?];
        self.json(Method::PATCH, &path, &[], Some(request), Duration::ZERO).await
    }

    /// `GET /clones`, newest first.
    pub async fn clones(&self) -> Result<Vec<api_types::Clone>, Error> {
        self.get(&["clones"], &[]).await
    }

    /// `GET /clone/{id}`.
    pub async fn clone_status(&self, id: &str) -> Result<api_types::Clone, Error> {
        self.get(&["clone", clone_id(id)?], &[]).await
    }

    /// `POST /clone`. Without `wait` the answer comes at once with status `CREATING`; with it the server
    /// answers once the clone is ready or failed, or when `wait` runs out (still `CREATING` then).
    pub async fn create_clone(
        &self,
        request: &CreateCloneRequest,
        wait: Option<Duration>,
    ) -> Result<api_types::Clone, Error> {
        let query = wait_query(wait);
        self.json(Method::POST, &["clone"], &query, Some(request), wait.unwrap_or_default()).await
    }

    /// `PATCH /clone/{id}`: set or lift protection (a `false` or missing `protected` lifts it).
    pub async fn update_clone(
        &self,
        id: &str,
        request: &PatchCloneRequest,
    ) -> Result<api_types::Clone, Error> {
        let path = ["clone", clone_id(id)?];
        self.json(Method::PATCH, &path, &[], Some(request), Duration::ZERO).await
    }

    /// `POST /clone/{id}/reset`. Without `wait` the server answers at once with an empty body (`None`);
    /// with it, once the clone is ready again, with the clone.
    pub async fn reset_clone(
        &self,
        id: &str,
        request: &ResetCloneRequest,
        wait: Option<Duration>,
    ) -> Result<Option<api_types::Clone>, Error> {
        let path = ["clone", clone_id(id)?, "reset"];
        let query = wait_query(wait);
        let body =
            self.send(Method::POST, &path, &query, Some(request), wait.unwrap_or_default()).await?;
        if body.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        body.decode().map(Some)
    }

    /// `POST /clone/{id}/stop` (scale to zero): the clone's server stops, the engine holds its
    /// port, and the first connection starts it again.
    pub async fn stop_clone(&self, id: &str) -> Result<api_types::Clone, Error> {
        self.power(id, "stop").await
    }

    /// `POST /clone/{id}/start`: answers once the stopped clone's server accepts connections.
    pub async fn start_clone(&self, id: &str) -> Result<api_types::Clone, Error> {
        self.power(id, "start").await
    }

    async fn power(&self, id: &str, verb: &str) -> Result<api_types::Clone, Error> {
        let path = ["clone", clone_id(id)?, verb];
        // A start waits for the server as a create does.
        let wait = Duration::from_secs(60);
        self.send(Method::POST, &path, &[], None::<&()>, wait).await?.decode()
    }

    /// `DELETE /clone/{id}`: the server starts tearing the clone down and answers at once.
    pub async fn destroy_clone(&self, id: &str) -> Result<(), Error> {
        let path = ["clone", clone_id(id)?];
        self.send(Method::DELETE, &path, &[], None::<&()>, Duration::ZERO).await.map(drop)
    }

    /// Waits until the clone is gone after [`Client::destroy_clone`], polling `GET /clone/{id}` with a
    /// short, growing backoff (the API has no better signal). `Ok(None)` when it is gone; `Ok(Some)` when
    /// it left `DELETING` but still exists (a failed teardown leaves it `FATAL`); [`Error::Timeout`] when
    /// it is still being deleted after `timeout`.
    pub async fn wait_clone_gone(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<api_types::Clone>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = FIRST_POLL_INTERVAL;
        loop {
            match self.clone_status(id).await {
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) => return Err(error),
                Ok(clone) if clone.status.code != StatusCode::Deleting => return Ok(Some(clone)),
                Ok(_) => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                let url = self.url(&["clone", id], &[]);
                return Err(Error::Timeout { url: url.into(), seconds: timeout.as_secs_f64() });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// `POST /observation/start`: start watching a clone for dangerous locks.
    pub async fn start_observation(
        &self,
        request: &StartObservationRequest,
    ) -> Result<ObservationSession, Error> {
        clone_id(&request.clone_id)?;
        let path = ["observation", "start"];
        self.json(Method::POST, &path, &[], Some(request), Duration::ZERO).await
    }

    /// `POST /observation/stop`: stop the clone's session; the answer carries the verdict.
    pub async fn stop_observation(
        &self,
        request: &StopObservationRequest,
    ) -> Result<ObservationSession, Error> {
        clone_id(&request.clone_id)?;
        let path = ["observation", "stop"];
        self.json(Method::POST, &path, &[], Some(request), Duration::ZERO).await
    }

    /// `GET /observation/summary/{clone_id}/{session_id}`: a stopped session's summary.
    pub async fn observation_summary(
        &self,
        clone: &str,
        session_id: u64,
    ) -> Result<SummaryArtifact, Error> {
        let session = session_id.to_string();
        self.get(&["observation", "summary", clone_id(clone)?, &session], &[]).await
    }

    /// `GET /observation/download`: one artifact of a stopped session, as the server sent it
    /// (a JSON array of rows).
    pub async fn download_artifact(
        &self,
        clone: &str,
        session_id: u64,
        artifact_type: &str,
    ) -> Result<Vec<u8>, Error> {
        let query = [
            ("artifact_type", artifact_type.to_owned()),
            ("clone_id", clone_id(clone)?.to_owned()),
            ("session_id", session_id.to_string()),
        ];
        let path = ["observation", "download"];
        let answer = self.send(Method::GET, &path, &query, None::<&()>, Duration::ZERO).await?;
        Ok(answer.bytes)
    }

    /// `GET /clone/{id}/logs` (Scion's): the last `tail` lines of the clone server's log, or all of
    /// its last MiB without a count.
    pub async fn clone_logs(&self, id: &str, tail: Option<usize>) -> Result<String, Error> {
        let path = ["clone", clone_id(id)?, "logs"];
        let query = tail_query(tail);
        let answer = self.send(Method::GET, &path, &query, None::<&()>, Duration::ZERO).await?;
        Ok(String::from_utf8_lossy(&answer.bytes).into_owned())
    }

    /// `GET /clone/{id}/logs?follow=true` (Scion's): the tail, then what the clone's server writes
    /// next, read with [`LogFollow::next`] until the clone is gone. No timeout applies once the
    /// answer has started.
    pub async fn follow_clone_logs(
        &self,
        id: &str,
        tail: Option<usize>,
    ) -> Result<LogFollow, Error> {
        let path = ["clone", clone_id(id)?, "logs"];
        let mut query = tail_query(tail);
        query.push(("follow", "true".to_owned()));
        let (url, response) = self.respond(Method::GET, &path, &query, None::<&()>, None).await?;
        Ok(LogFollow { url, response })
    }

    /// `POST /admin/config`: apply DBLab's configuration projection (only the fields given
    /// change); the answer is the new projection.
    pub async fn update_config(
        &self,
        projection: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.json(Method::POST, &["admin", "config"], &[], Some(projection), Duration::ZERO).await
    }

    /// `POST /admin/masking/check` (Scion's): the personal-looking columns without a masking
    /// rule and the rules' problems, read from a temporary clone of the newest snapshot. The
    /// check starts a server, so it may take longer than other requests: the client's timeout
    /// bounds it.
    pub async fn masking_check(&self) -> Result<MaskingCheck, Error> {
        self.json(Method::POST, &["admin", "masking", "check"], &[], None::<&()>, Duration::ZERO)
            .await
    }

    /// `POST /full-refresh`: start a new retrieval run in the background.
    pub async fn full_refresh(&self) -> Result<Response, Error> {
        self.json(Method::POST, &["full-refresh"], &[], None::<&()>, Duration::ZERO).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        self.json(Method::GET, path, query, None::<&()>, Duration::ZERO).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        wait: Duration,
    ) -> Result<T, Error> {
        self.send(method, path, query, body, wait).await?.decode()
    }

    /// Sends one request and returns the body of a 2xx answer; other answers become [`Error::Api`].
    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        wait: Duration,
    ) -> Result<Answer, Error> {
        let timeout = self.timeout + wait;
        let (url, response) = self.respond(method, path, query, body, Some(timeout)).await?;
        let bytes = response.bytes().await.map_err(|error| network_error(&url, timeout, &error))?;
        Ok(Answer { url, bytes: bytes.to_vec() })
    }

    /// Sends one request and returns a 2xx answer before its body is read; other answers become
    /// [`Error::Api`]. `timeout` bounds the whole exchange, body included; `None` leaves it open.
    /// With a debug sink, a line goes to it for the request and one for the answer's status.
    async fn respond(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
    ) -> Result<(Url, reqwest::Response), Error> {
        let url = self.url(path, query);
        let line = format!("{method} {url}");
        let mut request = self.http.request(method, url.clone());
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.log(|| {
            let token = if self.token.is_some() {
                format!(" {TOKEN_HEADER}: {MASKED_TOKEN}")
            } else {
                String::new()
            };
            let body = if body.is_some() { " (JSON body not shown)" } else { "" };
            format!("> {line}{token}{body}")
        });
        let started = Instant::now();
        let timeout = timeout.unwrap_or(self.timeout);
        let network = |error: reqwest::Error| {
            let error = network_error(&url, timeout, &error);
            self.log(|| format!("< {line}: {error}"));
            error
        };
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let elapsed = started.elapsed().as_millis();
        if status.is_success() {
            self.log(|| format!("< {status} {line} ({elapsed} ms)"));
            return Ok((url, response));
        }
        let bytes = response.bytes().await.map_err(network)?;
        self.log(|| {
            format!("< {status} {line} ({elapsed} ms): {}", String::from_utf8_lossy(&bytes).trim())
        });
        Err(api_error(status, &bytes))
    }

    /// Hands a debug line to the sink, if there is one; the line is only built then.
    fn log(&self, line: impl FnOnce() -> String) {
        if let Some(sink) = &self.debug {
            sink(&line());
        }
    }

    fn url(&self, path: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        {
            let mut segments =
                url.path_segments_mut().expect("Client::new refuses URLs that cannot be a base");
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// A timed-out or failed exchange with `url`.
fn network_error(url: &Url, timeout: Duration, error: &reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout { url: url.to_string(), seconds: timeout.as_secs_f64() }
    } else {
        Error::Unreachable { url: url.to_string(), reason: error_chain(error) }
    }
}

/// A followed clone log: read it chunk by chunk with [`LogFollow::next`].
#[derive(Debug)]
pub struct LogFollow {
    url: Url,
    response: reqwest::Response,
}

impl LogFollow {
    /// The next text the server sent; `None` once the log ends (the clone is gone).
    pub async fn next(&mut self) -> Result<Option<String>, Error> {
        let chunk = self.response.chunk().await.map_err(|error| Error::Unreachable {
            url: self.url.to_string(),
            reason: error_chain(&error),
        })?;
        Ok(chunk.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// The body of a successful answer and where it came from.
struct Answer {
    url: Url,
    bytes: Vec<u8>,
}

impl Answer {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.bytes)
            .map_err(|error| Error::Decode { url: self.url.to_string(), reason: error.to_string() })
    }
}

/// Turns an error answer into [`Error::Api`], keeping the server's `{code, message}` when it sent one.
fn api_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let status_code = status.as_u16();
    if let Ok(error) = serde_json::from_slice::<api_types::ApiError>(body) {
        return Error::Api { status: status_code, code: error.code, message: error.message };
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text
    };
    Error::Api { status: status_code, code: error::code_for_status(status_code), message }
}

/// The path of a snapshot: its ID contains `/`, which stays a path separator, as DBLab's clients send it.
fn snapshot_path(id: &str) -> Result<Vec<&str>, Error> {
    SnapshotId::parse(id).map_err(|source| Error::InvalidId { id: id.to_owned(), source })?;
    Ok(std::iter::once("snapshot").chain(id.split('/')).collect())
}

fn branch_name(name: &str) -> Result<&str, Error> {
    BranchName::parse(name).map_err(|source| Error::InvalidId { id: name.to_owned(), source })?;
    Ok(name)
}

fn clone_id(id: &str) -> Result<&str, Error> {
    CloneId::parse(id).map_err(|source| Error::InvalidId { id: id.to_owned(), source })?;
    Ok(id)
}

fn tail_query(tail: Option<usize>) -> Vec<(&'static str, String)> {
    tail.map(|lines| ("tail", lines.to_string())).into_iter().collect()
}

fn wait_query(wait: Option<Duration>) -> Vec<(&'static str, String)> {
    wait.map(|wait| ("wait", wait.as_secs_f64().to_string())).into_iter().collect()
}

/// The messages of an error and its causes; reqwest's own message alone ("error sending request")
/// hides the useful part ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    // reqwest's top message repeats the URL the caller already shows; start at its cause.
    let top = error.source().unwrap_or(error);
    let mut parts = vec![top.to_string()];
    let mut source = top.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_snapshot_slashes() {
        let client = Client::new("http://127.0.0.1:2345/api/", None).unwrap();
        let path = snapshot_path("dblab_pool/data@snapshot_20261122010506").unwrap();
        let url = client.url(&path, &[("force", "true".to_owned())]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:2345/api/snapshot/dblab_pool/data@snapshot_20261122010506?force=true"
        );
        let url = client.url(&["clone", "c1", "reset"], &wait_query(Some(Duration::from_secs(5))));
        assert_eq!(url.as_str(), "http://127.0.0.1:2345/api/clone/c1/reset?wait=5");
    }

    #[test]
    fn bad_urls_and_ids_are_refused_before_any_request() {
        for url in ["", "127.0.0.1:2345", "ftp://host", "http://host/?a=b", "mailto:x@y"] {
            assert!(matches!(Client::new(url, None), Err(Error::InvalidUrl { .. })), "{url}");
        }
        assert!(matches!(clone_id("../status"), Err(Error::InvalidId { .. })));
        assert!(matches!(snapshot_path("no-at-sign"), Err(Error::InvalidId { .. })));
        assert!(matches!(branch_name("a/b"), Err(Error::InvalidId { .. })));
        assert_eq!(branch_name("dev-2").unwrap(), "dev-2");
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"code":"NOT_FOUND","message":"clone \"x\" not found"}"#;
        let error = api_error(reqwest::StatusCode::NOT_FOUND, body);
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), r#"clone "x" not found (HTTP 404, NOT_FOUND)"#);
        let error = api_error(reqwest::StatusCode::METHOD_NOT_ALLOWED, b"");
        assert_eq!(error.to_string(), "Method Not Allowed (HTTP 405, INTERNAL_ERROR)");
    }

    #[test]
    fn debug_hides_the_token() {
        let client = Client::new("http://localhost:1", Some("s3cret".to_owned())).unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
