//! `--wake` (issue #16, scale to zero): the first connection to a stopped clone (its login to
//! `SELECT 1`, which starts the clone's server) against a cold create and a warm claim in the
//! same run, with the login to the same clones running beside them, the processes the stopped
//! clones leave and `GET /status` while they are stopped; and resets, cold and claiming a warm
//! clone.
//!
//! Two servers on one btrfs pool, one after the other: one without a warm pool (cold creates,
//! their resets, then stops and wakes of those clones), one with a warm pool of one (claims,
//! then resets of one clone, each once the pool is full again). Every login is tokio-postgres
//! over TCP with SCRAM, so no client process start is inside a figure; the logins to stopped
//! and running clones are never retried: a wake whose first connection fails fails the run.
//! The wakes are timed twice: with plain logins, then, stopped again, with TLS logins that
//! verify the server's certificate (which the engine carries through to the server).

use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Pool};
use crate::scion::{self, CLONE_PASSWORD, CLONE_USER};
use crate::server::{Extra, Server};
use crate::stats::{self, Summary, millis};
use crate::{SizeCtx, progress, size_label};

/// The warm pool of the server that times claims.
const WARM_POOL: usize = 1;

/// What the run found.
struct Found {
    clones: usize,
    cold: Summary,
    warm: Summary,
    wake: Summary,
    /// Login to `SELECT 1` on the clones running on their own port, before their stop.
    running: Summary,
    /// The same once woken: behind the engine's listener.
    woken: Summary,
    /// The wake and the login to the woken clones again, stopped again, over TLS
    /// (`verify-full`); or why those logins failed (a server that carries no TLS).
    tls: std::result::Result<(Summary, Summary), String>,
    status: Summary,
    /// `POST /clone/{id}/reset?wait` → `SELECT 1`, without and with a ready warm clone.
    reset_cold: Summary,
    reset_warm: Summary,
    /// Data directories with a process in them, with every timed clone stopped (the warm-up
    /// clone runs).
    busy_data_dirs: usize,
    load: Vec<(&'static str, String)>,
    fleet: Option<Fleet>,
}

/// Many clones on one host, most of them stopped (`--fleet`).
struct Fleet {
    clones: usize,
    stopped: usize,
    /// Why it stopped short of `clones`, if it did.
    short: Option<String>,
    /// PSS per running clone's data directory, KiB.
    pss_running: Summary,
    /// Data directories with a process in them once the stopped ones are stopped.
    busy_data_dirs: usize,
    /// `cloneDiffSize` per clone, bytes, and the pool's growth per clone over the phase.
    diff: Summary,
    pool_bytes_per_clone: f64,
    engine_rss_kib: u64,
    status: Summary,
    clones_list: Summary,
    /// The engine's RSS after the `/status` and `/clones` requests, KiB.
    engine_rss_after_kib: u64,
    /// The background collection's rounds (`dblab_scrape_duration_seconds` of each), ms.
    collection: Summary,
}

/// Runs the comparison at the first of `--sizes` with `--clones` timed clones per kind.
pub(crate) async fn run(ctx: &SizeCtx<'_>) -> Result<String> {
    let found = crate::on_loaded_pool(ctx, async |pool: &Pool| measure(ctx, pool).await).await?;
    Ok(render(&found, ctx.size))
}

async fn measure(ctx: &SizeCtx<'_>, pool: &Pool) -> Result<Found> {
    let count = ctx.args.clones;
    let mut load = vec![("start", stats::load_average())];
    let cold_server = start_server(ctx, pool, "cold", 0).await?;
    let outcome = async {
        progress(&format!("wake: {count} cold creates"));
        scion::create_ready(&cold_server, "warmup", None).await?;
        let mut cold = Vec::with_capacity(count);
        let mut clones = Vec::with_capacity(count);
        for n in 0..count {
            let timed = scion::create_ready(&cold_server, &format!("wake{n}"), None).await?;
            cold.push(timed.ready_ms);
            clones.push(timed);
        }
        let ports: Vec<u16> = clones.iter().map(|clone| clone.port).collect();
        let running = logins(&ports).await?;
        progress(&format!("wake: {count} resets without a warm pool"));
        let mut reset_cold = Vec::with_capacity(count);
        for (n, clone) in clones.iter().enumerate() {
            reset_cold.push(scion::reset_ready(&cold_server, &format!("wake{n}"), clone).await?);
        }
        progress(&format!("wake: {count} stops, then the first connection to each"));
        for n in 0..count {
            let id = format!("wake{n}");
            let stopped = cold_server.api.stop_clone(&id).await?;
            if stopped.stopped_at.is_none() {
                bail!("clone {id} is not stopped after POST /clone/{id}/stop: {stopped:?}");
            }
        }
        // A clone stopped for being idle has been idle for minutes, and stopped long before
        // its wake: its shutdown checkpoint is on disk by then (btrfs commits every 30 s).
        // Right after the stops it is not, and each wake's first fsync would wait for the
        // commit of those writes.
        crate::sync_all().await?;
        let busy_data_dirs = stats::pss_by_data_dir(pool.mountpoint()).len();
        let status = scion::api_latency(&cold_server, "/status", ctx.args.api_requests).await?;
        load.push(("before the wakes", stats::load_average()));
        let wake = logins(&ports).await.context("a first connection to a stopped clone")?;
        load.push(("after the wakes", stats::load_average()));
        let woken = logins(&ports).await?;
        progress(&format!("wake: {count} stops, then the first TLS connection to each"));
        for n in 0..count {
            cold_server.api.stop_clone(&format!("wake{n}")).await?;
        }
        // As before the plain wakes: the stops' writes on disk first (a clone stopped for
        // being idle stopped long before its wake).
        crate::sync_all().await?;
        let tls = crate::tls::VerifyFull::of_server(&cold_server.url).await?;
        load.push(("before the TLS wakes", stats::load_average()));
        let wake_tls = tls_logins(&tls, &ports).await.context("a first TLS connection");
        load.push(("after the TLS wakes", stats::load_average()));
        // A failure is noted and the other figures kept: a server before TLS went through the
        // engine's carry fails here, and is still worth comparing with.
        let tls = match wake_tls {
            Ok(wake_tls) => match tls_logins(&tls, &ports).await {
                Ok(woken_tls) => Ok((Summary::of(&wake_tls), Summary::of(&woken_tls))),
                Err(error) => Err(format!("{error:#}")),
            },
            Err(error) => Err(format!("{error:#}")),
        };
        let fleet = match ctx.args.fleet {
            0 => None,
            clones => Some(fleet(ctx, &cold_server, pool, clones).await?),
        };
        for n in 0..count {
            scion::destroy(&cold_server, &format!("wake{n}")).await?;
        }
        scion::destroy(&cold_server, "warmup").await?;
        Ok::<_, anyhow::Error>((
            cold,
            running,
            reset_cold,
            busy_data_dirs,
            status,
            wake,
            woken,
            tls,
            fleet,
        ))
    }
    .await;
    let outcome = outcome.map_err(|error| error.context(cold_server.log_tail()));
    cold_server.stop().await;
    crate::server::keep_log(&ctx.dir.join("state-wake-cold"), "wake-cold");
    std::fs::remove_dir_all(ctx.dir.join("state-wake-cold")).ok();
    let (cold, running, reset_cold, busy_data_dirs, status, wake, woken, tls, fleet) = outcome?;
    cluster::stop_all_under(pool.mountpoint()).await;

    let warm_server = start_server(ctx, pool, "warm", WARM_POOL).await?;
    progress(&format!("wake: {count} warm claims"));
    let warm = async {
        let warm = scion::clone_latency(&warm_server, count, WARM_POOL).await?;
        progress(&format!("wake: {count} resets, each claiming a warm clone"));
        let clone = scion::create_ready(&warm_server, "resetme", None).await?;
        let mut resets = Vec::with_capacity(count);
        for _ in 0..count {
            warm_server.wait_warm_pool(WARM_POOL).await?;
            resets.push(scion::reset_ready(&warm_server, "resetme", &clone).await?);
        }
        scion::destroy(&warm_server, "resetme").await?;
        Ok::<_, anyhow::Error>((warm, resets))
    }
    .await
    .map_err(|error| error.context(warm_server.log_tail()));
    warm_server.stop().await;
    crate::server::keep_log(&ctx.dir.join("state-wake-warm"), "wake-warm");
    let (warm, reset_warm) = warm?;
    load.push(("end", stats::load_average()));
    Ok(Found {
        clones: count,
        cold: Summary::of(&cold),
        warm: Summary::of(&warm.iter().map(|timed| timed.ready_ms).collect::<Vec<_>>()),
        wake: Summary::of(&wake),
        running: Summary::of(&running),
        woken: Summary::of(&woken),
        tls,
        status,
        reset_cold: Summary::of(&reset_cold),
        reset_warm: Summary::of(&reset_warm),
        busy_data_dirs,
        load,
        fleet,
    })
}

/// Creates `clones` more clones (kept), stops all but a tenth of them, and measures memory,
/// disk and `GET /status` then; the clones are destroyed afterwards. Stops short when memory
/// runs low or a create fails, and says so.
async fn fleet(ctx: &SizeCtx<'_>, server: &Server, pool: &Pool, clones: usize) -> Result<Fleet> {
    let running_wanted = clones.div_ceil(10);
    progress(&format!(
        "wake: a fleet of {clones} clones, {} of them stopped",
        clones - running_wanted
    ));
    let used_before = pool.used_bytes().await?;
    let mut made = Vec::with_capacity(clones);
    let mut short = None;
    for n in 0..clones {
        let available = stats::memory_kib().0;
        if available < scion::MEMORY_RESERVE_KIB {
            short = Some(format!("MemAvailable fell to {} MiB after {n} clones", available / 1024));
            break;
        }
        let id = format!("fleet{n}");
        match scion::create_ready(server, &id, None).await {
            Ok(_) => made.push(id.clone()),
            Err(error) => {
                short = Some(format!("clone {n} failed: {error:#}"));
                break;
            }
        }
        // The running tenth stays up; the rest stop as they come, so memory never holds all.
        if made.len() > running_wanted {
            server.api.stop_clone(&id).await.with_context(|| format!("stop {id}"))?;
        }
        if n % 100 == 99 {
            progress(&format!("wake: fleet at {} clones", n + 1));
        }
    }
    // Let the running clones settle and the engine refresh its sizes.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let pss = stats::pss_by_data_dir(pool.mountpoint());
    let listed = server.api.clones().await?;
    let diff: Vec<f64> = listed
        .iter()
        .filter(|clone| clone.id.starts_with("fleet"))
        .map(|clone| clone.metadata.clone_diff_size as f64)
        .collect();
    let used_after = pool.used_bytes().await?;
    let engine_rss_kib = stats::rss_kib(server.pid());
    progress(&format!("wake: {} background collection rounds", ctx.args.collection_rounds));
    let collection = collection_rounds(server, ctx.args.collection_rounds).await?;
    progress(&format!("wake: GET /status and GET /clones, {} each", ctx.args.api_requests));
    let status = scion::api_latency(server, "/status", ctx.args.api_requests).await?;
    let clones_list = scion::api_latency(server, "/clones", ctx.args.api_requests).await?;
    let fleet = Fleet {
        clones: made.len(),
        stopped: made.len().saturating_sub(running_wanted),
        short,
        pss_running: Summary::of(&pss.iter().map(|(_, kib)| *kib as f64).collect::<Vec<_>>()),
        busy_data_dirs: pss.len(),
        diff: Summary::of(&diff),
        pool_bytes_per_clone: used_after.saturating_sub(used_before) as f64
            / made.len().max(1) as f64,
        engine_rss_kib,
        status,
        clones_list,
        engine_rss_after_kib: stats::rss_kib(server.pid()),
        collection: Summary::of(&collection),
    };
    progress("wake: destroying the fleet");
    for id in &made {
        scion::destroy(server, id).await?;
    }
    Ok(fleet)
}

/// The durations of the next `rounds` rounds of the engine's background collection, in ms, as
/// `/metrics` shows each (`dblab_scrape_duration_seconds` once `dblab_scrape_success_timestamp`
/// moves); the round under way when it starts is left out.
async fn collection_rounds(server: &Server, rounds: usize) -> Result<Vec<f64>> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30 * (rounds as u64 + 1));
    let mut last = server.metric("dblab_scrape_success_timestamp").await?;
    let mut samples = Vec::with_capacity(rounds);
    while samples.len() < rounds {
        if Instant::now() > deadline {
            bail!("only {} collection rounds in time:\n{}", samples.len(), server.log_tail());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let [at, seconds] = server
            .metrics(["dblab_scrape_success_timestamp", "dblab_scrape_duration_seconds"])
            .await?;
        if at != last {
            last = at;
            samples.push(seconds * 1000.0);
        }
    }
    Ok(samples)
}

