//! `scion ci check` end to end: the command lines of the CI examples in `docs/ci/` run as they
//! are (through `sh`, in a checkout with migrations) against a real server, a migration that
//! holds an ACCESS EXCLUSIVE lock too long fails the check, a failing command fails it, and the
//! observation verbs of `scion clone` work as DBLab's.

use std::path::{Path, PathBuf};

use exec::{Cmd, ExitInfo};
use postgres::{BinarySearch, PgMajor};

use crate::support::{PASSWORD, Run, TOKEN, TestServer, scion_bin, scion_with_env};

/// The migrations of the pretend repository the examples check out.
const MIGRATIONS: &[(&str, &str)] = &[
    ("001_accounts.sql", "CREATE TABLE accounts (id int PRIMARY KEY, email text);\n"),
    (
        "002_backfill.sql",
        "INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 100) g;\n",
    ),
    ("003_index.sql", "CREATE INDEX accounts_email ON accounts (email);\n"),
];

/// A migration that keeps ACCESS EXCLUSIVE on a table until the observer has looked at it at
/// least 1.5 s into the transaction (so no clock decides the outcome): with a one-second limit,
/// a dangerous lock.
const SLOW_MIGRATION: &str = "\
BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
DO $$
DECLARE
  ready timestamptz := clock_timestamp() + interval '1.5 seconds';
BEGIN
  LOOP
    PERFORM pg_sleep(0.1);
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN EXISTS (
      SELECT 1 FROM pg_stat_activity
       WHERE application_name = 'scion-engine' AND query LIKE '%AccessExclusiveLock%'
         AND state = 'idle' AND query_start >= ready);
  END LOOP;
END $$;
COMMIT;
";

/// The `scion ci check` command line of a CI example, continuation lines joined.
fn example_command(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ci").join(file);
    let text = std::fs::read_to_string(&path).expect("read the CI example");
    let line = text
        .lines()
        .map(|line| line.trim().trim_start_matches("- "))
        .find(|line| line.starts_with("scion ci check"))
        .unwrap_or_else(|| panic!("no `scion ci check` line in {}", path.display()));
    line.to_owned()
}

/// A checkout with the migrations, and the PATH a CI job has: `scion` and psql.
fn checkout(server: &TestServer, name: &str) -> (PathBuf, String) {
    let dir = server.scratch().join(name);
    std::fs::create_dir_all(dir.join("migrations")).expect("make the checkout");
    for (file, sql) in MIGRATIONS {
        std::fs::write(dir.join("migrations").join(file), sql).expect("write a migration");
    }
    let psql = BinarySearch::default().locate(PgMajor::new(17).expect("a major")).expect("psql 17");
    let scion_dir = Path::new(scion_bin()).parent().expect("scion lives in a directory");
    let path = format!("{}:{}:/usr/bin:/bin", scion_dir.display(), psql.bin_dir().display());
    (dir, path)
}

