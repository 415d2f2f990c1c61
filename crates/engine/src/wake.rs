//! Scale to zero (`docs/scale-to-zero.md`, `docs/adr/0007-scale-to-zero.md`): a clone idle
//! for `[cloning] stop_idle_after`, or asked to by `POST /clone/{id}/stop`, is stopped, not
//! destroyed; the engine then holds its TCP port, and the first connection starts its server
//! and is carried to it.
//!
//! PostgreSQL cannot take over a listening socket, and Linux refuses a second listener on an
//! address and port unless both set `SO_REUSEPORT`, which PostgreSQL does not. So the engine
//! keeps the port of a clone it stopped until the clone is reset or destroyed: the clone's
//! server, started again, listens on a private port of the clone range
//! ([`CloneRecord::server_port`], as a claimed warm clone's server does) on the loopback
//! address only, and every connection the engine accepts on the clone's port (the first ones
//! while the server starts, the later ones alike) is carried to it over loopback TCP, byte for
//! byte, for its lifetime: the client's SSLRequest, TLS handshake and certificate login are
//! the server's own, and the engine never sees a key. No connection ever meets a closed port,
//! and there is no hand-over to time. A start that fails is answered with a PostgreSQL error
//! (`57P03`), never a reset connection.
//!
//! [`Fronts`] is the component: the listeners held (by clone) and each clone's power lock,
//! which makes stops and starts of one clone take turns, so concurrent first connections
//! start its server once. The clone's record says whether it is stopped (`stopped_at`,
//! written once the server has stopped and its port is held, cleared once it has started), so
//! a restart and a reboot keep it stopped: reconciliation opens its listener again.

mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::{Error, Result};
use crate::model::{CloneRecord, CloneState};
use crate::provision::ms;
use crate::servers::{CarryTarget, Server};
use crate::sync::lock;
use crate::{CloneView, Engine, failpoint};

/// A stopped clone's status message.
const STOPPED_MESSAGE: &str =
    "Clone is stopped to save memory; the first connection to its port starts it.";
/// The status message of a clone stopped by the idle check.
const STOPPED_IDLE_MESSAGE: &str =
    "Clone is stopped (idle) to save memory; the first connection to its port starts it.";
/// A running clone's status message (DBLab's).
const READY_MESSAGE: &str = "Clone is ready to accept Postgres connections.";
/// How long a client gets to send its startup packet before a refusal gives up on it.
const STARTUP_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A server a wake started whose start is not recorded yet: the clone's power turn stays held
/// until it is, so that no stop, reset or destroy comes in between. A crash before the record
/// leaves the clone recorded as stopped, whose server the next start stops.
struct Started {
    turn: tokio::sync::OwnedMutexGuard<()>,
    at: Instant,
    timings: Option<postgres::StartTimings>,
}

/// The engine's side of a carried connection: to the server's TCP port (TLS passes through),
/// or to the unix socket of a server that listens on no TCP address.
enum Carried {
    Tcp(TcpStream),
    Socket(UnixStream),
}

impl Carried {
    async fn connect(target: &CarryTarget) -> std::io::Result<Carried> {
        Ok(match target {
            CarryTarget::Tcp(address) => {
                let stream = TcpStream::connect(address).await?;
                // Small messages both ways (a handshake, a query): not held back.
                let _ = stream.set_nodelay(true);
                Carried::Tcp(stream)
            }
            CarryTarget::Socket(path) => Carried::Socket(UnixStream::connect(path).await?),
        })
    }

    /// Carries bytes both ways, unchanged, until either side closes.
    async fn carry(self, client: &mut TcpStream) -> std::io::Result<(u64, u64)> {
        match self {
            Carried::Tcp(mut server) => tokio::io::copy_bidirectional(client, &mut server).await,
            Carried::Socket(mut server) => tokio::io::copy_bidirectional(client, &mut server).await,
        }
    }
}

/// The listeners the engine holds on clones' ports, and each clone's power lock.
#[derive(Debug, Default)]
pub(crate) struct Fronts {
    /// The clones whose port the engine holds, each with what closes its listeners.
    held: Mutex<HashMap<String, CancellationToken>>,
    /// Per clone: held by a stop, a start, and the stop of a reset or destroy, in turn.
    power: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fronts {
    /// The clone's power lock.
    fn power(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.power).entry(id.to_owned()).or_default().clone()
    }

