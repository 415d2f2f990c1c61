//! One running server: start, adopt, stop, and the stale `postmaster.pid` a snapshot carries.
//!
//! The server is `postgres` itself, started as the unprivileged OS user in a session of its own
//! (not through `pg_ctl`, which polls every 100 ms), with stderr appended to the instance's log
//! file. Readiness is the `ready` (or `standby`) status line of `postmaster.pid`, watched with
//! inotify on the data directory, then a trusted connection over the private socket; that
//! connection is kept for the caller's first admin statements. The status line is acted on as
//! soon as it is written, not when the file is closed: the postmaster allows connections before
//! writing it and fsyncs the file before closing it (4–5 ms on a btrfs pool on a loop device),
//! so the confirming connection waits in the listen queue during that fsync instead of after
//! our wake-up. A pidfd tells when the postmaster exits, for the server we started and for one
//! we adopted after an engine restart, so neither waiting for readiness nor stopping polls.
//!
//! A spec with a `sandbox_root` runs the server isolated (docs/adr/0002-clone-isolation.md):
//! its own mount, PID and IPC namespaces and a private root with only its data directory, its
//! socket directory and its installation in view. Its `postmaster.pid` then names PID 1, so the
//! server is found on the host by its working directory ([`find_postmaster`]), never by a PID
//! the clone could have written.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::{Cmd, Daemon};
use inotify::{Inotify, WatchMask};
use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use crate::admin::Admin;
use crate::conf::{self, HbaSettings, SCION_CONF, ServerSettings};
use crate::error::{Error, Result};
use crate::pidfile::{PID_FILE, PidFile};
use crate::user::OsUser;
use crate::version::{PgBinaries, PgMajor};

/// How long a start may take by default, crash recovery included.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(120);
/// inotify reports every write of `postmaster.pid`; this re-check only guards against a lost
/// event (a full inotify queue) and is far longer than a normal start.
const FALLBACK_RECHECK: Duration = Duration::from_millis(250);
/// How long to wait for the postmaster to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How much of the server log an error carries.
const LOG_TAIL_BYTES: u64 = 2048;
/// The longest unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Everything needed to run one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The data directory (PGDATA).
    pub data_dir: PathBuf,
    /// Port, socket, memory and the user's settings.
    pub settings: ServerSettings,
    /// Who may connect, and how.
    pub hba: HbaSettings,
    /// The database the admin role connects to.
    pub admin_database: String,
    /// The file the server's log is appended to.
    pub log_file: PathBuf,
    /// The OS user the server runs as.
    pub user: OsUser,
    /// How long a start may take before it is abandoned.
    pub start_timeout: Duration,
    /// An empty directory to build the server's private root on; with it the server runs
    /// isolated (its own mount, PID and IPC namespaces; only its data directory, its socket
    /// directory and the binaries in view). `None` runs it in the host's namespaces.
    pub sandbox_root: Option<PathBuf>,
    /// Host directories a sandboxed server may read besides its own (a WAL archive its
    /// `restore_command` copies from); ignored without `sandbox_root`.
    pub read_only_dirs: Vec<PathBuf>,
    /// The control group a sandboxed server starts in, made beforehand with its limits; the
    /// postmaster enters it before it executes, and every backend it forks stays there.
    /// Ignored without `sandbox_root`.
    pub cgroup: Option<exec::Cgroup>,
    /// Whether [`Instance::start`] confirms readiness with an admin connection over the socket
    /// (kept for the caller's first statements; it pays the first backend's cache rebuild).
    /// Without it the start returns at the `ready` line, when the server accepts connections,
    /// and the first connection is the caller's: a woken clone's client, which the engine
    /// carries to the server at once.
    pub confirm_start: bool,
}

