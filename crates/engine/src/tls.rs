//! TLS on clones (`docs/tls.md`, `docs/adr/0009-clone-tls.md`): the engine's certificate
//! authority and the certificates it issues with it.
//!
//! The CA is the engine's own, made once in `<state>/tls/` (key mode 0600, owned by the
//! engine's user: no clone's server can read it), or one the configuration gives
//! (`[tls] ca_cert_file`, `ca_key_file`). Each clone server gets a certificate for
//! `[cloning] access_host`, issued before its server starts into `<state>/tls/servers/<port>/`
//! (the port, like the socket directory's, survives a warm clone's claim): outside the data
//! directory, owned by the servers' OS user, key 0600, shown read-only inside that server's
//! sandbox only. [`Tls::renew`] reissues a certificate close to its end (or naming another
//! host) in place; the caller then reloads the server, which reads the files again without a
//! restart. A clone user's client certificate is handed out once and never kept.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use postgres::{OsUser, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::config::TlsConfig;
use crate::error::{Error, Result};
use crate::sync::lock;

/// The state directory's TLS directory.
pub(crate) const TLS_DIR: &str = "tls";
const SERVERS_DIR: &str = "servers";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
/// The engine's own CA lasts ten years; the certificates it signs are short-lived.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start an hour early, for clients whose clocks run behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate with its key and the CA's certificate: a clone user's client certificate,
/// shown once and kept nowhere (or, inside this module, a server's before it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate (PEM), its common name the clone's user.
    pub certificate: String,
    /// Its private key (PEM, PKCS#8).
    pub key: String,
    /// The CA certificate (PEM) that signed it and the clones' server certificates.
    pub ca: String,
}

/// The CA: its certificate and what signs with its key.
#[derive(Debug)]
struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The CA and the servers' certificates.
#[derive(Debug)]
pub(crate) struct Tls {
    /// The `[tls]` section of the start (a reload keeps it).
    config: TlsConfig,
    /// The host server certificates name; a reload may change it, and the next renewal pass
    /// reissues every certificate for the new one.
    access_host: RwLock<String>,
    dir: PathBuf,
    os_user: OsUser,
    /// Loaded (or made) at the first use, so an engine with TLS off never touches it.
    authority: Mutex<Option<Arc<Authority>>>,
    /// Held while a server's certificate is checked and issued: a start and the renewal loop
    /// never write one directory at once.
    issuing: Mutex<()>,
}

fn tls_error(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |error| Error::Tls(format!("{what}: {error}"))
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |error| Error::Io { what, path: path.to_owned(), error }
}

impl Tls {
    /// The TLS of an engine whose state directory is `state_dir`; nothing is read yet.
    pub(crate) fn new(
        config: &TlsConfig,
        access_host: &str,
        state_dir: &Path,
        os_user: OsUser,
    ) -> Tls {
        Tls {
            config: config.clone(),
            access_host: RwLock::new(access_host.to_owned()),
            dir: state_dir.join(TLS_DIR),
            os_user,
            authority: Mutex::new(None),
            issuing: Mutex::new(()),
        }
    }

    /// Whether clones have TLS on.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether plain password logins are accepted beside TLS ones.
    pub(crate) fn allow_plain(&self) -> bool {
        self.config.allow_plain
    }

    /// Takes a reloaded `[cloning] access_host`.
    pub(crate) fn set_access_host(&self, host: &str) {
        *crate::sync::write(&self.access_host) = host.to_owned();
    }

    /// The CA, loaded or made at the first call.
    fn authority(&self) -> Result<Arc<Authority>> {
        let mut held = lock(&self.authority);
        if let Some(authority) = held.as_ref() {
            return Ok(authority.clone());
        }
        let authority = Arc::new(self.load_authority()?);
        *held = Some(authority.clone());
        Ok(authority)
    }

