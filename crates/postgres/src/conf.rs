//! The settings Scion controls, rendered into files Scion owns inside the data directory.
//!
//! Choice: the settings go into `postgresql.scion.conf`, which `postgresql.conf` includes through
//! one `include_if_exists` line appended once, and `pg_hba.conf` is rewritten whole. Both are
//! rewritten before every start, because a clone's data directory is a snapshot of another
//! instance's and carries that instance's port and socket. A file (rather than only `-c` flags)
//! means an operator who starts the directory by hand after a host reboot gets the same server,
//! and `SHOW`/`pg_settings.sourcefile` tell where a value came from. The three settings that give
//! a clone its identity (port, listen addresses, socket directory) are also passed on the command
//! line by [`crate::instance`], because a `postgresql.auto.conf` carried over from the source
//! (`ALTER SYSTEM`) would otherwise override them.
//!
//! User-supplied settings come after Scion's defaults (so they win), must have valid names, may
//! not touch what Scion controls, and are written as quoted values.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Scion's settings file inside the data directory.
pub const SCION_CONF: &str = "postgresql.scion.conf";
/// The line appended to `postgresql.conf` once.
pub const INCLUDE_LINE: &str = "include_if_exists = 'postgresql.scion.conf'";
const HEADER: &str = "# Written by Scion before every start: edits here are lost.\n";

/// Settings a user may not supply: Scion sets them, or they would move files Scion relies on.
const RESERVED: &[&str] = &[
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "unix_socket_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "data_directory",
    "logging_collector",
    "log_destination",
    "include",
    "include_if_exists",
    "include_dir",
    // TLS is Scion's (`[tls]`): a clone's server sees only the files Scion shows it.
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
];

/// How TCP (host) connections authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostAuth {
    /// SCRAM-SHA-256 passwords (the default).
    #[default]
    ScramSha256,
    /// MD5 passwords (for old clients; SCRAM verifiers cannot answer MD5).
    Md5,
    /// No password (only for tests and trusted networks).
    Trust,
    /// No TCP logins at all.
    Reject,
}

impl HostAuth {
    fn keyword(self) -> &'static str {
        match self {
            HostAuth::ScramSha256 => "scram-sha-256",
            HostAuth::Md5 => "md5",
            HostAuth::Trust => "trust",
            HostAuth::Reject => "reject",
        }
    }
}

/// The group role whose members log in over TLS with a client certificate (`cert`), not a
/// password: the clone users that asked for a certificate. A group rather than a list of names
/// in pg_hba.conf, so that granting it needs no rewrite and reload of the file.
pub const CERT_LOGIN_ROLE: &str = "scion_cert_login";

/// TCP logins when the server has TLS on: pg_hba.conf's `hostssl` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbaTls {
    /// Whether password logins without TLS are accepted too (`host` rules); without them a
    /// plain connection finds no rule and is refused.
    pub plain: bool,
}

/// Who may connect, and how: pg_hba.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaSettings {
    /// The engine's admin role: over the private unix socket only, by peer authentication.
    pub admin_role: String,
    /// The OS users that may log in as the admin role (pg_ident.conf). By default only the user
    /// this process runs as (the engine's): never the server's own OS user, so nothing running
    /// inside a clone (`COPY … FROM PROGRAM` as a superuser) can use the admin path.
    pub admin_os_users: Vec<String>,
    /// The method for TCP connections.
    pub host_auth: HostAuth,
    /// The networks TCP connections may come from (CIDR).
    pub host_networks: Vec<String>,
    /// TLS rules: certificate logins for [`CERT_LOGIN_ROLE`]'s members and password logins
    /// over TLS, plain password logins only where allowed. `None`: every TCP login is a
    /// `host` rule with `host_auth`.
    pub tls: Option<HbaTls>,
}

