//! Pools on image files: the embedded default (a sparse btrfs image under the state directory),
//! ZFS pools on a file vdev, and XFS/ext4 images for the dir backend (used by the tests).
//!
//! Every step is idempotent: [`ImagePool::ensure`] creates what is missing and attaches what is
//! detached (after a reboot the image exists but is neither mounted nor imported), and
//! [`ImagePool::teardown`] detaches what is attached.

use std::path::{Path, PathBuf};

use exec::Cmd;
use tokio::fs;

use crate::{BackendConfig, Error, Result, run_tool, run_unmounting};

/// What goes inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFs {
    /// btrfs, for the btrfs backend.
    Btrfs,
    /// XFS with reflink, for a thin dir backend.
    Xfs,
    /// ext4, for a dir backend that copies.
    Ext4,
    /// A ZFS pool of this name with the image as its only vdev.
    Zfs {
        /// The pool name.
        pool: String,
    },
}

/// A pool that lives in an image file.
#[derive(Debug, Clone)]
pub struct ImagePool {
    /// The image file (an absolute path; ZFS needs one).
    pub image: PathBuf,
    /// Its size in bytes when created; the file is sparse, so this is a ceiling, not a cost.
    pub size: u64,
    /// What it holds.
    pub fs: ImageFs,
    /// Where it is mounted (for ZFS, the pool's mountpoint).
    pub mountpoint: PathBuf,
    /// Whether a btrfs image asks the disk to flush at every transaction commit (its default).
    /// Without the flushes (`nobarrier`) a snapshot or clone no longer waits for the image file
    /// to reach the disk, several times faster on a loop device, but a host crash or power loss
    /// can leave the filesystem corrupt. Ignored for other filesystems.
    pub flush: bool,
}

impl ImagePool {
    /// Describes a pool; nothing happens until [`ImagePool::ensure`].
    pub fn new(
        image: impl Into<PathBuf>,
        size: u64,
        fs: ImageFs,
        mountpoint: impl Into<PathBuf>,
    ) -> Self {
        ImagePool { image: image.into(), size, fs, mountpoint: mountpoint.into(), flush: true }
    }

    /// The same pool with btrfs commit flushes on or off (see [`ImagePool::flush`]).
    pub fn with_flush(self, flush: bool) -> Self {
        ImagePool { flush, ..self }
    }

