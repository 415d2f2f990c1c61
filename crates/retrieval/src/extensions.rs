//! Extensions and preload libraries: what a source uses (each database's extensions with
//! their versions, its preload settings and their modules' settings) against what the target
//! major's install here can load, decided before any dump, restore or copy.
//!
//! An extension the target lacks refuses the run with one message naming every missing one,
//! the databases using it, the package that provides it and the other installs of the major
//! that have it (for `[clone.bin_dirs]`): a restore would otherwise fail, or go on with errors
//! ignored, hours into the run. A preload library the target lacks is left out and reported
//! as a warning; the others, with the modules' settings, are carried into the copy
//! (`postgres::carried`), so the golden copy and its clones load what the source loads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use postgres::{BinarySearch, PgBinaries};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::source::Source;

const FIELD: char = '\u{1f}';

/// What a source uses that the target must be able to load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceUse {
    /// Each database's extensions (name → version).
    pub(crate) extensions: BTreeMap<String, BTreeMap<String, String>>,
    /// The preload settings that are not empty, and the settings of modules (`class.name`)
    /// set in its configuration or on its command line.
    pub(crate) settings: Vec<(String, String)>,
}

/// An extension a source uses and the target lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingExtension {
    /// Its name.
    pub name: String,
    /// The versions the source has, one per database or fewer.
    pub versions: Vec<String>,
    /// The databases using it.
    pub databases: Vec<String>,
}

/// What of the source's preload settings a copy gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preload {
    /// The settings written into the copy: the preload lists cut to the libraries the target
    /// has, and the modules' settings.
    pub carried: Vec<(String, String)>,
    /// The libraries the target lacks, left out, with the setting that named them.
    pub left_out: Vec<(String, String)>,
}

/// Reads what the source uses in `databases`.
pub(crate) async fn read_source(
    source: &Source,
    psql: PathBuf,
    databases: &[String],
    cancel: &CancellationToken,
) -> Result<SourceUse> {
    let field = FIELD as u32;
    let mut extensions = BTreeMap::new();
    let query = format!(
        "SELECT extname || chr({field}) || extversion FROM pg_catalog.pg_extension ORDER BY 1"
    );
    for database in databases {
        let lines = source.query_lines(psql.clone(), database, &query, cancel).await?;
        extensions.insert(database.clone(), split_pairs(&lines).collect());
    }
    let preload = postgres::carried::PRELOAD_SETTINGS
        .iter()
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>();
    let settings_query = format!(
        "SELECT name || chr({field}) || setting FROM pg_catalog.pg_settings \
         WHERE (name IN ({}) AND setting <> '') \
         OR (name LIKE '%.%' AND source IN ('configuration file', 'command line')) ORDER BY 1",
        preload.join(", ")
    );
    let lines =
        source.query_lines(psql, &source.connection_database(), &settings_query, cancel).await?;
    Ok(SourceUse { extensions, settings: split_pairs(&lines).collect() })
}

fn split_pairs(lines: &[String]) -> impl Iterator<Item = (String, String)> + '_ {
    lines
        .iter()
        .filter_map(|line| line.split_once(FIELD))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
}

/// Checks `databases` of `source` against `target` (one of `search`'s installs): refuses with
/// [`Error::ExtensionsMissing`] when an extension is missing, else returns what of the
/// source's preload settings the copy gets.
pub(crate) async fn preflight(
    source: &Source,
    psql: PathBuf,
    databases: &[String],
    search: &BinarySearch,
    target: &PgBinaries,
    cancel: &CancellationToken,
) -> Result<Preload> {
    let used = read_source(source, psql, databases, cancel).await?;
    let available = target.available_extensions().map_err(|error| Error::ToolMissing {
        tool: format!("PostgreSQL {}'s extension directory", target.major()),
        detail: error.to_string(),
    })?;
    let missing = missing_extensions(&used.extensions, &available);
    if !missing.is_empty() {
        return Err(refusal(&missing, search, target));
    }
    Ok(plan_preload(&used.settings, |library| target.has_library(library).unwrap_or(false)))
}

/// The extensions of `used` that `available` lacks, each once with the databases using it;
/// `plpgsql` is part of every server.
pub fn missing_extensions(
    used: &BTreeMap<String, BTreeMap<String, String>>,
    available: &BTreeSet<String>,
) -> Vec<MissingExtension> {
    let mut missing: BTreeMap<&str, MissingExtension> = BTreeMap::new();
    for (database, extensions) in used {
        for (name, version) in extensions {
            if name == "plpgsql" || available.contains(name) {
                continue;
            }
            let entry = missing.entry(name).or_insert_with(|| MissingExtension {
                name: name.clone(),
                versions: Vec::new(),
                databases: Vec::new(),
            });
            if !entry.versions.contains(version) {
                entry.versions.push(version.clone());
            }
            entry.databases.push(database.clone());
        }
    }
    missing.into_values().collect()
}

