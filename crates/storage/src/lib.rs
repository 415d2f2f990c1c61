//! Pools, datasets, snapshots and clones behind one narrow trait.
//!
//! [`ThinStorage`] is the whole interface the engine sees; [`StorageBackend`] dispatches it to
//! btrfs ([`Btrfs`]), ZFS ([`Zfs`]) or plain directories ([`Dir`]). Branches, protection and
//! retention are the engine's business, not this crate's. [`provision`] makes and attaches
//! image-file pools for the embedded default and for tests.
//!
//! Invariants every backend keeps:
//! - names are [`DatasetName`]/[`SnapshotName`], validated before any path or command is built;
//! - snapshots are read-only and live outside the datasets' trees, so a dataset's mountpoint
//!   holds only its own files;
//! - destroying an object that has dependents (snapshots, clones, child datasets) fails with
//!   [`Error::HasDependents`] unless the caller passes [`DestroyMode::WithDependents`];
//! - the snapshot and clone paths never list the whole pool.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;

mod btrfs;
mod config;
mod dir;
mod error;
mod name;
pub mod provision;
mod tree;
mod zfs;

pub use btrfs::{Btrfs, SpaceAccounting};
pub use config::BackendConfig;
pub use dir::Dir;
pub use error::{Error, Result};
pub use name::{DatasetName, MAX_DATASET_LEN, MAX_DEPTH, MAX_SEGMENT_LEN, SnapshotName};
pub use zfs::Zfs;

/// Which backend a pool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// btrfs subvolumes and snapshots.
    Btrfs,
    /// ZFS filesystems, snapshots and clones.
    Zfs,
    /// Directories copied file by file (reflinked where the filesystem can).
    Dir,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Btrfs => "btrfs",
            BackendKind::Zfs => "zfs",
            BackendKind::Dir => "dir",
        })
    }
}

/// What a pool can promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Snapshots and clones share blocks with their source: they cost time and space in
    /// proportion to what changes, not to the dataset's size. `false` means full copies.
    pub thin: bool,
    /// A snapshot is one point in time even while the source is being written to.
    /// `false` means the source must be quiescent (a stopped Postgres) for a consistent copy.
    pub atomic_snapshots: bool,
    /// A clone outlives the snapshot it was made from ([`DestroyMode::KeepClones`]); `false`
    /// (ZFS) means a snapshot goes only after its clones.
    pub independent_clones: bool,
    /// A dataset can be given a quota ([`ThinStorage::set_quota`]): btrfs, ZFS.
    pub quotas: bool,
}

/// What to do when the object to destroy has dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyMode {
    /// Fail with [`Error::HasDependents`], destroying nothing.
    Refuse,
    /// Destroy every dependent first, recursively (like `zfs destroy -R`).
    WithDependents,
    /// A snapshot alone, leaving its clones as datasets of their own, on a backend whose
    /// clones do not need their origin (`Capabilities::independent_clones`: btrfs, dir);
    /// elsewhere, and for a dataset, the same as [`DestroyMode::Refuse`].
    KeepClones,
}

/// Space of the whole pool, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolSpace {
    /// Usable size.
    pub total: u64,
    /// What can still be written.
    pub free: u64,
    /// What is in use.
    pub used: u64,
}

/// What a pool's snapshots hold and how its data compresses: the instance's disk figures
/// beyond [`PoolSpace`] (DBLab's `dblab_disk_used_by_snapshots_bytes`, `_data_size_bytes`,
/// `_compress_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PoolUsage {
    /// Bytes only snapshots hold: what destroying them would give back.
    pub used_by_snapshots: u64,
    /// The logical size of what the pool holds, before compression; `None` where the backend
    /// cannot tell.
    pub logical_used: Option<u64>,
    /// Logical bytes per byte stored (1 without compression); `None` where the backend cannot
    /// tell.
    pub compress_ratio: Option<f64>,
}

/// Space of one dataset, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DatasetSpace {
    /// Bytes held by this dataset alone: written since it was cloned (or created), not shared
    /// with its origin or with other clones.
    pub written: u64,
    /// Bytes the dataset's files refer to, shared or not.
    pub referenced: u64,
}

