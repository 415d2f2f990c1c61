//! How `scion` reaches the server: `--insecure` against a TLS endpoint with a self-signed
//! certificate, `--debug` lines on stderr, and SSH forwarding (`--forwarding-server-url`,
//! `scion port-forward`) through a real OpenSSH `sshd` the test starts on a loopback port.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exec::Cmd;
use test_support::free_port_range;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::support::{PASSWORD, StopOnDrop, TOKEN, TestServer, scion_bin, wait_for_line};

/// Where Debian's openssh-server puts sshd (`scripts/setup` installs it).
const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd or `scion port-forward` may take to come up.
const READY_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_accepts_a_self_signed_certificate_and_debug_logs_requests() {
    let server = TestServer::start("").await;
    let proxy = tls_proxy(server_port(&server)).await;
    let url = format!("https://127.0.0.1:{}", proxy.port);

    // The certificate does not verify: refused without --insecure.
    let run = server.scion(&["--url", &url, "instance", "version"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("hint: the server's TLS certificate does not verify"),
        "{}",
        run.stderr
    );
    // Accepted with it, or with DBLab's variable.
    let version =
        server.scion(&["--url", &url, "--insecure", "-o", "json", "instance", "version"]).await;
    assert!(version.json()["version"].is_string(), "{}", version.stdout);
    let run = server
        .scion_with(&["--url", &url, "clone", "list"], &[("DBLAB_INSECURE_SKIP_VERIFY", "true")])
        .await;
    run.ok();

    // --debug: one line per request and per answer, the token masked, request bodies left out.
    let run = server.scion(&["--url", &url, "-k", "--debug", "clone", "list"]).await;
    run.ok();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert_eq!(lines[0], format!("debug: > GET {url}/clones Verification-Token: ********"));
    assert!(lines[1].starts_with(&format!("debug: < 200 OK GET {url}/clones (")), "{}", lines[1]);
    let run = server.scion_with(&["clone", "status", "nope"], &[("DBLAB_CLI_DEBUG", "1")]).await;
    run.expect_code(1);
    let base = &server.url;
    assert!(
        run.stderr.contains(&format!("debug: < 404 Not Found GET {base}/clone/nope (")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);
    // Without --debug, nothing of the sort.
    let run = server.scion(&["--url", &url, "-k", "clone", "list"]).await;
    run.ok();
    assert_eq!(run.stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_forwarding_reaches_the_api_and_a_clone() {
    let server = TestServer::start("").await;
    let ports = free_port_range(3);
    let (ssh_port, api_local, clone_local) = (*ports.start(), ports.start() + 1, *ports.end());
    let sshd = Sshd::start(server.scratch(), ssh_port).await;
    let forwarding_url = format!("ssh://root@127.0.0.1:{ssh_port}");
    let identity = sshd.client_key.to_str().expect("a UTF-8 path");
    let api_local_text = api_local.to_string();
    let through_ssh = ["--forwarding-server-url", &forwarding_url, "--identity-file", identity];
    // A home of the test's own: the host key check reads ~/.ssh/known_hosts.
    let home = server.scratch().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let home_env = [("HOME", home.to_str().expect("a UTF-8 path"))];

    // A command through the tunnel: the requests go to the tunnel's local port.
    let mut args = through_ssh.to_vec();
    args.extend(["--forwarding-local-port", &api_local_text, "--debug"]);
    args.extend(["clone", "create", "--id", "c1", "--username", "alice", "--password", PASSWORD]);
    let run = server.scion(&args).await;
    run.ok();
    assert!(
        run.stderr.contains(&format!(
            "debug: ssh: tunnel 127.0.0.1:{api_local} -> 127.0.0.1:{}",
            server_port(&server)
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("debug: > POST http://127.0.0.1:{api_local}/clone?wait=")),
        "{}",
        run.stderr
    );
    // The request body carries the clone's password: it stays out of the debug lines.
    assert!(
        run.stderr.contains("Verification-Token: ******** (JSON body not shown)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD) && !run.stderr.contains(TOKEN), "{}", run.stderr);
    // DBLab's variable names work too.
    let run = server
        .scion_with(
            &["-o", "json", "clone", "status", "c1"],
            &[
                ("DBLAB_CLI_FORWARDING_SERVER_URL", &forwarding_url),
                ("DBLAB_CLI_IDENTITY_FILE", identity),
            ],
        )
        .await;
    assert_eq!(run.json()["status"]["code"], "OK");
    // A key the server does not know is refused.
    let mut args = vec!["--forwarding-server-url", &forwarding_url, "--identity-file"];
    let stranger = sshd.stranger_key.to_str().expect("a UTF-8 path");
    args.extend([stranger, "clone", "list"]);
    let run = server.scion_with(&args, &home_env).await;
    run.expect_code(1);
    assert!(run.stderr.contains("refused the key"), "{}", run.stderr);
    // A host key in known_hosts must match: another one is refused, the right one accepted.
    let known_hosts = home.join(".ssh/known_hosts");
    let mut list = through_ssh.to_vec();
    list.extend(["clone", "list"]);
    let recorded = |key: &Path| {
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{ssh_port} {public}")).unwrap();
    };
    recorded(&sshd.stranger_key);
    let run = server.scion_with(&list, &home_env).await;
    run.expect_code(1);
    assert!(run.stderr.contains("differs from the one in known_hosts (line 1)"), "{}", run.stderr);
    recorded(&sshd.host_key);
    let run = server.scion_with(&list, &home_env).await;
    run.ok();
    assert_eq!(run.stderr, "");

    // Without --identity-file, ssh-agent's keys (SSH_AUTH_SOCK), as with dblab.
    let socket = home.join("agent.sock");
    let agent = StopOnDrop(
        Cmd::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&socket)
            .spawn_daemon(File::create(server.scratch().join("ssh-agent.log")).unwrap())
            .unwrap(),
    );
    let started = Instant::now();
    // The socket file appears at bind, before the agent listens: wait until it takes a connection.
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        assert!(
            agent.0.exit_status().is_none() && started.elapsed() < READY_DEADLINE,
            "no ssh-agent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let socket = socket.to_str().expect("a UTF-8 path");
    Cmd::new("ssh-add").arg(&sshd.client_key).env("SSH_AUTH_SOCK", socket).output().await.unwrap();
    let run = server
        .scion_with(
            &["--forwarding-server-url", &forwarding_url, "--debug", "clone", "list"],
            &[home_env[0], ("SSH_AUTH_SOCK", socket)],
        )
        .await;
    run.ok();
    let expected =
        format!("ssh: authenticated to {forwarding_url} with ssh-agent's key scion-test");
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    drop(agent);

    // port-forward: a local port to the clone's port, until stopped.
    let clone_port = server.client().clone_status("c1").await.unwrap().db.port;
    let clone_local_text = clone_local.to_string();
    let mut args = through_ssh.to_vec();
    args.extend(["--forwarding-local-port", &clone_local_text, "port-forward", "c1"]);
    let (forward, log_path) = spawn_scion(&server, &home, &args, "port-forward-clone.log");
    let output = wait_for_line(&forward.0, &log_path, "Press Ctrl-C to stop.").await;
    assert_eq!(
        output,
        format!(
            "Forwarding 127.0.0.1:{clone_local} to clone c1 at 127.0.0.1:{clone_port} through {forwarding_url}\n\
             Connection string: host=127.0.0.1 port={clone_local} user=alice dbname=postgres\n\
             Press Ctrl-C to stop.\n"
        )
    );
    let conn_str =
        format!("host=127.0.0.1 port={clone_local} user=alice dbname=postgres password={PASSWORD}");
    let (db, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    // The clone's server sees the connection arrive on its own port, from sshd.
    let row = db.query_one("SELECT inet_server_port()", &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0).map(|port| port.to_string()), Some(clone_port));
    drop(db);
    connection.await.unwrap().unwrap();
    drop(forward);

    // Without CLONE_ID, dblab's top-level port-forward: the API on --forwarding-local-port.
    let mut args = through_ssh.to_vec();
    args.extend(["--forwarding-local-port", &api_local_text, "port-forward"]);
    let (forward, log_path) = spawn_scion(&server, &home, &args, "port-forward-api.log");
    let output = wait_for_line(&forward.0, &log_path, "Press Ctrl-C to stop.").await;
    let api_url = format!("http://127.0.0.1:{api_local}/");
    assert_eq!(
        output,
        format!(
            "Forwarding 127.0.0.1:{api_local} to the API at 127.0.0.1:{} through {forwarding_url}\n\
             URL: {api_url}\nPress Ctrl-C to stop.\n",
            server_port(&server)
        )
    );
    let through_tunnel = api_client::Client::new(&api_url, Some(TOKEN.to_owned())).unwrap();
    assert_eq!(through_tunnel.clones().await.unwrap().len(), 1);
    drop(forward);

    server.destroy_all_clones().await;
    drop(sshd);
}

/// Starts `scion ARGS` against `server` with `home` as HOME, its output to `log_name` in the
/// server's scratch directory; for the commands that run until stopped.
fn spawn_scion(
    server: &TestServer,
    home: &Path,
    args: &[&str],
    log_name: &str,
) -> (StopOnDrop, PathBuf) {
    let log_path = server.scratch().join(log_name);
    let mut command =
        Cmd::new(scion_bin()).env_clear().env("PATH", "/usr/bin:/bin").env("HOME", home);
    for (key, value) in server.scion_env() {
        command = command.env(key, value);
    }
    let log = File::create(&log_path).expect("create the log");
    (
        StopOnDrop(command.args(args.iter().copied()).spawn_daemon(log).expect("start scion")),
        log_path,
    )
}

/// The test server's port.
fn server_port(server: &TestServer) -> u16 {
    server.url.rsplit(':').next().and_then(|port| port.parse().ok()).expect("a port in the URL")
}

/// A TLS endpoint with a fresh self-signed certificate for 127.0.0.1, passing each connection on
/// to `backend_port`; it stops with the test's runtime.
struct TlsProxy {
    port: u16,
}

async fn tls_proxy(backend_port: u16) -> TlsProxy {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("generate a certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("a TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen on loopback");
    let port = listener.local_addr().expect("the listener address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to pass on.
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut backend = TcpStream::connect(("127.0.0.1", backend_port))
                    .await
                    .expect("connect to the test server");
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    TlsProxy { port }
}

/// A real OpenSSH sshd on `127.0.0.1:port` with its own host key and config, letting root in
/// with one key generated here; stopped by PID on drop.
struct Sshd {
    _daemon: StopOnDrop,
    host_key: PathBuf,
    client_key: PathBuf,
    stranger_key: PathBuf,
}

impl Sshd {
    async fn start(dir: &Path, port: u16) -> Sshd {
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).expect("create the sshd dir");
        let keygen = |name: &str| {
            let path = dir.join(name);
            async move {
                Cmd::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "scion-test", "-f"])
                    .arg(&path)
                    .output()
                    .await
                    .expect("run ssh-keygen");
                path
            }
        };
        let host_key = keygen("host_key").await;
        let client_key = keygen("client_key").await;
        let stranger_key = keygen("stranger_key").await;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .expect("write authorized_keys");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
                 AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nStrictModes no\n",
                host_key = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                authorized = authorized.display(),
            ),
        )
        .expect("write sshd_config");
        // sshd refuses to start without its privilege separation directory, which Debian's
        // init script would create.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let log_path = dir.join("sshd.log");
        let daemon = Cmd::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .spawn_daemon(File::create(&log_path).expect("create the sshd log"))
            .expect("start sshd");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(daemon.exit_status().is_none(), "sshd exited; its log:\n{}", log());
            assert!(started.elapsed() < READY_DEADLINE, "sshd not listening; its log:\n{}", log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sshd { _daemon: StopOnDrop(daemon), host_key, client_key, stranger_key }
    }
}
