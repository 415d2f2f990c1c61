//! What users do without Scion, timed the same way (start of the operation → `SELECT 1` over
//! TCP with a password role in the new copy): `CREATE DATABASE … TEMPLATE` with each
//! strategy, PostgreSQL 18's `file_copy_method = clone`, `pg_dump | pg_restore`, and `cp -a`
//! of the data directory plus a start.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use exec::Cmd;

use crate::cluster::{self, ADMIN, Local, PASSWORD, ROLE, SOURCE_DB};
use crate::stats::millis;

const CONNECT_WITHIN: Duration = Duration::from_secs(30);
const DUMP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// One alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    WalLog,
    FileCopy,
    /// PG 18: `STRATEGY FILE_COPY` with `file_copy_method = clone` (reflinks on btrfs).
    FileCopyClone,
    DumpRestore,
    CopyDataDir,
}

impl Method {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Method::WalLog => "`CREATE DATABASE … TEMPLATE … STRATEGY WAL_LOG`",
            Method::FileCopy => "`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`",
            Method::FileCopyClone => {
                "`CREATE DATABASE … STRATEGY FILE_COPY`, `file_copy_method = clone` (btrfs)"
            }
            Method::DumpRestore => "`pg_dump -Fc -Z0` piped to `pg_restore` into a new database",
            Method::CopyDataDir => "`cp -a --reflink=never` of the data directory, start",
        }
    }

    /// Whether this one copies every byte (slow at 10 GB).
    pub(crate) fn is_slow(self) -> bool {
        !matches!(self, Method::FileCopyClone)
    }
}

/// Times `method` `runs` times against the stopped cluster in `data_dir` (database `src`,
/// role `bench`). Every copy is dropped (untimed) and a CHECKPOINT runs (untimed) before the
/// next, so no run pays for the last one's writes.
pub(crate) async fn measure(
    method: Method,
    major: u8,
    data_dir: &Path,
    port: u16,
    scratch: &Path,
    runs: usize,
) -> Result<Vec<f64>> {
    if method == Method::CopyDataDir {
        return copy_data_dir(major, data_dir, port, scratch, runs).await;
    }
    let binaries = cluster::binaries(major)?;
    let local = Local::start(&binaries, data_dir, port, scratch, &[]).await?;
    let result = measure_in(&local, method, runs).await;
    local.stop().await?;
    result
}

async fn measure_in(local: &Local, method: Method, runs: usize) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(runs);
    if method == Method::FileCopyClone {
        // A user setting: the admin session is the one that runs CREATE DATABASE.
        local.sql("SET file_copy_method = clone").await?;
    }
    for run in 0..runs {
        let db = format!("alt_{run}");
        local.sql("CHECKPOINT").await?;
        match time_copy(local, method, &db).await {
            Ok(elapsed) => samples.push(elapsed),
            Err(error) => {
                // A half-made copy (a restore that filled the pool) must not stay for the
                // alternatives after this one, which copy the whole data directory.
                if let Err(cleanup) = local.sql(&format!("DROP DATABASE IF EXISTS {db}")).await {
                    return Err(error.context(format!("and then {cleanup:#}")));
                }
                return Err(error);
            }
        }
        local.sql(&format!("DROP DATABASE {db}")).await?;
    }
    Ok(samples)
}

/// Makes copy `db` with `method` and times it up to the first `SELECT 1` in it.
async fn time_copy(local: &Local, method: Method, db: &str) -> Result<f64> {
    let started = Instant::now();
    match method {
        Method::WalLog => {
            local
                .sql(&format!("CREATE DATABASE {db} TEMPLATE {SOURCE_DB} STRATEGY WAL_LOG"))
                .await?;
        }
        Method::FileCopy | Method::FileCopyClone => {
            local
                .sql(&format!("CREATE DATABASE {db} TEMPLATE {SOURCE_DB} STRATEGY FILE_COPY"))
                .await?;
        }
        Method::DumpRestore => {
            local.sql(&format!("CREATE DATABASE {db} TEMPLATE template0")).await?;
            dump_restore(local, db).await?;
        }
        Method::CopyDataDir => {
            anyhow::bail!("cp -a is timed with its own start, not inside a running server")
        }
    }
    cluster::select_one_retrying(local.port(), ROLE, PASSWORD, db, CONNECT_WITHIN).await?;
    Ok(millis(started))
}

/// `pg_dump -Fc -Z0 src | pg_restore -d db` over the unix socket. Uncompressed, so the dump's
/// CPU cost is not held against the alternative.
async fn dump_restore(local: &Local, db: &str) -> Result<()> {
    let bin = local.binaries.bin_dir();
    let socket = local.socket_dir().display().to_string();
    let port = local.port();
    let script = format!(
        "set -o pipefail; '{dump}' -Fc -Z0 -h '{socket}' -p {port} -U {ADMIN} {SOURCE_DB} \
         | '{restore}' -h '{socket}' -p {port} -U {ADMIN} -d {db} --exit-on-error",
        dump = bin.join("pg_dump").display(),
        restore = bin.join("pg_restore").display(),
    );
    Cmd::new("bash")
        .args(["-c", &script])
        .timeout(DUMP_TIMEOUT)
        .run()
        .await
        .context("pg_dump | pg_restore")
}

/// `cp -a` of the stopped data directory, a start of the copy and a `SELECT 1`; the copy is
/// stopped and removed (untimed) after each run.
async fn copy_data_dir(
    major: u8,
    data_dir: &Path,
    port: u16,
    scratch: &Path,
    runs: usize,
) -> Result<Vec<f64>> {
    let binaries = cluster::binaries(major)?;
    let parent = data_dir.parent().context("the data directory has a parent")?;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let copy = parent.join(format!("cp-{run}"));
        Cmd::new("sync").run().await?;
        let started = Instant::now();
        if let Err(error) = cluster::copy_data_dir(data_dir, &copy, false).await {
            // A partial copy (a full pool) would hold the space the next phases need.
            std::fs::remove_dir_all(&copy).ok();
            return Err(error);
        }
        let local = Local::start(&binaries, &copy, port, scratch, &[]).await?;
        let selected =
            cluster::select_one_retrying(port, ROLE, PASSWORD, "postgres", CONNECT_WITHIN).await;
        samples.push(millis(started));
        local.stop().await?;
        std::fs::remove_dir_all(&copy)?;
        selected?;
    }
    Ok(samples)
}
