//! The temporary target server of a run: where it writes ([`Target`]), its initdb and start,
//! the admin SQL the tools need around it (roles, databases, schemas), its log, and the mapping
//! of its errors.
//!
//! It listens on no TCP address (only a unix socket in the run directory) and runs with
//! durability off (see [`crate::config::DEFAULT_RESTORE_SETTINGS`]); the pipeline stops it on
//! every path out. Everything about its data directory goes through `postgres`.

use std::path::PathBuf;
use std::time::Duration;

use exec::Cmd;
use postgres::{
    InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor, ServerSettings,
};

use crate::archive::CreateDatabase;
use crate::config::{RestoreConfig, RetrievalConfig};
use crate::error::{Error, Result};
use crate::progress::Stage;
use crate::source::{SourceDatabase, conninfo_value};

/// The default admin role of the target cluster (initdb's bootstrap superuser).
pub const DEFAULT_ADMIN_ROLE: &str = "postgres";
/// How long each stop mode of the target may take before escalation.
pub(crate) const STOP_STEP: Duration = Duration::from_secs(120);
/// How much of the target server's log is searched for a reason when a restore fails.
const SERVER_LOG_TAIL: usize = 8192;

/// Where a run writes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target PGDATA: missing, empty, or an initdb'd cluster of the target major.
    pub data_dir: PathBuf,
    /// A private directory for the socket, logs and pipes of the run; keep it short (the
    /// socket path must fit in 107 bytes).
    pub run_dir: PathBuf,
    /// The port number of the temporary instance; it only names the unix socket (no TCP).
    pub port: u16,
    /// The target's bootstrap superuser.
    pub admin_role: String,
    /// The dataset the run fills, which names continuous mode's replication slots (one per
    /// database, `<slot>_<dataset>_<n>`); unset, `data`.
    pub dataset: Option<String>,
}

impl Target {
    /// A target with the default admin role and port 5432 (socket only).
    pub fn new(data_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Target {
            data_dir: data_dir.into(),
            run_dir: run_dir.into(),
            port: 5432,
            admin_role: DEFAULT_ADMIN_ROLE.to_owned(),
            dataset: None,
        }
    }

    /// Where dumps go when the configuration names no `dump.location`: inside the run's own
    /// directory.
    pub fn dump_dir(&self) -> PathBuf {
        self.run_dir.join("dump")
    }

    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.run_dir.join("sock")
    }

    pub(crate) fn conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir().to_string_lossy()),
            self.port,
            conninfo_value(&self.admin_role),
            conninfo_value(database)
        )
    }

    /// The settings of the temporary server: its socket in the run directory, no TCP.
    pub(crate) fn settings(&self) -> ServerSettings {
        let mut settings = ServerSettings::new(self.port, self.socket_dir());
        settings.listen_addresses = String::new();
        settings
    }

    /// The temporary server's spec, sandboxed.
    pub(crate) fn spec(&self, settings: ServerSettings, user: &OsUser) -> Result<InstanceSpec> {
        let mut spec = InstanceSpec::new(
            &self.data_dir,
            settings,
            &self.admin_role,
            self.log_path(),
            user.clone(),
        );
        // Isolated as clones are (docs/adr/0002-clone-isolation.md): the server holds a
        // source's objects, whose functions run inside it, and must see only its own files.
        let sandbox_root = self.run_dir.join("sandbox");
        std::fs::create_dir_all(&sandbox_root)
            .map_err(|error| Error::io("create the sandbox root", &sandbox_root, error))?;
        spec.sandbox_root = Some(sandbox_root);
        Ok(spec)
    }

    /// The temporary server's log.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.run_dir.join("target.log")
    }

    /// A client tool run against the target.
    pub(crate) fn command(&self, tool: PathBuf) -> Cmd {
        Cmd::new(tool)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TZ", "UTC")
            .env("PGAPPNAME", crate::source::SOURCE_APPLICATION_NAME)
    }
}

/// The encoding and locale a target cluster is initdb'd with: the source's template1's, so the
/// clone's `postgres` database, its templates and the databases created in a clone are the
/// source's, unless `[retrieval.restore]` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterLocale {
    pub(crate) encoding: String,
    pub(crate) collate: String,
    pub(crate) ctype: String,
    /// `libc`, `icu` or `builtin`.
    pub(crate) provider: String,
    /// The ICU or builtin locale.
    pub(crate) provider_locale: Option<String>,
}

