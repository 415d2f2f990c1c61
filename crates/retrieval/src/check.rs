//! Source checks before any retrieval (`POST /admin/test-db-source`, `POST
//! /admin/probe-source`): what a live source is (version, size, databases, extensions, locale,
//! the settings worth copying) and what a dump of it into this host's target would miss
//! (privileges, extensions the target major lacks, locales this host lacks, ICU), read with the
//! same libpq tools and connection the dump uses. It changes nothing, on the source or here.

use std::collections::BTreeMap;

use postgres::{BinarySearch, PgMajor};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::source::Source;
use crate::target::check_host_locales;

/// The settings DBLab's probe reports (`queryTuning`), plus `shared_preload_libraries`.
pub const REPORTED_SETTINGS: &[&str] = &[
    "default_statistics_target",
    "effective_cache_size",
    "jit",
    "jit_provider",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
    "random_page_cost",
    "shared_preload_libraries",
    "work_mem",
];
/// How many tables without `SELECT` a report names per database.
const PRIVILEGE_SAMPLE: usize = 20;
const FIELD: char = '\u{1f}';

/// What a source is, and what a dump of it would miss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    /// `server_version`, e.g. `16.4 (Debian 16.4-1)`.
    pub version: String,
    /// The major.
    pub major: u8,
    /// The major a restore would use on this host.
    pub target_major: u8,
    /// The cluster's defaults (template1): encoding, LC_COLLATE, LC_CTYPE, locale provider.
    pub locale: BTreeMap<String, String>,
    /// The databases checked.
    pub databases: Vec<DatabaseReport>,
    /// [`REPORTED_SETTINGS`] as the source has them.
    pub settings: BTreeMap<String, String>,
    /// What a dump would miss; empty when nothing.
    pub problems: Vec<Problem>,
    /// The extensions the target's install can create, read once for the report and for a
    /// proposal made from it.
    #[serde(skip)]
    pub available_extensions: std::collections::BTreeSet<String>,
}

/// One database of the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseReport {
    /// Its name.
    pub name: String,
    /// `pg_database_size`.
    pub size_bytes: u64,
    /// Its encoding, LC_COLLATE and LC_CTYPE.
    pub encoding: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// Its extensions with their versions.
    pub extensions: BTreeMap<String, String>,
}

/// Something a dump of the source would miss or fail on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// The database it is in, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What, and what to do.
    pub detail: String,
}

/// The kinds of [`Problem`], from the worst for a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A database asked for is not on the source.
    MissingDatabase,
    /// The user cannot read tables or schemas pg_dump must read.
    MissingPrivilege,
    /// An extension the source uses is not installed for the target major here.
    MissingExtension,
    /// A locale the source's databases use is not installed on this host.
    MissingLocale,
    /// The source needs ICU and the target's server is built without it.
    IcuMissing,
}

