//! The configuration file and its precedence: defaults < file < environment < flags.
//!
//! One TOML file, sections mirroring DBLab's concepts in snake_case. Unknown keys are errors
//! that name their line. Secrets (the API token) come from the environment or a file, never
//! from flags, and never appear in logs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use engine::config::{CloneServerConfig, CloningConfig, RetentionConfig, SnapshotsConfig};
use engine::{EngineConfig, MinFreeSpace};
use serde::{Deserialize, Serialize};
use storage::BackendConfig;
use webhooks::WebhooksConfig;

use crate::args::Args;

/// DBLab's example configuration listens on 2345.
pub(crate) const DEFAULT_PORT: u16 = 2345;
/// Where the engine keeps its database, sockets, logs and (embedded default) its pool image.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/scion";
/// DBLab's default pool name, so snapshot IDs look familiar.
pub(crate) const DEFAULT_POOL_NAME: &str = "dblab_pool";
/// The embedded pool image's size; the file is sparse, so this is a ceiling.
pub(crate) const DEFAULT_IMAGE_SIZE: &str = "20GiB";
/// The free space kept in the pool: 5 % leaves room for clones' checkpoints and WAL on pools
/// from a test image to a large disk; the engine's own default.
const DEFAULT_MIN_FREE_SPACE: &str = "5%";

/// The environment variable holding the API token.
pub(crate) const TOKEN_ENV: &str = "SCION_VERIFICATION_TOKEN";

