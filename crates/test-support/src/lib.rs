//! Fixtures for Scion's integration tests and benchmarks: pools on image files that clean up
//! after themselves, free loopback port ranges, the end of every Postgres server a test started,
//! what the benchmarks measure with ([`measure`]), and a source primary with the standby a copy
//! tool makes of it, for physical mode ([`primary`]).
//!
//! Cleanup is by path and PID: a pool's guard stops only the postmasters whose data directory
//! lies inside that pool, then detaches the pool, so tests never touch each other's resources.

pub mod measure;
pub mod primary;

use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use storage::provision::{ImageFs, ImagePool};
use storage::{BackendConfig, StorageBackend};

/// A temporary directory that the unprivileged Postgres user can traverse (mode 0755), removed
/// on drop.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A new directory under the system temp dir, named after `prefix`.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("create a temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("make the temp dir traversable");
        TestDir { dir }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Which filesystem a test pool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// btrfs on a loop-mounted image.
    Btrfs,
    /// ZFS on zfs-fuse with the image as file vdev; needs the zfs-fuse daemon.
    Zfs,
}

/// A pool on its own image file in its own temp dir. On drop it stops every Postgres server
/// whose data directory is inside the pool, then detaches the pool.
#[derive(Debug)]
pub struct TestPool {
    image: ImagePool,
    dir: TestDir,
}

impl TestPool {
    /// Creates and attaches a pool of `size_mib` MiB.
    pub async fn new(kind: PoolKind, size_mib: u64) -> TestPool {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = TestDir::new("scion-it-");
        let fs = match kind {
            PoolKind::Btrfs => ImageFs::Btrfs,
            PoolKind::Zfs => {
                require_zfs_daemon().await;
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                ImageFs::Zfs { pool: format!("scion_it_{}_{n}", std::process::id()) }
            }
        };
        let image = ImagePool::new(
            dir.path().join("pool.img"),
            size_mib << 20,
            fs,
            dir.path().join("pool"),
        );
        image.ensure().await.expect("create the test pool");
        std::fs::set_permissions(&image.mountpoint, std::fs::Permissions::from_mode(0o755))
            .expect("make the pool traversable");
        TestPool { image, dir }
    }

    /// The configuration that opens the pool.
    pub fn backend_config(&self) -> BackendConfig {
        self.image.backend_config()
    }

    /// Opens the pool's backend.
    pub async fn open(&self) -> StorageBackend {
        StorageBackend::open(&self.backend_config()).await.expect("open the test pool")
    }

    /// Where the pool is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.image.mountpoint
    }

    /// A directory next to the pool for the test's own files (state, logs), traversable by
    /// the Postgres user and removed with the pool.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("create a scratch dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make the scratch dir traversable");
        path
    }
}

impl TestPool {
    /// The bytes still free in the pool; see [`free_bytes`].
    pub fn free_bytes(&self) -> u64 {
        free_bytes(self.mountpoint())
    }

    /// Fills the pool until less than `leave` bytes are free; see [`fill`].
    pub fn fill(&self, leave: u64) -> Filler {
        fill(self.mountpoint(), leave)
    }
}

/// Every file under `dir` that holds `needle` (a masked data directory must hold no original
/// value).
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).expect("list a directory");
            pending.extend(entries.map(|entry| entry.expect("read a directory entry").path()));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// The bytes still free on the filesystem of `dir`, from statvfs after a sync, so that what
/// was just written or removed counts.
pub fn free_bytes(dir: &Path) -> u64 {
    let root = std::fs::File::open(dir).expect("open the directory");
    nix::unistd::syncfs(&root).expect("sync the filesystem");
    let stat = nix::sys::statvfs::fstatvfs(&root).expect("statvfs the filesystem");
    stat.blocks_available() * stat.fragment_size()
}

/// Fills the filesystem of `dir` with real, allocated files in `dir` until less than `leave`
/// bytes are free; they are removed when the [`Filler`] is removed or dropped.
pub fn fill(dir: &Path, leave: u64) -> Filler {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut filler = Filler { files: Vec::new() };
    for _ in 0..8 {
        let free = free_bytes(dir);
        if free < leave {
            return filler;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("scion-test-filler-{n}"));
        let file = std::fs::File::create_new(&path).expect("create a filler file");
        filler.files.push(path);
        // A little over what is asked: metadata takes some of what statvfs calls free.
        let length = i64::try_from(free - leave + (4 << 20)).expect("a file length");
        nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, length)
            .expect("allocate the filler");
    }
    panic!("{} still has {} bytes free after 8 fillers", dir.display(), free_bytes(dir));
}

/// Files that take a pool's space, for tests of a full pool; removed on drop.
#[derive(Debug)]
pub struct Filler {
    files: Vec<PathBuf>,
}

