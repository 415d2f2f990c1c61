//! The data the benchmark clones: sparse image pools (btrfs, ZFS on zfs-fuse), a PostgreSQL
//! cluster filled with `pgbench -i` into database `src`, and local servers on such clusters
//! for the alternatives.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use exec::Cmd;
use postgres::{
    Admin, BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor,
    RoleKind, ServerSettings, StopMode,
};
use storage::provision::{ImageFs, ImagePool};
use storage::{DatasetName, StorageBackend, ThinStorage};
use tokio_postgres::config::SslMode;

/// The role every alternative connects as over TCP, like a clone's user.
pub(crate) const ROLE: &str = "bench";
/// Its password (SCRAM-SHA-256 over TCP).
pub(crate) const PASSWORD: &str = "Sc1on-bench-pass!";
/// The engine's and the loader's admin role.
pub(crate) const ADMIN: &str = "postgres";
/// The database pgbench fills; the template of the `CREATE DATABASE` alternatives.
pub(crate) const SOURCE_DB: &str = "src";
/// The dataset holding the golden copy in a pool without retrieval (the engine's `data`).
pub(crate) const DATA_DATASET: &str = "data";
const STOP_STEP: Duration = Duration::from_secs(300);
const LOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Which filesystem a pool is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Backend {
    Btrfs,
    Zfs,
}

impl Backend {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Backend::Btrfs => "btrfs",
            Backend::Zfs => "ZFS (zfs-fuse)",
        }
    }
}

/// A pool on a sparse image file, mounted (or imported) until [`Pool::teardown`].
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) image: ImagePool,
    pub(crate) backend: Backend,
}

impl Pool {
    /// Creates and attaches a pool of at most `size` bytes (sparse) under `dir`.
    pub(crate) async fn create(dir: &Path, backend: Backend, size: u64) -> Result<Pool> {
        let fs =
            match backend {
                Backend::Btrfs => ImageFs::Btrfs,
                Backend::Zfs => {
                    Cmd::new("zpool").arg("list").output().await.context(
                        "ZFS needs a running zfs-fuse daemon (scripts/bench starts one)",
                    )?;
                    ImageFs::Zfs { pool: format!("scion_bench_{}", std::process::id()) }
                }
            };
        let name = match backend {
            Backend::Btrfs => "btrfs",
            Backend::Zfs => "zfs",
        };
        let image = ImagePool::new(
            dir.join(format!("{name}.img")),
            size,
            fs,
            dir.join(format!("{name}-pool")),
        )
        // `SCION_BENCH_IMAGE_FLUSH=0` mounts a btrfs pool `nobarrier` (`[pool] image_flush =
        // false`), to show what PostgreSQL's own fsyncs cost a start on the image pool.
        .with_flush(std::env::var("SCION_BENCH_IMAGE_FLUSH").map_or(true, |v| v != "0"));
        image.ensure().await.with_context(|| format!("create the {name} pool"))?;
        std::fs::set_permissions(&image.mountpoint, std::fs::Permissions::from_mode(0o755))?;
        Ok(Pool { image, backend })
    }

    pub(crate) fn mountpoint(&self) -> &Path {
        &self.image.mountpoint
    }

    pub(crate) async fn storage(&self) -> Result<StorageBackend> {
        Ok(StorageBackend::open(&self.image.backend_config()).await?)
    }

    /// Creates the engine's golden dataset and returns the PGDATA inside it.
    pub(crate) async fn create_golden(&self) -> Result<PathBuf> {
        let storage = self.storage().await?;
        let name = DatasetName::new(DATA_DATASET)?;
        let mountpoint = storage.create_dataset(&name).await?;
        std::fs::set_permissions(&mountpoint, std::fs::Permissions::from_mode(0o755))?;
        Ok(mountpoint.join("data"))
    }

    /// Stops every server still running on the pool's data, then detaches the pool and removes
    /// its image.
    pub(crate) async fn teardown(self) -> Result<()> {
        stop_all_under(self.mountpoint()).await;
        self.image.teardown(true).await.context("tear the pool down")
    }

