//! The live configuration: reloading the file (SIGHUP) and changing it through the API
//! (`POST /admin/config`) without restarting the engine or any clone.
//!
//! A reload reads and checks the whole file, keeps the running value of every key that needs
//! a restart (the server's here, the engine's in `engine::split_reconfiguration`), and hands
//! the engine its new part. A change through the API writes the file first, atomically, with
//! the previous one kept as `<file>.<YYYYMMDDHHMMSS>.bak` (the newest [`KEPT_BACKUPS`]), and
//! puts the previous file back if the engine refuses the change. Which keys apply when is in
//! `docs/configuration.md`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use engine::Engine;
use http_api::{ConfigAdmin, ConfigRefusal};
use tracing::{info, warn};

use crate::args::Args;
use crate::config::{self, Config, ProcessEnv};
use crate::logbuf::LogRing;
use crate::{projection, yaml};

/// Backups of the file kept beside it.
const KEPT_BACKUPS: usize = 10;

/// The running configuration and the file it came from.
#[derive(Debug)]
pub(crate) struct LiveConfig {
    args: Args,
    engine: Engine,
    log: LogRing,
    /// As last applied, with the restart-only keys as at the start.
    current: Mutex<Config>,
    /// One reload or change at a time: each reads, writes and applies the file whole.
    serial: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Replaced whole only: a panic cannot leave the value half-changed.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The values the log masks: the API token, webhook secrets, the source password.
pub(crate) fn secrets(config: &Config) -> Vec<String> {
    let mut secrets: Vec<String> = config.token.iter().cloned().collect();
    secrets.extend(config.webhooks.hooks.iter().map(|hook| hook.secret.clone()));
    let source = config.engine.retrieval.as_ref().and_then(|retrieval| retrieval.source.as_ref());
    let from_env = source
        .and_then(|source| source.password_env.as_deref())
        .and_then(|name| std::env::var(name).ok());
    let from_file = source
        .and_then(|source| source.password_file.as_deref())
        .and_then(|file| retrieval::config::read_password_file(file).ok());
    secrets.extend(from_env.into_iter().chain(from_file).filter(|secret| !secret.is_empty()));
    secrets
}

/// The server's keys that need a restart: what differs is reported and keeps its running
/// value in the returned configuration.
fn keep_restart_only(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut keys = Vec::new();
    macro_rules! keep {
        ($field:ident, $key:literal) => {
            if running.$field != new.$field {
                keys.push($key);
                new.$field = running.$field.clone();
            }
        };
    }
    keep!(host, "server.host");
    keep!(port, "server.port");
    keep!(state_dir, "server.state_dir");
    keep!(token, "server.verification_token_file");
    keep!(pool_name, "pool.name");
    keep!(backend, "pool.backend");
    keep!(image_size, "pool.image_size");
    keep!(image_flush, "pool.image_flush");
    keep!(min_free, "pool.min_free_space");
    keep!(webhooks, "webhooks");
    (new, keys)
}

impl LiveConfig {
    pub(crate) fn new(args: Args, engine: Engine, log: LogRing, config: Config) -> LiveConfig {
        log.set_secrets(secrets(&config));
        LiveConfig { args, engine, log, current: Mutex::new(config), serial: Mutex::new(()) }
    }

    /// Reads the file again and applies it (SIGHUP). On any error the running configuration
    /// stays. Returns the keys whose change waits for a restart.
    pub(crate) fn reload_file(&self) -> anyhow::Result<Vec<&'static str>> {
        let _serial = lock(&self.serial);
        let path = lock(&self.current).path.clone().context(
            "reload: the server runs without a configuration file (--config or SCION_CONFIG)",
        )?;
        let file = config::read_file(&path)?;
        let new =
            Config::resolve(file, &self.args, &ProcessEnv).context("invalid configuration")?;
        self.apply_config(new, path).context("apply the configuration")
    }

