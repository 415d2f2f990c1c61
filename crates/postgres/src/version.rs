//! Major versions and where their binaries live.
//!
//! A data directory's major comes from its `PG_VERSION` file; the binaries of that major are
//! searched in the configured directories first, then under the roots the project's setup
//! installs into (`$SCION_PG_ROOT` or `/opt/scion/postgres`, `<root>/<major>/bin`), then in
//! Debian's `/usr/lib/postgresql/<major>/bin`. A directory counts for a major when it holds a
//! `postgres` binary; client tools are looked up among the same major's directories only, so a
//! missing tool is an explicit error rather than a silent use of another version's client.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use exec::Cmd;

use crate::error::{Error, Result};

/// A supported PostgreSQL major version, 13 to 18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgMajor(u8);

impl PgMajor {
    /// The oldest supported major.
    pub const MIN: PgMajor = PgMajor(13);
    /// The newest supported major.
    pub const MAX: PgMajor = PgMajor(18);

    /// Checks that `major` is supported.
    pub fn new(major: u8) -> Result<Self> {
        if (Self::MIN.0..=Self::MAX.0).contains(&major) {
            Ok(PgMajor(major))
        } else {
            Err(Error::UnsupportedMajor { found: major.to_string() })
        }
    }

    /// Every supported major, oldest first.
    pub fn all() -> impl Iterator<Item = PgMajor> {
        (Self::MIN.0..=Self::MAX.0).map(PgMajor)
    }

    /// The number, e.g. 16.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Reads the major of an existing data directory from its `PG_VERSION` file.
    pub fn of_data_dir(data_dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(data_dir.join("PG_VERSION"))
            .map_err(|cause| Error::NotADataDir { data_dir: data_dir.to_path_buf(), cause })?;
        text.parse()
    }
}

impl FromStr for PgMajor {
    type Err = Error;

    /// Parses `PG_VERSION` text ("16\n") or a version string ("16.4"); pre-10 forms such as
    /// "9.6" are reported as unsupported.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let unsupported = || Error::UnsupportedMajor { found: text.to_owned() };
        let head = text.split('.').next().unwrap_or_default();
        let major: u8 = head.parse().map_err(|_| unsupported())?;
        PgMajor::new(major).map_err(|_| unsupported())
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The environment variable that moves the project's install root (default `/opt/scion/postgres`).
pub const PG_ROOT_ENV: &str = "SCION_PG_ROOT";
const DEFAULT_PG_ROOT: &str = "/opt/scion/postgres";
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Where to look for binaries, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinarySearch {
    /// Directories configured for one major each (checked first).
    pub bin_dirs: Vec<(PgMajor, PathBuf)>,
    /// Roots holding `<major>/bin` (checked next, in order).
    pub roots: Vec<PathBuf>,
}

impl Default for BinarySearch {
    /// The project's setup root (or `$SCION_PG_ROOT`), then Debian's.
    fn default() -> Self {
        let project_root = std::env::var_os(PG_ROOT_ENV)
            .filter(|root| !root.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_PG_ROOT), PathBuf::from);
        BinarySearch { bin_dirs: Vec::new(), roots: vec![project_root, PathBuf::from(DEBIAN_ROOT)] }
    }
}

impl BinarySearch {
    /// The candidate `bin` directories for `major`, in order, whether or not they exist.
    pub fn candidates(&self, major: PgMajor) -> Vec<PathBuf> {
        let configured =
            self.bin_dirs.iter().filter(|(m, _)| *m == major).map(|(_, dir)| dir.clone());
        let under_roots = self.roots.iter().map(|root| root.join(major.to_string()).join("bin"));
        configured.chain(under_roots).collect()
    }

    /// Finds the binaries of `major`: the first candidate with a `postgres` binary. Cheap (file
    /// checks only); [`PgBinaries::verify`] runs the binary to confirm its version.
    pub fn locate(&self, major: PgMajor) -> Result<PgBinaries> {
        let candidates = self.candidates(major);
        let Some(position) = candidates.iter().position(|dir| is_executable(&dir.join("postgres")))
        else {
            return Err(Error::MajorNotInstalled { major, searched: candidates });
        };
        // Tools fall back to the later candidates of the same major only.
        let dirs = candidates[position..].to_vec();
        Ok(PgBinaries { major, dirs })
    }

    /// Every install of `major` here, in the order [`BinarySearch::locate`] prefers them: one
    /// per candidate directory with a `postgres` binary. [`BinarySearch::locate`] uses the
    /// first; the others are what an operator could name in `[clone.bin_dirs]` instead.
    pub fn installs(&self, major: PgMajor) -> Vec<PgBinaries> {
        let candidates = self.candidates(major);
        let mut seen = Vec::new();
        let mut installs = Vec::new();
        for (position, dir) in candidates.iter().enumerate() {
            // A configured directory may also be one under a root: one install, listed once.
            let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            if is_executable(&dir.join("postgres")) && !seen.contains(&real) {
                seen.push(real);
                installs.push(PgBinaries { major, dirs: candidates[position..].to_vec() });
            }
        }
        installs
    }

