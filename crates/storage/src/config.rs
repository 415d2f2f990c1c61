//! The storage section of the configuration file: which backend, and where its pool is.

use std::path::PathBuf;

/// Which pool to open, as written in the configuration file:
/// `{ kind = "btrfs", root = "/var/lib/scion/pool" }`, `{ kind = "zfs", pool = "dblab_pool" }`,
/// `{ kind = "dir", root = "/var/lib/scion/dir" }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// A mounted btrfs filesystem (or subvolume) used as the pool root.
    Btrfs {
        /// Where it is mounted.
        root: PathBuf,
        /// Measure per-dataset space with btrfs quota groups instead of FIEMAP. Off by
        /// default: quota slows down every snapshot and clone.
        #[serde(default)]
        quota: bool,
    },
    /// An imported ZFS pool, or a filesystem inside one (`tank/scion`).
    Zfs {
        /// The pool or parent dataset that holds Scion's datasets.
        pool: String,
    },
    /// A directory on any filesystem.
    Dir {
        /// The pool root.
        root: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_rejects_unknown_keys() {
        let parsed: BackendConfig =
            serde_json::from_str(r#"{"kind":"zfs","pool":"tank/scion"}"#).unwrap();
        assert_eq!(parsed, BackendConfig::Zfs { pool: "tank/scion".to_owned() });
        let parsed: BackendConfig = serde_json::from_str(r#"{"kind":"dir","root":"/d"}"#).unwrap();
        let btrfs: BackendConfig = serde_json::from_str(r#"{"kind":"btrfs","root":"/b"}"#).unwrap();
        assert_eq!(btrfs, BackendConfig::Btrfs { root: "/b".into(), quota: false });
        assert_eq!(parsed, BackendConfig::Dir { root: "/d".into() });
        assert!(
            serde_json::from_str::<BackendConfig>(r#"{"kind":"btrfs","root":"/b","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<BackendConfig>(r#"{"kind":"lvm","root":"/b"}"#).is_err());
    }
}
