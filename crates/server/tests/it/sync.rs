//! The sync instance over HTTP: `/status` → `synchronization` and the `dblab_sync_*` metrics of
//! a real standby of a real source, and DBLab's alert rules (`DBLabSyncDown`,
//! `DBLabHighWALLag`) run by `promtool` against series taken from `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use storage::{BackendConfig, DatasetName, StorageBackend, ThinStorage};
use test_support::TestDir;
use test_support::primary::Primary;

use crate::harness::TestServer;

const WAIT: Duration = Duration::from_secs(90);

/// `/status` → `synchronization` once it satisfies `done`.
async fn wait_sync(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = server.get("/status").await;
        if done(&status["synchronization"]) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "synchronization never got {what}: {}\n{}",
            status["synchronization"],
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The samples of `name` in a `/metrics` text, label set (`{…}` or ``) to value.
fn samples(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| (labels.to_owned(), value.parse().ok()))
                .and_then(|(labels, value)| Some((labels, value?)))
        })
        .collect()
}

fn has_lag_row(status: &Value) -> bool {
    status["lastReplayedLsnAt"].is_string() && status["replicationLag"].is_null()
}

/// The sync instance's series in `metrics`, as promtool input series holding their value
/// for `minutes`.
fn as_input_series(metrics: &str, minutes: u32) -> String {
    let mut text = String::new();
    for name in ["dblab_sync_status", "dblab_sync_wal_lag_seconds"] {
        for (labels, value) in samples(metrics, name) {
            text.push_str(&format!(
                "      - series: '{name}{labels}'\n        values: '{value}+0x{minutes}'\n"
            ));
        }
    }
    text
}

/// DBLab's two alert rules, as its PROMETHEUS.md publishes them.
const RULES: &str = r#"groups:
  - name: dblab
    rules:
      - alert: DBLabHighWALLag
        expr: dblab_sync_wal_lag_seconds > 3600
        for: 10m
      - alert: DBLabSyncDown
        expr: dblab_sync_status{status="down"} == 1 or dblab_sync_status{status="error"} == 1
        for: 5m
"#;

/// Runs the rules over `series` with promtool and checks, at 11 minutes, the labels of the
/// alerts each rule fires (`None`: it fires none).
fn check_rules(dir: &Path, series: &str, sync_down: Option<&str>, high_lag: Option<&str>) {
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let mut test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n",
        rules.display()
    );
    for (name, fires) in [("DBLabSyncDown", sync_down), ("DBLabHighWALLag", high_lag)] {
        test.push_str(&format!("      - eval_time: 11m\n        alertname: {name}\n"));
        match fires {
            Some(labels) => test
                .push_str(&format!("        exp_alerts:\n          - exp_labels: {{{labels}}}\n")),
            None => test.push_str("        exp_alerts: []\n"),
        }
    }
    let file = dir.join("test.yml");
    std::fs::write(&file, &test).unwrap();
    #[allow(clippy::disallowed_methods, reason = "the test runs Prometheus' own rule checker")]
    let output = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool (Debian's prometheus package, from scripts/setup)");
    assert!(
        output.status.success(),
        "promtool: {}{}\n{test}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn sync_instance_shows_in_status_and_metrics() {
    let mut source = Primary::start(16).await;
    let mut server = TestServer::start("").await;
    let (_, status) = server.get("/status").await;
    assert_eq!(status["synchronization"]["status"]["code"], "Not available");
    // As DBLab sends it: the message is there, empty.
    assert_eq!(status["synchronization"]["status"]["message"], "");
    assert!(samples(&server.metrics().await, "dblab_sync_status").is_empty());

    // A golden dataset prepared while the server is down, recorded for its next start.
    server.kill();
    let storage =
        StorageBackend::open(&BackendConfig::Btrfs { root: server.pool_dir(), quota: false })
            .await
            .unwrap();
    let dataset = DatasetName::new("data_physical".to_owned()).unwrap();
    let mountpoint = storage.create_dataset(&dataset).await.unwrap();
    source.base_backup(&mountpoint.join("data"), "scion_sync").await;
    let store =
        engine::store::Store::open(&server.state_dir().join("engine").join("scion.db")).unwrap();
    let settings = engine::SyncSettings {
        health_interval: Duration::from_millis(500),
        ..engine::SyncSettings::default()
    };
    engine::record_sync(&store, &dataset, &settings).unwrap();
    drop(store);
    server.launch().await;

    source.insert("streamed").await;
    let status = wait_sync(&server, "OK with a replayed commit", |sync| {
        sync["status"]["code"] == "OK" && has_lag_row(sync)
    })
    .await;
    assert_eq!(status["retrieving"]["mode"], "physical");
    assert_eq!(status["status"]["code"], "OK", "{}", status["status"]);
    let sync = &status["synchronization"];
    assert!(sync["startedAt"].is_string() && sync["lastReplayedLsn"].is_string(), "{sync}");
    let metrics = server.metrics().await;
    assert_eq!(
        samples(&metrics, "dblab_sync_status"),
        [("{status=\"OK\"}".to_owned(), 1.0), ("{status=\"ok\"}".to_owned(), 1.0)],
        "{metrics}"
    );
    assert_eq!(samples(&metrics, "dblab_sync_wal_lag_seconds"), [(String::new(), 0.0)]);
    assert_eq!(samples(&metrics, "dblab_sync_uptime_seconds").len(), 1, "{metrics}");
    let replayed = samples(&metrics, "dblab_sync_last_replayed_timestamp");
    let now = chrono_now();
    assert!(
        replayed.len() == 1 && (now - replayed[0].1).abs() < 600.0,
        "{replayed:?} is not about now ({now})"
    );
    let healthy = metrics;

    // The source gone: an error, a warning for the instance, and the series the rule wants.
    source.stop().await;
    let status = wait_sync(&server, "an error", |sync| sync["status"]["code"] == "Error").await;
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);
    assert!(
        status["synchronization"]["status"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("not streaming from the source")),
        "{}",
        status["synchronization"]
    );
    let failing = loop {
        let metrics = server.metrics().await;
        if samples(&metrics, "dblab_sync_status").iter().any(|(labels, _)| labels.contains("error"))
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        samples(&failing, "dblab_sync_status").contains(&("{status=\"error\"}".to_owned(), 1.0)),
        "{failing}"
    );

    // DBLab's rules, unchanged, over these series: quiet while healthy; the sync alert fires
    // when it is in error; the lag alert fires once the lag is over an hour.
    let dir = TestDir::new("scion-promtool-");
    check_rules(dir.path(), &as_input_series(&healthy, 15), None, None);
    check_rules(dir.path(), &as_input_series(&failing, 15), Some("status: error"), None);
    // The lag series as the exporter writes it, with an hour and a half of lag.
    let lagging =
        healthy.replace("dblab_sync_wal_lag_seconds 0", "dblab_sync_wal_lag_seconds 5400");
    check_rules(dir.path(), &as_input_series(&lagging, 15), None, Some(""));
}

fn chrono_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}
