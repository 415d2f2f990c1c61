//! The dir backend: datasets are plain directories, snapshots and clones are copies made file by
//! file, reflinked (FICLONE) where the filesystem supports it (XFS with reflink, btrfs), else
//! full copies, and then reported as `thin: false`.
//!
//! Layout under the pool root:
//! - `<root>/a/b`: dataset `a/b` (inside dataset `a`'s directory, as with ZFS mountpoints);
//! - `<root>/.scion/datasets/a%b.json`: its sidecar, `{"origin": "x@s1"}`; a directory is a
//!   dataset exactly when its sidecar exists (`%` cannot occur in names, so flattening is safe);
//! - `<root>/.scion/snapshots/a%b@s1/`: the snapshot's tree;
//! - `<root>/.scion/tmp/`: copies being made, renamed into place when complete, so a snapshot or
//!   clone appears whole or not at all.
//!
//! A copy is not one point in time: a snapshot of a dataset that is being written to may mix
//! old and new files. Hence `atomic_snapshots: false`; snapshot only a stopped Postgres.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;
use tokio::fs;
use tokio::task::spawn_blocking;

use crate::{
    BackendKind, Capabilities, DatasetInfo, DatasetName, DatasetSpace, DestroyMode, Error, Listing,
    Object, PoolSpace, PoolUsage, Result, SnapshotName, ThinStorage, blocking, statvfs_space, tree,
};

const META_DIR: &str = ".scion";

/// A pool of plain directories.
#[derive(Debug, Clone)]
pub struct Dir {
    root: PathBuf,
    reflink: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Sidecar {
    origin: Option<String>,
}

/// Makes names for staging entries that no other task or process uses.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn flat(name: &str) -> String {
    name.replace('/', "%")
}

fn unflat(name: &str) -> String {
    name.replace('%', "/")
}