impl InstanceSpec {
    /// A spec with the clone defaults; the admin role connects to the `postgres` database.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        settings: ServerSettings,
        admin_role: &str,
        log_file: impl Into<PathBuf>,
        user: OsUser,
    ) -> Self {
        InstanceSpec {
            data_dir: data_dir.into(),
            settings,
            hba: HbaSettings::new(admin_role),
            admin_database: "postgres".to_owned(),
            log_file: log_file.into(),
            user,
            start_timeout: DEFAULT_START_TIMEOUT,
            sandbox_root: None,
            read_only_dirs: Vec::new(),
            cgroup: None,
            confirm_start: true,
        }
    }

    /// Rewrites the files Scion owns in the data directory (settings, the include line,
    /// pg_hba.conf) and makes the data and socket directories fit for the server. Called by
    /// [`Instance::start`]; public for callers that prepare a directory ahead of time.
    pub fn write_config(&self) -> Result<()> {
        let socket_path = self.settings.socket_path();
        let len = socket_path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::SocketPathTooLong { path: socket_path, len });
        }
        self.user.own_data_dir(&self.data_dir)?;
        let settings = self.settings.with_carried(&crate::carried::read(&self.data_dir)?);
        self.write_owned(&self.data_dir.join(SCION_CONF), &settings.render(&self.data_dir)?)?;
        self.write_owned(&self.data_dir.join("pg_hba.conf"), &self.hba.render()?)?;
        self.write_owned(&self.data_dir.join("pg_ident.conf"), &self.hba.render_ident()?)?;
        let main_conf = self.data_dir.join("postgresql.conf");
        let text = match std::fs::read_to_string(&main_conf) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(Error::io("read", main_conf, error)),
        };
        if let Some(text) = conf::with_include_line(&text) {
            self.write_owned(&main_conf, &text)?;
        }
        self.user.own_dir(&self.settings.socket_dir, 0o700)
    }

    fn write_owned(&self, path: &Path, text: &str) -> Result<()> {
        // Skipping identical rewrites keeps the hot path free of needless writes and fsyncs.
        if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        std::fs::write(path, text).map_err(|error| Error::io("write", path, error))?;
        self.user.own_path(path)
    }
}

/// How to stop a server, as `pg_ctl stop -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopMode {
    /// SIGTERM: wait for the sessions to end.
    Smart,
    /// SIGINT: roll back and disconnect the sessions, then shut down cleanly.
    Fast,
    /// SIGQUIT: quit at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::TERM,
            StopMode::Fast => Signal::INT,
            StopMode::Immediate => Signal::QUIT,
        }
    }

    fn next(self) -> Option<Self> {
        match self {
            StopMode::Smart => Some(StopMode::Fast),
            StopMode::Fast => Some(StopMode::Immediate),
            StopMode::Immediate => None,
        }
    }
}

/// The first entry of a `listen_addresses` setting, as the server writes it into
/// `postmaster.pid`; `None` for an empty setting (no TCP).
fn first_listen_address(listen_addresses: &str) -> Option<String> {
    listen_addresses
        .split(',')
        .map(str::trim)
        .find(|address| !address.is_empty())
        .map(str::to_owned)
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The server exited after the signal of this mode (the asked one, or an escalation).
    ByMode(StopMode),
    /// The server ignored every mode and was killed with SIGKILL, its processes too.
    Killed,
    /// The server was already gone.
    AlreadyGone,
}

/// A running server, started or adopted by this process.
#[derive(Debug)]
pub struct Instance {
    binaries: PgBinaries,
    spec: InstanceSpec,
    /// The postmaster's PID on the host.
    pid: u32,
    /// The PID the postmaster writes into `postmaster.pid`: its PID in its own namespace (1 in
    /// a sandbox).
    pid_in_file: u32,
    pidfd: AsyncFd<OwnedFd>,
    daemon: Option<Daemon>,
    admin: Option<Admin>,
    timings: Option<StartTimings>,
    /// The first address the server listens on over TCP, as `listen_addresses` names it.
    listen_address: Option<String>,
}

