//! The btrfs backend: datasets are subvolumes, snapshots read-only subvolumes, clones writable
//! snapshots of those.
//!
//! Layout under the pool root: dataset `a/b` is the subvolume `<root>/a/b` (its parent `a` is a
//! subvolume too), snapshot `a/b@s1` is the read-only subvolume `<root>/.snapshots/a/b@s1`.
//! Dataset names cannot start with `.`, so `.snapshots` never collides with one. Relations come
//! from subvolume UUIDs: a clone's parent UUID is its snapshot's UUID. btrfs itself lets a
//! snapshot be deleted under its clones; the dependency rules are enforced here from the listing.
//! Per-dataset space comes from FIEMAP's shared-extent flags by default, or from qgroups when
//! asked for; quota slows every snapshot and clone down.

use std::path::{Path, PathBuf};

use exec::Cmd;
use tokio::fs;

use crate::{
    BackendKind, Capabilities, DatasetInfo, DatasetName, DatasetSpace, DestroyMode, Error, Listing,
    Object, PoolSpace, Result, SnapshotName, ThinStorage, blocking, run_tool, statvfs_space, tree,
};

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
    /// The root's path relative to the filesystem's top level, with a trailing `/` (empty at
    /// the top level): `btrfs subvolume list` prints paths from the top level.
    top_prefix: String,
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
        let pool = Btrfs { root, accounting, top_prefix };
        if accounting == SpaceAccounting::Qgroups {
            pool.enable_quota().await?;
        }
        let snapshots = pool.root.join(SNAPSHOT_DIR);
        fs::create_dir_all(&snapshots)
            .await
            .map_err(|source| Error::io("create snapshot directory", &snapshots, source))?;
        Ok(pool)
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
    async fn create_parents(&self, name: &DatasetName) -> Result<()> {
        for ancestor in name.ancestors() {
            let path = self.dataset_path(&ancestor);
            if is_subvolume(&path).await {
                continue;
            }
            match self.create_subvolume(&ancestor).await {
                // Another task created it first: fine, as long as it is a subvolume.
                Err(Error::AlreadyExists(_)) if is_subvolume(&path).await => {}
                other => other?,
            }
        }
        Ok(())
    }

    async fn create_subvolume(&self, name: &DatasetName) -> Result<()> {
        let path = self.dataset_path(name);
        if fs::symlink_metadata(&path).await.is_ok() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        run_tool(Cmd::new("btrfs").args(["subvolume", "create"]).arg(&path), name).await?;
        Ok(())
    }

    async fn delete_subvolume(&self, path: &Path, object: &Object) -> Result<()> {
        run_tool(Cmd::new("btrfs").args(["subvolume", "delete"]).arg(path), object).await?;
        Ok(())
    }

    async fn destroy(&self, object: Object, mode: DestroyMode) -> Result<()> {
        let plan = self.list().await?.plan_destroy(&object, mode)?;
        for object in plan {
            match &object {
                Object::Dataset(name) => {
                    self.delete_subvolume(&self.dataset_path(name), &object).await?;
                }
                Object::Snapshot(name) => {
                    self.delete_subvolume(&self.snapshot_path(name), &object).await?;
                    self.prune_snapshot_dirs(name).await;
                }
            }
        }
        Ok(())
    }

    /// Removes the directories under `.snapshots` that held only this snapshot.
    async fn prune_snapshot_dirs(&self, name: &SnapshotName) {
        let base = self.root.join(SNAPSHOT_DIR);
        let mut dir = self.snapshot_path(name).parent().map(Path::to_path_buf);
        while let Some(path) = dir {
            // remove_dir fails on a non-empty directory, which is where pruning stops.
            if path == base || fs::remove_dir(&path).await.is_err() {
                break;
            }
            dir = path.parent().map(Path::to_path_buf);
        }
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
        Capabilities { thin: true, atomic_snapshots: true }
    }

    fn mountpoint(&self, name: &DatasetName) -> PathBuf {
        self.dataset_path(name)
    }

    async fn create_dataset(&self, name: &DatasetName) -> Result<PathBuf> {
        self.create_parents(name).await?;
        self.create_subvolume(name).await?;
        Ok(self.dataset_path(name))
    }

    async fn destroy_dataset(&self, name: &DatasetName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Dataset(name.clone()), mode).await
    }

    async fn snapshot(&self, name: &SnapshotName) -> Result<()> {
        let source = self.dataset_path(name.dataset());
        if !is_subvolume(&source).await {
            return Err(Error::NotFound(name.dataset().to_string()));
        }
        let target = self.snapshot_path(name);
        if fs::symlink_metadata(&target).await.is_ok() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .await
                .map_err(|source| Error::io("create snapshot directory", parent, source))?;
        }
        let cmd = Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&source).arg(&target);
        run_tool(cmd, name).await?;
        Ok(())
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
        if !is_subvolume(&source).await {
            return Err(Error::NotFound(snapshot.to_string()));
        }
        let path = self.dataset_path(target);
        if fs::symlink_metadata(&path).await.is_ok() {
            return Err(Error::AlreadyExists(target.to_string()));
        }
        self.create_parents(target).await?;
        let cmd = Cmd::new("btrfs").args(["subvolume", "snapshot"]).arg(&source).arg(&path);
        match run_tool(cmd, target).await {
            Ok(_) => Ok(path),
            Err(Error::NotFound(_)) => Err(Error::NotFound(snapshot.to_string())),
            Err(error) => Err(error),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn parses_qgroup_show() {
        let text = "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n\
                    --------    ----------    ---------  --------------  -------------   ---- \n\
                    0/5              16384        16384            none           none   <toplevel>\n\
                    0/268       1049755648      1114112            none           none   c6\n";
        assert_eq!(parse_qgroup(text, 268), Some((1_049_755_648, 1_114_112)));
        assert_eq!(parse_qgroup(text, 26), None);
    }
}
