//! `scion clone create|list|status|update|reset|destroy|logs|stop|start` in table and JSON
//! output, and a real connection through the printed connection string.

use std::time::Duration;

use crate::support::{PASSWORD, TestServer, normalize, without_volatile};

/// Runs `sql` in `clone` through its printed connection string and the test's password.
pub(crate) async fn run_in_clone(clone: &api_types::Clone, sql: &str) {
    let conn_str = format!("{} password={PASSWORD}", clone.db.conn_str);
    let (db, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .expect("connect to the clone");
    let connection = tokio::spawn(connection);
    db.batch_execute(sql).await.expect("run the SQL in the clone");
    drop(db);
    connection.await.expect("the connection task").expect("the connection closes cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_lifecycle() {
    let server = TestServer::start("").await;
    let client = server.client();
    let snapshot = client.snapshots(None).await.unwrap().remove(0).id;

    // Create, waiting until ready: the table ends with the connection string.
    let run = server
        .scion(&["clone", "create", "--id", "c1", "--username", "alice", "--password", PASSWORD])
        .await;
    let created = client.clone_status("c1").await.unwrap();
    let port = created.db.port.clone();
    let replacements = [(snapshot.as_str(), "<SNAPSHOT>"), (port.as_str(), "<PORT>")];
    let detail = "\
ID  c1
Status  OK: Clone is ready to accept Postgres connections.
Branch  main
Snapshot  <SNAPSHOT>
Protected  no
Created at  <TIME>
Database  postgres
User  alice
Port  <PORT>
Diff size  <SIZE>
Cloning time  <SECS>
Idle limit  120 min
Logical size  <SIZE>
";
    let expected = format!(
        "{detail}\nConnection string: host=127.0.0.1 port=<PORT> user=alice dbname=postgres\n"
    );
    assert_eq!(normalize(run.ok(), &replacements), expected);

    // The printed connection string works with the password given.
    run_in_clone(&created, "CREATE TABLE written_in_clone (id int)").await;
    let conn_str = format!("{} password={PASSWORD}", created.db.conn_str);

    // List and status, as tables and as the API's JSON.
    let run = server.scion(&["clone", "list"]).await;
    assert_eq!(
        normalize(run.ok(), &replacements),
        "ID  STATUS  BRANCH  SNAPSHOT  PORT  PROTECTED  MASKED  DIFF  CREATED\n\
         c1  OK  main  <SNAPSHOT>  <PORT>  no  no  <SIZE>  <TIME>\n"
    );
    let json = server.scion(&["clone", "list", "-o", "json"]).await.json();
    assert_eq!(without_volatile(json), without_volatile(server.raw("/clones").await));
    let run = server.scion(&["clone", "status", "c1"]).await;
    assert_eq!(normalize(run.ok(), &replacements), detail);
    let json = server.scion(&["clone", "status", "c1", "--output", "json"]).await.json();
    assert_eq!(without_volatile(json), without_volatile(server.raw("/clone/c1").await));

    // Protected, it cannot be destroyed; `update` without --protected lifts protection.
    let json =
        server.scion(&["clone", "update", "c1", "--protected", "120", "-o", "json"]).await.json();
    assert_eq!(json["protected"], true);
    assert!(json["protectedTill"].is_string(), "{json}");
    let run = server.scion(&["clone", "status", "c1"]).await;
    assert!(normalize(run.ok(), &[]).contains("\nProtected  until <TIME>\n"), "{}", run.stdout);
    let run = server.scion(&["clone", "destroy", "c1"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("protected"), "{}", run.stderr);
    let json = server.scion(&["clone", "update", "c1", "-o", "json"]).await.json();
    assert_eq!(json["protected"], false);

    // Reset waits until the clone is ready again; what was written is gone.
    let run = server.scion(&["clone", "reset", "c1"]).await;
    assert_eq!(normalize(run.ok(), &replacements), expected);
    let (db, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let found = db
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'written_in_clone'", &[])
        .await
        .unwrap();
    assert_eq!(found.get::<_, i64>(0), 0);
    drop(db);
    connection.await.unwrap().unwrap();
    let json = server.scion(&["clone", "reset", "c1", "--latest", "-o", "json"]).await.json();
    assert_eq!(json["status"]["code"], "OK");
    assert_eq!(json["snapshot"]["id"], snapshot.as_str());

    // --async returns before the clone is ready; the JSON is the API's answer.
    let json = server
        .scion(&[
            "clone",
            "create",
            "--async",
            "--id",
            "c2",
            "--username",
            "bob",
            "--password",
            PASSWORD,
            "--extra-config",
            "work_mem=8MB",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(json["id"], "c2");
    assert!(matches!(json["status"]["code"].as_str(), Some("CREATING" | "OK")), "{json}");
    wait_ok(&server, "c2").await;
    let run = server.scion(&["clone", "reset", "c2", "--async", "--snapshot-id", &snapshot]).await;
    assert!(normalize(run.ok(), &[]).starts_with("ID  c2\nStatus  "), "{}", run.stdout);
    wait_ok(&server, "c2").await;

    // Destroy waits until the clone is gone; JSON output prints the API's (empty) answer.
    let run = server.scion(&["clone", "destroy", "c1"]).await;
    assert_eq!(run.ok(), "Clone c1 destroyed.\n");
    let run = server.scion(&["clone", "destroy", "c2", "-o", "json"]).await;
    assert_eq!(run.ok(), "");
    let run = server.scion(&["clone", "status", "c1"]).await;
    run.expect_code(1);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 404"), "{}", run.stderr);
    assert_eq!(server.scion(&["clone", "list", "-o", "json"]).await.json(), serde_json::json!([]));
    assert_eq!(
        server.scion(&["clone", "list"]).await.ok(),
        "ID  STATUS  BRANCH  SNAPSHOT  PORT  PROTECTED  MASKED  DIFF  CREATED\n"
    );
}

/// Waits (polling, test-side only) until a clone that is being created or reset is ready.
/// `--cpu`, `--memory` and `--disk` reach the server as the request's limits, and `status`
/// shows them; a size that does not parse is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_create_with_limits() {
    let server = TestServer::start("").await;
    let client = server.client();
    let snapshot_size = client.snapshots(None).await.unwrap().remove(0).logical_size;
    let disk = snapshot_size + (64 << 20);
    let disk_arg = disk.to_string();
    let create = |id: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["clone", "create", "--id", id, "--username", "alice"];
        args.extend(["--password", PASSWORD]);
        args.extend(extra);
        args
    };
    let mut args = create("limited", &["--cpu", "0.5", "--memory", "256MB"]);
    args.extend(["--disk", disk_arg.as_str()]);
    server.scion(&args).await.ok();
    let created = client.clone_status("limited").await.unwrap();
    assert_eq!(
        created.limits,
        Some(api_types::CloneLimits { cpu: Some(0.5), memory: Some(256 << 20), disk: Some(disk) })
    );
    let run = server.scion(&["clone", "status", "limited"]).await;
    let text = normalize(run.ok(), &[]);
    assert!(text.contains("\nCPU limit  0.5 cores\n"), "{text}");
    assert!(text.contains("\nMemory limit  <SIZE>\n"), "{text}");
    assert!(text.contains("\nDisk quota  <SIZE>\n"), "{text}");

    let run = server.scion(&create("bad", &["--memory", "lots"])).await;
    run.expect_code(2);
    assert!(run.stderr.contains("not a size"), "{}", run.stderr);
    server.destroy_all_clones().await;
}

async fn wait_ok(server: &TestServer, id: &str) {
    let client = server.client();
    for _ in 0..600 {
        let clone = client.clone_status(id).await.expect("read the clone");
        match clone.status.code {
            api_types::StatusCode::Ok => return,
            api_types::StatusCode::Creating | api_types::StatusCode::Resetting => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("clone {id} is {other}: {}", clone.status.message),
        }
    }
    panic!("clone {id} did not become ready");
}

/// `scion clone logs` prints the clone server's log; following (the client call it makes) reads
/// what the server writes next and ends when the clone is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_logs_tail_and_follow() {
    let server = TestServer::start("").await;
    let client = server.client();
    server
        .scion(&["clone", "create", "--id", "logs1", "--username", "alice", "--password", PASSWORD])
        .await
        .ok();

    let run = server.scion(&["clone", "logs", "logs1", "--tail", "2"]).await;
    let tail = run.ok();
    assert!(!tail.is_empty() && tail.lines().count() <= 2, "{tail:?}");
    let whole = server.scion(&["clone", "logs", "logs1"]).await;
    assert!(whole.ok().ends_with(tail), "{tail:?} is not the end of the log");
    server.scion(&["clone", "logs", "no-such-clone"]).await.expect_code(1);

    let mut follow = client.follow_clone_logs("logs1", Some(1)).await.unwrap();
    let created = client.clone_status("logs1").await.unwrap();
    run_in_clone(&created, "DO $$ BEGIN RAISE LOG 'scion-cli-follow-marker'; END $$").await;
    let mut seen = String::new();
    while !seen.contains("scion-cli-follow-marker") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), follow.next())
            .await
            .unwrap_or_else(|_| panic!("the marker never came: {seen:?}"))
            .unwrap()
            .expect("the log stays open while the clone exists");
        seen.push_str(&chunk);
    }
    server.scion(&["clone", "destroy", "logs1"]).await.ok();
    // Gone: the followed log ends.
    while tokio::time::timeout(Duration::from_secs(60), follow.next())
        .await
        .expect("the followed log ends once the clone is gone")
        .unwrap()
        .is_some()
    {}
}