    /// Bytes used on the pool's filesystem, after a sync so btrfs's and ZFS's counters are
    /// current.
    pub(crate) async fn used_bytes(&self) -> Result<u64> {
        Cmd::new("sync").arg("--file-system").arg(self.mountpoint()).run().await?;
        let stat = nix::sys::statvfs::statvfs(self.mountpoint())?;
        let frsize = stat.fragment_size();
        Ok((stat.blocks() - stat.blocks_free()) * frsize)
    }
}

/// Stops every postmaster running on data under `root`, all at once (one by one, 200 clones
/// would take minutes), on a blocking thread.
pub(crate) async fn stop_all_under(root: &Path) {
    let root = root.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || test_support::stop_postmasters_under(&root)).await;
}

/// A local server on a benchmark cluster, with the admin session kept open.
pub(crate) struct Local {
    pub(crate) instance: Instance,
    pub(crate) admin: Admin,
    pub(crate) spec: InstanceSpec,
    pub(crate) binaries: PgBinaries,
}

impl Local {
    /// Starts the cluster in `data_dir` on `port`, its socket and log in `scratch`.
    pub(crate) async fn start(
        binaries: &PgBinaries,
        data_dir: &Path,
        port: u16,
        scratch: &Path,
        extra: &[(&str, &str)],
    ) -> Result<Local> {
        let spec = spec(data_dir, port, scratch, extra)?;
        let mut instance = Instance::start(binaries, spec.clone())
            .await
            .with_context(|| format!("start PostgreSQL on {}", data_dir.display()))?;
        let admin = instance.admin().await?;
        Ok(Local { instance, admin, spec, binaries: binaries.clone() })
    }

    /// Runs SQL as the admin role.
    pub(crate) async fn sql(&self, sql: &str) -> Result<()> {
        self.admin.client().batch_execute(sql).await.with_context(|| format!("run {sql}"))
    }

    pub(crate) fn port(&self) -> u16 {
        self.spec.settings.port
    }

    pub(crate) fn socket_dir(&self) -> &Path {
        &self.spec.settings.socket_dir
    }

    /// A clean, fast stop (with its shutdown checkpoint).
    pub(crate) async fn stop(self) -> Result<()> {
        drop(self.admin);
        self.instance.stop(StopMode::Fast, STOP_STEP).await?;
        Ok(())
    }
}

/// The spec of a benchmark server: clone defaults plus `extra`.
pub(crate) fn spec(
    data_dir: &Path,
    port: u16,
    scratch: &Path,
    extra: &[(&str, &str)],
) -> Result<InstanceSpec> {
    let mut settings = ServerSettings::new(port, scratch.join(format!("sock-{port}")));
    settings.extra =
        extra.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    Ok(InstanceSpec::new(
        data_dir,
        settings,
        ADMIN,
        scratch.join(format!("postgres-{port}.log")),
        OsUser::lookup("postgres")?,
    ))
}

/// The binaries of a major, as scripts/setup installed them.
pub(crate) fn binaries(major: u8) -> Result<PgBinaries> {
    Ok(BinarySearch::default().locate(PgMajor::new(major)?)?)
}

/// What [`load`] made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    /// `pg_database_size('src')`.
    pub(crate) database_bytes: u64,
    /// The whole data directory (WAL included), as `du` counts it.
    pub(crate) data_dir_bytes: u64,
    /// The WAL it holds (`pg_ls_waldir()`), after the load's WAL was dropped.
    pub(crate) wal_bytes: u64,
    pub(crate) seconds: f64,
}

