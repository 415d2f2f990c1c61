//! A `scion-server` process for one test, and a webhook receiver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use storage::provision::{ImageFs, ImagePool};
use test_support::{TestDir, free_port_range, stop_postmasters_under};
use tokio_postgres::{Client, NoTls};

pub(crate) const TOKEN: &str = "test-token-3f1c";
pub(crate) const PASSWORD: &str = "Sc1on-test-pass!";
/// The password of a test's source database, handed to the server in this variable.
pub(crate) const SOURCE_PASSWORD_ENV: &str = "SCION_TEST_SOURCE_PASSWORD";
pub(crate) const SOURCE_PASSWORD: &str = "S0urce-pass 'quoted'";
const POOL_SIZE: u64 = 2 << 30;

/// A running `scion-server`.
pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    config_path: PathBuf,
    state_dir: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
    /// The crash point (`SCION_FAILPOINT`) the next launch runs with.
    failpoint: Option<&'static str>,
    _dir: TestDir,
}

impl TestServer {
    /// Starts a server whose configuration is the default test one plus `extra` TOML.
    pub(crate) async fn start(extra: &str) -> TestServer {
        TestServer::start_with_ports(extra, 20).await
    }

    pub(crate) async fn start_with_ports(extra: &str, clone_ports: u16) -> TestServer {
        let mut server = TestServer::new(extra, clone_ports);
        server.launch().await;
        server
    }

    /// A server on a fresh state directory that crashes at `point` during its first start.
    pub(crate) fn start_crashing_at(extra: &str, point: &'static str) -> TestServer {
        let mut server = TestServer::new(extra, 20);
        server.failpoint = Some(point);
        server.spawn();
        server
    }

    fn new(extra: &str, clone_ports: u16) -> TestServer {
        let dir = TestDir::new("scion-server-it-");
        let api_port = *free_port_range(1).start();
        let clones = free_port_range(clone_ports);
        let state_dir = dir.path().join("state");
        let config = format!(
            "[server]\nport = {api_port}\nstate_dir = \"{}\"\n\n[pool]\nimage_size = \"2GiB\"\n\n\
             [cloning]\nport_from = {}\nport_to = {}\n{extra}\n",
            state_dir.display(),
            clones.start(),
            clones.end(),
        );
        let config_path = dir.path().join("scion.toml");
        std::fs::write(&config_path, config).unwrap();
        TestServer {
            url: format!("http://127.0.0.1:{api_port}"),
            http: reqwest::Client::new(),
            log_path: dir.path().join("server.log"),
            config_path,
            state_dir,
            child: None,
            failpoint: None,
            _dir: dir,
        }
    }

    /// Stops this server as a crash would and starts it again set to abort at `point`: the
    /// next request that reaches that step crashes it there.
    pub(crate) async fn relaunch_crashing_at(&mut self, point: &'static str) {
        self.kill();
        self.failpoint = Some(point);
        self.launch().await;
    }

    /// Waits for the server to crash at its failpoint, then starts it again without one.
    pub(crate) async fn recover_from_crash(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let child = self.child.as_mut().expect("a running server");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the server never reached its failpoint");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "not the failpoint's abort: {status}\n{}", self.log());
        self.child = None;
        self.failpoint = None;
        self.launch().await;
    }

