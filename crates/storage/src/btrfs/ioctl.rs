//! The btrfs subvolume ioctls the backend's hot paths use (create, snapshot, delete), called
//! directly: starting the `btrfs` program costs more than the operation itself.
//!
//! The argument structs reproduce `include/uapi/linux/btrfs.h`; compile-time checks pin their
//! sizes and field offsets, and a unit test pins the opcodes to the values the header yields.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::{Errno, Result};
use rustix::ioctl::{Opcode, Setter, opcode};

/// `BTRFS_IOCTL_MAGIC`.
const MAGIC: u8 = 0x94;
/// `BTRFS_PATH_NAME_MAX`: the name field of `btrfs_ioctl_vol_args` holds this plus a NUL.
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_NAME_MAX`: the name field of `btrfs_ioctl_vol_args_v2` holds this plus a NUL.
const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_SUBVOL_RDONLY`: the new snapshot is read-only.
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args`, the argument of `BTRFS_IOC_SNAP_DESTROY`.
#[repr(C)]
struct VolArgs {
    /// `__s64 fd`: unused by SNAP_DESTROY.
    fd: i64,
    /// `char name[BTRFS_PATH_NAME_MAX + 1]`, NUL-terminated.
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2`, the argument of `BTRFS_IOC_SUBVOL_CREATE_V2` and
/// `BTRFS_IOC_SNAP_CREATE_V2`.
#[repr(C)]
struct VolArgsV2 {
    /// `__s64 fd`: the source subvolume of a snapshot; unused when creating a subvolume.
    fd: i64,
    /// `__u64 transid`: an output of the long-gone async variant; the kernel ignores it.
    transid: u64,
    /// `__u64 flags`: `BTRFS_SUBVOL_*`.
    flags: u64,
    /// The union of `{ __u64 size; struct btrfs_qgroup_inherit *qgroup_inherit; }` and
    /// `__u64 unused[4]`. Read only with `BTRFS_SUBVOL_QGROUP_INHERIT`, which is never set
    /// here, so it stays zero and no pointer is ever handed to the kernel through it.
    qgroup_inherit: [u64; 4],
    /// The union of `char name[BTRFS_SUBVOL_NAME_MAX + 1]`, `__u64 devid` and
    /// `__u64 subvolid`: here always the NUL-terminated name.
    name: [u8; SUBVOL_NAME_MAX + 1],
}

// The layouts the header gives: both structs are exactly 4096 bytes, 8-byte aligned (the
// opcodes encode the size, so a wrong size would also make the kernel reject the call).
const _: () = {
    assert!(size_of::<VolArgs>() == 4096);
    assert!(align_of::<VolArgs>() == 8);
    assert!(std::mem::offset_of!(VolArgs, name) == 8);
    assert!(size_of::<VolArgsV2>() == 4096);
    assert!(align_of::<VolArgsV2>() == 8);
    assert!(std::mem::offset_of!(VolArgsV2, flags) == 16);
    assert!(std::mem::offset_of!(VolArgsV2, qgroup_inherit) == 24);
    assert!(std::mem::offset_of!(VolArgsV2, name) == 56);
};

/// `_IOW(BTRFS_IOCTL_MAGIC, 15, struct btrfs_ioctl_vol_args)`. The v1 call (not
/// `SNAP_DESTROY_V2`, kernel 5.7+) because deleting by name is all this needs, on any kernel.
const SNAP_DESTROY: Opcode = opcode::write::<VolArgs>(MAGIC, 15);
/// `_IOW(BTRFS_IOCTL_MAGIC, 23, struct btrfs_ioctl_vol_args_v2)`.
const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 23);
/// `_IOW(BTRFS_IOCTL_MAGIC, 24, struct btrfs_ioctl_vol_args_v2)`.
const SUBVOL_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 24);

/// Copies `name` into a NUL-terminated name field of `N` bytes. The kernel itself rejects
/// `.`, `..` and names with a `/`; an empty name or one with a NUL would be silently cut, so
/// those are refused here.
fn name_field<const N: usize>(name: &OsStr) -> Result<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.len() >= N {
        return Err(Errno::NAMETOOLONG);
    }
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Errno::INVAL);
    }
    let mut field = [0; N];
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