/// The locale of a cluster when nothing says otherwise.
pub(crate) const FALLBACK_LOCALE: &str = "C.UTF-8";

impl ClusterLocale {
    /// UTF8 and `C.UTF-8` with libc.
    pub(crate) fn fallback() -> Self {
        ClusterLocale {
            encoding: "UTF8".to_owned(),
            collate: FALLBACK_LOCALE.to_owned(),
            ctype: FALLBACK_LOCALE.to_owned(),
            provider: "libc".to_owned(),
            provider_locale: None,
        }
    }

    /// From `pg_database`'s columns (`datlocprovider` as its one-letter code).
    pub(crate) fn from_catalog(
        encoding: &str,
        collate: &str,
        ctype: &str,
        provider: &str,
        provider_locale: &str,
    ) -> Self {
        let provider = match provider {
            "i" => "icu",
            "b" => "builtin",
            _ => "libc",
        };
        ClusterLocale {
            encoding: encoding.to_owned(),
            collate: collate.to_owned(),
            ctype: ctype.to_owned(),
            provider: provider.to_owned(),
            provider_locale: (provider != "libc" && !provider_locale.is_empty())
                .then(|| provider_locale.to_owned()),
        }
    }

    /// From a dump's `CREATE DATABASE`; what it does not say is the fallback's.
    pub(crate) fn from_create(create: CreateDatabase) -> Self {
        let fallback = Self::fallback();
        let provider = create.provider.unwrap_or(fallback.provider);
        ClusterLocale {
            encoding: create.encoding.unwrap_or(fallback.encoding),
            collate: create.collate.unwrap_or(fallback.collate),
            ctype: create.ctype.unwrap_or(fallback.ctype),
            provider_locale: create.provider_locale.filter(|_| provider != "libc"),
            provider,
        }
    }

    /// With the `[retrieval.restore]` `initdb_*` settings applied over it.
    pub(crate) fn with_overrides(mut self, restore: &RestoreConfig) -> Self {
        if let Some(encoding) = &restore.initdb_encoding {
            self.encoding.clone_from(encoding);
        }
        if let Some(locale) = &restore.initdb_locale {
            self.collate.clone_from(locale);
            self.ctype.clone_from(locale);
        }
        if let Some(provider) = &restore.initdb_locale_provider {
            self.provider.clone_from(provider);
            self.provider_locale = restore.initdb_provider_locale.clone();
        }
        self
    }

    /// Whether anything in `restore` overrides the source's locale.
    pub(crate) fn overridden(restore: &RestoreConfig) -> bool {
        restore.initdb_encoding.is_some()
            || restore.initdb_locale.is_some()
            || restore.initdb_locale_provider.is_some()
    }

    fn initdb_options(&self, admin_role: &str) -> InitDbOptions {
        let mut options = InitDbOptions::new(admin_role);
        options.encoding.clone_from(&self.encoding);
        // The other categories stay C: messages in the server log are parsed in English.
        options.lc_collate = Some(self.collate.clone());
        options.lc_ctype = Some(self.ctype.clone());
        if self.provider != "libc" {
            options.locale_provider = Some(self.provider.clone());
            options.provider_locale.clone_from(&self.provider_locale);
        }
        options
    }
}

impl std::fmt::Display for ClusterLocale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "encoding {}, ", self.encoding)?;
        if self.collate == self.ctype {
            write!(f, "locale {}", self.collate)?;
        } else {
            write!(f, "LC_COLLATE {}, LC_CTYPE {}", self.collate, self.ctype)?;
        }
        write!(f, ", provider {}", self.provider)?;
        match &self.provider_locale {
            Some(locale) => write!(f, " ({locale})"),
            None => Ok(()),
        }
    }
}