    /// Starts the binary and waits until `/healthz` answers.
    pub(crate) async fn launch(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(response) = self.http.get(format!("{}/healthz", self.url)).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) =
                self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("scion-server exited with {status}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "scion-server did not come up:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the binary without waiting for it.
    fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        #[allow(
            clippy::disallowed_methods,
            reason = "the test runs the real binary like a user would"
        )]
        let child = Command::new(env!("CARGO_BIN_EXE_scion-server"))
            .arg("--config")
            .arg(&self.config_path)
            .env("SCION_VERIFICATION_TOKEN", TOKEN)
            .env(SOURCE_PASSWORD_ENV, SOURCE_PASSWORD)
            .env("RUST_LOG", "info")
            .envs(self.failpoint.map(|point| ("SCION_FAILPOINT", point)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start scion-server");
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL, as a crash would; its clones keep running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The configuration file the server was started with.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Sends SIGHUP, which reloads the configuration file.
    pub(crate) fn hangup(&self) {
        let pid = self.child.as_ref().expect("a running server").id();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    /// Turns `[server] disable_config_modification` on in the file and reloads it (SIGHUP),
    /// waiting for the reload: the log's `applied`-th "configuration file applied".
    pub(crate) async fn disable_config_modification(&self, applied: usize) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        let text = text.replacen("[server]\n", "[server]\ndisable_config_modification = true\n", 1);
        std::fs::write(self.config_path(), text).unwrap();
        self.hangup();
        self.wait_log("configuration file applied", applied).await;
    }

    /// Waits until the server's log has `count` lines containing `text`.
    pub(crate) async fn wait_log(&self, text: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches(text).count() < count {
            assert!(Instant::now() < deadline, "no {count}× {text:?} in the log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub(crate) fn pool_dir(&self) -> PathBuf {
        self.state_dir.join("pool")
    }

    /// `/metrics`, fetched without a token as Prometheus does.
    pub(crate) async fn metrics(&self) -> String {
        let response = self.http.get(format!("{}/metrics", self.url)).send().await.unwrap();
        assert!(response.status().is_success(), "/metrics answered {}", response.status());
        response.text().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Verification-Token", TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Waits until the warm pool holds `count` clones, as `/metrics` says.
    pub(crate) async fn wait_warm(&self, count: f64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let metrics = self.metrics().await;
            if metric(&metrics, "scion_warm_pool_clones") == Some(count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} warm clones:\n{metrics}\nserver log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a clone and waits until it is ready.
    pub(crate) async fn create_clone(&self, id: &str) -> Value {
        let (status, clone) = self.post("/clone?wait=120", clone_request(id)).await;
        assert_eq!(status, 201, "{clone}");
        assert_eq!(clone["status"]["code"], "OK", "{clone}\n{}", self.log());
        clone
    }

    /// Polls until the clone's status is not `code` any more (DBLab's clients poll the same
    /// way) and returns the clone, or `None` once it is gone.
    pub(crate) async fn wait_while(&self, id: &str, code: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, clone) = self.get(&format!("/clone/{id}")).await;
            if status == 404 {
                return None;
            }
            if clone["status"]["code"] != code {
                return Some(clone);
            }
            assert!(Instant::now() < deadline, "clone {id} stuck in {code}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `check` holds for the clone (or its absence), at most `timeout`.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(u16, &Value) -> bool,
        id: &str,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, clone) = self.get(&format!("/clone/{id}")).await;
            if check(status, &clone) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status} {clone}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so the server shuts down as in production; then make sure.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        stop_postmasters_under(&self.state_dir);
        let image = ImagePool::new(
            self.state_dir.join("pool.img"),
            POOL_SIZE,
            ImageFs::Btrfs,
            self.pool_dir(),
        );
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(image.teardown(true))
        })
        .join();
    }
}

/// Runs an outside tool (the API fuzzer, the browser test) to its end off the runtime's threads
/// and returns its stdout and stderr; its failure fails the test, with the server's log.
pub(crate) async fn run_tool(
    server: &TestServer,
    what: &str,
    mut command: Command,
) -> (String, String) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("run {what}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{what} found failures ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        output.status,
        server.log()
    );
    (stdout, stderr)
}

pub(crate) fn clone_request(id: &str) -> Value {
    json!({"id": id, "db": {"username": "tester", "password": PASSWORD}})
}

/// Connects to a clone with the credentials of `clone_request`.
pub(crate) async fn connect(clone: &Value) -> Result<Client, tokio_postgres::Error> {
    connect_with(clone, PASSWORD).await
}

pub(crate) async fn connect_with(
    clone: &Value,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let port: u16 = clone["db"]["port"].as_str().expect("port is a string").parse().unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(clone["db"]["host"].as_str().unwrap())
        .port(port)
        .user(clone["db"]["username"].as_str().unwrap())
        .password(password)
        .dbname(clone["db"]["dbName"].as_str().unwrap())
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The value of an unlabelled metric in a `/metrics` text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Clone datasets present in the pool (`branch/<branch>/<clone>/r<n>`).
pub(crate) fn clone_datasets(pool: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(branches) = std::fs::read_dir(pool.join("branch")) else { return found };
    for branch in branches.flatten() {
        for clone in std::fs::read_dir(branch.path()).into_iter().flatten().flatten() {
            for revision in std::fs::read_dir(clone.path()).into_iter().flatten().flatten() {
                found.push(format!(
                    "branch/{}/{}/{}",
                    branch.file_name().to_string_lossy(),
                    clone.file_name().to_string_lossy(),
                    revision.file_name().to_string_lossy()
                ));
            }
        }
    }
    found.sort();
    found
}

/// One webhook delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) body: Value,
    pub(crate) token: Option<String>,
    pub(crate) signature_ok: bool,
}

/// A webhook receiver on loopback that checks Scion's signature with its own HMAC code.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(secret: &'static str) -> Receiver {
        use axum::body::Bytes;
        use axum::http::HeaderMap;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sink = sink.clone();
                async move {
                    let header = |name: &str| {
                        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                    };
                    let signature_ok = header("Scion-Signature")
                        .is_some_and(|value| verify(secret, &value, &body));
                    sink.lock().unwrap().push(Received {
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        token: header("DBLab-Webhook-Token"),
                        signature_ok,
                    });
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }

    pub(crate) fn events(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until an event of `event_type` for `entity` has arrived, and returns it.
    pub(crate) async fn wait_for(
        &self,
        event_type: &str,
        entity: &str,
        timeout: Duration,
    ) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.events().into_iter().find(|event| {
                event.body["event_type"] == event_type && event.body["entity_id"] == entity
            }) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {event_type} for {entity}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `Scion-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`, checked independently
/// of the webhooks crate.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut timestamp = None;
    let mut signature = None;
    for pair in header.split(',') {
        match pair.split_once('=') {
            Some(("t", value)) => timestamp = Some(value.to_owned()),
            Some(("v1", value)) => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return false };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String =
        mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    expected == signature
}
