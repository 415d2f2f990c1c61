//! Scale to zero with real servers: a stopped clone runs no process, its first connections
//! (tokio-postgres without TLS and psql with `verify-full`, many at once) start its server
//! once and are all served, each as it asked, it stays stopped across an engine restart and a
//! reboot, and a start that fails answers the client with a PostgreSQL error (what psql shows
//! of it with and without TLS required).

use std::time::Duration;

use engine::{CloneState, CloneView};

use crate::harness::{PASSWORD, TestEngine, config, connect, psql};

/// How many times the clone's server has started: PostgreSQL logs this line at every start.
fn starts(test: &TestEngine, id: &str) -> usize {
    let log = std::fs::read_to_string(test.engine.clone_log_path(id).unwrap()).unwrap_or_default();
    log.matches("database system is ready to accept connections").count()
}

/// The processes running in the pool (every clone server's work in its data directory).
fn pool_processes(test: &TestEngine) -> usize {
    test_support::processes_under(test.pool.mountpoint()).len()
}

/// Whether the session runs over TLS, as the server sees it.
const SESSION_TLS: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// `SELECT 1` through psql over TCP with libpq's default `sslmode=prefer`.
async fn psql_select(clone: &CloneView) -> Result<String, String> {
    psql_query(clone, "SELECT 1", "sslmode=prefer").await
}

/// `sql` through psql over TCP with the connection `options`.
async fn psql_query(clone: &CloneView, sql: &str, options: &str) -> Result<String, String> {
    let output = exec::Cmd::new(psql())
        .args(["-X", "-A", "-t", "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={} user={} dbname=postgres {options}",
            clone.record.port, clone.record.username
        ))
        .secret_env("PGPASSWORD", PASSWORD)
        .timeout(Duration::from_secs(60))
        .output_any_status()
        .await
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(output.stdout_text().trim().to_owned())
    } else {
        Err(output.stderr_text())
    }
}

async fn stop(test: &TestEngine, id: &str) -> CloneView {
    let stopped = test.engine.stop_clone(id).await.expect("stop the clone");
    assert_eq!(stopped.record.state, CloneState::Ok);
    assert!(stopped.record.stopped_at.is_some(), "{stopped:?}");
    assert_eq!(pool_processes(test), 0, "a stopped clone runs no process");
    stopped
}

#[tokio::test]
async fn concurrent_first_connections_start_a_stopped_clone_once_and_are_all_served() {
    let test = TestEngine::start(config(5)).await;
    let clone = test.create("sleeper").await;
    let client = connect(&clone, PASSWORD).await.unwrap();
    client.batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)").await.unwrap();
    drop(client);
    let stopped = stop(&test, "sleeper").await;
    // Stopping again changes nothing.
    assert_eq!(test.engine.stop_clone("sleeper").await.unwrap().record, stopped.record);
    let before = starts(&test, "sleeper");

    // Plain connections (tokio-postgres without TLS) and TLS ones (psql verifying the server's
    // certificate against the engine's CA) mixed: each is carried as it asked.
    let connections = (0..8).map(|_| {
        let clone = stopped.clone();
        tokio::spawn(async move {
            let client = connect(&clone, PASSWORD).await?;
            let row = client.query_one("SELECT v FROM kept", &[]).await?;
            let tls = client.query_one(SESSION_TLS, &[]).await?;
            Ok::<(i32, bool), tokio_postgres::Error>((row.get(0), tls.get(0)))
        })
    });
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), test.engine.ca_certificate().unwrap()).unwrap();
    let verify = format!("sslmode=verify-full sslrootcert={}", ca.path().display());
    let psql_first = futures_join(
        (0..3)
            .map(|_| {
                let (clone, verify) = (stopped.clone(), verify.clone());
                tokio::spawn(async move { psql_query(&clone, SESSION_TLS, &verify).await })
            })
            .collect(),
    );
    let (served, psql_answers) = tokio::join!(futures_join(connections.collect()), psql_first);
    for result in served {
        assert_eq!(result.expect("every first connection is served"), (7, false));
    }
    for answer in psql_answers {
        assert_eq!(answer.expect("psql's first connections are served"), "t");
    }
    assert_eq!(starts(&test, "sleeper"), before + 1, "one start for every first connection");
    let woken = test.engine.clone_view("sleeper").unwrap();
    assert_eq!(woken.record.stopped_at, None);
    assert_eq!(woken.record.state_message, "Clone is ready to accept Postgres connections.");

    // Stopped again and started by hand; then a reset gives the port back to its server.
    stop(&test, "sleeper").await;
    let started = test.engine.start_clone("sleeper").await.unwrap();
    assert_eq!(started.record.stopped_at, None);
    assert!(pool_processes(&test) > 0);
    connect(&started, PASSWORD).await.expect("a clone started by hand is served");
    stop(&test, "sleeper").await;
    test.engine.reset_clone("sleeper", engine::ResetTarget::Current).await.unwrap();
    let reset = test.ready("sleeper").await;
    assert_eq!(reset.record.stopped_at, None);
    connect(&reset, PASSWORD).await.expect("a reset clone listens on its port again");
    test.engine.destroy_clone("sleeper").await.unwrap();
    test.wait_gone("sleeper").await;
    // The port is free again: nothing, neither the engine nor a server, holds it.
    std::net::TcpListener::bind(("127.0.0.1", clone.record.port)).expect("the port is released");
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

