//! `scion config import-dblab`: a DBLab `server.yml` in DBLab's own shape (anchors merged with
//! `<<:`, YAML 1.1 booleans) becomes a configuration the real `scion-server` accepts as it is,
//! and every key left behind is named on stderr.

use exec::Cmd;
use test_support::TestDir;

use crate::support::{scion_with_env, server_bin};

/// DBLab 4.x's logical example, trimmed, with the sections Scion has no use for.
const SERVER_YML: &str = r#"
databaseContainer: &db_container
  dockerImage: "postgresai/extended-postgres:16-0.6.2"
  containerConfig:
    "shm-size": 1gb
databaseConfigs: &db_configs
  configs:
    shared_buffers: 1GB
    shared_preload_libraries: "pg_stat_statements, pg_stat_kcache, auto_explain, logerrors"
    maintenance_work_mem: "500MB"
    work_mem: "100MB"
server:
  verificationToken: "secret_token"
  port: 2345
  disableConfigModification: off
embeddedUI:
  enabled: true
  dockerImage: "postgresai/ce-ui:latest"
  host: "127.0.0.1"
  port: 2346
global:
  engine: postgres
  debug: true
  database:
    username: postgres
    dbname: postgres
poolManager:
  mountDir: /var/lib/dblab
  dataSubDir: data
  clonesMountSubDir: clones
  socketSubDir: sockets
  observerSubDir: observer
  preSnapshotSuffix: "_pre"
  selectedPool: ""
provision:
  <<: *db_container
  portPool:
    from: 6000
    to: 6099
  useSudo: false
  keepUserPasswords: false
  cloneAccessAddresses: "127.0.0.1"
retrieval:
  refresh:
    timetable: "0 0 * * 1"
    skipStartRefresh: false
  jobs:
    - logicalDump
    - logicalRestore
    - logicalSnapshot
  spec:
    logicalDump:
      options:
        <<: *db_container
        dumpLocation: "/var/lib/dblab/dblab_pool/dump"
        source:
          type: remote
          connection:
            dbname: postgres
            host: 34.56.78.90
            port: 5432
            username: postgres
            password: postgres
        databases:
          test:
            tables: [test_table]
        parallelJobs: 2
    logicalRestore:
      options:
        <<: *db_container
        dumpLocation: "/var/lib/dblab/dblab_pool/dump"
        parallelJobs: 2
        customOptions:
          - "--no-tablespaces"
          - "--no-privileges"
          - "--no-owner"
          - "--exit-on-error"
        skipPolicies: true
    logicalSnapshot:
      options:
        <<: *db_configs
        preprocessingScript: ""
        dataPatching:
          <<: *db_container
          queryPreprocessing:
            queryPath: ""
            maxParallelWorkers: 2
            inline: ""
cloning:
  accessHost: "localhost"
  maxIdleMinutes: 120
retention:
  unusedSnapshotMinutes: 0
  checkIntervalMinutes: 5
diagnostic:
  logsRetentionDays: 7
platform:
  url: "https://postgres.ai/api/general"
  enableTelemetry: true
webhooks:
  hooks:
    - url: "https://hooks.example.com/dblab"
      secret: "hook-secret"
      trigger: [clone_create, clone_delete]
"#;

#[tokio::test]
async fn a_dblab_server_yml_becomes_a_configuration_scion_server_accepts() {
    let dir = TestDir::new("scion-import-");
    let input = dir.path().join("server.yml");
    std::fs::write(&input, SERVER_YML).expect("write the DBLab file");
    let output = dir.path().join("scion.toml");
    let args = [
        "config",
        "import-dblab",
        input.to_str().expect("a UTF-8 path"),
        "--out",
        output.to_str().expect("a UTF-8 path"),
    ];
    let run = scion_with_env(&args, &[]).await;
    run.expect_code(0);
    let toml = std::fs::read_to_string(&output).expect("the written configuration");
    for carried in [
        "port_from = 6000",
        "port_to = 6099",
        "initdb_major = 16",
        "target_major = 16",
        "timetable = \"0 0 * * 1\"",
        "host = \"34.56.78.90\"",
        "password_env = \"PGPASSWORD\"",
        "skip_policies = true",
        "work_mem = \"100MB\"",
        "access_host = \"localhost\"",
        "check_interval = \"5m\"",
        "url = \"https://hooks.example.com/dblab\"",
    ] {
        assert!(toml.contains(carried), "{carried} missing:\n{toml}");
    }
    assert!(!toml.contains("secret_token") && !toml.contains("password ="), "{toml}");
    for reported in [
        "server.verificationToken",
        "poolManager.mountDir",
        "embeddedUI.dockerImage",
        "platform.enableTelemetry",
        "diagnostic.logsRetentionDays",
        "databaseConfigs.configs.shared_preload_libraries",
        "retrieval.spec.logicalDump.options.source.connection.password",
    ] {
        assert!(
            run.stderr.contains(&format!("not carried over: {reported}: ")),
            "{reported} not reported:\n{}",
            run.stderr
        );
    }

    // The real engine takes the file as it is.
    let checked = Cmd::new(server_bin().await)
        .args(["--config", output.to_str().expect("a UTF-8 path"), "--check-config"])
        .env("NO_COLOR", "1")
        .env("PGPASSWORD", "from-the-environment")
        .output_any_status()
        .await
        .expect("run scion-server --check-config");
    assert!(checked.status.success(), "{}\n{toml}", checked.stderr_text());

    // A second import never overwrites the first.
    let again = scion_with_env(&args, &[]).await;
    again.expect_code(2);
    assert!(again.stderr.contains("scion.toml"), "{}", again.stderr);
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "server: [\n").expect("write a broken file");
    let run =
        scion_with_env(&["config", "import-dblab", broken.to_str().expect("UTF-8")], &[]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("not a YAML document"), "{}", run.stderr);
}