impl Filler {
    /// Removes the files now (the pool's filesystem frees their space at its next commit).
    pub fn remove(mut self) {
        for file in std::mem::take(&mut self.files) {
            std::fs::remove_file(&file).expect("remove a filler file");
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for TestPool {
    #[allow(clippy::print_stderr, reason = "a failed cleanup must show in the test output")]
    fn drop(&mut self) {
        stop_postmasters_under(self.mountpoint());
        let image = self.image.clone();
        // Drop cannot await, and may run inside a runtime: detach on a thread of its own.
        let detached = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime for cleanup");
            runtime.block_on(image.teardown(true))
        })
        .join();
        match detached {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test pool teardown failed: {error}"),
            Err(_) => eprintln!("test pool teardown panicked"),
        }
    }
}

/// Fails the test with a clear message when the zfs-fuse daemon is not running.
pub async fn require_zfs_daemon() {
    if let Err(error) = exec::Cmd::new("zpool").arg("list").output().await {
        panic!(
            "ZFS tests need a running zfs-fuse daemon (start it with `zfs-fuse`; scripts/test does): {error}"
        );
    }
}

/// The `bin` directory of the PostgreSQL build without ICU that `scripts/setup` keeps for the
/// tests of what needs ICU (`$SCION_PG_NOICU_ROOT`, default `/opt/scion/postgres-noicu`), and
/// its major.
pub fn non_icu_bin_dir() -> (u8, PathBuf) {
    let root = std::env::var_os("SCION_PG_NOICU_ROOT")
        .filter(|root| !root.is_empty())
        .map_or_else(|| PathBuf::from("/opt/scion/postgres-noicu"), PathBuf::from);
    (NON_ICU_MAJOR, root.join(NON_ICU_MAJOR.to_string()).join("bin"))
}

/// The major `scripts/setup` keeps a build without ICU of (its `NOICU_VERSION`).
const NON_ICU_MAJOR: u8 = 16;

/// Stops (SIGQUIT, then SIGKILL) every postmaster working in a directory under `root`, found by
/// the working directory of its process: a server still starting has not written its
/// `postmaster.pid` yet, but it runs in its data directory from the moment it is spawned (the
/// engine and the tests spawn it there). Its children, working in the same directory, go with
/// it. Returns how many postmasters it stopped.
pub fn stop_postmasters_under(root: &Path) -> usize {
    let under = |pid: i32| works_under(pid, root);
    let parent = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; the fields after its closing parenthesis do not.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let postmasters: Vec<Pid> = processes_under(root)
        .into_iter()
        // A process that exits between the listing and this read (a backend ending with its
        // connection) has no parent to read: it is no postmaster.
        .filter(|&pid| parent(pid).is_some_and(|ppid| !under(ppid)))
        .map(Pid::from_raw)
        .collect();
    for &pid in &postmasters {
        let _ = kill(pid, Signal::SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while postmasters.iter().any(|&pid| kill(pid, None).is_ok()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &pid in &postmasters {
        if kill(pid, None).is_ok() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    postmasters.len()
}

fn works_under(pid: i32, root: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root))
}

/// Every process working in a directory under `root`: a clone server's postmaster and its
/// children work in its data directory, so none under a pool means no server runs there.
pub fn processes_under(root: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| works_under(pid, root))
        .collect()
}

/// Ports handed out by [`free_port_range`]: below the kernel's ephemeral range
/// (32768–60999 by default), so an outgoing connection of some other test, or a port a test
/// got by binding port 0, never takes one between the check and the server's bind.
const TEST_PORTS: RangeInclusive<u16> = 10_240..=32_767;
/// Ports per claimed block; the largest range a test asks for must fit in one.
const PORT_BLOCK: u16 = 128;

/// A range of `length` consecutive loopback ports that nothing listens on now, different for
/// every call in every test process.
///
/// Test binaries run in parallel processes, so each process claims whole blocks of ports with
/// an exclusive `flock` on a file under the temp dir; the kernel drops the lock when the
/// process exits, however it exits.
pub fn free_port_range(length: u16) -> RangeInclusive<u16> {
    struct Claimed {
        locks: Vec<std::fs::File>,
        next: u16,
        end: u16,
    }
    static CLAIMED: std::sync::Mutex<Option<Claimed>> = std::sync::Mutex::new(None);
    assert!((1..=PORT_BLOCK).contains(&length), "ask for 1 to {PORT_BLOCK} ports");
    let mut claimed = CLAIMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if let Some(block) = claimed.as_mut()
            && let Some(end) = block.next.checked_add(length - 1)
            && end <= block.end
        {
            let range = block.next..=end;
            block.next = end.saturating_add(1);
            if range.clone().all(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()) {
                return range;
            }
            continue;
        }
        let (lock, start) = claim_port_block();
        let mut locks = claimed.take().map(|block| block.locks).unwrap_or_default();
        locks.push(lock);
        *claimed = Some(Claimed { locks, next: start, end: start + (PORT_BLOCK - 1) });
    }
}

/// Locks the first free block of [`TEST_PORTS`], starting at a place that depends on the PID
/// so that parallel processes rarely contend for the same lock file.
fn claim_port_block() -> (std::fs::File, u16) {
    let dir = std::env::temp_dir().join("scion-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock dir");
    let blocks = (TEST_PORTS.end() - TEST_PORTS.start() + 1) / PORT_BLOCK;
    let first = std::process::id() % u32::from(blocks);
    for offset in 0..u32::from(blocks) {
        let block = u16::try_from((first + offset) % u32::from(blocks)).expect("few blocks");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("block-{block}")))
            .expect("open a port lock file");
        if file.try_lock().is_ok() {
            return (file, TEST_PORTS.start() + block * PORT_BLOCK);
        }
    }
    panic!("every test port block in {TEST_PORTS:?} is claimed by another process");
}