#[tokio::test]
async fn a_stopped_clone_stays_stopped_across_a_restart_and_a_reboot() {
    let mut test = TestEngine::start(config(5)).await;
    let clone = test.create("durable").await;
    stop(&test, "durable").await;

    test.restart().await;
    let after_restart = test.engine.clone_view("durable").unwrap();
    assert!(after_restart.record.stopped_at.is_some(), "{after_restart:?}");
    assert_eq!(pool_processes(&test), 0);
    assert_eq!(after_restart.record.port, clone.record.port);
    // The restarted engine holds the port again: the first connection wakes the clone.
    connect(&after_restart, PASSWORD).await.expect("woken after an engine restart");

    // A clone the engine woke is served through the engine: a restart holds its port again.
    test.restart().await;
    let running = test.engine.clone_view("durable").unwrap();
    assert_eq!(running.record.stopped_at, None);
    connect(&running, PASSWORD).await.expect("a woken clone is served after a restart");

    // A reboot ends every server; a stopped clone stays stopped, the others start again.
    stop(&test, "durable").await;
    test.create("awake").await;
    test_support::stop_postmasters_under(test.pool.mountpoint());
    test.restart().await;
    assert!(test.engine.clone_view("durable").unwrap().record.stopped_at.is_some());
    assert!(pool_processes(&test) > 0, "the running clone started again");
    let awake = test.engine.clone_view("awake").unwrap();
    connect(&awake, PASSWORD).await.expect("a running clone is up after a reboot");
    connect(&after_restart, PASSWORD).await.expect("a stopped clone wakes after a reboot");
}

#[tokio::test]
async fn a_start_that_fails_answers_the_client_with_a_postgres_error() {
    let test = TestEngine::start(config(5)).await;
    let clone = test.create("broken").await;
    stop(&test, "broken").await;
    // A setting the server refuses at start.
    let conf = test.pool.mountpoint().join(&clone.record.dataset).join("data/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nscion_no_such_setting = on\n");
    std::fs::write(&conf, text).unwrap();

    let error = connect(&clone, PASSWORD).await.expect_err("the clone cannot start");
    let db = error.as_db_error().unwrap_or_else(|| panic!("not a PostgreSQL error: {error}"));
    assert_eq!(db.code().code(), "57P03", "{db:?}");
    assert!(db.message().contains("could not be started"), "{}", db.message());
    let psql = psql_select(&clone).await.expect_err("psql is refused too");
    assert!(psql.contains("could not be started"), "{psql}");
    // The engine has no key to answer an SSLRequest with: it declines it, as PostgreSQL does
    // when it cannot do TLS. A client that requires TLS then says so, not the reason; the
    // clone's status does.
    let required = psql_query(&clone, "SELECT 1", "sslmode=require")
        .await
        .expect_err("psql requiring TLS is refused");
    assert!(required.contains("server does not support SSL"), "{required}");
    // The clone stays stopped, says why, and still refuses cleanly.
    let view = test.engine.clone_view("broken").unwrap();
    assert!(view.record.stopped_at.is_some(), "{view:?}");
    assert!(view.record.state_message.contains("its last start failed"), "{view:?}");
    assert!(view.record.state_message.contains("scion_no_such_setting"), "{view:?}");
    // No private port is kept for a server that did not start.
    assert_eq!(view.record.server_port, None);
    assert!(test.engine.start_clone("broken").await.is_err());
}

/// A woken server needs a private port of the range. With none free, a ready warm clone gives
/// its port up, as to a create; with none either, the wake is refused with the reason (never
/// served without TLS), and the clone's status says it.
#[tokio::test]
async fn a_wake_takes_a_warm_clones_port_or_is_refused_with_the_reason_when_the_range_is_full() {
    // Two ports: the clone's (a warm clone's, claimed) and the warm pool's next one.
    let test = TestEngine::start(crate::warm::warm_config(2, 1)).await;
    crate::warm::wait_warm(&test, 1).await;
    let clone = test.create("crowded").await;
    crate::warm::wait_warm(&test, 1).await;
    test.engine.stop_clone("crowded").await.unwrap();
    let client = connect(&clone, PASSWORD).await.expect("woken on the warm clone's port");
    assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    drop(client);
    assert_eq!(test.engine.warm_clones(), 0, "the warm clone gave its port up");
    let woken = test.engine.clone_view("crowded").unwrap();
    let private = woken.record.server_port.expect("woken on a private port");
    assert_ne!(private, clone.record.port);

    // Stopped again, with a second clone on the port it let go (from the warm pool, if it took
    // it back first): no port is left for a wake, nor for a warm clone.
    test.engine.stop_clone("crowded").await.unwrap();
    let neighbour = test.create("neighbour").await;
    assert_eq!(neighbour.record.port, private);
    assert_eq!(test.engine.warm_clones(), 0);
    let error = connect(&clone, PASSWORD).await.expect_err("no port for the woken server");
    let db = error.as_db_error().unwrap_or_else(|| panic!("not a PostgreSQL error: {error}"));
    assert_eq!(db.code().code(), "57P03", "{db:?}");
    assert!(db.message().contains("needs a private port"), "{}", db.message());
    let view = test.engine.clone_view("crowded").unwrap();
    assert!(view.record.stopped_at.is_some(), "{view:?}");
    assert_eq!(view.record.server_port, None);
    assert!(view.record.state_message.contains("needs a private port"), "{view:?}");
    assert!(test.engine.start_clone("crowded").await.is_err());
}
