//! TLS logins for the benchmark: tokio-postgres over rustls (`tokio-postgres-rustls`),
//! verifying a clone's server certificate against the engine's CA (`GET /tls/ca.crt`), as
//! `sslmode=verify-full` does.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// Makes TLS connections that trust the engine's CA only.
#[derive(Clone)]
pub(crate) struct VerifyFull {
    connect: MakeRustlsConnect,
}

impl VerifyFull {
    /// Trusts the CA of the server at `url` (its `GET /tls/ca.crt`).
    pub(crate) async fn of_server(url: &str) -> Result<VerifyFull> {
        let pem = reqwest::get(format!("{url}/tls/ca.crt"))
            .await?
            .error_for_status()?
            .bytes()
            .await
            .context("GET /tls/ca.crt")?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            roots.add(certificate.context("the CA certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(VerifyFull { connect: MakeRustlsConnect::new(config) })
    }

    /// A login as `user` to `SELECT 1` on `port` over TLS, the server's certificate verified
    /// for 127.0.0.1 (the engine's default `access_host`).
    pub(crate) async fn select_one(
        &self,
        port: u16,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<()> {
        let tls = (self.connect.clone(), tokio_postgres::config::SslMode::Require);
        crate::cluster::select_one_over(port, user, password, db, tls).await
    }
}