/// A dataset as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetInfo {
    /// Its name.
    pub name: DatasetName,
    /// The snapshot it was cloned from, if it is a clone.
    pub origin: Option<SnapshotName>,
    /// Where its files are.
    pub mountpoint: PathBuf,
}

/// A snapshot as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Its name, which also names its dataset.
    pub name: SnapshotName,
    /// The datasets cloned from it.
    pub clones: Vec<DatasetName>,
}

/// Everything in a pool, with the relations between objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    /// Datasets, sorted by name (so parents come before children).
    pub datasets: Vec<DatasetInfo>,
    /// Snapshots, sorted by name.
    pub snapshots: Vec<SnapshotInfo>,
}

/// A dataset or a snapshot: something that can be destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    /// A dataset.
    Dataset(DatasetName),
    /// A snapshot.
    Snapshot(SnapshotName),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Dataset(name) => name.fmt(f),
            Object::Snapshot(name) => name.fmt(f),
        }
    }
}

impl Listing {
    /// Builds a listing from datasets and snapshot names, filling in each snapshot's clones
    /// from the datasets' origins (so no backend needs a `clones` property).
    pub fn new(mut datasets: Vec<DatasetInfo>, snapshots: Vec<SnapshotName>) -> Self {
        datasets.sort_by(|a, b| a.name.cmp(&b.name));
        let mut snapshots: Vec<SnapshotInfo> = snapshots
            .into_iter()
            .map(|name| {
                let clones = datasets
                    .iter()
                    .filter(|dataset| dataset.origin.as_ref() == Some(&name))
                    .map(|dataset| dataset.name.clone())
                    .collect();
                SnapshotInfo { name, clones }
            })
            .collect();
        snapshots.sort_by(|a, b| a.name.cmp(&b.name));
        Listing { datasets, snapshots }
    }

    /// The dataset called `name`.
    pub fn dataset(&self, name: &DatasetName) -> Option<&DatasetInfo> {
        self.datasets.iter().find(|dataset| &dataset.name == name)
    }

    /// The snapshot called `name`.
    pub fn snapshot(&self, name: &SnapshotName) -> Option<&SnapshotInfo> {
        self.snapshots.iter().find(|snapshot| &snapshot.name == name)
    }

    /// The snapshots of dataset `name`.
    pub fn snapshots_of<'a>(
        &'a self,
        name: &'a DatasetName,
    ) -> impl Iterator<Item = &'a SnapshotInfo> + 'a {
        self.snapshots.iter().filter(move |snapshot| snapshot.name.dataset() == name)
    }

    /// The datasets directly below `name`.
    pub fn children<'a>(&'a self, name: &'a DatasetName) -> impl Iterator<Item = &'a DatasetInfo> {
        self.datasets.iter().filter(move |dataset| dataset.name.parent().as_ref() == Some(name))
    }

    /// Everything that must go before `object` can be destroyed, in an order that destroys
    /// dependents before what they depend on.
    pub fn dependents(&self, object: &Object) -> Vec<Object> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.collect_dependents(object, &mut order, &mut seen);
        order
    }

    fn collect_dependents(
        &self,
        object: &Object,
        order: &mut Vec<Object>,
        seen: &mut BTreeSet<Object>,
    ) {
        let direct: Vec<Object> = match object {
            Object::Dataset(name) => self
                .children(name)
                .map(|child| Object::Dataset(child.name.clone()))
                .chain(self.snapshots_of(name).map(|snap| Object::Snapshot(snap.name.clone())))
                .collect(),
            Object::Snapshot(name) => self
                .snapshot(name)
                .map(|snap| snap.clones.iter().cloned().map(Object::Dataset).collect())
                .unwrap_or_default(),
        };
        for dependent in direct {
            if seen.insert(dependent.clone()) {
                self.collect_dependents(&dependent, order, seen);
                order.push(dependent);
            }
        }
    }

    /// Checks that `object` exists and returns what to destroy, in order, ending with `object`
    /// itself; with [`DestroyMode::Refuse`], fails when anything depends on it.
    pub fn plan_destroy(&self, object: &Object, mode: DestroyMode) -> Result<Vec<Object>> {
        let exists = match object {
            Object::Dataset(name) => self.dataset(name).is_some(),
            Object::Snapshot(name) => self.snapshot(name).is_some(),
        };
        if !exists {
            return Err(Error::NotFound(object.to_string()));
        }
        let mut plan = match (object, mode) {
            (Object::Snapshot(_), DestroyMode::KeepClones) => Vec::new(),
            _ => self.dependents(object),
        };
        if mode != DestroyMode::WithDependents && !plan.is_empty() {
            return Err(Error::HasDependents {
                name: object.to_string(),
                dependents: plan.iter().map(ToString::to_string).collect(),
            });
        }
        plan.push(object.clone());
        Ok(plan)
    }
}

