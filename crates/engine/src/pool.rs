//! A pool as the engine sees it: a storage backend, its name in snapshot IDs, and where
//! things live in it.
//!
//! Layout, after DBLab's (reference §5.2), inside the pool:
//! - golden datasets, each with PGDATA at `<mountpoint>/data`: `data` holds the empty cluster
//!   of a pool without retrieval; each full refresh writes a new `data_<YYYYMMDDHHMMSS>`, never
//!   the dataset clones run on;
//! - `<golden>@snapshot_<YYYYMMDDHHMMSS>`: snapshots of them, shown as `<pool>/<golden>@…`;
//! - `branch/<branch>/<clone>/r<revision>`: clone datasets, each with PGDATA at `<mountpoint>/data`.
//!
//! Outside the pool, under the engine's state directory: `sockets/<port>/` (a clone's private
//! unix socket, short enough for the kernel's 107-byte limit) and `logs/<clone>.log`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use storage::{DatasetName, SnapshotName, StorageBackend, ThinStorage};

use crate::error::{Error, Result};

/// The first golden dataset: the empty cluster of a pool without retrieval (each full refresh
/// writes a new `data_<YYYYMMDDHHMMSS>` instead).
pub(crate) const DATA_DATASET: &str = "data";
/// The start of a promoted copy's dataset name (physical mode's snapshots).
pub(crate) const PROMOTED_PREFIX: &str = "promoted_";
/// The directory of branch, clone and commit datasets.
const BRANCHES_DIR: &str = "branch";
/// Where PGDATA sits inside a dataset's mountpoint.
const PGDATA_DIR: &str = "data";

/// The free space the pool keeps by default: 5 % of its size.
pub(crate) const DEFAULT_MIN_FREE_PERCENT: f64 = 5.0;

/// The free space below which operations that write to the pool are refused, so that a clone's
/// `CHECKPOINT`, a snapshot or a new clone's start never meets a full pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFreeSpace {
    /// A share of the pool's size, in percent (0 to 100).
    Percent(f64),
    /// A fixed number of bytes.
    Bytes(u64),
}

impl Default for MinFreeSpace {
    fn default() -> Self {
        MinFreeSpace::Percent(DEFAULT_MIN_FREE_PERCENT)
    }
}

impl MinFreeSpace {
    /// The bytes to keep free in a pool of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFreeSpace::Bytes(bytes) => bytes,
            // Float precision is plenty for a threshold.
            MinFreeSpace::Percent(percent) => {
                (total as f64 * percent.clamp(0.0, 100.0) / 100.0) as u64
            }
        }
    }
}

/// A pool and its layout.
#[derive(Debug)]
pub struct Pool {
    name: String,
    storage: StorageBackend,
    min_free: MinFreeSpace,
}

impl Pool {
    /// A pool called `name` (the first segment of its snapshot IDs) over `storage`.
    pub fn new(name: impl Into<String>, storage: StorageBackend) -> Result<Pool> {
        let name = name.into();
        // The name becomes the first part of snapshot IDs, so it obeys the dataset rules.
        DatasetName::new(name.clone()).map_err(|error| {
            Error::InvalidInput(format!(
                "pool name {name:?} is not usable in snapshot IDs: {error}"
            ))
        })?;
        if name.contains('/') {
            return Err(Error::InvalidInput(format!("pool name {name:?} must not contain '/'")));
        }
        Ok(Pool { name, storage, min_free: MinFreeSpace::default() })
    }

    /// The same pool keeping `min_free` free instead of [`MinFreeSpace::default`].
    pub fn with_min_free(self, min_free: MinFreeSpace) -> Pool {
        Pool { min_free, ..self }
    }

