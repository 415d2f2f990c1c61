//! TLS on clones with real servers and the real `psql`: a clone's certificate verifies with
//! `sslmode=verify-full` against the engine's CA (and not for another host name), a user with
//! a client certificate logs in with it and no password, a connection without TLS is refused
//! when plain logins are off, a claimed warm clone does all this too (claimed by a create, or
//! by a reset, whose connections the engine carries), so does a clone woken from scale to
//! zero, before and after an engine restart, and a renewed certificate is served after a
//! reload by the same server process.

use std::path::Path;
use std::time::Duration;

use engine::{CloneRequest, CloneView, EngineConfig};

use crate::harness::{PASSWORD, TestEngine, config, psql, request};

/// `SELECT current_user` through psql with `conninfo`: its answer, or its error.
async fn psql_user(conninfo: &str, password: Option<&str>) -> Result<String, String> {
    let mut command = exec::Cmd::new(psql())
        .args(["-X", "-A", "-t", "-c", "SELECT current_user"])
        .arg(conninfo)
        // No client files from the home directory: only what the test names.
        .env("PGSSLCERT", "/nonexistent/postgresql.crt")
        .env("PGSSLKEY", "/nonexistent/postgresql.key")
        .timeout(Duration::from_secs(60));
    if let Some(password) = password {
        command = command.secret_env("PGPASSWORD", password);
    }
    let output = command.output_any_status().await.map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(output.stdout_text().trim().to_owned())
    } else {
        Err(output.stderr_text())
    }
}

fn conninfo(clone: &CloneView, host: &str, options: &str) -> String {
    format!(
        "host={host} port={} user={} dbname=postgres connect_timeout=30 {options}",
        clone.record.port, clone.record.username
    )
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The certificate the server on `port` presents, as base64 without line breaks.
async fn served_certificate(port: u16) -> String {
    let output = exec::Cmd::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin_bytes(Vec::new())
        .timeout(Duration::from_secs(30))
        .output_any_status()
        .await
        .unwrap();
    pem_body(&output.stdout_text())
}

/// The first PEM certificate's base64 body in `text`, without line breaks.
fn pem_body(text: &str) -> String {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text.find(begin).unwrap_or_else(|| panic!("no certificate in {text}"));
    let rest = &text[start + begin.len()..];
    let end = rest.find("-----END CERTIFICATE-----").unwrap();
    rest[..end].split_whitespace().collect()
}

fn tls_config(ports: u16) -> EngineConfig {
    let mut config = config(ports);
    config.tls.allow_plain = false;
    config
}

#[tokio::test]
async fn psql_verifies_clones_and_logs_in_with_a_client_certificate() {
    let test = TestEngine::start(tls_config(4)).await;
    let with_password = test.create("passwords").await;
    let cert_request =
        CloneRequest { username: "alice".to_owned(), client_certificate: true, ..request("certs") };
    let (_, issued) = test.engine.create_clone_with_certificate(cert_request).await.unwrap();
    let issued = issued.expect("a client certificate was asked for");
    let with_cert = test.ready("certs").await;

    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("root.crt");
    let ca_pem = test.engine.ca_certificate().unwrap();
    assert_eq!(ca_pem, issued.ca);
    write_private(&ca, &ca_pem);
    let verify = format!("sslmode=verify-full sslrootcert={}", ca.display());

    // The server's certificate names the access host and chains to the engine's CA.
    let user = psql_user(&conninfo(&with_password, "127.0.0.1", &verify), Some(PASSWORD)).await;
    assert_eq!(user.as_deref(), Ok("tester"));
    let other_name = psql_user(&conninfo(&with_password, "localhost", &verify), Some(PASSWORD))
        .await
        .expect_err("verify-full accepted a certificate for another host name");
    assert!(other_name.contains("does not match host name"), "{other_name}");

    // A connection without TLS finds no rule.
    let plain =
        psql_user(&conninfo(&with_password, "127.0.0.1", "sslmode=disable"), Some(PASSWORD))
            .await
            .expect_err("a plain connection was accepted");
    assert!(plain.contains("no encryption"), "{plain}");

    // The certificate user logs in with its certificate and no password at all...
    let (cert, key) = (files.path().join("alice.crt"), files.path().join("alice.key"));
    write_private(&cert, &issued.certificate);
    write_private(&key, &issued.key);
    let with_client_cert = format!("{verify} sslcert={} sslkey={}", cert.display(), key.display());
    let user = psql_user(&conninfo(&with_cert, "127.0.0.1", &with_client_cert), None).await;
    assert_eq!(user.as_deref(), Ok("alice"));
    // ...and without the certificate its password does not open the TLS path.
    let refused = psql_user(&conninfo(&with_cert, "127.0.0.1", &verify), Some(PASSWORD))
        .await
        .expect_err("a certificate user logged in without its certificate");
    assert!(refused.contains("certificate"), "{refused}");
    // A reset keeps the certificate login: the clone's role is set up again from its record.
    test.engine.reset_clone("certs", engine::ResetTarget::Current).await.unwrap();
    let reset = test.ready("certs").await;
    let user = psql_user(&conninfo(&reset, "127.0.0.1", &with_client_cert), None).await;
    assert_eq!(user.as_deref(), Ok("alice"));
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_a_reload_by_the_same_server() {
    let mut config = config(2);
    // Every certificate is due for renewal a second after it is issued; the loop itself
    // stays out of the way, the test runs its passes.
    config.tls.validity = Duration::from_secs(3600);
    config.tls.renew_before = Duration::from_secs(3599);
    config.tls.check_interval = Duration::from_secs(3600);
    let test = TestEngine::start(config).await;
    let clone = test.create("rotated").await;
    let port = clone.record.port;
    let pgdata = test.pool.mountpoint().join(&clone.record.dataset).join("data");
    let postmaster = postgres::instance::find_postmaster(1, &pgdata).expect("the postmaster");
    let before = served_certificate(port).await;
    let cert_file = test.state_dir.join("tls/servers").join(port.to_string()).join("server.crt");
    assert_eq!(pem_body(&std::fs::read_to_string(&cert_file).unwrap()), before);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    test.engine.renew_certificates().await;
    let renewed = pem_body(&std::fs::read_to_string(&cert_file).unwrap());
    assert_ne!(renewed, before, "the certificate was not reissued");
    // The reload is asynchronous: wait for the server to present the new certificate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let served = served_certificate(port).await;
        if served == renewed {
            break;
        }
        assert_eq!(served, before, "the server presents a third certificate");
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        postgres::instance::find_postmaster(1, &pgdata),
        Some(postmaster),
        "the server was restarted"
    );
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), test.engine.ca_certificate().unwrap()).unwrap();
    let verify = format!("sslmode=verify-full sslrootcert={}", ca.path().display());
    let user = psql_user(&conninfo(&clone, "127.0.0.1", &verify), Some(PASSWORD)).await;
    assert_eq!(user.as_deref(), Ok("tester"));
}