/// Where the time of a start went, each measured from the call to [`Instance::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTimings {
    /// Until `postgres` was spawned (stale pid file check, settings written).
    pub spawned: Duration,
    /// Until postmaster.pid said `ready`.
    pub ready: Duration,
    /// Until the admin connection was established: the server accepts connections (the
    /// `ready` line, for a start that is not confirmed).
    pub connected: Duration,
}

impl Instance {
    /// Starts the server on `spec.data_dir` and returns once it accepts connections.
    ///
    /// A `postmaster.pid` left by another server (a snapshot of a live instance, a crash) is
    /// removed first; one of a live postmaster of this directory is [`Error::AlreadyRunning`].
    /// If the server exits during the start, the error carries the tail of its log; if it is not
    /// ready within `spec.start_timeout`, it is stopped immediately and the start fails.
    pub async fn start(binaries: &PgBinaries, spec: InstanceSpec) -> Result<Instance> {
        let started = Instant::now();
        check_major(binaries, &spec.data_dir)?;
        remove_stale_pid_file(&spec.data_dir)?;
        spec.write_config()?;
        let log = open_log(&spec.log_file)?;
        let log_offset = log.metadata().map(|meta| meta.len()).unwrap_or(0);
        // Watch before spawning, so that no write of postmaster.pid goes unseen.
        let watch = PidFileWatch::new(&spec.data_dir)?;
        let settings = &spec.settings;
        let mut command = Cmd::new(binaries.postgres());
        if let Some(root) = &spec.sandbox_root {
            let mut sandbox =
                exec::Sandbox::new(root).writable(&spec.data_dir).writable(&settings.socket_dir);
            // The whole installation: bin, lib (extensions) and share (catalogs, time zones).
            if let Some(prefix) = binaries.bin_dir().parent() {
                sandbox = sandbox.read_only(prefix);
            }
            for dir in &spec.read_only_dirs {
                sandbox = sandbox.read_only(dir);
            }
            if let Some(cgroup) = &spec.cgroup {
                sandbox = sandbox.cgroup(cgroup.clone());
            }
            command = command.sandbox(sandbox);
        }
        let daemon = command
            .arg("-D")
            .arg(&spec.data_dir)
            .args(["-p", &settings.port.to_string()])
            .arg("-c")
            .arg(format!("listen_addresses={}", settings.listen_addresses))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", settings.socket_dir.display()))
            .user(spec.user.uid, spec.user.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&spec.data_dir)
            .new_session()
            .spawn_daemon(log)?;
        let spawned = started.elapsed();
        let listen_address = first_listen_address(&settings.listen_addresses);
        let pid = daemon.pid();
        let pidfd = match open_pidfd(pid) {
            Ok(pidfd) => pidfd,
            // Exited, and reaped by the daemon's waiter, before its pidfd could be opened: a
            // start that failed at once (a bad setting, a locked data directory).
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {
                let mut daemon = daemon;
                return Err(Error::StartFailed {
                    data_dir: spec.data_dir.clone(),
                    status: daemon.exited().await,
                    log_tail: log_tail(&spec.log_file, log_offset),
                });
            }
            Err(error) => return Err(Error::io("open pidfd of", &spec.data_dir, error)),
        };
        let mut instance = Instance {
            binaries: binaries.clone(),
            spec,
            pid,
            pid_in_file: namespace_pid(pid).unwrap_or(pid),
            pidfd,
            daemon: Some(daemon),
            admin: None,
            timings: None,
            listen_address,
        };
        match instance.wait_ready(watch, started + instance.spec.start_timeout).await {
            Ok(()) => {}
            Err(error) => return Err(instance.failed_start(error, log_offset).await),
        }
        let ready = started.elapsed();
        if instance.spec.confirm_start {
            match instance.connect_admin().await {
                Ok(admin) => instance.admin = Some(admin),
                Err(error) => {
                    // A server the caller cannot use must not keep running behind its back.
                    let _ = instance.stop_inner(StopMode::Immediate, KILL_WAIT).await;
                    return Err(error);
                }
            }
        }
        let timings = StartTimings { spawned, ready, connected: started.elapsed() };
        instance.timings = Some(timings);
        info!(
            data_dir = %instance.spec.data_dir.display(),
            pid,
            port = instance.spec.settings.port,
            ready_ms = timings.ready.as_secs_f64() * 1000.0,
            elapsed_ms = timings.connected.as_secs_f64() * 1000.0,
            "postgres started"
        );
        Ok(instance)
    }

