//! What only the btrfs backend promises, checked with the `btrfs` program as an independent
//! witness of what the ioctls did: snapshots are read-only subvolumes, clones writable ones.

use std::path::Path;

use storage::{DestroyMode, Error, ThinStorage};

use crate::pools::{Env, MIB, TestPool};

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

/// Runs `btrfs <args> <path>` and returns its output.
async fn btrfs(args: &[&str], path: &Path) -> String {
    exec::Cmd::new("btrfs").args(args).arg(path).output().await.unwrap().stdout_text()
}

/// The level-0 qgroup IDs `btrfs qgroup show` lists, with their limit on referenced bytes.
async fn qgroups(root: &Path) -> Vec<(u64, String)> {
    btrfs(&["qgroup", "show", "--raw", "-r"], root)
        .await
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.strip_prefix("0/")?.parse().ok()?;
            Some((id, words.nth(2)?.to_owned()))
        })
        .collect()
}

/// With quota on (clones with a quota), destroyed clones leave no qgroup once the cleaner has
/// dropped them and the background clear has run, while a qgroup whose subvolume is still
/// being dropped is left alone, and live clones keep theirs with their limit.
#[tokio::test]
async fn destroyed_clones_leave_no_qgroup() {
    let pool = TestPool::with_size(Env::Btrfs, 512 * MIB).await;
    let backend = &pool.backend;
    let data = backend.create_dataset(&"data".parse().unwrap()).await.unwrap();
    std::fs::write(data.join("base"), crate::pools::noise(8 * MIB as usize, 1)).unwrap();
    backend.snapshot(&"data@s1".parse().unwrap()).await.unwrap();
    let root = data.parent().unwrap().to_path_buf();
    let mut ids = Vec::new();
    for n in 0..4 {
        let name = format!("c/c{n}").parse().unwrap();
        let clone = backend.clone_snapshot(&"data@s1".parse().unwrap(), &name).await.unwrap();
        std::fs::write(clone.join("own"), crate::pools::noise(MIB as usize, n)).unwrap();
        backend.set_quota(&name, 64 * MIB).await.unwrap();
        let id: u64 = btrfs(&["inspect-internal", "rootid"], &clone).await.trim().parse().unwrap();
        ids.push(id);
    }
    let listed: Vec<u64> = qgroups(&root).await.iter().map(|(id, _)| *id).collect();
    assert!(ids.iter().all(|id| listed.contains(id)), "{ids:?} not all in {listed:?}");
    for n in 0..3 {
        let name = format!("c/c{n}").parse().unwrap();
        backend.destroy_dataset(&name, DestroyMode::Refuse).await.unwrap();
    }
    // At once: a subvolume still being dropped keeps its qgroup (the cleaner still accounts
    // to it); the kernel's listing after the clear says which ones still were.
    backend.clear_stale_quotas().await.unwrap();
    let deleting = btrfs(&["subvolume", "list", "-d"], &root).await;
    let listed: Vec<u64> = qgroups(&root).await.iter().map(|(id, _)| *id).collect();
    for id in &ids[..3] {
        if deleting.contains(&format!("ID {id} ")) {
            assert!(listed.contains(id), "qgroup 0/{id} went while its subvolume was dropped");
        }
    }
    // Once the cleaner is done, the next clear leaves none of theirs.
    btrfs(&["subvolume", "sync"], &root).await;
    backend.clear_stale_quotas().await.unwrap();
    let left = qgroups(&root).await;
    for id in &ids[..3] {
        assert!(left.iter().all(|(left, _)| left != id), "qgroup 0/{id} left: {left:?}");
    }
    let kept = left.iter().find(|(id, _)| *id == ids[3]);
    assert_eq!(kept.map(|(_, limit)| limit.as_str()), Some("67108864"), "{left:?}");
    // Nothing left to clear: the next round runs no command and clears nothing.
    assert_eq!(backend.clear_stale_quotas().await.unwrap(), 0);
}
