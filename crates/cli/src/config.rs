//! The CLI's own configuration: the file `scion init` writes (server URL and token, mode 0600) and
//! the precedence that picks the values a command uses: a flag beats the environment, which beats
//! the file, which beats the default.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The URL used when nothing else gives one: the server's default listen address.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:2345";
/// The environment variable holding the token.
pub(crate) const TOKEN_ENV: &str = "SCION_TOKEN";
/// DBLab's CLI's variables for the token and the URL, read after Scion's, so that a script
/// written for `dblab` runs unchanged.
pub(crate) const DBLAB_TOKEN_ENV: &str = "DBLAB_VERIFICATION_TOKEN";
pub(crate) const DBLAB_URL_ENV: &str = "DBLAB_INSTANCE_URL";

/// One server the CLI talks to: its URL, token and current branch. The file's top-level keys are
/// the unnamed one; `scion config create` adds named ones (DBLab's environments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Environment {
    /// The server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The branch `scion branch NAME` and `scion switch` moved to (DBLab's `current_branch`);
    /// `main` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_branch: Option<String>,
}

/// The branch every pool has; the current branch until `scion switch` says otherwise.
pub(crate) const MAIN_BRANCH: &str = "main";

impl Environment {
    /// The current branch.
    pub(crate) fn current_branch(&self) -> &str {
        self.current_branch.as_deref().filter(|branch| !branch.is_empty()).unwrap_or(MAIN_BRANCH)
    }
}

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The server's URL (of the unnamed environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The API token (of the unnamed environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The current branch (of the unnamed environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_branch: Option<String>,
    /// The named environment commands use; the unnamed one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_environment: Option<String>,
    /// Named environments (`scion config create|update|view|list|switch|remove`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, Environment>,
}

impl ConfigFile {
    /// The environment commands use: the current named one, else the unnamed one.
    pub(crate) fn active(&self) -> anyhow::Result<Environment> {
        match &self.current_environment {
            Some(id) => self.environments.get(id).cloned().with_context(|| {
                format!(
                    "the current environment {id:?} is not in the file; `scion config switch` to another one"
                )
            }),
            None => Ok(Environment {
                url: self.url.clone(),
                token: self.token.clone(),
                current_branch: self.current_branch.clone(),
            }),
        }
    }

    /// Replaces the environment commands use.
    pub(crate) fn set_active(&mut self, environment: Environment) {
        match &self.current_environment {
            Some(id) => {
                self.environments.insert(id.clone(), environment);
            }
            None => {
                self.url = environment.url;
                self.token = environment.token;
                self.current_branch = environment.current_branch;
            }
        }
    }
}

/// Where the file lives: `--config`/`SCION_CLI_CONFIG`, else `$XDG_CONFIG_HOME/scion/config.toml`,
/// else `$HOME/.config/scion/config.toml`.
pub(crate) fn path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let env_dir = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let base = match (env_dir("XDG_CONFIG_HOME"), env_dir("HOME")) {
        (Some(config), _) => PathBuf::from(config),
        (None, Some(home)) => PathBuf::from(home).join(".config"),
        (None, None) => bail!("neither XDG_CONFIG_HOME nor HOME is set; give --config"),
    };
    Ok(base.join("scion").join("config.toml"))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub(crate) fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("read {}", path.display()));
            }
        };
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// Writes the file with mode 0600 (it holds the token), replacing any old one atomically.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let text = toml::to_string(self).context("serialize the configuration")?;
        let temp = path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            // The mode above applies only to a new file; a leftover temp file keeps its own.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        };
        write().with_context(|| format!("write {}", path.display()))
    }
}

/// The server URL and token a command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub url: String,
    pub token: Option<String>,
}

/// Picks the URL (flag or `SCION_URL`, then `DBLAB_INSTANCE_URL`, then the file, then
/// [`DEFAULT_URL`]) and the token (flag, then `SCION_TOKEN`, then `DBLAB_VERIFICATION_TOKEN`,
/// then the file). `sources` are the URL and the token from flags and the environment, first
/// wins; an empty value counts as unset.
pub(crate) fn resolve(
    urls: &[Option<String>],
    tokens: &[Option<String>],
    file: &Environment,
) -> Endpoint {
    let first = |values: &[Option<String>]| {
        values.iter().flatten().find(|value| !value.is_empty()).cloned()
    };
    let url = first(urls).or_else(|| file.url.clone()).unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = first(tokens).or_else(|| file.token.clone());
    Endpoint { url, token }
}

/// The variable `name`, when set and not empty.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The token from the flag, then `SCION_TOKEN`, then `DBLAB_VERIFICATION_TOKEN`.
pub(crate) fn tokens(flag: Option<&str>) -> [Option<String>; 3] {
    [flag.map(str::to_owned), env(TOKEN_ENV), env(DBLAB_TOKEN_ENV)]
}

/// The URL from the flag or `SCION_URL` (clap reads both), then `DBLAB_INSTANCE_URL`.
pub(crate) fn urls(flag: Option<&str>) -> [Option<String>; 2] {
    [flag.map(str::to_owned), env(DBLAB_URL_ENV)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = Environment {
            url: Some("http://file:1".into()),
            token: Some("file".into()),
            current_branch: None,
        };
        let some = |value: &str| Some(value.to_owned());
        let endpoint = resolve(&[some("http://flag:2")], &[None, some("env")], &file);
        assert_eq!(endpoint, Endpoint { url: "http://flag:2".into(), token: some("env") });
        let endpoint = resolve(&[None, some("http://dblab:3")], &[some(""), some("dblab")], &file);
        assert_eq!(endpoint, Endpoint { url: "http://dblab:3".into(), token: some("dblab") });
        let endpoint = resolve(&[None], &[None], &file);
        assert_eq!(endpoint, Endpoint { url: "http://file:1".into(), token: some("file") });
        let endpoint = resolve(&[], &[], &Environment::default());
        assert_eq!(endpoint, Endpoint { url: DEFAULT_URL.into(), token: None });
    }

    #[test]
    fn the_file_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("scion-cli-config-{}", std::process::id()));
        let path = dir.join("nested").join("config.toml");
        let mut file = ConfigFile {
            url: Some("http://127.0.0.1:2345".into()),
            token: Some("t".into()),
            current_branch: Some("dev".into()),
            ..ConfigFile::default()
        };
        file.environments.insert(
            "prod".into(),
            Environment { url: Some("https://prod".into()), ..Environment::default() },
        );
        file.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), file);
        assert_eq!(file.active().unwrap().current_branch(), "dev");
        file.current_environment = Some("prod".into());
        file.save(&path).unwrap();
        let loaded = ConfigFile::load(&path).unwrap();
        assert_eq!(loaded.active().unwrap().url.as_deref(), Some("https://prod"));
        assert_eq!(loaded.active().unwrap().current_branch(), "main");
        file.current_environment = Some("gone".into());
        assert!(
            format!("{:#}", file.active().unwrap_err()).contains("\"gone\" is not in the file")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "url = \"x\"\nunknown = 1\n").unwrap();
        let error = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(error.contains("unknown field"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());
    }
}
