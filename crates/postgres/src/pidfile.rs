//! `postmaster.pid`: what the running postmaster says about itself.
//!
//! The postmaster writes the file line by line as it starts (PID, data directory, start time,
//! port, first socket directory, first listen address, shared memory key) and rewrites the last
//! line with its status (`starting`, `stopping`, `ready`, `standby`). A file read mid-start may
//! lack the later lines; they are then `None`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file name inside the data directory.
pub const PID_FILE: &str = "postmaster.pid";

/// The postmaster's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmStatus {
    /// Starting up or in crash recovery; not accepting connections.
    Starting,
    /// Shutting down.
    Stopping,
    /// Accepting connections (read-only ones on a hot standby).
    Ready,
    /// In archive recovery with `hot_standby = off`: up, but accepting no connection until
    /// recovery ends (a hot standby reports `ready` instead, once it takes read-only ones).
    Standby,
}

impl PmStatus {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "starting" => Some(PmStatus::Starting),
            "stopping" => Some(PmStatus::Stopping),
            "ready" => Some(PmStatus::Ready),
            "standby" => Some(PmStatus::Standby),
            _ => None,
        }
    }

    /// True when the server takes connections.
    pub fn accepts_connections(self) -> bool {
        self == PmStatus::Ready
    }
}

/// The parsed contents of `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's PID.
    pub pid: u32,
    /// The data directory as the postmaster saw it.
    pub data_dir: PathBuf,
    /// When it started (seconds since the epoch).
    pub start_time: Option<i64>,
    /// The port it listens on.
    pub port: Option<u16>,
    /// Its first unix socket directory (empty when it has none).
    pub socket_dir: Option<PathBuf>,
    /// Its first listen address (empty when TCP is off).
    pub listen_address: Option<String>,
    /// The status line, once written.
    pub status: Option<PmStatus>,
}

impl PidFile {
    /// Parses the file's text; `None` when even the PID line is incomplete (the postmaster is
    /// writing it right now, or it is not a postmaster.pid).
    pub fn parse(text: &str) -> Option<Self> {
        let lines: Vec<&str> = text.split('\n').collect();
        // A line counts only when its newline was written.
        let complete = |index: usize| (index + 1 < lines.len()).then(|| lines[index]);
        let pid = complete(0)?.trim().parse().ok().filter(|pid| *pid > 0)?;
        Some(PidFile {
            pid,
            data_dir: complete(1).map(PathBuf::from).unwrap_or_default(),
            start_time: complete(2).and_then(|line| line.trim().parse().ok()),
            port: complete(3).and_then(|line| line.trim().parse().ok()),
            socket_dir: complete(4).map(|line| PathBuf::from(line.trim())),
            listen_address: complete(5).map(|line| line.trim().to_owned()),
            status: complete(7).and_then(PmStatus::parse),
        })
    }

    /// Reads the file of `data_dir`; `Ok(None)` when there is none or it is still incomplete.
    pub fn read(data_dir: &Path) -> Result<Option<Self>> {
        let path = data_dir.join(PID_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(PidFile::parse(&text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io("read", path, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str = "4242\n/data/clone1\n1732233445\n6001\n/run/scion/clone1\n127.0.0.1\n  6001001     32789\nready   \n";

    #[test]
    fn parses_a_ready_file() {
        let file = PidFile::parse(READY).unwrap();
        assert_eq!(
            file,
            PidFile {
                pid: 4242,
                data_dir: "/data/clone1".into(),
                start_time: Some(1_732_233_445),
                port: Some(6001),
                socket_dir: Some("/run/scion/clone1".into()),
                listen_address: Some("127.0.0.1".into()),
                status: Some(PmStatus::Ready),
            }
        );
        assert!(file.status.unwrap().accepts_connections());
    }

    #[test]
    fn statuses() {
        for (text, status) in [
            ("starting", PmStatus::Starting),
            ("stopping", PmStatus::Stopping),
            ("standby ", PmStatus::Standby),
        ] {
            let file = READY.replace("ready   ", text);
            assert_eq!(PidFile::parse(&file).unwrap().status, Some(status));
        }
        assert!(!PmStatus::Starting.accepts_connections());
        assert!(!PmStatus::Standby.accepts_connections(), "a cold standby refuses connections");
    }

    #[test]
    fn partial_files_have_no_late_lines() {
        let file = PidFile::parse("4242\n/data/clone1\n1732233445\n60").unwrap();
        assert_eq!(file.port, None);
        assert_eq!(file.status, None);
        assert_eq!(PidFile::parse("42"), None);
        assert_eq!(PidFile::parse(""), None);
        assert_eq!(PidFile::parse("garbage\n"), None);
    }
}