fn vol_args_v2(fd: i64, flags: u64, name: &OsStr) -> Result<VolArgsV2> {
    Ok(VolArgsV2 { fd, transid: 0, flags, qgroup_inherit: [0; 4], name: name_field(name)? })
}

/// Creates the empty subvolume `name` in the directory `parent`.
#[allow(unsafe_code, reason = "the btrfs ioctls have no safe wrapper; see the SAFETY comment")]
pub(super) fn create_subvolume(parent: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    let args = vol_args_v2(0, 0, name)?;
    // SAFETY: SUBVOL_CREATE_V2 is `_IOW` of `struct btrfs_ioctl_vol_args_v2`, which `VolArgsV2`
    // reproduces (layout checked at compile time above). The kernel only reads the struct;
    // `flags` is 0, so it reads neither `fd` nor the qgroup-inherit pointer, and `name` is
    // NUL-terminated within its field. The `Setter` owns `args` for the whole call.
    unsafe { rustix::ioctl::ioctl(parent, Setter::<SUBVOL_CREATE_V2, VolArgsV2>::new(args)) }
}

/// Creates `name` in the directory `parent` as a snapshot of the subvolume `source`,
/// read-only or writable.
#[allow(unsafe_code, reason = "the btrfs ioctls have no safe wrapper; see the SAFETY comment")]
pub(super) fn snapshot(
    source: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &OsStr,
    read_only: bool,
) -> Result<()> {
    let flags = if read_only { SUBVOL_RDONLY } else { 0 };
    let args = vol_args_v2(i64::from(source.as_raw_fd()), flags, name)?;
    // SAFETY: SNAP_CREATE_V2 is `_IOW` of `struct btrfs_ioctl_vol_args_v2`, which `VolArgsV2`
    // reproduces (layout checked at compile time above). The kernel only reads the struct.
    // `fd` is `source`, borrowed, so it stays open for the whole call; `flags` holds at most
    // BTRFS_SUBVOL_RDONLY, so the qgroup-inherit pointer is never read; `name` is
    // NUL-terminated within its field.
    unsafe { rustix::ioctl::ioctl(parent, Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args)) }
}

/// Deletes the subvolume (or snapshot) `name` in the directory `parent`. Fails with
/// `ENOTEMPTY` while it holds nested subvolumes.
#[allow(unsafe_code, reason = "the btrfs ioctls have no safe wrapper; see the SAFETY comment")]
pub(super) fn destroy_subvolume(parent: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    let args = VolArgs { fd: 0, name: name_field(name)? };
    // SAFETY: SNAP_DESTROY is `_IOW` of `struct btrfs_ioctl_vol_args`, which `VolArgs`
    // reproduces (layout checked at compile time above). The kernel only reads the struct,
    // and of it only `name`, which is NUL-terminated within its field.
    unsafe { rustix::ioctl::ioctl(parent, Setter::<SNAP_DESTROY, VolArgs>::new(args)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_the_kernel_header() {
        // The values `_IOW(0x94, n, <4096-byte struct>)` expands to on Linux (x86, arm, riscv):
        // direction write (1) << 30 | size 4096 << 16 | magic 0x94 << 8 | n.
        assert_eq!(SNAP_DESTROY, 0x5000_940f);
        assert_eq!(SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(SUBVOL_CREATE_V2, 0x5000_9418);
    }

    #[test]
    fn names_are_nul_terminated_within_the_field() {
        let field: [u8; 8] = name_field(OsStr::new("c1@s")).unwrap();
        assert_eq!(&field, b"c1@s\0\0\0\0");
        assert_eq!(name_field::<8>(OsStr::new("1234567")).unwrap()[7], 0);
        assert_eq!(name_field::<8>(OsStr::new("12345678")), Err(Errno::NAMETOOLONG));
        assert_eq!(name_field::<8>(OsStr::new("")), Err(Errno::INVAL));
        assert_eq!(name_field::<8>(OsStr::from_bytes(b"a\0b")), Err(Errno::INVAL));
    }
}