async fn start_server(
    ctx: &SizeCtx<'_>,
    pool: &Pool,
    name: &str,
    warm_pool: usize,
) -> Result<Server> {
    Server::start(
        ctx.server_bin,
        &ctx.dir.join(format!("state-wake-{name}")),
        &pool.image.backend_config(),
        ctx.api_port,
        ctx.clone_ports,
        warm_pool,
        Extra::default(),
    )
    .await
}

/// One login to `SELECT 1` on each port in turn, each timed; none retried.
async fn logins(ports: &[u16]) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(ports.len());
    for &port in ports {
        let started = Instant::now();
        cluster::select_one(port, CLONE_USER, CLONE_PASSWORD, cluster::SOURCE_DB)
            .await
            .with_context(|| format!("login to SELECT 1 on port {port}"))?;
        samples.push(millis(started));
    }
    Ok(samples)
}

/// [`logins`] over TLS, verifying each server's certificate.
async fn tls_logins(tls: &crate::tls::VerifyFull, ports: &[u16]) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(ports.len());
    for &port in ports {
        let started = Instant::now();
        tls.select_one(port, CLONE_USER, CLONE_PASSWORD, cluster::SOURCE_DB)
            .await
            .with_context(|| format!("TLS login to SELECT 1 on port {port}"))?;
        samples.push(millis(started));
    }
    Ok(samples)
}

