//! The ZFS backend, through the `zfs` and `zpool` commands.
//!
//! Dataset `a/b` is the filesystem `<pool>/a/b`, mounted where it inherits (`<pool mountpoint>/a/b`);
//! snapshots and clones are ZFS's own. It uses only what both kernel OpenZFS and zfs-fuse
//! (pool version 23) understand: `zfs get -Hp` for numbers (zfs-fuse's `zfs list` has no `-p`),
//! `zfs list -H -t all -o name,type,origin` for relations (zfs-fuse has no `clones` property, so
//! clones are derived from origins), and `usedbydataset + usedbysnapshots` for the bytes a
//! dataset holds alone (zfs-fuse has no `written` property).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use exec::Cmd;

use crate::{
    BackendKind, Capabilities, DatasetInfo, DatasetName, DatasetSpace, DestroyMode, Error, Listing,
    Object, PoolSpace, PoolUsage, Result, SnapshotName, ThinStorage, run_raw, run_tool,
    run_unmounting,
};

/// A user property whose only use is that setting it commits the open transaction group.
const SYNC_PROPERTY: &str = "scion:sync";
/// ZFS's limit on a full dataset or snapshot name.
const ZFS_MAX_NAME_LEN: usize = 255;

/// A ZFS pool, or a filesystem inside one, that holds Scion's datasets.
#[derive(Debug, Clone)]
pub struct Zfs {
    pool: String,
    mountpoint: PathBuf,
    /// Serialises the creation of missing parents: concurrent `zfs create -p` of one parent
    /// race to mount it, and the loser fails.
    parents: Arc<tokio::sync::Mutex<()>>,
}

impl Zfs {
    /// Opens `pool` (`tank` or `tank/scion`), which must exist and be mounted.
    pub async fn open(pool: &str) -> Result<Self> {
        // A pool name has the same safe characters as a dataset name.
        DatasetName::new(pool)?;
        let cmd = Cmd::new("zfs").args(["get", "-H", "-o", "value", "mountpoint", pool]);
        let output = run_raw(cmd).await.map_err(|error| {
            if error.is_not_found() {
                Error::Unsupported("the `zfs` command is not installed".to_owned())
            } else if error.stderr_tail().contains("zfs-fuse daemon") {
                // Checked before the generic mapping, which would read its "No such file or
                // directory" (the daemon's socket) as a missing pool.
                Error::Unsupported(format!("the zfs-fuse daemon is not running: {error}"))
            } else {
                Error::from_command(error, pool)
            }
        })?;
        let mountpoint = output.stdout_text().trim().to_owned();
        if !mountpoint.starts_with('/') {
            return Err(Error::Unsupported(format!(
                "pool {pool} has mountpoint {mountpoint:?}; it needs a path"
            )));
        }
        Ok(Zfs {
            pool: pool.to_owned(),
            mountpoint: PathBuf::from(mountpoint),
            parents: Arc::default(),
        })
    }

