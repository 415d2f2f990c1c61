//! Image-file pools: create, attach again after a detach (as after a reboot), tear down.

use storage::provision::{ImageFs, ImagePool};
use storage::{DestroyMode, StorageBackend, ThinStorage};

use crate::pools::MIB;

async fn survives_detach_and_reattach(fs: ImageFs, size: u64) {
    let dir = tempfile::Builder::new().prefix("scion-provision-it-").tempdir().unwrap();
    let image = ImagePool::new(dir.path().join("pool.img"), size, fs, dir.path().join("mnt"));
    image.ensure().await.unwrap();
    // Sparse: the image costs almost nothing on disk.
    let meta = std::fs::metadata(&image.image).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::size(&meta), size);
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < size / 2);
    assert!(image.is_attached().await.unwrap());
    image.ensure().await.unwrap();

    let backend = StorageBackend::open(&image.backend_config()).await.unwrap();
    let data = backend.create_dataset(&"data".parse().unwrap()).await.unwrap();
    std::fs::write(data.join("file"), "kept").unwrap();
    backend.snapshot(&"data@s1".parse().unwrap()).await.unwrap();
    drop(backend);

    image.teardown(false).await.unwrap();
    assert!(!image.is_attached().await.unwrap());
    assert!(image.image.exists());
    image.teardown(false).await.unwrap();

    image.ensure().await.unwrap();
    assert!(image.is_attached().await.unwrap());
    let backend = StorageBackend::open(&image.backend_config()).await.unwrap();
    let listing = backend.list().await.unwrap();
    assert!(listing.snapshot(&"data@s1".parse().unwrap()).is_some(), "{listing:?}");
    assert_eq!(
        std::fs::read_to_string(backend.mountpoint(&"data".parse().unwrap()).join("file")).unwrap(),
        "kept"
    );
    backend.destroy_dataset(&"data".parse().unwrap(), DestroyMode::WithDependents).await.unwrap();
    drop(backend);

    image.teardown(true).await.unwrap();
    assert!(!image.image.exists());
    assert!(!image.is_attached().await.unwrap());
    let losetup = exec::Cmd::new("losetup").arg("-j").arg(&image.image).output().await.unwrap();
    assert_eq!(losetup.stdout_text(), "");
}

#[tokio::test]
async fn btrfs_image_survives_detach_and_reattach() {
    survives_detach_and_reattach(ImageFs::Btrfs, 256 * MIB).await;
}

#[tokio::test]
async fn zfs_image_survives_export_and_import() {
    let pool = format!("scion_prov_{}", std::process::id());
    survives_detach_and_reattach(ImageFs::Zfs { pool }, 128 * MIB).await;
}

#[tokio::test]
async fn xfs_image_survives_detach_and_reattach() {
    survives_detach_and_reattach(ImageFs::Xfs, 320 * MIB).await;
}

#[tokio::test]
async fn relative_image_path_is_refused() {
    let image = ImagePool::new("pool.img", 64 * MIB, ImageFs::Ext4, "/tmp/never-mounted");
    let error = image.ensure().await.unwrap_err();
    assert!(matches!(error, storage::Error::Unsupported(_)), "{error:?}");
    assert!(!std::path::Path::new("pool.img").exists());
}

/// The mountinfo line (mount and superblock options) of the filesystem at `mountpoint`.
fn mount_options(mountpoint: &std::path::Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|line| line.split(' ').nth(4) == Some(mountpoint.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted", mountpoint.display()));
    line.to_owned()
}

#[tokio::test]
async fn btrfs_commit_flushes_follow_the_setting_across_remounts() {
    let dir = tempfile::Builder::new().prefix("scion-provision-it-").tempdir().unwrap();
    let fast = ImagePool::new(
        dir.path().join("pool.img"),
        256 * MIB,
        ImageFs::Btrfs,
        dir.path().join("mnt"),
    )
    .with_flush(false);
    fast.ensure().await.unwrap();
    assert!(mount_options(&fast.mountpoint).contains("nobarrier"));

    // An engine restarted with flushes on remounts the image that is still mounted.
    let safe = fast.clone().with_flush(true);
    safe.ensure().await.unwrap();
    assert!(!mount_options(&safe.mountpoint).contains("nobarrier"));
    safe.teardown(true).await.unwrap();
}
