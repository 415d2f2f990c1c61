//! Test pools: each test gets its own image file in a temp dir, formatted for one of the four
//! environments, and a guard that tears it down (also when the test panics).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use storage::provision::{ImageFs, ImagePool};
use storage::{BackendConfig, StorageBackend, ThinStorage};

pub(crate) const MIB: u64 = 1024 * 1024;

/// The four environments the conformance suite runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Env {
    /// btrfs on a loop device, space measured with FIEMAP (the default).
    Btrfs,
    /// btrfs on a loop device, space measured with quota groups.
    BtrfsQuota,
    /// ZFS on zfs-fuse, with the image as file vdev.
    Zfs,
    /// The dir backend on a loop-mounted XFS with reflink.
    DirXfs,
    /// The dir backend on a loop-mounted ext4 (full copies).
    DirExt4,
}

impl Env {
    /// The smallest image each filesystem accepts, rounded up.
    fn min_size(self) -> u64 {
        match self {
            Env::Btrfs | Env::BtrfsQuota => 256 * MIB,
            Env::Zfs => 128 * MIB,
            Env::DirXfs => 320 * MIB,
            Env::DirExt4 => 64 * MIB,
        }
    }
}

/// A pool on its own image, destroyed on drop.
pub(crate) struct TestPool {
    pub(crate) backend: StorageBackend,
    image: ImagePool,
    _dir: tempfile::TempDir,
}

fn unique_zfs_pool() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("scion_it_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Fails the test with a clear message when the zfs-fuse daemon is not running.
async fn require_zfs_daemon() {
    let probe = exec::Cmd::new("zpool").arg("list").output().await;
    if let Err(error) = probe {
        panic!(
            "ZFS tests need a running zfs-fuse daemon (start it with `zfs-fuse`; scripts/test does): {error}"
        );
    }
}

impl TestPool {
    /// A pool of the smallest size the environment allows.
    pub(crate) async fn new(env: Env) -> TestPool {
        TestPool::with_size(env, env.min_size()).await
    }

    /// A pool whose image is `size` bytes (at least the environment's minimum).
    pub(crate) async fn with_size(env: Env, size: u64) -> TestPool {
        let dir = tempfile::Builder::new().prefix("scion-storage-it-").tempdir().unwrap();
        let image_path = dir.path().join("pool.img");
        let mountpoint = dir.path().join("mnt");
        let fs = match env {
            Env::Btrfs | Env::BtrfsQuota => ImageFs::Btrfs,
            Env::Zfs => {
                require_zfs_daemon().await;
                ImageFs::Zfs { pool: unique_zfs_pool() }
            }
            Env::DirXfs => ImageFs::Xfs,
            Env::DirExt4 => ImageFs::Ext4,
        };
        let image = ImagePool::new(image_path, size.max(env.min_size()), fs, mountpoint);
        if let Err(error) = image.ensure().await {
            teardown_now(image);
            panic!("provision a {env:?} pool: {error}");
        }
        let config = match (env, image.backend_config()) {
            (Env::BtrfsQuota, BackendConfig::Btrfs { root, .. }) => {
                BackendConfig::Btrfs { root, quota: true }
            }
            (_, config) => config,
        };
        let backend = match StorageBackend::open(&config).await {
            Ok(backend) => backend,
            Err(error) => {
                teardown_now(image);
                panic!("open a {env:?} pool: {error}");
            }
        };
        let pool = TestPool { backend, image, _dir: dir };
        let expected = match env {
            Env::Btrfs | Env::BtrfsQuota => storage::BackendKind::Btrfs,
            Env::Zfs => storage::BackendKind::Zfs,
            Env::DirXfs | Env::DirExt4 => storage::BackendKind::Dir,
        };
        assert_eq!(pool.backend.kind(), expected);
        pool
    }

    pub(crate) fn mountpoint(&self, name: &str) -> PathBuf {
        self.backend.mountpoint(&name.parse().unwrap())
    }
}

/// Tears an image pool down from a synchronous context (a `Drop`), on a thread of its own so
/// that it works inside or outside a Tokio runtime.
fn teardown_now(image: ImagePool) {
    let torn = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(image.teardown(true))
    })
    .join();
    match torn {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("teardown failed: {error}"),
        Err(_) => eprintln!("teardown panicked"),
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        teardown_now(self.image.clone());
    }
}

/// Deterministic, incompressible bytes.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state =
        seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
