//! Benchmark, not a test: how fast an instance starts on each major, and its idle memory.
//!
//! For every installed major from 13 to 18, on a fresh cluster at the default clone settings:
//! - launch → accepting: [`Instance::start`] (settings rewritten, postgres spawned, `ready` in
//!   postmaster.pid, a trusted connection over the unix socket), cleanly stopped between runs;
//! - launch → first `SELECT 1` over TCP as a password (SCRAM-SHA-256) role;
//! - idle PSS: the sum of `Pss` from `/proc/<pid>/smaps_rollup` over the postmaster and its
//!   children, 3 s after one query.
//!
//! With `SCION_BENCH_PLAIN=1`, every run of [`Instance::start`] is followed, on the same cluster,
//! by the plain launch of reference/machine.md §2: `setpriv … postgres -D … -p … -k …
//! -c listen_addresses=127.0.0.1` with the cluster's own postgresql.conf as initdb wrote it
//! (without Scion's settings file), `postmaster.pid` polled every 0.5 ms, then the same trusted
//! connection over the socket. The two alternate, so both see the same machine moment.
//!
//! With `SCION_BENCH_SANDBOX=1`, every run is also followed by a start of the same cluster in a
//! sandbox (own namespaces and private root, as the engine starts clones), so the two compare
//! side by side in one run.
//!
//! Run as root: `cargo bench -p postgres --bench start` (`SCION_BENCH_RUNS` sets the runs per
//! major, default 30; `SCION_BENCH_SETTINGS="fsync=off"` adds settings; `SCION_BENCH_DIR` puts
//! the data directories under another directory than /tmp, a btrfs pool's mount point say).
//! Prints a Markdown table.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark stops at the first error")]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use exec::Cmd;
use postgres::{
    BinarySearch, InitDbOptions, Instance, InstanceSpec, OsUser, PgBinaries, PgMajor, PidFile,
    RoleKind, ServerSettings, StopMode,
};
use test_support::measure::{load_average, millis, percentile, pss_kib};

