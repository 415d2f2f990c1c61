//! `scion instance status`, `scion full-refresh`, and a wrong token.

use crate::support::{TestServer, normalize, scion_with_env, without_volatile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_status_full_refresh_and_token() {
    let server = TestServer::start("").await;
    let engine = server.client().healthz().await.unwrap();
    let replacements =
        [(engine.version.as_str(), "<VERSION>"), (engine.instance_id.as_str(), "<INSTANCE>")];

    let run = server.scion(&["instance", "status"]).await;
    let text = normalize(run.ok(), &replacements);
    let expected_head = "\
Status  OK: Instance is ready
Version  <VERSION> (community)
Instance ID  <INSTANCE>
Started at  <TIME>
";
    assert!(text.starts_with(expected_head), "{text}");
    assert!(text.contains("\nClones  0 (expected cloning time <SECS>)\n"), "{text}");
    assert!(
        text.ends_with(
            "\nPOOL  MODE  STATUS  DATA STATE AT  CLONES  SIZE  FREE  USED\n\
             dblab_pool  btrfs  active  <TIME>  0  <SIZE>  <SIZE>  <SIZE>\n"
        ),
        "{text}"
    );
    let json = server.scion(&["instance", "status", "-o", "json"]).await.json();
    assert_eq!(without_volatile(json), without_volatile(server.raw("/status").await));

    // Without a [retrieval] section there is nothing to refresh from: the server refuses (400),
    // or, if it predates the endpoint, answers 404, which is reported as such. Either way exit 1.
    let run = server.scion(&["full-refresh"]).await;
    run.expect_code(1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("does not offer a full refresh (POST /full-refresh answered 404")
            || run.stderr.contains("(HTTP 400, BAD_REQUEST)"),
        "{}",
        run.stderr
    );

    // A wrong token: the server's message and a hint, exit 1.
    let run = scion_with_env(
        &["clone", "list"],
        &[
            ("SCION_URL", &server.url),
            ("SCION_TOKEN", "wrong"),
            ("SCION_CLI_CONFIG", "/nonexistent/scion.toml"),
        ],
    )
    .await;
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        "error: Check your verification token. (HTTP 401, UNAUTHORIZED)\n\
         hint: set the token with SCION_TOKEN or `scion init`\n"
    );
}