    /// Whether the engine holds the clone's port.
    fn holds(&self, id: &str) -> bool {
        lock(&self.held).contains_key(id)
    }

    /// Closes the clone's listeners, if held; connections already carried stay.
    fn close(&self, id: &str) -> bool {
        let closed = lock(&self.held).remove(id);
        closed.inspect(CancellationToken::cancel).is_some()
    }
}

/// The addresses to bind for `listen_addresses` (`[clone] listen_addresses`, validated: IP
/// addresses, `*` and `localhost`), as the clone's server would.
fn front_addresses(listen_addresses: &str) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for address in listen_addresses.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let more = match address {
            "*" => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            "localhost" => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            other => other.parse().into_iter().collect(),
        };
        for address in more {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    addresses
}

/// The address the engine connects to for a server whose first listen address is
/// `listen_address` (as `listen_addresses` names it, and `postmaster.pid` says): a wildcard's
/// loopback address of its family (PostgreSQL binds `::` IPv6-only, so `::1` reaches it),
/// `localhost`'s IPv4 loopback, and a specific address itself (a loopback one, or this host's
/// own, which it reaches without leaving the host). `None` when it is no address (empty, a
/// host name: the configuration allows neither).
pub(crate) fn carry_address(listen_address: &str) -> Option<IpAddr> {
    match listen_address.trim() {
        "*" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        other => match other.parse::<IpAddr>().ok()? {
            IpAddr::V4(address) if address.is_unspecified() => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            IpAddr::V6(address) if address.is_unspecified() => {
                Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
            address => Some(address),
        },
    }
}

/// A listener on `address`, bound like PostgreSQL binds (address reuse; IPv6 only on an IPv6
/// address, so `*` can take both families).
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

impl Engine {
    /// Stops a clone's server and holds its port, so that its first connection starts it again
    /// (`POST /clone/{id}/stop`). Its dataset, port, credentials and protection stay. A
    /// stopped clone is stopped again without error.
    pub async fn stop_clone(&self, id: &str) -> Result<CloneView> {
        self.stop_clone_saying(id, STOPPED_MESSAGE, None).await?;
        self.clone_view(id)
    }

    /// Starts a stopped clone's server, as its first connection would
    /// (`POST /clone/{id}/start`); a running clone is left as it is.
    pub async fn start_clone(&self, id: &str) -> Result<CloneView> {
        self.wake(id).await?;
        self.clone_view(id)
    }

    /// Stops the clone saying `message`; with `idle_for`, only when it is still idle that
    /// long once its turn comes (a connection may have woken it or arrived meanwhile).
    async fn stop_clone_saying(
        &self,
        id: &str,
        message: &str,
        idle_for: Option<chrono::Duration>,
    ) -> Result<()> {
        let power = self.inner.fronts.power(id);
        let _turn = power.lock().await;
        let last_active = {
            let state = self.read_state();
            let entry = state.clones.get(id).ok_or_else(|| crate::state::not_found(id))?;
            if entry.record.stopped_at.is_some() {
                return Ok(());
            }
            entry.last_active
        };
        if idle_for.is_some_and(|idle_for| Utc::now() - last_active < idle_for) {
            return Ok(());
        }
        let record = self.clone_view(id)?.record;
        if record.state != CloneState::Ok {
            return Err(Error::Refused(format!(
                "clone {id:?} is {}; only an OK clone can be stopped",
                record.state.code()
            )));
        }
        let pgdata = self.inner.pool.pgdata_of(&storage::DatasetName::new(record.dataset.clone())?);
        self.inner.servers.stop(&record, &pgdata).await?;
        // Recorded once the server is gone and the engine holds its port, so that a clone
        // shown as stopped is one whose first connection starts it. A crash before the record
        // leaves a clone recorded as running, whose server the next start starts again.
        let message = match self.hold_port(&record) {
            Ok(()) => message.to_owned(),
            Err(error) => format!(
                "Clone is stopped; its port could not be held ({error}), so a connection does \
                 not start it: start it with POST /clone/{id}/start."
            ),
        };
        let now = Utc::now();
        self.transition(id, &[CloneState::Ok], |stored| {
            stored.stopped_at = Some(now);
            stored.state_message = message;
            // Started again, the server takes the clone's own port behind the listener.
            stored.server_port = None;
            Ok(())
        })?;
        self.release_server_port(record.server_port);
        info!(clone_id = %id, port = record.port, "clone stopped");
        Ok(())
    }

    /// Frees the port of a claimed warm clone's server ([`CloneRecord::server_port`]) and its
    /// socket directory, once that server is gone and the clone's record no longer names it.
    pub(crate) fn release_server_port(&self, port: Option<u16>) {
        let Some(port) = port else { return };
        self.inner.servers.remove_socket_dir(port);
        self.inner.ports.release(port);
        // The freed port may be what the warm pool was short of.
        self.inner.warm.wake();
    }

    /// Holds a stopped clone's port, unless held already.
    fn hold_port(&self, record: &CloneRecord) -> Result<()> {
        if self.inner.fronts.holds(&record.id) {
            return Ok(());
        }
        self.open_front(record).inspect_err(|error| {
            warn!(clone_id = %record.id, port = record.port, error = %error, "failed to hold a stopped clone's port");
        })
    }

    /// Binds the clone's port on the servers' addresses and serves it: every connection
    /// wakes the clone and is carried to its server's socket.
    pub(crate) fn open_front(&self, record: &CloneRecord) -> Result<()> {
        let addresses = front_addresses(&self.inner.servers.listen_addresses());
        if addresses.is_empty() {
            return Err(Error::Refused(
                "clone servers listen on no TCP address ([clone] listen_addresses)".to_owned(),
            ));
        }
        let mut listeners = Vec::with_capacity(addresses.len());
        for address in addresses {
            let address = SocketAddr::new(address, record.port);
            let listener = bind(address).map_err(|error| Error::Io {
                what: "hold the clone's port",
                path: address.to_string().into(),
                error,
            })?;
            listeners.push(listener);
        }
        let token = self.inner.cancel.child_token();
        lock(&self.inner.fronts.held).insert(record.id.clone(), token.clone());
        for listener in listeners {
            let engine = self.clone();
            let id = record.id.clone();
            let token = token.clone();
            // Its own root: the listener outlives the request or start that opened it.
            let span = info_span!(parent: None, "front", clone_id = %id, port = record.port);
            self.inner.tasks.spawn(
                async move {
                    loop {
                        let accepted = tokio::select! {
                            () = token.cancelled() => break,
                            accepted = listener.accept() => accepted,
                        };
                        match accepted {
                            Ok((stream, _)) => {
                                // A connection is activity, before its session shows.
                                engine.inner.state.touch(&id, Utc::now());
                                engine.spawn_carry(&id, stream);
                            }
                            Err(error) => {
                                // Out of descriptors, say: the next accept may do better.
                                warn!(error = %error, "failed to accept a connection");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    debug!("listener closed");
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    /// Wakes the clone for a connection and carries it to the server, or answers it with a
    /// PostgreSQL error when the clone cannot start.
    fn spawn_carry(&self, id: &str, mut client: TcpStream) {
        let accepted = Instant::now();
        let engine = self.clone();
        let id = id.to_owned();
        let cancel = self.inner.cancel.clone();
        let span = info_span!("carry", clone_id = %id);
        self.inner.tasks.spawn(
            async move {
                let _ = client.set_nodelay(true);
                let server = match engine.start_stopped(&id).await {
                    Ok((target, started)) => {
                        let connected = Carried::connect(&target)
                            .await
                            .map_err(|error| format!("its server at {target}: {error}"));
                        // The record's commit waits for the disk: it is written while the
                        // client logs in, not before.
                        if let Some(started) = started {
                            let tasks = engine.inner.tasks.clone();
                            let (engine, id) = (engine.clone(), id.clone());
                            tasks.spawn_blocking(move || {
                                if let Err(error) = engine.record_started(&id, started) {
                                    warn!(error = %error, "failed to record a started clone");
                                }
                            });
                        }
                        connected
                    }
                    Err(error) => Err(error.to_string()),
                };
                let server = match server {
                    Ok(server) => {
                        debug!(handed_over_ms = ms(accepted.elapsed()), "carrying a connection");
                        server
                    }
                    Err(error) => {
                        warn!(error = %error, "a connection to a stopped clone is refused");
                        let message = format!("the clone {id:?} could not be started: {error}");
                        // An SSLRequest is declined ('N'), as PostgreSQL declines it when it
                        // cannot do TLS: the engine has no key to answer it with. A client
                        // that may go on without TLS shows the error; one that requires TLS
                        // says the server does not support SSL, and the reason is in the
                        // clone's status (`note_failed_start`) and the engine's log.
                        let refused = tokio::time::timeout(
                            STARTUP_READ_TIMEOUT,
                            wire::refuse(&mut client, wire::CANNOT_CONNECT_NOW, &message),
                        );
                        if let Ok(Err(error)) = refused.await {
                            debug!(error = %error, "the refused client's startup was unreadable");
                        }
                        return;
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => {}
                    carried = server.carry(&mut client) => {
                        if let Err(error) = carried {
                            debug!(error = %error, "a carried connection ended");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Makes sure the clone's server runs, starting it when it is stopped; returns the clone's
    /// record as its server now runs (a woken server's private port in `server_port`: what an
    /// admin session connects to). Concurrent wakes of one clone take turns, so its server
    /// starts once.
    pub(crate) async fn wake(&self, id: &str) -> Result<CloneRecord> {
        let (_, started) = self.start_stopped(id).await?;
        if let Some(started) = started {
            self.record_started(id, started)?;
        }
        Ok(self.clone_view(id)?.record)
    }

    /// Starts the clone's server when it is stopped. Returns where its connections are
    /// carried and, when this call started it, the start still to record (see [`Started`]).
    async fn start_stopped(&self, id: &str) -> Result<(CarryTarget, Option<Started>)> {
        let turn = self.inner.fronts.power(id).lock_owned().await;
        let record = self.clone_view(id)?.record;
        if record.state != CloneState::Ok {
            return Err(Error::Refused(format!(
                "clone {id:?} is {}; only an OK clone can be started",
                record.state.code()
            )));
        }
        if self.inner.servers.is_running(id) {
            // Running, but recorded as stopped: the record of its start failed. Again.
            if record.stopped_at.is_some() {
                let started = Started { turn, at: Instant::now(), timings: None };
                self.record_started(id, started)?;
            }
            return Ok((self.carry_target(id)?, None));
        }
        let at = Instant::now();
        let started = self.start_server(&record).await;
        let timings = match started {
            Ok(timings) => timings,
            Err(error) => {
                self.note_failed_start(&record, &error);
                return Err(error);
            }
        };
        // Active from now on, before it shows as running: an idle check must not find it
        // running with the activity of before its stop.
        self.inner.state.touch(id, Utc::now());
        failpoint::hit("wake.server_started");
        Ok((self.carry_target(id)?, Some(Started { turn, at, timings })))
    }

    /// Starts a stopped clone's server: behind the engine's listener when it holds the port, on
    /// a private port of the clone range (taken and recorded first, so that a crash leaves no
    /// port unaccounted for; given back when the start fails); on the port itself otherwise (a
    /// clone whose port could not be held, started by hand).
    async fn start_server(&self, record: &CloneRecord) -> Result<Option<postgres::StartTimings>> {
        let pgdata = self.inner.pool.pgdata_of(&storage::DatasetName::new(record.dataset.clone())?);
        let fronted = self.inner.fronts.holds(&record.id);
        let private;
        let record = match record.server_port {
            None if fronted => {
                private = self.take_private_port(record).await?;
                &private
            }
            _ => record,
        };
        let server = Server::of_clone(record);
        let server = if fronted { server.fronted() } else { server };
        match self.inner.servers.start(server, &pgdata).await {
            Ok(instance) => {
                let timings = instance.start_timings();
                self.inner.servers.insert(&record.id, instance);
                Ok(timings)
            }
            Err(error) => {
                if fronted {
                    self.give_back_private_port(&record.id);
                }
                Err(error)
            }
        }
    }

    /// Takes a private port for a fronted server and records it as the clone's
    /// `server_port`. With none free, a ready warm clone gives its port up, as to a create;
    /// with none either, the start fails saying why: never a server the engine reaches
    /// without TLS.
    async fn take_private_port(&self, record: &CloneRecord) -> Result<CloneRecord> {
        let port = match self.inner.ports.reserve() {
            Ok(reservation) => reservation.keep(),
            Err(exhausted) => match self.inner.warm.take_any() {
                // The port stays taken, now by the clone.
                Some(warm) => {
                    let port = warm.record.port;
                    self.dispose_evicted(warm).await;
                    port
                }
                None => {
                    return Err(Error::NoCapacity(format!(
                        "its server needs a private port, for TLS to pass through the engine: \
                         {exhausted}"
                    )));
                }
            },
        };
        let stored = self.transition(&record.id, &[CloneState::Ok], |stored| {
            stored.server_port = Some(port);
            Ok(())
        });
        if stored.is_err() {
            self.release_server_port(Some(port));
        }
        stored
    }

    /// Gives back the private port of a fronted server whose start failed.
    fn give_back_private_port(&self, id: &str) {
        let mut freed = None;
        let cleared = self.transition(id, &[CloneState::Ok], |stored| {
            freed = stored.server_port.take();
            Ok(())
        });
        match cleared {
            Ok(_) => self.release_server_port(freed),
            Err(error) => {
                warn!(clone_id = %id, error = %error, "failed to give back a private port")
            }
        }
    }

    /// Shows why a stopped clone did not start in its status (a client that requires TLS
    /// cannot be told: see [`Engine::spawn_carry`]).
    fn note_failed_start(&self, record: &CloneRecord, error: &Error) {
        if record.stopped_at.is_none() {
            return;
        }
        let message = format!(
            "Clone is stopped; its last start failed ({error}). A connection to its port tries \
             again."
        );
        if record.state_message == message {
            return;
        }
        let noted = self.transition(&record.id, &[CloneState::Ok], |stored| {
            stored.state_message = message;
            Ok(())
        });
        if let Err(error) = noted {
            debug!(clone_id = %record.id, error = %error, "failed to note a failed start");
        }
    }

    /// Where the connections to a running clone's port are carried.
    fn carry_target(&self, id: &str) -> Result<CarryTarget> {
        self.inner.servers.carry_target(id).ok_or_else(|| {
            Error::Refused(format!("clone {id:?} has no running server to carry connections to"))
        })
    }

    /// Records that the clone's server runs again, then ends the start's turn. A destroy or
    /// reset that came meanwhile waits for that turn, then stops the server.
    fn record_started(&self, id: &str, started: Started) -> Result<()> {
        let Started { turn, at, timings } = started;
        self.transition(id, &[CloneState::Ok], |stored| {
            stored.stopped_at = None;
            stored.state_message = READY_MESSAGE.to_owned();
            Ok(())
        })?;
        drop(turn);
        // Where a wake's time goes, for whoever reads the log next to the benchmarks.
        info!(
            clone_id = %id,
            ready_ms = timings.map(|timings| ms(timings.ready)),
            accepting_ms = timings.map(|timings| ms(timings.connected)),
            elapsed_ms = ms(at.elapsed()),
            "clone started"
        );
        Ok(())
    }

    /// Before a reset or destroy stops a clone's server: waits for a start or stop of the
    /// clone to finish and closes the engine's listener on its port, so that the port is the
    /// server's again. The returned turn is held until the server is stopped.
    pub(crate) async fn release_port(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self.inner.fronts.power(id).lock_owned().await;
        if self.inner.fronts.close(id) {
            debug!(clone_id = %id, "released the clone's port");
        }
        turn
    }

    /// Closes the engine's listeners on the clone's port, if it holds them.
    pub(crate) fn close_front(&self, id: &str) {
        self.inner.fronts.close(id);
    }

    /// Forgets a destroyed clone's power lock.
    pub(crate) fn forget_front(&self, id: &str) {
        self.inner.fronts.close(id);
        lock(&self.inner.fronts.power).remove(id);
    }

    /// At start, for a clone that is `OK`: a stopped one has its port held again (and a server
    /// found running on its data stopped: the record says stopped). Returns whether the clone
    /// is stopped.
    pub(crate) async fn reconcile_power(&self, record: &CloneRecord) -> bool {
        if record.stopped_at.is_some() {
            if let Ok(dataset) = storage::DatasetName::new(record.dataset.clone()) {
                let pgdata = self.inner.pool.pgdata_of(&dataset);
                if let Err(error) = self.inner.servers.stop(record, &pgdata).await {
                    warn!(clone_id = %record.id, error = %error, "failed to stop a stopped clone's server");
                }
            }
            // A start interrupted between taking a private port and recording the start: the
            // next start takes one again.
            if record.server_port.is_some() {
                self.give_back_private_port(&record.id);
            }
            if let Err(error) = self.hold_port(record) {
                let message = format!(
                    "Clone is stopped; its port could not be held ({error}), so a connection \
                     does not start it: start it with POST /clone/{}/start.",
                    record.id
                );
                let _ = self.transition(&record.id, &[CloneState::Ok], |stored| {
                    stored.state_message = message;
                    Ok(())
                });
            }
            return true;
        }
        false
    }

    /// After a running clone's server is adopted at start: when its port is free, the server
    /// is one the engine started behind its listener, whose port it holds again.
    pub(crate) fn reconcile_front(&self, record: &CloneRecord) {
        if self.inner.fronts.holds(&record.id) {
            return;
        }
        // The bind succeeds only when the server holds no TCP port of its own.
        if self.open_front(record).is_ok() {
            info!(clone_id = %record.id, port = record.port, "holding the port of a clone started behind the engine");
            if matches!(self.inner.servers.carry_target(&record.id), Some(CarryTarget::Socket(_))) {
                warn!(clone_id = %record.id, "the clone's server, started behind the engine by an earlier version, listens on its unix socket only: its connections have no TLS until it is stopped, reset or restarted");
            }
        }
    }

    /// One pass of the idle stop: a running clone with no sessions and no activity for
    /// `stop_idle_after` is stopped.
    pub(crate) async fn stop_idle(&self) {
        let stop_after = self.config().cloning.stop_idle_after;
        let Ok(stop_after) = chrono::Duration::from_std(stop_after) else { return };
        let candidates: Vec<(CloneRecord, DateTime<Utc>)> = self
            .read_state()
            .clones
            .values()
            .filter(|entry| entry.record.state == CloneState::Ok)
            .filter(|entry| entry.record.stopped_at.is_none())
            .map(|entry| (entry.record.clone(), entry.last_active))
            .collect();
        for (record, last_active) in candidates {
            let last_active = self.observe_activity(&record, last_active).await;
            if Utc::now() - last_active < stop_after {
                continue;
            }
            info!(clone_id = %record.id, "stopping idle clone");
            let stopping =
                self.stop_clone_saying(&record.id, STOPPED_IDLE_MESSAGE, Some(stop_after));
            if let Err(error) = stopping.await {
                warn!(clone_id = %record.id, error = %error, "failed to stop an idle clone");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_addresses_follow_listen_addresses() {
        assert_eq!(front_addresses("127.0.0.1"), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(
            front_addresses("*"),
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
        );
        assert_eq!(
            front_addresses("localhost, 127.0.0.1, ::1"),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        assert!(front_addresses("").is_empty());
    }

    #[test]
    fn the_carry_reaches_a_server_at_its_listen_address_from_this_host() {
        let v4 = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        // A wildcard is reached at the loopback address of its family.
        assert_eq!(carry_address("*"), v4("127.0.0.1"));
        assert_eq!(carry_address("0.0.0.0"), v4("127.0.0.1"));
        assert_eq!(carry_address("::"), v4("::1"));
        assert_eq!(carry_address("localhost"), v4("127.0.0.1"));
        // A specific address, loopback or the host's own, is reached at itself.
        assert_eq!(carry_address("127.0.0.1"), v4("127.0.0.1"));
        assert_eq!(carry_address(" 127.0.0.2 "), v4("127.0.0.2"));
        assert_eq!(carry_address("::1"), v4("::1"));
        assert_eq!(carry_address("10.1.2.3"), v4("10.1.2.3"));
        assert_eq!(carry_address("2001:db8::7"), v4("2001:db8::7"));
        // No TCP, or nothing the engine can connect to without resolving a name.
        assert_eq!(carry_address(""), None);
        assert_eq!(carry_address("db.example"), None);
        // A fronted server's own address is one the carry reaches.
        assert_eq!(carry_address(crate::servers::FRONTED_LISTEN_ADDRESS), v4("127.0.0.1"));
    }
}