/// The refusal of a source whose `missing` extensions `target` lacks, naming the other
/// installs of the major in `search` that have some of them.
fn refusal(missing: &[MissingExtension], search: &BinarySearch, target: &PgBinaries) -> Error {
    let elsewhere: Vec<(PathBuf, Vec<String>)> = search
        .installs(target.major())
        .into_iter()
        .filter(|install| install.bin_dir() != target.bin_dir())
        .filter_map(|install| {
            let available = install.available_extensions().ok()?;
            let has: Vec<String> = missing
                .iter()
                .filter(|extension| available.contains(&extension.name))
                .map(|extension| extension.name.clone())
                .collect();
            (!has.is_empty()).then(|| (install.bin_dir().to_path_buf(), has))
        })
        .collect();
    Error::ExtensionsMissing {
        target: format!("PostgreSQL {} here ({})", target.major(), target.bin_dir().display()),
        detail: refusal_detail(missing, target.major().number(), &elsewhere),
    }
}

/// The refusal's text: every missing extension with its versions, databases and package, then
/// what to do, naming the installs in `elsewhere` and the extensions each has.
pub fn refusal_detail(
    missing: &[MissingExtension],
    major: u8,
    elsewhere: &[(PathBuf, Vec<String>)],
) -> String {
    let each: Vec<String> = missing
        .iter()
        .map(|extension| {
            let noun = if extension.databases.len() == 1 { "database" } else { "databases" };
            format!(
                "{} {} ({noun} {}; {})",
                extension.name,
                extension.versions.join("/"),
                extension.databases.join(", "),
                provider(&extension.name, major)
            )
        })
        .collect();
    let mut text = each.join(", ");
    text.push_str(&format!(
        ". Install them for PostgreSQL {major} beside the server the target uses, or name a \
         PostgreSQL {major} that has them in [clone.bin_dirs] (`{major} = \"<its bin directory>\"`)"
    ));
    for (bin_dir, has) in elsewhere {
        text.push_str(&format!("; {} has {}", bin_dir.display(), has.join(", ")));
    }
    text
}

/// Where `extension` comes from for `major`: its Debian/PGDG package when Scion knows it.
pub fn provider(extension: &str, major: u8) -> String {
    match package(extension) {
        Some(Package::Debian(suffix)) => format!("package postgresql-{major}-{suffix}"),
        Some(Package::Pgdg(suffix)) => {
            format!("package postgresql-{major}-{suffix} from apt.postgresql.org")
        }
        Some(Package::Timescale) => {
            format!("package timescaledb-2-postgresql-{major} from Timescale's repository")
        }
        None => "no package known to Scion: build or install it for this major".to_owned(),
    }
}