    /// Puts `new` in place: the engine first (which may refuse), then the server's own.
    fn apply_config(&self, new: Config, path: PathBuf) -> Result<Vec<&'static str>, engine::Error> {
        let running = lock(&self.current).clone();
        let (mut new, mut restart_needed) = keep_restart_only(&running, new);
        let reconfigured = self.engine.reconfigure(&new.engine)?;
        restart_needed.extend(reconfigured.restart_needed);
        new.engine = (*self.engine.config()).clone();
        new.path = Some(path);
        self.log.set_secrets(secrets(&new));
        *lock(&self.current) = new;
        for key in &restart_needed {
            warn!(key, "changed in the file; applies at the next restart");
        }
        info!(changed = reconfigured.changed, "configuration file applied");
        Ok(restart_needed)
    }

    fn change(&self, projection: &serde_json::Value) -> Result<(), ConfigRefusal> {
        let _serial = lock(&self.serial);
        let (path, disabled, state_dir) = {
            let current = lock(&self.current);
            (current.path.clone(), current.disable_config_modification, current.state_dir.clone())
        };
        if disabled {
            return Err(ConfigRefusal::Refused(
                "configuration changes through the API are disabled \
                 ([server] disable_config_modification = true)"
                    .to_owned(),
            ));
        }
        let path = path.ok_or_else(|| {
            ConfigRefusal::Refused(
                "the server runs without a configuration file (--config or SCION_CONFIG): \
                 there is no file to change"
                    .to_owned(),
            )
        })?;
        let failed = |error: anyhow::Error| ConfigRefusal::Failed(format!("{error:#}"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))
            .map_err(failed)?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|error| ConfigRefusal::Invalid(format!("the configuration file: {error}")))?;
        let physical = self
            .engine
            .config()
            .retrieval
            .as_ref()
            .is_some_and(|retrieval| retrieval.physical.is_some());
        let password_file = state_dir.join(SOURCE_PASSWORD_FILE);
        projection::apply(&mut table, projection, physical, &password_file)
            .map_err(|problems| ConfigRefusal::Invalid(problems.join("; ")))?;
        let new_text = toml::to_string(&table)
            .map_err(|error| ConfigRefusal::Failed(format!("write the configuration: {error}")))?;
        let invalid = |error: anyhow::Error| ConfigRefusal::Invalid(format!("{error:#}"));
        let file = config::parse(&new_text).map_err(invalid)?;
        let new = Config::resolve(file, &self.args, &ProcessEnv)
            .context("invalid configuration")
            .map_err(invalid)?;
        // The password first, so the configuration naming its file never runs without it; the
        // previous one comes back if the engine refuses the change.
        let previous_password = std::fs::read_to_string(&password_file).ok();
        let password = projection::source_password(projection);
        if let Some(password) = &password {
            write_secret(&password_file, password).map_err(failed)?;
        }
        let restore_password = || {
            let restored = match &previous_password {
                Some(previous) => write_secret(&password_file, previous),
                None => std::fs::remove_file(&password_file).map_err(anyhow::Error::from),
            };
            if let Err(error) = restored {
                warn!(error = %format!("{error:#}"), "failed to put the previous source password back");
            }
        };
        if new_text == text {
            return Ok(());
        }
        let backup = match write_with_backup(&path, &new_text) {
            Ok(backup) => backup,
            Err(error) => {
                if password.is_some() {
                    restore_password();
                }
                return Err(failed(error));
            }
        };
        info!(backup = %backup.display(), "configuration file written; the previous one kept");
        if let Err(error) = self.apply_config(new, path.clone()) {
            // The engine refused: the file goes back to what runs.
            if let Err(restore) = write_atomically(&path, &text) {
                warn!(error = %format!("{restore:#}"), "failed to restore the configuration file; the previous one is in its backup");
            }
            if password.is_some() {
                restore_password();
            }
            return Err(match error {
                engine::Error::InvalidInput(message) | engine::Error::Refused(message) => {
                    ConfigRefusal::Invalid(message)
                }
                other => ConfigRefusal::Failed(other.to_string()),
            });
        }
        Ok(())
    }
}

