//! `pg_controldata`: a data directory's cluster state, latest checkpoint, timeline, checksums.
//!
//! It runs with `LC_ALL=C`, so the labels are the English ones parsed here. npm's 13 ships no
//! `pg_controldata`; then another installed major's tool reads the file when its control file
//! version is the same (1300 for 13 to 16, 1700 for 17, 1800 for 18), which the output's own
//! "pg_control version number" line and the absence of a CRC warning confirm.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use exec::Cmd;

use crate::error::{Error, Result};
use crate::version::{BinarySearch, PgBinaries, PgMajor};

const CONTROLDATA_TIMEOUT: Duration = Duration::from_secs(30);

/// The control file version a major writes (PG_CONTROL_VERSION).
pub fn control_version(major: PgMajor) -> u32 {
    match major.number() {
        ..=16 => 1300,
        17 => 1700,
        _ => 1800,
    }
}

/// A WAL location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = ();

    /// Parses the `X/Y` form.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (high, low) = text.trim().split_once('/').ok_or(())?;
        let high = u32::from_str_radix(high, 16).map_err(|_| ())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| ())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The cluster state recorded in pg_control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// Cleanly shut down: starts without replay.
    ShutDown,
    /// A standby shut down cleanly.
    ShutDownInRecovery,
    /// A shutdown was in progress (and may have been cut short).
    ShuttingDown,
    /// Crashed during crash recovery.
    InCrashRecovery,
    /// In archive (standby) recovery, or crashed there.
    InArchiveRecovery,
    /// Running, or crashed while running: the next start replays WAL.
    InProduction,
    /// A state this crate does not know.
    Other(String),
}

impl ClusterState {
    fn parse(text: &str) -> Self {
        match text {
            "shut down" => ClusterState::ShutDown,
            "shut down in recovery" => ClusterState::ShutDownInRecovery,
            "shutting down" => ClusterState::ShuttingDown,
            "in crash recovery" => ClusterState::InCrashRecovery,
            "in archive recovery" => ClusterState::InArchiveRecovery,
            "in production" => ClusterState::InProduction,
            other => ClusterState::Other(other.to_owned()),
        }
    }

    /// True when the directory was shut down cleanly (nothing to replay).
    pub fn is_clean(&self) -> bool {
        matches!(self, ClusterState::ShutDown | ClusterState::ShutDownInRecovery)
    }
}

/// What pg_controldata says about a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// The control file's format version.
    pub control_version: u32,
    /// The catalog version.
    pub catalog_version: u64,
    /// The cluster's unique id, shared by its physical copies.
    pub system_identifier: u64,
    /// The state at the last control file update.
    pub state: ClusterState,
    /// The latest checkpoint's location.
    pub checkpoint_lsn: Lsn,
    /// The latest checkpoint's redo location.
    pub redo_lsn: Lsn,
    /// The latest checkpoint's timeline.
    pub timeline: u32,
    /// Whether data page checksums are on.
    pub data_checksums: bool,
    /// The server settings pg_control records (the `<name> setting` lines: `max_connections`,
    /// `max_worker_processes`, `max_wal_senders`, `max_prepared_xacts`, `max_locks_per_xact`,
    /// `track_commit_timestamp`, `wal_level`, …), by the name pg_controldata prints.
    pub settings: BTreeMap<String, String>,
    /// When the latest checkpoint was written (on a standby, the primary's checkpoint its latest
    /// restartpoint replayed); `None` when the line is not understood.
    pub checkpoint_time: Option<DateTime<Utc>>,
    /// How far recovery must replay before the data is consistent ("Minimum recovery ending
    /// location"): 0/0 for a cluster that was not in archive recovery.
    pub min_recovery_lsn: Lsn,
    /// The source's `max_prepared_transactions` as the WAL records it ("max_prepared_xacts
    /// setting"): a server replaying that WAL needs at least as many; `None` when absent.
    pub max_prepared_transactions: Option<u32>,
}

