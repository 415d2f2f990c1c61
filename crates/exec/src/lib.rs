//! The only place Scion spawns processes.
//!
//! Every external program (`btrfs`, `zfs`, `initdb`, `postgres`, `pg_dump`, …) runs through [`Cmd`]:
//! it applies a timeout and a cancellation token, keeps the tail of stderr inside the typed
//! [`ExecError`], and logs the command line with secrets replaced by `***`.
//! It does not know what the programs mean; callers interpret their output.
//! A daemon may be started in a [`Sandbox`]: namespaces and a private root of its own.

pub mod cgroup;
mod sandbox;

pub use cgroup::{Cgroup, CgroupError, CgroupTree, CgroupVersion, Limits, Usage};
pub use sandbox::Sandbox;

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How many bytes of stderr an error keeps: enough for the last few lines of a tool's complaint.
pub const STDERR_TAIL_BYTES: usize = 4096;

const REDACTED: &str = "***";

/// An error from running an external program.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started (not installed, not executable, bad working directory).
    #[error("start `{program}`: {source}")]
    Spawn {
        /// The program as given to [`Cmd::new`].
        program: String,
        /// Why the start failed.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` {status}: {stderr_tail}")]
    Failed {
        /// The redacted command line.
        command: String,
        /// How the program ended.
        status: ExitInfo,
        /// The last [`STDERR_TAIL_BYTES`] of stderr, redacted, trimmed.
        stderr_tail: String,
    },
    /// The program did not finish in time and was killed.
    #[error("`{command}` timed out after {after:?}: {stderr_tail}")]
    Timeout {
        /// The redacted command line.
        command: String,
        /// The timeout that expired.
        after: Duration,
        /// The last bytes of stderr written before the kill.
        stderr_tail: String,
    },
    /// The caller cancelled the run and the program was killed.
    #[error("`{command}` cancelled")]
    Cancelled {
        /// The redacted command line.
        command: String,
    },
    /// Talking to the running program failed (a pipe broke, a wait failed).
    #[error("`{command}`: {source}")]
    Io {
        /// The redacted command line.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// The tail of stderr, where the program got as far as writing one.
    pub fn stderr_tail(&self) -> &str {
        match self {
            ExecError::Failed { stderr_tail, .. } | ExecError::Timeout { stderr_tail, .. } => {
                stderr_tail
            }
            ExecError::Spawn { .. } | ExecError::Cancelled { .. } | ExecError::Io { .. } => "",
        }
    }

    /// True when the program itself does not exist on this machine.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ExecError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// How a program ended: an exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitInfo {
    fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::Code(code),
            (None, Some(signal)) => ExitInfo::Signal(signal),
            // A status with neither a code nor a signal cannot come out of wait(2).
            (None, None) => ExitInfo::Code(-1),
        }
    }

    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitInfo::Code(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitInfo::Code(code) => write!(f, "exited with code {code}"),
            ExitInfo::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// What a finished program printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// How the program ended.
    pub status: ExitInfo,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Stdout as text, with invalid UTF-8 replaced.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, Clone)]
enum Arg {
    Plain(OsString),
    Secret(OsString),
}

/// A program to run, built up with arguments, environment and limits.
#[derive(Debug)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<Arg>,
    envs: Vec<(OsString, Arg)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    user: Option<(u32, u32)>,
    timeout: Option<Duration>,
    cancel: Option<CancellationToken>,
    stdin: Option<Vec<u8>>,
    new_session: bool,
    sandbox: Option<Sandbox>,
    redactions: Vec<String>,
}

