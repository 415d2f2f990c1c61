//! `scion config create|update|view|list|switch|remove`: named environments in the CLI's file,
//! each used by later commands against a real server; tokens never printed.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Run, TOKEN, TestServer, normalize, scion_with_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_environments_choose_the_server_and_token() {
    let server = TestServer::start("").await;
    let path = server.scratch().join("environments.toml");
    let path = path.to_str().unwrap().to_owned();
    let scion = |args: Vec<&str>| {
        let path = path.clone();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            scion_with_env(&args, &[("SCION_CLI_CONFIG", &path)]).await
        }
    };
    let url = server.url.as_str();
    let no_token_printed = |run: &Run| {
        assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN), "{run:?}");
    };

    assert_eq!(scion(vec!["config", "list", "-o", "json"]).await.json(), serde_json::json!([]));
    let run = scion(vec!["config", "create", "good", "--url", url, "--token", TOKEN]).await;
    assert!(run.ok().contains("Environment  good\n"), "{}", run.stdout);
    no_token_printed(&run);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the file holds tokens");
    let run = scion(vec!["config", "create", "bad", "--url", url, "--token", "wrong"]).await;
    run.ok();

    // The newest environment is current: its wrong token is refused by the server.
    scion(vec!["clone", "list"]).await.expect_code(1);
    scion(vec!["config", "switch", "good"]).await.ok();
    assert_eq!(scion(vec!["clone", "list", "-o", "json"]).await.json(), serde_json::json!([]));
    let run = scion(vec!["config", "list"]).await;
    assert_eq!(
        normalize(run.ok(), &[(url, "<URL>")]),
        "  ENVIRONMENT  URL  BRANCH\n  bad  <URL>  main\n*  good  <URL>  main\n"
    );
    let view = scion(vec!["config", "view", "bad", "-o", "json"]).await;
    no_token_printed(&view);
    assert_eq!(
        view.json(),
        serde_json::json!({"id": "bad", "url": url, "token": true, "currentBranch": "main", "current": false})
    );

    // An update changes what later commands reach; the current one cannot be removed.
    scion(vec!["config", "update", "good", "--url", "http://127.0.0.1:9"]).await.ok();
    scion(vec!["clone", "list"]).await.expect_code(1);
    scion(vec!["config", "update", "good", "--url", url]).await.ok();
    scion(vec!["clone", "list"]).await.ok();
    let run = scion(vec!["config", "remove", "good"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("cannot remove the current environment"), "{}", run.stderr);
    scion(vec!["config", "remove", "bad"]).await.ok();
    let run = scion(vec!["config", "switch", "bad"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("no environment \"bad\" (there are: good)"), "{}", run.stderr);

    // Bad input is a usage error.
    scion(vec!["config", "create", "no spaces"]).await.expect_code(2);
    scion(vec!["config", "create", "good", "--url", url]).await.expect_code(2);
    scion(vec!["config", "create", "nourl"]).await.expect_code(2);
}
