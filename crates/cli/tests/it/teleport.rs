//! `scion teleport serve`: a real `scion-server` whose webhooks point at the sidecar, the
//! sidecar registering and removing clones, checking Scion's signature, and reconciling.
//!
//! Teleport itself cannot be installed on the machines these tests run on, so `tctl` is a
//! recorded stand-in, `tctl-standin.py` beside this file: it keeps its resources in a JSON file
//! and checks its command lines and resources as the real `tctl` does (its header says what it
//! was recorded from and what it checks). What the tests see of Teleport is that file.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use exec::Cmd;
use serde_json::{Value, json};
use test_support::free_port_range;

use crate::support::{PASSWORD, StopOnDrop, TOKEN, TestServer, scion_bin, wait_for_line};

const SECRET: &str = "teleport-hook-secret";
const PROXY: &str = "teleport.example.com:3025";
/// How long a change may take to reach the stand-in's file.
const DEADLINE: Duration = Duration::from_secs(60);

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tctl-standin.py")
}

/// A running sidecar and the stand-in's files.
struct Sidecar {
    process: StopOnDrop,
    log: PathBuf,
    state: PathBuf,
    identity: PathBuf,
    url: String,
}

impl Sidecar {
    async fn start(server: &TestServer, port: u16, extra: &[&str]) -> Sidecar {
        let dir = server.scratch();
        let identity = dir.join("identity");
        std::fs::write(&identity, "a tbot identity\n").expect("write the identity file");
        let state = dir.join("teleport.json");
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!("sidecar-{}.log", STARTS.fetch_add(1, Ordering::Relaxed)));
        let listen = format!("127.0.0.1:{port}");
        let daemon = Cmd::new(scion_bin())
            .args(["teleport", "serve", "--listen-addr", &listen, "--environment-id", "prod"])
            .args(["--teleport-proxy", PROXY, "--teleport-identity"])
            .arg(&identity)
            .arg("--tctl-path")
            .arg(standin())
            .args(["--dblab-url", &server.url, "--label", "team=dba"])
            .args(extra.iter().copied())
            .env("DBLAB_TOKEN", TOKEN)
            .env("WEBHOOK_SECRET", SECRET)
            .env("TCTL_STANDIN_STATE", &state)
            .env("RUST_LOG", "info")
            .spawn_daemon(File::create(&log).expect("create the sidecar log"))
            .expect("start scion teleport serve");
        let sidecar = Sidecar {
            process: StopOnDrop(daemon),
            log,
            state,
            identity,
            url: format!("http://{listen}/teleport-sync"),
        };
        sidecar.wait_log("teleport sidecar listening").await;
        sidecar
    }

    async fn wait_log(&self, line: &str) -> String {
        wait_for_line(&self.process.0, &self.log, line).await
    }

    fn teleport(&self) -> Value {
        match std::fs::read_to_string(&self.state) {
            Ok(text) => serde_json::from_str(&text).expect("the stand-in writes JSON"),
            Err(_) => json!({"db": {}, "app": {}}),
        }
    }

    fn databases(&self) -> BTreeSet<String> {
        self.teleport()["db"].as_object().expect("a db map").keys().cloned().collect()
    }

    /// Waits until the registered `db` names are `expected`.
    async fn wait_databases(&self, expected: &[&str]) {
        let expected: BTreeSet<String> = expected.iter().map(|name| (*name).to_owned()).collect();
        self.wait_until(&format!("the db resources {expected:?}"), |sidecar| {
            sidecar.databases() == expected
        })
        .await;
    }

    /// Waits until `done` holds of the stand-in's state.
    async fn wait_until(&self, what: &str, done: impl Fn(&Sidecar) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < DEADLINE,
                "Teleport does not have {what}: {}\nsidecar log:\n{}",
                self.teleport(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every command line tctl was run with.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.state.with_extension("json.calls"))
            .expect("read the calls");
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
    }

    fn set_teleport_down(&self, down: bool) {
        let marker = self.state.with_extension("json.down");
        if down {
            std::fs::write(marker, "").expect("mark Teleport down");
        } else {
            std::fs::remove_file(marker).expect("mark Teleport up");
        }
    }

    /// POSTs `body` signed at `timestamp` with `secret` (no signature when `None`).
    async fn post(&self, body: &str, signed: Option<(&str, i64)>) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("DBLab-Webhook-Token", SECRET)
            .body(body.to_owned());
        if let Some((secret, timestamp)) = signed {
            let header = webhooks::signature_header(secret, timestamp, body.as_bytes());
            request = request.header(webhooks::SIGNATURE_HEADER, header);
        }
        let response = request.send().await.expect("POST to the sidecar");
        (response.status().as_u16(), response.text().await.expect("read the answer"))
    }
}

fn seed(state: &Path, databases: &[(&str, &[(&str, &str)])]) {
    let mut db = serde_json::Map::new();
    for (name, labels) in databases {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        db.insert(
            (*name).to_owned(),
            json!({"kind": "db", "version": "v3", "metadata": {"name": name, "labels": labels},
                   "spec": {"protocol": "postgres", "uri": "127.0.0.1:1"}}),
        );
    }
    std::fs::write(state, json!({"db": db, "app": {}}).to_string()).expect("seed the stand-in");
}