#[tokio::test]
async fn a_claimed_warm_clone_serves_its_certificate_and_takes_certificate_logins() {
    let test = TestEngine::start(crate::warm::warm_config(4, 1)).await;
    crate::warm::wait_warm(&test, 1).await;
    let cert_request =
        CloneRequest { username: "bob".to_owned(), client_certificate: true, ..request("claimed") };
    let (_, issued) = test.engine.create_clone_with_certificate(cert_request).await.unwrap();
    let issued = issued.unwrap();
    let claimed = test.ready("claimed").await;
    assert!(
        claimed.record.dataset.ends_with("/r0") && !claimed.record.dataset.contains("/claimed/"),
        "not a claim: {}",
        claimed.record.dataset
    );

    let files = tempfile::tempdir().unwrap();
    let (ca, cert, key) =
        (files.path().join("root.crt"), files.path().join("bob.crt"), files.path().join("bob.key"));
    write_private(&ca, &issued.ca);
    write_private(&cert, &issued.certificate);
    write_private(&key, &issued.key);
    let options = format!(
        "sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        ca.display(),
        cert.display(),
        key.display()
    );
    let user = psql_user(&conninfo(&claimed, "127.0.0.1", &options), None).await;
    assert_eq!(user.as_deref(), Ok("bob"));

    // A reset claims the next warm clone: the engine holds the clone's port and carries its
    // connections to the warm server's own, TLS and certificate login included.
    crate::warm::wait_warm(&test, 1).await;
    test.engine.reset_clone("claimed", engine::ResetTarget::Current).await.unwrap();
    let reset = test.ready("claimed").await;
    let server_port = reset.record.server_port.expect("the reset claimed a warm clone");
    let user = psql_user(&conninfo(&reset, "127.0.0.1", &options), None).await;
    assert_eq!(user.as_deref(), Ok("bob"));
    // Through the carry, the client meets the warm server's own certificate.
    assert_eq!(served_certificate(reset.record.port).await, served_certificate(server_port).await);
}

