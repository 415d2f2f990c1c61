//! `scion instance status|version|full-refresh`, `scion full-refresh`, a wrong token, and DBLab's
//! `--token`, `DBLAB_INSTANCE_URL` and `DBLAB_VERIFICATION_TOKEN`.

use std::time::Duration;

use crate::support::{
    SOURCE_PASSWORD, SOURCE_PASSWORD_ENV, TOKEN, TestServer, normalize, scion_with_env,
    without_volatile,
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

/// A source cluster with a database `shop`; [`WarningSource::start`]'s restore drops one
/// table's rows: `guarded`'s check looks its values up in `zz_allowed`, whose rows pg_restore
/// loads after `guarded`'s (name order).
pub(crate) struct WarningSource {
    instance: Option<postgres::Instance>,
    port: u16,
    dir: test_support::TestDir,
}

/// `shop`'s tables for [`WarningSource::start`].
const WARNING_SHOP: &str = "CREATE TABLE zz_allowed (v int PRIMARY KEY); \
     INSERT INTO zz_allowed SELECT generate_series(1, 10); \
     CREATE FUNCTION is_allowed(int) RETURNS bool LANGUAGE plpgsql STABLE \
       AS $$ BEGIN RETURN EXISTS (SELECT 1 FROM public.zz_allowed WHERE v = $1); END $$; \
     CREATE TABLE guarded (v int CHECK (is_allowed(v))); \
     INSERT INTO guarded SELECT generate_series(1, 10);";

impl WarningSource {
    async fn start() -> WarningSource {
        WarningSource::start_with(WARNING_SHOP).await
    }

    /// A source whose `shop` database `shop_sql` fills.
    pub(crate) async fn start_with(shop_sql: &str) -> WarningSource {
        let dir = test_support::TestDir::new("scion-cli-source-");
        let user = postgres::OsUser::lookup("postgres").expect("set up the source");
        let major = postgres::PgMajor::new(16).expect("set up the source");
        let binaries = postgres::BinarySearch::default().locate(major).expect("set up the source");
        let data_dir = dir.path().join("data");
        let mut options = postgres::InitDbOptions::new("postgres");
        options.sync = false;
        postgres::initdb(&binaries, &data_dir, &user, &options).await.expect("set up the source");
        let port = *test_support::free_port_range(1).start();
        let settings = postgres::ServerSettings::new(port, dir.path().join("sock"));
        let spec = postgres::InstanceSpec::new(
            &data_dir,
            settings,
            "postgres",
            dir.path().join("log"),
            user,
        );
        let mut instance =
            postgres::Instance::start(&binaries, spec.clone()).await.expect("set up the source");
        let admin = instance.admin().await.expect("set up the source");
        admin
            .create_or_replace_role("reader", SOURCE_PASSWORD, postgres::RoleKind::Superuser)
            .await
            .expect("set up the source");
        admin.client().batch_execute("CREATE DATABASE shop").await.expect("set up the source");
        drop(admin);
        let shop = postgres::Admin::connect(&spec.settings.socket_dir, port, "postgres", "shop")
            .await
            .expect("set up the source");
        shop.client().batch_execute(shop_sql).await.expect("set up the source");
        WarningSource { instance: Some(instance), port, dir }
    }

    pub(crate) fn config(&self) -> String {
        format!(
            "\n[retrieval]\ntarget_major = 16\n[retrieval.source]\nhost = \"127.0.0.1\"\n\
             port = {}\nusername = \"reader\"\npassword_env = \"{SOURCE_PASSWORD_ENV}\"\n\
             [retrieval.restore]\nignore_errors = true\n",
            self.port
        )
    }

    pub(crate) async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance
                .stop(postgres::StopMode::Fast, Duration::from_secs(30))
                .await
                .expect("set up the source");
        }
    }
}

impl Drop for WarningSource {
    fn drop(&mut self) {
        test_support::stop_postmasters_under(self.dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_status_shows_the_warnings_of_the_last_refresh() {
    let source = WarningSource::start().await;
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