    /// The mount options that carry [`ImagePool::flush`].
    fn flush_option(&self) -> Option<&'static str> {
        match self.fs {
            ImageFs::Btrfs => Some(if self.flush { "barrier" } else { "nobarrier" }),
            ImageFs::Xfs | ImageFs::Ext4 | ImageFs::Zfs { .. } => None,
        }
    }

    /// The backend configuration that opens this pool.
    pub fn backend_config(&self) -> BackendConfig {
        match &self.fs {
            ImageFs::Btrfs => BackendConfig::Btrfs { root: self.mountpoint.clone(), quota: false },
            ImageFs::Xfs | ImageFs::Ext4 => BackendConfig::Dir { root: self.mountpoint.clone() },
            ImageFs::Zfs { pool } => BackendConfig::Zfs { pool: pool.clone() },
        }
    }

    /// Creates the image and its filesystem if the image does not exist, then makes sure it is
    /// mounted (or, for ZFS, imported).
    pub async fn ensure(&self) -> Result<()> {
        if !self.image.is_absolute() {
            return Err(Error::Unsupported(format!(
                "image path {} must be absolute",
                self.image.display()
            )));
        }
        if fs::try_exists(&self.image).await.unwrap_or(false) {
            // An image made before images were created private.
            make_private(&self.image).await?;
        } else if let Err(error) = self.create().await {
            // A half-made image would be taken for a finished one next time.
            if !self.is_attached().await.unwrap_or(false) {
                let _ = fs::remove_file(&self.image).await;
            }
            return Err(error);
        }
        self.attach().await
    }

    async fn create(&self) -> Result<()> {
        if let Some(parent) = self.image.parent() {
            fs::create_dir_all(parent)
                .await
                .map_err(|source| Error::io("create image directory", parent, source))?;
        }
        // The image holds every clone's data: only its owner may read it.
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.image)
            .await
            .map_err(|source| Error::io("create image", &self.image, source))?;
        file.set_len(self.size)
            .await
            .map_err(|source| Error::io("size image", &self.image, source))?;
        drop(file);
        let image = self.image.display();
        let cmd = match &self.fs {
            ImageFs::Btrfs => Cmd::new("mkfs.btrfs").arg("-q").arg(&self.image),
            ImageFs::Xfs => Cmd::new("mkfs.xfs").args(["-q", "-m", "reflink=1"]).arg(&self.image),
            ImageFs::Ext4 => Cmd::new("mkfs.ext4").args(["-q", "-F"]).arg(&self.image),
            ImageFs::Zfs { pool } => Cmd::new("zpool")
                .args(["create", "-m"])
                .arg(&self.mountpoint)
                .arg(pool)
                .arg(&self.image),
        };
        run_tool(cmd, &image).await?;
        Ok(())
    }

    /// True when the pool is mounted (or imported).
    pub async fn is_attached(&self) -> Result<bool> {
        match &self.fs {
            ImageFs::Zfs { pool } => {
                let cmd = Cmd::new("zpool").args(["list", "-H", "-o", "name", pool]);
                Ok(cmd.output().await.is_ok())
            }
            ImageFs::Btrfs | ImageFs::Xfs | ImageFs::Ext4 => is_mount_point(&self.mountpoint).await,
        }
    }

    async fn attach(&self) -> Result<()> {
        if self.is_attached().await? {
            // Mounted before (an engine restart): the flush setting may have changed since.
            if let Some(option) = self.flush_option() {
                let cmd = Cmd::new("mount")
                    .args(["-o", &format!("remount,{option}")])
                    .arg(&self.mountpoint);
                run_tool(cmd, &self.image.display()).await?;
            }
            return Ok(());
        }
        let image = self.image.display();
        match &self.fs {
            ImageFs::Zfs { pool } => {
                let dir = self.image.parent().unwrap_or(Path::new("/"));
                let cmd = Cmd::new("zpool").args(["import", "-d"]).arg(dir).arg(pool);
                run_tool(cmd, &image).await?;
            }
            ImageFs::Btrfs | ImageFs::Xfs | ImageFs::Ext4 => {
                fs::create_dir_all(&self.mountpoint)
                    .await
                    .map_err(|source| Error::io("create mountpoint", &self.mountpoint, source))?;
                let options = match self.flush_option() {
                    Some(option) => format!("loop,{option}"),
                    None => "loop".to_owned(),
                };
                let cmd =
                    Cmd::new("mount").args(["-o", &options]).arg(&self.image).arg(&self.mountpoint);
                run_tool(cmd, &image).await?;
            }
        }
        Ok(())
    }

    /// Unmounts (or exports) the pool if attached; with `delete_image`, destroys it for good.
    pub async fn teardown(&self, delete_image: bool) -> Result<()> {
        let image = self.image.display();
        match &self.fs {
            ImageFs::Zfs { pool } => {
                if self.is_attached().await? {
                    let verb = if delete_image { "destroy" } else { "export" };
                    run_unmounting(|| Cmd::new("zpool").args([verb, "-f", pool]), &image).await?;
                }
            }
            ImageFs::Btrfs | ImageFs::Xfs | ImageFs::Ext4 => {
                if is_mount_point(&self.mountpoint).await? {
                    run_unmounting(|| Cmd::new("umount").arg(&self.mountpoint), &image).await?;
                }
                self.detach_loops().await?;
            }
        }
        if delete_image {
            match fs::remove_file(&self.image).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove image", &self.image, error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Detaches loop devices still bound to the image (`mount -o loop` sets autoclear, but a
    /// mount that failed half-way may leave one behind).
    async fn detach_loops(&self) -> Result<()> {
        if !fs::try_exists(&self.image).await.unwrap_or(false) {
            return Ok(());
        }
        let image = self.image.display();
        let listed = run_tool(Cmd::new("losetup").arg("-j").arg(&self.image), &image).await?;
        for line in listed.stdout_text().lines() {
            if let Some((device, _)) = line.split_once(':') {
                run_tool(Cmd::new("losetup").args(["-d", device]), &image).await?;
            }
        }
        Ok(())
    }
}

/// True when `path` is a mount point, according to /proc/self/mountinfo.
/// Takes every permission from group and others off `path`, if it has any.
async fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .await
        .map_err(|source| Error::io("read image metadata", path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .await
            .map_err(|source| Error::io("make image private", path, source))?;
    }
    Ok(())
}

async fn is_mount_point(path: &Path) -> Result<bool> {
    let Ok(path) = fs::canonicalize(path).await else { return Ok(false) };
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(mountinfo)
        .await
        .map_err(|source| Error::io("read", mountinfo, source))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(&unescape_mountinfo(mount_point)) == path))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 4).filter(|_| bytes[index] == b'\\');
        match escaped
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\x"), r"/odd\x");
    }
}