    fn load_authority(&self) -> Result<Authority> {
        let (cert_path, key_path) = match (&self.config.ca_cert_file, &self.config.ca_key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let (cert, key) = (self.dir.join(CA_CERT), self.dir.join(CA_KEY));
                if !cert.exists() {
                    self.make_authority(&cert, &key)?;
                }
                (cert, key)
            }
        };
        let cert_pem = std::fs::read_to_string(&cert_path)
            .map_err(io_error("read the CA certificate", &cert_path))?;
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(io_error("read the CA key", &key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(tls_error("the CA key"))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(tls_error("the CA certificate"))?;
        Ok(Authority { cert_pem, issuer })
    }

    /// Makes the engine's own CA: the key first (0600), then the certificate, whose presence
    /// says the pair is complete.
    fn make_authority(&self, cert_path: &Path, key_path: &Path) -> Result<()> {
        create_dir(&self.dir, 0o711)?;
        let key = KeyPair::generate().map_err(tls_error("generate the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "Scion clone CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let (not_before, not_after) = validity(SystemTime::now(), CA_VALIDITY);
        (params.not_before, params.not_after) = (not_before, not_after);
        let cert = params.self_signed(&key).map_err(tls_error("sign the CA certificate"))?;
        write_file(key_path, &key.serialize_pem(), 0o600, None, Flush::Durable)?;
        write_file(cert_path, &cert.pem(), 0o644, None, Flush::Durable)
    }

    /// The CA certificate (PEM) clients verify clones' servers with.
    pub(crate) fn ca_pem(&self) -> Result<String> {
        Ok(self.authority()?.cert_pem.clone())
    }

    /// The directory holding the certificate of the server on `port`.
    pub(crate) fn server_dir(&self, port: u16) -> PathBuf {
        self.dir.join(SERVERS_DIR).join(port.to_string())
    }

    /// The files the server on `port` is started with.
    pub(crate) fn server_files(&self, port: u16) -> TlsFiles {
        let dir = self.server_dir(port);
        TlsFiles { cert: dir.join(SERVER_CERT), key: dir.join(SERVER_KEY), ca: dir.join(CA_CERT) }
    }

    /// Issues the certificate of the server on `port` unless it has a current one for the
    /// access host; returns whether it issued one.
    pub(crate) fn ensure_server(&self, port: u16) -> Result<bool> {
        let _issuing = lock(&self.issuing);
        let host = crate::sync::read(&self.access_host).clone();
        let files = self.server_files(port);
        // Written without waiting for the disk: what a crash tore (an empty key) is reissued.
        let key_written = std::fs::metadata(&files.key).is_ok_and(|meta| meta.len() > 0);
        let current = key_written
            && std::fs::read(&files.cert).ok().is_some_and(|pem| {
                !needs_reissue(&pem, &host, SystemTime::now(), self.config.renew_before)
            });
        if current {
            return Ok(false);
        }
        self.issue_server(port, &host)?;
        Ok(true)
    }

    /// A new key and its certificate for `common_name` (and `params`' alternative names), for
    /// `usage`, valid for `validity` from now, signed by the CA.
    fn issue(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<ClientCertificate> {
        let authority = self.authority()?;
        let key = KeyPair::generate().map_err(tls_error("generate a key"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(SystemTime::now(), self.config.validity);
        let cert =
            params.signed_by(&key, &authority.issuer).map_err(tls_error("sign a certificate"))?;
        Ok(ClientCertificate {
            certificate: cert.pem(),
            key: key.serialize_pem(),
            ca: authority.cert_pem.clone(),
        })
    }

    fn issue_server(&self, port: u16, host: &str) -> Result<()> {
        let names = CertificateParams::new(vec![host.to_owned()])
            .map_err(tls_error("the access host as a certificate name"))?;
        let issued = self.issue(names, host, ExtendedKeyUsagePurpose::ServerAuth)?;
        let dir = self.server_dir(port);
        create_dir(&self.dir, 0o711)?;
        create_dir(&self.dir.join(SERVERS_DIR), 0o711)?;
        create_dir(&dir, 0o700)?;
        let owner = Some(&self.os_user);
        std::os::unix::fs::chown(&dir, Some(self.os_user.uid), Some(self.os_user.gid))
            .map_err(io_error("give the server its certificate directory", &dir))?;
        // Each file replaced by a rename: a reload in between reads the old pair or the new,
        // never half of one. The key goes last, so a new key never meets an old certificate
        // (PostgreSQL refuses a pair that does not match and keeps its old one).
        write_file(&dir.join(CA_CERT), &issued.ca, 0o644, owner, Flush::Lazy)?;
        write_file(&dir.join(SERVER_CERT), &issued.certificate, 0o644, owner, Flush::Lazy)?;
        write_file(&dir.join(SERVER_KEY), &issued.key, 0o600, owner, Flush::Lazy)
    }

    /// Reissues, in place, the certificates of the servers in `ports` that need it; returns
    /// the ports whose server must reload. A port without certificate directory is skipped
    /// (its server started before TLS was turned on, and gets one at its next start).
    pub(crate) fn renew(&self, ports: &[u16]) -> Vec<u16> {
        let mut renewed = Vec::new();
        for &port in ports {
            if !self.server_dir(port).exists() {
                continue;
            }
            match self.ensure_server(port) {
                Ok(true) => renewed.push(port),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(port, %error, "failed to renew a clone's server certificate");
                }
            }
        }
        renewed
    }

    /// The ports of the servers that have a certificate.
    pub(crate) fn server_ports(&self) -> Vec<u16> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(SERVERS_DIR)) else { return Vec::new() };
        let mut ports: Vec<u16> =
            entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect();
        ports.sort_unstable();
        ports
    }

    /// Removes the certificate of a gone server.
    pub(crate) fn remove_server(&self, port: u16) {
        let dir = self.server_dir(port);
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %dir.display(), "failed to remove a certificate directory");
        }
    }

    /// A client certificate for `username` (its common name, which PostgreSQL's `cert`
    /// method matches against the user logging in).
    pub(crate) fn client_certificate(&self, username: &str) -> Result<ClientCertificate> {
        if !self.config.enabled {
            return Err(Error::InvalidInput(
                "a client certificate needs TLS on clones ([tls] enabled)".to_owned(),
            ));
        }
        self.issue(CertificateParams::default(), username, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// From an hour before `now` to `length` after it.
fn validity(now: SystemTime, length: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let at = |time: SystemTime| OffsetDateTime::from(time);
    (at(now - BACKDATE), at(now + length))
}

/// Whether a server certificate (PEM) must be issued again: unreadable, ending within
/// `renew_before` of `now`, or not naming `host`.
pub(crate) fn needs_reissue(
    pem: &[u8],
    host: &str,
    now: SystemTime,
    renew_before: Duration,
) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem) else { return true };
    let Ok(cert) = pem.parse_x509() else { return true };
    let now = OffsetDateTime::from(now);
    if cert.validity().not_after.to_datetime() - now <= renew_before {
        return true;
    }
    let ip = host.parse::<std::net::IpAddr>().ok();
    let names_host = cert.subject_alternative_name().ok().flatten().is_some_and(|san| {
        san.value.general_names.iter().any(|name| match (name, ip) {
            (GeneralName::DNSName(name), None) => name.eq_ignore_ascii_case(host),
            (GeneralName::IPAddress(bytes), Some(std::net::IpAddr::V4(ip))) => {
                *bytes == ip.octets()
            }
            (GeneralName::IPAddress(bytes), Some(std::net::IpAddr::V6(ip))) => {
                *bytes == ip.octets()
            }
            _ => false,
        })
    });
    !names_host
}

fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io_error("create", dir)(error)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", dir))
}

/// Whether a write waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// The CA: made once, and every certificate depends on it.
    Durable,
    /// A server's certificate, on a clone create's path: reissued when a crash tore it.
    Lazy,
}

