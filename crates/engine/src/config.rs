//! The engine's part of the configuration file: cloning, leases, idle cleanup, clone
//! servers and snapshot retention.
//!
//! Section and key names mirror DBLab Engine's concepts in snake_case. Every field has a named
//! default, so an empty section is valid; [`EngineConfig::validate`] rejects values that parse
//! but make no sense, with a message that names the key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default protection lease when a request asks for protection without a duration:
/// 24 hours, as in DBLab's example configuration.
pub const DEFAULT_PROTECTION_LEASE_MINUTES: f64 = 1440.0;
/// No cap on leases by default.
pub const DEFAULT_PROTECTION_MAX_MINUTES: f64 = 0.0;
/// Warn a day before a lease ends, as DBLab does.
pub const DEFAULT_PROTECTION_WARNING_MINUTES: f64 = 1440.0;
/// DBLab checks leases and idleness every 5 minutes.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// Idle clones are destroyed after 2 hours by default, as in DBLab's example configuration.
pub const DEFAULT_MAX_IDLE_MINUTES: f64 = 120.0;
/// Snapshots kept by count-based retention.
pub const DEFAULT_RETENTION_LIMIT: usize = 10;
/// The first port of the clone range.
pub const DEFAULT_PORT_FROM: u16 = 6000;
/// The last port of the clone range: 1,000 ports, one per clone (DBLab's default is 100).
pub const DEFAULT_PORT_TO: u16 = 6999;
/// The most clones the warm pool may keep: each is a running server waiting for a user.
pub const MAX_WARM_POOL_SIZE: usize = 32;
/// The superuser the engine manages instances as.
pub const DEFAULT_ADMIN_ROLE: &str = "postgres";
/// The major used when the engine creates an empty cluster itself.
pub const DEFAULT_INITDB_MAJOR: u8 = 17;

/// The engine's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Clones: ports, leases, idle cleanup.
    pub cloning: CloningConfig,
    /// The Postgres servers of clones.
    pub clone: CloneServerConfig,
    /// Snapshots: retention.
    pub snapshots: SnapshotsConfig,
    /// Protection of snapshots and branches, and the sweeper for unused ones.
    pub retention: RetentionConfig,
    /// Retrieval of data from a source; without it the pool starts with an empty cluster.
    pub retrieval: Option<retrieval::RetrievalConfig>,
    /// TLS on clones: the certificate authority and the clones' certificates.
    pub tls: TlsConfig,
}

/// Server certificates last 90 days, as the public web's do.
pub const DEFAULT_TLS_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// A certificate is reissued 30 days before it expires.
pub const DEFAULT_TLS_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates are checked every hour.
pub const DEFAULT_TLS_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// `[tls]`: TLS on every clone (`docs/tls.md`). Read at start only: a reload keeps the running
/// section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Every clone's server has TLS on with a certificate for `cloning.access_host`, signed by
    /// the engine's CA.
    pub enabled: bool,
    /// Password logins without TLS are accepted too (psql's default `sslmode=prefer` uses TLS
    /// when offered); `false` refuses every connection without TLS.
    pub allow_plain: bool,
    /// A CA certificate (PEM) to sign with instead of the engine's own, with `ca_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_file: Option<PathBuf>,
    /// The given CA's private key (PEM, PKCS#8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_key_file: Option<PathBuf>,
    /// How long a server or client certificate is valid.
    #[serde(with = "humantime_serde_compat")]
    pub validity: Duration,
    /// A server certificate this close to its end is reissued and its server reloaded.
    #[serde(with = "humantime_serde_compat")]
    pub renew_before: Duration,
    /// How often the servers' certificates are checked.
    #[serde(with = "humantime_serde_compat")]
    pub check_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            allow_plain: true,
            ca_cert_file: None,
            ca_key_file: None,
            validity: DEFAULT_TLS_VALIDITY,
            renew_before: DEFAULT_TLS_RENEW_BEFORE,
            check_interval: DEFAULT_TLS_CHECK_INTERVAL,
        }
    }
}

