//! Attacks from inside a clone: a superuser of one clone runs shell commands on the host through
//! `COPY … FROM PROGRAM` (as the OS user every clone server runs as) and must reach nothing of
//! another clone, of the engine or of the pool; the engine's admin path must refuse it.

use std::path::{Path, PathBuf};

use engine::{CloneView, ResetTarget};
use tokio_postgres::Client;

use crate::harness::{PASSWORD, TestEngine, config, connect, psql};

/// Runs `script` with `sh -c` inside the clone's server and returns what it printed.
async fn shell(client: &Client, script: &str) -> Vec<String> {
    client
        .batch_execute("CREATE TEMP TABLE IF NOT EXISTS shell_out (line text); TRUNCATE shell_out")
        .await
        .unwrap();
    let program = script.replace('\'', "''");
    client.batch_execute(&format!("COPY shell_out FROM PROGRAM '{program}'")).await.unwrap();
    let rows = client.query("SELECT line FROM shell_out", &[]).await.unwrap();
    rows.iter().map(|row| row.get::<_, String>(0)).collect()
}

fn pgdata(test: &TestEngine, clone: &CloneView) -> PathBuf {
    test.pool.mountpoint().join(&clone.record.dataset).join("data")
}

fn socket_file(test: &TestEngine, clone: &CloneView) -> PathBuf {
    let port = clone.record.port;
    test.state_dir.join("sockets").join(port.to_string()).join(format!(".s.PGSQL.{port}"))
}

fn postmaster(test: &TestEngine, clone: &CloneView) -> u32 {
    postgres::instance::find_postmaster(1, &pgdata(test, clone)).expect("the clone's postmaster")
}

fn probe(path: &Path) -> String {
    let path = path.display();
    format!("if test -e '{path}'; then echo 'visible {path}'; else echo 'hidden {path}'; fi; ")
}