/// Checks the source `config` with `password` (none: the configuration's own) for a dump of
/// `databases` (empty: every database that allows connections) restored with the binaries of
/// `target_major` (none: the source's major). Connection failures are errors
/// ([`Error::SourceUnreachable`], [`Error::AuthFailed`], …); everything else is a
/// [`Problem`] in the report.
pub async fn check_source(
    config: &SourceConfig,
    password: Option<String>,
    databases: &[String],
    search: &BinarySearch,
    target_major: Option<PgMajor>,
    cancel: &CancellationToken,
) -> Result<SourceReport> {
    let source = match password {
        Some(password) => Source::with_password(config, password),
        None => Source::new(config)?,
    };
    // The newest psql talks to every older server.
    let psql = crate::physical::newest_tool(search, "psql", None)?;
    let probe = source.probe(psql.clone(), cancel).await?;
    let target_major = target_major.unwrap_or(probe.major);
    let target = search.locate(target_major).map_err(|error| Error::ToolMissing {
        tool: format!("PostgreSQL {target_major}"),
        detail: format!("a restore of this source needs its server here: {error}"),
    })?;
    let mut problems = Vec::new();
    let mut chosen = Vec::new();
    if databases.is_empty() {
        chosen.extend(probe.databases.iter().cloned());
    } else {
        for name in databases {
            match probe.databases.iter().find(|database| database.name == *name) {
                Some(database) => chosen.push(database.clone()),
                None => problems.push(Problem {
                    kind: ProblemKind::MissingDatabase,
                    database: Some(name.clone()),
                    detail: format!(
                        "{name:?} is not a database of the source that allows connections"
                    ),
                }),
            }
        }
    }
    let available = target.available_extensions().map_err(|error| Error::Failed {
        stage: crate::progress::Stage::Probing,
        stderr_tail: error.to_string(),
    })?;
    let mut reports = Vec::new();
    for database in &chosen {
        let lines =
            source.query_lines(psql.clone(), &database.name, &database_query(), cancel).await?;
        let facts = DatabaseFacts::parse(&lines);
        if !facts.unreadable_tables.is_empty() || !facts.unusable_schemas.is_empty() {
            problems.push(Problem {
                kind: ProblemKind::MissingPrivilege,
                database: Some(database.name.clone()),
                detail: privilege_detail(config, &facts),
            });
        }
        let used = BTreeMap::from([(database.name.clone(), facts.extensions.clone())]);
        for missing in crate::extensions::missing_extensions(&used, &available) {
            problems.push(Problem {
                kind: ProblemKind::MissingExtension,
                database: Some(database.name.clone()),
                detail: format!(
                    "extension {} {} is not installed for PostgreSQL {target_major} on this host ({}; its extension directory has no {}.control): install it, name a PostgreSQL {target_major} that has it in [clone.bin_dirs], or leave {:?} out",
                    missing.name,
                    missing.versions.join("/"),
                    crate::extensions::provider(&missing.name, target_major.number()),
                    missing.name,
                    database.name
                ),
            });
        }
        reports.push(DatabaseReport {
            name: database.name.clone(),
            size_bytes: facts.size_bytes,
            encoding: database.encoding.clone(),
            collate: database.collate.clone(),
            ctype: database.ctype.clone(),
            extensions: facts.extensions,
        });
    }
    let mut locales: Vec<&str> =
        chosen.iter().flat_map(|database| [&*database.collate, &*database.ctype]).collect();
    if let Some(template) = &probe.template {
        locales.extend([&*template.collate, &*template.ctype]);
    }
    if let Err(error) = check_host_locales(&locales, "the source's databases").await {
        problems.push(Problem {
            kind: ProblemKind::MissingLocale,
            database: None,
            detail: error.to_string(),
        });
    }
    if crate::logical::lacks_icu(&target)? {
        let names: Vec<String> = chosen.iter().map(|database| database.name.clone()).collect();
        let needs = source.icu_needs(psql.clone(), probe.major, &names, cancel).await?;
        if !needs.is_empty() {
            problems.push(Problem {
                kind: ProblemKind::IcuMissing,
                database: None,
                detail: format!(
                    "{}; PostgreSQL {target_major} here ({}) is built without ICU",
                    needs.describe(),
                    target.bin_dir().display()
                ),
            });
        }
    }
    problems.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.database.cmp(&b.database)));
    let settings_query = format!(
        "SELECT name || chr({field}) || setting FROM pg_catalog.pg_settings WHERE name IN ({names}) ORDER BY 1",
        field = FIELD as u32,
        names =
            REPORTED_SETTINGS.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ")
    );
    let settings = source
        .query_lines(psql.clone(), &source.connection_database(), &settings_query, cancel)
        .await?
        .iter()
        .filter_map(|line| line.split_once(FIELD))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let version = source
        .query_lines(
            psql,
            &source.connection_database(),
            "SELECT current_setting('server_version')",
            cancel,
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| probe.version_num.to_string());
    let locale = probe
        .template
        .map(|template| {
            BTreeMap::from([
                ("encoding".to_owned(), template.encoding),
                ("collate".to_owned(), template.collate),
                ("ctype".to_owned(), template.ctype),
                ("provider".to_owned(), template.provider),
            ])
        })
        .unwrap_or_default();
    Ok(SourceReport {
        version,
        major: probe.major.number(),
        target_major: target_major.number(),
        locale,
        databases: reports,
        settings,
        problems,
        available_extensions: available,
    })
}

/// A configuration proposed from a probe (DBLab 4.2's simple mode), with what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// The hosting the source runs on: `rds`, `aurora`, `supabase`, `cloudsql`, `azure`,
    /// `timescale` or `generic`, from its host name, else its extensions.
    pub provider: &'static str,
    /// `shared_buffers` for clones: a quarter of this host's memory, between 128MB and 8GB
    /// (1GB when the memory cannot be read).
    pub shared_buffers: String,
    /// Whether this host's memory could be read.
    pub memory_probed: bool,
    /// The source's `shared_preload_libraries` that clones here can load (their extension is
    /// installed for the target major), plus `pg_stat_statements`.
    pub shared_preload_libraries: Vec<String>,
    /// The source's libraries clones here cannot load, left out.
    pub left_out_libraries: Vec<String>,
    /// The proposed configuration's sections (`[retrieval]`, `[retrieval.source]`, one
    /// `[retrieval.databases.<name>]` per database, `[clone.settings]`), as TOML for the
    /// engine's file; the password is read from `password_env`.
    pub toml: String,
}