impl TlsConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        if self.ca_cert_file.is_some() != self.ca_key_file.is_some() {
            return Err(invalid("tls.ca_cert_file", "give both ca_cert_file and ca_key_file"));
        }
        if self.validity < Duration::from_secs(60) {
            return Err(invalid("tls.validity", "must be at least 1m"));
        }
        if self.renew_before >= self.validity {
            return Err(invalid("tls.renew_before", "must be shorter than tls.validity"));
        }
        if self.check_interval < Duration::from_millis(100) {
            return Err(invalid("tls.check_interval", "must be at least 100ms"));
        }
        Ok(())
    }
}

/// `[cloning]`: how clones are made, protected and cleaned up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloningConfig {
    /// The host name or address clients use to reach clones; shown in connection strings.
    pub access_host: String,
    /// The first port of the range clones listen on.
    pub port_from: u16,
    /// The last port of the range clones listen on.
    pub port_to: u16,
    /// A clone with no sessions and no activity for this long, and not protected, is
    /// destroyed; 0 turns idle cleanup off. Minutes, as in DBLab; fractions are allowed.
    pub max_idle_minutes: f64,
    /// The lease given when protection is asked for without a duration; 0 means forever.
    pub protection_lease_duration_minutes: f64,
    /// The longest lease; longer requests are silently capped; 0 means no cap.
    pub protection_max_duration_minutes: f64,
    /// How long before a lease ends the `clone_protection_expiring` webhook fires.
    pub protection_expiry_warning_minutes: f64,
    /// How often leases are checked.
    #[serde(with = "humantime_serde_compat")]
    pub protection_check_interval: Duration,
    /// How often clones are checked for idleness.
    #[serde(with = "humantime_serde_compat")]
    pub idle_check_interval: Duration,
    /// Scale to zero: a clone with no sessions and no activity for this long, and not
    /// protected, is stopped (its dataset, port and credentials stay; the first connection to
    /// its port starts it again, `docs/scale-to-zero.md`); 0 turns it off. Checked every
    /// `idle_check_interval`, like `max_idle_minutes`, which destroys.
    #[serde(with = "humantime_serde_compat")]
    pub stop_idle_after: Duration,
    /// Keep the passwords of the source's login roles instead of removing them.
    pub keep_user_passwords: bool,
    /// Clones kept started ahead of demand on the head of `main`, so that a create only sets up
    /// the clone's role; 0 turns the warm pool off. Each holds a port from the range and a
    /// server's memory while it waits, and gives its port up when a create needs it.
    pub warm_pool_size: usize,
}

impl Default for CloningConfig {
    fn default() -> Self {
        CloningConfig {
            access_host: "127.0.0.1".to_owned(),
            port_from: DEFAULT_PORT_FROM,
            port_to: DEFAULT_PORT_TO,
            max_idle_minutes: DEFAULT_MAX_IDLE_MINUTES,
            protection_lease_duration_minutes: DEFAULT_PROTECTION_LEASE_MINUTES,
            protection_max_duration_minutes: DEFAULT_PROTECTION_MAX_MINUTES,
            protection_expiry_warning_minutes: DEFAULT_PROTECTION_WARNING_MINUTES,
            protection_check_interval: DEFAULT_CHECK_INTERVAL,
            idle_check_interval: DEFAULT_CHECK_INTERVAL,
            stop_idle_after: Duration::ZERO,
            keep_user_passwords: false,
            warm_pool_size: 0,
        }
    }
}

/// How TCP logins to clones authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostAuthMethod {
    /// SCRAM-SHA-256 (the default).
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5, for old clients.
    Md5,
    /// No password: for trusted networks only.
    Trust,
}

/// `[clone]`: the Postgres server of each clone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloneServerConfig {
    /// The OS user servers run as; never root.
    pub os_user: String,
    /// The superuser the engine manages instances as, trusted over the private socket.
    pub admin_role: String,
    /// Addresses clone servers listen on.
    pub listen_addresses: String,
    /// `shared_buffers` of each clone.
    pub shared_buffers: String,
    /// `max_connections` of each clone.
    pub max_connections: u32,
    /// How TCP logins authenticate.
    pub host_auth: HostAuthMethod,
    /// Directories of Postgres binaries by major (`17 = "/usr/lib/postgresql/17/bin"`),
    /// searched before the installed ones.
    pub bin_dirs: BTreeMap<String, PathBuf>,
    /// The major used when the engine creates an empty cluster in an empty pool.
    pub initdb_major: u8,
    /// Further settings for every clone (`work_mem = "8MB"`).
    pub settings: BTreeMap<String, String>,
    /// How long a clone's server may take to start, crash recovery included.
    #[serde(with = "humantime_serde_compat")]
    pub start_timeout: Duration,
    /// The CPU limit of each clone, in cores (`1.5`), unless its request sets one; none by
    /// default (docs/quotas.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// The memory limit of each clone (`"512MB"`, binary units), unless its request sets one;
    /// none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The disk quota of each clone (`"20GB"`: at most that many bytes referenced by the
    /// clone's dataset, its snapshot's data included), unless its request sets one; none by
    /// default. btrfs pools turn quota on when a quota is first set (docs/quotas.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}

