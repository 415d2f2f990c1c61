//! The private root and namespaces a sandboxed daemon starts in: what a container runtime gives a
//! process, without the runtime (docs/adr/0002-clone-isolation.md).
//!
//! A sandboxed program is started with `clone(2)` in new mount, PID and IPC namespaces. Before
//! it executes, the child builds a root of its own on a tmpfs: the host's `/usr` and `/etc`
//! read-only, the directories the caller names (read-only or writable) at their own paths, a
//! fresh `/proc` that shows only its own processes, a minimal `/dev`, and private `/dev/shm` and
//! `/tmp`; then it pivots into that root, drops to the unprivileged user and executes. Nothing
//! else of the host's file systems is reachable from inside, no other process is visible or
//! can be signalled (the program is PID 1 of its namespace), and System V IPC is private.
//! The network is the host's: a server must still listen on the host's ports.
//!
//! Everything the child does between `clone` and `execve` is a raw system call on data prepared
//! before the clone (no allocation, no lock), as `fork` in a threaded program requires.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::libc;

/// Where a sandboxed program may look: directories bound at their own paths in its private root.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
    read_only: Vec<PathBuf>,
    writable: Vec<PathBuf>,
    cgroup: Option<crate::cgroup::Cgroup>,
}

/// Host directories every sandbox sees read-only: the system's programs, libraries, time zones,
/// locales and user database. Merged-`/usr` links (`/bin` → `usr/bin`) are recreated as links.
const SYSTEM_DIRS: &[&str] = &["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];
/// How long a sandboxed child may take between `clone` and `execve`: a few dozen mounts, normally
/// well under a millisecond.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Device nodes bound into the sandbox's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

impl Sandbox {
    /// A sandbox whose private root is built on `root`, an empty directory of the caller's that
    /// exists on the host. The tmpfs is mounted on it only inside the sandbox's own mount
    /// namespace, so one directory serves any number of sandboxes.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sandbox { root: root.into(), read_only: Vec::new(), writable: Vec::new(), cgroup: None }
    }

    /// Shows the host directory `path` at the same path, read-only.
    pub fn read_only(mut self, path: impl Into<PathBuf>) -> Self {
        self.read_only.push(path.into());
        self
    }

    /// Shows the host directory `path` at the same path, writable.
    pub fn writable(mut self, path: impl Into<PathBuf>) -> Self {
        self.writable.push(path.into());
        self
    }

    /// Starts the program in `cgroup`, which must exist: the child enters it before anything
    /// else, so not one instruction of the program runs outside the group's limits.
    pub fn cgroup(mut self, cgroup: crate::cgroup::Cgroup) -> Self {
        self.cgroup = Some(cgroup);
        self
    }

    /// The directories shown writable.
    pub fn writable_dirs(&self) -> &[PathBuf] {
        &self.writable
    }
}

/// One step of the child's setup, with every path already a C string.
#[derive(Debug)]
enum Step {
    /// Stop mounts from propagating back to the host.
    PrivateRoot,
    Tmpfs {
        target: CString,
        data: CString,
    },
    MkDir(CString),
    MkFile(CString),
    Bind {
        source: CString,
        target: CString,
    },
    ReadOnly(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Proc(CString),
    PivotRoot(CString),
}

impl Step {
    fn describe(&self) -> String {
        let show = |path: &CString| path.to_string_lossy().into_owned();
        match self {
            Step::PrivateRoot => "make / private".to_owned(),
            Step::Tmpfs { target, .. } => format!("mount tmpfs on {}", show(target)),
            Step::MkDir(path) => format!("create directory {}", show(path)),
            Step::MkFile(path) => format!("create file {}", show(path)),
            Step::Bind { source, target } => format!("bind {} on {}", show(source), show(target)),
            Step::ReadOnly(path) => format!("make {} read-only", show(path)),
            Step::Symlink { link, .. } => format!("create link {}", show(link)),
            Step::Proc(path) => format!("mount proc on {}", show(path)),
            Step::PivotRoot(path) => format!("pivot into {}", show(path)),
        }
    }

