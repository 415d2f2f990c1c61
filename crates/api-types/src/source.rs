//! Source checks on the wire: `POST /admin/test-db-source` (DBLab's `DBSource` answer, with
//! Scion's full report beside it) and `POST /admin/probe-source` (DBLab 4.2's `ProposedConfig`,
//! with the proposed configuration as TOML).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::null_as_default;

/// `POST /admin/test-db-source` body; empty fields come from `[retrieval.source]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestDbSourceRequest {
    /// Host name or address.
    #[serde(default, deserialize_with = "null_as_default")]
    pub host: String,
    /// Port, a string as DBLab sends it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: String,
    /// The database to connect to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dbname: String,
    /// The user.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// The password; empty: the configured source's.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing)]
    pub password: String,
    /// The databases to check; empty: all.
    #[serde(default, deserialize_with = "null_as_default")]
    pub db_list: Vec<String>,
}

/// `POST /admin/test-db-source` answer: DBLab's `DBSource` fields, then Scion's report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DbSourceResponse {
    /// `ok`, `notice`, `warning` or `error`.
    pub status: String,
    /// `ok`, `connection_error`, `query_error`, `missing_extension`, `missing_locale`,
    /// `unverified_database`, or Scion's `missing_privilege` and `icu_missing`: the worst
    /// problem.
    pub result: String,
    /// What was found, in one sentence per problem.
    pub message: String,
    /// The source's `server_version`.
    #[serde(rename = "dbVersion", default, skip_serializing_if = "String::is_empty")]
    pub db_version: String,
    /// The source's settings worth copying to clones.
    #[serde(rename = "tuningParams", default)]
    pub tuning_params: BTreeMap<String, String>,
    /// Scion's addition: the whole report; absent when the source could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<SourceReport>,
}

/// What a source is, and what a dump of it would miss (Scion's).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// `server_version`.
    pub version: String,
    /// The source's major.
    pub major: u8,
    /// The major a restore would use here.
    pub target_major: u8,
    /// The cluster's defaults: `encoding`, `collate`, `ctype`, `provider`.
    pub locale: BTreeMap<String, String>,
    /// The databases checked.
    pub databases: Vec<SourceDatabase>,
    /// The settings worth copying to clones.
    pub settings: BTreeMap<String, String>,
    /// What a dump would miss, worst first; empty when nothing.
    pub problems: Vec<SourceProblem>,
}

/// One database of a source.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SourceDatabase {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Encoding.
    pub encoding: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// Extensions and their versions.
    pub extensions: BTreeMap<String, String>,
}

/// Something a dump of a source would miss or fail on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceProblem {
    /// `missing_database`, `missing_privilege`, `missing_extension`, `missing_locale` or
    /// `icu_missing`.
    pub kind: String,
    /// The database it is in, if about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What, and what to do.
    pub detail: String,
}

/// `POST /admin/probe-source` body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeSourceRequest {
    /// A libpq URI or `key=value` string, without a password and with one host.
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    /// The password.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing)]
    pub password: String,
}

/// The source's connection as probed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProposedSource {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub username: String,
    /// Database.
    pub dbname: String,
}

/// `POST /admin/probe-source` answer: DBLab 4.2's `ProposedConfig`, then Scion's additions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProposedConfig {
    /// The source.
    pub source: ProposedSource,
    /// `rds`, `aurora`, `supabase`, `cloudsql`, `azure`, `timescale` or `generic`.
    pub detected_provider: String,
    /// DBLab's image key; Scion runs no images and sends the provider.
    pub docker_image: String,
    /// DBLab's image tag; Scion sends the target major.
    pub docker_tag: String,
    /// What would serve clones here: the target major's binaries.
    pub resolved_image: String,
    /// The source's major.
    pub pg_major_version: u8,
    /// DBLab's database collation version; Scion does not read it and sends "".
    pub collation_version: String,
    /// The source's databases.
    pub databases: Vec<String>,
    /// `shared_buffers` proposed for clones.
    pub shared_buffers: String,
    /// Whether this host's memory could be read for it.
    pub memory_probed: bool,
    /// `shared_preload_libraries` proposed for clones (comma list).
    pub shared_preload_libraries: String,
    /// The source's planner and memory settings.
    pub query_tuning: BTreeMap<String, String>,
    /// Scion's addition: the proposed sections of the engine's TOML file.
    #[serde(default)]
    pub config: String,
    /// Scion's addition: the source's preload libraries clones here could not load.
    #[serde(default)]
    pub left_out_libraries: Vec<String>,
    /// Scion's addition: what a dump of the source would miss (see test-db-source).
    #[serde(default)]
    pub problems: Vec<SourceProblem>,
}
