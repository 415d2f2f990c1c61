//! The source side: libpq connection strings per database, the password from the environment,
//! the probe (reachable, credentials, major, databases), and the roles (`pg_dumpall
//! --roles-only`).
//!
//! Everything goes through libpq tools (psql, pg_dump, pg_dumpall), never a Rust driver, so the
//! probe sees exactly the errors the dump would, and the connection string may use any libpq
//! option.

use std::path::PathBuf;

use exec::Cmd;
use postgres::PgMajor;
use tokio_util::sync::CancellationToken;

use crate::config::SourceConfig;
use crate::error::{Error, Result, classify};
use crate::progress::Stage;
use crate::target::ClusterLocale;

/// `application_name` of Scion's sessions on the source (DBLab uses `dle_retrieval`).
pub const SOURCE_APPLICATION_NAME: &str = "scion_retrieval";
const CONNECT_TIMEOUT_SECONDS: &str = "10";
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
/// template1's fields, after an empty one that no database name can be: the provider and its
/// locale through `to_jsonb`, whose keys exist only on the majors that have the columns
/// (`datlocprovider` from 15, `daticulocale` 15–16, `datlocale` from 17).
const TEMPLATE_LOCALE: &str = "'' || chr(31) || pg_catalog.pg_encoding_to_char(encoding) || chr(31) \
     || datcollate || chr(31) || datctype || chr(31) \
     || coalesce(pg_catalog.to_jsonb(d) ->> 'datlocprovider', 'c') || chr(31) \
     || coalesce(pg_catalog.to_jsonb(d) ->> 'datlocale', pg_catalog.to_jsonb(d) ->> 'daticulocale', '')";

/// A resolved source: how to connect to any of its databases.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    config: SourceConfig,
    password: Option<String>,
}

/// A database found on the source, with what is needed to create it in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceDatabase {
    pub(crate) name: String,
    pub(crate) encoding: String,
    pub(crate) collate: String,
    pub(crate) ctype: String,
}

/// What a source needs ICU for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IcuNeeds {
    /// Per database, the ICU collations it defines or uses.
    pub(crate) collations: Vec<(String, Vec<String>)>,
    /// The databases whose locale provider is ICU.
    pub(crate) databases: Vec<String>,
}

impl IcuNeeds {
    pub(crate) fn is_empty(&self) -> bool {
        self.collations.is_empty() && self.databases.is_empty()
    }

