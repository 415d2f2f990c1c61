//! The btrfs backend: datasets are subvolumes, snapshots read-only subvolumes, clones writable
//! snapshots of those.
//!
//! Layout under the pool root: dataset `a/b` is the subvolume `<root>/a/b` (its parent `a` is a
//! subvolume too), snapshot `a/b@s1` is the read-only subvolume `<root>/.snapshots/a/b@s1`.
//! Dataset names cannot start with `.`, so `.snapshots` never collides with one. Relations come
//! from subvolume UUIDs: a clone's parent UUID is its snapshot's UUID. btrfs itself lets a
//! snapshot be deleted under its clones; the dependency rules are enforced here from the listing.
//! Per-dataset space comes from FIEMAP's shared-extent flags by default, or from qgroups when
//! asked for; quota slows every snapshot and clone down. A dataset's quota is a qgroup limit
//! on its referenced bytes; the first one turns quota on for the filesystem (and waits for its
//! rescan) when it is off.
//!
//! Create, snapshot, clone and delete call the btrfs ioctls directly ([`ioctl`]), each in one
//! trip to a blocking thread with no listing: starting the `btrfs` program cost more than the
//! operation itself. Opening the pool, listing it and the quota work still run the `btrfs`
//! program: they are not on the clone path, and listing UUIDs by ioctl means walking the root
//! tree with TREE_SEARCH, which the program already does well.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use exec::Cmd;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use tokio::fs;

use crate::{
    BackendKind, Capabilities, DatasetInfo, DatasetName, DatasetSpace, DestroyMode, Error, Listing,
    Object, PoolSpace, PoolUsage, Result, SnapshotName, ThinStorage, blocking, run_tool,
    statvfs_space, tree,
};

mod ioctl;

/// Where snapshots live, relative to the pool root.
const SNAPSHOT_DIR: &str = ".snapshots";
/// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INODE: u64 = 256;

/// How a btrfs pool measures the bytes a dataset holds alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceAccounting {
    /// Walk the dataset's files and sum the extents FIEMAP does not report as shared. Costs
    /// nothing until asked; an answer costs time in proportion to the number of files.
    Extents,
    /// btrfs quota groups. Answers at once, but quota makes every snapshot and clone slower
    /// (see BENCHMARKS.md), and a later `quota enable` rescans the whole filesystem.
    Qgroups,
}

/// A btrfs pool: a mounted btrfs filesystem, or a subvolume of one, used as the root.
#[derive(Debug, Clone)]
pub struct Btrfs {
    root: PathBuf,
    accounting: SpaceAccounting,
    /// Whether quota is known to be on; held while it is turned on, so that concurrent first
    /// quotas enable it once.
    quota_on: Arc<tokio::sync::Mutex<bool>>,
    /// The root's path relative to the filesystem's top level, with a trailing `/` (empty at
    /// the top level): `btrfs subvolume list` prints paths from the top level.
    top_prefix: String,
    /// Whether qgroups of deleted subvolumes may be left: true at open (an earlier run may have
    /// left some) and after every deletion, until [`ThinStorage::clear_stale_quotas`] finds
    /// none left and no deleted subvolume still being cleaned.
    stale_qgroups: Arc<AtomicBool>,
}

impl Btrfs {
    /// Opens the pool at `root`; with [`SpaceAccounting::Qgroups`], enables quota if it is off.
    pub async fn open(root: impl AsRef<Path>, accounting: SpaceAccounting) -> Result<Self> {
        let root = fs::canonicalize(root.as_ref())
            .await
            .map_err(|source| Error::io("resolve pool root", root.as_ref(), source))?;
        let shown = Cmd::new("btrfs").args(["subvolume", "show"]).arg(&root).output().await;
        let shown = match shown {
            Ok(output) => output.stdout_text(),
            Err(error) => {
                return Err(Error::Unsupported(format!(
                    "{} is not a btrfs subvolume: {}",
                    root.display(),
                    error.stderr_tail()
                )));
            }
        };
        let top_path = shown.lines().next().unwrap_or("/").trim();
        let top_prefix = match top_path.trim_matches('/') {
            "" => String::new(),
            path => format!("{path}/"),
        };
        let pool = Btrfs {
            root,
            accounting,
            top_prefix,
            quota_on: Arc::default(),
            stale_qgroups: Arc::new(AtomicBool::new(true)),
        };
        if accounting == SpaceAccounting::Qgroups {
            pool.ensure_quota().await?;
        }
        let snapshots = pool.root.join(SNAPSHOT_DIR);
        fs::create_dir_all(&snapshots)
            .await
            .map_err(|source| Error::io("create snapshot directory", &snapshots, source))?;
        Ok(pool)
    }