    /// The free space below which writing operations are refused.
    pub fn min_free(&self) -> MinFreeSpace {
        self.min_free
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage backend.
    pub fn storage(&self) -> &StorageBackend {
        &self.storage
    }

    /// The first golden dataset, [`DATA_DATASET`].
    pub fn data_dataset(&self) -> DatasetName {
        DatasetName::new(DATA_DATASET).expect("the constant is a valid name")
    }

    /// The dataset a branch other than `main` owns: a clone of the snapshot it forked from.
    pub fn branch_dataset(&self, branch: &str) -> Result<DatasetName> {
        DatasetName::new(format!("{BRANCHES_DIR}/{branch}"))
            .map_err(|error| Error::InvalidInput(error.to_string()))
    }

    /// The datasets the layout itself makes to hold others: `branch`, and `branch/main` (main
    /// owns no dataset of its own). A pool whose clones are all gone keeps them.
    pub fn containers(&self) -> [String; 2] {
        [BRANCHES_DIR.to_owned(), format!("{BRANCHES_DIR}/{}", crate::MAIN_BRANCH)]
    }

    /// Whether `dataset` lies under the datasets of `branch` (its own, its clones' and its
    /// commits').
    pub fn is_in_branch(dataset: &str, branch: &str) -> bool {
        dataset
            .strip_prefix(BRANCHES_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.strip_prefix(branch))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Whether `dataset` holds data that retrieval filled (`data`, `data_<ts>`), rather than a
    /// branch's, a clone's or a commit's.
    pub fn is_data_dataset(dataset: &str) -> bool {
        dataset
            .strip_prefix(BRANCHES_DIR)
            .is_none_or(|rest| !(rest.is_empty() || rest.starts_with('/')))
    }

    /// Whether `dataset` is a promoted copy of the sync instance's data (physical mode's
    /// snapshots are of these), rather than a golden dataset retrieval filled.
    pub fn is_promoted_dataset(dataset: &str) -> bool {
        dataset.starts_with(PROMOTED_PREFIX)
    }

    /// Whether a snapshot's storage name (`<dataset>@<tag>`) is a snapshot of the data that
    /// retrieval fills, rather than a branch's or a commit.
    pub fn is_data_snapshot(storage_name: &str) -> bool {
        let dataset = storage_name.split_once('@').map_or(storage_name, |(dataset, _)| dataset);
        Pool::is_data_dataset(dataset)
    }

    /// The dataset of revision `revision` of clone `clone_id` on `branch`.
    pub fn clone_dataset(
        &self,
        branch: &str,
        clone_id: &str,
        revision: u32,
    ) -> Result<DatasetName> {
        DatasetName::new(format!("{BRANCHES_DIR}/{branch}/{clone_id}/r{revision}"))
            .map_err(|error| Error::InvalidInput(error.to_string()))
    }

    /// Whether `dataset` is a clone dataset, `branch/<branch>/<clone>/r<revision>` (and not a
    /// branch's own dataset or a clone's parent).
    pub fn is_clone_dataset(dataset: &str) -> bool {
        let mut segments = dataset.split('/');
        segments.next() == Some(BRANCHES_DIR) && segments.count() == 3
    }

    /// The dataset a snapshot (by its storage name, `<dataset>@<tag>`) was taken of.
    pub fn snapshot_dataset(storage_name: &str) -> Option<&str> {
        storage_name.split_once('@').map(|(dataset, _)| dataset)
    }

    /// PGDATA inside a dataset mounted at `mountpoint`.
    pub fn pgdata(mountpoint: &Path) -> PathBuf {
        mountpoint.join(PGDATA_DIR)
    }

    /// PGDATA of a dataset.
    pub fn pgdata_of(&self, dataset: &DatasetName) -> PathBuf {
        Pool::pgdata(&self.storage.mountpoint(dataset))
    }

    /// The API ID of a snapshot: `<pool>/<dataset>@<tag>`.
    pub fn snapshot_id(&self, name: &SnapshotName) -> String {
        format!("{}/{name}", self.name)
    }

    /// The snapshot an API ID names, if it belongs to this pool.
    pub fn snapshot_name(&self, id: &str) -> Option<SnapshotName> {
        let rest = id.strip_prefix(&self.name)?.strip_prefix('/')?;
        rest.parse().ok()
    }

    /// A fresh snapshot name for `dataset` at `now`, DBLab-style (`snapshot_YYYYMMDDHHMMSS`,
    /// then `tag_suffix`, such as `_unmasked`), with a number when that second is taken.
    pub fn new_snapshot_name(
        &self,
        dataset: &DatasetName,
        now: DateTime<Utc>,
        tag_suffix: &str,
        taken: impl Fn(&SnapshotName) -> bool,
    ) -> Result<SnapshotName> {
        let tag = format!("snapshot_{}{tag_suffix}", now.format("%Y%m%d%H%M%S"));
        free_snapshot_name(dataset, &tag, taken)
    }

    /// A fresh name for a branch's snapshot or a commit at `now`: DBLab names those by the
    /// bare time (`<dataset>@YYYYMMDDHHMMSS`).
    pub fn new_commit_name(
        &self,
        dataset: &DatasetName,
        now: DateTime<Utc>,
        taken: impl Fn(&SnapshotName) -> bool,
    ) -> Result<SnapshotName> {
        free_snapshot_name(dataset, &now.format("%Y%m%d%H%M%S").to_string(), taken)
    }
}

/// Physical mode: the names a snapshot of the sync instance's dataset `golden` at `now` uses,
/// `<golden>@promote_<ts>` (the live standby's crash-consistent snapshot) and
/// `promoted_<ts>` (its clone, promoted), each with a suffix when taken in `listing`.
pub(crate) fn promotion_names(
    golden: &DatasetName,
    now: DateTime<Utc>,
    listing: &storage::Listing,
) -> Result<(SnapshotName, DatasetName)> {
    let stamp = now.format("%Y%m%d%H%M%S");
    let pre = free_snapshot_name(golden, &format!("promote_{stamp}"), |name| {
        listing.snapshot(name).is_some()
    })?;
    let base = format!("{PROMOTED_PREFIX}{stamp}");
    let mut name = base.clone();
    for suffix in 1.. {
        let dataset =
            DatasetName::new(name).map_err(|error| Error::InvalidInput(error.to_string()))?;
        if listing.dataset(&dataset).is_none() {
            return Ok((pre, dataset));
        }
        name = format!("{base}_{suffix}");
    }
    unreachable!("an unbounded range always yields a free name")
}

/// `dataset@base`, or `dataset@base_<n>` with the first `n` that is not taken.
fn free_snapshot_name(
    dataset: &DatasetName,
    base: &str,
    taken: impl Fn(&SnapshotName) -> bool,
) -> Result<SnapshotName> {
    let mut tag = base.to_owned();
    for suffix in 1.. {
        let name = SnapshotName::new(dataset.clone(), &tag)
            .map_err(|error| Error::InvalidInput(error.to_string()))?;
        if !taken(&name) {
            return Ok(name);
        }
        tag = format!("{base}_{suffix}");
    }
    unreachable!("an unbounded range always yields a free name")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use storage::Dir;

    use super::*;

    async fn pool() -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageBackend::Dir(Dir::open(dir.path()).await.unwrap());
        (dir, Pool::new("dblab_pool", storage).unwrap())
    }

    #[test]
    fn clone_datasets_are_told_apart_from_their_parents() {
        assert!(Pool::is_clone_dataset("branch/main/abc/r0"));
        assert!(!Pool::is_clone_dataset("branch/main/abc"));
        assert!(!Pool::is_clone_dataset("branch/dev"));
        assert!(!Pool::is_clone_dataset("data/main/abc/r0"));
        assert!(!Pool::is_clone_dataset("branch/main/abc/r0/x"));
        assert_eq!(Pool::snapshot_dataset("branch/dev@20260101000000"), Some("branch/dev"));
        assert_eq!(Pool::snapshot_dataset("data"), None);
    }

    #[tokio::test]
    async fn snapshot_ids_carry_the_pool_name() {
        let (_dir, pool) = pool().await;
        let name: SnapshotName = "data@snapshot_20261122120000".parse().unwrap();
        let id = pool.snapshot_id(&name);
        assert_eq!(id, "dblab_pool/data@snapshot_20261122120000");
        assert_eq!(pool.snapshot_name(&id), Some(name));
        assert_eq!(pool.snapshot_name("other_pool/data@s"), None);
        assert_eq!(pool.snapshot_name("dblab_pool/../x@s"), None);
    }

    #[tokio::test]
    async fn snapshot_names_get_a_suffix_when_taken() {
        let (_dir, pool) = pool().await;
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let data = pool.data_dataset();
        let first = pool.new_snapshot_name(&data, now, "", |_| false).unwrap();
        assert_eq!(first.to_string(), "data@snapshot_20261122120000");
        let second = pool.new_snapshot_name(&data, now, "", |name| name == &first).unwrap();
        assert_eq!(second.to_string(), "data@snapshot_20261122120000_1");
        let unmasked = pool.new_snapshot_name(&data, now, "_unmasked", |_| false).unwrap();
        assert_eq!(unmasked.to_string(), "data@snapshot_20261122120000_unmasked");
    }

    #[test]
    fn branch_membership_is_by_whole_segments() {
        assert!(Pool::is_in_branch("branch/dev", "dev"));
        assert!(Pool::is_in_branch("branch/dev/c1/r0", "dev"));
        assert!(!Pool::is_in_branch("branch/develop/c1/r0", "dev"));
        assert!(!Pool::is_in_branch("data", "dev"));
        assert!(Pool::is_data_snapshot("data_20261122@snapshot_20261122120000"));
        assert!(!Pool::is_data_snapshot("branch/dev@20261122120000"));
        assert!(Pool::is_data_dataset("data"));
        assert!(Pool::is_data_dataset("branches_elsewhere"));
        assert!(!Pool::is_data_dataset("branch/main/c1/r0"));
    }

    #[tokio::test]
    async fn commit_names_are_bare_times() {
        let (_dir, pool) = pool().await;
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let dataset = pool.clone_dataset("dev", "c1", 2).unwrap();
        let name = pool.new_commit_name(&dataset, now, |_| false).unwrap();
        assert_eq!(name.to_string(), "branch/dev/c1/r2@20261122120000");
    }

    #[tokio::test]
    async fn pool_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageBackend::Dir(Dir::open(dir.path()).await.unwrap());
        assert!(Pool::new("../etc", storage).is_err());
    }
}