impl Cmd {
    /// A command that runs `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl AsRef<Path>) -> Self {
        Cmd {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            env_clear: false,
            cwd: None,
            user: None,
            timeout: None,
            cancel: None,
            stdin: None,
            new_session: false,
            sandbox: None,
            redactions: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(Arg::Plain(arg.into()));
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(|arg| Arg::Plain(arg.into())));
        self
    }

    /// Appends an argument that is shown as `***` in logs and errors.
    pub fn secret_arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(Arg::Secret(arg.into()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), Arg::Plain(value.into())));
        self
    }

    /// Sets an environment variable whose value is never logged (`PGPASSWORD`, tokens).
    pub fn secret_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), Arg::Secret(value.into())));
        self
    }

    /// Starts the program with an empty environment plus the variables set here.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// Runs the program in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Runs the program as this user and group; supplementary groups are dropped.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Kills the program when it runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Kills the program when `token` is cancelled.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Writes `input` to the program's stdin, then closes it.
    pub fn stdin_bytes(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Starts the program in a session of its own, so that it survives its parent and never
    /// receives the signals of the parent's terminal.
    pub fn new_session(mut self) -> Self {
        self.new_session = true;
        self
    }

    /// Starts the program in `sandbox` (own mount, PID and IPC namespaces, a private root);
    /// only [`Cmd::spawn_daemon`] honours it, and other runs refuse a sandboxed command.
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Replaces every occurrence of `secret` with `***` in logs and errors (a password inside a
    /// connection string, say).
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        if !secret.is_empty() {
            self.redactions.push(secret);
        }
        self
    }

    /// The command line as it appears in logs: secrets replaced, arguments quoted where needed.
    pub fn display(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.envs {
            line.push_str(&key.to_string_lossy());
            line.push('=');
            line.push_str(&shell_quote(&self.show_arg(value)));
            line.push(' ');
        }
        line.push_str(&shell_quote(&self.program.to_string_lossy()));
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(&self.show_arg(arg)));
        }
        line
    }

    fn show_arg(&self, arg: &Arg) -> String {
        match arg {
            Arg::Plain(value) => self.redacted(&value.to_string_lossy()),
            Arg::Secret(_) => REDACTED.to_owned(),
        }
    }

    fn redacted(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.redactions {
            text = text.replace(secret.as_str(), REDACTED);
        }
        text
    }

    fn build(&self) -> tokio::process::Command {
        #[allow(clippy::disallowed_methods, reason = "this is the one place that spawns processes")]
        let mut command = tokio::process::Command::new(&self.program);
        for arg in &self.args {
            match arg {
                Arg::Plain(value) | Arg::Secret(value) => command.arg(value),
            };
        }
        if self.env_clear {
            command.env_clear();
        }
        for (key, value) in &self.envs {
            match value {
                Arg::Plain(value) | Arg::Secret(value) => command.env(key, value),
            };
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        if self.new_session {
            #[allow(unsafe_code, reason = "setsid(2) is async-signal-safe, as pre_exec requires")]
            // SAFETY: the closure calls only setsid(2), which allocates nothing and touches no
            // lock, so it is sound between fork and exec.
            unsafe {
                command
                    .pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
            }
        }
        command
    }

    /// Runs the program to its end and returns its output; a non-zero exit is an error.
    pub async fn output(self) -> Result<Output, ExecError> {
        let command = self.display();
        let output = self.output_any_status().await?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(ExecError::Failed {
                command,
                status: output.status,
                stderr_tail: tail(&output.stderr),
            })
        }
    }

    /// Runs the program to its end and returns its output whatever its exit status, for callers
    /// that give meaning to particular exit codes.
    pub async fn output_any_status(self) -> Result<Output, ExecError> {
        let command_line = self.display();
        let started = Instant::now();
        debug!(command = %command_line, "run");
        if self.sandbox.is_some() {
            return Err(ExecError::Spawn {
                program: self.program.to_string_lossy().into_owned(),
                source: std::io::Error::other("only daemons run in a sandbox"),
            });
        }
        let mut command = self.build();
        command
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        })?;
        let stdin_task = match (self.stdin.clone(), child.stdin.take()) {
            (Some(input), Some(mut pipe)) => Some(tokio::spawn(async move {
                // A program may exit without reading all its input; that is its business.
                let _ = pipe.write_all(&input).await;
                let _ = pipe.shutdown().await;
            })),
            _ => None,
        };
        let io_error = |source| ExecError::Io { command: command_line.clone(), source };
        let waited = child.wait_with_output();
        let cancelled = async {
            match &self.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let deadline = async {
            match self.timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        // Dropping `waited` drops the child, and kill_on_drop sends it SIGKILL.
        let result = tokio::select! {
            output = waited => output.map_err(io_error)?,
            () = cancelled => return Err(ExecError::Cancelled { command: command_line }),
            () = deadline => {
                return Err(ExecError::Timeout {
                    command: command_line,
                    after: self.timeout.unwrap_or_default(),
                    stderr_tail: String::new(),
                });
            }
        };
        if let Some(task) = stdin_task {
            let _ = task.await;
        }
        let output = Output {
            status: ExitInfo::from_status(result.status),
            stdout: result.stdout,
            stderr: self.redacted(&String::from_utf8_lossy(&result.stderr)).into_bytes(),
        };
        debug!(
            command = %command_line,
            status = %output.status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "finished"
        );
        Ok(output)
    }

    /// Runs the program to its end; a non-zero exit is an error and the output is dropped.
    pub async fn run(self) -> Result<(), ExecError> {
        self.output().await.map(|_| ())
    }

    /// Starts a long-lived program (a server) with stdin closed and stdout and stderr appended
    /// to `log`, and returns at once.
    ///
    /// The program is not killed when the returned [`Daemon`] is dropped: servers started this
    /// way outlive the engine. A background task reaps it when it exits, so its PID never lingers
    /// as a zombie that looks alive. Must be called inside a Tokio runtime.
    pub fn spawn_daemon(self, log: File) -> Result<Daemon, ExecError> {
        let command_line = self.display();
        debug!(command = %command_line, sandboxed = self.sandbox.is_some(), "start daemon");
        if self.sandbox.is_some() {
            return self.spawn_sandboxed(&log, command_line);
        }
        let log_err = log
            .try_clone()
            .map_err(|source| ExecError::Io { command: command_line.clone(), source })?;
        let mut command = self.build();
        command.stdin(Stdio::null()).stdout(log).stderr(log_err).kill_on_drop(false);
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| ExecError::Io {
            command: command_line.clone(),
            source: std::io::Error::other("the started process has no PID"),
        })?;
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(async move {
            let status =
                child.wait().await.map(ExitInfo::from_status).unwrap_or(ExitInfo::Code(-1));
            debug!(command = %command_line, pid, %status, "daemon exited");
            let _ = sender.send(Some(status));
        });
        Ok(Daemon { pid, exit: receiver })
    }

    /// [`Cmd::spawn_daemon`] in a sandbox: started with `clone(2)`, reaped through a pidfd,
    /// since tokio's process support cannot create namespaces.
    fn spawn_sandboxed(self, log: &File, command_line: String) -> Result<Daemon, ExecError> {
        let spawn_error = |source| ExecError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        };
        let Some(sandbox) = &self.sandbox else {
            return Err(spawn_error(std::io::Error::other("no sandbox")));
        };
        let mut envs: Vec<(OsString, OsString)> =
            if self.env_clear { Vec::new() } else { std::env::vars_os().collect() };
        for (key, value) in &self.envs {
            let value = match value {
                Arg::Plain(value) | Arg::Secret(value) => value.clone(),
            };
            envs.retain(|(existing, _)| existing != key);
            envs.push((key.clone(), value));
        }
        let launch = sandbox::Launch {
            program: self.program.as_os_str(),
            args: self
                .args
                .iter()
                .map(|arg| match arg {
                    Arg::Plain(value) | Arg::Secret(value) => value.clone(),
                })
                .collect(),
            envs,
            cwd: self.cwd.as_deref(),
            user: self.user,
            new_session: self.new_session,
            stdout: log,
            stderr: log,
        };
        let pid = sandbox::spawn(sandbox, &launch).map_err(spawn_error)?;
        let io_error = |source| ExecError::Io { command: command_line.clone(), source };
        let raw_pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io_error(std::io::Error::other("the started process has no PID")))?;
        let pidfd = rustix::process::pidfd_open(raw_pid, rustix::process::PidfdFlags::NONBLOCK)
            .map_err(|error| io_error(error.into()))?;
        #[allow(deprecated, reason = "the AsyncFd owns the pidfd")]
        let pidfd = tokio::io::unix::AsyncFd::with_interest(pidfd, tokio::io::Interest::READABLE)
            .map_err(io_error)?;
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(async move {
            // The pidfd turns readable when the process exits; waitid then reaps it.
            let _ = pidfd.readable().await;
            let status = match rustix::process::waitid(
                rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(pidfd.get_ref())),
                rustix::process::WaitIdOptions::EXITED,
            ) {
                Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => ExitInfo::Code(code),
                    (None, Some(signal)) => ExitInfo::Signal(signal),
                    (None, None) => ExitInfo::Code(-1),
                },
                _ => ExitInfo::Code(-1),
            };
            debug!(command = %command_line, pid, %status, "sandboxed daemon exited");
            let _ = sender.send(Some(status));
        });
        Ok(Daemon { pid, exit: receiver })
    }
}