/// Scale to zero by hand: `scion clone stop` shows when the clone stopped, and its first
/// connection is served; `scion clone start` starts it and the line goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_stop_and_start() {
    let server = TestServer::start("").await;
    let client = server.client();
    server
        .scion(&["clone", "create", "--id", "s1", "--username", "alice", "--password", PASSWORD])
        .await
        .ok();
    let run = server.scion(&["clone", "stop", "s1"]).await;
    let stopped = normalize(run.ok(), &[]);
    assert!(stopped.contains("\nStopped at  <TIME>\n"), "{stopped}");
    assert!(stopped.contains("Status  OK: Clone is stopped"), "{stopped}");
    let json = server.scion(&["clone", "status", "s1", "-o", "json"]).await.json();
    assert!(json["stoppedAt"].is_string(), "{json}");
    // The first connection starts it.
    run_in_clone(&client.clone_status("s1").await.unwrap(), "SELECT 1").await;
    server.scion(&["clone", "stop", "s1"]).await.ok();
    let run = server.scion(&["clone", "start", "s1"]).await;
    let started = normalize(run.ok(), &[]);
    assert!(!started.contains("Stopped at"), "{started}");
    assert!(started.contains("Status  OK: Clone is ready"), "{started}");
    let json = server.scion(&["clone", "start", "s1", "-o", "json"]).await.json();
    assert!(json.get("stoppedAt").is_none(), "{json}");
    run_in_clone(&client.clone_status("s1").await.unwrap(), "SELECT 1").await;
}