/// The operations every backend offers. Methods take `&self` and may run concurrently.
pub trait ThinStorage {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// What the pool can promise.
    fn capabilities(&self) -> Capabilities;

    /// Where the dataset's files are (whether or not it exists).
    fn mountpoint(&self, name: &DatasetName) -> PathBuf;

    /// Creates an empty dataset, creating missing parents like `mkdir -p`, and returns its
    /// mountpoint. Fails with [`Error::AlreadyExists`] when `name` itself exists.
    fn create_dataset(&self, name: &DatasetName) -> impl Future<Output = Result<PathBuf>> + Send;

    /// Destroys a dataset; see [`DestroyMode`] for its snapshots, clones and children.
    fn destroy_dataset(
        &self,
        name: &DatasetName,
        mode: DestroyMode,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Takes a read-only snapshot of a dataset (not of its child datasets).
    fn snapshot(&self, name: &SnapshotName) -> impl Future<Output = Result<()>> + Send;

    /// Destroys a snapshot; see [`DestroyMode`] for its clones.
    fn destroy_snapshot(
        &self,
        name: &SnapshotName,
        mode: DestroyMode,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Creates a writable dataset `target` from `snapshot` (creating missing parents) and
    /// returns its mountpoint.
    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> impl Future<Output = Result<PathBuf>> + Send;

    /// Lists every dataset and snapshot with their relations.
    fn list(&self) -> impl Future<Output = Result<Listing>> + Send;

    /// Space of the whole pool.
    fn pool_space(&self) -> impl Future<Output = Result<PoolSpace>> + Send;

    /// Space of the whole pool as the file system says it now, without waiting for a commit
    /// or running a tool: one `statvfs`, cheap enough for the path of every clone. It may be a
    /// transaction behind [`ThinStorage::pool_space`].
    fn pool_space_now(&self) -> Result<PoolSpace>;

    /// Makes space that was freed count in the next [`ThinStorage::pool_space`]: btrfs returns
    /// a removed file's extents only when a transaction commits, and ZFS when a transaction
    /// group does. Called before an operation is refused for want of space.
    fn settle_freed_space(&self) -> impl Future<Output = Result<()>> + Send;

    /// Space of one dataset.
    fn dataset_space(
        &self,
        name: &DatasetName,
    ) -> impl Future<Output = Result<DatasetSpace>> + Send;

    /// What the pool's snapshots hold and how its data compresses. Costs a command (ZFS) or a
    /// walk of the snapshots' files (btrfs): for the background collection, never a request.
    fn pool_usage(&self) -> impl Future<Output = Result<PoolUsage>> + Send;

    /// Caps the bytes dataset `name` refers to (its own and those it shares with its origin) at
    /// `bytes`: ZFS's `refquota`, a btrfs qgroup limit on referenced bytes (turning quota on
    /// for the filesystem first if it is off). A write past it fails with `EDQUOT` in that
    /// dataset only. [`Error::Unsupported`] where [`Capabilities::quotas`] is false.
    fn set_quota(&self, name: &DatasetName, bytes: u64) -> impl Future<Output = Result<()>> + Send;

    /// Removes what quotas of destroyed datasets left behind, returning how many it removed:
    /// btrfs's qgroups of deleted subvolumes once the cleaner has dropped them (see
    /// [`Btrfs`]'s implementation); nothing elsewhere. For the background collection.
    fn clear_stale_quotas(&self) -> impl Future<Output = Result<usize>> + Send {
        std::future::ready(Ok(0))
    }
}

/// One of the backends, chosen at run time; implements [`ThinStorage`] by dispatch.
#[derive(Debug)]
pub enum StorageBackend {
    /// btrfs.
    Btrfs(Btrfs),
    /// ZFS.
    Zfs(Zfs),
    /// Plain directories.
    Dir(Dir),
}

impl StorageBackend {
    /// Opens the pool a configuration describes.
    pub async fn open(config: &BackendConfig) -> Result<Self> {
        Ok(match config {
            BackendConfig::Btrfs { root, quota } => {
                let accounting =
                    if *quota { SpaceAccounting::Qgroups } else { SpaceAccounting::Extents };
                StorageBackend::Btrfs(Btrfs::open(root, accounting).await?)
            }
            BackendConfig::Zfs { pool } => StorageBackend::Zfs(Zfs::open(pool).await?),
            BackendConfig::Dir { root } => StorageBackend::Dir(Dir::open(root).await?),
        })
    }
}

macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            StorageBackend::Btrfs($backend) => $call,
            StorageBackend::Zfs($backend) => $call,
            StorageBackend::Dir($backend) => $call,
        }
    };
}