fn render(found: &Found, size: u64) -> String {
    let n = found.clones;
    let mut out = format!(
        "A {} pgbench database on a btrfs image pool; {n} clones per kind, one at a time. Each \
         login is tokio-postgres over TCP with SCRAM as the clone's user, then `SELECT 1`; none \
         is retried.\n\n\
         | what | n | median | p95 | min | max |\n| --- | --- | --- | --- | --- | --- |\n",
        size_label(size)
    );
    let mut rows = vec![
        ("cold create: `POST /clone?wait` → `SELECT 1` (no warm pool)", &found.cold),
        ("warm claim: `POST /clone?wait` → `SELECT 1` (warm pool of 1, full)", &found.warm),
        ("**wake**: login → `SELECT 1` on a stopped clone (starts its server)", &found.wake),
        ("login → `SELECT 1` on the same clones running, before their stop", &found.running),
        ("login → `SELECT 1` on the same clones woken (behind the engine)", &found.woken),
    ];
    if let Ok((wake_tls, woken_tls)) = &found.tls {
        rows.push(("**wake over TLS** (`verify-full`), the same clones stopped again", wake_tls));
        rows.push(("TLS login → `SELECT 1` on the same clones woken", woken_tls));
    }
    rows.extend([
        ("reset: `POST /clone/{id}/reset?wait` → `SELECT 1` (no warm pool)", &found.reset_cold),
        ("reset claiming a warm clone (warm pool of 1, full)", &found.reset_warm),
    ]);
    for (label, summary) in rows {
        out.push_str(&row(label, summary));
    }
    out.push_str(&row(
        &format!("`GET /status` with {} clones, {n} of them stopped", n + 1),
        &found.status,
    ));
    if let Err(error) = &found.tls {
        out.push_str(&format!("\nThe TLS logins to the stopped clones failed: {error}.\n"));
    }
    if let Some(fleet) = &found.fleet {
        render_fleet(fleet, &mut out);
    }
    out.push_str(&format!(
        "\nWith the {n} clones stopped, {} data directories had a process in them (the \
         warm-up clone runs).\n\nLoad average: {}.\n",
        found.busy_data_dirs,
        found
            .load
            .iter()
            .map(|(when, load)| format!("{when} {load}"))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    out
}

fn render_fleet(fleet: &Fleet, out: &mut String) {
    let running = fleet.clones - fleet.stopped;
    out.push_str(&format!(
        "\n**Fleet**: {} clones on one host (beside the {} above), {} of them stopped, {running} \
         running{}.\n\n| what | median | p95 | p99 | max |\n| --- | --- | --- | --- | --- |\n",
        fleet.clones,
        "warm-up clone and the timed ones",
        fleet.stopped,
        fleet.short.as_ref().map(|why| format!(" (stopped short: {why})")).unwrap_or_default(),
    ));
    let mib = |kib: f64| kib / 1024.0;
    let s = &fleet.pss_running;
    out.push_str(&format!(
        "| PSS of a running clone's processes | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
        mib(s.median),
        mib(s.p95),
        mib(s.p99),
        mib(s.max)
    ));
    let d = &fleet.diff;
    out.push_str(&format!(
        "| `cloneDiffSize` of a clone | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB |\n",
        d.median / 1048576.0,
        d.p95 / 1048576.0,
        d.p99 / 1048576.0,
        d.max / 1048576.0
    ));
    for (label, t, unit) in [
        ("`GET /status`", &fleet.status, "requests"),
        ("`GET /clones`", &fleet.clones_list, "requests"),
        (
            "background collection round (`dblab_scrape_duration_seconds`)",
            &fleet.collection,
            "rounds",
        ),
    ] {
        out.push_str(&format!(
            "| {label} ({} {unit}) | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            t.n, t.median, t.p95, t.p99, t.max
        ));
    }
    out.push_str(&format!(
        "\nA stopped clone's memory is zero: {} data directories had a process in them, for \
         {running} running clones and the timed ones. The pool grew by {:.2} MiB per clone over \
         the phase; the engine's RSS was {:.0} MiB before the API requests and {:.0} MiB after.\n",
        fleet.busy_data_dirs,
        fleet.pool_bytes_per_clone / 1048576.0,
        fleet.engine_rss_kib as f64 / 1024.0,
        fleet.engine_rss_after_kib as f64 / 1024.0,
    ));
}

fn row(label: &str, summary: &Summary) -> String {
    format!(
        "| {label} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
        summary.n, summary.median, summary.p95, summary.min, summary.max
    )
}