enum Package {
    /// `postgresql-<major>-<suffix>`, in Debian and PGDG.
    Debian(&'static str),
    /// `postgresql-<major>-<suffix>`, in PGDG's repository only.
    Pgdg(&'static str),
    Timescale,
}

/// The package of an extension, by its control file's name.
fn package(extension: &str) -> Option<Package> {
    let debian = match extension {
        "postgis"
        | "postgis_raster"
        | "postgis_topology"
        | "postgis_sfcgal"
        | "postgis_tiger_geocoder"
        | "address_standardizer"
        | "address_standardizer_data_us" => "postgis-3",
        "pg_cron" => "cron",
        "pg_partman" => "partman",
        "hypopg" => "hypopg",
        "pg_repack" => "repack",
        "pgaudit" => "pgaudit",
        "pgrouting" => "pgrouting",
        "orafce" => "orafce",
        "ip4r" => "ip4r",
        "hll" => "hll",
        "rum" => "rum",
        "semver" => "semver",
        "prefix" => "prefix",
        "set_user" => "set-user",
        "plpgsql_check" => "plpgsql-check",
        "pldbgapi" => "pldebugger",
        "pg_qualstats" => "pg-qualstats",
        "pg_stat_kcache" => "pg-stat-kcache",
        "pg_wait_sampling" => "pg-wait-sampling",
        "pg_track_settings" => "pg-track-settings",
        "powa" => "powa",
        "pgtap" => "pgtap",
        "pglogical" => "pglogical",
        "mysql_fdw" => "mysql-fdw",
        "tds_fdw" => "tds-fdw",
        "ogr_fdw" => "ogr-fdw",
        "periods" => "periods",
        "pg_similarity" => "similarity",
        "pointcloud" | "pointcloud_postgis" => "pointcloud",
        "q3c" => "q3c",
        "pgq" => "pgq3",
        "tdigest" => "tdigest",
        "unit" => "unit",
        "pgfincore" => "pgfincore",
        "pg_sphere" => "pgsphere",
        "plr" => "plr",
        "plsh" => "plsh",
        "pllua" => "pllua",
        "plproxy" => "plproxy",
        "debversion" => "debversion",
        "first_last_agg" => "first-last-agg",
        "toastinfo" => "toastinfo",
        "jsquery" => "jsquery",
        "numeral" => "numeral",
        "pg_rational" => "rational",
        _ => "",
    };
    if !debian.is_empty() {
        return Some(Package::Debian(debian));
    }
    match extension {
        "vector" => Some(Package::Pgdg("pgvector")),
        "pg_hint_plan" => Some(Package::Pgdg("pg-hint-plan")),
        "pg_squeeze" => Some(Package::Pgdg("squeeze")),
        "timescaledb" | "timescaledb_toolkit" => Some(Package::Timescale),
        _ => None,
    }
}

/// What of the source's `settings` a copy gets: each preload list cut to the libraries
/// `can_load` accepts, and the modules' settings as they are (a module that is not loaded
/// leaves its settings as placeholders, which the server ignores).
pub fn plan_preload(settings: &[(String, String)], can_load: impl Fn(&str) -> bool) -> Preload {
    let mut preload = Preload::default();
    for (name, value) in settings {
        if !postgres::carried::PRELOAD_SETTINGS.contains(&name.as_str()) {
            preload.carried.push((name.clone(), value.clone()));
            continue;
        }
        let (kept, left): (Vec<String>, Vec<String>) =
            postgres::carried::libraries(value).into_iter().partition(|library| can_load(library));
        preload.left_out.extend(left.into_iter().map(|library| (name.clone(), library)));
        if !kept.is_empty() {
            preload.carried.push((name.clone(), kept.join(",")));
        }
    }
    preload
}

impl Preload {
    /// One warning per library left out, naming its package when Scion knows it.
    pub fn warnings(&self, target: &PgBinaries) -> Vec<String> {
        let major = target.major();
        self.left_out
            .iter()
            .map(|(setting, library)| {
                format!(
                    "{setting}: the source loads {library}, which PostgreSQL {major} here ({}) \
                     does not have; the golden copy and its clones run without it ({})",
                    target.bin_dir().display(),
                    provider(library, major.number())
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(databases: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
        databases
            .iter()
            .map(|(database, extensions)| {
                let extensions = extensions
                    .iter()
                    .map(|(name, version)| ((*name).to_owned(), (*version).to_owned()))
                    .collect();
                ((*database).to_owned(), extensions)
            })
            .collect()
    }

    #[test]
    fn missing_extensions_are_named_once_with_their_databases() {
        let used = used(&[
            (
                "app",
                &[("plpgsql", "1.0"), ("hstore", "1.8"), ("postgis", "3.3.2"), ("pg_cron", "1.4")],
            ),
            ("geo", &[("postgis", "3.4.0")]),
        ]);
        let available = ["hstore".to_owned()].into_iter().collect();
        let missing = missing_extensions(&used, &available);
        assert_eq!(
            missing,
            [
                MissingExtension {
                    name: "pg_cron".into(),
                    versions: vec!["1.4".into()],
                    databases: vec!["app".into()]
                },
                MissingExtension {
                    name: "postgis".into(),
                    versions: vec!["3.3.2".into(), "3.4.0".into()],
                    databases: vec!["app".into(), "geo".into()]
                },
            ]
        );
        let detail = refusal_detail(
            &missing,
            15,
            &[(PathBuf::from("/usr/lib/postgresql/15/bin"), vec!["postgis".into()])],
        );
        assert!(
            detail.starts_with(
                "pg_cron 1.4 (database app; package postgresql-15-cron), postgis 3.3.2/3.4.0 \
                 (databases app, geo; package postgresql-15-postgis-3). Install them"
            ),
            "{detail}"
        );
        assert!(detail.ends_with("; /usr/lib/postgresql/15/bin has postgis"), "{detail}");
    }

    #[test]
    fn providers_name_the_package_or_say_none_is_known() {
        assert_eq!(provider("pg_repack", 16), "package postgresql-16-repack");
        assert_eq!(
            provider("vector", 17),
            "package postgresql-17-pgvector from apt.postgresql.org"
        );
        assert!(provider("timescaledb", 15).contains("timescaledb-2-postgresql-15"));
        assert!(provider("in_house", 15).starts_with("no package known"));
    }

    #[test]
    fn preload_lists_keep_what_loads_and_report_the_rest() {
        let settings = vec![
            ("cron.database_name".to_owned(), "app".to_owned()),
            ("shared_preload_libraries".to_owned(), "pg_cron, pgaudit,\"auto_explain\"".to_owned()),
            ("session_preload_libraries".to_owned(), "pgaudit".to_owned()),
        ];
        let preload = plan_preload(&settings, |library| library != "pgaudit");
        assert_eq!(
            preload.carried,
            [
                ("cron.database_name".to_owned(), "app".to_owned()),
                ("shared_preload_libraries".to_owned(), "pg_cron,auto_explain".to_owned()),
            ]
        );
        assert_eq!(
            preload.left_out,
            [
                ("shared_preload_libraries".to_owned(), "pgaudit".to_owned()),
                ("session_preload_libraries".to_owned(), "pgaudit".to_owned()),
            ]
        );
    }
}
