//! A real `scion-server` per test (embedded btrfs pool under a temp dir), the `scion` binary to
//! drive it, and output normalization for snapshot-style comparisons.
//!
//! How the server binary is found: `SCION_SERVER_BIN` if set; otherwise the test builds it once
//! per run with `cargo build -p server --bin scion-server` into the same target directory and
//! profile as this test (`CARGO_BIN_EXE_scion`'s directory), which is a no-op when it is fresh.
//! A dev-dependency cannot provide it: `server` has no library, and artifact dependencies are
//! unstable.
//!
//! Cleanup, also when a test fails: the server gets SIGTERM (by PID), every Postgres whose data
//! directory lies in the state directory is stopped (by PID, via its `postmaster.pid`), and the
//! pool image is unmounted and removed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::{Cmd, Daemon, ExitInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use storage::provision::{ImageFs, ImagePool};
use test_support::{TestDir, free_port_range, stop_postmasters_under};
use tokio::sync::OnceCell;

/// The environment variable a test server reads a retrieval source's password from.
pub(crate) const SOURCE_PASSWORD_ENV: &str = "SCION_TEST_SOURCE_PASSWORD";
/// That password.
pub(crate) const SOURCE_PASSWORD: &str = "S0urce-pass 'quoted'";
/// The token every test server requires.
pub(crate) const TOKEN: &str = "cli-test-token";
/// A clone password the server accepts (DBLab wants 60 bits of entropy).
pub(crate) const PASSWORD: &str = "Tr0ub4dor&3-correct-horse-battery";
/// The embedded pool's image size: sparse, so only a ceiling.
const IMAGE_SIZE: u64 = 2 << 30;
/// How long a server may take to come up (initdb and the first snapshot take about 2 s).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The `scion` binary under test.
pub(crate) fn scion_bin() -> &'static str {
    env!("CARGO_BIN_EXE_scion")
}

/// What one `scion` run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Fails the test with the whole output unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Exit code 0, then stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        self.expect_code(0);
        &self.stdout
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }
}

/// Runs `scion` with exactly these environment variables on top of a minimal environment.
pub(crate) async fn scion_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Cmd::new(scion_bin()).env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in env {
        command = command.env(*key, *value);
    }
    let output = command.args(args.iter().copied()).output_any_status().await.expect("run scion");
    let code = match output.status {
        ExitInfo::Code(code) => code,
        ExitInfo::Signal(signal) => panic!("scion was killed by signal {signal}"),
    };
    Run { code, stdout: output.stdout_text(), stderr: output.stderr_text() }
}

/// A running `scion-server` on its own pool, port and clone port range.
#[derive(Debug)]
pub(crate) struct TestServer {
    pub(crate) url: String,
    dir: TestDir,
    daemon: Daemon,
}

impl TestServer {
    /// Starts a server with `cloning_extra` appended to its `[cloning]` section, and waits until it
    /// answers `/healthz`.
    pub(crate) async fn start(cloning_extra: &str) -> TestServer {
        TestServer::start_through(&[], server_bin().await, cloning_extra).await
    }