/// Writes `text` to `path` through a temporary file renamed over it, with `mode` (and
/// `owner`) set before a byte is written, so a key is never readable by others.
fn write_file(
    path: &Path,
    text: &str,
    mode: u32,
    owner: Option<&OsUser>,
    flush: Flush,
) -> Result<()> {
    let temporary = path.with_extension("new");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io_error("create", &temporary))?;
    if let Some(user) = owner {
        std::os::unix::fs::fchown(&file, Some(user.uid), Some(user.gid))
            .map_err(io_error("give the server", &temporary))?;
    }
    file.write_all(text.as_bytes())
        .and_then(|()| if flush == Flush::Durable { file.sync_all() } else { Ok(()) })
        .map_err(io_error("write", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error("rename into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(dir: &Path) -> Tls {
        let user = OsUser::lookup("postgres").unwrap();
        Tls::new(&TlsConfig::default(), "db.example.com", dir, user)
    }

    #[test]
    fn a_certificate_is_reissued_near_its_end_or_for_another_host() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(dir.path());
        assert!(tls.ensure_server(6000).unwrap());
        assert!(!tls.ensure_server(6000).unwrap(), "a current certificate was reissued");
        let pem = std::fs::read(tls.server_files(6000).cert).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert!(!needs_reissue(&pem, "db.example.com", now, 30 * day));
        assert!(needs_reissue(&pem, "DB.example.com", now + 61 * day, 30 * day));
        assert!(needs_reissue(&pem, "other.example.com", now, 30 * day));
        assert!(needs_reissue(b"not a certificate", "db.example.com", now, day));
        tls.set_access_host("10.0.0.7");
        assert_eq!(tls.renew(&[6000, 6001]), vec![6000]);
        let pem = std::fs::read(tls.server_files(6000).cert).unwrap();
        assert!(!needs_reissue(&pem, "10.0.0.7", now, 30 * day));
        assert!(needs_reissue(&pem, "10.0.0.8", now, 30 * day));
    }

    #[test]
    fn the_ca_key_is_private_and_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = tls(dir.path()).ca_pem().unwrap();
        let key = dir.path().join(TLS_DIR).join(CA_KEY);
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(tls(dir.path()).ca_pem().unwrap(), first);
        tls(dir.path()).ensure_server(6000).unwrap();
        let server_key = tls(dir.path()).server_files(6000).key;
        assert_eq!(std::fs::metadata(server_key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_given_ca_signs_and_the_engine_makes_none() {
        let dir = tempfile::tempdir().unwrap();
        let given = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = params.self_signed(&key).unwrap().pem();
        let (cert_file, key_file) = (given.path().join("ca.crt"), given.path().join("ca.key"));
        std::fs::write(&cert_file, &ca).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let config = TlsConfig {
            ca_cert_file: Some(cert_file),
            ca_key_file: Some(key_file),
            ..TlsConfig::default()
        };
        let tls =
            Tls::new(&config, "db.example.com", dir.path(), OsUser::lookup("postgres").unwrap());
        assert_eq!(tls.ca_pem().unwrap(), ca);
        tls.ensure_server(6000).unwrap();
        assert_eq!(std::fs::read_to_string(tls.server_files(6000).ca).unwrap(), ca);
        let served = std::fs::read(tls.server_files(6000).cert).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&served).unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        pem.parse_x509().unwrap().verify_signature(Some(ca_cert.public_key())).unwrap();
        assert!(!dir.path().join(TLS_DIR).join(CA_KEY).exists(), "the engine made a CA of its own");
    }

    #[test]
    fn client_certificates_need_tls_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig { enabled: false, ..TlsConfig::default() };
        let off = Tls::new(&config, "h", dir.path(), OsUser::lookup("postgres").unwrap());
        assert!(matches!(off.client_certificate("alice"), Err(Error::InvalidInput(_))));
        let issued = tls(dir.path()).client_certificate("alice").unwrap();
        assert!(issued.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.key.contains("PRIVATE KEY"));
    }
}
