//! A real `scion-server` process on a benchmark pool, driven over its REST API like a user.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use exec::{Cmd, Daemon};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use storage::BackendConfig;

/// The API token of benchmark servers.
pub(crate) const TOKEN: &str = "bench-token-9c2e";
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a server gets beyond the pool, the ports and the warm pool.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Extra<'a> {
    /// TOML sections appended to the configuration.
    pub(crate) config: &'a str,
    /// Environment variables the server gets, kept out of logs.
    pub(crate) secrets: &'a [(&'a str, &'a str)],
}

/// The state directory goes with the run; `SCION_BENCH_KEEP_LOG=<prefix>` keeps the log of
/// the server that ran in `state_dir` as `<prefix>-<name>.log`.
pub(crate) fn keep_log(state_dir: &Path, name: &str) {
    if let Ok(keep) = std::env::var("SCION_BENCH_KEEP_LOG") {
        std::fs::copy(state_dir.join("server.log"), format!("{keep}-{name}.log")).ok();
    }
}

/// A running `scion-server`.
pub(crate) struct Server {
    daemon: Daemon,
    pub(crate) url: String,
    pub(crate) api: api_client::Client,
    log: PathBuf,
}

impl Server {
    /// Writes a configuration for `backend` with its state in `state_dir`, the API on
    /// `api_port` and clones on `clone_ports`, then `extra`'s sections, starts the binary with
    /// `extra`'s secrets in its environment, and waits for `/healthz`.
    pub(crate) async fn start(
        bin: &Path,
        state_dir: &Path,
        backend: &BackendConfig,
        api_port: u16,
        clone_ports: (u16, u16),
        warm_pool: usize,
        extra: Extra<'_>,
    ) -> Result<Server> {
        std::fs::create_dir_all(state_dir)?;
        let backend = match backend {
            BackendConfig::Btrfs { root, .. } => {
                format!("{{ kind = \"btrfs\", root = \"{}\" }}", root.display())
            }
            BackendConfig::Zfs { pool } => format!("{{ kind = \"zfs\", pool = \"{pool}\" }}"),
            BackendConfig::Dir { root } => {
                format!("{{ kind = \"dir\", root = \"{}\" }}", root.display())
            }
        };
        // Idle cleanup off, so the density phase keeps every clone it made.
        let config = format!(
            "[server]\nport = {api_port}\nstate_dir = \"{}\"\n\n[pool]\nbackend = {backend}\n\n\
             [cloning]\nport_from = {}\nport_to = {}\nmax_idle_minutes = 0\n\
             warm_pool_size = {warm_pool}\n\n{}",
            state_dir.display(),
            clone_ports.0,
            clone_ports.1,
            extra.config,
        );
        let config_path = state_dir.join("scion.toml");
        std::fs::write(&config_path, config)?;
        let log = state_dir.join("server.log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut command = Cmd::new(bin)
            .arg("--config")
            .arg(&config_path)
            .secret_env("SCION_VERIFICATION_TOKEN", TOKEN)
            // `SCION_BENCH_SERVER_LOG` (a `RUST_LOG` filter) shows where a figure's time went,
            // e.g. `warn,exec=debug` times every command the server runs.
            .env(
                "RUST_LOG",
                std::env::var("SCION_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            );
        for (key, value) in extra.secrets {
            command = command.secret_env(key, value);
        }
        let daemon =
            command.spawn_daemon(log_file).with_context(|| format!("start {}", bin.display()))?;
        let url = format!("http://127.0.0.1:{api_port}");
        let api = api_client::Client::new(&url, Some(TOKEN.to_owned()))?
            .with_timeout(Duration::from_secs(120));
        let server = Server { daemon, url, api, log };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if server.api.healthz().await.is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.daemon.exit_status() {
                bail!("scion-server exited ({status}) before it was ready:\n{}", server.log_tail());
            }
            if Instant::now() > deadline {
                bail!("scion-server was not ready in {READY_TIMEOUT:?}:\n{}", server.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of an unlabelled metric of `/metrics`; 0 when it is not there.
    pub(crate) async fn metric(&self, name: &str) -> Result<f64> {
        let [value] = self.metrics([name]).await?;
        Ok(value)
    }

    /// The values of unlabelled metrics of one `/metrics` scrape; 0 for one not there.
    pub(crate) async fn metrics<const N: usize>(&self, names: [&str; N]) -> Result<[f64; N]> {
        let url = format!("{}/metrics", self.url);
        let text = reqwest::Client::new().get(&url).send().await?.text().await?;
        Ok(names.map(|name| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        }))
    }

    /// Waits until the warm pool holds `size` clones, as `/metrics` says.
    pub(crate) async fn wait_warm_pool(&self, size: usize) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = self.metric("scion_warm_pool_clones").await?;
            if ready == size as f64 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the warm pool did not reach {size} clones:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The end of the server's log, for errors.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or_default().to_owned()
    }

    /// SIGTERM, then SIGKILL if it has not exited within a minute. Clone servers keep running
    /// (as they do in production); the caller stops them with the pool.
    pub(crate) async fn stop(mut self) {
        let pid = Pid::from_raw(i32::try_from(self.daemon.pid()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, self.daemon.exited()).await.is_err() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = self.daemon.exited().await;
        }
    }
}
