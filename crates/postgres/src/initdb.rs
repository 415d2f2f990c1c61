//! Creating a new cluster with `initdb`, run as the unprivileged OS user.

use std::path::Path;
use std::time::Duration;

use exec::Cmd;

use crate::error::Result;
use crate::user::OsUser;
use crate::version::PgBinaries;

/// initdb writes a few hundred files; with fsync on a slow disk that can take a while.
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);

/// How to create a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitDbOptions {
    /// The bootstrap superuser, which becomes the engine's admin role.
    pub admin_role: String,
    /// The database encoding.
    pub encoding: String,
    /// The locale; `None` means the C locale (`--no-locale`).
    pub locale: Option<String>,
    /// LC_COLLATE, when it differs from `locale` (`--lc-collate`).
    pub lc_collate: Option<String>,
    /// LC_CTYPE, when it differs from `locale` (`--lc-ctype`).
    pub lc_ctype: Option<String>,
    /// The default collation provider (`--locale-provider`, 15 and later): `libc`, `icu`, or
    /// `builtin` (17 and later); `None` keeps initdb's (libc).
    pub locale_provider: Option<String>,
    /// The provider's locale: `--icu-locale` for `icu`, `--builtin-locale` for `builtin`.
    pub provider_locale: Option<String>,
    /// Data checksums on or off; `None` keeps the major's default (on from 18).
    pub data_checksums: Option<bool>,
    /// Whether initdb fsyncs its files; off is fine for throwaway clusters.
    pub sync: bool,
}

impl InitDbOptions {
    /// UTF8, C locale, the major's checksum default, fsync on.
    pub fn new(admin_role: impl Into<String>) -> Self {
        InitDbOptions {
            admin_role: admin_role.into(),
            encoding: "UTF8".to_owned(),
            locale: None,
            lc_collate: None,
            lc_ctype: None,
            locale_provider: None,
            provider_locale: None,
            data_checksums: None,
            sync: true,
        }
    }
}

/// Creates a cluster in `data_dir` (which must not exist or be empty) as `user`.
///
/// Local connections of the admin role are trusted and TCP ones need a password; the instance's
/// pg_hba.conf is rewritten before each start anyway.
pub async fn initdb(
    binaries: &PgBinaries,
    data_dir: &Path,
    user: &OsUser,
    options: &InitDbOptions,
) -> Result<()> {
    user.own_dir(data_dir, 0o700)?;
    let mut cmd = Cmd::new(binaries.tool("initdb")?)
        .arg("-D")
        .arg(data_dir)
        .args(["-U", &options.admin_role, "-E", &options.encoding])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .user(user.uid, user.gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(data_dir)
        .timeout(INITDB_TIMEOUT);
    cmd = match &options.locale {
        Some(locale) => cmd.arg(format!("--locale={locale}")),
        None => cmd.arg("--no-locale"),
    };
    // The categories given alone override `--locale`/`--no-locale`, as in initdb itself.
    if let Some(collate) = &options.lc_collate {
        cmd = cmd.arg(format!("--lc-collate={collate}"));
    }
    if let Some(ctype) = &options.lc_ctype {
        cmd = cmd.arg(format!("--lc-ctype={ctype}"));
    }
    if let Some(provider) = &options.locale_provider {
        cmd = cmd.arg(format!("--locale-provider={provider}"));
        match (provider.as_str(), &options.provider_locale) {
            ("icu", Some(locale)) => cmd = cmd.arg(format!("--icu-locale={locale}")),
            ("builtin", Some(locale)) => cmd = cmd.arg(format!("--builtin-locale={locale}")),
            _ => {}
        }
    }
    cmd = match options.data_checksums {
        Some(true) => cmd.arg("--data-checksums"),
        // Only 18 turned checksums on by default, and only 18 knows the flag to turn them off.
        Some(false) if binaries.major().number() >= 18 => cmd.arg("--no-data-checksums"),
        Some(false) | None => cmd,
    };
    if !options.sync {
        cmd = cmd.arg("--no-sync");
    }
    cmd.run().await?;
    Ok(())
}
