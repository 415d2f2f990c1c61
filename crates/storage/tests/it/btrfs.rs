//! What only the btrfs backend promises, checked with the `btrfs` program as an independent
//! witness of what the ioctls did: snapshots are read-only subvolumes, clones writable ones.

use std::path::Path;

use storage::{DestroyMode, Error, ThinStorage};

use crate::pools::{Env, TestPool};

/// `btrfs property get -ts PATH ro`: true for a read-only subvolume.
async fn read_only(path: &Path) -> bool {
    let cmd = exec::Cmd::new("btrfs").args(["property", "get", "-ts"]).arg(path).arg("ro");
    let text = cmd.output().await.unwrap().stdout_text();
    match text.trim() {
        "ro=true" => true,
        "ro=false" => false,
        other => panic!("unexpected `btrfs property get` output: {other}"),
    }
}

#[tokio::test]
async fn snapshots_are_read_only_and_clones_writable() {
    let pool = TestPool::new(Env::Btrfs).await;
    let backend = &pool.backend;
    let data = backend.create_dataset(&"a/data".parse().unwrap()).await.unwrap();
    assert!(!read_only(&data).await);
    std::fs::write(data.join("file"), "v1").unwrap();
    let snapshot_name = "a/data@s1".parse().unwrap();
    backend.snapshot(&snapshot_name).await.unwrap();

    let root = data.parent().unwrap().parent().unwrap();
    let snapshot = root.join(".snapshots/a/data@s1");
    assert!(read_only(&snapshot).await);
    assert_eq!(std::fs::read_to_string(snapshot.join("file")).unwrap(), "v1");
    let write = std::fs::write(snapshot.join("file"), "v2").unwrap_err();
    assert_eq!(write.raw_os_error(), Some(30), "EROFS expected: {write}");

    let clone = backend.clone_snapshot(&snapshot_name, &"c/c1".parse().unwrap()).await.unwrap();
    assert!(!read_only(&clone).await);
    std::fs::write(clone.join("file"), "v2").unwrap();
    assert_eq!(std::fs::read_to_string(snapshot.join("file")).unwrap(), "v1");

    // A name taken by a plain directory is taken: the ioctl's EEXIST, typed.
    std::fs::create_dir(root.join("c/plain")).unwrap();
    let error =
        backend.clone_snapshot(&snapshot_name, &"c/plain".parse().unwrap()).await.unwrap_err();
    assert!(matches!(error, Error::AlreadyExists(_)), "{error:?}");

    // Deleting goes through the same ioctls; nothing is left under the pool's directories.
    backend.destroy_dataset(&"a".parse().unwrap(), DestroyMode::WithDependents).await.unwrap();
    assert!(!root.join("a").exists());
    assert!(!root.join("c/c1").exists());
    let left: Vec<_> = std::fs::read_dir(root.join(".snapshots")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