    /// [`TestServer::start`] with `binary` as the server, run through `launcher` (a command
    /// that ends by executing its last argument, as `setpriv` does) when it is not empty.
    pub(crate) async fn start_through(
        launcher: &[&str],
        binary: &Path,
        cloning_extra: &str,
    ) -> TestServer {
        let dir = TestDir::new("scion-cli-it-");
        let state = dir.path().join("state");
        let port = *free_port_range(1).start();
        let clone_ports = free_port_range(20);
        let config = format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nstate_dir = \"{state}\"\n\n\
             [pool]\nimage_size = \"2GiB\"\n\n\
             [cloning]\nport_from = {from}\nport_to = {to}\n{cloning_extra}\n",
            state = state.display(),
            from = clone_ports.start(),
            to = clone_ports.end(),
        );
        let config_path = dir.path().join("server.toml");
        std::fs::write(&config_path, config).expect("write the server config");
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).expect("create the server log");
        let command = match launcher.split_first() {
            Some((program, args)) => Cmd::new(program).args(args.iter().copied()).arg(binary),
            None => Cmd::new(binary),
        };
        let daemon = command
            .arg("--config")
            .arg(&config_path)
            .env("SCION_VERIFICATION_TOKEN", TOKEN)
            .env(SOURCE_PASSWORD_ENV, SOURCE_PASSWORD)
            .env("RUST_LOG", "info")
            .spawn_daemon(log)
            .expect("start scion-server");
        let server = TestServer { url: format!("http://127.0.0.1:{port}"), dir, daemon };
        server.wait_ready(&log_path).await;
        server
    }

    async fn wait_ready(&self, log_path: &Path) {
        let client = api_client::Client::new(&self.url, None).expect("a valid URL");
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if client.healthz().await.is_ok() {
                return;
            }
            let log = || std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(status) = self.daemon.exit_status() {
                panic!("scion-server {status} before it was ready; its log:\n{}", log());
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "scion-server not ready; its log:\n{}",
                log()
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The server's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// An API client with the server's token.
    pub(crate) fn client(&self) -> api_client::Client {
        api_client::Client::new(&self.url, Some(TOKEN.to_owned())).expect("a valid URL")
    }

    /// Runs `scion` against this server: URL and token from the environment, no config file.
    pub(crate) async fn scion(&self, args: &[&str]) -> Run {
        self.scion_with(args, &[]).await
    }

    /// [`TestServer::scion`] with more environment variables.
    pub(crate) async fn scion_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let base = self.scion_env();
        let mut env: Vec<(&str, &str)> =
            base.iter().map(|(key, value)| (*key, value.as_str())).collect();
        env.extend_from_slice(extra);
        scion_with_env(args, &env).await
    }

    /// The environment [`TestServer::scion`] runs `scion` with: this server's URL and token, no
    /// config file.
    pub(crate) fn scion_env(&self) -> [(&'static str, String); 3] {
        let config = self.dir.path().join("no-cli-config.toml");
        [
            ("SCION_URL", self.url.clone()),
            ("SCION_TOKEN", TOKEN.to_owned()),
            ("SCION_CLI_CONFIG", config.to_string_lossy().into_owned()),
        ]
    }

    /// `GET <path>` on the server as raw JSON, to compare with what `scion -o json` printed.
    pub(crate) async fn raw(&self, path: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .header("Verification-Token", TOKEN)
            .send()
            .await
            .expect("GET from the server");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("a JSON answer")
    }

    /// Waits until the first refresh is over, and fails the test unless it finished.
    pub(crate) async fn wait_refresh(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let retrieving = self.raw("/instance/retrieval").await;
            if retrieving["status"] == "finished" || retrieving["status"] == "failed" {
                assert_eq!(retrieving["status"], "finished", "{retrieving}");
                return;
            }
            assert!(Instant::now() < deadline, "the refresh did not finish: {retrieving}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A directory for the test's own files, removed with the server.
    pub(crate) fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Destroys every clone through the API, waiting until each is gone; the clean way out.
    pub(crate) async fn destroy_all_clones(&self) {
        let client = self.client();
        for clone in client.clones().await.expect("list clones") {
            if clone.protected {
                let unprotect = api_types::PatchCloneRequest::default();
                client.update_clone(&clone.id, &unprotect).await.expect("lift protection");
            }
            client.destroy_clone(&clone.id).await.expect("destroy a clone");
            let left = client.wait_clone_gone(&clone.id, Duration::from_secs(60)).await;
            assert!(matches!(left, Ok(None)), "clone {} not destroyed: {left:?}", clone.id);
        }
    }
}

impl Drop for TestServer {
    #[allow(clippy::print_stderr, reason = "a failed cleanup must show in the test output")]
    fn drop(&mut self) {
        stop(&self.daemon);
        let state = self.dir.path().join("state");
        // Clone servers outlive the engine by design; a test that failed early may leave some.
        stop_postmasters_under(&state);
        let image =
            ImagePool::new(state.join("pool.img"), IMAGE_SIZE, ImageFs::Btrfs, state.join("pool"));
        // Drop cannot await and may run inside a runtime: unmount on a thread of its own.
        let detached = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime for cleanup")
                .block_on(image.teardown(true))
        })
        .join();
        match detached {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test pool teardown failed: {error}"),
            Err(_) => eprintln!("test pool teardown panicked"),
        }
    }
}

/// Stops a process the test started: SIGTERM by its PID, SIGKILL if it is still there after 30 s.
fn stop(daemon: &Daemon) {
    let pid = Pid::from_raw(i32::try_from(daemon.pid()).expect("a PID fits in i32"));
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if is_running(pid) {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// A process the test started, stopped by [`stop`] when dropped, also when the test fails.
#[derive(Debug)]
pub(crate) struct StopOnDrop(pub(crate) Daemon);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop(&self.0);
    }
}

/// Alive and not a zombie (the server's reaper task may not run while the test thread waits).
fn is_running(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// The `scion-server` binary: `SCION_SERVER_BIN`, or built once next to `scion`.
pub(crate) async fn server_bin() -> &'static Path {
    static BIN: OnceCell<PathBuf> = OnceCell::const_new();
    BIN.get_or_init(|| async {
        if let Some(path) = std::env::var_os("SCION_SERVER_BIN") {
            return PathBuf::from(path);
        }
        let bin_dir = Path::new(scion_bin()).parent().expect("scion lives in a directory");
        let profile_dir =
            bin_dir.file_name().and_then(|name| name.to_str()).expect("a profile dir");
        let target_dir = bin_dir.parent().expect("the profile dir lives in the target dir");
        let profile = match profile_dir {
            "debug" => "dev",
            other => other,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let output = Cmd::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "server",
                "--bin",
                "scion-server",
                "--profile",
                profile,
            ])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(&workspace)
            .output_any_status()
            .await
            .expect("run cargo build -p server");
        assert!(output.status.success(), "cargo build -p server failed:\n{}", output.stderr_text());
        bin_dir.join("scion-server")
    })
    .await
}