    /// Runs the step in the child; returns the errno on failure.
    ///
    /// SAFETY (for the unsafe blocks): each is one system call on NUL-terminated strings owned
    /// by the step, which outlives the call.
    #[allow(unsafe_code, reason = "raw system calls between clone(2) and execve(2)")]
    fn run(&self) -> Result<(), i32> {
        let null = std::ptr::null::<libc::c_char>();
        let check = |result: libc::c_int| if result == 0 { Ok(()) } else { Err(errno()) };
        match self {
            Step::PrivateRoot => check(unsafe {
                libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            }),
            Step::Tmpfs { target, data } => check(unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    data.as_ptr().cast(),
                )
            }),
            Step::MkDir(path) => match check(unsafe { libc::mkdir(path.as_ptr(), 0o755) }) {
                Err(code) if code == libc::EEXIST => Ok(()),
                other => other,
            },
            Step::MkFile(path) => {
                let fd = unsafe {
                    libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd < 0 {
                    return Err(errno());
                }
                unsafe { libc::close(fd) };
                Ok(())
            }
            Step::Bind { source, target } => check(unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            }),
            Step::ReadOnly(path) => check(unsafe {
                libc::mount(
                    null,
                    path.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                    std::ptr::null(),
                )
            }),
            Step::Symlink { target, link } => {
                check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
            }
            Step::Proc(path) => check(unsafe {
                libc::mount(
                    c"proc".as_ptr(),
                    path.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            }),
            Step::PivotRoot(root) => {
                // pivot_root(".", ".") stacks the old root under the new one; detaching it
                // leaves only the new root (the way runc does it, with no directory to spare).
                check(unsafe { libc::chdir(root.as_ptr()) })?;
                let dot = c".".as_ptr();
                check(unsafe { libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int })?;
                check(unsafe { libc::umount2(dot, libc::MNT_DETACH) })?;
                check(unsafe { libc::chdir(c"/".as_ptr()) })?;
                // The root itself holds only mount points: nothing may be written there.
                check(unsafe {
                    libc::mount(
                        null,
                        c"/".as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    )
                })
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A path as a C string.
fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other(format!("{} contains a NUL byte", path.display())))
}

/// `path` under `root`: `/usr` under `/r` is `/r/usr`.
fn under(root: &Path, path: &Path) -> PathBuf {
    let mut joined = root.to_path_buf();
    for component in path.components() {
        if let Component::Normal(part) = component {
            joined.push(part);
        }
    }
    joined
}

/// The setup steps for `sandbox`, computed on the host before the clone.
fn plan(sandbox: &Sandbox) -> std::io::Result<Vec<Step>> {
    let root = &sandbox.root;
    if !root.is_absolute() || !root.is_dir() {
        return Err(std::io::Error::other(format!(
            "the sandbox root {} is not an existing absolute directory",
            root.display()
        )));
    }
    let mut steps = vec![
        Step::PrivateRoot,
        Step::Tmpfs { target: c_path(root)?, data: CString::from(c"mode=0755") },
    ];
    // The fresh mounts first: a bound directory under /tmp (a test's pool) lands inside the
    // private /tmp rather than under it.
    let dev = root.join("dev");
    steps.push(Step::MkDir(c_path(&dev)?));
    steps.push(Step::Tmpfs { target: c_path(&dev)?, data: CString::from(c"mode=0755") });
    for device in DEVICES {
        let host = Path::new("/dev").join(device);
        if !host.exists() {
            continue;
        }
        let target = c_path(&dev.join(device))?;
        steps.push(Step::MkFile(target.clone()));
        steps.push(Step::Bind { source: c_path(&host)?, target });
    }
    for (name, link) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: c_path(Path::new(link))?,
            link: c_path(&dev.join(name))?,
        });
    }
    let shm = dev.join("shm");
    steps.push(Step::MkDir(c_path(&shm)?));
    steps.push(Step::Tmpfs { target: c_path(&shm)?, data: CString::from(c"mode=1777") });
    let tmp = root.join("tmp");
    steps.push(Step::MkDir(c_path(&tmp)?));
    steps.push(Step::Tmpfs { target: c_path(&tmp)?, data: CString::from(c"mode=1777") });
    let proc = root.join("proc");
    steps.push(Step::MkDir(c_path(&proc)?));
    steps.push(Step::Proc(c_path(&proc)?));
    let mut made = std::collections::BTreeSet::new();
    let mut mkdirs = |steps: &mut Vec<Step>, path: &Path| -> std::io::Result<()> {
        let mut current = root.to_path_buf();
        for component in path.components() {
            if let Component::Normal(part) = component {
                current.push(part);
                if made.insert(current.clone()) {
                    steps.push(Step::MkDir(c_path(&current)?));
                }
            }
        }
        Ok(())
    };
    // (directory, writable, one of the system's)
    let mut binds: Vec<(&Path, bool, bool)> = Vec::new();
    for dir in SYSTEM_DIRS {
        binds.push((Path::new(dir), false, true));
    }
    binds.extend(sandbox.read_only.iter().map(|dir| (dir.as_path(), false, false)));
    binds.extend(sandbox.writable.iter().map(|dir| (dir.as_path(), true, false)));
    // Parents before children, so that a directory bound inside another bound one lands on top.
    binds.sort_by_key(|(dir, _, _)| dir.components().count());
    for (dir, writable, system) in binds {
        if !dir.is_absolute() {
            return Err(std::io::Error::other(format!("{} is not absolute", dir.display())));
        }
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            // A system directory this host does not have (`/lib32`) is simply not shown.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && system => continue,
            Err(error) => {
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("{}: {error}", dir.display()),
                ));
            }
        };
        let target = under(root, dir);
        if meta.file_type().is_symlink() && system {
            if let Some(parent) = dir.parent() {
                mkdirs(&mut steps, parent)?;
            }
            let link = std::fs::read_link(dir)?;
            steps.push(Step::Symlink { target: c_path(&link)?, link: c_path(&target)? });
            continue;
        }
        mkdirs(&mut steps, dir)?;
        let target = c_path(&target)?;
        steps.push(Step::Bind { source: c_path(dir)?, target: target.clone() });
        if !writable {
            steps.push(Step::ReadOnly(target));
        }
    }
    steps.push(Step::PivotRoot(c_path(root)?));
    Ok(steps)
}