    /// Turns quota on for the filesystem unless this pool saw it on already.
    async fn ensure_quota(&self) -> Result<()> {
        let mut on = self.quota_on.lock().await;
        if !*on {
            self.enable_quota().await?;
            *on = true;
        }
        Ok(())
    }

    async fn enable_quota(&self) -> Result<()> {
        let probe = Cmd::new("btrfs").args(["qgroup", "show", "--raw"]).arg(&self.root);
        if probe.output().await.is_ok() {
            return Ok(());
        }
        let root = self.root.display();
        run_tool(Cmd::new("btrfs").args(["quota", "enable"]).arg(&self.root), &root).await?;
        // Enabling starts a rescan; numbers are wrong until it ends, so wait for it here.
        run_tool(Cmd::new("btrfs").args(["quota", "rescan", "-W"]).arg(&self.root), &root).await?;
        Ok(())
    }

    /// The pool root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dataset_path(&self, name: &DatasetName) -> PathBuf {
        self.root.join(name.as_str())
    }

    fn snapshot_path(&self, name: &SnapshotName) -> PathBuf {
        self.root.join(SNAPSHOT_DIR).join(name.to_string())
    }

    /// Creates `name`'s missing ancestors as subvolumes.
    fn create_parents(&self, name: &DatasetName) -> Result<()> {
        for ancestor in name.ancestors() {
            let path = self.dataset_path(&ancestor);
            if is_subvolume_sync(&path) {
                continue;
            }
            match self.create_subvolume(&ancestor) {
                // Another task created it first: fine, as long as it is a subvolume.
                Err(Error::AlreadyExists(_)) if is_subvolume_sync(&path) => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn create_subvolume(&self, name: &DatasetName) -> Result<()> {
        at_parent(&self.dataset_path(name), name, "create subvolume", ioctl::create_subvolume)
    }

    /// Deletes what `plan` lists, in order, with no listing of its own.
    fn delete(&self, plan: &[Object]) -> Result<()> {
        for object in plan {
            let (path, context) = match object {
                Object::Dataset(name) => (self.dataset_path(name), "delete subvolume"),
                Object::Snapshot(name) => (self.snapshot_path(name), "delete snapshot"),
            };
            at_parent(&path, object, context, ioctl::destroy_subvolume)?;
            if let Object::Snapshot(name) = object {
                self.prune_snapshot_dirs(name);
            }
        }
        Ok(())
    }

    async fn destroy(&self, object: Object, mode: DestroyMode) -> Result<()> {
        let plan = self.list().await?.plan_destroy(&object, mode)?;
        let pool = self.clone();
        // Set before the deletion, so a clear that runs meanwhile cannot unset it after.
        self.stale_qgroups.store(true, Ordering::SeqCst);
        self.unblocked(move || pool.delete(&plan)).await
    }

    /// Subvolume IDs from `btrfs subvolume list` (with `-d`: those deleted and not yet
    /// cleaned) of the whole filesystem.
    async fn subvolume_ids(&self, deleted: bool) -> Result<HashSet<u64>> {
        let mut cmd = Cmd::new("btrfs").args(["subvolume", "list"]);
        if deleted {
            cmd = cmd.arg("-d");
        }
        let text = run_tool(cmd.arg(&self.root), &self.root.display()).await?.stdout_text();
        Ok(text.lines().filter_map(parse_subvolume_id).collect())
    }

    /// Removes the directories under `.snapshots` that held only this snapshot.
    fn prune_snapshot_dirs(&self, name: &SnapshotName) {
        let base = self.root.join(SNAPSHOT_DIR);
        let mut dir = self.snapshot_path(name).parent().map(Path::to_path_buf);
        while let Some(path) = dir {
            // remove_dir fails on a non-empty directory, which is where pruning stops.
            if path == base || std::fs::remove_dir(&path).is_err() {
                break;
            }
            dir = path.parent().map(Path::to_path_buf);
        }
    }

    /// Runs blocking subvolume work (stats, ioctls that commit a transaction) off the runtime.
    async fn unblocked<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        blocking(move || Ok(work()), "run btrfs operation on", &self.root).await?
    }

    async fn subvolume_id(&self, path: &Path, name: &DatasetName) -> Result<u64> {
        let output =
            run_tool(Cmd::new("btrfs").args(["inspect-internal", "rootid"]).arg(path), name)
                .await?;
        let text = output.stdout_text();
        text.trim().parse().map_err(|_| {
            Error::Unsupported(format!("unexpected `btrfs inspect-internal rootid` output: {text}"))
        })
    }
}

/// Opens a directory for a subvolume ioctl (or as a snapshot source).
fn open_dir(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

/// Opens the subvolume at `path`; a missing path, or a directory that is not a subvolume's
/// root, is [`Error::NotFound`] of `object`.
fn open_subvolume(path: &Path, object: &dyn fmt::Display) -> Result<OwnedFd> {
    let not_found = || Error::NotFound(object.to_string());
    let fd = match open_dir(path) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Err(not_found()),
        Err(errno) => return Err(ioctl_error("open subvolume", object, path, errno)),
    };
    let stat = rustix::fs::fstat(&fd)
        .map_err(|errno| ioctl_error("stat subvolume", object, path, errno))?;
    if stat.st_ino != SUBVOLUME_ROOT_INODE {
        return Err(not_found());
    }
    Ok(fd)
}

/// Runs a subvolume ioctl `op` on `path`'s parent directory with `path`'s last component;
/// errors name `object`.
fn at_parent(
    path: &Path,
    object: &dyn fmt::Display,
    context: &'static str,
    op: impl FnOnce(BorrowedFd<'_>, &OsStr) -> rustix::io::Result<()>,
) -> Result<()> {
    // Every path here is the pool root joined with a validated name: it has both.
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ioctl_error(context, object, path, Errno::INVAL));
    };
    let dir = open_dir(parent).map_err(|errno| ioctl_error(context, object, parent, errno))?;
    op(dir.as_fd(), name).map_err(|errno| ioctl_error(context, object, path, errno))
}