    /// The pool (or parent filesystem) name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    fn full(&self, name: &str) -> Result<String> {
        let full = format!("{}/{name}", self.pool);
        if full.len() > ZFS_MAX_NAME_LEN {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: format!("longer than {ZFS_MAX_NAME_LEN} bytes with the pool name"),
            });
        }
        Ok(full)
    }

    fn local<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.pool.as_str())?.strip_prefix('/')
    }

    /// Reads numeric properties with `zfs get -Hp`.
    async fn numbers(
        &self,
        full: &str,
        properties: &str,
        object: &(dyn std::fmt::Display + Sync),
    ) -> Result<HashMap<String, u64>> {
        let cmd =
            Cmd::new("zfs").args(["get", "-H", "-p", "-o", "property,value", properties, full]);
        let text = run_tool(cmd, object).await?.stdout_text();
        let values: HashMap<String, u64> = text
            .lines()
            .filter_map(|line| {
                let (property, value) = line.split_once('\t')?;
                Some((property.to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        if let Some(missing) =
            properties.split(',').find(|property| !values.contains_key(*property))
        {
            return Err(Error::Unsupported(format!("zfs property {missing} unreadable: {text}")));
        }
        Ok(values)
    }

    /// Runs a command that creates `name`; if its parent is missing, creates the parents (like
    /// `mkdir -p`) and runs it again. The common case, an existing parent, costs one command.
    async fn create_with_parents(
        &self,
        name: &DatasetName,
        make: impl Fn() -> Cmd,
    ) -> Result<exec::Output> {
        match run_raw(make()).await {
            Err(error) if error.stderr_tail().contains("parent does not exist") => {}
            other => return other.map_err(|error| Error::from_command(error, name.as_ref())),
        }
        if let Some(parent) = name.parent() {
            let _serialised = self.parents.lock().await;
            let parent_full = self.full(parent.as_str())?;
            // `create -p` succeeds when another task made the parent meanwhile.
            run_tool(Cmd::new("zfs").args(["create", "-p", &parent_full]), &parent).await?;
        }
        run_tool(make(), name).await
    }

    /// Makes the space numbers current. ZFS updates them when a transaction group commits,
    /// which zfs-fuse does only every 30 s and which `zpool sync` (absent from zfs-fuse) would
    /// force; setting a property is a sync task, so it commits the open group on both.
    async fn sync(&self, mountpoint: &std::path::Path) -> Result<()> {
        // Flush what the kernel still caches for the (FUSE) filesystem first.
        let path = mountpoint.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(dir) = std::fs::File::open(path) {
                let _ = rustix::fs::syncfs(&dir);
            }
        })
        .await;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let cmd = Cmd::new("zfs").args(["set", &format!("{SYNC_PROPERTY}={stamp}"), &self.pool]);
        run_tool(cmd, &self.pool).await?;
        Ok(())
    }

    async fn destroy(&self, object: Object, mode: DestroyMode) -> Result<()> {
        // A ZFS clone needs its origin snapshot.
        let mode = if mode == DestroyMode::KeepClones { DestroyMode::Refuse } else { mode };
        let plan = self.list().await?.plan_destroy(&object, mode)?;
        for object in plan {
            let full = self.full(&object.to_string())?;
            run_unmounting(|| Cmd::new("zfs").args(["destroy", &full]), &object).await?;
        }
        Ok(())
    }
}

/// Reads `used` and `compressratio` from `zfs get -H -p -o property,value`; the ratio prints as
/// `1.52` (OpenZFS with `-p`) or `1.52x` (zfs-fuse).
fn parse_used_and_ratio(text: &str) -> Option<(u64, f64)> {
    let (mut used, mut ratio) = (None, None);
    for line in text.lines() {
        match line.split_once('\t') {
            Some(("used", value)) => used = value.trim().parse().ok(),
            Some(("compressratio", value)) => {
                ratio = value.trim().trim_end_matches('x').parse().ok();
            }
            _ => {}
        }
    }
    Some((used?, ratio?))
}

/// Parses `zfs list -H -o name,type,origin` into (name, type, origin).
fn parse_list_line(line: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut fields = line.split('\t');
    let name = fields.next()?;
    let kind = fields.next()?;
    let origin = fields.next()?.trim();
    Some((name, kind, (origin != "-" && !origin.is_empty()).then_some(origin)))
}

impl ThinStorage for Zfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Zfs
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { thin: true, atomic_snapshots: true, independent_clones: false, quotas: true }
    }

    fn mountpoint(&self, name: &DatasetName) -> PathBuf {
        self.mountpoint.join(name.as_str())
    }

    async fn create_dataset(&self, name: &DatasetName) -> Result<PathBuf> {
        let full = self.full(name.as_str())?;
        // Not `create -p` for the dataset itself: it succeeds when the dataset exists.
        self.create_with_parents(name, || Cmd::new("zfs").args(["create", &full])).await?;
        Ok(self.mountpoint(name))
    }

    async fn destroy_dataset(&self, name: &DatasetName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Dataset(name.clone()), mode).await
    }

    async fn snapshot(&self, name: &SnapshotName) -> Result<()> {
        let full = self.full(&name.to_string())?;
        match run_tool(Cmd::new("zfs").args(["snapshot", &full]), name).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound(_)) => Err(Error::NotFound(name.dataset().to_string())),
            Err(error) => Err(error),
        }
    }

    async fn destroy_snapshot(&self, name: &SnapshotName, mode: DestroyMode) -> Result<()> {
        self.destroy(Object::Snapshot(name.clone()), mode).await
    }

    async fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<PathBuf> {
        let source = self.full(&snapshot.to_string())?;
        let full = self.full(target.as_str())?;
        // Not `clone -p`: zfs-fuse then succeeds when the target exists.
        let make = || Cmd::new("zfs").args(["clone", &source, &full]);
        match self.create_with_parents(target, make).await {
            Ok(_) => Ok(self.mountpoint(target)),
            Err(Error::NotFound(_)) => Err(Error::NotFound(snapshot.to_string())),
            Err(error) => Err(error),
        }
    }

    async fn list(&self) -> Result<Listing> {
        let cmd = Cmd::new("zfs").args([
            "list",
            "-H",
            "-r",
            "-t",
            "all",
            "-o",
            "name,type,origin",
            &self.pool,
        ]);
        let text = run_tool(cmd, &self.pool).await?.stdout_text();
        let mut datasets = Vec::new();
        let mut snapshots = Vec::new();
        for (full, kind, origin) in text.lines().filter_map(parse_list_line) {
            let Some(local) = self.local(full) else { continue };
            match kind {
                "snapshot" => snapshots.extend(local.parse::<SnapshotName>().ok()),
                "filesystem" => {
                    let Ok(name) = local.parse::<DatasetName>() else { continue };
                    let origin = origin
                        .and_then(|origin| self.local(origin))
                        .and_then(|origin| origin.parse().ok());
                    datasets.push(DatasetInfo { mountpoint: self.mountpoint(&name), name, origin });
                }
                // Volumes are not datasets Scion makes.
                _ => {}
            }
        }
        Ok(Listing::new(datasets, snapshots))
    }

    async fn pool_space(&self) -> Result<PoolSpace> {
        self.sync(&self.mountpoint).await?;
        let values = self.numbers(&self.pool, "used,available", &self.pool).await?;
        let (used, free) = (values["used"], values["available"]);
        Ok(PoolSpace { total: used + free, free, used })
    }

    fn pool_space_now(&self) -> Result<PoolSpace> {
        // The root dataset's statvfs: the pool's available space, without running `zfs`.
        crate::statvfs_space(&self.mountpoint)
    }

    async fn settle_freed_space(&self) -> Result<()> {
        self.sync(&self.mountpoint).await
    }

    async fn dataset_space(&self, name: &DatasetName) -> Result<DatasetSpace> {
        let full = self.full(name.as_str())?;
        self.sync(&self.mountpoint(name)).await?;
        let values = self.numbers(&full, "usedbydataset,usedbysnapshots,referenced", name).await?;
        Ok(DatasetSpace {
            written: values["usedbydataset"] + values["usedbysnapshots"],
            referenced: values["referenced"],
        })
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        self.sync(&self.mountpoint).await?;
        // A dataset's usedbysnapshots counts its own snapshots only: the pool's is the sum
        // over its datasets (snapshots print `-`, which is left out).
        let cmd = Cmd::new("zfs").args([
            "get",
            "-H",
            "-p",
            "-r",
            "-o",
            "value",
            "usedbysnapshots",
            &self.pool,
        ]);
        let text = run_tool(cmd, &self.pool).await?.stdout_text();
        let used_by_snapshots =
            text.lines().filter_map(|line| line.trim().parse::<u64>().ok()).sum();
        let cmd = Cmd::new("zfs").args([
            "get",
            "-H",
            "-p",
            "-o",
            "property,value",
            "used,compressratio",
            &self.pool,
        ]);
        let text = run_tool(cmd, &self.pool).await?.stdout_text();
        let (used, compress_ratio) = parse_used_and_ratio(&text).ok_or_else(|| {
            Error::Unsupported(format!("unexpected `zfs get used,compressratio` output: {text}"))
        })?;
        // zfs-fuse has no `logicalused`: there it is what is used times the ratio, which is
        // how ZFS defines the ratio.
        let cmd =
            Cmd::new("zfs").args(["get", "-H", "-p", "-o", "value", "logicalused", &self.pool]);
        let logical_used = match run_raw(cmd).await {
            Ok(output) => output.stdout_text().trim().parse().ok(),
            Err(_) => None,
        }
        .unwrap_or((used as f64 * compress_ratio) as u64);
        Ok(PoolUsage {
            used_by_snapshots,
            logical_used: Some(logical_used),
            compress_ratio: Some(compress_ratio),
        })
    }

    async fn set_quota(&self, name: &DatasetName, bytes: u64) -> Result<()> {
        let full = self.full(name.as_str())?;
        let cmd = Cmd::new("zfs").args(["set", &format!("refquota={bytes}"), &full]);
        run_tool(cmd, name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_lines() {
        assert_eq!(
            parse_list_line("p/cl1\tfilesystem\tp/a/b/c@s1"),
            Some(("p/cl1", "filesystem", Some("p/a/b/c@s1")))
        );
        assert_eq!(parse_list_line("p/a@s1\tsnapshot\t-"), Some(("p/a@s1", "snapshot", None)));
        assert_eq!(parse_list_line("p"), None);
    }

    #[test]
    fn parses_used_and_compression_ratio() {
        assert_eq!(parse_used_and_ratio("used\t1024\ncompressratio\t1.52x\n"), Some((1024, 1.52)));
        assert_eq!(parse_used_and_ratio("compressratio\t2.00\nused\t7\n"), Some((7, 2.0)));
        assert_eq!(parse_used_and_ratio("used\t7\n"), None);
    }
}