/// The pg_controldata names of the settings a hot standby needs at least as high as its
/// primary's, with the names of the settings.
pub const HOT_STANDBY_MINIMUMS: [(&str, &str); 5] = [
    ("max_connections", "max_connections"),
    ("max_worker_processes", "max_worker_processes"),
    ("max_wal_senders", "max_wal_senders"),
    ("max_prepared_xacts", "max_prepared_transactions"),
    ("max_locks_per_xact", "max_locks_per_transaction"),
];

impl ControlData {
    /// The settings a hot standby of this cluster needs at least as high as its primary's, as
    /// (setting name, value) pairs: pg_control records the primary's values, and a standby
    /// started with lower ones refuses to run.
    pub fn hot_standby_minimums(&self) -> Vec<(&'static str, u64)> {
        HOT_STANDBY_MINIMUMS
            .iter()
            .filter_map(|(label, name)| Some((*name, self.settings.get(*label)?.parse().ok()?)))
            .collect()
    }

    /// Parses `pg_controldata` output (C locale).
    pub fn parse(data_dir: &Path, output: &str) -> Result<Self> {
        let bad = |reason: String| Error::ControlData { data_dir: data_dir.to_path_buf(), reason };
        if output.contains("CRC") && output.contains("WARNING") {
            return Err(bad(
                "the control file's CRC does not match (wrong pg_controldata version?)".to_owned(),
            ));
        }
        let field = |label: &str| -> Result<&str> {
            output
                .lines()
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    (key.trim() == label).then(|| value.trim())
                })
                .ok_or_else(|| bad(format!("no {label:?} line")))
        };
        fn number<T: FromStr>(label: &str, text: &str) -> std::result::Result<T, String> {
            text.parse().map_err(|_| format!("{label:?} is {text:?}"))
        }
        let lsn = |label: &str| -> Result<Lsn> {
            let text = field(label)?;
            text.parse().map_err(|()| bad(format!("{label:?} is {text:?}")))
        };
        let parse = |label: &str| -> Result<u64> { number(label, field(label)?).map_err(bad) };
        let settings: BTreeMap<String, String> = output
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                let name = key.trim().strip_suffix(" setting")?;
                Some((name.to_owned(), value.trim().to_owned()))
            })
            .collect();
        Ok(ControlData {
            control_version: u32::try_from(parse("pg_control version number")?)
                .map_err(|_| bad("control version out of range".to_owned()))?,
            catalog_version: parse("Catalog version number")?,
            system_identifier: parse("Database system identifier")?,
            state: ClusterState::parse(field("Database cluster state")?),
            checkpoint_lsn: lsn("Latest checkpoint location")?,
            redo_lsn: lsn("Latest checkpoint's REDO location")?,
            timeline: u32::try_from(parse("Latest checkpoint's TimeLineID")?)
                .map_err(|_| bad("timeline out of range".to_owned()))?,
            data_checksums: parse("Data page checksum version")? != 0,
            checkpoint_time: field("Time of latest checkpoint").ok().and_then(parse_time),
            min_recovery_lsn: lsn("Minimum recovery ending location").unwrap_or(Lsn(0)),
            max_prepared_transactions: settings
                .get("max_prepared_xacts")
                .and_then(|text| text.parse().ok()),
            settings,
        })
    }
}

/// Parses pg_controldata's `%c` time in the C locale, printed in UTC (the tool runs with
/// `TZ=UTC`).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(
        &text.split_whitespace().collect::<Vec<_>>().join(" "),
        "%a %b %d %H:%M:%S %Y",
    )
    .ok()
    .map(|time| time.and_utc())
}