    /// Takes over a server that is already running on `spec.data_dir` (after an engine
    /// restart), from its `postmaster.pid`: the PID must be a live postgres whose working
    /// directory is this data directory, on the spec's port and socket directory. Waits for
    /// readiness if it is still starting.
    pub async fn adopt(binaries: &PgBinaries, spec: InstanceSpec) -> Result<Instance> {
        let started = Instant::now();
        check_major(binaries, &spec.data_dir)?;
        let data_dir = spec.data_dir.clone();
        let not_running = |reason: String| Error::NotRunning { data_dir: data_dir.clone(), reason };
        let watch = PidFileWatch::new(&spec.data_dir)?;
        let file = PidFile::read(&spec.data_dir)?
            .ok_or_else(|| not_running("there is no postmaster.pid".to_owned()))?;
        // The file names the PID in the server's own namespace; a sandboxed server is found on
        // the host by its working directory.
        let pid = find_postmaster(file.pid, &spec.data_dir).ok_or_else(|| {
            not_running(format!(
                "no postgres serves this directory (postmaster.pid names PID {}): it is stale",
                file.pid
            ))
        })?;
        let pidfd = open_pidfd(pid)
            .map_err(|_| not_running(format!("PID {pid} is gone: postmaster.pid is stale")))?;
        let instance = Instance::found(binaries, spec, pid, pidfd);
        instance.wait_ready(watch, started + instance.spec.start_timeout).await.map_err(
            |wait| match wait {
                WaitError::Exited => not_running(format!("PID {pid} exited")),
                WaitError::Timeout(after) => Error::StartTimeout {
                    data_dir: data_dir.clone(),
                    after,
                    log_tail: log_tail(&instance.spec.log_file, 0),
                },
                WaitError::Failed(error) => error,
            },
        )?;
        // The socket lines are written late in startup: compare them once the server is ready.
        let file = PidFile::read(&instance.spec.data_dir)?
            .ok_or_else(|| not_running("postmaster.pid vanished".to_owned()))?;
        let mismatch = |reason: String| Error::AdoptMismatch { data_dir: data_dir.clone(), reason };
        if file.port.is_some_and(|port| port != instance.spec.settings.port) {
            return Err(mismatch(format!(
                "it listens on port {:?}, expected {}",
                file.port, instance.spec.settings.port
            )));
        }
        if file.socket_dir.as_ref().is_some_and(|dir| *dir != instance.spec.settings.socket_dir) {
            return Err(mismatch(format!(
                "its socket is in {:?}, expected {}",
                file.socket_dir,
                instance.spec.settings.socket_dir.display()
            )));
        }
        // What it listens on is the running server's word, not the spec's: it may have been
        // started with other settings (behind the engine's listener, say).
        let mut instance = instance;
        instance.listen_address = file.listen_address.filter(|address| !address.is_empty());
        info!(data_dir = %instance.spec.data_dir.display(), pid, "postgres adopted");
        Ok(instance)
    }

    /// The server running on `spec.data_dir` whatever its port and socket, found like
    /// [`Instance::adopt`] by its working directory, but neither waited for nor checked: for
    /// stopping a temporary server an interrupted operation left behind (a promotion's, a
    /// restore's). `None` when none runs there.
    pub fn find_leftover(binaries: &PgBinaries, spec: InstanceSpec) -> Result<Option<Instance>> {
        let Some(file) = PidFile::read(&spec.data_dir)? else { return Ok(None) };
        let Some(pid) = find_postmaster(file.pid, &spec.data_dir) else { return Ok(None) };
        let Ok(pidfd) = open_pidfd(pid) else { return Ok(None) };
        Ok(Some(Instance::found(binaries, spec, pid, pidfd)))
    }

