//! The files the server makes are private: the pool image (every clone's data) and the clone
//! logs are its owner's only, and the state directory lets others pass through to the clone
//! sockets but not list or read anything.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::TestServer;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn the_pool_image_logs_and_state_directory_are_private() {
    let server = TestServer::start("").await;
    server.create_clone("private").await;
    let state = server.state_dir();
    for dir in [state.to_owned(), state.join("engine")] {
        assert_eq!(
            mode(&dir) & 0o044,
            0,
            "{} is readable by others: {:o}",
            dir.display(),
            mode(&dir)
        );
    }
    assert_eq!(mode(&state.join("pool.img")), 0o600, "the pool image");
    let logs = state.join("engine").join("logs");
    assert_eq!(mode(&logs), 0o700, "the logs directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        files += 1;
    }
    assert!(files > 0, "no clone log in {}", logs.display());
}