/// Runs a shell line as a CI job would: in `dir`, with the server's URL and token.
async fn job(server: &TestServer, dir: &Path, path: &str, line: &str) -> Run {
    let output = Cmd::new("sh")
        .arg("-c")
        .arg(line)
        .env_clear()
        .env("PATH", path)
        .env("SCION_URL", &server.url)
        .env("SCION_TOKEN", TOKEN)
        .env("SCION_CLI_CONFIG", dir.join("no-cli-config.toml"))
        .current_dir(dir)
        .output_any_status()
        .await
        .expect("run the job's shell");
    let code = match output.status {
        ExitInfo::Code(code) => code,
        ExitInfo::Signal(signal) => panic!("the job was killed by signal {signal}"),
    };
    Run { code, stdout: output.stdout_text(), stderr: output.stderr_text() }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_examples_pass_a_good_migration_and_leave_no_clone() {
    let server = TestServer::start("").await;

    // GitHub Actions: the Markdown report for the comment, JUnit for the results.
    let (dir, path) = checkout(&server, "github");
    let run = job(&server, &dir, &path, &example_command("github-actions.yml")).await;
    let markdown = run.ok().to_owned();
    assert!(markdown.starts_with("### Scion migration check: ✅ passed"), "{markdown}");
    assert!(markdown.contains("| Commands succeeded | ✅ 1 of 1 |"), "{markdown}");
    assert!(markdown.contains("No long dangerous locks (> 10 s) | ✅ 0 of"), "{markdown}");
    assert_eq!(read(&dir.join("scion-report.md")), markdown);
    let junit = read(&dir.join("scion-report.xml"));
    assert!(junit.contains("failures=\"0\" skipped=\"0\""), "{junit}");
    assert!(junit.contains("name=\"no long dangerous locks\""), "{junit}");
    assert!(
        run.stderr.contains("CREATE INDEX"),
        "the commands' output goes to stderr:\n{}",
        run.stderr
    );

    // GitLab CI: JUnit on stdout into the report file, JSON and Markdown beside it.
    let (dir, path) = checkout(&server, "gitlab");
    let run = job(&server, &dir, &path, &example_command("gitlab-ci.yml")).await;
    assert_eq!(run.stdout, "", "stdout went to the JUnit file");
    run.expect_code(0);
    let junit = read(&dir.join("scion-report.xml"));
    assert!(junit.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{junit}");
    let report: serde_json::Value =
        serde_json::from_str(&read(&dir.join("scion-report.json"))).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["commands"][0]["success"], true);
    assert_eq!(report["session"]["result"]["status"], "passed");
    assert_eq!(report["session"]["tags"]["launched_by"], "scion ci check");
    assert_eq!(report["summary"]["db_size"]["objects_stat"]["count"], 1, "{report}");
    assert!(read(&dir.join("scion-report.md")).contains("✅ passed"));

    // Without --keep, the clones are gone.
    assert!(server.client().clones().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lock_or_a_failing_command_fails_the_check() {
    let server = TestServer::start("").await;
    let (dir, path) = checkout(&server, "repo");
    std::fs::write(dir.join("migrations").join("004_slow.sql"), SLOW_MIGRATION).unwrap();

    // A lock held too long: exit 1, the JSON report says why, and --keep keeps the clone.
    let line = "scion ci check --clone-id kept --keep --observation-interval 1 \
                --max-lock-duration 1 --format json -- \
                'for f in migrations/*.sql; do psql -X -q -v ON_ERROR_STOP=1 -f \"$f\" || exit 1; done'";
    let run = job(&server, &dir, &path, line).await;
    run.expect_code(1);
    assert!(run.stderr.contains("the migration check failed"), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    assert_eq!(report["passed"], false);
    assert_eq!(report["commands"][0]["success"], true, "{report}");
    let checklist = &report["session"]["result"]["summary"]["checklist"];
    assert_eq!(checklist["no_long_dangerous_locks"], false, "{report}");
    assert_eq!(checklist["overall_success"], true);
    let warning = report["session"]["result"]["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|interval| interval["warning"].as_str().filter(|text| !text.is_empty()))
        .expect("a warning interval");
    assert!(warning.contains("accounts"), "{warning}");
    assert_eq!(report["clone_kept"], true);
    let kept = server.client().clone_status("kept").await.unwrap();
    assert_eq!(kept.status.code, api_types::StatusCode::Ok);

    // A failing command: JUnit with its failure, the later command skipped.
    let run = job(
        &server,
        &dir,
        &path,
        "scion ci check --format junit -- 'echo broken >&2; exit 3' 'echo never'",
    )
    .await;
    run.expect_code(1);
    assert!(
        run.stdout.contains("<failure message=\"exited with code 3\">broken"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("name=\"echo never\"><skipped"), "{}", run.stdout);
    assert_eq!(server.client().clones().await.unwrap().len(), 1, "only the kept clone is left");

    // Usage errors: exit 2.
    job(&server, &dir, &path, "scion ci check").await.expect_code(2);
    job(&server, &dir, &path, "scion ci check --format yaml -- true").await.expect_code(2);
    server.destroy_all_clones().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observation_verbs_work_as_dblab_s() {
    let server = TestServer::start("").await;
    server
        .scion(&["clone", "create", "--id", "obs", "--username", "alice", "--password", PASSWORD])
        .await
        .ok();
    let started = server
        .scion(&[
            "clone",
            "start-observation",
            "obs",
            "--observation-interval",
            "1",
            "--max-lock-duration",
            "5",
            "--tags",
            "pr=42",
            "-o",
            "json",
        ])
        .await
        .json();
    let session_id = started["session_id"].as_u64().expect("a session ID");
    assert_eq!(started["config"]["observation_interval"], 1);
    assert_eq!(started["config"]["max_duration"], 3600, "the server's default");
    assert_eq!(started["tags"]["pr"], "42");

    let stopped = server.scion(&["clone", "stop-observation", "obs"]).await;
    assert!(stopped.ok().contains("Status    passed"), "{}", stopped.stdout);

    let id = session_id.to_string();
    let summary = server
        .scion(&["clone", "summary-observation", "--clone-id", "obs", "--session-id", &id])
        .await
        .json();
    assert_eq!(summary["session_id"], session_id);
    assert_eq!(summary["clone_id"], "obs");

    let file = server.scratch().join("database.json");
    let file_arg = file.to_str().unwrap();
    let run = server
        .scion(&[
            "clone",
            "download-artifact",
            "--clone-id",
            "obs",
            "--session-id",
            &id,
            "--artifact-type",
            "pg_stat_database",
            "-f",
            file_arg,
        ])
        .await;
    assert!(run.ok().contains("saved to"), "{}", run.stdout);
    let rows: serde_json::Value = serde_json::from_str(&read(&file)).unwrap();
    assert_eq!(rows[0]["datname"], "postgres", "{rows}");

    // DBLab's variables name the clone and the session; an unknown artifact type is the
    // server's 400: the operation failed, exit 1.
    let config = server.scratch().join("no-cli-config.toml");
    let run = scion_with_env(
        &["clone", "download-artifact", "--artifact-type", "bogus"],
        &[
            ("SCION_URL", &server.url),
            ("SCION_TOKEN", TOKEN),
            ("SCION_CLI_CONFIG", config.to_str().unwrap()),
            ("DBLAB_OBSERVATION_CLONE_ID", "obs"),
            ("DBLAB_OBSERVATION_SESSION_ID", &id),
        ],
    )
    .await;
    run.expect_code(1);
    assert!(run.stderr.contains("unknown artifact type"), "{}", run.stderr);
    server.destroy_all_clones().await;
}
