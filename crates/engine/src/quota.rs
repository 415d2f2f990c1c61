//! Per-clone CPU and memory limits: each limited clone's server runs in a control group of its
//! own, so one runaway clone cannot starve the others (docs/quotas.md).
//!
//! A clone's limits are the request's, field by field over `[clone] cpu` and `memory`
//! ([`CloneLimits::over`], a pure function); a clone with none runs in no group of Scion's. The
//! groups form one tree per engine, `<the engine's own group>/scion-<hash of the state
//! directory>` in each hierarchy (so two engines on one host never touch each other's), and a
//! group is named after its clone's port: a port is held by exactly one clone or warm clone
//! until it is destroyed, survives resets and passes with a claimed warm clone, which is what a
//! group must do too. [`Quotas`] makes a group with its limits before the server starts (the
//! server enters it before it executes, in `exec`'s sandbox), removes it once the server is
//! stopped for good, and at start removes the groups of ports nobody holds.

use std::collections::BTreeSet;
use std::path::Path;

use exec::{Cgroup, CgroupError, CgroupTree, Limits, Usage};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// A clone's own limits; `None` leaves a field to the configuration (and then unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CloneLimits {
    /// CPU time, in cores.
    pub cpu: Option<f64>,
    /// Memory in bytes.
    pub memory: Option<u64>,
}

impl CloneLimits {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }

    /// These limits where set, `defaults` elsewhere.
    pub fn over(self, defaults: CloneLimits) -> CloneLimits {
        CloneLimits { cpu: self.cpu.or(defaults.cpu), memory: self.memory.or(defaults.memory) }
    }

    /// Refuses values no kernel takes: a CPU share of at least a hundredth of a core, a memory
    /// limit of at least 16 MiB (less cannot hold a Postgres server's shared memory).
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Some(cpu) = self.cpu
            && !(cpu.is_finite() && cpu >= 0.01)
        {
            return Err(format!("cpu {cpu} is not a number of cores of at least 0.01"));
        }
        if let Some(memory) = self.memory
            && memory < MIN_MEMORY
        {
            return Err(format!("memory {memory} is less than {MIN_MEMORY} bytes (16 MiB)"));
        }
        Ok(())
    }

    fn kernel(&self) -> Limits {
        Limits { cpu: self.cpu, memory: self.memory }
    }
}

/// The smallest memory limit a clone may have.
const MIN_MEMORY: u64 = 16 << 20;

/// A size in bytes from `1048576`, `512MB`, `512MiB`, `2 GB`, `64kB`: the suffixes are binary
/// (as in Postgres' settings, `MB` is 2^20).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a size (like 512MB or 2GB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?} has an unknown unit (use kB, MB, GB or TB)")),
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// The tree's name: the same for every start of the engine on one state directory.
fn tree_name(state_dir: &Path) -> String {
    // FNV-1a: stable across Rust releases, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in state_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("scion-{hash:016x}")
}

fn group_name(port: u16) -> String {
    port.to_string()
}

fn cgroup_error(error: CgroupError) -> Error {
    match error {
        CgroupError::Io { path, source } => {
            Error::Io { what: "write cgroup file", path, error: source }
        }
        other => Error::Refused(format!("this host cannot hold the clone's limits: {other}")),
    }
}

/// The clones' control groups.
#[derive(Debug)]
pub(crate) struct Quotas {
    /// `None` when the host has no cgroup hierarchy; then only unlimited clones start.
    tree: std::result::Result<CgroupTree, String>,
}

impl Quotas {
    /// Finds the host's hierarchies for the engine on `state_dir`; nothing is made yet.
    pub(crate) fn new(state_dir: &Path) -> Quotas {
        let tree =
            CgroupTree::detect(&tree_name(state_dir), None).map_err(|error| error.to_string());
        match &tree {
            Ok(tree) => info!(version = %tree.version(), dirs = ?tree.dirs(), "clone cgroups"),
            Err(error) => info!(%error, "no cgroups for clone limits"),
        }
        Quotas { tree }
    }

    /// Refuses limits this host cannot hold, before a clone is registered.
    pub(crate) fn check(&self, limits: &CloneLimits) -> Result<()> {
        limits.check().map_err(Error::InvalidInput)?;
        if limits.is_empty() {
            return Ok(());
        }
        let tree = self.tree.as_ref().map_err(|error| {
            Error::Refused(format!("this host cannot hold the clone's limits: {error}"))
        })?;
        tree.supports(&limits.kernel()).map_err(cgroup_error)
    }