/// Makes a cluster in `data_dir` with database `src` filled by `pgbench -i -s scale`, the
/// benchmark role, a CHECKPOINT and a clean stop, then syncs it to disk.
pub(crate) async fn load(
    major: u8,
    data_dir: &Path,
    scale: u32,
    port: u16,
    scratch: &Path,
) -> Result<Loaded> {
    let started = Instant::now();
    let binaries = binaries(major)?;
    let user = OsUser::lookup("postgres")?;
    let mut options = InitDbOptions::new(ADMIN);
    options.sync = false;
    postgres::initdb(&binaries, data_dir, &user, &options).await?;
    // Load-only settings: the next start (the engine's, or an alternative's) rewrites them.
    // `wal_level = minimal` lets pgbench's COPY into the tables it just truncated, and the
    // index builds, skip WAL: a load under `replica` with a large `max_wal_size` left the WAL
    // it wrote preallocated as future segments (about 8 GB at 10 GB), which no checkpoint
    // removes and which inflated the `cp -a` alternative.
    let load_settings = [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("wal_level", "minimal"),
        ("max_wal_senders", "0"),
        ("maintenance_work_mem", "256MB"),
    ];
    let local = Local::start(&binaries, data_dir, port, scratch, &load_settings).await?;
    local.sql(&format!("CREATE DATABASE {SOURCE_DB}")).await?;
    local.admin.create_or_replace_role(ROLE, PASSWORD, RoleKind::Superuser).await?;
    Cmd::new(binaries.tool("pgbench")?)
        .args(["-i", "-q", "-s", &scale.to_string(), "-U", ADMIN, "-p", &port.to_string()])
        .arg("-h")
        .arg(local.socket_dir())
        .arg(SOURCE_DB)
        .timeout(LOAD_TIMEOUT)
        .run()
        .await
        .context("pgbench -i")?;
    local.sql("CHECKPOINT").await?;
    let row = local
        .admin
        .client()
        .query_one(&format!("SELECT pg_database_size('{SOURCE_DB}')"), &[])
        .await?;
    let database_bytes = u64::try_from(row.get::<_, i64>(0))?;
    local.stop().await?;
    // A checkpoint under the default settings removes what WAL the load left behind its
    // last checkpoint, so `cp -a` copies what a user's data directory would hold.
    let local = Local::start(&binaries, data_dir, port, scratch, &[]).await?;
    local.sql("CHECKPOINT").await?;
    let row = local
        .admin
        .client()
        .query_one("SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()", &[])
        .await?;
    let wal_bytes = u64::try_from(row.get::<_, i64>(0))?;
    local.stop().await?;
    Cmd::new("sync").arg("--file-system").arg(data_dir).run().await?;
    Ok(Loaded {
        database_bytes,
        data_dir_bytes: du_bytes(data_dir).await?,
        wal_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Bytes a directory tree uses, as `du -sb` counts them (apparent sizes).
pub(crate) async fn du_bytes(dir: &Path) -> Result<u64> {
    let output = Cmd::new("du").arg("-sb").arg(dir).output().await?;
    let text = output.stdout_text();
    match text.split_whitespace().next().and_then(|n| n.parse().ok()) {
        Some(bytes) => Ok(bytes),
        None => bail!("du printed {text:?}"),
    }
}

/// Copies a data directory with `cp -a` (ownership and modes kept); `reflink` picks
/// `--reflink=always` or `--reflink=never`.
pub(crate) async fn copy_data_dir(from: &Path, to: &Path, reflink: bool) -> Result<()> {
    let reflink = if reflink { "--reflink=always" } else { "--reflink=never" };
    Cmd::new("cp")
        .args(["-a", reflink])
        .arg(from)
        .arg(to)
        .timeout(LOAD_TIMEOUT)
        .run()
        .await
        .with_context(|| format!("cp -a {} {}", from.display(), to.display()))
}

/// Connects over TCP to 127.0.0.1:`port` as `user` and runs `SELECT 1`.
pub(crate) async fn select_one(port: u16, user: &str, password: &str, db: &str) -> Result<()> {
    select_one_over(port, user, password, db, (tokio_postgres::NoTls, SslMode::Prefer)).await
}

/// [`select_one`] over `tls` with `ssl_mode`.
pub(crate) async fn select_one_over<T>(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    (tls, ssl_mode): (T, SslMode),
) -> Result<()>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .ssl_mode(ssl_mode)
        // SCRAM-SHA-256 over TLS too, not its channel-bound -PLUS: the TLS figures in
        // BENCHMARKS.md were measured so, and a plain login has no channel to bind.
        .channel_binding(tokio_postgres::config::ChannelBinding::Disable)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tls).await?;
    let task = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// Retries [`select_one`] (a refused connection, a server still starting) until it succeeds
/// or `within` has passed since the first try; the clock is the caller's.
pub(crate) async fn select_one_retrying(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    within: Duration,
) -> Result<u32> {
    let deadline = Instant::now() + within;
    let mut retries = 0;
    loop {
        match select_one(port, user, password, db).await {
            Ok(()) => return Ok(retries),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("SELECT 1 on port {port}")));
            }
            Err(_) => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}
