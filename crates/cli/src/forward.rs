//! SSH port forwarding as DBLab's CLI does it: `--forwarding-server-url ssh://user@host:port`
//! opens one SSH session (russh, no `ssh` binary), and each [`Tunnel`] listens on a loopback port
//! and carries every connection to a host and port as seen from the SSH server (`direct-tcpip`,
//! what `ssh -L` does). Commands point the API client at the API tunnel's local end;
//! `scion port-forward` adds a tunnel to a clone's port.
//!
//! Host keys: DBLab's CLI verifies none. Here a key recorded in `~/.ssh/known_hosts` for the
//! server must match (a changed key is refused, as `ssh` does); an unknown server is accepted,
//! as in DBLab, and said so in `--debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use russh::client;
use russh::keys::agent::client::AgentClient;
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The SSH port when the URL gives none.
const DEFAULT_SSH_PORT: u16 = 22;
/// Keys tried in this order when neither `--identity-file` nor ssh-agent is there, as `ssh` does.
const DEFAULT_IDENTITIES: [&str; 3] = [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"];

/// Where debug lines go (`--debug`); `None` keeps the tunnel quiet.
pub(crate) type Debug = Option<api_client::DebugSink>;

/// The SSH server of `--forwarding-server-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardingServer {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl ForwardingServer {
    /// Parses `ssh://user@host[:port]` (IPv6 hosts in brackets).
    pub(crate) fn parse(text: &str) -> anyhow::Result<ForwardingServer> {
        let invalid = |why: &str| anyhow!("invalid --forwarding-server-url {text:?}: {why}");
        let rest =
            text.strip_prefix("ssh://").ok_or_else(|| invalid("it must start with ssh://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, address) =
            rest.rsplit_once('@').ok_or_else(|| invalid("a user is required (ssh://user@host)"))?;
        if user.is_empty() {
            return Err(invalid("a user is required (ssh://user@host)"));
        }
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port))
                if !host.ends_with(':') && (!host.starts_with('[') || host.ends_with(']')) =>
            {
                let port = port.parse::<u16>().map_err(|_| invalid("the port is not a number"))?;
                (host, port)
            }
            _ => (address, DEFAULT_SSH_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || address.contains('/') {
            return Err(invalid("a host is required (ssh://user@host:port)"));
        }
        Ok(ForwardingServer { user: user.to_owned(), host: host.to_owned(), port })
    }
}

impl std::fmt::Display for ForwardingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "ssh://{}@{host}:{}", self.user, self.port)
    }
}

/// Checks the server's host key against `~/.ssh/known_hosts` (see the module comment).
struct HostKeys {
    host: String,
    port: u16,
    debug: Debug,
}

impl client::Handler for HostKeys {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // A host certificate needs a CA to check it against, which this client does not have.
            log(&self.debug, "ssh: the server offered a host certificate; accepted unchecked");
            return Ok(true);
        };
        match keys::check_known_hosts(&self.host, self.port, key) {
            Ok(true) => Ok(true),
            Err(keys::Error::KeyChanged { line }) => {
                eprintln!(
                    "error: the SSH host key of {}:{} differs from the one in known_hosts (line {line}); refusing to connect",
                    self.host, self.port
                );
                Ok(false)
            }
            Ok(false) | Err(_) => {
                log(
                    &self.debug,
                    "ssh: the server's host key is not in known_hosts; accepted, as dblab does",
                );
                Ok(true)
            }
        }
    }
}

/// An authenticated SSH session to the forwarding server.
pub(crate) struct Ssh {
    handle: Arc<client::Handle<HostKeys>>,
    debug: Debug,
}

impl std::fmt::Debug for Ssh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh").finish_non_exhaustive()
    }
}

impl Ssh {
    /// Connects and authenticates, as `ssh` and DBLab's CLI do: with `identity`; else with the
    /// keys of ssh-agent when `SSH_AUTH_SOCK` is set; else with the first of `~/.ssh/id_ed25519`,
    /// `id_ecdsa`, `id_rsa` that exists. Passphrase-protected key files are not supported (the
    /// agent is the way to use one).
    pub(crate) async fn connect(
        server: &ForwardingServer,
        identity: Option<&Path>,
        debug: Debug,
    ) -> anyhow::Result<Ssh> {
        let agent = std::env::var_os("SSH_AUTH_SOCK").filter(|socket| !socket.is_empty());
        let identity = match (identity, &agent) {
            (Some(path), _) => Some(path.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(default_identity()?),
        };
        let key = identity
            .as_ref()
            .map(|path| {
                keys::load_secret_key(path, None)
                    .with_context(|| format!("read the SSH key {}", path.display()))
            })
            .transpose()?;
        log(&debug, &format!("ssh: connecting to {server}"));
        let handler =
            HostKeys { host: server.host.clone(), port: server.port, debug: debug.clone() };
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, (server.host.as_str(), server.port), handler)
            .await
            .with_context(|| format!("connect to the SSH server {server}"))?;
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        match (key, identity) {
            (Some(key), Some(path)) => {
                let auth = handle
                    .authenticate_publickey(
                        &server.user,
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .with_context(|| format!("authenticate to {server}"))?;
                if !auth.success() {
                    bail!("{server} refused the key {} for user {}", path.display(), server.user);
                }
                log(
                    &debug,
                    &format!("ssh: authenticated to {server} with the key {}", path.display()),
                );
            }
            _ => authenticate_with_agent(&mut handle, server, hash, &debug).await?,
        }
        Ok(Ssh { handle: Arc::new(handle), debug })
    }

    /// Listens on `127.0.0.1:local_port` (0: any free port) and carries each connection to
    /// `host:port` as seen from the SSH server, until the tunnel is dropped.
    pub(crate) async fn forward(
        &self,
        local_port: u16,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Tunnel> {
        let listener = TcpListener::bind(("127.0.0.1", local_port))
            .await
            .with_context(|| format!("listen on 127.0.0.1:{local_port}"))?;
        let local = listener.local_addr().context("the tunnel's local address")?;
        log(&self.debug, &format!("ssh: tunnel {local} -> {host}:{port}"));
        let handle = Arc::clone(&self.handle);
        let debug = self.debug.clone();
        let host = host.to_owned();
        let task = tokio::spawn(async move {
            // The connections live in the set, so dropping the tunnel (aborting this task) ends them.
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let (socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        log(&debug, &format!("ssh: accept on {local}: {error}"));
                        continue;
                    }
                };
                connections.spawn(carry(
                    Arc::clone(&handle),
                    socket,
                    peer,
                    host.clone(),
                    port,
                    debug.clone(),
                ));
            }
        });
        Ok(Tunnel { local, task })
    }
}