    /// A server this process did not start, found running as `pid`.
    fn found(
        binaries: &PgBinaries,
        spec: InstanceSpec,
        pid: u32,
        pidfd: AsyncFd<OwnedFd>,
    ) -> Instance {
        Instance {
            binaries: binaries.clone(),
            spec,
            pid,
            pid_in_file: namespace_pid(pid).unwrap_or(pid),
            pidfd,
            daemon: None,
            admin: None,
            timings: None,
            listen_address: None,
        }
    }

    /// Where the start's time went; `None` for an adopted instance.
    pub fn start_timings(&self) -> Option<StartTimings> {
        self.timings
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The spec this instance runs with.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    /// The major version of the server.
    pub fn major(&self) -> PgMajor {
        self.binaries.major()
    }

    /// The postmaster and its children (backends, checkpointer, …), for memory and cgroup
    /// accounting.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        pids.extend(children_of(self.pid));
        pids
    }

    /// The first address the server listens on over TCP, as its `listen_addresses` names it
    /// (`*`, an IP address, a host name); `None` when it listens on its unix socket only.
    pub fn listen_address(&self) -> Option<&str> {
        self.listen_address.as_deref()
    }

    /// True when this instance was adopted rather than started by this process.
    pub fn is_adopted(&self) -> bool {
        self.daemon.is_none()
    }

