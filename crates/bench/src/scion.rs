//! Scion measured as a user sees it: clone-ready latency (POST /clone?wait → SELECT 1 over
//! TCP with the clone's credentials), clones per host, and API latency with those clones.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api_types::{CreateCloneRequest, DatabaseRequest, SnapshotRef, StatusCode};

use crate::cluster::{self, Pool};
use crate::server::{Server, TOKEN};
use crate::stats::{self, Summary, millis};

/// The clone user every benchmark clone gets.
pub(crate) const CLONE_USER: &str = "bench_user";
pub(crate) const CLONE_PASSWORD: &str = "Cl0ne-bench-pass!";
/// How long the server may take to answer `POST /clone?wait=`.
const CREATE_WAIT: Duration = Duration::from_secs(120);
/// How long a clone the server called ready may refuse connections before it counts as a failure.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// The pool's growth over this many first clones, measured right after them, is the disk of a
/// fresh clone.
const FRESH_CLONES: usize = 10;
/// Density stops before the machine runs this short of memory.
const MEMORY_RESERVE_KIB: u64 = 1 << 20;

/// One timed clone.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    /// POST → SELECT 1 succeeded, ms.
    pub(crate) ready_ms: f64,
    /// The server's own `cloningTime`, ms.
    pub(crate) server_ms: f64,
    /// Connection attempts refused after the server had answered OK.
    pub(crate) retries: u32,
    /// The clone's port and database, for queries after the timed `SELECT 1`.
    pub(crate) port: u16,
    pub(crate) db: String,
}

/// Clone-ready latency over `count` clones (plus one untimed warm-up), each destroyed (untimed)
/// before the next is made; with a warm pool, each made once the pool is full again.
pub(crate) async fn clone_latency(
    server: &Server,
    count: usize,
    warm_pool: usize,
) -> Result<Vec<Timed>> {
    let mut timed = Vec::with_capacity(count);
    for n in 0..=count {
        if warm_pool > 0 {
            server.wait_warm_pool(warm_pool).await?;
        }
        let id = if n == 0 { "warmup".to_owned() } else { format!("lat{n}") };
        let clone = create_ready(server, &id, None).await?;
        if n > 0 {
            timed.push(clone);
        }
        destroy(server, &id).await?;
    }
    Ok(timed)
}

