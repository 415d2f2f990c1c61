//! `scion init`: the saved file (mode 0600, URL and token) is what later commands use; the token
//! from `--token-stdin`, `SCION_TOKEN` or `--token`.

use std::os::unix::fs::PermissionsExt;

use exec::Cmd;

use crate::support::{TOKEN, TestServer, scion_bin, scion_with_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_saves_what_later_commands_use() {
    let server = TestServer::start("").await;
    let path = server.scratch().join("cli").join("config.toml");
    let config = path.to_str().unwrap();

    // URL from --url, token from the environment, checked against the server before saving.
    let run = scion_with_env(
        &["init", "--url", &server.url, "--check"],
        &[("SCION_TOKEN", TOKEN), ("SCION_CLI_CONFIG", config)],
    )
    .await;
    assert_eq!(run.ok(), format!("Saved {config} (url {}, token set)\n", server.url));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("url = \"{}\"\ntoken = \"{TOKEN}\"\n", server.url)
    );
    let run =
        scion_with_env(&["clone", "list", "-o", "json"], &[("SCION_CLI_CONFIG", config)]).await;
    assert_eq!(run.json(), serde_json::json!([]));

    // The environment beats the file.
    let run = scion_with_env(
        &["clone", "list"],
        &[("SCION_CLI_CONFIG", config), ("SCION_TOKEN", "wrong")],
    )
    .await;
    run.expect_code(1);

    // --token-stdin; a wrong token fails the --check and leaves the file as it was.
    let output = Cmd::new(scion_bin())
        .env_clear()
        .env("SCION_CLI_CONFIG", config)
        .args(["init", "--url", &server.url, "--token-stdin", "--check", "-o", "json"])
        .stdin_bytes(b"wrong\n".to_vec())
        .output_any_status()
        .await
        .unwrap();
    assert_eq!(output.status, exec::ExitInfo::Code(1), "{}", output.stderr_text());
    assert!(std::fs::read_to_string(&path).unwrap().contains(TOKEN));
    let output = Cmd::new(scion_bin())
        .env_clear()
        .env("SCION_CLI_CONFIG", config)
        .args(["init", "--url", &server.url, "--token-stdin", "-o", "json"])
        .stdin_bytes(format!("{TOKEN}\n").into_bytes())
        .output_any_status()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", output.stderr_text());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary, serde_json::json!({"config": config, "url": server.url, "token": true}));

    // --token is accepted too (DBLab has it), and init without a URL is a usage error.
    let run = scion_with_env(
        &["init", "--url", &server.url, "--token", "other"],
        &[("SCION_CLI_CONFIG", config)],
    )
    .await;
    run.ok();
    assert!(std::fs::read_to_string(&path).unwrap().contains("token = \"other\""));
    let run = scion_with_env(&["init"], &[("SCION_CLI_CONFIG", config)]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("--url"), "{}", run.stderr);
}