/// The host's memory in bytes, from `/proc/meminfo`.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The source's hosting, from its host name, else the extensions of its databases.
pub fn detect_provider(host: &str, report: &SourceReport) -> &'static str {
    let host = host.to_ascii_lowercase();
    let has = |name: &str| report.databases.iter().any(|db| db.extensions.contains_key(name));
    if host.ends_with(".rds.amazonaws.com") {
        return if has("aurora_stat_utils") { "aurora" } else { "rds" };
    }
    for (suffix, provider) in [
        (".supabase.co", "supabase"),
        (".supabase.com", "supabase"),
        (".postgres.database.azure.com", "azure"),
        (".tsdb.cloud.timescale.com", "timescale"),
    ] {
        if host.ends_with(suffix) {
            return provider;
        }
    }
    if has("cloudsql_iam") {
        "cloudsql"
    } else if has("pg_graphql") && has("supabase_vault") {
        "supabase"
    } else if has("rds_tools") {
        "rds"
    } else {
        "generic"
    }
}

/// `shared_buffers` for `memory` bytes of host memory: a quarter, between 128MB and 8GB.
pub fn shared_buffers_for(memory: Option<u64>) -> String {
    const MIB: u64 = 1 << 20;
    let bytes = memory.map_or(1024 * MIB, |memory| (memory / 4).clamp(128 * MIB, 8192 * MIB));
    format!("{}MB", bytes / MIB)
}

/// The configuration proposed for `source` (password in `password_env`) from its `report`,
/// with clones loading only the libraries in `available` (the target's extensions).
pub fn propose(
    source: &SourceConfig,
    password_env: &str,
    report: &SourceReport,
    available: &std::collections::BTreeSet<String>,
    memory: Option<u64>,
) -> Proposal {
    let mut libraries = vec!["pg_stat_statements".to_owned()];
    let mut left_out = Vec::new();
    let preload = report.settings.get("shared_preload_libraries").cloned().unwrap_or_default();
    for library in
        preload.split(',').map(|name| name.trim().trim_matches('"')).filter(|name| !name.is_empty())
    {
        if available.contains(library) {
            libraries.push(library.to_owned());
        } else {
            left_out.push(library.to_owned());
        }
    }
    libraries.sort();
    libraries.dedup();
    let shared_buffers = shared_buffers_for(memory);
    let mut connection = toml::Table::new();
    if let Some(host) = &source.host {
        connection.insert("host".into(), host.clone().into());
    }
    connection.insert("port".into(), i64::from(source.port).into());
    connection.insert("dbname".into(), source.dbname.clone().into());
    connection.insert("username".into(), source.username.clone().into());
    connection.insert("password_env".into(), password_env.into());
    let mut databases = toml::Table::new();
    for database in &report.databases {
        databases.insert(database.name.clone(), toml::Table::new().into());
    }
    let mut retrieval = toml::Table::new();
    retrieval.insert("target_major".into(), i64::from(report.target_major).into());
    retrieval.insert("source".into(), connection.into());
    retrieval.insert("databases".into(), databases.into());
    let mut settings = toml::Table::new();
    settings.insert("shared_buffers".into(), shared_buffers.clone().into());
    settings.insert("shared_preload_libraries".into(), libraries.join(",").into());
    let mut clone = toml::Table::new();
    clone.insert("settings".into(), settings.into());
    let mut root = toml::Table::new();
    root.insert("retrieval".into(), retrieval.into());
    root.insert("clone".into(), clone.into());
    Proposal {
        provider: detect_provider(source.host.as_deref().unwrap_or_default(), report),
        shared_buffers,
        memory_probed: memory.is_some(),
        shared_preload_libraries: libraries,
        left_out_libraries: left_out,
        toml: toml::to_string(&root).unwrap_or_default(),
    }
}