impl Default for CloneServerConfig {
    fn default() -> Self {
        CloneServerConfig {
            os_user: "postgres".to_owned(),
            admin_role: DEFAULT_ADMIN_ROLE.to_owned(),
            listen_addresses: "127.0.0.1".to_owned(),
            shared_buffers: "32MB".to_owned(),
            max_connections: 50,
            host_auth: HostAuthMethod::default(),
            bin_dirs: BTreeMap::new(),
            initdb_major: DEFAULT_INITDB_MAJOR,
            settings: BTreeMap::new(),
            start_timeout: Duration::from_secs(120),
            cpu: None,
            memory: None,
            disk: None,
        }
    }
}

impl CloneServerConfig {
    /// The limits of a clone whose request sets none (`cpu`, `memory`, `disk`).
    pub fn default_limits(&self) -> Result<crate::quota::CloneLimits, InvalidConfig> {
        let bytes = |value: &Option<String>, key| {
            value
                .as_deref()
                .map(crate::quota::parse_bytes)
                .transpose()
                .map_err(|message| invalid(key, message))
        };
        let memory = bytes(&self.memory, "clone.memory")?;
        let disk = bytes(&self.disk, "clone.disk")?;
        let limits = crate::quota::CloneLimits { cpu: self.cpu, memory, disk };
        limits.check().map_err(|message| {
            let key = ["cpu", "memory", "disk"]
                .into_iter()
                .find(|field| message.starts_with(field))
                .unwrap_or("memory");
            invalid(&format!("clone.{key}"), message)
        })?;
        Ok(limits)
    }

    /// The configured binary directories with their majors checked.
    pub fn bin_dirs(&self) -> Result<Vec<(postgres::PgMajor, PathBuf)>, InvalidConfig> {
        self.bin_dirs
            .iter()
            .map(|(major, dir)| {
                let major = major
                    .parse::<u8>()
                    .ok()
                    .and_then(|major| postgres::PgMajor::new(major).ok())
                    .ok_or_else(|| {
                        invalid("clone.bin_dirs", format!("{major:?} is not a major from 13 to 18"))
                    })?;
                Ok((major, dir.clone()))
            })
            .collect()
    }
}

/// `[snapshots]`: retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Keep at most this many snapshots; older ones without clones and not protected are
    /// deleted after each new snapshot. 0 turns retention off.
    pub retention_limit: usize,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig { retention_limit: DEFAULT_RETENTION_LIMIT }
    }
}

/// DBLab deletes at most this many snapshots and branches per sweep.
pub const DEFAULT_MAX_DELETIONS_PER_TICK: usize = 50;

/// `[retention]`: protection of snapshots and branches, and the sweeper that deletes unused
/// ones (DBLab's `retention` section).
///
/// The sweeper always deletes what a user scheduled (`deleteAt`) once it is safe; it schedules
/// unused snapshots and branches itself only when their minutes are above 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// A commit that nothing uses (no clone, no child, no branch) is scheduled for deletion
    /// this long after the sweeper first sees it unused; 0 turns this off.
    pub unused_snapshot_minutes: f64,
    /// A branch without clones and without branches forked from it is scheduled for deletion
    /// this long after the sweeper first sees it unused; 0 turns this off.
    pub unused_branch_minutes: f64,
    /// The most snapshots and branches one sweep deletes.
    pub max_deletions_per_tick: usize,
    /// How often the sweeper runs.
    #[serde(with = "humantime_serde_compat")]
    pub check_interval: Duration,
    /// The longest protection of a snapshot or branch; 0 means no cap.
    pub protection_max_duration_minutes: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            unused_snapshot_minutes: 0.0,
            unused_branch_minutes: 0.0,
            max_deletions_per_tick: DEFAULT_MAX_DELETIONS_PER_TICK,
            check_interval: DEFAULT_CHECK_INTERVAL,
            protection_max_duration_minutes: 0.0,
        }
    }
}