async fn create_clone(server: &TestServer, id: &str) -> u16 {
    let args = ["clone", "create", "--id", id, "--username", "u", "--password", PASSWORD];
    server.scion(&args).await.ok();
    let clone = server.client().clone_status(id).await.expect("read the clone");
    clone.db.port.parse().expect("a port")
}

async fn destroy_clone(server: &TestServer, id: &str) {
    server.scion(&["clone", "destroy", id]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teleport_sidecar_follows_webhooks_and_checks_signatures() {
    let port = *free_port_range(1).start();
    let hooks = format!(
        "\n[webhooks]\nbackoff_base = \"100ms\"\nbackoff_max = \"1s\"\n\n[[webhooks.hooks]]\n\
         url = \"http://127.0.0.1:{port}/teleport-sync\"\nsecret = \"{SECRET}\"\n\
         trigger = [\"clone_create\", \"clone_delete\", \"snapshot_create\"]\n"
    );
    let server = TestServer::start(&hooks).await;
    let sidecar = Sidecar::start(&server, port, &[]).await;
    sidecar.wait_log("reconcile: pass done").await;
    // The first pass registered the API app.
    assert_eq!(
        sidecar.teleport()["app"]["dblab-api-prod"],
        json!({"kind": "app", "version": "v3",
               "metadata": {"name": "dblab-api-prod",
                            "labels": {"dblab": "true", "dblab_instance": "prod", "environment": "prod", "team": "dba"}},
               "spec": {"uri": server.url, "insecure_skip_verify": true}})
    );

    // clone_create registers the clone under DBLab's name and labels.
    let first = create_clone(&server, "c1").await;
    let first_name = format!("dblab-clone-prod-c1-{first}");
    sidecar.wait_databases(&[&first_name]).await;
    assert_eq!(
        sidecar.teleport()["db"][&first_name],
        json!({"kind": "db", "version": "v3",
               "metadata": {"name": first_name,
                            "labels": {"clone_id": "c1", "dblab": "true", "dblab_instance": "prod",
                                       "environment": "prod", "team": "dba"}},
               "spec": {"protocol": "postgres", "uri": format!("127.0.0.1:{first}"),
                        "tls": {"mode": "insecure"}}})
    );
    // A clone ID with characters Teleport refuses in names: mapped in the name, kept in the label.
    let second = create_clone(&server, "c_2.x").await;
    let second_name = format!("dblab-clone-prod-c-2-x-{second}");
    sidecar.wait_databases(&[&first_name, &second_name]).await;
    assert_eq!(sidecar.teleport()["db"][&second_name]["metadata"]["labels"]["clone_id"], "c_2.x");

    // clone_delete removes it.
    destroy_clone(&server, "c1").await;
    sidecar.wait_databases(&[&second_name]).await;

    // Every tctl call named the identity file and the proxy; creates read stdin with --force.
    let identity = sidecar.identity.to_string_lossy().into_owned();
    let calls = sidecar.calls();
    for call in &calls {
        assert_eq!(
            call[..4],
            ["--identity", identity.as_str(), "--auth-server", PROXY],
            "{call:?}"
        );
    }
    let commands: BTreeSet<Vec<&str>> =
        calls.iter().map(|call| call[4..].iter().map(String::as_str).collect()).collect();
    let rm_first = format!("db/{first_name}");
    let expected: BTreeSet<Vec<&str>> = [
        vec!["create", "--force"],
        vec!["get", "db", "--format=json"],
        vec!["get", "app/dblab-api-prod", "--format=json"],
        vec!["rm", &rm_first],
    ]
    .into_iter()
    .collect();
    assert_eq!(commands, expected);

    // Scion's signature is required: DBLab's token header alone, a wrong secret or an old
    // timestamp are refused before the body is read.
    let now = chrono::Utc::now().timestamp();
    let create = json!({"event_type": "clone_create", "entity_id": "x1", "port": 6999}).to_string();
    assert_eq!(sidecar.post(&create, None).await.0, 401);
    assert_eq!(sidecar.post(&create, Some(("other-secret", now))).await.0, 401);
    assert_eq!(sidecar.post(&create, Some((SECRET, now - 3600))).await.0, 401);
    assert_eq!(sidecar.post("{not json", Some((SECRET, now))).await.0, 400);
    let no_port = json!({"event_type": "clone_delete", "entity_id": "x1"}).to_string();
    assert_eq!(sidecar.post(&no_port, Some((SECRET, now))).await.0, 400);
    let other = json!({"event_type": "branch_create", "entity_id": "dev"}).to_string();
    assert_eq!(sidecar.post(&other, Some((SECRET, now))).await, (200, "ignored\n".to_owned()));
    let get = reqwest::Client::new().get(&sidecar.url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    sidecar.wait_databases(&[&second_name]).await;

    // A delete of what is not registered is done; a Teleport that does not answer is a 500,
    // which the engine's delivery retries.
    let gone = json!({"event_type": "clone_delete", "entity_id": "x1", "port": 6999}).to_string();
    assert_eq!(
        sidecar.post(&gone, Some((SECRET, now))).await,
        (200, "dblab-clone-prod-x1-6999 was not registered\n".to_owned())
    );
    sidecar.set_teleport_down(true);
    let (status, _) = sidecar.post(&create, Some((SECRET, now))).await;
    assert_eq!(status, 500);
    sidecar.set_teleport_down(false);
    assert_eq!(
        sidecar.post(&create, Some((SECRET, now))).await,
        (200, "registered dblab-clone-prod-x1-6999\n".to_owned())
    );
    sidecar.wait_databases(&[&second_name, "dblab-clone-prod-x1-6999"]).await;
    server.destroy_all_clones().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teleport_sidecar_reconciles_and_never_deregisters_on_an_empty_list() {
    // No webhooks: whatever changes in Teleport here, reconciliation did.
    let server = TestServer::start("").await;
    let a = create_clone(&server, "a").await;
    let b = create_clone(&server, "b").await;
    let (a_name, b_name) = (format!("dblab-clone-prod-a-{a}"), format!("dblab-clone-prod-b-{b}"));
    let state = server.scratch().join("teleport.json");
    let foreign = "dblab-clone-staging-a-6000";
    seed(
        &state,
        &[
            ("dblab-clone-prod-gone-6999", &[("dblab", "true"), ("dblab_instance", "prod")]),
            ("dblab-clone-prod-legacy-6998", &[("dblab", "true"), ("environment", "prod")]),
            (foreign, &[("dblab", "true"), ("dblab_instance", "staging")]),
            ("payments", &[]),
        ],
    );
    // Teleport does not answer at first: the pass is skipped and nothing changes.
    std::fs::write(state.with_extension("json.down"), "").unwrap();
    let port = *free_port_range(1).start();
    let sidecar = Sidecar::start(&server, port, &["--reconcile-interval", "500ms"]).await;
    sidecar.wait_log("reconcile: pass skipped: cannot list the db resources").await;
    assert_eq!(sidecar.databases().len(), 4);

    // Once it answers, the next pass registers the clones and removes this instance's stale
    // resources, the legacy one included; another instance's and unmanaged ones stay.
    sidecar.set_teleport_down(false);
    sidecar.wait_databases(&[&a_name, &b_name, foreign, "payments"]).await;
    sidecar
        .wait_until("the API app", |sidecar| {
            sidecar.teleport()["app"]["dblab-api-prod"].is_object()
        })
        .await;

    // The engine lists no clones while this instance has resources (here: destroyed while the
    // sidecar was down): the pass is skipped and nothing is removed.
    drop(sidecar);
    destroy_clone(&server, "a").await;
    destroy_clone(&server, "b").await;
    let port = *free_port_range(1).start();
    let sidecar = Sidecar::start(&server, port, &["--reconcile-interval", "500ms"]).await;
    sidecar
        .wait_log("reconcile: pass skipped: the API listed no clones while 2 db resources")
        .await;
    sidecar.wait_databases(&[&a_name, &b_name, foreign, "payments"]).await;

    // With a clone again, the pass goes ahead and the two are removed.
    let c = create_clone(&server, "c").await;
    sidecar.wait_databases(&[&format!("dblab-clone-prod-c-{c}"), foreign, "payments"]).await;
    server.destroy_all_clones().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teleport_serve_refuses_bad_labels_and_environment_ids() {
    let cases: &[(&[&str], &str)] = &[
        (&["--label", "dblab_user=x"], "label \"dblab_user\" is reserved"),
        (&["--label", "team"], "expected non-empty key=value"),
        (&["--label", "team=a", "--label", "team=b"], "duplicate label \"team\""),
        (&["--environment-id", "prod eu"], "environment ID \"prod eu\" may hold only"),
    ];
    for (extra, message) in cases {
        let mut args = vec![
            "teleport",
            "serve",
            "--teleport-proxy",
            PROXY,
            "--teleport-identity",
            "/nonexistent",
            "--dblab-token",
            TOKEN,
            "--webhook-secret",
            SECRET,
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--environment-id") {
            args.extend_from_slice(&["--environment-id", "prod"]);
        }
        let run = crate::support::scion_with_env(&args, &[]).await;
        run.expect_code(2);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
    }
    // An engine that does not answer stops it at once (exit 1), naming the flags to check.
    let args = [
        "teleport",
        "serve",
        "--environment-id",
        "prod",
        "--teleport-proxy",
        PROXY,
        "--teleport-identity",
        "/nonexistent",
        "--dblab-url",
        "http://127.0.0.1:1",
        "--dblab-token",
        TOKEN,
        "--webhook-secret",
        SECRET,
    ];
    let run = crate::support::scion_with_env(&args, &[]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("cannot read the engine's status at http://127.0.0.1:1 (--dblab-url"),
        "{}",
        run.stderr
    );
}