impl Dir {
    /// Opens (creating if needed) the pool at `root` and finds out whether it can reflink.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root)
            .await
            .map_err(|source| Error::io("create pool root", root, source))?;
        let root = fs::canonicalize(root)
            .await
            .map_err(|source| Error::io("resolve pool root", root, source))?;
        let mut pool = Dir { root, reflink: false };
        for dir in [pool.datasets_dir(), pool.snapshots_dir(), pool.tmp_dir()] {
            fs::create_dir_all(&dir)
                .await
                .map_err(|source| Error::io("create pool directory", &dir, source))?;
        }
        pool.reflink = pool.probe_reflink().await?;
        if pool.reflink {
            tracing::info!(root = %pool.root.display(), "dir pool reflinks: snapshots and clones are thin");
        } else {
            tracing::warn!(
                root = %pool.root.display(),
                "dir pool cannot reflink: every snapshot and clone is a FULL COPY (thin: false)"
            );
        }
        Ok(pool)
    }

    /// The pool root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn probe_reflink(&self) -> Result<bool> {
        let source = self.tmp_dir().join(unique_name("probe-src"));
        let target = self.tmp_dir().join(unique_name("probe-dst"));
        let (src, dst) = (source.clone(), target.clone());
        let probed = blocking(
            move || {
                std::fs::write(&src, b"reflink probe")?;
                let from = std::fs::File::open(&src)?;
                let to = std::fs::File::create(&dst)?;
                Ok(rustix::fs::ioctl_ficlone(&to, &from).is_ok())
            },
            "probe reflink in",
            &self.root,
        )
        .await;
        let _ = fs::remove_file(&source).await;
        let _ = fs::remove_file(&target).await;
        probed
    }

    fn datasets_dir(&self) -> PathBuf {
        self.root.join(META_DIR).join("datasets")
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join(META_DIR).join("snapshots")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(META_DIR).join("tmp")
    }

    fn dataset_path(&self, name: &DatasetName) -> PathBuf {
        self.root.join(name.as_str())
    }

    fn sidecar_path(&self, name: &DatasetName) -> PathBuf {
        self.datasets_dir().join(format!("{}.json", flat(name.as_str())))
    }

    fn snapshot_path(&self, name: &SnapshotName) -> PathBuf {
        self.snapshots_dir().join(flat(&name.to_string()))
    }

    async fn dataset_exists(&self, name: &DatasetName) -> bool {
        fs::try_exists(self.sidecar_path(name)).await.unwrap_or(false)
    }

    async fn write_sidecar(&self, name: &DatasetName, origin: Option<&SnapshotName>) -> Result<()> {
        let sidecar = Sidecar { origin: origin.map(ToString::to_string) };
        let text = serde_json::to_vec(&sidecar).map_err(|error| {
            Error::io("encode sidecar", self.sidecar_path(name), std::io::Error::other(error))
        })?;
        let staged = self.tmp_dir().join(unique_name("sidecar"));
        let path = self.sidecar_path(name);
        fs::write(&staged, text).await.map_err(|source| Error::io("write", &staged, source))?;
        fs::rename(&staged, &path).await.map_err(|source| Error::io("rename to", &path, source))
    }

    /// Makes `name` a dataset with an empty directory; `Ok(false)` when it already was one.
    /// With `adopt`, an existing directory becomes the dataset (parents, like `mkdir -p`; and
    /// another task may have made the directory but not yet its sidecar).
    async fn make_dataset(&self, name: &DatasetName, adopt: bool) -> Result<bool> {
        let path = self.dataset_path(name);
        match fs::create_dir(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if self.dataset_exists(name).await {
                    return Ok(false);
                }
                if !adopt {
                    return Err(Error::AlreadyExists(format!(
                        "{name} (a directory not made by Scion is in the way)"
                    )));
                }
            }
            Err(source) => return Err(Error::io("create dataset directory", &path, source)),
        }
        self.write_sidecar(name, None).await?;
        Ok(true)
    }

    async fn create_parents(&self, name: &DatasetName) -> Result<()> {
        for ancestor in name.ancestors() {
            if !self.dataset_exists(&ancestor).await {
                self.make_dataset(&ancestor, true).await?;
            }
        }
        Ok(())
    }

    /// Copies `source` into a staging directory, then renames it to `target` if nothing is
    /// there yet. `skip` leaves out top-level entries (child datasets).
    async fn copy_into_place(
        &self,
        source: PathBuf,
        target: PathBuf,
        skip: Vec<std::ffi::OsString>,
        object: &(dyn std::fmt::Display + Sync),
    ) -> Result<()> {
        let staged = self.tmp_dir().join(unique_name("copy"));
        let reflink = self.reflink;
        let (from, to) = (source, staged.clone());
        let copied = blocking(
            move || tree::copy_tree(&from, &to, reflink, &|entry| skip.iter().any(|s| s == entry)),
            "copy into",
            &staged,
        )
        .await;
        let placed = copied.and_then(|()| {
            rustix::fs::renameat_with(CWD, &staged, CWD, &target, RenameFlags::NOREPLACE).map_err(
                |errno| match errno {
                    Errno::EXIST | Errno::NOTEMPTY => Error::AlreadyExists(object.to_string()),
                    errno => Error::io("rename to", &target, errno.into()),
                },
            )
        });
        if placed.is_err() {
            remove_tree(staged).await;
        }
        placed
    }

    /// Names of `name`'s top-level entries that are child datasets.
    async fn child_entries(&self, name: &DatasetName) -> Result<Vec<std::ffi::OsString>> {
        let prefix = format!("{}%", flat(name.as_str()));
        let mut children = Vec::new();
        for sidecar in self.sidecar_names().await? {
            if let Some(rest) = sidecar.strip_prefix(&prefix)
                && !rest.contains('%')
            {
                children.push(rest.into());
            }
        }
        Ok(children)
    }

    /// The flattened names of all datasets with a sidecar.
    async fn sidecar_names(&self) -> Result<Vec<String>> {
        let dir = self.datasets_dir();
        let mut names = Vec::new();
        let mut entries =
            fs::read_dir(&dir).await.map_err(|source| Error::io("read", &dir, source))?;
        while let Some(entry) =
            entries.next_entry().await.map_err(|source| Error::io("read", &dir, source))?
        {
            let file = entry.file_name();
            if let Some(name) = file.to_str().and_then(|file| file.strip_suffix(".json")) {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn read_origin(&self, name: &DatasetName) -> Option<SnapshotName> {
        let text = fs::read(self.sidecar_path(name)).await.ok()?;
        let sidecar: Sidecar = serde_json::from_slice(&text).ok()?;
        sidecar.origin?.parse().ok()
    }

    async fn destroy(&self, object: Object, mode: DestroyMode) -> Result<()> {
        let plan = self.list().await?.plan_destroy(&object, mode)?;
        for object in plan {
            let path = match &object {
                Object::Dataset(name) => {
                    let sidecar = self.sidecar_path(name);
                    // Without its sidecar the directory is no longer a dataset, even if
                    // removing its files fails half-way.
                    fs::remove_file(&sidecar)
                        .await
                        .map_err(|source| Error::io("remove", &sidecar, source))?;
                    self.dataset_path(name)
                }
                Object::Snapshot(name) => self.snapshot_path(name),
            };
            // Renamed away first, so the object disappears at once and a new one of the same
            // name can be made while the files are still being removed.
            let doomed = self.tmp_dir().join(unique_name("destroy"));
            fs::rename(&path, &doomed).await.map_err(|source| Error::io("move", &path, source))?;
            remove_tree(doomed).await;
        }
        Ok(())
    }
}

async fn remove_tree(path: PathBuf) {
    let _ = spawn_blocking(move || std::fs::remove_dir_all(path)).await;
}

impl ThinStorage for Dir {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            thin: self.reflink,
            atomic_snapshots: false,
            independent_clones: true,
            quotas: false,
        }
    }

    fn mountpoint(&self, name: &DatasetName) -> PathBuf {
        self.dataset_path(name)
    }

    async fn create_dataset(&self, name: &DatasetName) -> Result<PathBuf> {
        self.create_parents(name).await?;
        if !self.make_dataset(name, false).await? {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        Ok(self.dataset_path(name))
    }

    async fn destroy_dataset(&self, name: &DatasetName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Dataset(name.clone()), mode).await
    }

    async fn snapshot(&self, name: &SnapshotName) -> Result<()> {
        let dataset = name.dataset();
        if !self.dataset_exists(dataset).await {
            return Err(Error::NotFound(dataset.to_string()));
        }
        let target = self.snapshot_path(name);
        if fs::try_exists(&target).await.unwrap_or(false) {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let skip = self.child_entries(dataset).await?;
        self.copy_into_place(self.dataset_path(dataset), target, skip, name).await
    }

    async fn destroy_snapshot(&self, name: &SnapshotName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Snapshot(name.clone()), mode).await
    }

    async fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<PathBuf> {
        let source = self.snapshot_path(snapshot);
        if !fs::try_exists(&source).await.unwrap_or(false) {
            return Err(Error::NotFound(snapshot.to_string()));
        }
        if self.dataset_exists(target).await {
            return Err(Error::AlreadyExists(target.to_string()));
        }
        self.create_parents(target).await?;
        let path = self.dataset_path(target);
        self.copy_into_place(source, path.clone(), Vec::new(), target).await?;
        self.write_sidecar(target, Some(snapshot)).await?;
        Ok(path)
    }

    async fn list(&self) -> Result<Listing> {
        let mut datasets = Vec::new();
        for flat_name in self.sidecar_names().await? {
            let Ok(name) = unflat(&flat_name).parse::<DatasetName>() else { continue };
            let origin = self.read_origin(&name).await;
            datasets.push(DatasetInfo { mountpoint: self.dataset_path(&name), name, origin });
        }
        let dir = self.snapshots_dir();
        let mut snapshots = Vec::new();
        let mut entries =
            fs::read_dir(&dir).await.map_err(|source| Error::io("read", &dir, source))?;
        while let Some(entry) =
            entries.next_entry().await.map_err(|source| Error::io("read", &dir, source))?
        {
            if let Some(name) = entry.file_name().to_str().map(unflat) {
                snapshots.extend(name.parse::<SnapshotName>().ok());
            }
        }
        Ok(Listing::new(datasets, snapshots))
    }

    async fn pool_space(&self) -> Result<PoolSpace> {
        statvfs_space(&self.root)
    }

    fn pool_space_now(&self) -> Result<PoolSpace> {
        statvfs_space(&self.root)
    }

    async fn settle_freed_space(&self) -> Result<()> {
        // Whatever the filesystem under the directories is, a sync commits its frees.
        let root = self.root.clone();
        blocking(move || Ok(rustix::fs::syncfs(std::fs::File::open(&root)?)?), "sync", &self.root)
            .await
    }

    async fn dataset_space(&self, name: &DatasetName) -> Result<DatasetSpace> {
        if !self.dataset_exists(name).await {
            return Err(Error::NotFound(name.to_string()));
        }
        let skip = self.child_entries(name).await?;
        let path = self.dataset_path(name);
        let root = path.clone();
        let extents = self.reflink;
        let usage = blocking(
            move || tree::usage(&root, extents, &|entry| skip.iter().any(|s| s == entry)),
            "measure",
            &path,
        )
        .await?;
        Ok(DatasetSpace { written: usage.exclusive, referenced: usage.allocated })
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        // A snapshot is a copy (reflinked where the filesystem can): what it holds alone is its
        // extents that no dataset or other snapshot shares.
        let snapshots = self.snapshots_dir();
        let extents = self.reflink;
        let walked = blocking(
            move || match tree::usage(&snapshots, extents, &|_| false) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Ok(Default::default())
                }
                other => other,
            },
            "measure",
            &self.snapshots_dir(),
        )
        .await?;
        // XFS and ext4 do not compress: what is used is what was written.
        let used = statvfs_space(&self.root)?.used;
        Ok(PoolUsage {
            used_by_snapshots: walked.exclusive,
            logical_used: Some(used),
            compress_ratio: Some(1.0),
        })
    }

    async fn set_quota(&self, name: &DatasetName, _bytes: u64) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{name}: the dir backend cannot give a dataset a quota (use btrfs or ZFS)"
        )))
    }
}