/// Replaces what changes from run to run (times, ports, sizes, durations, snapshot names) with
/// placeholders and collapses column padding, so table output can be compared with expected text.
pub(crate) fn normalize(text: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    let rules = [
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "<TIME>"),
        (r"snapshot_\d{14}", "snapshot_<STAMP>"),
        (r"\b\d+(\.\d)? (B|KiB|MiB|GiB|TiB)\b", "<SIZE>"),
        (r"\b\d+\.\d{3} s\b", "<SECS>"),
        (r"port=\d+", "port=<PORT>"),
        (r" {2,}", "  "),
    ];
    for (pattern, placeholder) in rules {
        let regex = regex::Regex::new(pattern).expect("a valid pattern");
        text = regex.replace_all(&text, placeholder).into_owned();
    }
    text
}

/// Removes fields that change between two reads of the same object (sizes, free space).
pub(crate) fn without_volatile(mut value: serde_json::Value) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for key in [
                    "cloneDiffSize",
                    "logicalSize",
                    "physicalSize",
                    "free",
                    "used",
                    "size",
                    "dataSize",
                    "usedBySnapshots",
                    "usedByClones",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// How long a process the test started may take to write an expected line.
const LINE_DEADLINE: Duration = Duration::from_secs(60);

/// Waits until the log of `daemon` contains `line` and returns the log.
pub(crate) async fn wait_for_line(daemon: &Daemon, log_path: &Path, line: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.contains(line) {
            return log;
        }
        assert!(daemon.exit_status().is_none(), "the process exited; its output:\n{log}");
        assert!(started.elapsed() < LINE_DEADLINE, "no {line:?} yet; output so far:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A source cluster for retrieval: PostgreSQL 16 with a superuser `reader` (password
/// [`SOURCE_PASSWORD`]) and a database `shop` set up by the caller's SQL; stopped when dropped.
pub(crate) struct SourceCluster {
    instance: Option<postgres::Instance>,
    port: u16,
    dir: test_support::TestDir,
}

impl SourceCluster {
    pub(crate) async fn start(shop_sql: &str) -> SourceCluster {
        let dir = test_support::TestDir::new("scion-cli-source-");
        let user = postgres::OsUser::lookup("postgres").expect("set up the source");
        let major = postgres::PgMajor::new(16).expect("set up the source");
        let binaries = postgres::BinarySearch::default().locate(major).expect("set up the source");
        let data_dir = dir.path().join("data");
        let mut options = postgres::InitDbOptions::new("postgres");
        options.sync = false;
        postgres::initdb(&binaries, &data_dir, &user, &options).await.expect("set up the source");
        let port = *test_support::free_port_range(1).start();
        let settings = postgres::ServerSettings::new(port, dir.path().join("sock"));
        let spec = postgres::InstanceSpec::new(
            &data_dir,
            settings,
            "postgres",
            dir.path().join("log"),
            user,
        );
        let mut instance =
            postgres::Instance::start(&binaries, spec.clone()).await.expect("set up the source");
        let admin = instance.admin().await.expect("set up the source");
        admin
            .create_or_replace_role("reader", SOURCE_PASSWORD, postgres::RoleKind::Superuser)
            .await
            .expect("set up the source");
        admin.client().batch_execute("CREATE DATABASE shop").await.expect("set up the source");
        drop(admin);
        let shop = postgres::Admin::connect(&spec.settings.socket_dir, port, "postgres", "shop")
            .await
            .expect("set up the source");
        shop.client().batch_execute(shop_sql).await.expect("set up the source");
        SourceCluster { instance: Some(instance), port, dir }
    }

    /// The port it listens on (loopback).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A `[retrieval]` section that dumps it, restore errors ignored.
    pub(crate) fn config(&self) -> String {
        format!(
            "\n[retrieval]\ntarget_major = 16\n[retrieval.source]\nhost = \"127.0.0.1\"\n\
             port = {}\nusername = \"reader\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\
             [retrieval.restore]\nignore_errors = true\n",
            self.port
        )
    }

    pub(crate) async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance
                .stop(postgres::StopMode::Fast, Duration::from_secs(30))
                .await
                .expect("set up the source");
        }
    }
}

impl Drop for SourceCluster {
    fn drop(&mut self) {
        test_support::stop_postmasters_under(self.dir.path());
    }
}
