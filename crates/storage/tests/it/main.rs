//! Integration tests of the storage crate on real filesystems: btrfs and XFS/ext4 on loop
//! devices, ZFS on zfs-fuse. They run as root and clean up every image they make.

#![allow(clippy::unwrap_used, reason = "helpers shared by tests panic on failure, as tests do")]
#![allow(clippy::print_stderr, reason = "a teardown failure in a Drop can only be reported")]

mod btrfs;
mod conformance;
mod pools;
mod provision;