/// Fails unless every libc locale in `locales` is installed on this host (`locale -a`), which
/// initdb and `CREATE DATABASE` need; `why` says where they came from.
pub(crate) async fn check_host_locales(locales: &[&str], why: &str) -> Result<()> {
    let wanted: Vec<&str> =
        locales.iter().copied().filter(|locale| !matches!(*locale, "C" | "POSIX" | "")).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let output = Cmd::new("locale")
        .arg("-a")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .await
        .map_err(|error| Error::ToolMissing {
            tool: "locale".to_owned(),
            detail: format!("listing this host's locales: {error}"),
        })?;
    let installed = output.stdout_text();
    let installed: Vec<String> = installed.lines().map(normalize_locale).collect();
    let mut missing: Vec<&str> = wanted
        .into_iter()
        .filter(|locale| !installed.contains(&normalize_locale(locale)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::ToolMissing {
        tool: format!("locale {}", missing.join(", ")),
        detail: format!(
            "{why} needs it, and this host has only {} (`locale -a`); install it (for example with `locale-gen` or the `locales-all` package), or set [retrieval.restore] initdb_locale to one this host has",
            installed.join(", ")
        ),
    })
}

/// A locale name as glibc matches it: the codeset lower-cased without dashes (`en_US.UTF-8`
/// and `en_US.utf8` are the same locale).
fn normalize_locale(name: &str) -> String {
    let name = name.trim();
    let (base, modifier) = match name.split_once('@') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    };
    let mut normalized = match base.split_once('.') {
        Some((language, codeset)) => {
            let codeset: String = codeset
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            format!("{language}.{codeset}")
        }
        None => base.to_owned(),
    };
    if let Some(modifier) = modifier {
        normalized.push('@');
        normalized.push_str(modifier);
    }
    normalized
}

/// initdb's the target unless it holds a cluster already, writes the source's `carried`
/// preload settings into it (for the restore, which creates their extensions, and for every
/// copy of it), and starts it.
#[allow(clippy::too_many_arguments, reason = "the run's parts, borrowed separately")]
pub(crate) async fn start_target(
    binaries: &PgBinaries,
    target: &Target,
    user: &OsUser,
    config: &RetrievalConfig,
    databases: usize,
    locale: &ClusterLocale,
    carried: &[(String, String)],
) -> Result<Instance> {
    let data_dir = &target.data_dir;
    if let Some(major) = existing_major(data_dir)? {
        if major != binaries.major() {
            return Err(Error::invalid(format!(
                "target data directory {} holds PostgreSQL {major}, but target_major is {}",
                data_dir.display(),
                binaries.major()
            )));
        }
    } else {
        let empty =
            std::fs::read_dir(data_dir).map(|mut entries| entries.next().is_none()).unwrap_or(true);
        if !empty {
            return Err(Error::invalid(format!(
                "target data directory {} is neither empty nor a PostgreSQL data directory",
                data_dir.display()
            )));
        }
        let mut options = locale.initdb_options(&target.admin_role);
        options.sync = false;
        postgres::initdb(binaries, data_dir, user, &options)
            .await
            .map_err(|error| target_error(Stage::Preparing, &error))?;
    }
    if !carried.is_empty() {
        postgres::carried::write(data_dir, user, carried)
            .map_err(|error| target_error(Stage::Preparing, &error))?;
    }
    let mut settings = target.settings();
    let jobs = config.restore.parallel_jobs.max(config.dump.parallel_jobs);
    settings.max_connections =
        settings.max_connections.max(jobs * 2 + 10 + u32::try_from(databases).unwrap_or(0));
    settings.extra = config.restore_settings();
    let spec = target.spec(settings, user)?;
    let mut instance = Instance::start(binaries, spec)
        .await
        .map_err(|error| target_error(Stage::Preparing, &error))?;
    // The start's admin session sits in `postgres`, which a restore may drop and recreate.
    drop(instance.admin().await);
    Ok(instance)
}

pub(crate) async fn target_roles(target: &Target) -> Result<Vec<String>> {
    // template1, not `postgres`: the restore may drop and recreate `postgres`.
    let admin = postgres::Admin::connect(
        &target.socket_dir(),
        target.port,
        &target.admin_role,
        "template1",
    )
    .await
    .map_err(|error| target_error(Stage::Roles, &error))?;
    let rows =
        admin.client().query("SELECT rolname::text FROM pg_catalog.pg_roles", &[]).await.map_err(
            |error| Error::Failed { stage: Stage::Roles, stderr_tail: error.to_string() },
        )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

pub(crate) async fn target_admin(target: &Target, database: &str) -> Result<postgres::Admin> {
    postgres::Admin::connect(&target.socket_dir(), target.port, &target.admin_role, database)
        .await
        .map_err(|error| target_error(Stage::Restoring, &error))
}

pub(crate) async fn target_has_database(target: &Target, name: &str) -> Result<bool> {
    let admin = target_admin(target, "template1").await?;
    let row = admin
        .client()
        .query_opt("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|error| Error::Failed {
            stage: Stage::Restoring,
            stderr_tail: error.to_string(),
        })?;
    Ok(row.is_some())
}

