//! Blocking file-tree work: copying a tree with per-file reflinks or full copies (the dir
//! backend), and measuring what a tree holds alone (dir, and btrfs without quota).
//!
//! Copies keep what Postgres checks: modes, owners (a data directory must be its owner's,
//! 0700), symlinks (`pg_wal` may be one) and times. Hard links become separate files, and
//! sockets are left out; a Postgres data directory holds neither.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use rustix::io::Errno;

/// Copies the directory `source` to `target` (which must not exist), reflinking each file when
/// `reflink` is set and the filesystem agrees, else copying its bytes. Top-level entries for
/// which `skip` returns true are left out.
pub(crate) fn copy_tree(
    source: &Path,
    target: &Path,
    reflink: bool,
    skip: &dyn Fn(&std::ffi::OsStr) -> bool,
) -> io::Result<()> {
    fs::create_dir(target)?;
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        if !skip(&entry.file_name()) {
            copy_entry(&entry.path(), &target.join(entry.file_name()), reflink)?;
        }
    }
    copy_attributes(&fs::symlink_metadata(source)?, target)
}

fn copy_entry(source: &Path, target: &Path, reflink: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(source)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return copy_tree(source, target, reflink, &|_| false);
    }
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(source)?, target)?;
    } else if kind.is_file() {
        copy_file(source, target, reflink)?;
    } else if std::os::unix::fs::FileTypeExt::is_socket(&kind) {
        return Ok(());
    } else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot copy special file {}", source.display()),
        ));
    }
    copy_attributes(&meta, target)
}

fn copy_file(source: &Path, target: &Path, reflink: bool) -> io::Result<()> {
    let from = File::open(source)?;
    let to = OpenOptions::new().write(true).create_new(true).mode(0o600).open(target)?;
    if reflink {
        match rustix::fs::ioctl_ficlone(&to, &from) {
            Ok(()) => return Ok(()),
            // Not this filesystem, another filesystem, or a file it cannot share: copy instead.
            Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    io::copy(&mut &from, &mut &to)?;
    Ok(())
}

/// Gives `target` the owner, mode and times of `meta`, without following a symlink.
fn copy_attributes(meta: &fs::Metadata, target: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(target, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        // After chown, which clears set-id bits.
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode()))?;
    }
    let times = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
    };
    rustix::fs::utimensat(CWD, target, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// What a tree holds: bytes allocated, and bytes allocated in extents no other file shares.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TreeUsage {
    pub(crate) allocated: u64,
    pub(crate) exclusive: u64,
}

/// Sums what the files under `root` hold, leaving out top-level entries for which `skip` is
/// true. `extents` asks FIEMAP which extents are shared; without it every byte is exclusive.
pub(crate) fn usage(
    root: &Path,
    extents: bool,
    skip: &dyn Fn(&std::ffi::OsStr) -> bool,
) -> io::Result<TreeUsage> {
    let mut total = TreeUsage::default();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if skip(&entry.file_name()) {
            continue;
        }
        let meta = entry.metadata()?;
        let usage = if meta.is_dir() {
            usage(&entry.path(), extents, &|_| false)?
        } else {
            let allocated = meta.blocks() * 512;
            let exclusive = if extents && meta.is_file() {
                fiemap::exclusive_bytes(&File::open(entry.path())?)?
            } else {
                allocated
            };
            TreeUsage { allocated, exclusive }
        };
        total.allocated += usage.allocated;
        total.exclusive += usage.exclusive;
    }
    Ok(total)
}

mod fiemap {
    //! The FS_IOC_FIEMAP ioctl, which rustix does not wrap: it tells which extents of a file
    //! are shared with other files (reflinks).

    use std::fs::File;
    use std::io;

    use rustix::ioctl::{Opcode, Updater, ioctl, opcode};

    const EXTENTS: usize = 64;
    const FLAG_SYNC: u32 = 0x1;
    const EXTENT_LAST: u32 = 0x1;
    const EXTENT_SHARED: u32 = 0x2000;
    /// `_IOWR('f', 11, struct fiemap)`; the kernel's struct without extents is 32 bytes.
    const FS_IOC_FIEMAP: Opcode = opcode::read_write::<[u8; 32]>(b'f', 11);

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        _physical: u64,
        length: u64,
        _reserved64: [u64; 2],
        flags: u32,
        _reserved: [u32; 3],
    }

    #[repr(C)]
    struct Request {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        _reserved: u32,
        extents: [Extent; EXTENTS],
    }

    /// Bytes of `file` in extents that no other file shares.
    pub(super) fn exclusive_bytes(file: &File) -> io::Result<u64> {
        let mut exclusive = 0;
        let mut start = 0;
        loop {
            let mut request = Request {
                start,
                length: u64::MAX - start,
                flags: FLAG_SYNC,
                mapped_extents: 0,
                extent_count: EXTENTS as u32,
                _reserved: 0,
                extents: [Extent::default(); EXTENTS],
            };
            #[allow(unsafe_code, reason = "rustix has no safe FIEMAP wrapper")]
            // SAFETY: `Request` has the layout of the kernel's `struct fiemap` followed by
            // `extent_count` `struct fiemap_extent`s, so the kernel writes only inside it.
            unsafe {
                ioctl(file, Updater::<FS_IOC_FIEMAP, Request>::new(&mut request))?;
            }
            let mapped = (request.mapped_extents as usize).min(EXTENTS);
            if mapped == 0 {
                return Ok(exclusive);
            }
            for extent in &request.extents[..mapped] {
                if extent.flags & EXTENT_SHARED == 0 {
                    exclusive += extent.length;
                }
                if extent.flags & EXTENT_LAST != 0 {
                    return Ok(exclusive);
                }
            }
            let last = request.extents[mapped - 1];
            start = last.logical + last.length;
        }
    }
}
