//! The recovery settings written inside a copy of a standby to make it a primary of its own: a
//! one-shot archive recovery (`recovery.signal`) to the end of the WAL or to a target, ending in
//! promotion, with every link to the source (standby mode, `primary_conninfo`, the slot, the
//! source's archiving) removed from the copy.
//!
//! Why archive recovery even without an archive: a crash-consistent copy of a running standby is
//! consistent only once replay passes its minimum recovery point, which only archive recovery
//! enforces (crash recovery replays what `pg_wal` holds and calls it done). Without a
//! `restore_command`, [`NO_ARCHIVE`] fails every fetch, so recovery reads `pg_wal` alone but keeps
//! those guarantees, records the last replayed commit's time, and promotes onto a new timeline.
//!
//! The settings themselves go into Scion's settings file through
//! [`crate::ServerSettings::extra`] ([`RecoveryPlan::settings`]): that file is rewritten at every
//! start, so a clone of the promoted copy never carries a recovery target.

use std::fmt;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::controldata::Lsn;
use crate::error::{Error, Result};
use crate::standby::{self, STANDBY_SIGNAL};
use crate::user::OsUser;

/// The file that asks for a targeted (non-standby) archive recovery.
pub const RECOVERY_SIGNAL: &str = "recovery.signal";
/// `ALTER SYSTEM`'s file, read after every other settings file.
const AUTO_CONF: &str = "postgresql.auto.conf";
/// A `restore_command` that fetches nothing: recovery then reads `pg_wal` only.
pub const NO_ARCHIVE: &str = "/bin/false";

/// Settings removed from `postgresql.auto.conf`, which is read last and would override Scion's:
/// the standby's link to its source (`pg_basebackup -R` writes `primary_conninfo` there), any
/// recovery setting the source or the standby had, and the source's archiving, so a promoted copy
/// never pushes WAL into the source's archive. A promotion sets these itself, so its own
/// settings may not name them either.
pub const STRIPPED: &[&str] = &[
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "recovery_min_apply_delay",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
    "hot_standby",
    "archive_mode",
    "archive_command",
    "archive_library",
];

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the WAL that `pg_wal` and the archive hold.
    Latest,
    /// The last commit at or before this moment (`recovery_target_time`, inclusive).
    Time(DateTime<Utc>),
    /// This WAL location, the record that starts there included (`recovery_target_lsn`).
    Lsn(Lsn),
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("the latest WAL"),
            RecoveryTarget::Time(time) => {
                write!(f, "time {}", time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            RecoveryTarget::Lsn(lsn) => write!(f, "LSN {lsn}"),
        }
    }
}

/// How a copy recovers before its promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// Where replay stops.
    pub target: RecoveryTarget,
    /// The command that fetches archived WAL (`%f`, `%p`); `None` replays `pg_wal` only.
    pub restore_command: Option<String>,
}

impl RecoveryPlan {
    /// The server settings of the recovery: pass them as [`crate::ServerSettings::extra`].
    ///
    /// Hot standby is off: the server accepts no connection before it is promoted, so its
    /// readiness means "promoted", and the hot-standby checks of `max_connections` and friends
    /// against the source's values do not apply to a server that never serves as a standby.
    pub fn settings(&self) -> Vec<(String, String)> {
        let restore = self.restore_command.clone().unwrap_or_else(|| NO_ARCHIVE.to_owned());
        let mut settings = vec![
            ("restore_command", restore),
            ("recovery_target_timeline", "latest".to_owned()),
            ("recovery_target_action", "promote".to_owned()),
            ("hot_standby", "off".to_owned()),
            // Ignored outside standby mode; set empty so no other settings file can bring the
            // source's connection back.
            ("primary_conninfo", String::new()),
            ("primary_slot_name", String::new()),
        ];
        match self.target {
            RecoveryTarget::Latest => {}
            RecoveryTarget::Time(time) => {
                settings.push((
                    "recovery_target_time",
                    time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                ));
                settings.push(("recovery_target_inclusive", "on".to_owned()));
            }
            RecoveryTarget::Lsn(lsn) => {
                settings.push(("recovery_target_lsn", lsn.to_string()));
                settings.push(("recovery_target_inclusive", "on".to_owned()));
            }
        }
        settings.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
    }
}