/// Creates a database unless it exists, with the source's encoding and locale.
pub(crate) async fn create_database(
    target: &Target,
    name: &str,
    create: Option<&SourceDatabase>,
) -> Result<()> {
    if target_has_database(target, name).await? {
        return Ok(());
    }
    let mut statement =
        format!("CREATE DATABASE {} TEMPLATE template0", postgres::sql::quote_ident(name));
    if let Some(source) = create {
        statement.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            postgres::sql::quote_literal(&source.encoding),
            postgres::sql::quote_literal(&source.collate),
            postgres::sql::quote_literal(&source.ctype)
        ));
    }
    let admin = target_admin(target, "template1").await?;
    admin.client().batch_execute(&statement).await.map_err(|error| Error::Failed {
        stage: Stage::Restoring,
        stderr_tail: format!("create database {name}: {error}"),
    })
}

pub(crate) async fn create_schemas(
    target: &Target,
    database: &str,
    schemas: &[String],
) -> Result<()> {
    if schemas.is_empty() {
        return Ok(());
    }
    let admin = target_admin(target, database).await?;
    let statements: String = schemas
        .iter()
        .map(|schema| {
            format!("CREATE SCHEMA IF NOT EXISTS {};\n", postgres::sql::quote_ident(schema))
        })
        .collect();
    admin.client().batch_execute(&statements).await.map_err(|error| Error::Failed {
        stage: Stage::Restoring,
        stderr_tail: format!("create schemas in {database}: {error}"),
    })
}

/// The major of the cluster in `data_dir`, or `None` when it holds none (no `PG_VERSION`).
pub(crate) fn existing_major(data_dir: &std::path::Path) -> Result<Option<PgMajor>> {
    match PgMajor::of_data_dir(data_dir) {
        Ok(major) => Ok(Some(major)),
        Err(postgres::Error::NotADataDir { cause, .. })
            if cause.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(error) => Err(target_error(Stage::Preparing, &error)),
    }
}

pub(crate) fn server_log_tail(target: &Target) -> String {
    let text = std::fs::read(target.log_path())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    crate::error::tail_chars(&text, SERVER_LOG_TAIL)
}

/// Maps an error of the target instance (initdb, start, admin SQL).
pub(crate) fn target_error(stage: Stage, error: &postgres::Error) -> Error {
    let text = error.to_string();
    if text.to_ascii_lowercase().contains("no space left on device") {
        return Error::NoSpace { stage, detail: text };
    }
    match error {
        postgres::Error::MajorNotInstalled { .. } | postgres::Error::ToolMissing { .. } => {
            Error::ToolMissing { tool: "postgres".to_owned(), detail: text }
        }
        _ => Error::Failed { stage, stderr_tail: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_locale_names_as_glibc_does() {
        assert_eq!(normalize_locale("en_US.UTF-8"), "en_US.utf8");
        assert_eq!(normalize_locale("C.utf8"), "C.utf8");
        assert_eq!(normalize_locale("de_DE.ISO-8859-1@euro"), "de_DE.iso88591@euro");
        assert_eq!(normalize_locale("POSIX"), "POSIX");
    }

    #[test]
    fn overrides_and_initdb_options() {
        let icu = ClusterLocale::from_catalog("UTF8", "C.UTF-8", "C.UTF-8", "i", "en-US");
        assert_eq!(icu.to_string(), "encoding UTF8, locale C.UTF-8, provider icu (en-US)");
        let options = icu.initdb_options("postgres");
        assert_eq!(options.locale_provider.as_deref(), Some("icu"));
        assert_eq!(options.provider_locale.as_deref(), Some("en-US"));
        assert_eq!(options.lc_collate.as_deref(), Some("C.UTF-8"));
        let restore = RestoreConfig {
            initdb_locale_provider: Some("libc".into()),
            initdb_locale: Some("C".into()),
            ..RestoreConfig::default()
        };
        let libc = icu.with_overrides(&restore);
        assert_eq!(libc.to_string(), "encoding UTF8, locale C, provider libc");
        assert_eq!(libc.initdb_options("postgres").locale_provider, None);
        let libc = ClusterLocale::from_catalog("LATIN1", "C", "de_DE", "c", "");
        assert_eq!(
            libc.to_string(),
            "encoding LATIN1, LC_COLLATE C, LC_CTYPE de_DE, provider libc"
        );
    }
}