/// The certificate files of a woken clone's tests: the CA, and alice's client certificate.
struct ClientFiles {
    _dir: tempfile::TempDir,
    /// `sslmode=verify-full` against the engine's CA.
    verify: String,
    /// The same with alice's client certificate.
    with_cert: String,
}

impl ClientFiles {
    fn new(issued: &engine::ClientCertificate) -> ClientFiles {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = (
            dir.path().join("root.crt"),
            dir.path().join("alice.crt"),
            dir.path().join("alice.key"),
        );
        write_private(&ca, &issued.ca);
        write_private(&cert, &issued.certificate);
        write_private(&key, &issued.key);
        let verify = format!("sslmode=verify-full sslrootcert={}", ca.display());
        let with_cert = format!("{verify} sslcert={} sslkey={}", cert.display(), key.display());
        ClientFiles { _dir: dir, verify, with_cert }
    }
}

/// A woken clone's connections pass through the engine byte for byte: `verify-full` checks
/// the server's own certificate, a certificate login needs no password, a connection without
/// TLS is still refused; and so after an engine restart, which adopts the server on its
/// private port.
#[tokio::test]
async fn a_woken_clone_verifies_and_takes_certificate_logins_across_a_restart() {
    let mut test = TestEngine::start(tls_config(6)).await;
    let with_password = test.create("passwords").await;
    let cert_request =
        CloneRequest { username: "alice".to_owned(), client_certificate: true, ..request("certs") };
    let (_, issued) = test.engine.create_clone_with_certificate(cert_request).await.unwrap();
    let files = ClientFiles::new(&issued.expect("a client certificate was asked for"));
    let with_cert = test.ready("certs").await;
    for id in ["passwords", "certs"] {
        let stopped = test.engine.stop_clone(id).await.unwrap();
        assert!(stopped.record.stopped_at.is_some(), "{stopped:?}");
    }

    // The first connections wake them, over TLS.
    let user = psql_user(&conninfo(&with_cert, "127.0.0.1", &files.with_cert), None).await;
    assert_eq!(user.as_deref(), Ok("alice"), "a certificate login wakes its clone");
    let verified = conninfo(&with_password, "127.0.0.1", &files.verify);
    let user = psql_user(&verified, Some(PASSWORD)).await;
    assert_eq!(user.as_deref(), Ok("tester"), "verify-full wakes its clone");
    let woken = test.engine.clone_view("passwords").unwrap();
    assert_eq!(woken.record.stopped_at, None);
    let private = woken.record.server_port.expect("a woken server listens on a private port");
    assert_ne!(private, woken.record.port);
    // The server's own certificate, that of its private port, reaches the client.
    assert_eq!(served_certificate(woken.record.port).await, served_certificate(private).await);
    // Carried from the loopback address, a connection without TLS still finds no rule, and a
    // certificate user's password still does not open the TLS path.
    let plain = conninfo(&with_password, "127.0.0.1", "sslmode=disable");
    let refused = psql_user(&plain, Some(PASSWORD)).await.expect_err("a plain login");
    assert!(refused.contains("no encryption"), "{refused}");
    let refused = psql_user(&conninfo(&with_cert, "127.0.0.1", &files.verify), Some(PASSWORD))
        .await
        .expect_err("a certificate user logged in without its certificate");
    assert!(refused.contains("certificate"), "{refused}");
    // The server holds its private port (on the loopback address: `FRONTED_LISTEN_ADDRESS`).
    assert!(std::net::TcpListener::bind(("127.0.0.1", private)).is_err());

    test.restart().await;
    let adopted = test.engine.clone_view("passwords").unwrap();
    assert_eq!(adopted.record.server_port, Some(private), "the private port is adopted");
    let user = psql_user(&verified, Some(PASSWORD)).await;
    assert_eq!(user.as_deref(), Ok("tester"), "verify-full after a restart");
    let user = psql_user(&conninfo(&with_cert, "127.0.0.1", &files.with_cert), None).await;
    assert_eq!(user.as_deref(), Ok("alice"), "a certificate login after a restart");

    // Stopped again, the private port is let go; a destroy frees the clone's own.
    let stopped = test.engine.stop_clone("passwords").await.unwrap();
    assert_eq!(stopped.record.server_port, None);
    std::net::TcpListener::bind(("127.0.0.1", private)).expect("the private port is released");
}
