//! What makes a physical copy of a cluster start as a standby: `standby.signal`, Scion's
//! standby settings file, the hot-standby parameters copied from pg_control, and the
//! replication password file.
//!
//! Choice: the standby's settings go into `postgresql.standby.conf`, included from
//! `postgresql.conf` right after `postgresql.scion.conf`, so they win over Scion's clone
//! defaults (a clone's `max_connections` of 50 would stop a standby of a primary with 100), and
//! the whole file can be dropped at once when a copy is promoted. `postgresql.auto.conf` still
//! wins over both: a tool that writes its recovery settings there (pgBackRest's `--type=standby`)
//! keeps them.
//!
//! The replication password never lands in the data directory (which every snapshot and clone
//! carries): `primary_conninfo` names a libpq password file that the engine keeps outside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::conf::{self, quote_conf_value};
use crate::controldata::{ControlData, HOT_STANDBY_MINIMUMS, read_control_data};
use crate::error::{Error, Result};
use crate::user::OsUser;
use crate::version::BinarySearch;

/// Scion's standby settings file inside the data directory.
pub const STANDBY_CONF: &str = "postgresql.standby.conf";
/// The line appended to `postgresql.conf`, after Scion's own include line.
pub const STANDBY_INCLUDE_LINE: &str = "include_if_exists = 'postgresql.standby.conf'";
/// The file whose presence starts a server (12+) as a standby.
pub const STANDBY_SIGNAL: &str = "standby.signal";
const HEADER: &str = "# Written by Scion for the physical standby: the primary's hot-standby parameters,\n# the connection to the primary and the WAL archive.\n";

/// The settings a hot standby needs at least as high as its primary's (or it refuses to start,
/// or pauses replay), with the name pg_controldata prints for each. `track_commit_timestamp` is
/// copied too, as DBLab does, so commit timestamps replay.
const COPIED_PARAMETERS: &[(&str, &str)] = &[("track_commit_timestamp", "track_commit_timestamp")];

/// How a copy replays WAL once started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandbyConfig {
    /// libpq connection string to the primary (streaming); the password, if any, comes from
    /// `passfile` (see [`write_passfile`]), never from this string.
    pub primary_conninfo: Option<String>,
    /// The replication slot on the primary the standby streams from.
    pub primary_slot_name: Option<String>,
    /// Fetches archived WAL (`%f`, `%p`).
    pub restore_command: Option<String>,
    /// Further settings (the sync instance's `configs`); a hot-standby parameter set lower
    /// than the primary's is raised to the primary's.
    pub settings: BTreeMap<String, String>,
}

/// What [`configure`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyFiles {
    /// The settings written to [`STANDBY_CONF`], in file order.
    pub settings: Vec<(String, String)>,
    /// The primary's hot-standby parameters as pg_control recorded them (GUC names).
    pub primary_parameters: BTreeMap<String, String>,
}

/// Makes the copy in `data_dir` start as a standby: writes [`STANDBY_CONF`] (hot-standby
/// parameters from pg_control, `primary_conninfo`, `primary_slot_name`, `restore_command`,
/// `recovery_target_timeline = 'latest'`, the user's settings), includes it from
/// `postgresql.conf`, creates `standby.signal`, and gives the files to `user`.
pub async fn configure(
    search: &BinarySearch,
    data_dir: &Path,
    user: &OsUser,
    config: &StandbyConfig,
) -> Result<StandbyFiles> {
    let control = read_control_data(search, data_dir).await?;
    let primary_parameters = primary_parameters(&control);
    let settings = standby_settings(config, &primary_parameters)?;
    let mut text = String::from(HEADER);
    for (name, value) in &settings {
        let _ = writeln!(text, "{name} = {}", quote_conf_value(value));
    }
    write_owned(user, &data_dir.join(STANDBY_CONF), &text)?;
    let main_conf = data_dir.join("postgresql.conf");
    let current = match std::fs::read_to_string(&main_conf) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(Error::io("read", main_conf, error)),
    };
    let with_scion = conf::with_include_line(&current).unwrap_or(current);
    let updated = with_standby_include(&with_scion).unwrap_or(with_scion);
    write_owned(user, &main_conf, &updated)?;
    write_owned(user, &data_dir.join(STANDBY_SIGNAL), "")?;
    Ok(StandbyFiles { settings, primary_parameters })
}

/// Takes the standby's settings away from a copy that is to run as a primary (a promoted
/// snapshot, its clones): removes `standby.signal` and empties [`STANDBY_CONF`], whose include
/// line stays harmless. Idempotent.
pub fn clear(data_dir: &Path) -> Result<()> {
    let signal = data_dir.join(STANDBY_SIGNAL);
    match std::fs::remove_file(&signal) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io("remove", signal, error)),
    }
    let conf = data_dir.join(STANDBY_CONF);
    if conf.exists() {
        // Truncated in place, so the file keeps its owner.
        std::fs::write(&conf, "# Cleared by Scion: this copy no longer runs as a standby.\n")
            .map_err(|error| Error::io("write", conf, error))?;
    }
    Ok(())
}

