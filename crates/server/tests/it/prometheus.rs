//! The monitoring that ships in `monitoring/`: the alert rules pass `promtool`'s checks and its
//! unit tests, and a real Prometheus, configured from `monitoring/prometheus/prometheus.yml`
//! and from the scrape block of the OpenTelemetry Collector's configuration, scrapes a real
//! server, loads the rules, evaluates every query of the Grafana dashboard, and raises
//! `ScionDown` once the server is gone.
//!
//! The OpenTelemetry Collector itself is not installable on these machines: its `prometheus`
//! receiver takes Prometheus' own scrape configuration, so that block is what runs here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::TestDir;

use crate::harness::TestServer;

const WAIT: Duration = Duration::from_secs(60);

/// Series that exist only in some setups: the sync instance's (physical mode, continuous
/// refresh), and webhook deliveries (when hooks are configured).
const CONDITIONAL: &[&str] = &["dblab_sync_", "scion_webhook_deliveries"];

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    #[allow(clippy::disallowed_methods, reason = "promtool is an outside tool run as is")]
    let output = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The `dblab_*` and `scion_*` names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("dblab_") || token.starts_with("scion_"))
        .map(str::to_owned)
        .collect()
}

/// The Prometheus scrape block between the collector configuration's markers, dedented.
fn otel_scrape_block(collector: &str) -> String {
    let start = collector.find("# scrape-begin").expect("the scrape-begin marker");
    let end = collector.find("# scrape-end").expect("the scrape-end marker");
    let block: Vec<&str> = collector[start..end].lines().skip(1).collect();
    let indent = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    block.iter().map(|line| line.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// A Prometheus server this test started; stopped by its PID when dropped.
struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
    dir: TestDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(config: &str, rules: &Path) -> Prometheus {
        let dir = TestDir::new("scion-prometheus-");
        std::fs::copy(rules, dir.path().join("alerts.yml")).unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = *test_support::free_port_range(1).start();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        #[allow(clippy::disallowed_methods, reason = "the real Prometheus, run as a user would")]
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (scripts/setup installs it)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            dir,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = prometheus.http.get(format!("{}/-/ready", prometheus.url)).send().await;
            if ready.is_ok_and(|answer| answer.status().is_success()) {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus did not come up:\n{}", prometheus.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer =
            self.http.get(format!("{}/api/v1/{path}", self.url)).query(query).send().await.unwrap();
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `check` holds of Prometheus' answers.
    async fn wait_until<F>(&self, what: &str, mut check: F)
    where
        F: AsyncFnMut(&Prometheus) -> bool,
    {
        let deadline = Instant::now() + WAIT;
        while !check(self).await {
            assert!(Instant::now() < deadline, "{what}: not in {WAIT:?}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[test]
fn the_alert_rules_pass_promtool_checks_and_unit_tests() {
    let dir = monitoring_dir().join("prometheus");
    let checked = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&["check", "config", "prometheus.yml"], &dir);
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_server_evaluates_the_dashboard_and_raises_scion_down() {
    let mut server = TestServer::start("").await;
    server.create_clone("watched").await;
    let target = server.url.trim_start_matches("http://").to_owned();
    let monitoring = monitoring_dir();
    let shipped = read(&monitoring.join("prometheus/prometheus.yml"));
    assert!(shipped.contains("'127.0.0.1:2345'"), "{shipped}");
    let otel = otel_scrape_block(&read(&monitoring.join("otel/collector.yaml")));
    let otel_jobs = otel
        .replace("scrape_configs:\n", "")
        .replace("job_name: scion", "job_name: scion-otel")
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    let config = format!("{shipped}{otel_jobs}\n")
        .replace("'127.0.0.1:2345'", &format!("'{target}'"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    let prometheus = Prometheus::start(&config, &monitoring.join("prometheus/alerts.yml")).await;

    // Both jobs scrape the server.
    for job in ["scion", "scion-otel"] {
        let expr = format!("up{{job=\"{job}\"}} == 1");
        prometheus
            .wait_until(&format!("{job} scraped"), async |p| !p.query(&expr).await.is_empty())
            .await;
    }
    let clones = prometheus.query("dblab_clones_total{job=\"scion\"}").await;
    assert_eq!(clones[0]["value"][1], "1", "{clones:?}");

    // Every rule group loads and evaluates without error.
    prometheus
        .wait_until("every rule evaluated", async |p| {
            let groups =
                p.api("rules", &[]).await["groups"].as_array().cloned().unwrap_or_default();
            groups.len() == 2
                && groups.iter().all(|group| {
                    group["lastEvaluation"].as_str().is_some_and(|at| !at.starts_with("0001"))
                })
        })
        .await;
    let groups = prometheus.api("rules", &[]).await["groups"].clone();
    for rule in groups.as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // Every dashboard query evaluates, and every series it or a rule reads is one the server
    // exports (or one of the conditional ones).
    let exported: BTreeSet<String> = prometheus
        .api("label/__name__/values", &[])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    let dashboard: Value = serde_json::from_str(&read(&monitoring.join("grafana/scion.json")))
        .expect("the dashboard is JSON");
    let mut read_names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            read_names.extend(metric_names(expr));
            let query = expr.replace("$instance", ".*");
            prometheus.query(&query).await;
        }
    }
    let rules = read(&monitoring.join("prometheus/alerts.yml"));
    for line in rules.lines().filter(|line| line.trim_start().starts_with("expr:")) {
        read_names.extend(metric_names(line));
    }
    for name in &read_names {
        let known = exported.contains(name.as_str())
            || CONDITIONAL.iter().any(|prefix| name.starts_with(prefix));
        assert!(known, "{name} is read by the dashboard or a rule but not exported: {exported:?}");
    }

    // The server gone: ScionDown goes pending (it fires after its `for`).
    server.kill();
    prometheus
        .wait_until("ScionDown pending", async |p| {
            let alerts =
                p.api("alerts", &[]).await["alerts"].as_array().cloned().unwrap_or_default();
            alerts.iter().any(|alert| {
                alert["labels"]["alertname"] == "ScionDown" && alert["labels"]["job"] == "scion"
            })
        })
        .await;
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(scion_clone_ready_seconds_bucket{a=\"b\"}[5m]))) / dblab_x",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["dblab_x".to_owned(), "scion_clone_ready_seconds_bucket".to_owned()]
    );
}