/// `--client-cert DIR` writes the certificate, its key and the CA into DIR, mode 0600, and
/// shows the key nowhere else; an occupied DIR is refused before any clone is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_create_writes_a_client_certificate() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start("").await;
    let dir = server.scratch().join("certs");
    let create = |id: &'static str, output: &'static [&'static str]| {
        let mut args = vec!["clone", "create", "--id", id, "--username", "alice"];
        args.extend(["--password", PASSWORD, "--client-cert", dir.to_str().unwrap()]);
        args.extend(output);
        let server = &server;
        async move { server.scion(&args).await }
    };
    let run = create("tc", &["--output", "json"]).await;
    let printed = run.json();
    assert!(printed.get("clientCertificate").is_none(), "the key was printed: {printed}");
    let read = |name: &str| {
        let path = dir.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        std::fs::read_to_string(path).unwrap()
    };
    assert!(read("postgresql.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(read("postgresql.key").contains("PRIVATE KEY"));
    let ca = reqwest::get(format!("{}/tls/ca.crt", server.url)).await.unwrap();
    assert_eq!(read("root.crt"), ca.text().await.unwrap());

    let again = create("tc2", &[]).await;
    again.expect_code(2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    let clones = server.raw("/clones").await;
    assert_eq!(clones.as_array().unwrap().len(), 1, "{clones}");
    server.destroy_all_clones().await;
}