impl ThinStorage for StorageBackend {
    fn kind(&self) -> BackendKind {
        dispatch!(self, backend => backend.kind())
    }

    fn capabilities(&self) -> Capabilities {
        dispatch!(self, backend => backend.capabilities())
    }

    fn mountpoint(&self, name: &DatasetName) -> PathBuf {
        dispatch!(self, backend => backend.mountpoint(name))
    }

    async fn create_dataset(&self, name: &DatasetName) -> Result<PathBuf> {
        dispatch!(self, backend => backend.create_dataset(name).await)
    }

    async fn destroy_dataset(&self, name: &DatasetName, mode: DestroyMode) -> Result<()> {
        dispatch!(self, backend => backend.destroy_dataset(name, mode).await)
    }

    async fn snapshot(&self, name: &SnapshotName) -> Result<()> {
        dispatch!(self, backend => backend.snapshot(name).await)
    }

    async fn destroy_snapshot(&self, name: &SnapshotName, mode: DestroyMode) -> Result<()> {
        dispatch!(self, backend => backend.destroy_snapshot(name, mode).await)
    }

    async fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<PathBuf> {
        dispatch!(self, backend => backend.clone_snapshot(snapshot, target).await)
    }

    async fn list(&self) -> Result<Listing> {
        dispatch!(self, backend => backend.list().await)
    }

    async fn pool_space(&self) -> Result<PoolSpace> {
        dispatch!(self, backend => backend.pool_space().await)
    }

    fn pool_space_now(&self) -> Result<PoolSpace> {
        dispatch!(self, backend => backend.pool_space_now())
    }

    async fn settle_freed_space(&self) -> Result<()> {
        dispatch!(self, backend => backend.settle_freed_space().await)
    }

    async fn dataset_space(&self, name: &DatasetName) -> Result<DatasetSpace> {
        dispatch!(self, backend => backend.dataset_space(name).await)
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        dispatch!(self, backend => backend.pool_usage().await)
    }

    async fn set_quota(&self, name: &DatasetName, bytes: u64) -> Result<()> {
        dispatch!(self, backend => backend.set_quota(name, bytes).await)
    }

    async fn clear_stale_quotas(&self) -> Result<usize> {
        dispatch!(self, backend => backend.clear_stale_quotas().await)
    }
}

/// How long one `zfs`/`btrfs` command may run: a hung FUSE daemon must not hang the engine.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How often a command that found its target busy is tried again, and the first pause.
const BUSY_RETRIES: u32 = 8;
const BUSY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs a storage tool with the storage timeout, leaving its error as it is.
pub(crate) async fn run_raw(cmd: exec::Cmd) -> Result<exec::Output, exec::ExecError> {
    cmd.timeout(COMMAND_TIMEOUT).output().await
}

/// Runs a storage tool, mapping its complaints about `object` to typed errors.
pub(crate) async fn run_tool(
    cmd: exec::Cmd,
    object: &(dyn fmt::Display + Sync),
) -> Result<exec::Output> {
    run_raw(cmd).await.map_err(|error| Error::from_command(error, &object.to_string()))
}

