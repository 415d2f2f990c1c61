//! `scion instance status|version|full-refresh`, `scion full-refresh`, a wrong token, and DBLab's
//! `--token`, `DBLAB_INSTANCE_URL` and `DBLAB_VERIFICATION_TOKEN`.

use crate::support::{
    SourceCluster, TOKEN, TestServer, normalize, scion_with_env, without_volatile,
};

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
         hint: set the token with --token, SCION_TOKEN or `scion init`\n"
    );

    // DBLab's verbs and variables: `instance version`, `instance full-refresh`, --token,
    // DBLAB_INSTANCE_URL and DBLAB_VERIFICATION_TOKEN.
    let run = server.scion(&["instance", "version"]).await;
    assert_eq!(normalize(run.ok(), &replacements), "<VERSION> (community edition)\n");
    let json = server.scion(&["instance", "version", "-o", "json"]).await.json();
    assert_eq!(json["version"], engine.version.as_str());
    let run = server.scion(&["instance", "full-refresh"]).await;
    run.expect_code(1);
    let no_config = ("SCION_CLI_CONFIG", "/nonexistent/scion.toml");
    let dblab_env = [
        ("DBLAB_INSTANCE_URL", server.url.as_str()),
        ("DBLAB_VERIFICATION_TOKEN", TOKEN),
        no_config,
    ];
    let run = scion_with_env(&["clone", "list", "-o", "json"], &dblab_env).await;
    assert_eq!(run.json(), serde_json::json!([]));
    let run = scion_with_env(
        &["clone", "list", "--token", TOKEN, "-o", "json"],
        &[("SCION_URL", &server.url), ("SCION_TOKEN", "wrong"), no_config],
    )
    .await;
    assert_eq!(run.json(), serde_json::json!([]), "the flag wins over SCION_TOKEN");
    let run = scion_with_env(
        &["clone", "list"],
        &[
            ("SCION_TOKEN", "wrong"),
            ("DBLAB_VERIFICATION_TOKEN", TOKEN),
            ("SCION_URL", &server.url),
            no_config,
        ],
    )
    .await;
    run.expect_code(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_status_shows_the_warnings_of_the_last_refresh() {
    // A source whose restore drops one table's rows: `guarded`'s check looks its values up in
    // `zz_allowed`, whose rows pg_restore loads after `guarded`'s (name order).
    let source = SourceCluster::start(
        "CREATE TABLE zz_allowed (v int PRIMARY KEY); \
         INSERT INTO zz_allowed SELECT generate_series(1, 10); \
         CREATE FUNCTION is_allowed(int) RETURNS bool LANGUAGE plpgsql STABLE \
           AS $$ BEGIN RETURN EXISTS (SELECT 1 FROM public.zz_allowed WHERE v = $1); END $$; \
         CREATE TABLE guarded (v int CHECK (is_allowed(v))); \
         INSERT INTO guarded SELECT generate_series(1, 10);",
    )
    .await;
    let server = TestServer::start(&source.config()).await;
    server.wait_refresh().await;

    let run = server.scion(&["instance", "status"]).await;
    let text = normalize(run.ok(), &[]);
    let text = text.as_str();
    assert!(
        text.starts_with(
            "Status  WARNING: Subsystems that need attention: retrieving. \
             The last refresh finished with 1 warning: see retrieving.warnings\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nWarnings  1 in the last refresh\n"), "{text}");
    let retrieved = text.lines().find(|line| line.starts_with("Retrieved  ")).expect(text);
    assert!(retrieved.ends_with(" in 2 databases"), "{text}");
    let (_, listed) = text.split_once("\nRefresh warnings (first lines):\n").expect(text);
    let lines: Vec<&str> = listed.lines().take_while(|line| line.starts_with("  ")).collect();
    assert!(lines[0].starts_with("  shop: restore errors ignored"), "{text}");
    assert!(lines.iter().any(|line| line.contains("guarded")), "{text}");
    let json = server.scion(&["instance", "status", "-o", "json"]).await.json();
    assert_eq!(json["retrieving"]["warnings"]["count"], 1, "{json}");
    assert_eq!(without_volatile(json), without_volatile(server.raw("/status").await));
    source.stop().await;
}