    /// What needs ICU, for a message: `ICU collations in app: public.german; databases with the
    /// ICU locale provider: icu_db`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.collations.is_empty() {
            let per_database: Vec<String> = self
                .collations
                .iter()
                .map(|(database, collations)| format!("{database}: {}", collations.join(", ")))
                .collect();
            parts.push(format!("ICU collations in {}", per_database.join("; ")));
        }
        if !self.databases.is_empty() {
            parts.push(format!(
                "databases with the ICU locale provider: {}",
                self.databases.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// What the probe learned.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) major: PgMajor,
    pub(crate) version_num: u32,
    pub(crate) databases: Vec<SourceDatabase>,
    /// The encoding and locale of the source's template1: the cluster's defaults.
    pub(crate) template: Option<ClusterLocale>,
}

impl Source {
    /// Reads the password from the environment variable or the file the configuration names.
    pub(crate) fn new(config: &SourceConfig) -> Result<Self> {
        let password = match (&config.password_env, &config.password_file) {
            (Some(variable), _) => Some(std::env::var(variable).map_err(|_| {
                Error::invalid(format!(
                    "source.password_env names {variable}, which is not set in the engine's environment"
                ))
            })?),
            (None, Some(file)) => Some(crate::config::read_password_file(file).map_err(|error| {
                Error::invalid(format!(
                    "source.password_file {}: cannot be read: {error}",
                    file.display()
                ))
            })?),
            (None, None) => None,
        };
        Ok(Source { config: config.clone(), password })
    }

    /// A source with `password` given, not read from the environment (a source check).
    pub(crate) fn with_password(config: &SourceConfig, password: String) -> Self {
        Source { config: config.clone(), password: Some(password) }
    }

    /// The libpq connection string for `database`.
    pub(crate) fn conninfo(&self, database: &str) -> String {
        match &self.config.connection_string {
            Some(connection) => with_dbname(connection, database),
            None => {
                let host = self.config.host.as_deref().unwrap_or_default();
                format!(
                    "host={} port={} user={} dbname={}",
                    conninfo_value(host),
                    self.config.port,
                    conninfo_value(&self.config.username),
                    conninfo_value(database)
                )
            }
        }
    }

    /// The libpq connection string for `database` with more parameters (URI query parameters
    /// or `key='value'` pairs, as the string is written).
    pub(crate) fn conninfo_with(&self, database: &str, extra: &[(&str, &str)]) -> String {
        let mut conninfo = self.conninfo(database);
        let uri = uri_scheme_end(&conninfo).is_some();
        for (key, value) in extra {
            if uri {
                let separator = if conninfo.contains('?') { '&' } else { '?' };
                conninfo = format!("{conninfo}{separator}{key}={}", percent_encode(value));
            } else {
                conninfo = format!("{conninfo} {key}={}", conninfo_value(value));
            }
        }
        conninfo
    }

    /// The password from the environment, if the configuration names one.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// libpq's environment for a program that connects on its own (physical mode's custom
    /// tool): `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` from the fields, or the whole
    /// connection string in `PGDATABASE` … which libpq does not expand from the environment, so
    /// it is also in `SCION_SOURCE_CONNINFO` for `-d "$SCION_SOURCE_CONNINFO"`. The password is
    /// not among them: the caller adds it as a secret.
    pub(crate) fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let database = self.connection_database();
        let mut env = vec![
            ("SCION_SOURCE_CONNINFO", self.conninfo(&database)),
            ("PGAPPNAME", SOURCE_APPLICATION_NAME.to_owned()),
            ("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS.to_owned()),
        ];
        if self.config.connection_string.is_none() {
            env.push(("PGHOST", self.config.host.clone().unwrap_or_default()));
            env.push(("PGPORT", self.config.port.to_string()));
            env.push(("PGUSER", self.config.username.clone()));
            env.push(("PGDATABASE", database));
        }
        env
    }

    /// The database used for probing and `pg_dumpall`.
    pub(crate) fn connection_database(&self) -> String {
        match &self.config.connection_string {
            Some(connection) => dbname_of(connection).unwrap_or_else(|| self.config.dbname.clone()),
            None => self.config.dbname.clone(),
        }
    }

    /// A client tool connecting to `database`: a clean environment with the password,
    /// application name, no statement timeout and UTC timestamps.
    pub(crate) fn command(&self, tool: PathBuf, database: &str) -> Cmd {
        self.command_to(tool, &self.conninfo(database))
    }

    /// A client tool connecting with `conninfo` (one of this source's, with more parameters),
    /// in the same environment as [`Source::command`].
    pub(crate) fn command_to(&self, tool: PathBuf, conninfo: &str) -> Cmd {
        let mut cmd = Cmd::new(tool)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PGAPPNAME", SOURCE_APPLICATION_NAME)
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS)
            .env("PGOPTIONS", "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0")
            .env("TZ", "UTC")
            .arg(format!("--dbname={conninfo}"));
        if let Some(password) = &self.password {
            cmd = cmd.secret_env("PGPASSWORD", password).redact(password.clone());
        }
        cmd
    }

    /// Connects, reads the major, and lists the databases; maps failures to
    /// [`Error::SourceUnreachable`], [`Error::AuthFailed`] or [`Error::DatabaseMissing`].
    pub(crate) async fn probe(&self, psql: PathBuf, cancel: &CancellationToken) -> Result<Probe> {
        // One result, ordered explicitly: the version first, then the databases by name.
        let query = format!(
            "SELECT line FROM (\
             SELECT 0 AS k, '' AS n, current_setting('server_version_num') AS line UNION ALL \
             SELECT 1, datname, datname || chr({field}) || pg_catalog.pg_encoding_to_char(encoding) \
             || chr({field}) || datcollate || chr({field}) || datctype FROM pg_catalog.pg_database \
             WHERE datallowconn AND NOT datistemplate UNION ALL \
             SELECT 2, '', {TEMPLATE_LOCALE} FROM pg_catalog.pg_database d \
             WHERE datname = 'template1') AS probe ORDER BY k, n",
            field = FIELD as u32
        );
        let database = self.connection_database();
        let output = self
            .command(psql, &database)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--record-separator={RECORD}"))
            .args(["-c", &query])
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| crate::run::spawn_error(Stage::Probing, &error))?;
        if !output.status.success() {
            return Err(classify(Stage::Probing, Some(&database), &output.stderr_text()));
        }
        let text = output.stdout_text();
        let mut records =
            text.split(RECORD).map(|record| record.trim_matches('\n')).filter(|r| !r.is_empty());
        let bad = |what: &str| Error::Failed {
            stage: Stage::Probing,
            stderr_tail: format!("unexpected probe output ({what}): {text:?}"),
        };
        let version_num: u32 = records
            .next()
            .and_then(|first| first.trim().parse().ok())
            .ok_or_else(|| bad("version"))?;
        let major =
            PgMajor::new(u8::try_from(version_num / 10_000).unwrap_or(0)).map_err(|_| {
                Error::UnsupportedVersion {
                    detail: format!(
                        "the source runs PostgreSQL {version_num}; Scion supports sources 13 to 18"
                    ),
                }
            })?;
        let mut template = None;
        let databases = records
            .filter_map(|record| {
                let fields: Vec<&str> = record.split(FIELD).collect();
                if let ["", encoding, collate, ctype, provider, provider_locale] = fields.as_slice()
                {
                    template = Some(ClusterLocale::from_catalog(
                        encoding,
                        collate,
                        ctype,
                        provider,
                        provider_locale,
                    ));
                    return None;
                }
                Some(match fields.as_slice() {
                    [name, encoding, collate, ctype] => Ok(SourceDatabase {
                        name: (*name).to_owned(),
                        encoding: (*encoding).to_owned(),
                        collate: (*collate).to_owned(),
                        ctype: (*ctype).to_owned(),
                    }),
                    _ => Err(bad("database")),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Probe { major, version_num, databases, template })
    }

    /// What in `databases` needs a server built with ICU: the ICU collations each database
    /// defines or uses (in a column, index or type), and (15 and later) the databases whose
    /// locale provider is ICU. The collations initdb imports and nothing uses are not dumped, so
    /// they need nothing.
    pub(crate) async fn icu_needs(
        &self,
        psql: PathBuf,
        major: PgMajor,
        databases: &[String],
        cancel: &CancellationToken,
    ) -> Result<IcuNeeds> {
        let mut needs = IcuNeeds::default();
        if major.number() >= 15 {
            let icu_databases = self
                .query_lines(
                    psql.clone(),
                    &self.connection_database(),
                    "SELECT datname FROM pg_catalog.pg_database WHERE datlocprovider = 'i' ORDER BY 1",
                    cancel,
                )
                .await?;
            needs.databases =
                icu_databases.into_iter().filter(|name| databases.contains(name)).collect();
        }
        // Objects made after initdb have OIDs from FirstNormalObjectId (16384) on.
        const QUERY: &str = "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.collname) \
             FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
             WHERE c.collprovider = 'i' AND (c.oid >= 16384 \
             OR c.oid IN (SELECT a.attcollation FROM pg_catalog.pg_attribute a WHERE a.attrelid >= 16384) \
             OR c.oid IN (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid >= 16384)) \
             ORDER BY 1";
        for database in databases {
            let collations = self.query_lines(psql.clone(), database, QUERY, cancel).await?;
            if !collations.is_empty() {
                needs.collations.push((database.clone(), collations));
            }
        }
        Ok(needs)
    }

    /// The source's tablespaces other than `pg_default` and `pg_global`.
    pub(crate) async fn tablespaces(
        &self,
        psql: PathBuf,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>> {
        self.query_lines(
            psql,
            &self.connection_database(),
            "SELECT spcname FROM pg_catalog.pg_tablespace \
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1",
            cancel,
        )
        .await
    }

    /// The rows of a one-column query in `database`, one per line.
    pub(crate) async fn query_lines(
        &self,
        psql: PathBuf,
        database: &str,
        query: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>> {
        let output = self
            .command(psql, database)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--record-separator={RECORD}"))
            .args(["-c", query])
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| crate::run::spawn_error(Stage::Probing, &error))?;
        if !output.status.success() {
            return Err(classify(Stage::Probing, Some(database), &output.stderr_text()));
        }
        Ok(output
            .stdout_text()
            .split(RECORD)
            .map(|record| record.trim_matches('\n'))
            .filter(|record| !record.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `pg_dumpall --roles-only` as SQL text.
    pub(crate) async fn dump_roles(
        &self,
        pg_dumpall: PathBuf,
        passwords: bool,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let database = self.connection_database();
        let mut cmd = self.command(pg_dumpall, &database).arg("--roles-only");
        if !passwords {
            cmd = cmd.arg("--no-role-passwords");
        }
        let output = cmd
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| crate::run::spawn_error(Stage::Roles, &error))?;
        if !output.status.success() {
            return Err(classify(Stage::Roles, None, &output.stderr_text()));
        }
        Ok(output.stdout_text())
    }
}

/// Quotes a value for a `key=value` connection string.
pub(crate) fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The connection string with its database replaced by `database`.
fn with_dbname(connection: &str, database: &str) -> String {
    let trimmed = connection.trim();
    if let Some(scheme_end) = uri_scheme_end(trimmed) {
        let rest = &trimmed[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let query = tail.find('?').map(|at| &tail[at..]).unwrap_or_default();
        return format!(
            "{}{authority}/{}{query}",
            &trimmed[..scheme_end],
            percent_encode(database)
        );
    }
    // In a key=value string a later keyword overrides an earlier one.
    format!("{trimmed} dbname={}", conninfo_value(database))
}

fn dbname_of(connection: &str) -> Option<String> {
    let trimmed = connection.trim();
    if let Some(scheme_end) = uri_scheme_end(trimmed) {
        let rest = &trimmed[scheme_end..];
        let path = &rest[rest.find('/')? + 1..];
        let name = path.split('?').next().unwrap_or_default();
        return (!name.is_empty()).then(|| percent_decode(name));
    }
    trimmed
        .split_whitespace()
        .rev()
        .find_map(|pair| pair.strip_prefix("dbname="))
        .map(|value| value.trim_matches('\'').to_owned())
}

fn uri_scheme_end(connection: &str) -> Option<usize> {
    ["postgresql://", "postgres://"]
        .iter()
        .find(|scheme| connection.to_ascii_lowercase().starts_with(**scheme))
        .map(|scheme| scheme.len())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The roles SQL without the statements about roles the target already has (its bootstrap
/// superuser above all: the source's role of the same name must not change it).
pub(crate) fn filter_roles_sql(sql: &str, existing: &[String]) -> String {
    sql.lines()
        .filter(|line| {
            let statement =
                line.strip_prefix("CREATE ROLE ").or_else(|| line.strip_prefix("ALTER ROLE "));
            match statement {
                Some(rest) => {
                    let name = role_name(rest);
                    !existing.contains(&name)
                }
                None => true,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The role name at the start of `rest` (quoted as pg_dumpall's `fmtId` does, or plain).
fn role_name(rest: &str) -> String {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    name.push('"');
                } else {
                    break;
                }
            } else {
                name.push(c);
            }
        }
        return name;
    }
    rest.split([' ', ';']).next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_connection_strings() {
        assert_eq!(
            with_dbname("postgres://app@db:5432/prod?sslmode=require", "my db"),
            "postgres://app@db:5432/my%20db?sslmode=require"
        );
        assert_eq!(with_dbname("postgresql://app@db", "x"), "postgresql://app@db/x");
        assert_eq!(
            with_dbname("host=db user=app dbname=prod", "x"),
            "host=db user=app dbname=prod dbname='x'"
        );
        assert_eq!(dbname_of("postgres://app@db/prod%2Dx?a=b").as_deref(), Some("prod-x"));
        assert_eq!(dbname_of("host=db dbname=prod").as_deref(), Some("prod"));
        assert_eq!(dbname_of("postgres://app@db"), None);
    }

    #[test]
    fn icu_needs_name_the_collations_and_databases() {
        let needs = IcuNeeds {
            collations: vec![
                ("app".to_owned(), vec!["public.german".to_owned(), "public.\"Fr\"".to_owned()]),
                ("shop".to_owned(), vec!["pg_catalog.\"und-x-icu\"".to_owned()]),
            ],
            databases: vec!["icu_db".to_owned()],
        };
        assert_eq!(
            needs.describe(),
            "ICU collations in app: public.german, public.\"Fr\"; shop: pg_catalog.\"und-x-icu\"; \
             databases with the ICU locale provider: icu_db"
        );
        assert!(IcuNeeds::default().is_empty());
    }

    #[test]
    fn adds_parameters_to_either_form() {
        let fields = Source {
            config: SourceConfig { host: Some("db".into()), ..SourceConfig::default() },
            password: None,
        };
        assert_eq!(
            fields.conninfo_with("postgres", &[("passfile", "/p f")]),
            "host='db' port=5432 user='postgres' dbname='postgres' passfile='/p f'"
        );
        let uri = Source {
            config: SourceConfig {
                connection_string: Some("postgres://r@db/x?sslmode=require".into()),
                ..SourceConfig::default()
            },
            password: None,
        };
        assert_eq!(
            uri.conninfo_with("x", &[("passfile", "/p f"), ("application_name", "s")]),
            "postgres://r@db/x?sslmode=require&passfile=%2Fp%20f&application_name=s"
        );
    }

    #[test]
    fn quotes_conninfo_values() {
        assert_eq!(conninfo_value(r"it's a \ path"), r"'it\'s a \\ path'");
    }

    #[test]
    fn skips_existing_roles() {
        let sql = "SET x = 1;\nCREATE ROLE postgres;\nALTER ROLE postgres WITH NOSUPERUSER;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE \"Odd\"\"name\";\nGRANT app TO \"Odd\"\"name\";";
        let filtered = filter_roles_sql(sql, &["postgres".to_owned(), "Odd\"name".to_owned()]);
        assert_eq!(
            filtered,
            "SET x = 1;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nGRANT app TO \"Odd\"\"name\";"
        );
    }
}