const ADMIN: &str = "postgres";
const ROLE: &str = "bench";
const PASSWORD: &str = "bench password";
const STEP: Duration = Duration::from_secs(30);
/// How often the plain launch reads postmaster.pid.
const PLAIN_POLL: Duration = Duration::from_micros(500);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize =
        std::env::var("SCION_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let search = BinarySearch::default();
    let plain = std::env::var("SCION_BENCH_PLAIN").is_ok_and(|value| value == "1");
    let sandboxed = std::env::var("SCION_BENCH_SANDBOX").is_ok_and(|value| value == "1");
    println!("load average before: {}; {}", load_average(), pressure());
    println!(
        "runs per major: {runs}; settings: shared_buffers={}, max_connections={}, extra: {:?}\n",
        postgres::conf::DEFAULT_SHARED_BUFFERS,
        postgres::conf::DEFAULT_MAX_CONNECTIONS,
        extra_settings()
    );
    println!("data directories under {}\n", bench_dir().display());
    println!(
        "| version | spawned | `ready` in pid file | accepting median | accepting p95 \
         | first SELECT 1 (TCP, SCRAM) median | p95 | fast stop median | idle PSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut plain_rows = Vec::new();
    let mut sandbox_rows = Vec::new();
    for binaries in search.installed() {
        let major = binaries.major();
        let version = binaries.verify().await.unwrap();
        let result = bench_major(major, runs, plain, sandboxed).await;
        if sandboxed {
            let (host, sandbox) = (&result.accepting, &result.sandboxed_accepting);
            sandbox_rows.push(format!(
                "| {version} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} |",
                percentile(host, 50),
                percentile(host, 95),
                percentile(sandbox, 50),
                percentile(sandbox, 95),
                percentile(sandbox, 50) / percentile(host, 50),
            ));
        }
        if plain {
            plain_rows.push(format!(
                "| {version} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                percentile(&result.ready, 50),
                percentile(&result.plain_ready, 50),
                percentile(&result.plain_ready, 95),
                percentile(&result.accepting, 50),
                percentile(&result.plain_accepting, 50),
                percentile(&result.plain_accepting, 95),
            ));
        }
        println!(
            "| {version} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB |",
            percentile(&result.spawned, 50),
            percentile(&result.ready, 50),
            percentile(&result.accepting, 50),
            percentile(&result.accepting, 95),
            percentile(&result.first_select, 50),
            percentile(&result.first_select, 95),
            percentile(&result.stop, 50),
            result.pss_kib as f64 / 1024.0,
        );
    }
    if plain {
        println!("\nThe same runs, next to the plain launch:\n");
        println!(
            "| version | `ready`, Scion | `ready`, plain median | plain p95 \
             | accepting, Scion | accepting, plain median | plain p95 |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for row in plain_rows {
            println!("{row}");
        }
    }
    if sandboxed {
        println!("\nThe same runs, next to a start in a sandbox (launch → accepting):\n");
        println!(
            "| version | host namespaces median | p95 | sandboxed median | p95 \
             | sandboxed / host (median) |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        for row in sandbox_rows {
            println!("{row}");
        }
    }
    println!("\nload average after: {}; {}", load_average(), pressure());
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("SCION_BENCH_DIR").map_or_else(|| "/tmp".into(), Into::into)
}

/// `SCION_BENCH_SETTINGS="fsync=off work_mem=8MB"`: settings to compare against the defaults.
fn extra_settings() -> Vec<(String, String)> {
    let text = std::env::var("SCION_BENCH_SETTINGS").unwrap_or_default();
    text.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// How much of the last minute tasks spent waiting for a CPU and for I/O (`some avg60`): the
/// start is CPU-bound, and each of the postmaster's fsyncs waits behind other writers.
fn pressure() -> String {
    let avg60 = |resource: &str| {
        let text =
            std::fs::read_to_string(format!("/proc/pressure/{resource}")).unwrap_or_default();
        text.lines()
            .find(|line| line.starts_with("some"))
            .and_then(|line| line.split_whitespace().find_map(|field| field.strip_prefix("avg60=")))
            .unwrap_or("?")
            .to_owned()
    };
    format!("CPU pressure {}%, I/O pressure {}% (some, avg60)", avg60("cpu"), avg60("io"))
}

struct MajorResult {
    spawned: Vec<f64>,
    ready: Vec<f64>,
    accepting: Vec<f64>,
    first_select: Vec<f64>,
    stop: Vec<f64>,
    plain_ready: Vec<f64>,
    plain_accepting: Vec<f64>,
    sandboxed_accepting: Vec<f64>,
    pss_kib: u64,
}

async fn bench_major(major: PgMajor, runs: usize, plain: bool, sandboxed: bool) -> MajorResult {
    let binaries = BinarySearch::default().locate(major).unwrap();
    // The socket, the log and the plain launch's settings stay in /tmp, as the engine keeps
    // them in its state directory; only the data directory goes where SCION_BENCH_DIR says.
    let dir = tempfile::Builder::new().prefix("scion-pg-bench-").tempdir_in("/tmp").unwrap();
    let data_parent =
        tempfile::Builder::new().prefix("scion-pg-bench-").tempdir_in(bench_dir()).unwrap();
    for path in [dir.path(), data_parent.path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let user = OsUser::lookup("postgres").unwrap();
    let mut settings = ServerSettings::new(port, dir.path().join("sock"));
    settings.extra = extra_settings();
    let spec = InstanceSpec::new(
        data_parent.path().join("data"),
        settings,
        ADMIN,
        dir.path().join("postgres.log"),
        user,
    );
    let mut options = InitDbOptions::new(ADMIN);
    options.sync = false;
    postgres::initdb(&binaries, &spec.data_dir, &spec.user, &options).await.unwrap();
    // initdb's own postgresql.conf, before Scion appends its include line: the plain launch's.
    let plain_conf = dir.path().join("plain.conf");
    std::fs::copy(spec.data_dir.join("postgresql.conf"), &plain_conf).unwrap();
    std::os::unix::fs::chown(&plain_conf, Some(spec.user.uid), Some(spec.user.gid)).unwrap();

    // Create the login role once; the first start also warms the page cache.
    let mut instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    instance
        .admin()
        .await
        .unwrap()
        .create_or_replace_role(ROLE, PASSWORD, RoleKind::Superuser)
        .await
        .unwrap();
    instance.stop(StopMode::Fast, STEP).await.unwrap();

    let mut result = MajorResult {
        spawned: Vec::new(),
        ready: Vec::new(),
        accepting: Vec::new(),
        first_select: Vec::new(),
        stop: Vec::new(),
        plain_ready: Vec::new(),
        plain_accepting: Vec::new(),
        sandboxed_accepting: Vec::new(),
        pss_kib: 0,
    };
    let sandbox_root = dir.path().join("sandbox-root");
    std::fs::create_dir(&sandbox_root).unwrap();
    let mut sandbox_spec = spec.clone();
    sandbox_spec.sandbox_root = Some(sandbox_root);
    for _ in 0..runs {
        let started = Instant::now();
        let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
        result.accepting.push(millis(started));
        let timings = instance.start_timings().unwrap();
        result.spawned.push(timings.spawned.as_secs_f64() * 1000.0);
        result.ready.push(timings.ready.as_secs_f64() * 1000.0);
        let stopping = Instant::now();
        instance.stop(StopMode::Fast, STEP).await.unwrap();
        result.stop.push(millis(stopping));
        if plain {
            let (ready, accepting) = plain_start(&binaries, &spec, &plain_conf).await;
            result.plain_ready.push(ready);
            result.plain_accepting.push(accepting);
        }
        if sandboxed {
            let started = Instant::now();
            let instance = Instance::start(&binaries, sandbox_spec.clone()).await.unwrap();
            result.sandboxed_accepting.push(millis(started));
            instance.stop(StopMode::Fast, STEP).await.unwrap();
        }
    }
    for _ in 0..runs {
        let started = Instant::now();
        let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
        let client = connect_tcp(port).await;
        client.simple_query("SELECT 1").await.unwrap();
        result.first_select.push(millis(started));
        drop(client);
        instance.stop(StopMode::Fast, STEP).await.unwrap();
    }

    // Idle memory: one query by a TCP client that then disconnects, as a clone that was used.
    let instance = Instance::start(&binaries, spec.clone()).await.unwrap();
    let client = connect_tcp(port).await;
    client.simple_query("SELECT count(*) FROM pg_class").await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_secs(3)).await;
    result.pss_kib = instance.processes().iter().map(|pid| pss_kib(*pid)).sum();
    instance.stop(StopMode::Fast, STEP).await.unwrap();
    result
}

/// The launch of reference/machine.md §2, on the same cluster and port: (ready, accepting) in ms.
async fn plain_start(
    binaries: &PgBinaries,
    spec: &InstanceSpec,
    config_file: &std::path::Path,
) -> (f64, f64) {
    let settings = &spec.settings;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log_file).unwrap();
    let started = Instant::now();
    let mut daemon = Cmd::new("setpriv")
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(binaries.postgres())
        .arg("-D")
        .arg(&spec.data_dir)
        .args(["-p", &settings.port.to_string()])
        .arg("-k")
        .arg(&settings.socket_dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("config_file={}", config_file.display()))
        .new_session()
        .spawn_daemon(log)
        .unwrap();
    loop {
        let file = PidFile::read(&spec.data_dir).unwrap();
        if file.and_then(|file| file.status).is_some_and(|status| status.accepts_connections()) {
            break;
        }
        assert!(
            daemon.exit_status().is_none(),
            "the plain postgres exited; see {:?}",
            spec.log_file
        );
        // tokio's timer has a 1 ms grain; the worker thread may block this briefly.
        std::thread::sleep(PLAIN_POLL);
    }
    let ready = millis(started);
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&settings.socket_dir)
        .port(settings.port)
        .user(ADMIN)
        .dbname(&spec.admin_database);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let accepting = millis(started);
    drop(client);
    let _ = connection.await;
    let pid = rustix::process::Pid::from_raw(daemon.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    daemon.exited().await;
    (ready, accepting)
}

async fn connect_tcp(port: u16) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user(ROLE).password(PASSWORD).dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