/// Maps the errno of a subvolume operation on `path` (which stands for `object`) to the
/// variant a caller acts on, as the `btrfs` program's messages were mapped before.
fn ioctl_error(
    context: &'static str,
    object: &dyn fmt::Display,
    path: &Path,
    errno: Errno,
) -> Error {
    match errno {
        Errno::EXIST => Error::AlreadyExists(object.to_string()),
        Errno::NOENT => Error::NotFound(object.to_string()),
        Errno::PERM | Errno::ACCESS => Error::PermissionDenied(format!(
            "{context} {}: {errno}; managing btrfs subvolumes needs root (CAP_SYS_ADMIN)",
            path.display()
        )),
        Errno::NOTTY | Errno::OPNOTSUPP | Errno::XDEV => Error::Unsupported(format!(
            "{context} {}: {errno}; is it on the pool's btrfs filesystem?",
            path.display()
        )),
        // ENOSPC and EDQUOT become NoSpace there.
        _ => Error::io(context, path, errno.into()),
    }
}

/// True when `path` is the root of a subvolume.
async fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).await.is_ok_and(|meta| is_subvolume_root(&meta))
}

fn is_subvolume_sync(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| is_subvolume_root(&meta))
}

fn is_subvolume_root(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_dir() && meta.ino() == SUBVOLUME_ROOT_INODE
}

/// One line of `btrfs subvolume list -u -q`.
#[derive(Debug, PartialEq, Eq)]
struct SubvolumeLine<'a> {
    uuid: &'a str,
    parent_uuid: Option<&'a str>,
    path: &'a str,
}

fn parse_subvolume_line(line: &str) -> Option<SubvolumeLine<'_>> {
    let (fields, path) = line.split_once(" path ")?;
    let mut words = fields.split_whitespace();
    let (mut uuid, mut parent_uuid) = (None, None);
    while let Some(word) = words.next() {
        match word {
            "uuid" => uuid = words.next(),
            "parent_uuid" => parent_uuid = words.next().filter(|value| *value != "-"),
            _ => {}
        }
    }
    Some(SubvolumeLine { uuid: uuid?, parent_uuid, path: path.trim() })
}

