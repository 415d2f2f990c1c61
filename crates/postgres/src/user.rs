//! The unprivileged OS user that owns data directories and runs the server (never root).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::User;

use crate::error::{Error, Result};

/// The default OS user: the one Debian's packages create.
pub const DEFAULT_OS_USER: &str = "postgres";

/// A resolved OS user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// The login name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl OsUser {
    /// Looks `name` up in the user database; root is refused, because Postgres refuses it.
    pub fn lookup(name: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadOsUser { name: name.to_owned(), reason };
        let user = User::from_name(name)
            .map_err(|error| bad(format!("look up: {error}")))?
            .ok_or_else(|| bad("no such user".to_owned()))?;
        if user.uid.is_root() {
            return Err(bad("PostgreSQL refuses to run as root".to_owned()));
        }
        Ok(OsUser { name: name.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// Makes `dir` exist, owned by this user, with `mode`; the contents are left alone.
    ///
    /// A directory that is already right is not touched: this runs before every start, and a
    /// needless chown or chmod still dirties the inode for the file system's next commit.
    pub fn own_dir(&self, dir: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io("create directory", dir, error)),
        }
        let meta = std::fs::metadata(dir).map_err(|error| Error::io("stat", dir, error))?;
        if meta.uid() != self.uid || meta.gid() != self.gid {
            self.own_path(dir)?;
        }
        if meta.mode() & 0o7777 != mode {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(|error| Error::io("chmod", dir, error))?;
        }
        Ok(())
    }

    /// Gives one file or directory to this user (not recursive).
    pub fn own_path(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(|error| Error::io("chown", path, error))
    }

    /// Makes a data directory fit for the server: owned by this user throughout and mode 0700.
    /// The recursive walk runs only when the top directory has another owner (a directory
    /// restored by root, say); snapshots of a served directory are already right.
    pub fn own_data_dir(&self, data_dir: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(data_dir).map_err(|error| Error::io("stat", data_dir, error))?;
        if meta.uid() != self.uid || meta.gid() != self.gid {
            self.own_tree(data_dir)?;
        }
        if meta.mode() & 0o777 != 0o700 {
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|error| Error::io("chmod", data_dir, error))?;
        }
        Ok(())
    }

    fn own_tree(&self, path: &Path) -> Result<()> {
        self.own_path(path)?;
        let meta =
            std::fs::symlink_metadata(path).map_err(|error| Error::io("stat", path, error))?;
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|error| Error::io("list", path, error))?;
            for entry in entries {
                let entry = entry.map_err(|error| Error::io("list", path, error))?;
                self.own_tree(&entry.path())?;
            }
        }
        Ok(())
    }
}
