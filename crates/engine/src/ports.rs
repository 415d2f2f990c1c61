//! The pool of TCP ports clones listen on: no two clones ever hold the same port.
//!
//! A port is taken by a [`PortReservation`] and stays taken until the reservation is released
//! or dropped, so a clone whose creation fails half-way gives its port back without a cleanup
//! path of its own. Ports used by other programs on the host are skipped by a bind probe.

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

/// An error from the port pool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PortError {
    /// Every port in the range is held by a clone or busy on the host.
    #[error("no free port in {from}..={to}: all {count} are taken by clones or other programs")]
    Exhausted {
        /// The first port of the range.
        from: u16,
        /// The last port of the range.
        to: u16,
        /// How many ports the range has.
        count: usize,
    },
    /// The port is outside the configured range.
    #[error("port {port} is outside the clone port range {from}..={to}")]
    OutOfRange {
        /// The port asked for.
        port: u16,
        /// The first port of the range.
        from: u16,
        /// The last port of the range.
        to: u16,
    },
    /// Another clone holds the port.
    #[error("port {0} is already held by another clone")]
    Taken(u16),
}

/// The clone port pool, shared by every task that creates clones.
#[derive(Debug, Clone)]
pub(crate) struct PortPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Swapped whole by a configuration reload; ports already taken stay taken.
    range: std::sync::RwLock<RangeInclusive<u16>>,
    probe_address: IpAddr,
    taken: Mutex<BTreeSet<u16>>,
}

impl PortPool {
    /// A pool over `range`, probing `probe_address` (the address clones listen on) for ports
    /// that other programs use.
    pub(crate) fn new(range: RangeInclusive<u16>, probe_address: IpAddr) -> PortPool {
        PortPool {
            inner: Arc::new(Inner {
                range: std::sync::RwLock::new(range),
                probe_address,
                taken: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// The range new clones take ports from.
    pub(crate) fn range(&self) -> RangeInclusive<u16> {
        crate::sync::read(&self.inner.range).clone()
    }

    /// Moves the range new clones take ports from. Ports clones hold keep being held, inside
    /// the new range or not, until their clones release them: a running clone never moves.
    pub(crate) fn set_range(&self, range: RangeInclusive<u16>) {
        *crate::sync::write(&self.inner.range) = range;
    }

    fn taken(&self) -> MutexGuard<'_, BTreeSet<u16>> {
        // The set is only ever changed by single inserts and removes; a panic cannot leave it
        // half-updated.
        crate::sync::lock(&self.inner.taken)
    }

    /// Takes the lowest free port that no other program listens on.
    pub(crate) fn reserve(&self) -> Result<PortReservation, PortError> {
        let range = self.range();
        let mut taken = self.taken();
        for port in range.clone() {
            if taken.contains(&port) || !self.bindable(port) {
                continue;
            }
            taken.insert(port);
            return Ok(PortReservation { pool: self.clone(), port, kept: false });
        }
        Err(PortError::Exhausted { from: *range.start(), to: *range.end(), count: range.len() })
    }

    /// Takes a specific port, as a clone restored after a restart must keep its own.
    ///
    /// No bind probe is made: the clone's own server may be the one listening on it.
    pub(crate) fn claim(&self, port: u16) -> Result<PortReservation, PortError> {
        let range = self.range();
        if !range.contains(&port) {
            return Err(PortError::OutOfRange { port, from: *range.start(), to: *range.end() });
        }
        if !self.taken().insert(port) {
            return Err(PortError::Taken(port));
        }
        Ok(PortReservation { pool: self.clone(), port, kept: false })
    }

    /// Gives a port back, for a clone that kept its reservation and is now gone.
    pub(crate) fn release(&self, port: u16) {
        self.taken().remove(&port);
    }

    /// How many ports clones hold.
    pub(crate) fn in_use(&self) -> usize {
        self.taken().len()
    }

    fn bindable(&self, port: u16) -> bool {
        TcpListener::bind((self.inner.probe_address, port)).is_ok()
    }
}

/// A port taken from the pool; returned to it on drop unless [`PortReservation::keep`] was
/// called.
#[derive(Debug)]
pub(crate) struct PortReservation {
    pool: PortPool,
    port: u16,
    kept: bool,
}

impl PortReservation {
    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Keeps the port taken after the reservation is dropped; the owner later calls
    /// [`PortPool::release`].
    pub(crate) fn keep(mut self) -> u16 {
        self.kept = true;
        self.port
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        if !self.kept {
            self.pool.release(self.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A range of ports nothing else on the machine listens on, found by binding them.
    fn free_range(length: u16) -> RangeInclusive<u16> {
        let mut start = 20_000 + (std::process::id() % 20_000) as u16;
        loop {
            let range = start..=start + length - 1;
            if range.clone().all(|port| TcpListener::bind((LOOPBACK, port)).is_ok()) {
                return range;
            }
            start += length;
        }
    }

    #[test]
    fn reservations_are_distinct_and_returned_on_drop() {
        let range = free_range(3);
        let pool = PortPool::new(range.clone(), LOOPBACK);
        let first = pool.reserve().unwrap();
        let second = pool.reserve().unwrap();
        assert_ne!(first.port(), second.port());
        assert_eq!(pool.in_use(), 2);
        let first_port = first.port();
        drop(first);
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.reserve().unwrap().port(), first_port);
    }

    #[test]
    fn kept_ports_stay_taken_until_released() {
        let pool = PortPool::new(free_range(1), LOOPBACK);
        let port = pool.reserve().unwrap().keep();
        assert!(matches!(pool.reserve(), Err(PortError::Exhausted { count: 1, .. })));
        pool.release(port);
        assert_eq!(pool.reserve().unwrap().port(), port);
    }

    #[test]
    fn ports_busy_on_the_host_are_skipped() {
        let range = free_range(2);
        let _listener = TcpListener::bind((LOOPBACK, *range.start())).unwrap();
        let pool = PortPool::new(range.clone(), LOOPBACK);
        assert_eq!(pool.reserve().unwrap().port(), *range.end());
    }

    #[test]
    fn claim_checks_range_and_holders() {
        let range = free_range(2);
        let pool = PortPool::new(range.clone(), LOOPBACK);
        let held = pool.claim(*range.start()).unwrap();
        assert_eq!(pool.claim(*range.start()).unwrap_err(), PortError::Taken(*range.start()));
        assert!(matches!(pool.claim(1), Err(PortError::OutOfRange { port: 1, .. })));
        drop(held);
        assert!(pool.claim(*range.start()).is_ok());
    }

    #[test]
    fn concurrent_reservations_never_share_a_port() {
        let pool = PortPool::new(free_range(50), LOOPBACK);
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || pool.reserve().unwrap().keep())
            })
            .collect();
        let ports: HashSet<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ports.len(), 50);
        assert!(pool.reserve().is_err());
    }
}