impl ConfigAdmin for LiveConfig {
    fn changes_disabled(&self) -> bool {
        lock(&self.current).disable_config_modification
    }

    fn modification_disabled(&self) -> bool {
        let current = lock(&self.current);
        current.disable_config_modification || current.path.is_none()
    }

    fn projection(&self) -> serde_json::Value {
        projection::project(&self.engine.config())
    }

    fn yaml(&self) -> String {
        let current = lock(&self.current).clone();
        let running = self.engine.config();
        // The file's keys with what runs: the flags' and environment's server values, and
        // the engine's live configuration.
        let mut file = current.file;
        file.server.host = current.host;
        file.server.port = current.port;
        file.server.state_dir = current.state_dir;
        file.cloning = running.cloning.clone();
        file.clone = running.clone.clone();
        file.snapshots = running.snapshots.clone();
        file.retention = running.retention.clone();
        file.retrieval = running.retrieval.clone();
        file.tls = running.tls.clone();
        match serde_json::to_value(&file) {
            Ok(mut value) => {
                yaml::mask(&mut value);
                yaml::to_yaml(&value)
            }
            Err(error) => format!("# the configuration could not be shown: {error}\n"),
        }
    }

    fn apply(&self, projection: serde_json::Value) -> Result<serde_json::Value, ConfigRefusal> {
        self.change(&projection)?;
        Ok(self.projection())
    }
}

/// Writes `text` to `path` atomically (a temporary file beside it, synced, renamed over it),
/// after copying the current file to a new backup; returns the backup's path.
fn write_with_backup(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let mut backup = PathBuf::from(format!("{}.{stamp}.bak", path.display()));
    // Two changes in one second: the earlier backup stays.
    let mut serial = 1;
    while backup.exists() {
        backup = PathBuf::from(format!("{}.{stamp}-{serial}.bak", path.display()));
        serial += 1;
    }
    std::fs::copy(path, &backup)
        .with_context(|| format!("keep the previous configuration as {}", backup.display()))?;
    write_atomically(path, text)?;
    prune_backups(path);
    Ok(backup)
}

/// Where `POST /admin/config` keeps a source password DBLab's UI sends, under the state
/// directory; the configuration file names it as `[retrieval.source] password_file`.
const SOURCE_PASSWORD_FILE: &str = "secrets/source-password";

/// Writes `secret` to `path` atomically, readable by root only (the directory too).
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("set the mode of {}", dir.display()))?;
    }
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("create {}", temporary.display()))?;
    file.write_all(secret.as_bytes()).with_context(|| format!("write {}", temporary.display()))?;
    file.write_all(b"\n").with_context(|| format!("write {}", temporary.display()))?;
    file.sync_all().with_context(|| format!("sync {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("replace {} with {}", path.display(), temporary.display()))
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    let permissions =
        std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?.permissions();
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("create {}", temporary.display()))?;
    file.set_permissions(permissions)
        .with_context(|| format!("set the mode of {}", temporary.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("write {}", temporary.display()))?;
    file.sync_all().with_context(|| format!("sync {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("replace {} with {}", path.display(), temporary.display()))
}

/// Removes all but the newest [`KEPT_BACKUPS`] backups of `path`; failures are logged only.
fn prune_backups(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|name| name.to_str()))
    else {
        return;
    };
    let Ok(entries) =
        std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
    else {
        return;
    };
    let prefix = format!("{name}.");
    let mut backups: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|candidate| {
            candidate
                .file_name()
                .and_then(|file| file.to_str())
                .is_some_and(|file| file.starts_with(&prefix) && file.ends_with(".bak"))
        })
        .collect();
    // The timestamp sorts them oldest first.
    backups.sort();
    let excess = backups.len().saturating_sub(KEPT_BACKUPS);
    for old in backups.into_iter().take(excess) {
        if let Err(error) = std::fs::remove_file(&old) {
            warn!(file = %old.display(), %error, "failed to remove an old configuration backup");
        }
    }
}
