//! `rds-refresh`'s configuration file: DBLab's sections and keys (`source`, `clone`, `dblab`,
//! `aws`) in TOML with snake_case names, `${VAR}` replaced from the environment first, unknown
//! keys refused; and the state file that names the temporary instance while it exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) source: Source,
    pub(crate) clone: CloneSpec,
    pub(crate) dblab: Dblab,
    pub(crate) aws: Aws,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    /// `rds` or `aurora-cluster`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) identifier: String,
    pub(crate) db_name: String,
    pub(crate) username: String,
    pub(crate) password: String,
    /// Restore this snapshot instead of the newest automated one.
    #[serde(default)]
    pub(crate) snapshot_identifier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloneSpec {
    pub(crate) instance_class: String,
    #[serde(default)]
    pub(crate) subnet_group: Option<String>,
    #[serde(default)]
    pub(crate) security_groups: Vec<String>,
    #[serde(default)]
    pub(crate) publicly_accessible: bool,
    #[serde(default)]
    pub(crate) enable_iam_auth: bool,
    #[serde(default)]
    pub(crate) parameter_group: Option<String>,
    #[serde(default)]
    pub(crate) option_group: Option<String>,
    /// Aurora: the restored cluster's parameter group.
    #[serde(default)]
    pub(crate) cluster_parameter_group: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<u16>,
    #[serde(default)]
    pub(crate) storage_type: Option<String>,
    #[serde(default)]
    pub(crate) deletion_protection: bool,
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    /// How long a temporary instance may live before any run deletes it (default 48h).
    #[serde(default = "default_max_age", with = "humantime_serde_shim")]
    pub(crate) max_age: Duration,
    /// Scion's: reach the temporary instance at this host instead of its endpoint address (an
    /// SSH tunnel, a proxy, or a test's local server).
    #[serde(default)]
    pub(crate) connect_host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Dblab {
    pub(crate) api_endpoint: String,
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) insecure: bool,
    #[serde(default = "default_poll", with = "humantime_serde_shim")]
    pub(crate) poll_interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde_shim")]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Aws {
    pub(crate) region: String,
    /// Another RDS endpoint (LocalStack, moto, a VPC endpoint).
    #[serde(default)]
    pub(crate) endpoint: Option<String>,
}

fn default_max_age() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_poll() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// Durations as humantime strings (`"30s"`, `"4h"`).
mod humantime_serde_shim {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Replaces each `${NAME}` with the variable's value; an unset variable is an error.
pub(crate) fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| anyhow!("unclosed ${{ in the configuration"))?;
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| anyhow!("${{{name}}}: the variable is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let text = expand(&text, |name| std::env::var(name).ok())?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.source.kind.as_str() {
            "rds" | "aurora-cluster" => {}
            other => bail!("source.type {other:?}: expected \"rds\" or \"aurora-cluster\""),
        }
        for (name, value) in [
            ("source.identifier", &self.source.identifier),
            ("source.db_name", &self.source.db_name),
            ("source.username", &self.source.username),
            ("source.password", &self.source.password),
            ("clone.instance_class", &self.clone.instance_class),
            ("dblab.api_endpoint", &self.dblab.api_endpoint),
            ("dblab.token", &self.dblab.token),
            ("aws.region", &self.aws.region),
        ] {
            if value.trim().is_empty() {
                bail!("{name} must be set");
            }
        }
        if self.dblab.poll_interval.is_zero() || self.clone.max_age.is_zero() {
            bail!("dblab.poll_interval and clone.max_age must be positive");
        }
        Ok(())
    }
}

/// The state file, `<state dir>/rds-refresh.state` (DBLab's fields; mode 0600): written before
/// the temporary instance is made, removed once it is gone, replayed by the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) clone_id: String,
    pub(crate) is_cluster: bool,
    pub(crate) aws_region: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) delete_after: DateTime<Utc>,
    pub(crate) source_id: String,
}

pub(crate) fn state_path(dir: &Path) -> PathBuf {
    dir.join("rds-refresh.state")
}

impl State {
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = state_path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("read {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Writes the file whole (a temporary file renamed over it) and flushed, so a crash leaves
    /// the old state or the new one.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = state_path(dir);
        let temporary = path.with_extension("state.tmp");
        let text = serde_json::to_string_pretty(self).context("encode the state")?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("write {}", temporary.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("write {}", path.display()))
    }

    pub(crate) fn clear(dir: &Path) -> anyhow::Result<()> {
        let path = state_path(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("remove {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_expanded_and_must_exist() {
        let lookup = |name: &str| (name == "PW").then(|| "s3cret".to_owned());
        assert_eq!(expand("password = \"${PW}\"", lookup).unwrap(), "password = \"s3cret\"");
        assert_eq!(expand("no variables $HOME", lookup).unwrap(), "no variables $HOME");
        assert!(expand("${MISSING}", lookup).unwrap_err().to_string().contains("MISSING"));
        assert!(expand("${PW", lookup).is_err());
    }

    #[test]
    fn the_example_parses_and_other_types_are_refused() {
        let text = r#"
            [source]
            type = "rds"
            identifier = "production-db"
            db_name = "app"
            username = "postgres"
            password = "x"
            [clone]
            instance_class = "db.t3.medium"
            security_groups = ["sg-1"]
            tags = { team = "dba" }
            max_age = "24h"
            [dblab]
            api_endpoint = "http://127.0.0.1:2345"
            token = "t"
            poll_interval = "10s"
            [aws]
            region = "eu-west-1"
        "#;
        let config: Config = toml::from_str(text).unwrap();
        config.check().unwrap();
        assert_eq!(config.clone.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(config.dblab.timeout, Duration::from_secs(4 * 3600));
        let aurora: Config =
            toml::from_str(&text.replace("\"rds\"", "\"aurora-cluster\"")).unwrap();
        aurora.check().unwrap();
        let other: Config = toml::from_str(&text.replace("\"rds\"", "\"mysql\"")).unwrap();
        assert!(other.check().unwrap_err().to_string().contains("expected \"rds\""));
        assert!(
            toml::from_str::<Config>(&text.replace("[aws]", "[aws]\nprofile = \"x\"")).is_err()
        );
    }

    #[test]
    fn the_state_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("rds-state-{}", std::process::id()));
        let now = Utc::now();
        let state = State {
            clone_id: "dblab-refresh-1".to_owned(),
            is_cluster: false,
            aws_region: "eu-west-1".to_owned(),
            created_at: now,
            delete_after: now,
            source_id: "prod".to_owned(),
        };
        assert_eq!(State::read(&dir).unwrap(), None);
        state.write(&dir).unwrap();
        assert_eq!(State::read(&dir).unwrap(), Some(state));
        let mode = std::fs::metadata(state_path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        State::clear(&dir).unwrap();
        State::clear(&dir).unwrap();
        assert_eq!(State::read(&dir).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