/// The file as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// `[server]`.
    pub server: ServerSection,
    /// `[pool]`.
    pub pool: PoolSection,
    /// `[cloning]`.
    pub cloning: CloningConfig,
    /// `[clone]`.
    pub clone: CloneServerConfig,
    /// `[snapshots]`.
    pub snapshots: SnapshotsConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[webhooks]`.
    pub webhooks: WebhooksConfig,
    /// `[retrieval]`: where the data comes from; without it the pool starts with an empty
    /// cluster.
    pub retrieval: Option<retrieval::RetrievalConfig>,
    /// `[tls]`: TLS on clones.
    pub tls: engine::TlsConfig,
}

/// `[server]`: the API listener and the state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// The address the API listens on.
    pub host: IpAddr,
    /// The API port.
    pub port: u16,
    /// A file holding the API token (its first line); `SCION_VERIFICATION_TOKEN` wins.
    pub verification_token_file: Option<PathBuf>,
    /// The engine's state directory.
    pub state_dir: PathBuf,
    /// Refuse `POST /admin/config` (changes through the API); the file and SIGHUP still work.
    pub disable_config_modification: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            verification_token_file: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            disable_config_modification: false,
        }
    }
}

/// `[pool]`: where clones live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PoolSection {
    /// The pool's name, the first part of every snapshot ID.
    pub name: String,
    /// An existing pool; omitted, the engine makes the embedded default (a btrfs image under
    /// the state directory when run as root, a plain directory otherwise).
    pub backend: Option<BackendConfig>,
    /// The embedded image's size, like "20GiB".
    pub image_size: String,
    /// Whether the embedded btrfs image flushes to disk at every commit; `false` trades crash
    /// safety for snapshots and clones several times faster.
    pub image_flush: bool,
    /// The free space kept in the pool, "5%" or "2GiB": below it, operations that write to
    /// the pool (clone create and reset, snapshots, commits, branches) are refused.
    pub min_free_space: String,
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            name: DEFAULT_POOL_NAME.to_owned(),
            backend: None,
            image_size: DEFAULT_IMAGE_SIZE.to_owned(),
            image_flush: true,
            min_free_space: DEFAULT_MIN_FREE_SPACE.to_owned(),
        }
    }
}

/// The configuration the server runs with, after every source is applied and checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The file it was read from, if any: `POST /admin/config` and SIGHUP use it.
    pub path: Option<PathBuf>,
    /// The file as parsed (defaults filled in), for `/admin/config.yaml`.
    pub file: ConfigFile,
    /// Refuse changes through the API.
    pub disable_config_modification: bool,
    /// The API address.
    pub host: IpAddr,
    /// The API port.
    pub port: u16,
    /// The API token; `None` means no authentication.
    pub token: Option<String>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The pool's name.
    pub pool_name: String,
    /// An existing pool, or `None` for the embedded default.
    pub backend: Option<BackendConfig>,
    /// The embedded image's size in bytes.
    pub image_size: u64,
    /// Whether the embedded image flushes at every commit.
    pub image_flush: bool,
    /// The free space kept in the pool.
    pub min_free: MinFreeSpace,
    /// The engine's part.
    pub engine: EngineConfig,
    /// Webhooks.
    pub webhooks: WebhooksConfig,
}

/// Reads the environment through a function, so tests need not touch the process's.
pub(crate) trait Env {
    /// The value of `name`, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug)]
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Config {
    /// Loads the file named by the flags or `SCION_CONFIG` (if any), then applies the
    /// environment and the flags, and checks the result.
    pub(crate) fn load(args: &Args, env: &dyn Env) -> anyhow::Result<Config> {
        let path = args.config.clone().or_else(|| env.var("SCION_CONFIG").map(PathBuf::from));
        let file = match &path {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        let mut config = Config::resolve(file, args, env)?;
        config.path = path;
        Ok(config)
    }

    /// Applies the environment and the flags to a parsed file, and checks the result.
    pub(crate) fn resolve(file: ConfigFile, args: &Args, env: &dyn Env) -> anyhow::Result<Config> {
        let parsed = file.clone();
        let ConfigFile {
            server,
            pool,
            cloning,
            clone,
            snapshots,
            retention,
            webhooks,
            retrieval,
            tls,
        } = file;
        let mut host = server.host;
        let mut port = server.port;
        let mut state_dir = server.state_dir;
        if let Some(value) = env.var("SCION_HOST") {
            host = value
                .parse()
                .with_context(|| format!("SCION_HOST={value:?} is not an IP address"))?;
        }
        if let Some(value) = env.var("SCION_PORT") {
            port = value.parse().with_context(|| format!("SCION_PORT={value:?} is not a port"))?;
        }
        if let Some(value) = env.var("SCION_STATE_DIR") {
            state_dir = PathBuf::from(value);
        }
        host = args.host.unwrap_or(host);
        port = args.port.unwrap_or(port);
        state_dir = args.state_dir.clone().unwrap_or(state_dir);
        if !state_dir.is_absolute() {
            bail!("server.state_dir: {} must be an absolute path", state_dir.display());
        }
        let token = match env.var(TOKEN_ENV) {
            Some(token) => Some(token),
            None => match &server.verification_token_file {
                Some(file) => Some(read_token(file)?),
                None => None,
            },
        };
        let engine = EngineConfig { cloning, clone, snapshots, retention, retrieval, tls };
        engine.validate().context("invalid configuration")?;
        webhooks.validate().context("invalid configuration")?;
        let image_size = parse_size(&pool.image_size).with_context(|| {
            format!("pool.image_size: {:?} is not a size like \"20GiB\"", pool.image_size)
        })?;
        let min_free = parse_min_free(&pool.min_free_space).with_context(|| {
            format!(
                "pool.min_free_space: {:?} is not a share like \"5%\" or a size like \"2GiB\"",
                pool.min_free_space
            )
        })?;
        Ok(Config {
            path: None,
            file: parsed,
            disable_config_modification: server.disable_config_modification,
            host,
            port,
            token,
            state_dir,
            pool_name: pool.name,
            backend: pool.backend,
            image_size,
            image_flush: pool.image_flush,
            min_free,
            engine,
            webhooks,
        })
    }
}

pub(crate) fn read_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read configuration file {}", path.display()))?;
    parse(&text).with_context(|| format!("parse configuration file {}", path.display()))
}

/// Parses the file's text; errors name the line and column.
pub(crate) fn parse(text: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read server.verification_token_file {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        bail!("server.verification_token_file {} is empty", path.display());
    }
    Ok(token)
}

/// Parses an image size: "20GiB", "512MiB", "1TB", "1048576"; at least 64 MiB.
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let bytes = parse_bytes(text)?;
    if bytes < 64 << 20 {
        bail!("at least 64MiB");
    }
    Ok(bytes)
}

/// Parses `[pool] min_free_space`: a share of the pool ("5%") or a size ("2GiB", "0").
fn parse_min_free(text: &str) -> anyhow::Result<MinFreeSpace> {
    if let Some(percent) = text.trim().strip_suffix('%') {
        let percent: f64 = percent.trim().parse().context("no number before %")?;
        if !(0.0..100.0).contains(&percent) {
            bail!("a share from 0% to below 100%");
        }
        return Ok(MinFreeSpace::Percent(percent));
    }
    Ok(MinFreeSpace::Bytes(parse_bytes(text)?))
}

/// Parses "20GiB", "512MiB", "1TB", "1048576".
fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().context("no number")?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown unit {other:?}"),
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        bail!("too large");
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|value| (*value).to_owned())
        }
    }

    fn args(flags: &[&str]) -> Args {
        Args::parse_from(std::iter::once("scion-server").chain(flags.iter().copied()))
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let text = include_str!("../../../config/example.toml");
        let file = parse(text).unwrap();
        let config = Config::resolve(file, &args(&[]), &FakeEnv(HashMap::new())).unwrap();
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.pool_name, "dblab_pool");
        assert_eq!(config.engine.cloning.protection_max_duration_minutes, 10080.0);
        assert_eq!(config.webhooks.hooks.len(), 1);
        assert_eq!(
            config.engine.tls,
            engine::TlsConfig::default(),
            "the example shows the defaults"
        );
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let error = parse("[server]\nport = 1\n\n[cloning]\nmax_idle_minute = 5\n").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("max_idle_minute"), "{message}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let file = parse("[cloning]\nport_from = 7000\nport_to = 6000\n").unwrap();
        let error = Config::resolve(file, &args(&[]), &FakeEnv(HashMap::new())).unwrap_err();
        assert!(format!("{error:#}").contains("cloning.port_from"), "{error:#}");
        let file = parse("[pool]\nimage_size = \"lots\"\n").unwrap();
        let error = Config::resolve(file, &args(&[]), &FakeEnv(HashMap::new())).unwrap_err();
        assert!(format!("{error:#}").contains("pool.image_size"), "{error:#}");
        assert!(parse("[server]\nport = \"x\"\n").is_err());
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let file = parse("[server]\nport = 1111\nhost = \"127.0.0.2\"\n").unwrap();
        let env = FakeEnv(HashMap::from([("SCION_PORT", "2222"), (TOKEN_ENV, "from-env")]));
        let config = Config::resolve(file.clone(), &args(&[]), &env).unwrap();
        assert_eq!(config.port, 2222);
        assert_eq!(config.host, IpAddr::from([127, 0, 0, 2]));
        assert_eq!(config.token.as_deref(), Some("from-env"));
        let config = Config::resolve(file, &args(&["--port", "3333"]), &env).unwrap();
        assert_eq!(config.port, 3333);
    }

    #[test]
    fn min_free_space_parses() {
        assert_eq!(parse_min_free("5%").unwrap(), MinFreeSpace::Percent(5.0));
        assert_eq!(parse_min_free(" 0.5 %").unwrap(), MinFreeSpace::Percent(0.5));
        assert_eq!(parse_min_free("2GiB").unwrap(), MinFreeSpace::Bytes(2 << 30));
        assert_eq!(parse_min_free("0").unwrap(), MinFreeSpace::Bytes(0));
        assert!(parse_min_free("100%").is_err());
        assert!(parse_min_free("-1%").is_err());
        assert!(parse_min_free("lots").is_err());
        let file = parse("[pool]\nmin_free_space = \"half\"\n").unwrap();
        let error = Config::resolve(file, &args(&[]), &FakeEnv(HashMap::new())).unwrap_err();
        assert!(format!("{error:#}").contains("pool.min_free_space"), "{error:#}");
        let default = Config::resolve(ConfigFile::default(), &args(&[]), &FakeEnv(HashMap::new()));
        assert_eq!(default.unwrap().min_free, MinFreeSpace::default());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert!(parse_size("1KiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }
}
