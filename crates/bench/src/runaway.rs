//! `--runaway` (issue #16): ten clones running pgbench next to a runaway clone (sessions that
//! allocate and spin), their throughput without the runaway, with it under a CPU and memory
//! limit, and with it unlimited, all on one server and one btrfs pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use api_types::{CloneLimits, CreateCloneRequest, DatabaseRequest, StatusCode};

use crate::cluster::{self, Pool};
use crate::scion::{CLONE_PASSWORD, CLONE_USER};
use crate::server::{Extra, Server};
use crate::{SizeCtx, progress, size_label};

/// Clones running pgbench.
const CALM_CLONES: usize = 10;
/// Runaway sessions in the runaway clone.
const RUNAWAY_SESSIONS: usize = 2;
/// Each runaway statement: 400 MB in one string, then a spin over a hundred million rows.
const RUNAWAY_SQL: &str =
    "SELECT length(repeat('x', 400000000)) + (SELECT count(*) FROM generate_series(1, 100000000))";
/// The runaway clone's limits when it has some.
const LIMITS: CloneLimits = CloneLimits { cpu: Some(0.25), memory: Some(256 << 20), disk: None };

/// One scenario's figures.
struct Scenario {
    label: &'static str,
    /// pgbench transactions per second of each calm clone.
    tps: Vec<f64>,
    /// Runaway statements that ended (finished, failed or killed), and the kernel's OOM kills.
    runaway_ends: u64,
    oom_kills: Option<u64>,
    load: String,
}

async fn create(server: &Server, id: &str, limits: Option<CloneLimits>) -> Result<u16> {
    let request = CreateCloneRequest {
        id: id.to_owned(),
        db: Some(DatabaseRequest {
            username: CLONE_USER.to_owned(),
            password: CLONE_PASSWORD.to_owned(),
            ..Default::default()
        }),
        limits,
        ..Default::default()
    };
    let clone = server
        .api
        .create_clone(&request, Some(Duration::from_secs(120)))
        .await
        .with_context(|| format!("POST /clone {id}"))?;
    if clone.status.code != StatusCode::Ok {
        bail!("clone {id} is {:?}: {}", clone.status.code, clone.status.message);
    }
    Ok(clone.db.port.parse()?)
}

/// pgbench's select-only run on `port` for `seconds`; its tps.
async fn pgbench(port: u16, seconds: u64, major: u8) -> Result<f64> {
    let binaries = cluster::binaries(major)?;
    let output = exec::Cmd::new(binaries.tool("pgbench")?)
        .args(["-n", "-S", "-c", "2", "-j", "1", "-T", &seconds.to_string()])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", CLONE_USER, cluster::SOURCE_DB])
        .secret_env("PGPASSWORD", CLONE_PASSWORD)
        .timeout(Duration::from_secs(seconds + 120))
        .output()
        .await
        .context("pgbench")?;
    let output = String::from_utf8_lossy(&output.stdout);
    output
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no tps in pgbench's output:\n{output}"))
}