/// Prepares the copy in `data_dir` for a one-shot recovery: takes the standby away (its signal
/// and Scion's standby settings file, whose `restore_command` and `hot_standby` would win over
/// the recovery's), removes the settings in [`STRIPPED`] from `postgresql.auto.conf`, and writes
/// `recovery.signal` owned by `user`. Returns the settings removed from `postgresql.auto.conf`,
/// for the log.
pub fn prepare_promotion(data_dir: &Path, user: &OsUser) -> Result<Vec<String>> {
    standby::clear(data_dir)?;
    let auto = data_dir.join(AUTO_CONF);
    let removed = match std::fs::read_to_string(&auto) {
        Ok(text) => {
            let (kept, removed) = strip_settings(&text);
            if !removed.is_empty() {
                // Truncating in place keeps the file's owner and mode.
                std::fs::write(&auto, kept).map_err(|error| Error::io("write", &auto, error))?;
            }
            removed
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(Error::io("read", auto, error)),
    };
    let signal = data_dir.join(RECOVERY_SIGNAL);
    std::fs::write(&signal, "").map_err(|error| Error::io("write", &signal, error))?;
    user.own_path(&signal)?;
    Ok(removed)
}

/// Whether the copy in `data_dir` still waits for a recovery (`recovery.signal` or
/// `standby.signal` is there): a promoted server removes `recovery.signal` itself.
pub fn recovery_pending(data_dir: &Path) -> bool {
    data_dir.join(RECOVERY_SIGNAL).exists() || data_dir.join(STANDBY_SIGNAL).exists()
}

/// Removes the signal files, so a later start of this directory (or of a clone of it) never
/// enters recovery again.
pub fn clear_recovery(data_dir: &Path) -> Result<()> {
    remove_if_present(&data_dir.join(RECOVERY_SIGNAL))?;
    remove_if_present(&data_dir.join(STANDBY_SIGNAL))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("remove", path, error)),
    }
}

/// `text` without the lines that set a setting of [`STRIPPED`], and the names removed.
fn strip_settings(text: &str) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(text.len());
    let mut removed = Vec::new();
    for line in text.lines() {
        let name = line
            .split(['=', ' ', '\t'])
            .next()
            .map(|name| name.trim().trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default();
        if STRIPPED.contains(&name.as_str()) {
            removed.push(name);
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn strips_the_standby_link_and_archiving() {
        let text = "# Do not edit this file manually!\n\
                    primary_conninfo = 'host=src user=rep'\n\
                    work_mem = '8MB'\n\
                    primary_slot_name = 'scion'\n\
                    archive_command='cp %p /a/%f'\n";
        let (kept, removed) = strip_settings(text);
        assert_eq!(kept, "# Do not edit this file manually!\nwork_mem = '8MB'\n");
        assert_eq!(removed, ["primary_conninfo", "primary_slot_name", "archive_command"]);
    }

    #[test]
    fn renders_targets() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 19, 30, 5).unwrap();
        let plan = RecoveryPlan {
            target: RecoveryTarget::Time(at),
            restore_command: Some("cp /a/%f %p".to_owned()),
        };
        let settings = plan.settings();
        let get = |name: &str| {
            settings.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
        };
        assert_eq!(get("recovery_target_time"), Some("2026-12-02 19:30:05.000000+00"));
        assert_eq!(get("restore_command"), Some("cp /a/%f %p"));
        assert_eq!(get("recovery_target_action"), Some("promote"));
        let latest = RecoveryPlan { target: RecoveryTarget::Latest, restore_command: None };
        let settings = latest.settings();
        assert!(settings.iter().all(|(name, _)| name != "recovery_target_time"));
        assert!(settings.contains(&("restore_command".to_owned(), NO_ARCHIVE.to_owned())));
        assert_eq!(RecoveryTarget::Lsn(Lsn(0x0300_0028)).to_string(), "LSN 0/3000028");
        assert_eq!(RecoveryTarget::Time(at).to_string(), "time 2026-12-02T19:30:05Z");
    }

    #[test]
    fn prepares_and_clears_the_signal_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STANDBY_SIGNAL), "").unwrap();
        std::fs::write(dir.path().join(AUTO_CONF), "primary_conninfo = 'x'\n").unwrap();
        let standby_conf = dir.path().join(standby::STANDBY_CONF);
        std::fs::write(&standby_conf, "restore_command = 'cp %p'\nhot_standby = on\n").unwrap();
        let me = OsUser {
            name: "me".to_owned(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        let removed = prepare_promotion(dir.path(), &me).unwrap();
        assert_eq!(removed, ["primary_conninfo"]);
        assert!(!dir.path().join(STANDBY_SIGNAL).exists());
        assert!(dir.path().join(RECOVERY_SIGNAL).exists());
        assert!(recovery_pending(dir.path()));
        assert_eq!(std::fs::read_to_string(dir.path().join(AUTO_CONF)).unwrap(), "");
        let standby_text = std::fs::read_to_string(&standby_conf).unwrap();
        assert!(!standby_text.contains("restore_command"), "{standby_text}");
        assert!(!standby_text.contains("hot_standby"), "{standby_text}");
        clear_recovery(dir.path()).unwrap();
        assert!(!recovery_pending(dir.path()));
    }
}