    /// True while the postmaster is alive.
    pub fn is_running(&self) -> bool {
        let mut fds =
            [rustix::event::PollFd::new(self.pidfd.get_ref(), rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        // The pidfd becomes readable when the process exits.
        !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// An admin session over the unix socket: the one that confirmed readiness if it is still
    /// unused, else a new connection.
    pub async fn admin(&mut self) -> Result<Admin> {
        match self.admin.take() {
            Some(admin) if !admin.is_closed() => Ok(admin),
            _ => self.connect_admin().await,
        }
    }

    /// Stops the server with `mode`, escalating to the next mode after `step_timeout` each,
    /// and to SIGKILL (of the postmaster and its children) after immediate.
    pub async fn stop(mut self, mode: StopMode, step_timeout: Duration) -> Result<Stopped> {
        self.admin = None;
        self.stop_inner(mode, step_timeout).await
    }

    async fn stop_inner(&mut self, mode: StopMode, step_timeout: Duration) -> Result<Stopped> {
        let started = Instant::now();
        let mut current = Some(mode);
        while let Some(mode) = current {
            if let Err(error) =
                rustix::process::pidfd_send_signal(self.pidfd.get_ref(), mode.signal())
            {
                if error == rustix::io::Errno::SRCH {
                    return Ok(Stopped::AlreadyGone);
                }
                return Err(Error::io("signal postmaster of", &self.spec.data_dir, error.into()));
            }
            if self.wait_exit(step_timeout).await {
                debug!(
                    pid = self.pid,
                    ?mode,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "postgres stopped"
                );
                return Ok(Stopped::ByMode(mode));
            }
            warn!(pid = self.pid, ?mode, "postgres did not stop in time; escalating");
            current = mode.next();
        }
        // The children would outlive a killed postmaster and keep its shared memory in use.
        let children = children_of(self.pid);
        let _ = rustix::process::pidfd_send_signal(self.pidfd.get_ref(), Signal::KILL);
        for child in children {
            if let Some(child) = Pid::from_raw(child as i32) {
                let _ = rustix::process::kill_process(child, Signal::KILL);
            }
        }
        if self.wait_exit(KILL_WAIT).await {
            Ok(Stopped::Killed)
        } else {
            Err(Error::StopTimeout { pid: self.pid, after: started.elapsed() })
        }
    }

    /// Waits up to `timeout` for the postmaster to exit; true when it did.
    async fn wait_exit(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.exited()).await.is_ok()
    }

    async fn exited(&self) {
        // The pidfd turns readable when the process exits; an error means it is gone as well.
        let _ = self.pidfd.readable().await;
    }

    async fn connect_admin(&self) -> Result<Admin> {
        Admin::connect(
            &self.spec.settings.socket_dir,
            self.spec.settings.port,
            &self.spec.hba.admin_role,
            &self.spec.admin_database,
        )
        .await
    }

    async fn wait_ready(
        &self,
        mut watch: PidFileWatch,
        deadline: Instant,
    ) -> Result<(), WaitError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let timeout = self.spec.start_timeout;
        loop {
            let file = PidFile::read(&self.spec.data_dir).map_err(WaitError::Failed)?;
            if let Some(file) = file
                && file.pid == self.pid_in_file
                && file.status.is_some_and(|status| status.accepts_connections())
            {
                return Ok(());
            }
            tokio::select! {
                biased;
                () = self.exited() => return Err(WaitError::Exited),
                changed = watch.changed() => changed.map_err(WaitError::Failed)?,
                () = tokio::time::sleep(FALLBACK_RECHECK) => {}
                () = tokio::time::sleep_until(deadline) => return Err(WaitError::Timeout(timeout)),
            }
        }
    }

    async fn failed_start(&mut self, wait: WaitError, log_offset: u64) -> Error {
        let data_dir = self.spec.data_dir.clone();
        match wait {
            WaitError::Exited => {
                let status = match &mut self.daemon {
                    Some(daemon) => daemon.exited().await,
                    None => exec::ExitInfo::Code(-1),
                };
                Error::StartFailed {
                    data_dir,
                    status,
                    log_tail: log_tail(&self.spec.log_file, log_offset),
                }
            }
            WaitError::Timeout(after) => {
                let _ = self.stop_inner(StopMode::Immediate, KILL_WAIT).await;
                Error::StartTimeout {
                    data_dir,
                    after,
                    log_tail: log_tail(&self.spec.log_file, log_offset),
                }
            }
            WaitError::Failed(error) => {
                let _ = self.stop_inner(StopMode::Immediate, KILL_WAIT).await;
                error
            }
        }
    }
}

enum WaitError {
    Exited,
    Timeout(Duration),
    Failed(Error),
}

/// An inotify watch on the data directory that wakes on every write of a file in it: each
/// write, not only the close after it, because the postmaster fsyncs `postmaster.pid` before
/// closing it. A read between the write and the fsync sees the new text (or, racing the write,
/// a torn status line that parses as no status and waits for the next event).
struct PidFileWatch {
    fd: AsyncFd<Inotify>,
    data_dir: PathBuf,
}

impl PidFileWatch {
    fn new(data_dir: &Path) -> Result<Self> {
        let io = |error| Error::io("watch", data_dir, error);
        let inotify = Inotify::init().map_err(io)?;
        inotify
            .watches()
            .add(
                data_dir,
                WatchMask::MODIFY
                    | WatchMask::CLOSE_WRITE
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE,
            )
            .map_err(io)?;
        #[allow(
            deprecated,
            reason = "the Inotify owns its descriptor for as long as the AsyncFd lives"
        )]
        let fd = AsyncFd::new(inotify).map_err(io)?;
        Ok(PidFileWatch { fd, data_dir: data_dir.to_path_buf() })
    }

    /// Returns after at least one event; drains everything queued.
    async fn changed(&mut self) -> Result<()> {
        let mut buffer = [0u8; 4096];
        loop {
            let mut guard = self
                .fd
                .readable_mut()
                .await
                .map_err(|error| Error::io("watch", &self.data_dir, error))?;
            match guard.try_io(|inotify| {
                inotify.get_mut().read_events(&mut buffer).map(|events| events.count())
            }) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => return Err(Error::io("watch", &self.data_dir, error)),
                Err(_would_block) => {}
            }
        }
    }
}