/// Reads the control data of `data_dir` with the `pg_controldata` of its major, or, when that
/// major has none, with another installed major's tool of the same control file version.
pub async fn read_control_data(search: &BinarySearch, data_dir: &Path) -> Result<ControlData> {
    let major = PgMajor::of_data_dir(data_dir)?;
    let expected = control_version(major);
    let own = search.locate(major).and_then(|binaries| binaries.tool("pg_controldata"));
    let tool = match own {
        Ok(tool) => tool,
        Err(missing) => PgMajor::all()
            .filter(|other| *other != major && control_version(*other) == expected)
            .filter_map(|other| search.locate(other).ok())
            .find_map(|binaries: PgBinaries| binaries.tool("pg_controldata").ok())
            .ok_or(missing)?,
    };
    let output = Cmd::new(tool)
        .arg("-D")
        .arg(data_dir)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env("TZ", "UTC")
        .timeout(CONTROLDATA_TIMEOUT)
        .output()
        .await?;
    let control = ControlData::parse(data_dir, &output.stdout_text())?;
    if control.control_version != expected {
        return Err(Error::ControlData {
            data_dir: data_dir.to_path_buf(),
            reason: format!(
                "control file version {} where PostgreSQL {major} writes {expected}",
                control.control_version
            ),
        });
    }
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "pg_control version number:            1300
Catalog version number:               202107181
Database system identifier:           7440268744385630211
Database cluster state:               shut down
pg_control last modified:             Fri Nov 22 10:00:00 2024
Latest checkpoint location:           0/1701F28
Latest checkpoint's REDO location:    0/1701F28
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Time of latest checkpoint:            Fri Nov  1 10:00:00 2024
Minimum recovery ending location:     0/3000148
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           5
Data page checksum version:           1
wal_level setting:                    replica
max_connections setting:              100
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
";

    #[test]
    fn parses_output() {
        let data = ControlData::parse(Path::new("/d"), OUTPUT).unwrap();
        assert_eq!(data.control_version, 1300);
        assert_eq!(data.catalog_version, 202_107_181);
        assert_eq!(data.system_identifier, 7_440_268_744_385_630_211);
        assert_eq!(data.state, ClusterState::ShutDown);
        assert!(data.state.is_clean());
        assert_eq!(data.checkpoint_lsn, Lsn(0x0170_1F28));
        assert_eq!(data.checkpoint_lsn.to_string(), "0/1701F28");
        assert_eq!(data.timeline, 1);
        assert!(data.data_checksums);
        assert_eq!(data.settings["max_connections"], "100");
        assert_eq!(data.settings["max_locks_per_xact"], "64");
        assert_eq!(data.settings["track_commit_timestamp"], "off");
        assert_eq!(data.settings.len(), 7);
        assert_eq!(
            data.checkpoint_time.map(|time| time.to_rfc3339()).as_deref(),
            Some("2024-11-01T10:00:00+00:00")
        );
        assert_eq!(data.min_recovery_lsn, Lsn(0x0300_0148));
        assert_eq!(data.max_prepared_transactions, Some(5));
        assert_eq!(
            data.hot_standby_minimums(),
            [
                ("max_connections", 100),
                ("max_worker_processes", 8),
                ("max_wal_senders", 10),
                ("max_prepared_transactions", 5),
                ("max_locks_per_transaction", 64),
            ]
        );
    }

    #[test]
    fn lsn_round_trips() {
        let lsn: Lsn = "1A/FF000028".parse().unwrap();
        assert_eq!(lsn, Lsn(0x1A_FF00_0028));
        assert_eq!(lsn.to_string(), "1A/FF000028");
        assert!("nonsense".parse::<Lsn>().is_err());
    }

    #[test]
    fn rejects_crc_warnings_and_missing_lines() {
        let warned = format!(
            "WARNING: Calculated CRC checksum does not match value stored in file.\n{OUTPUT}"
        );
        assert!(ControlData::parse(Path::new("/d"), &warned).is_err());
        assert!(ControlData::parse(Path::new("/d"), "pg_control version number: 1300\n").is_err());
    }
}