/// Runs a command that unmounts something, trying again with growing pauses while the target
/// is "busy". zfs-fuse reports a filesystem busy for a moment after its last file was closed,
/// because FUSE delivers the release of a file to the daemon after `close` has returned.
pub(crate) async fn run_unmounting(
    make: impl Fn() -> exec::Cmd,
    object: &(dyn fmt::Display + Sync),
) -> Result<exec::Output> {
    let mut pause = BUSY_FIRST_PAUSE;
    for _ in 0..BUSY_RETRIES {
        match run_raw(make()).await {
            Err(error) if error.stderr_tail().contains("busy") => {
                tracing::debug!(%object, ?pause, "busy; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other.map_err(|error| Error::from_command(error, &object.to_string())),
        }
    }
    run_tool(make(), object).await
}

/// Runs blocking filesystem work off the runtime, naming `path` in its error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    context: &'static str,
    path: &std::path::Path,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|source| Error::io(context, path, source)),
        Err(join) => Err(Error::io(context, path, std::io::Error::other(join))),
    }
}

/// Space of the filesystem that holds `path`, from statvfs.
pub(crate) fn statvfs_space(path: &std::path::Path) -> Result<PoolSpace> {
    let stat = rustix::fs::statvfs(path)
        .map_err(|errno| Error::io("statvfs", path, std::io::Error::from(errno)))?;
    let total = stat.f_blocks * stat.f_frsize;
    let free = stat.f_bavail * stat.f_frsize;
    let used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize;
    Ok(PoolSpace { total, free, used })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(name: &str, origin: Option<&str>) -> DatasetInfo {
        DatasetInfo {
            name: name.parse().unwrap(),
            origin: origin.map(|origin| origin.parse().unwrap()),
            mountpoint: PathBuf::from("/p").join(name),
        }
    }

    fn sample() -> Listing {
        Listing::new(
            vec![
                dataset("data", None),
                dataset("data/child", None),
                dataset("c1", Some("data@s1")),
                dataset("c2", Some("data@s1")),
                dataset("c3", Some("c1@t")),
                dataset("other", None),
            ],
            ["data@s1", "data@s2", "c1@t"].iter().map(|name| name.parse().unwrap()).collect(),
        )
    }

    fn names(plan: &[Object]) -> Vec<String> {
        plan.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn clones_come_from_origins() {
        let listing = sample();
        let s1 = listing.snapshot(&"data@s1".parse().unwrap()).unwrap();
        assert_eq!(s1.clones.iter().map(ToString::to_string).collect::<Vec<_>>(), ["c1", "c2"]);
    }

    #[test]
    fn destroy_plans_put_dependents_first() {
        let listing = sample();
        let data = Object::Dataset("data".parse().unwrap());
        let plan = listing.plan_destroy(&data, DestroyMode::WithDependents).unwrap();
        assert_eq!(
            names(&plan),
            ["data/child", "c3", "c1@t", "c1", "c2", "data@s1", "data@s2", "data"]
        );
        match listing.plan_destroy(&data, DestroyMode::Refuse) {
            Err(Error::HasDependents { dependents, .. }) => assert_eq!(dependents.len(), 7),
            other => panic!("{other:?}"),
        }
        let other = Object::Dataset("other".parse().unwrap());
        assert_eq!(names(&listing.plan_destroy(&other, DestroyMode::Refuse).unwrap()), ["other"]);
        let s1 = Object::Snapshot("data@s1".parse().unwrap());
        assert_eq!(
            names(&listing.plan_destroy(&s1, DestroyMode::KeepClones).unwrap()),
            ["data@s1"]
        );
        assert!(matches!(
            listing.plan_destroy(&data, DestroyMode::KeepClones),
            Err(Error::HasDependents { .. })
        ));
        let missing = Object::Snapshot("data@nope".parse().unwrap());
        assert!(matches!(
            listing.plan_destroy(&missing, DestroyMode::Refuse),
            Err(Error::NotFound(_))
        ));
    }
}