#[tokio::test]
async fn a_superuser_clone_reaches_nothing_of_another_clone_or_the_engine() {
    let mut test = TestEngine::start(config(5)).await;
    // A descriptor the engine's process holds without close-on-exec (as a careless library
    // might): no clone's server may inherit it.
    let marker = std::fs::File::create(test.state_dir.join("leaked-marker")).unwrap();
    nix::fcntl::fcntl(&marker, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let victim = test.create("victim").await;
    let attacker = test.create("attacker").await;
    let image = std::fs::read_dir(test.state_dir.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "img"))
        .expect("the pool's image file");
    let secrets = [
        pgdata(&test, &victim),
        socket_file(&test, &victim),
        test.state_dir.join("logs").join("victim.log"),
        test.state_dir.join("scion.db"),
        image,
        // TLS: the CA's key, and the other clone's server key (its own is in view).
        test.state_dir.join("tls/ca.key"),
        test.state_dir.join("tls/servers").join(victim.record.port.to_string()).join("server.key"),
    ];
    // Everything probed exists on the host: a check that could not fail proves nothing.
    for path in secrets.iter().chain([&pgdata(&test, &attacker), &socket_file(&test, &attacker)]) {
        assert!(path.exists(), "{} is missing on the host", path.display());
    }
    let victim_pid = postmaster(&test, &victim);

    let client = connect(&attacker, PASSWORD).await.unwrap();
    let mut script = String::new();
    for path in &secrets {
        script.push_str(&probe(path));
    }
    script.push_str(&probe(&pgdata(&test, &attacker).join("PG_VERSION")));
    script.push_str(&probe(&socket_file(&test, &attacker)));
    script.push_str(&format!(
        "if kill -0 {victim_pid} 2>/dev/null; then echo signal-reached; else echo signal-blocked; fi; \
         if test -e /proc/{victim_pid}; then echo victim-process-visible; else echo victim-process-hidden; fi; \
         echo pid1=$(cat /proc/1/comm); \
         echo fds=$(ls -l /proc/1/fd | grep -c -e scion.db -e pool.img -e victim -e leaked-marker); \
         if ls {pool} >/dev/null 2>&1; then echo pool-listed; else echo pool-hidden; fi; \
         {psql} 'host=127.0.0.1 port={victim_port} user=postgres dbname=postgres' -c 'select 1' 2>&1 | head -n 1; \
         {psql} 'host={own_socket} port={own_port} user=postgres dbname=postgres' -c 'select 1' 2>&1 | head -n 1",
        pool = test.pool.mountpoint().join("branch/main/victim").display(),
        psql = psql().display(),
        victim_port = victim.record.port,
        own_socket = test.state_dir.join("sockets").join(attacker.record.port.to_string()).display(),
        own_port = attacker.record.port,
    ));
    let lines = shell(&client, &script).await;
    let has = |expected: &str| lines.iter().any(|line| line.contains(expected));
    for path in &secrets {
        assert!(
            has(&format!("hidden {}", path.display())),
            "{} reachable: {lines:#?}",
            path.display()
        );
    }
    assert!(
        has("visible") && has(&format!("visible {}", socket_file(&test, &attacker).display())),
        "{lines:#?}"
    );
    assert!(has("signal-blocked") && has("victim-process-hidden"), "{lines:#?}");
    assert!(
        has("pid1=postgres"),
        "the clone's server is not PID 1 of its own namespace: {lines:#?}"
    );
    assert!(has("fds=0"), "the server holds descriptors of the engine's files: {lines:#?}");
    assert!(has("pool-hidden"), "the victim's datasets are listed: {lines:#?}");
    assert!(has("pg_hba.conf rejects connection"), "the admin role over TCP: {lines:#?}");
    assert!(
        has("Peer authentication failed"),
        "the admin role over the clone's own socket: {lines:#?}"
    );
    drop(client);

    // The victim is untouched and its own user still logs in.
    let victim_client = connect(&victim, PASSWORD).await.expect("the victim's user logs in");
    victim_client.query_one("SELECT 1", &[]).await.unwrap();

    // A reset and an engine restart (adoption of the running servers) keep the isolation.
    test.engine.reset_clone("attacker", ResetTarget::Current).await.unwrap();
    let attacker = test.ready("attacker").await;
    test.restart().await;
    let client = connect(&attacker, PASSWORD).await.unwrap();
    let lines =
        shell(&client, &format!("{}echo pid1=$(cat /proc/1/comm)", probe(&secrets[0]))).await;
    assert!(lines.iter().any(|line| line == "pid1=postgres"), "{lines:#?}");
    assert!(lines.iter().any(|line| line.starts_with("hidden ")), "{lines:#?}");
}

#[tokio::test]
async fn a_claimed_warm_clone_and_a_clone_started_after_a_reboot_are_isolated_too() {
    let mut test = TestEngine::start(crate::warm::warm_config(5, 1)).await;
    let victim = test.create("victim").await;
    crate::warm::wait_warm(&test, 1).await;
    let claimed = test.create("claimed").await;
    let victim_data = pgdata(&test, &victim);
    let script = format!("{}echo pid1=$(cat /proc/1/comm)", probe(&victim_data));
    let check = |lines: Vec<String>, when: &str| {
        assert!(lines.iter().any(|line| line == "pid1=postgres"), "{when}: {lines:#?}");
        assert!(
            lines.iter().any(|line| line == &format!("hidden {}", victim_data.display())),
            "{when}: {lines:#?}"
        );
    };
    let client = connect(&claimed, PASSWORD).await.unwrap();
    check(shell(&client, &script).await, "a claimed warm clone");
    drop(client);

    // A reboot ends every server; the engine starts them again with the same isolation.
    test_support::stop_postmasters_under(test.pool.mountpoint());
    test.restart().await;
    let claimed = test.ready("claimed").await;
    let client = connect(&claimed, PASSWORD).await.unwrap();
    check(shell(&client, &script).await, "after a reboot");
}