    /// The group the server on `port` starts in, made (or updated) with `limits`; `None`, with
    /// any group of an earlier start removed, when nothing is limited.
    pub(crate) fn prepare(&self, port: u16, limits: &CloneLimits) -> Result<Option<Cgroup>> {
        if limits.is_empty() {
            self.remove(port);
            return Ok(None);
        }
        let tree = self.tree.as_ref().map_err(|error| {
            Error::Refused(format!("this host cannot hold the clone's limits: {error}"))
        })?;
        let group = tree.group(&group_name(port)).map_err(cgroup_error)?;
        group.create(tree, &limits.kernel()).map_err(cgroup_error)?;
        Ok(Some(group))
    }

    /// The group of the server on `port`, if it exists.
    fn existing(&self, port: u16) -> Option<Cgroup> {
        let tree = self.tree.as_ref().ok()?;
        tree.group(&group_name(port)).ok().filter(Cgroup::exists)
    }

    /// What the server on `port` has used, when it runs in a group.
    pub(crate) fn usage(&self, port: u16) -> Option<Usage> {
        self.existing(port).map(|group| group.usage())
    }

    /// Removes the group of `port` once its server is stopped for good (a destroyed clone, a
    /// removed warm clone). A failure is logged: the next start removes what is left.
    pub(crate) fn remove(&self, port: u16) {
        let Some(group) = self.existing(port) else { return };
        match group.remove() {
            Ok(()) => {
                if let Ok(tree) = &self.tree
                    && tree.groups().is_ok_and(|groups| groups.is_empty())
                {
                    tree.remove_if_empty();
                }
            }
            Err(error) => warn!(port, error = %error, "failed to remove a clone's cgroup"),
        }
    }

    /// Removes the groups of ports no clone or warm clone holds (a crash between a server's
    /// stop and its group's removal); returns each with what was done.
    pub(crate) fn remove_leftovers(&self, held: &BTreeSet<u16>) -> Vec<(String, String)> {
        let Ok(tree) = &self.tree else { return Vec::new() };
        let groups = match tree.groups() {
            Ok(groups) => groups,
            Err(error) => {
                warn!(error = %error, "failed to list the clones' cgroups");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for name in groups {
            if name.parse::<u16>().is_ok_and(|port| held.contains(&port)) {
                continue;
            }
            let outcome = match tree.group(&name).and_then(|group| {
                let pids = group.pids()?;
                if pids.is_empty() { group.remove().map(|()| None) } else { Ok(Some(pids)) }
            }) {
                Ok(None) => "the cgroup of a clone that no longer exists; removed".to_owned(),
                Ok(Some(pids)) => format!(
                    "the cgroup of a clone that no longer exists still holds processes {pids:?}; kept"
                ),
                Err(error) => format!("the cgroup of a clone that no longer exists: {error}; kept"),
            };
            let path = tree.dirs().first().map(|dir| dir.join(&name)).unwrap_or_default();
            found.push((path.display().to_string(), outcome));
        }
        if tree.groups().is_ok_and(|groups| groups.is_empty()) {
            tree.remove_if_empty();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64kB"), Ok(64 << 10));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999TB").is_err());
    }

    #[test]
    fn request_limits_win_field_by_field() {
        let defaults = CloneLimits { cpu: Some(1.0), memory: Some(1 << 30) };
        let own = CloneLimits { cpu: None, memory: Some(256 << 20) };
        assert_eq!(own.over(defaults), CloneLimits { cpu: Some(1.0), memory: Some(256 << 20) });
        assert_eq!(CloneLimits::default().over(CloneLimits::default()), CloneLimits::default());
        assert!(CloneLimits::default().is_empty());
    }

    #[test]
    fn limits_are_checked() {
        assert!(CloneLimits { cpu: Some(0.0), memory: None }.check().is_err());
        assert!(CloneLimits { cpu: Some(f64::NAN), memory: None }.check().is_err());
        assert!(CloneLimits { cpu: None, memory: Some(1 << 20) }.check().is_err());
        assert!(CloneLimits { cpu: Some(0.5), memory: Some(64 << 20) }.check().is_ok());
    }

    #[test]
    fn tree_names_are_stable_and_distinct() {
        let a = tree_name(Path::new("/var/lib/scion"));
        assert_eq!(a, tree_name(Path::new("/var/lib/scion")));
        assert_ne!(a, tree_name(Path::new("/var/lib/scion2")));
        assert!(a.starts_with("scion-") && a.len() == 22, "{a}");
    }
}
