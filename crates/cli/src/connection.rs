//! How the CLI reaches the server: `--insecure`, `--debug`, `--forwarding-server-url`,
//! `--forwarding-local-port` and `--identity-file`, each also from a `SCION_*` variable and then
//! DBLab's `DBLAB_*` one, resolved into a [`Connection`] that builds the API client, through an
//! SSH tunnel ([`crate::forward`]) when forwarding is set.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use api_client::{Client, DebugSink, Tls};

use crate::args::ConnectionArgs;
use crate::commands::Failure;
use crate::config;
use crate::forward::{ForwardingServer, Ssh, Tunnel};

/// How to reach the server, from `--insecure`, `--debug`, `--forwarding-*` and `--identity-file`
/// or their environment variables (Scion's, then DBLab's).
pub(crate) struct Connection {
    tls: Tls,
    debug: Option<DebugSink>,
    forwarding: Option<(ForwardingServer, Option<PathBuf>)>,
    /// `--forwarding-local-port`.
    pub local_port: Option<u16>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("tls", &self.tls)
            .field("debug", &self.debug.is_some())
            .field("forwarding", &self.forwarding)
            .field("local_port", &self.local_port)
            .finish()
    }
}

/// The SSH session of `--forwarding-server-url` and the API's tunnel through it.
#[derive(Debug)]
pub(crate) struct Forwarding {
    pub ssh: Ssh,
    pub api: Tunnel,
    pub server: ForwardingServer,
    /// The API's host and port as seen from the SSH server (the URL's).
    pub api_host: String,
    pub api_port: u16,
}

impl Connection {
    pub(crate) fn resolve(args: &ConnectionArgs) -> Result<Connection, Failure> {
        let usage = |error: anyhow::Error| Failure::Usage(error);
        let insecure = args.insecure || env_flag(&["SCION_INSECURE", "DBLAB_INSECURE_SKIP_VERIFY"]);
        let debug = args.debug || env_flag(&["SCION_DEBUG", "DBLAB_CLI_DEBUG"]);
        let server = args.forwarding_server_url.clone().or_else(|| {
            env_first(&["SCION_FORWARDING_SERVER_URL", "DBLAB_CLI_FORWARDING_SERVER_URL"])
        });
        let local_port = match args.forwarding_local_port {
            Some(port) => Some(port),
            None => env_first(&["SCION_FORWARDING_LOCAL_PORT", "DBLAB_CLI_FORWARDING_LOCAL_PORT"])
                .map(|port| {
                    port.parse::<u16>()
                        .with_context(|| format!("invalid forwarding local port {port:?}"))
                })
                .transpose()
                .map_err(usage)?,
        };
        let identity = args.identity_file.clone().or_else(|| {
            env_first(&["SCION_IDENTITY_FILE", "DBLAB_CLI_IDENTITY_FILE"]).map(PathBuf::from)
        });
        let forwarding = server
            .map(|server| ForwardingServer::parse(&server).map(|server| (server, identity)))
            .transpose()
            .map_err(usage)?;
        #[allow(clippy::print_stderr, reason = "--debug writes to stderr")]
        let debug = debug.then(|| Arc::new(|line: &str| eprintln!("debug: {line}")) as DebugSink);
        Ok(Connection {
            tls: if insecure { Tls::AcceptInvalid } else { Tls::Verify },
            debug,
            forwarding,
            local_port,
        })
    }

    /// Whether `--forwarding-server-url` is set.
    pub(crate) fn forwards(&self) -> bool {
        self.forwarding.is_some()
    }

    /// A client for `url`; with forwarding, through a new SSH tunnel on `api_port` to the URL's
    /// host and port (the URL's host is then as seen from the SSH server, as in DBLab).
    pub(crate) async fn client(
        &self,
        url: &str,
        token: Option<String>,
        api_port: Option<u16>,
    ) -> Result<(Client, Option<Forwarding>), Failure> {
        let with_debug = |client: Client| match &self.debug {
            Some(sink) => client.with_debug(Arc::clone(sink)),
            None => client,
        };
        let direct = Client::with_tls(url, token.clone(), self.tls)?;
        let Some((server, identity)) = &self.forwarding else {
            return Ok((with_debug(direct), None));
        };
        let base = direct.base_url();
        let api_host = base.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let remote_port = base.port_or_known_default().unwrap_or_default();
        let ssh = Ssh::connect(server, identity.as_deref(), self.debug.clone())
            .await
            .map_err(Failure::Operation)?;
        let tunnel = ssh
            .forward(api_port.unwrap_or(0), &api_host, remote_port)
            .await
            .map_err(Failure::Operation)?;
        let mut local = base.clone();
        let rewritten = local
            .set_host(Some("127.0.0.1"))
            .ok()
            .and_then(|()| local.set_port(Some(tunnel.local().port())).ok());
        if rewritten.is_none() {
            return Err(Failure::Usage(anyhow::anyhow!("cannot forward the URL {url}")));
        }
        let client = with_debug(Client::with_tls(local.as_str(), token, self.tls)?);
        let forwarding = Forwarding {
            ssh,
            api: tunnel,
            server: server.clone(),
            api_host,
            api_port: remote_port,
        };
        Ok((client, Some(forwarding)))
    }
}

/// The first of these variables that is set and not empty.
fn env_first(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| config::env(name))
}

/// Whether any of these variables says true (as Go's `strconv.ParseBool`, which DBLab uses, and `yes`/`on`).
/// The first one set decides.
fn env_flag(names: &[&str]) -> bool {
    env_first(names).is_some_and(|value| {
        matches!(value.to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes" | "on")
    })
}