/// Runs the runaway statement in `RUNAWAY_SESSIONS` sessions on `port`, reconnecting after
/// each kill, until `stop`; counts the statements that ended.
fn spawn_runaway(
    port: u16,
    stop: &Arc<AtomicBool>,
    ends: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..RUNAWAY_SESSIONS)
        .map(|_| {
            let (stop, ends) = (stop.clone(), ends.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let connected = tokio_postgres::Config::new()
                        .host("127.0.0.1")
                        .port(port)
                        .user(CLONE_USER)
                        .password(CLONE_PASSWORD)
                        .dbname(cluster::SOURCE_DB)
                        .connect(tokio_postgres::NoTls)
                        .await;
                    let Ok((client, connection)) = connected else {
                        // The clone is in crash recovery: try again shortly.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    tokio::spawn(connection);
                    while !stop.load(Ordering::Relaxed) {
                        let failed = client.simple_query(RUNAWAY_SQL).await.is_err();
                        ends.fetch_add(1, Ordering::Relaxed);
                        if failed {
                            break;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn oom_kills(server: &Server, id: &str) -> Option<u64> {
    server.api.clone_status(id).await.ok()?.usage?.oom_kills
}

async fn scenario(
    label: &'static str,
    calm: &[u16],
    runaway: Option<(&Server, &str, u16)>,
    seconds: u64,
    major: u8,
) -> Result<Scenario> {
    progress(&format!("runaway: {label}"));
    let stop = Arc::new(AtomicBool::new(false));
    let ends = Arc::new(AtomicU64::new(0));
    let before = match runaway {
        Some((server, id, _)) => oom_kills(server, id).await,
        None => None,
    };
    let tasks = match runaway {
        Some((_, _, port)) => spawn_runaway(port, &stop, &ends),
        None => Vec::new(),
    };
    // Let the runaway get going before the clock starts.
    if runaway.is_some() {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let load_before = crate::stats::load_average();
    let runs: Vec<_> = calm.iter().map(|&port| pgbench(port, seconds, major)).collect();
    let results = futures_join(runs).await;
    let load_after = crate::stats::load_average();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    let tps = results.into_iter().collect::<Result<Vec<f64>>>()?;
    let after = match runaway {
        Some((server, id, _)) => oom_kills(server, id).await,
        None => None,
    };
    Ok(Scenario {
        label,
        tps,
        runaway_ends: ends.load(Ordering::Relaxed),
        oom_kills: after.map(|after| after - before.unwrap_or(0)),
        load: format!("{load_before} → {load_after}"),
    })
}

/// Awaits every future at once.
async fn futures_join<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

/// Runs the three scenarios at the first of `--sizes` and returns the Markdown section.
pub(crate) async fn run(ctx: &SizeCtx<'_>) -> Result<String> {
    let args = ctx.args;
    let scenarios = crate::on_loaded_pool(ctx, async |pool: &Pool| {
        let server = Server::start(
            ctx.server_bin,
            &ctx.dir.join("state-runaway"),
            &pool.image.backend_config(),
            ctx.api_port,
            ctx.clone_ports,
            0,
            Extra::default(),
        )
        .await?;
        let outcome = async {
            let mut calm = Vec::new();
            for index in 0..CALM_CLONES {
                calm.push(create(&server, &format!("calm-{index}"), None).await?);
            }
            let seconds = args.runaway_seconds;
            let major = args.major;
            let mut scenarios = vec![scenario("no runaway", &calm, None, seconds, major).await?];
            for (label, id, limits) in [
                ("runaway with cpu 0.25, memory 256 MiB", "runaway-limited", Some(LIMITS)),
                ("runaway without limits", "runaway-free", None),
            ] {
                let port = create(&server, id, limits).await?;
                let runaway = Some((&server, id, port));
                scenarios.push(scenario(label, &calm, runaway, seconds, major).await?);
                server.api.destroy_clone(id).await?;
            }
            Ok::<_, anyhow::Error>(scenarios)
        }
        .await;
        server.stop().await;
        outcome
    })
    .await?;
    Ok(render(&scenarios, ctx.size, args.runaway_seconds))
}

fn render(scenarios: &[Scenario], size: u64, seconds: u64) -> String {
    let mut out = format!(
        "{CALM_CLONES} clones of a {} pgbench database, each running `pgbench -S -c 2 -T {seconds}`; \
         the runaway clone runs {RUNAWAY_SESSIONS} sessions of `{RUNAWAY_SQL}` in a loop.\n\n\
         | scenario | total tps | min / max tps of a clone | runaway statements ended | OOM kills | load before → after |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        size_label(size)
    );
    for scenario in scenarios {
        let total: f64 = scenario.tps.iter().sum();
        let min = scenario.tps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = scenario.tps.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "| {} | {total:.0} | {min:.0} / {max:.0} | {} | {} | {} |\n",
            scenario.label,
            scenario.runaway_ends,
            scenario.oom_kills.map_or("–".to_owned(), |kills| kills.to_string()),
            scenario.load,
        ));
    }
    out
}