/// The source a libpq URI or `key=value` string names, refused (naming why) when it holds a
/// password (it would end up in files and logs) or more than one host.
pub fn source_from_url(url: &str) -> Result<SourceConfig> {
    let parsed: tokio_postgres::Config = url.parse().map_err(|error| {
        Error::invalid(format!("url is not a libpq URI or key=value string: {error}"))
    })?;
    if parsed.get_password().is_some() {
        return Err(Error::invalid(
            "url holds a password: send it in \"password\" instead".to_owned(),
        ));
    }
    let host = match parsed.get_hosts() {
        [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
        [] => return Err(Error::invalid("url names no host".to_owned())),
        [_] => return Err(Error::invalid("url names a unix socket: give a TCP host".to_owned())),
        _ => return Err(Error::invalid("url names several hosts: give one".to_owned())),
    };
    let port = match parsed.get_ports() {
        [] => crate::config::DEFAULT_SOURCE_PORT,
        [port] => *port,
        _ => return Err(Error::invalid("url names several ports: give one".to_owned())),
    };
    let username =
        parsed.get_user().ok_or_else(|| Error::invalid("url names no user".to_owned()))?.to_owned();
    let dbname = parsed.get_dbname().unwrap_or("postgres").to_owned();
    Ok(SourceConfig { host: Some(host), port, dbname, username, ..SourceConfig::default() })
}

/// One query per database: its size, its extensions, the tables and sequences the user cannot
/// `SELECT` (pg_dump copies them), and the schemas it cannot use.
fn database_query() -> String {
    let field = FIELD as u32;
    let system = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
                  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";
    format!(
        "SELECT 's' || chr({field}) || pg_catalog.pg_database_size(current_database()) \
         UNION ALL SELECT 'e' || chr({field}) || extname || chr({field}) || extversion FROM pg_catalog.pg_extension \
         UNION ALL (SELECT 't' || chr({field}) || quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE c.relkind IN ('r', 'S') AND {system} \
           AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT') ORDER BY 1 LIMIT {limit}) \
         UNION ALL SELECT 'n' || chr({field}) || quote_ident(n.nspname) FROM pg_catalog.pg_namespace n \
           WHERE {system} AND NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE')",
        limit = PRIVILEGE_SAMPLE + 1
    )
}

/// What [`database_query`] returned.
#[derive(Debug, Default, PartialEq)]
struct DatabaseFacts {
    size_bytes: u64,
    extensions: BTreeMap<String, String>,
    unreadable_tables: Vec<String>,
    unusable_schemas: Vec<String>,
}

impl DatabaseFacts {
    fn parse(lines: &[String]) -> DatabaseFacts {
        let mut facts = DatabaseFacts::default();
        for line in lines {
            let mut fields = line.split(FIELD);
            match (fields.next(), fields.next(), fields.next()) {
                (Some("s"), Some(size), _) => facts.size_bytes = size.parse().unwrap_or(0),
                (Some("e"), Some(name), Some(version)) => {
                    facts.extensions.insert(name.to_owned(), version.to_owned());
                }
                (Some("t"), Some(table), _) => facts.unreadable_tables.push(table.to_owned()),
                (Some("n"), Some(schema), _) => facts.unusable_schemas.push(schema.to_owned()),
                _ => {}
            }
        }
        facts
    }
}

fn privilege_detail(config: &SourceConfig, facts: &DatabaseFacts) -> String {
    let mut parts = Vec::new();
    if !facts.unusable_schemas.is_empty() {
        parts.push(format!("no USAGE on schemas {}", facts.unusable_schemas.join(", ")));
    }
    if !facts.unreadable_tables.is_empty() {
        let more = if facts.unreadable_tables.len() > PRIVILEGE_SAMPLE { ", …" } else { "" };
        let shown: Vec<&str> =
            facts.unreadable_tables.iter().take(PRIVILEGE_SAMPLE).map(String::as_str).collect();
        parts.push(format!("no SELECT on {}{more}", shown.join(", ")));
    }
    format!(
        "{:?} cannot dump it: {}; grant them (or pg_read_all_data, 14 and later) or connect as another role",
        config.username,
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[&str]) -> String {
        fields.join(&FIELD.to_string())
    }

    #[test]
    fn database_facts_are_read_from_tagged_lines() {
        let lines = vec![
            line(&["s", "8192"]),
            line(&["e", "plpgsql", "1.0"]),
            line(&["e", "hstore", "1.8"]),
            line(&["t", "public.secret"]),
            line(&["n", "hidden"]),
            line(&["?", "ignored"]),
        ];
        let facts = DatabaseFacts::parse(&lines);
        assert_eq!(facts.size_bytes, 8192);
        assert_eq!(facts.extensions.len(), 2);
        assert_eq!(facts.unreadable_tables, ["public.secret"]);
        assert_eq!(facts.unusable_schemas, ["hidden"]);
        let detail = privilege_detail(&SourceConfig::default(), &facts);
        assert!(
            detail.contains("no USAGE on schemas hidden; no SELECT on public.secret"),
            "{detail}"
        );
    }

    fn report(extensions: &[&str], preload: &str) -> SourceReport {
        SourceReport {
            version: "16.4".to_owned(),
            major: 16,
            target_major: 16,
            locale: BTreeMap::new(),
            databases: vec![DatabaseReport {
                name: "app db".to_owned(),
                size_bytes: 1,
                encoding: "UTF8".to_owned(),
                collate: "C.UTF-8".to_owned(),
                ctype: "C.UTF-8".to_owned(),
                extensions: extensions
                    .iter()
                    .map(|name| ((*name).to_owned(), "1.0".to_owned()))
                    .collect(),
            }],
            settings: [("shared_preload_libraries".to_owned(), preload.to_owned())].into(),
            problems: Vec::new(),
            available_extensions: Default::default(),
        }
    }

    #[test]
    fn providers_come_from_the_host_then_the_extensions() {
        let plain = report(&[], "");
        assert_eq!(detect_provider("db.eu-west-1.rds.amazonaws.com", &plain), "rds");
        let aurora = report(&["aurora_stat_utils"], "");
        assert_eq!(detect_provider("x.cluster-1.eu-west-1.rds.amazonaws.com", &aurora), "aurora");
        assert_eq!(detect_provider("db.abc.supabase.co", &plain), "supabase");
        assert_eq!(detect_provider("10.0.0.5", &report(&["cloudsql_iam"], "")), "cloudsql");
        let supabase = report(&["pg_graphql", "supabase_vault"], "");
        assert_eq!(detect_provider("10.0.0.5", &supabase), "supabase");
        assert_eq!(detect_provider("localhost", &plain), "generic");
    }

    #[test]
    fn shared_buffers_are_a_quarter_of_memory_within_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(shared_buffers_for(None), "1024MB");
        assert_eq!(shared_buffers_for(Some(GIB / 4)), "128MB");
        assert_eq!(shared_buffers_for(Some(16 * GIB)), "4096MB");
        assert_eq!(shared_buffers_for(Some(256 * GIB)), "8192MB");
    }

    #[test]
    fn the_proposal_is_a_valid_configuration() {
        let source = SourceConfig {
            host: Some("db.example.com".to_owned()),
            port: 6432,
            dbname: "app db".to_owned(),
            username: "reader".to_owned(),
            ..SourceConfig::default()
        };
        let available = ["pg_stat_statements".to_owned(), "pg_trgm".to_owned()].into();
        let proposal = propose(
            &source,
            "SCION_SOURCE_PASSWORD",
            &report(&[], "pg_trgm, timescaledb"),
            &available,
            Some(8 << 30),
        );
        assert_eq!(proposal.shared_preload_libraries, ["pg_stat_statements", "pg_trgm"]);
        assert_eq!(proposal.left_out_libraries, ["timescaledb"]);
        assert_eq!(proposal.shared_buffers, "2048MB");
        let table: toml::Table = toml::from_str(&proposal.toml).unwrap();
        let retrieval: crate::RetrievalConfig = table["retrieval"].clone().try_into().unwrap();
        let parsed = retrieval.source.unwrap();
        assert_eq!((parsed.port, parsed.username.as_str()), (6432, "reader"));
        assert_eq!(parsed.password_env.as_deref(), Some("SCION_SOURCE_PASSWORD"));
        assert!(retrieval.databases.contains_key("app db"));
        assert_eq!(table["clone"]["settings"]["shared_buffers"].as_str(), Some("2048MB"));
    }

    #[test]
    fn a_url_names_one_source_without_a_password() {
        let source = source_from_url("postgres://reader@db.example.com:6432/app").unwrap();
        assert_eq!(source.host.as_deref(), Some("db.example.com"));
        assert_eq!(
            (source.port, source.dbname.as_str(), source.username.as_str()),
            (6432, "app", "reader")
        );
        let dsn = source_from_url("host=10.0.0.5 user=reader").unwrap();
        assert_eq!((dsn.port, dsn.dbname.as_str()), (5432, "postgres"));
        for (url, expected) in [
            ("postgres://reader:secret@db/app", "holds a password"),
            ("host=a,b user=reader", "several hosts"),
            ("postgres://db/app", "names no user"),
            ("not a url at all", "not a libpq"),
        ] {
            let error = source_from_url(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }
}