/// Tries each key ssh-agent holds until the server accepts one.
async fn authenticate_with_agent(
    handle: &mut client::Handle<HostKeys>,
    server: &ForwardingServer,
    rsa_hash: Option<keys::HashAlg>,
    debug: &Debug,
) -> anyhow::Result<()> {
    let mut agent =
        AgentClient::connect_env().await.context("connect to ssh-agent (SSH_AUTH_SOCK)")?;
    let identities = agent.request_identities().await.context("list the keys of ssh-agent")?;
    for identity in &identities {
        let key = identity.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
        let comment = identity.comment().to_owned();
        match handle.authenticate_publickey_with(&server.user, key, hash, &mut agent).await {
            Ok(auth) if auth.success() => {
                log(
                    debug,
                    &format!("ssh: authenticated to {server} with ssh-agent's key {comment}"),
                );
                return Ok(());
            }
            Ok(_) => log(debug, &format!("ssh: {server} refused ssh-agent's key {comment}")),
            Err(error) => log(debug, &format!("ssh: ssh-agent's key {comment}: {error}")),
        }
    }
    bail!("{server} refused all {} keys of ssh-agent for user {}", identities.len(), server.user)
}

/// One connection through the tunnel: a `direct-tcpip` channel, copied both ways until either
/// side closes.
async fn carry(
    handle: Arc<client::Handle<HostKeys>>,
    mut socket: TcpStream,
    peer: SocketAddr,
    host: String,
    port: u16,
    debug: Debug,
) {
    let channel = match handle
        .channel_open_direct_tcpip(
            host.as_str(),
            u32::from(port),
            peer.ip().to_string(),
            u32::from(peer.port()),
        )
        .await
    {
        Ok(channel) => channel,
        Err(error) => {
            eprintln!("warning: the SSH server could not connect to {host}:{port}: {error}");
            return;
        }
    };
    let mut stream = channel.into_stream();
    match tokio::io::copy_bidirectional(&mut socket, &mut stream).await {
        Ok((sent, received)) => log(
            &debug,
            &format!(
                "ssh: {peer} -> {host}:{port} closed ({sent} bytes sent, {received} received)"
            ),
        ),
        Err(error) => log(&debug, &format!("ssh: {peer} -> {host}:{port}: {error}")),
    }
}

/// A listening local end of the SSH session; forwarding stops when it is dropped.
#[derive(Debug)]
pub(crate) struct Tunnel {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Tunnel {
    /// Where to connect.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn default_identity() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context("no --identity-file given and HOME is not set")?;
    DEFAULT_IDENTITIES
        .iter()
        .map(|name| Path::new(&home).join(name))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "no --identity-file given and none of ~/{} exists",
                DEFAULT_IDENTITIES.join(", ~/")
            )
        })
}

fn log(debug: &Debug, line: &str) {
    if let Some(sink) = debug {
        sink(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_urls_are_ssh_user_host_port() {
        let server = |user: &str, host: &str, port| ForwardingServer {
            user: user.into(),
            host: host.into(),
            port,
        };
        assert_eq!(
            ForwardingServer::parse("ssh://me@db.example:2222").unwrap(),
            server("me", "db.example", 2222)
        );
        assert_eq!(
            ForwardingServer::parse("ssh://me@db.example").unwrap(),
            server("me", "db.example", 22)
        );
        assert_eq!(
            ForwardingServer::parse("ssh://a@b@[::1]:23/").unwrap(),
            server("a@b", "::1", 23)
        );
        assert_eq!(ForwardingServer::parse("ssh://me@[::1]").unwrap(), server("me", "::1", 22));
        assert_eq!(server("me", "::1", 22).to_string(), "ssh://me@[::1]:22");
        for bad in [
            "me@host:22",
            "ssh://host:22",
            "ssh://@host",
            "ssh://me@",
            "ssh://me@host:x",
            "ssh://me@host/path",
        ] {
            assert!(ForwardingServer::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