/// A long-lived program started by [`Cmd::spawn_daemon`].
#[derive(Debug, Clone)]
pub struct Daemon {
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl Daemon {
    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the program ended, if it has.
    pub fn exit_status(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Waits until the program ends and returns how.
    pub async fn exited(&mut self) -> ExitInfo {
        match self.exit.wait_for(Option::is_some).await {
            Ok(status) => status.unwrap_or(ExitInfo::Code(-1)),
            // The reaper task is gone only when the runtime shuts down; treat it as an exit.
            Err(_) => ExitInfo::Code(-1),
        }
    }
}

fn tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    let text = String::from_utf8_lossy(&stderr[start..]);
    text.trim().to_owned()
}

fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_./=:@,+%*".contains(&byte));
    if plain { text.to_owned() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdout_and_succeeds() {
        let output = Cmd::new("sh").args(["-c", "printf hello"]).output().await.unwrap();
        assert_eq!(output.stdout_text(), "hello");
        assert!(output.status.success());
    }

    #[tokio::test]
    async fn failure_carries_status_and_stderr_tail() {
        let error = Cmd::new("sh")
            .args(["-c", "echo first >&2; echo 'the real reason' >&2; exit 3"])
            .output()
            .await
            .unwrap_err();
        match &error {
            ExecError::Failed { status, stderr_tail, .. } => {
                assert_eq!(*status, ExitInfo::Code(3));
                assert!(stderr_tail.ends_with("the real reason"), "{stderr_tail}");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(error.to_string().contains("exited with code 3"), "{error}");
    }

    #[tokio::test]
    async fn stderr_tail_keeps_only_the_end() {
        let error = Cmd::new("sh")
            .args(["-c", "head -c 10000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1"])
            .output()
            .await
            .unwrap_err();
        let tail = error.stderr_tail();
        assert!(tail.len() <= STDERR_TAIL_BYTES, "{}", tail.len());
        assert!(tail.ends_with("END"));
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let error = Cmd::new("/nonexistent/scion-no-such-program").output().await.unwrap_err();
        assert!(error.is_not_found(), "{error:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_program() {
        let started = Instant::now();
        let error = Cmd::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(100))
            .output()
            .await
            .unwrap_err();
        assert!(matches!(error, ExecError::Timeout { .. }), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn cancellation_kills_the_program() {
        let token = CancellationToken::new();
        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let error = Cmd::new("sleep").arg("30").cancel_on(token).output().await.unwrap_err();
        assert!(matches!(error, ExecError::Cancelled { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn secrets_are_redacted_in_display_and_errors() {
        let command = Cmd::new("sh")
            .args(["-c", "echo \"connect postgres://u:hunter2@h/db failed\" >&2; exit 1"])
            .secret_arg("--password=s3cret")
            .secret_env("PGPASSWORD", "pw-value")
            .redact("hunter2");
        let shown = command.display();
        assert!(!shown.contains("s3cret") && !shown.contains("pw-value"), "{shown}");
        assert!(shown.contains("PGPASSWORD=***"), "{shown}");
        let error = command.output().await.unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("postgres://u:***@h/db"), "{message}");
    }

    #[tokio::test]
    async fn stdin_is_fed_to_the_program() {
        let output = Cmd::new("cat").stdin_bytes("piped input").output().await.unwrap();
        assert_eq!(output.stdout_text(), "piped input");
    }

    #[tokio::test]
    async fn any_status_returns_the_code() {
        let output = Cmd::new("sh").args(["-c", "exit 7"]).output_any_status().await.unwrap();
        assert_eq!(output.status, ExitInfo::Code(7));
    }

    #[tokio::test]
    async fn daemon_runs_in_its_own_session_and_is_reaped() {
        let dir = std::env::temp_dir().join(format!("scion-exec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = File::create(dir.join("log")).unwrap();
        let mut daemon = Cmd::new("sh")
            .args(["-c", "ps -o sid= -p $$; echo out; sleep 0.2"])
            .new_session()
            .spawn_daemon(log)
            .unwrap();
        let pid = daemon.pid();
        assert_eq!(daemon.exit_status(), None);
        assert_eq!(daemon.exited().await, ExitInfo::Code(0));
        let written = std::fs::read_to_string(dir.join("log")).unwrap();
        let session: u32 = written.lines().next().unwrap().trim().parse().unwrap();
        assert_eq!(session, pid, "the daemon leads its own session");
        assert!(written.contains("out"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs as root, like the engine: namespaces and mounts need it.
    #[tokio::test]
    async fn sandboxed_daemon_sees_only_its_own_directories_and_processes() {
        let base = std::env::temp_dir().join(format!("scion-sandbox-test-{}", std::process::id()));
        let (root, own, other) = (base.join("root"), base.join("own"), base.join("other"));
        for dir in [&root, &own, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(other.join("secret"), "not yours").unwrap();
        let script = format!(
            "echo pid=$$; test -e /proc/{host_pid} || echo host-process-hidden; \
             echo mine > {own}/written && echo wrote-own; \
             cat {other}/secret 2>/dev/null || echo other-hidden; \
             touch /usr/scion-probe 2>/dev/null || echo usr-read-only; \
             ls /var/lib >/dev/null 2>&1 || echo var-hidden; \
             echo uid=$(id -u)",
            own = own.display(),
            other = other.display(),
            host_pid = std::process::id()
        );
        std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
        let log = File::create(base.join("log")).unwrap();
        let mut daemon = Cmd::new("/bin/sh")
            .args(["-c", &script])
            .user(65534, 65534)
            .sandbox(Sandbox::new(&root).writable(&own))
            .spawn_daemon(log)
            .unwrap();
        assert_eq!(daemon.exited().await, ExitInfo::Code(0));
        let written = std::fs::read_to_string(base.join("log")).unwrap();
        for expected in [
            "pid=1",
            "host-process-hidden",
            "wrote-own",
            "other-hidden",
            "usr-read-only",
            "var-hidden",
            "uid=65534",
        ] {
            assert!(written.lines().any(|line| line == expected), "{expected} in:\n{written}");
        }
        assert_eq!(std::fs::read_to_string(own.join("written")).unwrap(), "mine\n");
        // Nothing of the sandbox's mounts reached the host.
        assert!(std::fs::read_dir(&root).unwrap().next().is_none());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// glibc's setuid family waits for every thread it believes in; after clone(2) those are
    /// the parent's, and a thread being created or ending at that moment once hung a child for
    /// good. Threads come and go here while sandboxed daemons switch user.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sandboxed_daemons_switch_user_while_threads_come_and_go() {
        let base = std::env::temp_dir().join(format!("scion-sandbox-churn-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::spawn(|| std::hint::black_box(1 + 1)).join().unwrap();
                }
            })
        };
        for _ in 0..100 {
            let log = File::create(base.join("log")).unwrap();
            let mut daemon = Cmd::new("/bin/true")
                .user(65534, 65534)
                .sandbox(Sandbox::new(&root))
                .spawn_daemon(log)
                .unwrap();
            assert_eq!(daemon.exited().await, ExitInfo::Code(0));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn sandbox_setup_failures_name_the_step() {
        let base = std::env::temp_dir().join(format!("scion-sandbox-fail-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let log = File::create(base.join("log")).unwrap();
        let error = Cmd::new("/no/such/program")
            .sandbox(Sandbox::new(&base))
            .spawn_daemon(log)
            .unwrap_err();
        assert!(error.to_string().contains("execute the program"), "{error}");
        let log = File::create(base.join("log")).unwrap();
        let error = Cmd::new("/bin/true")
            .sandbox(Sandbox::new(&base).writable("/no/such/dir"))
            .spawn_daemon(log)
            .unwrap_err();
        assert!(error.to_string().contains("/no/such/dir"), "{error}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let shown = Cmd::new("psql").args(["-c", "select 1", "it's"]).display();
        assert_eq!(shown, r"psql -c 'select 1' 'it'\''s'");
    }
}
