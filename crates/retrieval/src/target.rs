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

use crate::config::RetrievalConfig;
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
}

impl Target {
    /// A target with the default admin role and port 5432 (socket only).
    pub fn new(data_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Target {
            data_dir: data_dir.into(),
            run_dir: run_dir.into(),
            port: 5432,
            admin_role: DEFAULT_ADMIN_ROLE.to_owned(),
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

pub(crate) async fn start_target(
    binaries: &PgBinaries,
    target: &Target,
    user: &OsUser,
    config: &RetrievalConfig,
    databases: usize,
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
        let mut options = InitDbOptions::new(&target.admin_role);
        options.sync = false;
        postgres::initdb(binaries, data_dir, user, &options)
            .await
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
fn existing_major(data_dir: &std::path::Path) -> Result<Option<PgMajor>> {
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