/// Raises the hot-standby minimums in `data_dir`'s [`STANDBY_CONF`] to the primary's values
/// that pg_control now records: the file holds the values of the copy's time, and it wins over
/// Scion's settings, so a primary that raised `max_connections` since would otherwise stop the
/// standby at its next start. Returns the settings raised; a copy without the file is left as
/// it is.
pub fn raise_to_primary(
    data_dir: &Path,
    control: &ControlData,
    user: &OsUser,
) -> Result<Vec<String>> {
    let path = data_dir.join(STANDBY_CONF);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("read", path, error)),
    };
    let (updated, raised) = raised_settings(&text, &control.hot_standby_minimums());
    if !raised.is_empty() {
        write_owned(user, &path, &updated)?;
    }
    Ok(raised)
}

/// `text` (a settings file as [`configure`] writes it) with each of `minimums` at least that
/// high, and the names raised.
fn raised_settings(text: &str, minimums: &[(&str, u64)]) -> (String, Vec<String>) {
    let mut raised = Vec::new();
    let mut seen = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let parsed = line.split_once('=').and_then(|(name, value)| {
            let name = name.trim();
            let minimum = minimums.iter().find(|(known, _)| *known == name)?.1;
            let value: u64 = value.trim().trim_matches('\'').parse().ok()?;
            Some((name, value, minimum))
        });
        if let Some((name, value, minimum)) = parsed {
            seen.push(name.to_owned());
            if value < minimum {
                raised.push(name.to_owned());
                let _ = writeln!(out, "{name} = {}", quote_conf_value(&minimum.to_string()));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    for (name, minimum) in minimums {
        if !seen.iter().any(|seen| seen == name) {
            raised.push((*name).to_owned());
            let _ = writeln!(out, "{name} = {}", quote_conf_value(&minimum.to_string()));
        }
    }
    (out, raised)
}

/// Whether `data_dir` is set up to start as a standby (`standby.signal` exists).
pub fn is_standby(data_dir: &Path) -> bool {
    data_dir.join(STANDBY_SIGNAL).exists()
}

/// The primary's hot-standby parameters from pg_control, by GUC name.
pub fn primary_parameters(control: &ControlData) -> BTreeMap<String, String> {
    HOT_STANDBY_MINIMUMS
        .iter()
        .chain(COPIED_PARAMETERS)
        .filter_map(|(label, guc)| {
            control.settings.get(*label).map(|value| ((*guc).to_owned(), value.clone()))
        })
        .collect()
}

/// The settings of [`STANDBY_CONF`]: the user's, the primary's parameters where the user's
/// are missing or lower, then the recovery settings.
fn standby_settings(
    config: &StandbyConfig,
    primary: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>> {
    conf::check_settings(
        config.settings.iter().map(|(name, value)| (name.as_str(), value.as_str())),
    )?;
    for reserved in ["primary_conninfo", "primary_slot_name", "restore_command", "hot_standby"] {
        if config.settings.contains_key(reserved) {
            return Err(Error::InvalidSetting {
                name: reserved.to_owned(),
                reason: "Scion sets this one itself for a standby".to_owned(),
            });
        }
    }
    let mut settings = config.settings.clone();
    for (name, value) in primary {
        let keep_user = match (settings.get(name), value.parse::<u64>()) {
            (Some(user), Ok(primary)) => user.parse::<u64>().is_ok_and(|user| user >= primary),
            _ => false,
        };
        if !keep_user {
            settings.insert(name.clone(), value.clone());
        }
    }
    let mut entries: Vec<(String, String)> = settings.into_iter().collect();
    entries.push(("hot_standby".to_owned(), "on".to_owned()));
    entries.push(("recovery_target_timeline".to_owned(), "latest".to_owned()));
    let text_settings = [
        ("primary_conninfo", &config.primary_conninfo),
        ("primary_slot_name", &config.primary_slot_name),
        ("restore_command", &config.restore_command),
    ];
    for (name, value) in text_settings {
        if let Some(value) = value.as_deref().filter(|value| !value.trim().is_empty()) {
            if value.chars().any(char::is_control) {
                return Err(Error::InvalidSetting {
                    name: name.to_owned(),
                    reason: "the value has control characters".to_owned(),
                });
            }
            entries.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(entries)
}

/// Adds [`STANDBY_INCLUDE_LINE`] to `postgresql.conf` text unless it is there already.
fn with_standby_include(conf: &str) -> Option<String> {
    if conf.lines().any(|line| line.trim() == STANDBY_INCLUDE_LINE) {
        return None;
    }
    let mut text = conf.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# The physical standby's settings (after Scion's, so they win).\n");
    text.push_str(STANDBY_INCLUDE_LINE);
    text.push('\n');
    Some(text)
}

/// Writes a libpq password file at `path` (outside any data directory) holding `password` for
/// any host, port, database and user, mode 0600 and owned by `user`, the server's OS user
/// whose walreceiver reads it. It serves one standby's `primary_conninfo`, so wildcards are
/// exact enough. A server started in a sandbox must have the file's directory in view.
pub fn write_passfile(path: &Path, user: &OsUser, password: &str) -> Result<PathBuf> {
    if password.contains(['\n', '\r']) {
        return Err(Error::InvalidSetting {
            name: "passfile".to_owned(),
            reason: "the password has a line break, which a password file cannot hold".to_owned(),
        });
    }
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    let text = format!("*:*:*:*:{escaped}\n");
    // Created 0600 before the password is written, so it is never readable by others.
    let _ = std::fs::remove_file(path);
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| Error::io("create", path, error))?;
        file.write_all(text.as_bytes()).map_err(|error| Error::io("write", path, error))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| Error::io("chmod", path, error))?;
    user.own_path(path)?;
    Ok(path.to_path_buf())
}

fn write_owned(user: &OsUser, path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| Error::io("write", path, error))?;
    user.own_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> BTreeMap<String, String> {
        [("max_connections", "100"), ("max_wal_senders", "10"), ("track_commit_timestamp", "off")]
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn the_primarys_parameters_win_over_lower_user_settings() {
        let mut config = StandbyConfig {
            primary_conninfo: Some("host=db user=r passfile='/x/pass'".into()),
            primary_slot_name: Some("scion_standby_1".into()),
            restore_command: Some(String::new()),
            ..StandbyConfig::default()
        };
        config.settings.insert("max_connections".into(), "20".into());
        config.settings.insert("max_wal_senders".into(), "30".into());
        config.settings.insert("shared_buffers".into(), "1GB".into());
        let settings: BTreeMap<_, _> =
            standby_settings(&config, &primary()).unwrap().into_iter().collect();
        assert_eq!(settings["max_connections"], "100");
        assert_eq!(settings["max_wal_senders"], "30");
        assert_eq!(settings["shared_buffers"], "1GB");
        assert_eq!(settings["track_commit_timestamp"], "off");
        assert_eq!(settings["primary_slot_name"], "scion_standby_1");
        assert_eq!(settings["recovery_target_timeline"], "latest");
        assert!(!settings.contains_key("restore_command"), "an empty command is no command");
    }

    #[test]
    fn refuses_settings_scion_owns() {
        let mut config = StandbyConfig::default();
        config.settings.insert("primary_conninfo".into(), "host=x".into());
        assert!(standby_settings(&config, &primary()).is_err());
        let mut config = StandbyConfig::default();
        config.settings.insert("port".into(), "1".into());
        assert!(standby_settings(&config, &primary()).is_err());
    }

    #[test]
    fn the_standby_include_comes_once_and_last() {
        let text = conf::with_include_line("x = 1\n").unwrap();
        let text = with_standby_include(&text).unwrap();
        assert!(text.find(conf::INCLUDE_LINE).unwrap() < text.find(STANDBY_INCLUDE_LINE).unwrap());
        assert_eq!(with_standby_include(&text), None);
    }

    #[test]
    fn clear_takes_the_standby_away() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STANDBY_SIGNAL), "").unwrap();
        std::fs::write(dir.path().join(STANDBY_CONF), "primary_conninfo = 'x'\n").unwrap();
        assert!(is_standby(dir.path()));
        clear(dir.path()).unwrap();
        assert!(!is_standby(dir.path()));
        let text = std::fs::read_to_string(dir.path().join(STANDBY_CONF)).unwrap();
        assert!(!text.contains("primary_conninfo"), "{text}");
        clear(dir.path()).unwrap();
    }

    #[test]
    fn the_minimums_rise_to_the_primary_s_and_never_fall() {
        let text =
            "# header\nmax_connections = '100'\nmax_wal_senders = '20'\nhot_standby = 'on'\n";
        let minimums =
            [("max_connections", 200), ("max_wal_senders", 10), ("max_worker_processes", 8)];
        let (updated, raised) = raised_settings(text, &minimums);
        assert_eq!(raised, ["max_connections", "max_worker_processes"]);
        assert_eq!(
            updated,
            "# header\nmax_connections = '200'\nmax_wal_senders = '20'\nhot_standby = 'on'\n\
             max_worker_processes = '8'\n"
        );
        let (again, none) = raised_settings(&updated, &minimums);
        assert!(none.is_empty());
        assert_eq!(again, updated);
    }

    #[test]
    fn a_passfile_is_private_and_escaped() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let user = OsUser::lookup("postgres").unwrap();
        let path = dir.path().join("pass");
        write_passfile(&path, &user, r"a:b\c").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "*:*:*:*:a\\:b\\\\c\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), user.uid);
        assert!(write_passfile(&path, &user, "a\nb").is_err());
    }
}