/// Creates clone `id` (of `snapshot`, or of the newest) and times it from the POST to the
/// first successful `SELECT 1`.
pub(crate) async fn create_ready(
    server: &Server,
    id: &str,
    snapshot: Option<&str>,
) -> Result<Timed> {
    let request = CreateCloneRequest {
        id: id.to_owned(),
        snapshot: snapshot.map(|id| SnapshotRef { id: id.to_owned() }),
        db: Some(DatabaseRequest {
            username: CLONE_USER.to_owned(),
            password: CLONE_PASSWORD.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let clone = server
        .api
        .create_clone(&request, Some(CREATE_WAIT))
        .await
        .with_context(|| format!("POST /clone {id}"))?;
    if clone.status.code != StatusCode::Ok {
        bail!(
            "clone {id} is {:?}: {}\n{}",
            clone.status.code,
            clone.status.message,
            server.log_tail()
        );
    }
    let port: u16 =
        clone.db.port.parse().with_context(|| format!("clone port {:?}", clone.db.port))?;
    let db = if clone.db.db_name.is_empty() { "postgres" } else { clone.db.db_name.as_str() };
    let retries =
        cluster::select_one_retrying(port, CLONE_USER, CLONE_PASSWORD, db, CONNECT_WITHIN).await?;
    Ok(Timed {
        ready_ms: millis(started),
        server_ms: clone.metadata.cloning_time * 1000.0,
        retries,
        port,
        db: db.to_owned(),
    })
}

pub(crate) async fn destroy(server: &Server, id: &str) -> Result<()> {
    server.api.destroy_clone(id).await?;
    if let Some(left) = server.api.wait_clone_gone(id, Duration::from_secs(120)).await? {
        bail!("clone {id} was not destroyed: {:?}", left.status);
    }
    Ok(())
}

/// What the density phase found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Density {
    pub(crate) target: usize,
    pub(crate) running: usize,
    /// Why it stopped short of the target, if it did.
    pub(crate) stopped_because: Option<String>,
    /// PSS per clone (postmaster and children), KiB.
    pub(crate) pss: Summary,
    /// `cloneDiffSize` per clone from `GET /clones`, bytes.
    pub(crate) diff: Summary,
    /// Growth of the pool's used bytes over the phase, per clone.
    pub(crate) pool_bytes_per_clone: f64,
    /// Growth of the pool's used bytes over the first clones, right after they were made, per
    /// clone.
    pub(crate) fresh_bytes_per_clone: Option<f64>,
    pub(crate) engine_rss_before_kib: u64,
    pub(crate) engine_rss_after_kib: u64,
    pub(crate) mem_available_before_kib: u64,
    pub(crate) mem_available_after_kib: u64,
    /// Clone-ready time of the clones made in this phase (they accumulate), ms.
    pub(crate) ready: Summary,
    /// `GET /status` and `GET /clones` latency with the clones running, ms.
    pub(crate) status_api: Summary,
    pub(crate) clones_api: Summary,
}

/// Creates clones (kept) until `target` run at once, memory runs short, or a create fails; then
/// measures memory, disk and API latency with all of them running.
pub(crate) async fn density(
    server: &Server,
    pool: &Pool,
    target: usize,
    api_requests: usize,
) -> Result<Density> {
    let mut result = Density {
        target,
        engine_rss_before_kib: stats::rss_kib(server.pid()),
        mem_available_before_kib: stats::memory_kib().0,
        ..Default::default()
    };
    let used_before = pool.used_bytes().await?;
    let mut ready = Vec::new();
    for n in 0..target {
        let available = stats::memory_kib().0;
        if available < MEMORY_RESERVE_KIB {
            result.stopped_because =
                Some(format!("MemAvailable fell to {} MiB after {n} clones", available / 1024));
            break;
        }
        match create_ready(server, &format!("dens{n}"), None).await {
            Ok(timed) => {
                ready.push(timed.ready_ms);
                if ready.len() == FRESH_CLONES {
                    let used = pool.used_bytes().await?;
                    result.fresh_bytes_per_clone =
                        Some(used.saturating_sub(used_before) as f64 / FRESH_CLONES as f64);
                }
            }
            Err(error) => {
                result.stopped_because = Some(format!("clone {n} failed: {error:#}"));
                break;
            }
        }
    }
    result.running = ready.len();
    result.ready = Summary::of(&ready);
    // Let the clones settle (each had one session) and the engine refresh its sizes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pss: Vec<f64> =
        stats::pss_by_data_dir(pool.mountpoint()).into_iter().map(|(_, kib)| kib as f64).collect();
    result.pss = Summary::of(&pss);
    let clones = server.api.clones().await?;
    let diff: Vec<f64> = clones.iter().map(|clone| clone.metadata.clone_diff_size as f64).collect();
    result.diff = Summary::of(&diff);
    let used_after = pool.used_bytes().await?;
    if result.running > 0 {
        result.pool_bytes_per_clone =
            used_after.saturating_sub(used_before) as f64 / result.running as f64;
    }
    result.engine_rss_after_kib = stats::rss_kib(server.pid());
    result.mem_available_after_kib = stats::memory_kib().0;
    result.status_api = api_latency(server, "/status", api_requests).await?;
    result.clones_api = api_latency(server, "/clones", api_requests).await?;
    Ok(result)
}

/// `requests` sequential GETs of `path` with the token, each timed to the end of its body.
async fn api_latency(server: &Server, path: &str, requests: usize) -> Result<Summary> {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", server.url);
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let response = http.get(&url).header("Verification-Token", TOKEN).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        samples.push(millis(started));
        if !status.is_success() || body.is_empty() {
            bail!("GET {path} answered {status}");
        }
    }
    Ok(Summary::of(&samples))
}