/// Removes `postmaster.pid` from `data_dir` unless a live postmaster of this very directory
/// wrote it; returns whether a stale file was removed. A live one is [`Error::AlreadyRunning`].
///
/// A snapshot of a running instance carries that instance's file: its PID is alive, but it
/// serves another directory, and Postgres would refuse to start ("lock file already exists").
pub fn remove_stale_pid_file(data_dir: &Path) -> Result<bool> {
    let path = data_dir.join(PID_FILE);
    let pid = match std::fs::read_to_string(&path) {
        Ok(text) => PidFile::parse(&text).map(|file| file.pid),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(Error::io("read", path, error)),
    };
    if let Some(running) = pid.and_then(|pid| find_postmaster(pid, data_dir)) {
        return Err(Error::AlreadyRunning { data_dir: data_dir.to_path_buf(), pid: running });
    }
    warn!(data_dir = %data_dir.display(), ?pid, "removing stale postmaster.pid");
    std::fs::remove_file(&path).map_err(|error| Error::io("remove stale", path, error))?;
    Ok(true)
}

/// True when `pid` is a live postgres process whose working directory is `data_dir` (the
/// postmaster and its children chdir into the data directory).
///
/// The path is compared first, without touching any file system (a sandboxed server sees its
/// data directory at the host's path, and a `stat` of some other process's working directory
/// could wait on a slow FUSE mount); then device and inode, so that a directory a clone made
/// under the same name in its private `/tmp` is not taken for the real one.
pub fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(exe) = std::fs::read_link(proc_dir.join("exe")) else { return false };
    let is_postgres = exe
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("postgres") || name.starts_with("postmaster"));
    if !is_postgres {
        return false;
    }
    let Ok(cwd_path) = std::fs::read_link(proc_dir.join("cwd")) else { return false };
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if cwd_path != data_dir {
        return false;
    }
    let (Ok(cwd), Ok(dir)) =
        (std::fs::metadata(proc_dir.join("cwd")), std::fs::metadata(&data_dir))
    else {
        return false;
    };
    cwd.dev() == dir.dev() && cwd.ino() == dir.ino()
}

/// The host PID of the postmaster serving `data_dir`, if one runs. `pid_in_file` (what
/// `postmaster.pid` says) is the answer for a server in the host's PID namespace; a sandboxed
/// server wrote its PID in its own namespace, so the processes whose working directory is
/// `data_dir` are searched for the one whose parent is not among them.
pub fn find_postmaster(pid_in_file: u32, data_dir: &Path) -> Option<u32> {
    if is_postmaster_of(pid_in_file, data_dir) && namespace_pid(pid_in_file) == Some(pid_in_file) {
        return Some(pid_in_file);
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    let serving: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_postmaster_of(*pid, data_dir))
        .collect();
    serving.iter().copied().find(|pid| {
        parent_of(*pid).is_none_or(|parent| !serving.contains(&parent))
            && namespace_pid(*pid) == Some(pid_in_file)
    })
}

/// The PID of `pid` in its own (innermost) PID namespace, from `/proc/<pid>/status`.
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn check_major(binaries: &PgBinaries, data_dir: &Path) -> Result<()> {
    let major = PgMajor::of_data_dir(data_dir)?;
    if major == binaries.major() {
        Ok(())
    } else {
        Err(Error::WrongBinaries {
            data_dir: data_dir.to_path_buf(),
            data_major: major,
            binaries_major: binaries.major(),
        })
    }
}

fn open_pidfd(pid: u32) -> std::io::Result<AsyncFd<OwnedFd>> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("bad PID"))?;
    let fd = rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK)?;
    // Deprecated because a borrowed descriptor could be closed under the reactor; an OwnedFd
    // moved into the AsyncFd cannot.
    #[allow(deprecated, reason = "the AsyncFd owns the pidfd")]
    AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
}

fn open_log(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // A server's log can show its queries: its owner's only.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| Error::io("open log", path, error))
}

/// The end of the log written since `offset`, for errors.
fn log_tail(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(LOG_TAIL_BYTES));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// The PIDs whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent_of(*candidate) == Some(pid))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after the last `)` are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