/// A configuration value that parses but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidConfig {
    /// The key, as `section.key`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> InvalidConfig {
    InvalidConfig { key: key.to_owned(), message: message.into() }
}

impl EngineConfig {
    /// Checks the values that types alone cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let cloning = &self.cloning;
        if cloning.port_from == 0 || cloning.port_from > cloning.port_to {
            return Err(invalid(
                "cloning.port_from",
                format!(
                    "the port range {}..={} is empty or starts at 0",
                    cloning.port_from, cloning.port_to
                ),
            ));
        }
        let ports = usize::from(cloning.port_to - cloning.port_from) + 1;
        if cloning.warm_pool_size > MAX_WARM_POOL_SIZE || cloning.warm_pool_size >= ports {
            return Err(invalid(
                "cloning.warm_pool_size",
                format!(
                    "{} is more than {MAX_WARM_POOL_SIZE} or leaves no port of the {ports} in \
                     the range for clones",
                    cloning.warm_pool_size
                ),
            ));
        }
        if cloning.access_host.trim().is_empty() {
            return Err(invalid("cloning.access_host", "must not be empty"));
        }
        // The settings go into every clone's postgresql.conf: checked like a request's
        // extra_conf, since the API (POST /admin/config) writes them too.
        postgres::conf::check_settings(
            self.clone.settings.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .map_err(|error| invalid("clone.settings", error.to_string()))?;
        for (key, minutes) in [
            ("cloning.max_idle_minutes", cloning.max_idle_minutes),
            (
                "cloning.protection_lease_duration_minutes",
                cloning.protection_lease_duration_minutes,
            ),
            ("cloning.protection_max_duration_minutes", cloning.protection_max_duration_minutes),
            (
                "cloning.protection_expiry_warning_minutes",
                cloning.protection_expiry_warning_minutes,
            ),
            ("retention.unused_snapshot_minutes", self.retention.unused_snapshot_minutes),
            ("retention.unused_branch_minutes", self.retention.unused_branch_minutes),
            (
                "retention.protection_max_duration_minutes",
                self.retention.protection_max_duration_minutes,
            ),
        ] {
            if !minutes.is_finite() || minutes < 0.0 {
                return Err(invalid(key, format!("{minutes} is not a number of minutes >= 0")));
            }
        }
        let max = cloning.protection_max_duration_minutes;
        if max > 0.0 && cloning.protection_lease_duration_minutes > max {
            return Err(invalid(
                "cloning.protection_lease_duration_minutes",
                format!("the default lease exceeds protection_max_duration_minutes ({max})"),
            ));
        }
        for (key, interval) in [
            ("cloning.protection_check_interval", cloning.protection_check_interval),
            ("cloning.idle_check_interval", cloning.idle_check_interval),
            ("retention.check_interval", self.retention.check_interval),
        ] {
            if interval < Duration::from_millis(100) {
                return Err(invalid(key, "must be at least 100ms"));
            }
        }
        if self.retention.max_deletions_per_tick == 0 {
            return Err(invalid("retention.max_deletions_per_tick", "must be at least 1"));
        }
        let clone = &self.clone;
        if clone.os_user == "root" || clone.os_user.is_empty() {
            return Err(invalid("clone.os_user", "Postgres must run as an unprivileged user"));
        }
        if clone.max_connections == 0 {
            return Err(invalid("clone.max_connections", "must be at least 1"));
        }
        clone.bin_dirs()?;
        clone.default_limits()?;
        self.tls.validate()?;
        if let Some(retrieval) = &self.retrieval {
            retrieval.validate().map_err(|error| invalid("retrieval", error.to_string()))?;
        }
        if !(13..=18).contains(&clone.initdb_major) {
            return Err(invalid("clone.initdb_major", "Scion supports PostgreSQL 13 to 18"));
        }
        for address in clone.listen_addresses.split(',').map(str::trim) {
            if address != "*" && address != "localhost" && address.parse::<IpAddr>().is_err() {
                return Err(invalid(
                    "clone.listen_addresses",
                    format!("{address:?} is not an IP address, `*` or `localhost`"),
                ));
            }
        }
        Ok(())
    }

