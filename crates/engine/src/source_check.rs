//! Source checks for the admin API (`POST /admin/test-db-source`, `POST /admin/probe-source`):
//! the configured source, or one a request names, checked against this host's binaries by
//! `retrieval::check`. Nothing is changed: not the source, not the configuration.

use postgres::PgMajor;
use retrieval::SourceConfig;
use retrieval::check::{Proposal, SourceReport};

use crate::Engine;
use crate::error::{Error, Result};

/// The variable a proposed configuration reads the source's password from.
pub const PROPOSED_PASSWORD_ENV: &str = "SCION_SOURCE_PASSWORD";

/// A source to check: each field given replaces the configured source's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCheckRequest {
    /// Host name or address.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// The database to connect to.
    pub dbname: Option<String>,
    /// The user.
    pub username: Option<String>,
    /// The password; none: the configured source's (`password_env`).
    pub password: Option<String>,
    /// The databases to check; empty: the configured ones, else all.
    pub databases: Vec<String>,
}

/// A probed source and the configuration proposed for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceProbe {
    /// The source as the URL names it.
    pub source: SourceConfig,
    /// What it is and what a dump would miss.
    pub report: SourceReport,
    /// The proposed configuration.
    pub proposal: Proposal,
    /// The binaries that would serve its clones here.
    pub target_bin_dir: String,
}

impl Engine {
    /// Checks a source for a logical retrieval: the configured one with the request's fields
    /// over it. Refused in physical mode, whose source is a replication connection that
    /// `pg_dump` never uses.
    pub async fn check_source(&self, request: SourceCheckRequest) -> Result<SourceReport> {
        let config = self.config();
        let configured = config.retrieval.as_ref();
        if configured.is_some_and(|retrieval| retrieval.physical.is_some()) {
            return Err(Error::InvalidInput(
                "test-db-source checks a source for a dump (logical mode); this engine runs in physical mode".to_owned(),
            ));
        }
        let mut source =
            configured.and_then(|retrieval| retrieval.source.clone()).unwrap_or_default();
        let given = request.host.is_some() || request.port.is_some();
        if let Some(host) = request.host {
            source.host = Some(host);
        }
        if let Some(port) = request.port {
            source.port = port;
        }
        if let Some(dbname) = request.dbname {
            source.dbname = dbname;
        }
        if let Some(username) = request.username {
            source.username = username;
        }
        if given {
            // A host or port given names another server than the configured string does.
            source.connection_string = None;
        }
        if source.host.is_none() && source.connection_string.is_none() {
            return Err(Error::InvalidInput(
                "no source: give host (and port, dbname, username, password) or configure [retrieval.source]".to_owned(),
            ));
        }
        let databases = if request.databases.is_empty() {
            configured
                .map(|retrieval| retrieval.databases.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            request.databases
        };
        let target = configured.and_then(|retrieval| PgMajor::new(retrieval.target_major).ok());
        Ok(retrieval::check::check_source(
            &source,
            request.password,
            &databases,
            self.inner.servers.binaries(),
            target,
            &self.inner.cancel,
        )
        .await?)
    }

    /// Probes the source `url` names with `password` and proposes a configuration for it
    /// (DBLab 4.2's simple mode): its connection, every database, clones' `shared_buffers`
    /// from this host's memory and the preload libraries they can load.
    pub async fn probe_source(&self, url: &str, password: &str) -> Result<SourceProbe> {
        let source = retrieval::check::source_from_url(url)?;
        let search = self.inner.servers.binaries();
        let report = retrieval::check::check_source(
            &source,
            Some(password.to_owned()),
            &[],
            search,
            None,
            &self.inner.cancel,
        )
        .await?;
        let major = PgMajor::new(report.target_major)
            .map_err(|error| Error::InvalidInput(error.to_string()))?;
        let binaries =
            search.locate(major).map_err(|error| Error::InvalidInput(error.to_string()))?;
        let proposal = retrieval::check::propose(
            &source,
            PROPOSED_PASSWORD_ENV,
            &report,
            &report.available_extensions,
            retrieval::check::host_memory(),
        );
        Ok(SourceProbe {
            source,
            report,
            proposal,
            target_bin_dir: binaries.bin_dir().display().to_string(),
        })
    }
}
