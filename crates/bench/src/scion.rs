//! Scion measured as a user sees it: clone-ready latency (POST /clone?wait → SELECT 1 over
//! TCP with the clone's credentials), clones per host, and API latency with those clones.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api_types::{CreateCloneRequest, DatabaseRequest, ResetCloneRequest, SnapshotRef, StatusCode};

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
/// Density (and the wake mode's fleet) stops before the machine runs this short of memory.
pub(crate) const MEMORY_RESERVE_KIB: u64 = 1 << 20;

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

/// A burst of concurrent creates.
#[derive(Debug, Clone, Default)]
pub(crate) struct Burst {
    /// Creates sent at once.
    pub(crate) size: usize,
    /// Warm clones ready when it began.
    pub(crate) warm_ready: usize,
    /// POST → SELECT 1 per create, ms.
    pub(crate) ready: Summary,
    /// From the first POST to the last create's SELECT 1, ms.
    pub(crate) wall_ms: f64,
    /// Creates that claimed a warm clone (`scion_warm_pool_hits_total`'s growth).
    pub(crate) warm_hits: u64,
}

/// Sends `size` creates at once, once the warm pool is full, and times each and the whole
/// burst; then destroys them (untimed). Full is `warm_pool`, or the size the server keeps
/// after earlier bursts (`scion_warm_pool_target`) where it says.
pub(crate) async fn burst(server: &Server, size: usize, warm_pool: usize) -> Result<Burst> {
    let target = server.metric("scion_warm_pool_target").await? as usize;
    let warm_pool = if target > 0 { target } else { warm_pool };
    if warm_pool > 0 {
        server.wait_warm_pool(warm_pool).await?;
    }
    let hits_before = server.metric("scion_warm_pool_hits_total").await?;
    let ids: Vec<String> = (0..size).map(|n| format!("burst{size}x{n}")).collect();
    let started = Instant::now();
    let created =
        futures_util::future::join_all(ids.iter().map(|id| create_ready(server, id, None))).await;
    let wall_ms = millis(started);
    let hits = server.metric("scion_warm_pool_hits_total").await? - hits_before;
    let destroyed = futures_util::future::join_all(ids.iter().map(|id| destroy(server, id))).await;
    let mut ready = Vec::with_capacity(size);
    for timed in created {
        ready.push(timed?.ready_ms);
    }
    for outcome in destroyed {
        outcome?;
    }
    Ok(Burst {
        size,
        warm_ready: warm_pool,
        ready: Summary::of(&ready),
        wall_ms,
        warm_hits: hits as u64,
    })
}

/// Reset and destroy of a clone after a large delete against an untouched one, in one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discards {
    /// Rows each dirty clone deleted before its reset, and again before its destroy.
    pub(crate) rows_deleted: u64,
    /// `POST /clone/{id}/reset?wait` → `SELECT 1`, ms.
    pub(crate) reset_clean: Summary,
    pub(crate) reset_dirty: Summary,
    /// `DELETE /clone/{id}` → the clone gone from `GET /clone/{id}`, ms.
    pub(crate) destroy_clean: Summary,
    pub(crate) destroy_dirty: Summary,
}

/// Times `runs` resets and destroys of an untouched clone and of one that deleted every row
/// of `pgbench_accounts` (its dirty buffers are what a shutdown checkpoint would write),
/// alternating the two.
pub(crate) async fn discards(server: &Server, runs: usize) -> Result<Discards> {
    let mut result = Discards::default();
    let (mut reset, mut destroyed) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for n in 0..runs {
        for dirty in [false, true] {
            let id = format!("discard{n}{}", if dirty { "d" } else { "c" });
            let clone = create_ready(server, &id, None).await?;
            if dirty {
                result.rows_deleted = delete_accounts(clone.port).await?;
            }
            reset[usize::from(dirty)].push(reset_ready(server, &id, &clone).await?);
            if dirty {
                delete_accounts(clone.port).await?;
            }
            let started = Instant::now();
            destroy(server, &id).await?;
            destroyed[usize::from(dirty)].push(millis(started));
        }
    }
    [result.reset_clean, result.reset_dirty] = reset.map(|samples| Summary::of(&samples));
    [result.destroy_clean, result.destroy_dirty] = destroyed.map(|samples| Summary::of(&samples));
    Ok(result)
}

/// Resets clone `id` to its snapshot and times it from the POST to the first successful
/// `SELECT 1` on its port.
pub(crate) async fn reset_ready(server: &Server, id: &str, clone: &Timed) -> Result<f64> {
    let started = Instant::now();
    let again = server
        .api
        .reset_clone(id, &ResetCloneRequest::default(), Some(CREATE_WAIT))
        .await
        .with_context(|| format!("POST /clone/{id}/reset"))?;
    if again.as_ref().is_none_or(|clone| clone.status.code != StatusCode::Ok) {
        bail!("clone {id} after its reset: {again:?}\n{}", server.log_tail());
    }
    cluster::select_one_retrying(clone.port, CLONE_USER, CLONE_PASSWORD, &clone.db, CONNECT_WITHIN)
        .await?;
    Ok(millis(started))
}

/// Deletes every row of the clone's `pgbench_accounts` as the clone's user; returns how many.
async fn delete_accounts(port: u16) -> Result<u64> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(CLONE_USER)
        .password(CLONE_PASSWORD)
        .dbname(cluster::SOURCE_DB);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let deleted = client.execute("DELETE FROM pgbench_accounts", &[]).await?;
    drop(client);
    let _ = task.await;
    Ok(deleted)
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
pub(crate) async fn api_latency(server: &Server, path: &str, requests: usize) -> Result<Summary> {
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