/// The mount options (per mount and of the superblock) of the mount that holds `path`: the
/// mountinfo line with the longest mount point above it.
fn mount_options(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = crate::provision::unescape_mountinfo(fields.get(4)?);
            let separator = fields.iter().position(|field| *field == "-")?;
            let options = format!("{},{}", fields.get(5)?, fields.get(separator + 3)?);
            path.starts_with(&mount_point).then_some((mount_point.len(), options))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, options)| options)
}

/// Reads the bytes used by data from `btrfs filesystem df -b`
/// (`Data, single: total=8388608, used=1048576`).
fn parse_data_used(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("Data,"))?;
    line.split_once("used=")?.1.trim().parse().ok()
}

/// The ID of a `btrfs subvolume list` line (`ID 256 gen 8 top level 5 path a`).
fn parse_subvolume_id(line: &str) -> Option<u64> {
    line.strip_prefix("ID ")?.split_whitespace().next()?.parse().ok()
}

/// The IDs of the level-0 qgroups (`0/<id>`) in `btrfs qgroup show --raw`.
fn level_zero_qgroups(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next()?.strip_prefix("0/")?.parse().ok())
        .collect()
}

/// Of the level-0 `qgroups`, those of no subvolume: neither `live` nor `deleting` (deleted and
/// still being dropped), nor the top level's.
fn stale_qgroups(qgroups: Vec<u64>, live: &HashSet<u64>, deleting: &HashSet<u64>) -> Vec<u64> {
    qgroups
        .into_iter()
        .filter(|id| *id != TOP_LEVEL_ID && !live.contains(id) && !deleting.contains(id))
        .collect()
}

/// The subvolume ID of the filesystem's top level, whose qgroup `0/5` has no subvolume entry.
const TOP_LEVEL_ID: u64 = 5;

/// Reads `(referenced, exclusive)` of qgroup `0/<id>` from `btrfs qgroup show --raw`.
fn parse_qgroup(text: &str, id: u64) -> Option<(u64, u64)> {
    let wanted = format!("0/{id}");
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != wanted {
            return None;
        }
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    })
}