/// What the child needs besides the setup steps, all prepared on the host.
pub(crate) struct Launch<'a> {
    pub program: &'a OsStr,
    pub args: Vec<OsString>,
    pub envs: Vec<(OsString, OsString)>,
    pub cwd: Option<&'a Path>,
    pub user: Option<(u32, u32)>,
    pub new_session: bool,
    pub stdout: &'a std::fs::File,
    pub stderr: &'a std::fs::File,
}

/// Starts `launch` inside `sandbox`; returns the host PID of the program (PID 1 of its own PID
/// namespace) once it has executed, or why the setup failed.
#[allow(unsafe_code, reason = "clone(2) with namespace flags, which std cannot do")]
pub(crate) fn spawn(sandbox: &Sandbox, launch: &Launch<'_>) -> std::io::Result<u32> {
    let steps = plan(sandbox)?;
    let program = CString::new(launch.program.as_bytes())
        .map_err(|_| std::io::Error::other("the program path contains a NUL byte"))?;
    let to_c = |text: &OsStr| {
        CString::new(text.as_bytes())
            .map_err(|_| std::io::Error::other("an argument contains a NUL byte"))
    };
    let mut argv_owned = vec![program.clone()];
    for arg in &launch.args {
        argv_owned.push(to_c(arg)?);
    }
    let mut env_owned = Vec::new();
    for (key, value) in &launch.envs {
        let mut pair = key.clone();
        pair.push("=");
        pair.push(value);
        env_owned.push(to_c(&pair)?);
    }
    let argv: Vec<*const libc::c_char> =
        argv_owned.iter().map(|arg| arg.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> =
        env_owned.iter().map(|env| env.as_ptr()).chain([std::ptr::null()]).collect();
    let cwd = launch.cwd.map(c_path).transpose()?;
    let dev_null = std::fs::File::open("/dev/null")?;
    let (report_read, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let stdin_fd = dev_null.as_raw_fd();
    let stdout_fd = launch.stdout.as_raw_fd();
    let stderr_fd = launch.stderr.as_raw_fd();
    let report_fd = report_write.as_raw_fd();
    let user = launch.user;
    let new_session = launch.new_session;
    // Opened here, written in the child: the files of the cgroup file system are not reachable
    // once the child has pivoted, and opening them there would be more work between clone and
    // execve than one write.
    let cgroup_files = match &sandbox.cgroup {
        Some(cgroup) => cgroup
            .procs_files()
            .iter()
            .map(|path| {
                std::fs::OpenOptions::new().write(true).open(path).map_err(|error| {
                    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let cgroup_fds: Vec<i32> = cgroup_files.iter().map(AsRawFd::as_raw_fd).collect();
    let child = Box::new(move || -> isize {
        // From here to execve: system calls only. A failure is reported through the pipe as
        // (step, errno) and ends the child.
        let fail = |step: usize, code: i32| -> isize {
            let mut message = [0u8; 8];
            message[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            message[4..].copy_from_slice(&code.to_ne_bytes());
            // SAFETY: writes 8 bytes from a live buffer to our pipe, then exits without
            // running anything of the parent's (no atexit handlers, no destructors).
            unsafe {
                libc::write(report_fd, message.as_ptr().cast(), message.len());
                libc::_exit(127)
            }
        };
        // The cgroup first: everything after, the setup included, is charged to the group.
        // Writing "0" moves the writing process, whatever its PID in its new namespace.
        for fd in &cgroup_fds {
            // SAFETY: writes one byte from a static buffer to a descriptor opened above.
            if unsafe { libc::write(*fd, c"0".as_ptr().cast(), 1) } != 1 {
                return fail(steps.len() + 5, errno());
            }
        }
        for (index, step) in steps.iter().enumerate() {
            if let Err(code) = step.run() {
                return fail(index, code);
            }
        }
        let base = steps.len();
        // SAFETY: plain system calls on integers and on C strings owned by the closure.
        unsafe {
            // The parent's ignored SIGPIPE and blocked signals must not leak into the server.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if new_session && libc::setsid() < 0 {
                return fail(base, errno());
            }
            if let Some((uid, gid)) = user {
                let groups = [gid];
                // Raw system calls: glibc's setgroups, setgid and setuid signal every thread
                // it believes the process has and wait for each, and after clone(2) those
                // threads are the parent's, which never answer (a hang seen in tests).
                if libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()) != 0 {
                    return fail(base + 1, errno());
                }
                if libc::syscall(libc::SYS_setgid, libc::c_long::from(gid)) != 0 {
                    return fail(base + 1, errno());
                }
                if libc::syscall(libc::SYS_setuid, libc::c_long::from(uid)) != 0 {
                    return fail(base + 1, errno());
                }
            }
            if let Some(cwd) = &cwd
                && libc::chdir(cwd.as_ptr()) != 0
            {
                return fail(base + 2, errno());
            }
            if libc::dup2(stdin_fd, 0) < 0
                || libc::dup2(stdout_fd, 1) < 0
                || libc::dup2(stderr_fd, 2) < 0
            {
                return fail(base + 3, errno());
            }
            // Nothing the engine holds open may reach the sandbox, whoever forgot its
            // close-on-exec flag (a library, an inherited jobserver pipe): every descriptor
            // above the standard three closes at exec, the report pipe until then still open.
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return fail(base + 3, errno());
            }
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(base + 4, errno())
        }
    });
    let mut stack = vec![0u8; 256 * 1024];
    let flags = nix::sched::CloneFlags::CLONE_NEWNS
        | nix::sched::CloneFlags::CLONE_NEWPID
        | nix::sched::CloneFlags::CLONE_NEWIPC;
    // SAFETY: the child runs only the closure above, which makes raw system calls on memory it
    // owns (its copy of this address space) and ends in execve or _exit.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(std::io::Error::from)?;
    drop(report_write);
    drop(cgroup_files);
    let mut message = [0u8; 8];
    let mut read = 0;
    // The pipe closes on execve (success) or carries 8 bytes (failure). A child that does
    // neither in time is stuck in its setup: it is killed rather than left to hold the caller.
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(&report_read, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("sandbox: the setup did not finish within {SETUP_TIMEOUT:?}"),
                ));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
        match nix::unistd::read(report_read.as_fd(), &mut message[read..]) {
            Ok(0) => break,
            Ok(n) => {
                read += n;
                if read == message.len() {
                    break;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if read == 0 {
        return Ok(pid.as_raw() as u32);
    }
    // The child failed before executing: reap it and say which step failed.
    let _ = nix::sys::wait::waitpid(pid, None);
    let step = u32::from_ne_bytes([message[0], message[1], message[2], message[3]]) as usize;
    let code = i32::from_ne_bytes([message[4], message[5], message[6], message[7]]);
    let steps = plan(sandbox).unwrap_or_default();
    let what = match steps.get(step) {
        Some(step) => step.describe(),
        None => match step - steps.len() {
            0 => "start a session".to_owned(),
            1 => "switch to the server's user".to_owned(),
            2 => "enter the working directory".to_owned(),
            3 => "set up the descriptors".to_owned(),
            5 => "enter the cgroup".to_owned(),
            _ => "execute the program".to_owned(),
        },
    };
    Err(std::io::Error::new(
        std::io::Error::from_raw_os_error(code).kind(),
        format!("sandbox: {what}: {}", std::io::Error::from_raw_os_error(code)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_binds_parents_first_and_links_merged_usr() {
        let root = std::env::temp_dir();
        let sandbox = Sandbox::new(&root).writable("/var/tmp").read_only("/usr/share");
        let steps = plan(&sandbox).unwrap();
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        let position = |needle: &str| {
            described.iter().position(|step| step.contains(needle)).unwrap_or(usize::MAX)
        };
        assert!(position("bind /usr on") < position("bind /usr/share on"), "{described:#?}");
        assert!(described.iter().any(|step| step.starts_with("bind /var/tmp on")));
        assert!(described.last().unwrap().starts_with("pivot into"));
    }

    #[test]
    fn plan_refuses_a_missing_writable_directory() {
        let sandbox = Sandbox::new(std::env::temp_dir()).writable("/no/such/dir/anywhere");
        assert!(plan(&sandbox).is_err());
    }
}
