//! `scion masking check` against a real server whose refresh masked a real source: the unruled
//! personal columns as a table and as JSON, and exit 1 when anything is found.

use crate::support::SourceCluster;
use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_check_lists_unruled_personal_columns_and_fails() {
    let source = SourceCluster::start(
        "CREATE TABLE customers (id int PRIMARY KEY, email text, phone text, note text); \
         INSERT INTO customers SELECT g, 'buyer' || g || '@corp-mail.test', \
           '+49 30 ' || (1000000 + g), 'fine' FROM generate_series(1, 20) g;",
    )
    .await;
    let masking = "[retrieval.masking]\ndatabases = [\"shop\"]\n\
                   [retrieval.masking.tables.customers]\nemail = { rule = \"null\" }\n";
    let server = TestServer::start(&format!("{}{masking}", source.config())).await;
    server.wait_refresh().await;

    let run = server.scion(&["masking", "check"]).await;
    run.expect_code(1);
    let snapshot = server.raw("/snapshots").await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        run.stdout,
        format!(
            "Checked  {snapshot} (masked)\n\n\
             DATABASE  SCHEMA  TABLE      COLUMN  LOOKS LIKE  WHY\n\
             shop      public  customers  phone   phone       its name (phone)\n"
        )
    );
    assert!(
        run.stderr.contains("1 personal-looking column without a masking rule, 0 rule problems"),
        "{}",
        run.stderr
    );

    let json = server.scion(&["masking", "check", "--json"]).await;
    json.expect_code(1);
    let check: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(check["snapshotID"], snapshot.as_str());
    assert_eq!(check["columns"][0]["column"], "phone", "{check}");
    assert_eq!(check["columns"].as_array().map(Vec::len), Some(1), "{check}");
    assert_eq!(check["problems"], serde_json::json!([]), "{check}");
    source.stop().await;
}