    /// Every supported major that has a server binary here.
    pub fn installed(&self) -> Vec<PgBinaries> {
        PgMajor::all().filter_map(|major| self.locate(major).ok()).collect()
    }
}

/// The binaries of one major: the server's directory first, then other directories of the same
/// major that may hold client tools the first lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    major: PgMajor,
    dirs: Vec<PathBuf>,
}

impl PgBinaries {
    /// The major these binaries belong to.
    pub fn major(&self) -> PgMajor {
        self.major
    }

    /// The directory holding the server binary.
    pub fn bin_dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// The server binary.
    pub fn postgres(&self) -> PathBuf {
        self.bin_dir().join("postgres")
    }

    /// The path of a tool (`initdb`, `psql`, `pg_controldata`, …) of this major, or an error
    /// naming the tool and the directories searched.
    pub fn tool(&self, name: &str) -> Result<PathBuf> {
        self.dirs.iter().map(|dir| dir.join(name)).find(|path| is_executable(path)).ok_or_else(
            || Error::ToolMissing {
                major: self.major,
                tool: name.to_owned(),
                searched: self.dirs.clone(),
            },
        )
    }

    /// Whether the server was built with ICU, so that it can create and use ICU collations and
    /// (15 and later) databases whose locale provider is ICU. Read from the server binary's
    /// dynamic dependencies (`libicuuc`/`libicui18n`), as `ldd` would show them: the server
    /// cannot be asked without a cluster, and `pg_config` may belong to another build than the
    /// server it sits beside. Every build this project finds (Debian's, PGDG's, the npm
    /// and PyPI builds) links ICU dynamically or not at all.
    pub fn supports_icu(&self) -> Result<bool> {
        let path = self.postgres();
        let binary = std::fs::read(&path).map_err(|cause| Error::Io {
            action: "read the server binary",
            path: path.clone(),
            cause,
        })?;
        Ok([b"libicuuc.so".as_slice(), b"libicui18n.so".as_slice()]
            .iter()
            .any(|name| binary.windows(name.len()).any(|window| window == *name)))
    }

