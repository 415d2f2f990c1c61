//! The host limits that bound how many clones can run at once, checked at start against the
//! clone port range: the engine's file descriptors, processes and threads. A limit that
//! is short is logged as a warning that names the setting to raise and how many clones it
//! allows; the engine still starts, since it serves every clone up to that number and only the
//! ones beyond it would fail.
//!
//! SysV shared memory and POSIX semaphores need no check: every clone's server runs in an IPC
//! namespace and a `/dev/shm` of its own (`docs/adr/0002-clone-isolation.md`), where the
//! kernel's per-namespace limits (`kernel.shmmni` 4,096 segments) hold for that one server, and
//! PostgreSQL puts its semaphores inside its main shared memory.

use std::fmt;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

/// Processes and threads of one idle clone server, with room for a few sessions: the
/// postmaster, checkpointer, background writer, WAL writer, autovacuum launcher, logical
/// replication launcher, PostgreSQL 18's three I/O workers, the engine's admin session and a
/// user's connections.
pub(crate) const PROCESSES_PER_CLONE: u64 = 14;
/// The engine's file descriptors per clone: the server's pidfd, the admin session's socket and,
/// while it starts, the readiness watch and the log file.
pub(crate) const FILES_PER_CLONE: u64 = 4;
/// The engine's file descriptors for everything else: the store, the API's connections, logs.
const FILES_BASE: u64 = 512;

/// What the host allows, as read at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HostLimits {
    /// The engine's soft `RLIMIT_NOFILE` (after raising it to the hard one).
    pub(crate) open_files: u64,
    /// The engine's soft `RLIMIT_NPROC`, which the servers inherit and which counts the
    /// processes of the servers' OS user; `None` when unlimited.
    pub(crate) user_processes: Option<u64>,
    /// `kernel.pid_max` and `kernel.threads-max`, whichever is lower.
    pub(crate) system_processes: u64,
    /// Processes and threads running now (`/proc/loadavg`).
    pub(crate) running_processes: u64,
}

/// A limit that allows fewer clones than the port range holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shortfall {
    /// The setting to raise, as an operator finds it.
    pub(crate) setting: &'static str,
    pub(crate) have: u64,
    /// What the port range needs.
    pub(crate) need: u64,
    /// How many clones the current value allows.
    pub(crate) clones: u64,
    pub(crate) ports: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}: enough for about {} clones, not the {} ports of [cloning] port_from..port_to; \
             raise it to at least {} (or narrow the port range)",
            self.setting, self.have, self.clones, self.ports, self.need
        )
    }
}

/// The limits short of what `ports` clones running at once need.
pub(crate) fn shortfalls(ports: u64, limits: &HostLimits) -> Vec<Shortfall> {
    let mut found = Vec::new();
    let mut check = |setting, have: u64, base: u64, per_clone: u64, count: u64| {
        let need = base + per_clone * count;
        if have < need {
            let clones = have.saturating_sub(base) / per_clone;
            found.push(Shortfall { setting, have, need, clones, ports });
        }
    };
    check(
        "the engine's open file limit (RLIMIT_NOFILE: LimitNOFILE= in its systemd unit, ulimit -n)",
        limits.open_files,
        FILES_BASE,
        FILES_PER_CLONE,
        ports,
    );
    if let Some(user_processes) = limits.user_processes {
        check(
            "the engine's process limit, which the servers' OS user inherits (RLIMIT_NPROC: \
             LimitNPROC= in its systemd unit, ulimit -u)",
            user_processes,
            0,
            PROCESSES_PER_CLONE,
            ports,
        );
    }
    check(
        "kernel.pid_max / kernel.threads-max (sysctl)",
        limits.system_processes,
        limits.running_processes,
        PROCESSES_PER_CLONE,
        ports,
    );
    found
}

/// Raises the engine's soft open-file limit to its hard limit (the soft default, 1,024, runs out
/// near 250 clones) and reads the rest.
pub(crate) fn read() -> HostLimits {
    let open_files = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                info!(from = soft, to = hard, "raised the open file limit to its hard limit");
                hard
            }
            Err(error) => {
                warn!(error = %error, "failed to raise the open file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => u64::MAX,
    };
    let user_processes = match getrlimit(Resource::RLIMIT_NPROC) {
        Ok((soft, _)) if soft != nix::sys::resource::RLIM_INFINITY => Some(soft),
        _ => None,
    };
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    let running_processes = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| running_from_loadavg(&text))
        .unwrap_or(0);
    HostLimits {
        open_files,
        user_processes,
        system_processes: sysctl("kernel/pid_max").min(sysctl("kernel/threads-max")),
        running_processes,
    }
}

/// The fourth field of `/proc/loadavg`, `running/total`: the total.
fn running_from_loadavg(text: &str) -> Option<u64> {
    text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roomy() -> HostLimits {
        HostLimits {
            open_files: 524_288,
            user_processes: None,
            system_processes: 4_194_304,
            running_processes: 300,
        }
    }

    #[test]
    fn a_roomy_host_holds_a_thousand_clones() {
        assert_eq!(shortfalls(1_000, &roomy()), Vec::new());
    }

    #[test]
    fn the_default_open_file_limit_is_named_with_what_it_allows() {
        let limits = HostLimits { open_files: 1_024, ..roomy() };
        let found = shortfalls(1_000, &limits);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].have, found[0].need, found[0].clones), (1_024, 4_512, 128));
        let message = found[0].to_string();
        assert!(message.contains("RLIMIT_NOFILE") && message.contains("LimitNOFILE="), "{message}");
        assert!(message.contains("about 128 clones, not the 1000 ports"), "{message}");
        // The same limit holds a hundred clones.
        assert_eq!(shortfalls(100, &limits), Vec::new());
    }

    #[test]
    fn processes_count_what_runs_already_and_every_server_with_its_sessions() {
        let limits = HostLimits { system_processes: 32_768, running_processes: 20_000, ..roomy() };
        let found = shortfalls(1_000, &limits);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].setting.starts_with("kernel.pid_max"));
        assert_eq!(found[0].clones, (32_768 - 20_000) / PROCESSES_PER_CLONE);
        let limits = HostLimits { user_processes: Some(4_096), ..roomy() };
        let found = shortfalls(1_000, &limits);
        assert!(found[0].setting.contains("RLIMIT_NPROC"), "{found:?}");
        assert_eq!(found[0].clones, 4_096 / PROCESSES_PER_CLONE);
    }

    #[test]
    fn reads_the_total_from_loadavg() {
        assert_eq!(running_from_loadavg("0.20 0.18 0.12 1/80 11206\n"), Some(80));
        assert_eq!(running_from_loadavg("garbage"), None);
    }

    #[test]
    fn this_host_reads() {
        let limits = read();
        assert!(limits.open_files > 0 && limits.system_processes > 0);
    }
}