impl HbaSettings {
    /// Peer authentication for `admin_role` over the socket, mapped from this process's OS
    /// user; SCRAM for everyone over TCP from anywhere.
    pub fn new(admin_role: impl Into<String>) -> Self {
        HbaSettings {
            admin_role: admin_role.into(),
            admin_os_users: vec![current_os_user()],
            host_auth: HostAuth::default(),
            host_networks: vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()],
            tls: None,
        }
    }

    /// Renders pg_hba.conf.
    pub fn render(&self) -> Result<String> {
        check_hba_token("admin role", &self.admin_role)?;
        let mut text = String::from(HEADER);
        text.push_str("# TYPE  DATABASE  USER  ADDRESS  METHOD\n");
        // Only the OS users mapped in pg_ident.conf (the engine's) log in as the admin role, by
        // the kernel's word for who is connecting; a password would have to be kept somewhere.
        let _ = writeln!(text, "local   all       \"{}\"  peer map={IDENT_MAP}", self.admin_role);
        let _ = writeln!(text, "host    all       \"{}\"  all  reject", self.admin_role);
        let method = self.host_auth.keyword();
        let local_method = if self.host_auth == HostAuth::Reject { "reject" } else { method };
        let _ = writeln!(text, "local   all       all   {local_method}");
        for network in &self.host_networks {
            check_network(network)?;
        }
        let Some(tls) = self.tls.filter(|_| self.host_auth != HostAuth::Reject) else {
            for network in &self.host_networks {
                let _ = writeln!(text, "host    all       all   {network}  {method}");
            }
            return Ok(text);
        };
        // DBLab 4.1's rule set: certificate logins over TLS first (the first matching rule
        // decides, and a `cert` rule does not fall through to a password), then passwords
        // over TLS, then plain passwords where allowed.
        for network in &self.host_networks {
            let _ = writeln!(text, "hostssl all       +{CERT_LOGIN_ROLE}  {network}  cert");
        }
        for network in &self.host_networks {
            let _ = writeln!(text, "hostssl all       all   {network}  {method}");
        }
        if tls.plain {
            for network in &self.host_networks {
                let _ = writeln!(text, "host    all       all   {network}  {method}");
            }
        }
        Ok(text)
    }

    /// Renders pg_ident.conf: the map from the admin OS users to the admin role.
    pub fn render_ident(&self) -> Result<String> {
        check_hba_token("admin role", &self.admin_role)?;
        let mut text = String::from(HEADER);
        text.push_str("# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n");
        for user in &self.admin_os_users {
            check_hba_token("admin OS user", user)?;
            let _ = writeln!(text, "{IDENT_MAP}  \"{user}\"  \"{}\"", self.admin_role);
        }
        Ok(text)
    }
}

/// The pg_ident.conf map of the admin path.
const IDENT_MAP: &str = "scion_admin";

/// The name of the OS user this process runs as (`root` for the engine), as peer
/// authentication will see it.
fn current_os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |user| user.name)
}

/// The server settings Scion controls, plus the user's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The TCP port (and the socket file's number).
    pub port: u16,
    /// Addresses to listen on: `127.0.0.1`, `*`, or a comma-separated list.
    pub listen_addresses: String,
    /// The private directory holding the unix socket.
    pub socket_dir: PathBuf,
    /// `shared_buffers`, e.g. "32MB".
    pub shared_buffers: String,
    /// `max_connections`.
    pub max_connections: u32,
    /// The user's settings, applied after Scion's defaults.
    pub extra: Vec<(String, String)>,
    /// The server's certificate files: TLS on with them, off without.
    pub tls: Option<TlsFiles>,
}

/// The files a server with TLS on reads at start and at every reload (`pg_reload_conf()`),
/// kept outside its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate (`ssl_cert_file`).
    pub cert: PathBuf,
    /// Its private key (`ssl_key_file`): owned by the server's OS user, mode 0600.
    pub key: PathBuf,
    /// The CA that signs client certificates (`ssl_ca_file`).
    pub ca: PathBuf,
}

/// Clone defaults: small shared memory, few connections (measured in BENCHMARKS.md).
pub const DEFAULT_SHARED_BUFFERS: &str = "32MB";
/// See [`DEFAULT_SHARED_BUFFERS`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 50;

impl ServerSettings {
    /// Clone defaults on `port`, listening on loopback, with the socket in `socket_dir`.
    pub fn new(port: u16, socket_dir: impl Into<PathBuf>) -> Self {
        ServerSettings {
            port,
            listen_addresses: "127.0.0.1".to_owned(),
            socket_dir: socket_dir.into(),
            shared_buffers: DEFAULT_SHARED_BUFFERS.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            extra: Vec::new(),
            tls: None,
        }
    }