    /// The extensions this server can create: the `*.control` files of its extension
    /// directory ([`PgBinaries::extension_dir`]).
    pub fn available_extensions(&self) -> Result<std::collections::BTreeSet<String>> {
        let dir = self.extension_dir()?;
        let entries = std::fs::read_dir(&dir).map_err(|cause| Error::Io {
            action: "list the extension directory",
            path: dir.clone(),
            cause,
        })?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                entry.file_name().to_str()?.strip_suffix(".control").map(str::to_owned)
            })
            .collect())
    }

    /// The server's extension directory. The server finds it relative to its own binary with
    /// paths fixed when it was built, which no tool beside it reports reliably (`pg_config`
    /// may come from another build), so the candidates are the layouts this project meets, in
    /// order: `<bin>/../share/postgresql/extension` (the npm and PGDG-style builds),
    /// `<bin>/../share/extension` (PyPI's), `/usr/share/postgresql/<major>/extension`
    /// (Debian's); the first that holds `plpgsql.control`, which every server has, is the
    /// server's.
    pub fn extension_dir(&self) -> Result<PathBuf> {
        let base = self.bin_dir().join("..");
        let candidates = [
            base.join("share/postgresql/extension"),
            base.join("share/extension"),
            PathBuf::from(format!("/usr/share/postgresql/{}/extension", self.major.number())),
        ];
        candidates.into_iter().find(|dir| dir.join("plpgsql.control").is_file()).ok_or_else(|| {
            Error::Io {
                action: "find the extension directory (plpgsql.control)",
                path: base,
                cause: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
        })
    }

    /// The server's library directory (`$libdir`, where `shared_preload_libraries` are
    /// looked up): `<bin>/../lib/postgresql` (PGDG-style builds), else `<bin>/../lib` (Debian's
    /// `/usr/lib/postgresql/<major>/lib`, the npm and PyPI builds); the first that holds
    /// `plpgsql.so`, which every server has.
    pub fn library_dir(&self) -> Result<PathBuf> {
        let base = self.bin_dir().join("..");
        [base.join("lib/postgresql"), base.join("lib")]
            .into_iter()
            .find(|dir| dir.join("plpgsql.so").is_file())
            .ok_or_else(|| Error::Io {
                action: "find the library directory (plpgsql.so)",
                path: base,
                cause: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }

    /// Whether the server can load `library` as a preload setting names it (`pg_cron`,
    /// `$libdir/pg_cron`, `$libdir/plugins/x`, an absolute path), as the server would: the
    /// name as given, else with `.so`, inside `$libdir` unless it is a path.
    pub fn has_library(&self, library: &str) -> Result<bool> {
        let library = library.trim().trim_matches('"');
        let path = match library.strip_prefix("$libdir/") {
            Some(rest) => self.library_dir()?.join(rest),
            None if library.contains('/') => PathBuf::from(library),
            None => self.library_dir()?.join(library),
        };
        let mut with_suffix = path.clone().into_os_string();
        with_suffix.push(".so");
        Ok(path.is_file() || Path::new(&with_suffix).is_file())
    }

    /// Runs `postgres --version` and checks that it reports this major.
    pub async fn verify(&self) -> Result<String> {
        let path = self.postgres();
        let output = Cmd::new(&path).arg("--version").output().await?;
        let reported = output.stdout_text().trim().to_owned();
        // "postgres (PostgreSQL) 16.4 (Debian 16.4-1)": the version is the third word.
        let version = reported.split_whitespace().nth(2).unwrap_or_default();
        match version.parse::<PgMajor>() {
            Ok(major) if major == self.major => Ok(version.to_owned()),
            _ => Err(Error::VersionMismatch { path, reported, expected: self.major }),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_version_text() {
        assert_eq!("16\n".parse::<PgMajor>().unwrap().number(), 16);
        assert_eq!("13.23".parse::<PgMajor>().unwrap().number(), 13);
        assert!(
            matches!("9.6".parse::<PgMajor>(), Err(Error::UnsupportedMajor { found }) if found == "9.6")
        );
        assert!("19".parse::<PgMajor>().is_err());
        assert!("".parse::<PgMajor>().is_err());
        assert!("x".parse::<PgMajor>().is_err());
    }

    #[test]
    fn configured_dirs_come_first() {
        let major = PgMajor::new(16).unwrap();
        let search = BinarySearch {
            bin_dirs: vec![
                (major, "/custom/16".into()),
                (PgMajor::new(15).unwrap(), "/custom/15".into()),
            ],
            roots: vec!["/r1".into(), "/r2".into()],
        };
        assert_eq!(
            search.candidates(major),
            vec![PathBuf::from("/custom/16"), "/r1/16/bin".into(), "/r2/16/bin".into()]
        );
    }

    /// A fake install under `root`: `<root>/<major>/bin/postgres` and `<root>/<major>/lib`
    /// with `plpgsql.so` and `libraries`.
    fn fake_install(root: &Path, major: &str, libraries: &[&str]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = root.join(major).join("bin");
        let lib = root.join(major).join("lib");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(bin.join("postgres"), "").unwrap();
        std::fs::set_permissions(bin.join("postgres"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        for library in ["plpgsql.so"].iter().chain(libraries) {
            std::fs::write(lib.join(library), "").unwrap();
        }
        bin
    }

    #[test]
    fn libraries_are_found_as_preload_settings_name_them() {
        let root = tempfile::tempdir().unwrap();
        let bin = fake_install(root.path(), "15", &["pg_cron.so", "plain"]);
        let search = BinarySearch { bin_dirs: vec![], roots: vec![root.path().to_path_buf()] };
        let binaries = search.locate(PgMajor::new(15).unwrap()).unwrap();
        assert_eq!(binaries.library_dir().unwrap(), bin.join("../lib"));
        for (library, found) in [
            ("pg_cron", true),
            ("\"pg_cron\"", true),
            ("$libdir/pg_cron", true),
            ("plain", true),
            ("pgaudit", false),
            ("$libdir/plugins/pgaudit", false),
        ] {
            assert_eq!(binaries.has_library(library).unwrap(), found, "{library}");
        }
        let absolute = bin.join("../lib/pg_cron");
        assert!(binaries.has_library(&absolute.display().to_string()).unwrap());
    }

    #[test]
    fn installs_are_listed_once_in_the_order_locate_prefers() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        fake_install(first.path(), "15", &[]);
        let other = fake_install(second.path(), "15", &[]);
        let major = PgMajor::new(15).unwrap();
        let search = BinarySearch {
            // Configured, and also under the second root: one install.
            bin_dirs: vec![(major, other.clone())],
            roots: vec![first.path().to_path_buf(), second.path().to_path_buf()],
        };
        let installs: Vec<PathBuf> =
            search.installs(major).iter().map(|install| install.bin_dir().to_path_buf()).collect();
        assert_eq!(installs, [other.clone(), first.path().join("15/bin")]);
        assert_eq!(search.locate(major).unwrap().bin_dir(), other);
    }

    #[test]
    fn missing_major_names_where_it_looked() {
        let search = BinarySearch { bin_dirs: vec![], roots: vec!["/nonexistent-scion".into()] };
        let error = search.locate(PgMajor::new(14).unwrap()).unwrap_err();
        assert!(matches!(error, Error::MajorNotInstalled { .. }));
        assert!(error.to_string().contains("/nonexistent-scion/14/bin"), "{error}");
    }
}
