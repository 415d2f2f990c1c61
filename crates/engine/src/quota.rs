//! Per-clone CPU, memory and disk limits: each clone with a CPU or memory limit runs its
//! server in a control group of its own, so one runaway clone cannot starve the others, and a
//! disk quota caps what its dataset may refer to, so one clone cannot fill the pool
//! (docs/quotas.md).
//!
//! A clone's limits are the request's, field by field over `[clone] cpu` and `memory`
//! ([`CloneLimits::over`], a pure function); a clone with none runs in no group of Scion's. The
//! groups form one tree per engine, `<the engine's own group>/scion-<hash of the state
//! directory>` in each hierarchy (so two engines on one host never touch each other's), and a
//! group is named after its clone's port: a port is held by exactly one clone or warm clone
//! until it is destroyed, survives resets and passes with a claimed warm clone, which is what a
//! group must do too. [`Quotas`] makes a group with its limits before the server starts (the
//! server enters it before it executes, in `exec`'s sandbox), removes it once the server is
//! stopped for good, and at start removes the groups of ports nobody holds. The disk quota is
//! storage's (ZFS `refquota`, a btrfs qgroup limit), set by provisioning on each new dataset of
//! the clone ([`CloneLimits::check_disk`] decides first whether it can hold the snapshot).

use std::collections::BTreeSet;
use std::path::Path;

use exec::{Cgroup, CgroupError, CgroupTree, Limits, Usage};
use storage::ThinStorage;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::model::SnapshotRecord;

/// A clone's own limits; `None` leaves a field to the configuration (and then unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CloneLimits {
    /// CPU time, in cores.
    pub cpu: Option<f64>,
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// The most bytes the clone's dataset may refer to, its snapshot's data included.
    pub disk: Option<u64>,
}

impl CloneLimits {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.disk.is_none()
    }

    /// Whether the server needs a control group: a CPU or memory limit (a disk quota is the
    /// dataset's).
    fn needs_cgroup(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some()
    }

    /// These limits where set, `defaults` elsewhere.
    pub fn over(self, defaults: CloneLimits) -> CloneLimits {
        CloneLimits {
            cpu: self.cpu.or(defaults.cpu),
            memory: self.memory.or(defaults.memory),
            disk: self.disk.or(defaults.disk),
        }
    }

    /// Refuses a disk quota that the clone's snapshot, `snapshot_bytes` as measured when it
    /// was taken (0 when unknown), already fills: the clone would refer to more than its quota
    /// before its server wrote a byte, and could not even start. Room for what the clone
    /// writes is the caller's to leave.
    pub fn check_disk(&self, snapshot_bytes: u64) -> std::result::Result<(), String> {
        match self.disk {
            Some(disk) if disk <= snapshot_bytes => Err(format!(
                "disk quota {disk} is not more than the snapshot's {snapshot_bytes} bytes: the \
                 clone's data counts against its quota, so it needs room beyond them"
            )),
            _ => Ok(()),
        }
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
        if let Some(disk) = self.disk
            && disk < MIN_DISK
        {
            return Err(format!("disk {disk} is less than {MIN_DISK} bytes (16 MiB)"));
        }
        Ok(())
    }

    fn kernel(&self) -> Limits {
        Limits { cpu: self.cpu, memory: self.memory }
    }
}

/// Refuses a disk quota the pool cannot hold (the dir backend) or that `snapshot` fills,
/// before a create or reset changes anything.
pub(crate) fn check_disk(
    limits: &CloneLimits,
    storage: &impl ThinStorage,
    snapshot: &SnapshotRecord,
) -> Result<()> {
    if limits.disk.is_none() {
        return Ok(());
    }
    if !storage.capabilities().quotas {
        return Err(Error::Refused(format!(
            "this pool ({}) cannot hold a disk quota: a disk limit needs btrfs or ZFS",
            storage.kind()
        )));
    }
    limits.check_disk(snapshot.logical_size).map_err(Error::InvalidInput)
}

/// The smallest memory limit a clone may have.
const MIN_MEMORY: u64 = 16 << 20;
/// The smallest disk quota a clone may have: less cannot hold an empty cluster.
const MIN_DISK: u64 = 16 << 20;

/// Sizes in the configuration and the CLI parse alike.
pub use api_types::parse_bytes;

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
        if !limits.needs_cgroup() {
            return Ok(());
        }
        let tree = self.tree.as_ref().map_err(|error| {
            Error::Refused(format!("this host cannot hold the clone's limits: {error}"))
        })?;
        tree.supports(&limits.kernel()).map_err(cgroup_error)
    }

    /// The group the server on `port` starts in, made (or updated) with `limits`; `None`, with
    /// any group of an earlier start removed, when neither CPU nor memory is limited.
    pub(crate) fn prepare(&self, port: u16, limits: &CloneLimits) -> Result<Option<Cgroup>> {
        if !limits.needs_cgroup() {
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
    fn request_limits_win_field_by_field() {
        let defaults = CloneLimits { cpu: Some(1.0), memory: Some(1 << 30), disk: Some(1 << 40) };
        let own = CloneLimits { cpu: None, memory: Some(256 << 20), disk: Some(8 << 30) };
        assert_eq!(
            own.over(defaults),
            CloneLimits { cpu: Some(1.0), memory: Some(256 << 20), disk: Some(8 << 30) }
        );
        let disk_only = CloneLimits { disk: Some(1 << 30), ..CloneLimits::default() };
        assert!(!disk_only.is_empty() && !disk_only.needs_cgroup());
        assert_eq!(CloneLimits::default().over(CloneLimits::default()), CloneLimits::default());
        assert!(CloneLimits::default().is_empty());
    }

    #[test]
    fn limits_are_checked() {
        let limits = |cpu, memory, disk| CloneLimits { cpu, memory, disk };
        assert!(limits(Some(0.0), None, None).check().is_err());
        assert!(limits(Some(f64::NAN), None, None).check().is_err());
        assert!(limits(None, Some(1 << 20), None).check().is_err());
        assert!(limits(None, None, Some(1 << 20)).check().unwrap_err().starts_with("disk"));
        assert!(limits(Some(0.5), Some(64 << 20), Some(1 << 30)).check().is_ok());
    }

    #[test]
    fn a_disk_quota_must_leave_room_beyond_the_snapshot() {
        let quota = CloneLimits { disk: Some(100 << 20), ..CloneLimits::default() };
        assert!(quota.check_disk(40 << 20).is_ok());
        assert!(quota.check_disk(100 << 20).is_err());
        assert!(quota.check_disk(0).is_ok(), "an unmeasured snapshot is not refused");
        assert!(CloneLimits::default().check_disk(u64::MAX).is_ok());
    }

    #[test]
    fn tree_names_are_stable_and_distinct() {
        let a = tree_name(Path::new("/var/lib/scion"));
        assert_eq!(a, tree_name(Path::new("/var/lib/scion")));
        assert_ne!(a, tree_name(Path::new("/var/lib/scion2")));
        assert!(a.starts_with("scion-") && a.len() == 22, "{a}");
    }
}