    /// The unix socket file the server will create.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// The settings as (name, value) pairs, in file order; later ones win.
    pub fn entries(&self, data_dir: &Path) -> Result<Vec<(String, String)>> {
        let socket_dir = self.socket_dir.to_str().ok_or_else(|| Error::InvalidSetting {
            name: "unix_socket_directories".to_owned(),
            reason: "the path is not UTF-8".to_owned(),
        })?;
        if socket_dir.contains([',', '"']) {
            return Err(Error::InvalidSetting {
                name: "unix_socket_directories".to_owned(),
                reason: "the path contains `,` or `\"`".to_owned(),
            });
        }
        let hba = data_dir.join("pg_hba.conf");
        let hba = hba.to_str().ok_or_else(|| Error::InvalidSetting {
            name: "hba_file".to_owned(),
            reason: "the data directory path is not UTF-8".to_owned(),
        })?;
        let ident = hba.replace("pg_hba.conf", "pg_ident.conf");
        let mut entries: Vec<(String, String)> = [
            ("port", self.port.to_string()),
            ("listen_addresses", self.listen_addresses.clone()),
            ("unix_socket_directories", socket_dir.to_owned()),
            ("unix_socket_permissions", "0700".to_owned()),
            ("hba_file", hba.to_owned()),
            ("ident_file", ident),
            ("shared_buffers", self.shared_buffers.clone()),
            ("max_connections", self.max_connections.to_string()),
            ("password_encryption", "scram-sha-256".to_owned()),
            // One log file per instance: stderr, which the engine points at the instance's file.
            ("logging_collector", "off".to_owned()),
            ("log_destination", "stderr".to_owned()),
            ("log_line_prefix", "%m [%p] ".to_owned()),
            // A clone must never push WAL into the source's archive.
            ("archive_mode", "off".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        // Off unless Scion shows the server its files: a source's `ssl = on` would name files
        // of the source's own data directory, its key among them.
        match &self.tls {
            None => entries.push(("ssl".to_owned(), "off".to_owned())),
            Some(files) => {
                entries.push(("ssl".to_owned(), "on".to_owned()));
                for (name, path) in [
                    ("ssl_cert_file", &files.cert),
                    ("ssl_key_file", &files.key),
                    ("ssl_ca_file", &files.ca),
                ] {
                    let path = path.to_str().ok_or_else(|| Error::InvalidSetting {
                        name: name.to_owned(),
                        reason: "the path is not UTF-8".to_owned(),
                    })?;
                    entries.push((name.to_owned(), path.to_owned()));
                }
            }
        }
        check_settings(self.extra.iter().map(|(name, value)| (name.as_str(), value.as_str())))?;
        entries.extend(self.extra.iter().cloned());
        for (name, value) in &entries {
            check_value(name, value)?;
        }
        Ok(entries)
    }

    /// These settings over a data directory that carries the source's settings
    /// ([`crate::carried`]): a preload list set here is merged with the carried one, so that a
    /// configured `shared_preload_libraries` adds to the source's libraries instead of
    /// dropping them. Other carried settings need nothing: this file comes after theirs.
    pub fn with_carried(&self, carried: &[(String, String)]) -> ServerSettings {
        let mut settings = self.clone();
        for (name, value) in &mut settings.extra {
            let lower = name.to_ascii_lowercase();
            if !crate::carried::PRELOAD_SETTINGS.contains(&lower.as_str()) {
                continue;
            }
            if let Some((_, from_source)) = carried.iter().find(|(carried, _)| *carried == lower) {
                *value = crate::carried::merge_libraries(from_source, value);
            }
        }
        settings
    }

    /// Renders `postgresql.scion.conf` for the instance on `data_dir`.
    pub fn render(&self, data_dir: &Path) -> Result<String> {
        let mut text = String::from(HEADER);
        for (name, value) in self.entries(data_dir)? {
            let _ = writeln!(text, "{name} = {}", quote_conf_value(&value));
        }
        Ok(text)
    }
}

/// Adds [`INCLUDE_LINE`] to `postgresql.conf` text unless it is there already.
pub fn with_include_line(conf: &str) -> Option<String> {
    if conf.lines().any(|line| line.trim() == INCLUDE_LINE) {
        return None;
    }
    let mut text = conf.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n# Settings Scion controls (port, socket, memory, logging, user settings).\n");
    text.push_str(INCLUDE_LINE);
    text.push('\n');
    Some(text)
}

/// Quotes a value for postgresql.conf: single quotes, with `'` and `\` escaped as the
/// configuration lexer expects.
pub fn quote_conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The value [`quote_conf_value`] quoted.
pub fn unquote_conf_value(quoted: &str) -> String {
    let inner =
        quoted.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')).unwrap_or(quoted);
    inner.replace("''", "'").replace("\\\\", "\\")
}

/// Checks settings a user supplies (a clone request's `extra_conf`, the configuration file):
/// valid names, values without control characters, and none of the settings Scion sets itself.
pub fn check_settings<'a>(settings: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
    for (name, value) in settings {
        check_name(name)?;
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::InvalidSetting {
                name: name.to_owned(),
                reason: "Scion sets this one itself".to_owned(),
            });
        }
        check_value(name, value)?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let invalid =
        |reason: &str| Error::InvalidSetting { name: name.to_owned(), reason: reason.to_owned() };
    let part_ok = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    // Plain names, or `class.name` for extensions' settings.
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|part| part_ok(part)) {
        return Err(invalid("not a setting name (letters, digits, `_`, one optional `.`)"));
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidSetting {
            name: name.to_owned(),
            reason: "the value contains a control character (newline, NUL, …)".to_owned(),
        });
    }
    Ok(())
}

