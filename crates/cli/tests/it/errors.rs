//! Exit codes without a server: 2 for bad flags and configuration, 1 for an unreachable server;
//! and shell completions.

use test_support::free_port_range;

use crate::support::{Run, scion_with_env};

async fn scion(args: &[&str]) -> Run {
    scion_with_env(args, &[("SCION_CLI_CONFIG", "/nonexistent/scion.toml")]).await
}

#[tokio::test]
async fn bad_flags_exit_2() {
    let cases: &[&[&str]] = &[
        &["bogus"],
        &["clone"],
        &["clone", "create", "--password", "x"],
        &["clone", "create", "--username", "u", "--password", "x", "--protected", "maybe"],
        &["clone", "create", "--username", "u", "--password", "x", "--extra-config", "novalue"],
        &["clone", "reset", "c1", "--latest", "--snapshot-id", "p/d@s"],
        &["clone", "list", "--output", "yaml"],
        &["--request-timeout", "soon", "clone", "list"],
        &["snapshot", "destroy"],
        &["completions", "powershell-ish"],
    ];
    for args in cases {
        let run = scion(args).await;
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
    }
    let run = scion(&["clone", "create", "--username", "u", "--password", "x", "-p", "2w"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "invalid --protected value \"2w\" (use 'true', 'false', minutes, or duration like 30m/2h/7d)"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_configuration_exits_2() {
    let run = scion(&["--url", "not a url", "clone", "list"]).await;
    run.expect_code(2);
    assert!(run.stderr.starts_with("error: invalid server URL \"not a url\""), "{}", run.stderr);
    let run = scion(&["--url", "http://127.0.0.1:1", "clone", "status", "bad/id"]).await;
    run.expect_code(2);
    let dir = test_support::TestDir::new("scion-cli-config-");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "url = 5\n").unwrap();
    let run =
        scion_with_env(&["clone", "list"], &[("SCION_CLI_CONFIG", path.to_str().unwrap())]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("parse"), "{}", run.stderr);
}

#[tokio::test]
async fn unreachable_server_exits_1() {
    let port = *free_port_range(1).start();
    let url = format!("http://127.0.0.1:{port}");
    let run = scion(&["--url", &url, "clone", "list"]).await;
    run.expect_code(1);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with(&format!("error: cannot reach the server at {url}/clones: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(run.stderr.ends_with("hint: is scion-server running there? Set the URL with --url, SCION_URL or `scion init`\n"), "{}", run.stderr);
    // The same from SCION_URL, for a command that would wait.
    let run = scion_with_env(
        &["clone", "create", "--username", "u", "--password", "x"],
        &[("SCION_URL", &url), ("SCION_CLI_CONFIG", "/nonexistent/scion.toml")],
    )
    .await;
    run.expect_code(1);
    assert!(run.stderr.contains("cannot reach the server"), "{}", run.stderr);
}

#[tokio::test]
async fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let run = scion(&["completions", shell]).await;
        let script = run.ok();
        for word in ["scion", "clone", "snapshot", "full-refresh", "--protected"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}