impl ThinStorage for Btrfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Btrfs
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { thin: true, atomic_snapshots: true, independent_clones: true, quotas: true }
    }

    fn mountpoint(&self, name: &DatasetName) -> PathBuf {
        self.dataset_path(name)
    }

    async fn create_dataset(&self, name: &DatasetName) -> Result<PathBuf> {
        let (pool, name) = (self.clone(), name.clone());
        self.unblocked(move || {
            pool.create_parents(&name)?;
            pool.create_subvolume(&name)?;
            Ok(pool.dataset_path(&name))
        })
        .await
    }

    async fn destroy_dataset(&self, name: &DatasetName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Dataset(name.clone()), mode).await
    }

    async fn snapshot(&self, name: &SnapshotName) -> Result<()> {
        let (pool, name) = (self.clone(), name.clone());
        self.unblocked(move || {
            let source = open_subvolume(&pool.dataset_path(name.dataset()), name.dataset())?;
            let target = pool.snapshot_path(&name);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| Error::io("create snapshot directory", parent, source))?;
            }
            at_parent(&target, &name, "snapshot into", |dir, file| {
                ioctl::snapshot(source.as_fd(), dir, file, true)
            })
        })
        .await
    }

    async fn destroy_snapshot(&self, name: &SnapshotName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Snapshot(name.clone()), mode).await
    }

    async fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<PathBuf> {
        let (pool, snapshot, target) = (self.clone(), snapshot.clone(), target.clone());
        self.unblocked(move || {
            let source = open_subvolume(&pool.snapshot_path(&snapshot), &snapshot)?;
            pool.create_parents(&target)?;
            let path = pool.dataset_path(&target);
            at_parent(&path, &target, "clone into", |dir, file| {
                ioctl::snapshot(source.as_fd(), dir, file, false)
            })?;
            Ok(path)
        })
        .await
    }

    async fn list(&self) -> Result<Listing> {
        let root = self.root.display();
        let cmd = Cmd::new("btrfs").args(["subvolume", "list", "-u", "-q"]).arg(&self.root);
        let output = run_tool(cmd, &root).await?.stdout_text();
        let snapshot_prefix = format!("{SNAPSHOT_DIR}/");
        let mut snapshots = Vec::new();
        let mut datasets = Vec::new();
        for line in output.lines().filter_map(parse_subvolume_line) {
            let Some(path) = line.path.strip_prefix(self.top_prefix.as_str()) else { continue };
            // Subvolumes with names Scion would not make are someone else's: leave them out.
            if let Some(snapshot) = path.strip_prefix(snapshot_prefix.as_str()) {
                if let Ok(name) = snapshot.parse::<SnapshotName>() {
                    snapshots.push((line.uuid, name));
                }
            } else if let Ok(name) = path.parse::<DatasetName>() {
                datasets.push((line.parent_uuid, name));
            }
        }
        let datasets = datasets
            .into_iter()
            .map(|(parent_uuid, name)| DatasetInfo {
                origin: parent_uuid.and_then(|parent| {
                    snapshots.iter().find(|(uuid, _)| *uuid == parent).map(|(_, snap)| snap.clone())
                }),
                mountpoint: self.dataset_path(&name),
                name,
            })
            .collect();
        Ok(Listing::new(datasets, snapshots.into_iter().map(|(_, name)| name).collect()))
    }

    async fn pool_space(&self) -> Result<PoolSpace> {
        // statvfs counts what the running transaction holds only once it commits.
        let root = self.root.clone();
        blocking(move || Ok(rustix::fs::syncfs(std::fs::File::open(&root)?)?), "sync", &self.root)
            .await?;
        statvfs_space(&self.root)
    }

    fn pool_space_now(&self) -> Result<PoolSpace> {
        statvfs_space(&self.root)
    }

    async fn settle_freed_space(&self) -> Result<()> {
        // Unlike syncfs, BTRFS_IOC_SYNC also wakes the cleaner, which returns the extents of
        // deleted subvolumes (destroyed clones) in the background.
        let cmd = Cmd::new("btrfs").args(["filesystem", "sync"]).arg(&self.root);
        run_tool(cmd, &self.root.display()).await?;
        Ok(())
    }

    async fn dataset_space(&self, name: &DatasetName) -> Result<DatasetSpace> {
        let path = self.dataset_path(name);
        if !is_subvolume(&path).await {
            return Err(Error::NotFound(name.to_string()));
        }
        if self.accounting == SpaceAccounting::Extents {
            let root = path.clone();
            let usage = blocking(
                move || {
                    // Child datasets are nested subvolumes: theirs, not this one's.
                    let is_child = |entry: &std::ffi::OsStr| is_subvolume_sync(&root.join(entry));
                    tree::usage(&root, true, &is_child)
                },
                "measure",
                &path,
            )
            .await?;
            return Ok(DatasetSpace { written: usage.exclusive, referenced: usage.allocated });
        }
        let id = self.subvolume_id(&path, name).await?;
        // qgroup numbers are updated when a transaction commits.
        run_tool(Cmd::new("btrfs").args(["filesystem", "sync"]).arg(&self.root), name).await?;
        let cmd = Cmd::new("btrfs").args(["qgroup", "show", "-re", "--raw"]).arg(&self.root);
        let text = run_tool(cmd, name).await?.stdout_text();
        let (referenced, exclusive) = parse_qgroup(&text, id).ok_or_else(|| {
            Error::Unsupported(format!("no qgroup 0/{id} for {name}: is quota enabled?"))
        })?;
        Ok(DatasetSpace { written: exclusive, referenced })
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        // What snapshots hold alone: their extents that nothing else shares (FIEMAP), a walk
        // of every snapshot's files. Extents two snapshots share count for neither, so this is
        // at most ZFS's per-dataset usedbysnapshots.
        let snapshots = self.root.join(SNAPSHOT_DIR);
        let (walked, compressed) = blocking(
            {
                let (root, snapshots) = (self.root.clone(), snapshots.clone());
                move || {
                    // FIEMAP reads sharing from committed back references: commit first, so a
                    // file a clone just removed no longer shares its snapshot's extents.
                    rustix::fs::syncfs(std::fs::File::open(&root)?)?;
                    let walked = tree::usage(&snapshots, true, &|_| false)?;
                    // btrfs keeps no compression ratio: without compression in the mount
                    // options (Scion never sets it per file) nothing is compressed and the
                    // ratio is 1; with it, only a walk of every extent could tell, so neither
                    // figure is given.
                    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
                    let compressed = mount_options(&mountinfo, &root).is_none_or(|options| {
                        options.split(',').any(|option| option.starts_with("compress"))
                    });
                    Ok((walked, compressed))
                }
            },
            "measure",
            &snapshots,
        )
        .await?;
        let cmd = Cmd::new("btrfs").args(["filesystem", "df", "-b"]).arg(&self.root);
        let text = run_tool(cmd, &self.root.display()).await?.stdout_text();
        let data = parse_data_used(&text).ok_or_else(|| {
            Error::Unsupported(format!("unexpected `btrfs filesystem df` output: {text}"))
        })?;
        Ok(PoolUsage {
            used_by_snapshots: walked.exclusive,
            logical_used: (!compressed).then_some(data),
            compress_ratio: (!compressed).then_some(1.0),
        })
    }

    async fn set_quota(&self, name: &DatasetName, bytes: u64) -> Result<()> {
        let path = self.dataset_path(name);
        if !is_subvolume(&path).await {
            return Err(Error::NotFound(name.to_string()));
        }
        self.ensure_quota().await?;
        // Without a qgroup ID the limit goes to the subvolume's own qgroup, 0/<its ID>, and
        // limits referenced bytes (not `-e`, exclusive ones), as ZFS's refquota does.
        let cmd = Cmd::new("btrfs").args(["qgroup", "limit", &bytes.to_string()]).arg(&path);
        run_tool(cmd, name).await?;
        Ok(())
    }

    /// Destroys the level-0 qgroups whose subvolume is gone: with quota on, btrfs keeps the
    /// qgroup `0/<id>` of a deleted subvolume (kernels before 6.10 always, later ones when
    /// its numbers are off), and thousands of them slow every commit's accounting.
    ///
    /// Why here, once per round, and not at each destroy: a deleted subvolume is dropped by
    /// the cleaner thread later, in the background, and that drop still accounts its extents
    /// to its qgroup (and through it to the qgroups it shared them with). Destroying the qgroup
    /// at destroy would race that drop (newer kernels refuse it while it holds bytes, older ones
    /// let the drop's accounting go wrong), and waiting for the drop would hold the destroy for
    /// as long as the cleaner takes. Nor is `btrfs qgroup clear-stale` the answer: older
    /// btrfs-progs count a subvolume still being dropped as stale too. So this lists the live
    /// subvolumes and then those deleted but not yet cleaned (in that order: one deleted in
    /// between shows in the second list), and destroys only qgroups in neither; those of
    /// subvolumes still being cleaned wait for a later round. Nothing runs when no subvolume
    /// was deleted since the last clear that left none waiting, or when quota is off.
    async fn clear_stale_quotas(&self) -> Result<usize> {
        if !self.stale_qgroups.swap(false, Ordering::SeqCst) {
            return Ok(0);
        }
        let shown = Cmd::new("btrfs").args(["qgroup", "show", "--raw"]).arg(&self.root);
        // Fails when quota is off: then there are no qgroups to clear.
        let Ok(shown) = crate::run_raw(shown).await else { return Ok(0) };
        let qgroups = level_zero_qgroups(&shown.stdout_text());
        let live = self.subvolume_ids(false).await;
        let deleting = self.subvolume_ids(true).await;
        let (live, deleting) = match (live, deleting) {
            (Ok(live), Ok(deleting)) => (live, deleting),
            (Err(error), _) | (_, Err(error)) => {
                self.stale_qgroups.store(true, Ordering::SeqCst);
                return Err(error);
            }
        };
        if qgroups.iter().any(|id| deleting.contains(id)) {
            self.stale_qgroups.store(true, Ordering::SeqCst);
        }
        let mut cleared = 0;
        for id in stale_qgroups(qgroups, &live, &deleting) {
            let qgroup = format!("0/{id}");
            let cmd = Cmd::new("btrfs").args(["qgroup", "destroy", &qgroup]).arg(&self.root);
            match crate::run_raw(cmd).await {
                Ok(_) => cleared += 1,
                // A kernel that removes the qgroup itself once the drop ends did so between
                // the listing and now.
                Err(error) if error.stderr_tail().contains("No such file or directory") => {}
                Err(error) => {
                    self.stale_qgroups.store(true, Ordering::SeqCst);
                    return Err(Error::from_command(error, &qgroup));
                }
            }
        }
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_errnos_map_to_variants() {
        let map =
            |errno| format!("{:?}", ioctl_error("clone into", &"c1", Path::new("/p/c1"), errno));
        assert!(map(Errno::EXIST).starts_with("AlreadyExists(\"c1\")"));
        assert!(map(Errno::NOENT).starts_with("NotFound(\"c1\")"));
        assert!(map(Errno::NOSPC).starts_with("NoSpace"));
        assert!(map(Errno::DQUOT).starts_with("NoSpace"));
        assert!(map(Errno::PERM).starts_with("PermissionDenied"));
        assert!(map(Errno::ACCESS).starts_with("PermissionDenied"));
        assert!(map(Errno::NOTTY).starts_with("Unsupported"));
        assert!(map(Errno::NOTEMPTY).starts_with("Io"));
    }

    #[test]
    fn parses_subvolume_list_lines() {
        let line =
            "ID 259 gen 8 top level 5 parent_uuid 34640e40-d5c6 uuid 3025551b-7650 path a/cl1";
        assert_eq!(
            parse_subvolume_line(line),
            Some(SubvolumeLine {
                uuid: "3025551b-7650",
                parent_uuid: Some("34640e40-d5c6"),
                path: "a/cl1"
            })
        );
        let line =
            "ID 256 gen 7 top level 5 parent_uuid -       uuid 7b8dc269 path .snapshots/a@s1";
        let parsed = parse_subvolume_line(line).unwrap();
        assert_eq!((parsed.parent_uuid, parsed.path), (None, ".snapshots/a@s1"));
        assert_eq!(parse_subvolume_line("garbage"), None);
    }

    #[test]
    fn reads_mount_options_and_data_used() {
        let mountinfo = "29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                         90 29 7:0 / /var/pool rw,noatime - btrfs /dev/loop0 rw,compress=zstd:3,space_cache=v2\n\
                         91 29 7:1 / /var/pool\\040b rw - btrfs /dev/loop1 rw,space_cache=v2\n";
        let options = mount_options(mountinfo, Path::new("/var/pool/branch")).unwrap();
        assert!(options.contains("compress=zstd"), "{options}");
        let options = mount_options(mountinfo, Path::new("/var/pool b")).unwrap();
        assert!(!options.contains("compress"), "{options}");
        assert!(mount_options(mountinfo, Path::new("/srv")).unwrap().ends_with(",rw"));
        let df = "Data, single: total=79691776, used=42315776\n\
                  System, DUP: total=8388608, used=16384\n\
                  Metadata, DUP: total=67108864, used=1261568\n";
        assert_eq!(parse_data_used(df), Some(42_315_776));
        assert_eq!(parse_data_used("garbage"), None);
    }

    #[test]
    fn only_qgroups_of_no_subvolume_are_stale() {
        let text = "Qgroupid    Referenced    Exclusive   Path \n\
                    --------    ----------    ---------   ---- \n\
                    0/5              16384        16384   <toplevel>\n\
                    0/256         20987904        16384   a\n\
                    0/262         20987904        16384   <stale>\n\
                    0/263         52445184     31473664   <stale>\n\
                    1/100                0            0   <0 member qgroups>\n";
        let qgroups = level_zero_qgroups(text);
        assert_eq!(qgroups, [5, 256, 262, 263]);
        let live: HashSet<u64> =
            "ID 256 gen 13 top level 5 path a\n".lines().filter_map(parse_subvolume_id).collect();
        let deleting: HashSet<u64> = "ID 263 gen 27 top level 0 path DELETED\n"
            .lines()
            .filter_map(parse_subvolume_id)
            .collect();
        // 263 is still being dropped, 256 lives, 5 is the top level.
        assert_eq!(stale_qgroups(qgroups, &live, &deleting), [262]);
    }

    #[test]
    fn parses_qgroup_show() {
        let text = "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n\
                    --------    ----------    ---------  --------------  -------------   ---- \n\
                    0/5              16384        16384            none           none   <toplevel>\n\
                    0/268       1049755648      1114112            none           none   c6\n";
        assert_eq!(parse_qgroup(text, 268), Some((1_049_755_648, 1_114_112)));
        assert_eq!(parse_qgroup(text, 26), None);
    }
}
