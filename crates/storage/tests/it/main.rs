//! Integration tests of the storage crate on real filesystems: btrfs and XFS/ext4 on loop
//! devices, ZFS on zfs-fuse. They run as root and clean up every image they make.

mod conformance;
mod pools;
mod provision;
