//! Questions about a data directory that callers outside this crate may ask without knowing
//! its file names.

use std::path::Path;

use crate::pidfile::PID_FILE;

/// Whether `data_dir` has a `postmaster.pid`: a server runs on it, or one stopped without
/// cleaning up (a crash, a reboot). [`crate::Instance::adopt`] tells the two apart.
pub fn has_postmaster_pid(data_dir: &Path) -> bool {
    data_dir.join(PID_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_postmaster_pid(dir.path()));
        std::fs::write(dir.path().join(PID_FILE), "1\n").unwrap();
        assert!(has_postmaster_pid(dir.path()));
    }
}
