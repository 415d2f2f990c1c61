//! The server fuzzed from its own OpenAPI document with schemathesis: no request it generates,
//! valid or not, may get a 5xx, a status the document does not list, or a body or content type
//! other than the document's.

use std::path::PathBuf;
use std::process::Command;

use test_support::TestDir;

use crate::harness::{TOKEN, TestServer, run_tool};

/// Where `scripts/setup` installs schemathesis; `SCION_SCHEMATHESIS` overrides it.
const DEFAULT_ST: &str = "/opt/scion/schemathesis/bin/st";

/// Test cases per operation and phase: a few hundred requests in all, in well under a minute.
const MAX_EXAMPLES: &str = "10";

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCION_SCHEMATHESIS").map_or(DEFAULT_ST.into(), PathBuf::from);
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    path
}

#[tokio::test]
async fn the_server_answers_as_its_openapi_document_says() {
    let server = TestServer::start("").await;
    // The ID the document gives as its example, so that the examples phase reaches a real clone.
    server.create_clone("feature-x-test").await;
    let st = schemathesis();
    let url = server.url.clone();
    let report = TestDir::new("scion-fuzz-");
    let report_path = report.path().join("report.xml");
    // schemathesis keeps a cache in its working directory.
    let work = report.path().to_owned();
    #[allow(clippy::disallowed_methods, reason = "the fuzzer is an outside tool run as is")]
    let mut command = Command::new(st);
    command
        .current_dir(&work)
        .arg("run")
        .arg(format!("{url}/api/openapi.json"))
        .args(["--url", &url])
        .args(["--header", &format!("Verification-Token: {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        // `follow=true` streams a clone's log until the clone is gone: a request that never
        // ends, by design (admin.rs tests it).
        .args(["--exclude-operation-id", "cloneLogs"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "18"])
        // One worker: CPython 3.11 fails compiling in threads side by side ("AST constructor
        // recursion depth mismatch"), which hypothesis does for its lambdas.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report_path)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let (stdout, stderr) = run_tool(&server, "schemathesis", command).await;
    // A run that tested nothing must not pass.
    let junit = std::fs::read_to_string(report.path().join("report.xml")).unwrap_or_default();
    assert!(junit.contains("<testcase"), "schemathesis ran no test:\n{stdout}\n{stderr}");
    println!("{stdout}");
}
