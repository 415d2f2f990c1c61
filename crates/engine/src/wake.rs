//! Scale to zero (`docs/scale-to-zero.md`, `docs/adr/0007-scale-to-zero.md`): a clone idle
//! for `[cloning] stop_idle_after`, or asked to by `POST /clone/{id}/stop`, is stopped, not
//! destroyed; the engine then holds its TCP port, and the first connection starts its server
//! and is carried to it.
//!
//! PostgreSQL cannot take over a listening socket, and Linux refuses a second listener on an
//! address and port unless both set `SO_REUSEPORT`, which PostgreSQL does not. So the engine
//! keeps the port of a clone it stopped until the clone is reset or destroyed: the clone's
//! server, started again, listens on its private unix socket only, and every connection the
//! engine accepts on the port (the first ones while the server starts, the later ones alike)
//! is carried to that socket for its lifetime. No connection ever meets a closed port, and
//! there is no hand-over to time. A start that fails is answered with a PostgreSQL error
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
use crate::servers::Server;
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

    /// Wakes the clone for a connection and carries it to the server's socket, or answers
    /// it with a PostgreSQL error when the clone cannot start.
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
                    Ok((port, started)) => {
                        let socket = engine.inner.servers.socket_path(port);
                        let connected = UnixStream::connect(socket)
                            .await
                            .map_err(|error| format!("its server's socket: {error}"));
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
                let mut server = match server {
                    Ok(server) => {
                        debug!(handed_over_ms = ms(accepted.elapsed()), "carrying a connection");
                        server
                    }
                    Err(error) => {
                        warn!(error = %error, "a connection to a stopped clone is refused");
                        let message = format!("the clone {id:?} could not be started: {error}");
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
                    carried = tokio::io::copy_bidirectional(&mut client, &mut server) => {
                        if let Err(error) = carried {
                            debug!(error = %error, "a carried connection ended");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Makes sure the clone's server runs, starting it when it is stopped; returns the port its
    /// socket is named after. Concurrent wakes of one clone take turns, so its server starts
    /// once.
    pub(crate) async fn wake(&self, id: &str) -> Result<u16> {
        let (port, started) = self.start_stopped(id).await?;
        if let Some(started) = started {
            self.record_started(id, started)?;
        }
        Ok(port)
    }

    /// Starts the clone's server when it is stopped. Returns the port its socket is named
    /// after and, when this call started it, the start still to record (see [`Started`]).
    async fn start_stopped(&self, id: &str) -> Result<(u16, Option<Started>)> {
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
            return Ok((record.socket_port(), None));
        }
        let at = Instant::now();
        let pgdata = self.inner.pool.pgdata_of(&storage::DatasetName::new(record.dataset.clone())?);
        let server = Server::of_clone(&record);
        // Behind the engine's listener when it holds the port; on the port itself otherwise
        // (a clone whose port could not be held, started by hand).
        let server = if self.inner.fronts.holds(id) { server.fronted() } else { server };
        let instance = self.inner.servers.start(server, &pgdata).await?;
        let timings = instance.start_timings();
        self.inner.servers.insert(id, instance);
        // Active from now on, before it shows as running: an idle check must not find it
        // running with the activity of before its stop.
        self.inner.state.touch(id, Utc::now());
        failpoint::hit("wake.server_started");
        Ok((record.socket_port(), Some(Started { turn, at, timings })))
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
}
