//! `/metrics` tells what `/status` tells: the instance status code and the retrieval mode and
//! status come from the same state, also after a refresh failed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{SOURCE_PASSWORD_ENV, TestServer, metric};

/// The value of `dblab_retrieval_status` for one mode and status, if that series is there.
fn retrieval_series(metrics: &str, mode: &str, status: &str) -> Option<f64> {
    let series = format!("dblab_retrieval_status{{mode=\"{mode}\",status=\"{status}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(series.as_str())?.trim().parse().ok())
}

/// The status code `dblab_instance_status_code` must show for a `/status` code.
fn code_of(status: &Value) -> f64 {
    match status["status"]["code"].as_str() {
        Some("OK") => 0.0,
        Some("WARNING") => 1.0,
        other => panic!("unexpected /status code {other:?}"),
    }
}

#[tokio::test]
async fn metrics_mirror_status_without_retrieval() {
    let server = TestServer::start("").await;
    let (_, status) = server.get("/status").await;
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "dblab_instance_status_code"), Some(code_of(&status)));
    let (mode, state) =
        (status["retrieving"]["mode"].as_str(), status["retrieving"]["status"].as_str());
    assert_eq!((mode, state), (Some("unknown"), Some("inactive")), "{}", status["retrieving"]);
    assert_eq!(retrieval_series(&metrics, "unknown", "inactive"), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn metrics_mirror_status_after_a_failed_refresh() {
    // A source nobody listens on: the refresh at start fails.
    let port = *test_support::free_port_range(1).start();
    let config = format!(
        "[retrieval]\ntarget_major = 16\n[retrieval.source]\nhost = \"127.0.0.1\"\nport = {port}\n\
         dbname = \"postgres\"\nusername = \"reader\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n"
    );
    let server = TestServer::start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let (_, status) = server.get("/status").await;
        if status["retrieving"]["status"] == "failed" {
            break status;
        }
        assert!(Instant::now() < deadline, "the refresh did not fail: {}", status["retrieving"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);
    assert_eq!(status["retrieving"]["mode"], "logical");
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "dblab_instance_status_code"), Some(1.0), "{metrics}");
    assert_eq!(retrieval_series(&metrics, "logical", "failed"), Some(1.0), "{metrics}");
    let series = metrics.lines().filter(|line| line.starts_with("dblab_retrieval_status{")).count();
    assert_eq!(series, 1, "one series, for the current pair:\n{metrics}");
}

/// A full pool through the real binary and its default `[pool] min_free_space` (5 % of the
/// harness' 2 GiB image): writes are refused with 507, `/status` and `/metrics` warn, and both
/// recover once the filler is gone.
#[tokio::test]
async fn a_full_pool_is_a_warning_in_status_and_metrics_until_space_is_freed() {
    let server = TestServer::start("").await;
    let filler = test_support::fill(&server.pool_dir(), 32 << 20);

    let (code, answer) = server.post("/clone", crate::harness::clone_request("late")).await;
    assert_eq!(code, 507, "{answer}");
    assert_eq!(answer["code"], "INSUFFICIENT_STORAGE", "{answer}");
    let (code, answer) = server.post("/snapshot", serde_json::json!({})).await;
    assert_eq!(code, 507, "{answer}");
    let (_, status) = server.get("/status").await;
    assert_eq!(status["status"]["code"], "WARNING", "{}", status["status"]);
    let message = status["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("pool") && message.contains("out of space"), "{message}");
    assert_eq!(metric(&server.metrics().await, "dblab_instance_status_code"), Some(1.0));

    filler.remove();
    let (code, answer) = server.post("/snapshot", serde_json::json!({})).await;
    assert_eq!(code, 200, "{answer}");
    let (_, status) = server.get("/status").await;
    assert_eq!(status["status"]["code"], "OK", "{}", status["status"]);
    assert_eq!(metric(&server.metrics().await, "dblab_instance_status_code"), Some(0.0));
}
