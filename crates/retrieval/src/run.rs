//! Running the long tools (pg_dump, pg_restore, psql on big files) with their output streamed
//! into a log file that is read while they run, so progress can count the tables they report.
//!
//! `exec::Cmd::output` keeps output in memory until the end, so these tools are started with
//! `Cmd::spawn_daemon` (stdout and stderr into the log file) and are killed by their PID on
//! cancellation or when the run is dropped. Short tools go through `Cmd::output` directly.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use exec::{Cmd, Daemon, ExitInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::error::{Error, Result};
use crate::progress::Stage;

/// How often a running tool's log is read for progress.
pub(crate) const PROGRESS_TICK: Duration = Duration::from_secs(1);

/// How a logged tool ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitInfo,
    /// Everything the tool wrote.
    pub(crate) log: String,
}

/// A started tool that is killed (SIGTERM) if dropped before it exits.
struct Running {
    daemon: Daemon,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.daemon.exit_status().is_none() {
            terminate(self.daemon.pid());
        }
    }
}

fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let pid = Pid::from_raw(pid);
        // A tool started in a session of its own (physical mode's `sh -c` command line) leads
        // its process group: the group goes, or the shell's children would outlive it.
        if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
            let _ = nix::sys::signal::killpg(pid, Signal::SIGTERM);
        } else {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
}

/// Runs `cmd` to its end with its output in `log_path`; every [`PROGRESS_TICK`], `on_output`
/// gets the text written since the last call. Cancellation kills the tool.
pub(crate) async fn run_logged(
    cmd: Cmd,
    log_path: &Path,
    stage: Stage,
    cancel: &CancellationToken,
    mut on_output: impl FnMut(&str),
) -> Result<Finished> {
    let log = File::create(log_path).map_err(|error| Error::io("create log", log_path, error))?;
    let tool = cmd.display();
    let daemon = cmd.spawn_daemon(log).map_err(|error| spawn_error(stage, &error))?;
    let mut running = Running { daemon };
    let mut reader = LogReader::new(log_path);
    let status = loop {
        tokio::select! {
            status = running.daemon.exited() => break status,
            () = cancel.cancelled() => {
                terminate(running.daemon.pid());
                let _ = running.daemon.exited().await;
                return Err(Error::Cancelled { stage });
            }
            () = tokio::time::sleep(PROGRESS_TICK) => {
                let text = reader.read_new();
                if !text.is_empty() {
                    on_output(&text);
                }
            }
        }
    };
    let text = reader.read_new();
    if !text.is_empty() {
        on_output(&text);
    }
    debug!(%tool, %status, "tool finished");
    Ok(Finished { status, log: reader.all() })
}

/// Maps a failure to run a tool: a missing program is [`Error::ToolMissing`], a cancelled one
/// [`Error::Cancelled`].
pub(crate) fn spawn_error(stage: Stage, error: &exec::ExecError) -> Error {
    if matches!(error, exec::ExecError::Cancelled { .. }) {
        return Error::Cancelled { stage };
    }
    if error.is_not_found() {
        Error::ToolMissing {
            tool: error.to_string(),
            detail: "the program is not installed".to_owned(),
        }
    } else {
        Error::Failed { stage, stderr_tail: error.to_string() }
    }
}

/// Reads what a tool appended to its log since the last read.
struct LogReader {
    path: PathBuf,
    offset: u64,
    /// A line cut in the middle by a read, completed by the next one.
    partial: String,
}

impl LogReader {
    fn new(path: &Path) -> Self {
        LogReader { path: path.to_path_buf(), offset: 0, partial: String::new() }
    }

    /// Whole lines written since the last call.
    fn read_new(&mut self) -> String {
        let Ok(mut file) = File::open(&self.path) else { return String::new() };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return String::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        match self.partial.rfind('\n') {
            Some(end) => {
                let rest = self.partial.split_off(end + 1);
                std::mem::replace(&mut self.partial, rest)
            }
            None => String::new(),
        }
    }

    fn all(&self) -> String {
        std::fs::read(&self.path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

/// Counts the lines in a pg_dump/pg_restore `--verbose` log that mark one table's data done.
pub(crate) fn count_table_lines(text: &str) -> u64 {
    text.lines()
        .filter(|line| {
            line.contains("processing data for table") || line.contains("dumping contents of table")
        })
        .count() as u64
}