    /// The address the port pool probes: where clone servers will bind.
    pub fn probe_address(&self) -> IpAddr {
        self.clone
            .listen_addresses
            .split(',')
            .map(str::trim)
            .find_map(|address| address.parse().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}

/// `minutes` as a duration; whole milliseconds, saturating.
pub fn minutes(minutes: f64) -> Duration {
    Duration::from_millis((minutes * 60_000.0).clamp(0.0, u64::MAX as f64) as u64)
}

/// Durations written as humantime strings ("5m", "30s").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"5m\": {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = EngineConfig::default();
        config.cloning.port_from = 7000;
        config.cloning.port_to = 6000;
        assert_eq!(config.validate().unwrap_err().key, "cloning.port_from");

        let mut config = EngineConfig::default();
        config.cloning.protection_max_duration_minutes = 60.0;
        assert_eq!(config.validate().unwrap_err().key, "cloning.protection_lease_duration_minutes");

        let mut config = EngineConfig::default();
        config.clone.os_user = "root".to_owned();
        assert_eq!(config.validate().unwrap_err().key, "clone.os_user");

        let mut config = EngineConfig::default();
        config.clone.listen_addresses = "127.0.0.1, nonsense".to_owned();
        assert_eq!(config.validate().unwrap_err().key, "clone.listen_addresses");

        let mut config = EngineConfig::default();
        config.clone.memory = Some("lots".to_owned());
        assert_eq!(config.validate().unwrap_err().key, "clone.memory");
        config.clone.memory = Some("512MB".to_owned());
        config.clone.cpu = Some(0.0);
        assert_eq!(config.validate().unwrap_err().key, "clone.cpu");
        config.clone.cpu = Some(1.5);
        assert_eq!(
            config.clone.default_limits().unwrap(),
            crate::quota::CloneLimits { cpu: Some(1.5), memory: Some(512 << 20), disk: None }
        );
        config.clone.disk = Some("lots".to_owned());
        assert_eq!(config.validate().unwrap_err().key, "clone.disk");
        config.clone.disk = Some("0".to_owned());
        assert_eq!(config.validate().unwrap_err().key, "clone.disk");
        config.clone.disk = Some("20GB".to_owned());
        assert_eq!(config.clone.default_limits().unwrap().disk, Some(20 << 30));

        let mut config = EngineConfig::default();
        config.cloning.max_idle_minutes = -1.0;
        assert_eq!(config.validate().unwrap_err().key, "cloning.max_idle_minutes");

        let mut config = EngineConfig::default();
        config.tls.ca_key_file = Some("/etc/ca.key".into());
        assert_eq!(config.validate().unwrap_err().key, "tls.ca_cert_file");
        config.tls.ca_cert_file = Some("/etc/ca.crt".into());
        config.validate().unwrap();
        config.tls.renew_before = config.tls.validity;
        assert_eq!(config.validate().unwrap_err().key, "tls.renew_before");

        for (name, value) in [("port", "7000"), ("bad\nname", "1"), ("work_mem", "1\n")] {
            let mut config = EngineConfig::default();
            config.clone.settings.insert(name.to_owned(), value.to_owned());
            assert_eq!(config.validate().unwrap_err().key, "clone.settings", "{name}");
        }

        // The warm pool must leave a port for clones, and stay a pool, not a fleet.
        let mut config = EngineConfig::default();
        config.cloning.port_from = 6000;
        config.cloning.port_to = 6001;
        config.cloning.warm_pool_size = 2;
        assert_eq!(config.validate().unwrap_err().key, "cloning.warm_pool_size");
        config.cloning.warm_pool_size = 1;
        config.validate().unwrap();
        config.cloning.port_to = 6099;
        config.cloning.warm_pool_size = MAX_WARM_POOL_SIZE + 1;
        assert_eq!(config.validate().unwrap_err().key, "cloning.warm_pool_size");
    }

    #[test]
    fn probe_address_is_the_first_ip() {
        let mut config = EngineConfig::default();
        config.clone.listen_addresses = "localhost, 127.0.0.2".to_owned();
        assert_eq!(config.probe_address(), IpAddr::from([127, 0, 0, 2]));
        config.clone.listen_addresses = "*".to_owned();
        assert_eq!(config.probe_address(), IpAddr::from([0, 0, 0, 0]));
    }
}