fn check_hba_token(what: &str, token: &str) -> Result<()> {
    // pg_hba.conf has no escape for a double quote inside a quoted token.
    if token.is_empty() || token.contains('"') || token.chars().any(char::is_control) {
        return Err(Error::InvalidSetting {
            name: what.to_owned(),
            reason: format!("{token:?} cannot be written into pg_hba.conf"),
        });
    }
    Ok(())
}

fn check_network(network: &str) -> Result<()> {
    let valid = network.split_once('/').is_some_and(|(address, bits)| {
        address.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidSetting {
            name: "host network".to_owned(),
            reason: format!("{network:?} is not an address/prefix (CIDR)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_clone_settings() {
        let mut settings = ServerSettings::new(6001, "/run/scion/c1");
        settings.extra = vec![
            ("work_mem".into(), "64MB".into()),
            ("search_path".into(), r"'$user', it's \ public".into()),
            ("pg_stat_statements.track".into(), "all".into()),
        ];
        let expected = r#"# Written by Scion before every start: edits here are lost.
port = '6001'
listen_addresses = '127.0.0.1'
unix_socket_directories = '/run/scion/c1'
unix_socket_permissions = '0700'
hba_file = '/data/c1/pg_hba.conf'
ident_file = '/data/c1/pg_ident.conf'
shared_buffers = '32MB'
max_connections = '50'
password_encryption = 'scram-sha-256'
logging_collector = 'off'
log_destination = 'stderr'
log_line_prefix = '%m [%p] '
archive_mode = 'off'
ssl = 'off'
work_mem = '64MB'
search_path = '''$user'', it''s \\ public'
pg_stat_statements.track = 'all'
"#;
        assert_eq!(settings.render(Path::new("/data/c1")).unwrap(), expected);
    }

    #[test]
    fn configured_preload_lists_add_to_the_carried_ones() {
        let mut settings = ServerSettings::new(6001, "/s");
        settings.extra = vec![
            ("shared_preload_libraries".into(), "pg_stat_statements".into()),
            ("cron.database_name".into(), "mine".into()),
        ];
        let carried = vec![
            ("shared_preload_libraries".to_owned(), "pg_cron,pg_stat_statements".to_owned()),
            ("cron.database_name".to_owned(), "app".to_owned()),
        ];
        let merged = settings.with_carried(&carried);
        assert_eq!(merged.extra[0].1, "pg_cron,pg_stat_statements");
        assert_eq!(merged.extra[1].1, "mine");
        assert_eq!(settings.with_carried(&[]), settings);
    }

    #[test]
    fn rejects_bad_or_reserved_settings() {
        for (name, value) in [
            ("port", "1"),
            ("PORT", "1"),
            ("include_dir", "x"),
            ("a b", "1"),
            ("x = 1\nport", "1"),
            ("a.b.c", "1"),
            ("", "1"),
            ("work_mem", "1\nport = 5"),
        ] {
            let mut settings = ServerSettings::new(6001, "/s");
            settings.extra = vec![(name.into(), value.into())];
            assert!(
                matches!(settings.render(Path::new("/d")), Err(Error::InvalidSetting { .. })),
                "{name:?} = {value:?} accepted"
            );
        }
    }

    #[test]
    fn renders_hba() {
        let expected = r#"# Written by Scion before every start: edits here are lost.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       "scion admin"  peer map=scion_admin
host    all       "scion admin"  all  reject
local   all       all   scram-sha-256
host    all       all   0.0.0.0/0  scram-sha-256
host    all       all   ::/0  scram-sha-256
"#;
        assert_eq!(HbaSettings::new("scion admin").render().unwrap(), expected);
        let mut md5 = HbaSettings::new("postgres");
        md5.host_auth = HostAuth::Md5;
        md5.host_networks = vec!["10.0.0.0/8".into()];
        assert!(md5.render().unwrap().ends_with("host    all       all   10.0.0.0/8  md5\n"));
    }

    #[test]
    fn tls_settings_name_the_files_outside_the_data_directory() {
        let mut settings = ServerSettings::new(6001, "/s");
        settings.tls = Some(TlsFiles {
            cert: "/state/tls/servers/6001/server.crt".into(),
            key: "/state/tls/servers/6001/server.key".into(),
            ca: "/state/tls/servers/6001/ca.crt".into(),
        });
        let text = settings.render(Path::new("/d")).unwrap();
        assert!(
            text.contains(
                "ssl = 'on'\nssl_cert_file = '/state/tls/servers/6001/server.crt'\n\
                 ssl_key_file = '/state/tls/servers/6001/server.key'\n\
                 ssl_ca_file = '/state/tls/servers/6001/ca.crt'\n"
            ),
            "{text}"
        );
        // A user cannot point the server elsewhere.
        settings.extra = vec![("ssl_key_file".into(), "/etc/other.key".into())];
        assert!(settings.render(Path::new("/d")).is_err());
    }

    #[test]
    fn renders_the_tls_rule_set() {
        let mut hba = HbaSettings::new("postgres");
        hba.host_networks = vec!["0.0.0.0/0".into()];
        hba.tls = Some(HbaTls { plain: true });
        let rules =
            |text: String| text.lines().skip(4).map(str::to_owned).collect::<Vec<_>>().join("\n");
        assert_eq!(
            rules(hba.render().unwrap()),
            "local   all       all   scram-sha-256\n\
             hostssl all       +scion_cert_login  0.0.0.0/0  cert\n\
             hostssl all       all   0.0.0.0/0  scram-sha-256\n\
             host    all       all   0.0.0.0/0  scram-sha-256"
        );
        // Without plain logins, a connection without TLS matches no rule.
        hba.tls = Some(HbaTls { plain: false });
        assert!(!hba.render().unwrap().contains("\nhost    all       all"));
        // A server without TCP logins gets no TLS rule either.
        hba.host_auth = HostAuth::Reject;
        assert!(!hba.render().unwrap().contains("hostssl"));
    }

    #[test]
    fn maps_only_the_admin_os_users_to_the_admin_role() {
        let mut hba = HbaSettings::new("postgres");
        assert_eq!(hba.admin_os_users, vec![current_os_user()]);
        hba.admin_os_users = vec!["root".into()];
        assert_eq!(
            hba.render_ident().unwrap(),
            "# Written by Scion before every start: edits here are lost.\n\
             # MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n\
             scion_admin  \"root\"  \"postgres\"\n"
        );
        hba.admin_os_users = vec!["a\"b".into()];
        assert!(hba.render_ident().is_err());
    }

    #[test]
    fn hba_rejects_what_it_cannot_quote() {
        assert!(HbaSettings::new("a\"b").render().is_err());
        let mut bad_network = HbaSettings::new("postgres");
        bad_network.host_networks = vec!["all trust".into()];
        assert!(bad_network.render().is_err());
    }

    #[test]
    fn include_line_is_added_once() {
        let once = with_include_line("max_connections = 100").unwrap();
        assert!(once.starts_with("max_connections = 100\n"));
        assert!(once.ends_with(&format!("{INCLUDE_LINE}\n")));
        assert_eq!(with_include_line(&once), None);
        assert!(with_include_line("").unwrap().contains(INCLUDE_LINE));
    }
}
