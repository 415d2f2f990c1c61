//! ICU on every major: the installed servers create ICU collations and (15 and later) databases
//! whose locale provider is ICU, and sort with them, and load the contrib extensions sources
//! commonly use, and list the extensions [`postgres::PgBinaries::available_extensions`] finds;
//! the build without ICU that setup keeps is recognised as such and refuses the same collation.

use std::time::Duration;

use postgres::{BinarySearch, Instance, PgMajor, RoleKind, StopMode};

use crate::support::{STEP, Sandbox, binaries, per_major};

/// Under ICU's root collation case is a tie-breaker (`a A b B`); under `C` bytes decide.
const WORDS: &[&str] = &["b", "B", "a", "A"];
const ICU_ORDER: &[&str] = &["a", "A", "b", "B"];
const C_ORDER: &[&str] = &["A", "B", "a", "b"];

async fn connect(port: u16, dbname: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("icu_tester")
        .password("icu secret")
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn sorted(client: &tokio_postgres::Client, collate: &str) -> Vec<String> {
    let query = format!(
        "SELECT w FROM unnest($1::text[]) AS w ORDER BY w {collate}",
        collate = if collate.is_empty() { String::new() } else { format!("COLLATE {collate}") }
    );
    let words: Vec<String> = WORDS.iter().map(|word| (*word).to_owned()).collect();
    client.query(&query, &[&words]).await.unwrap().iter().map(|row| row.get(0)).collect()
}

async fn icu_collations_databases_and_contrib(major: PgMajor) {
    let found = binaries(major);
    assert!(found.supports_icu().unwrap(), "{} has no ICU", found.postgres().display());
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let port = spec.settings.port;
    let mut instance = Instance::start(&found, spec).await.unwrap();
    let admin = instance.admin().await.unwrap();
    admin.create_or_replace_role("icu_tester", "icu secret", RoleKind::Superuser).await.unwrap();
    let client = connect(port, "postgres").await;
    // The extension directory found beside the binary is the one the server reads.
    let rows = client.query("SELECT name FROM pg_available_extensions", &[]).await.unwrap();
    let served: std::collections::BTreeSet<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(found.available_extensions().unwrap(), served);
    client
        .batch_execute("CREATE COLLATION root_icu (provider = icu, locale = 'und')")
        .await
        .unwrap();
    assert_eq!(sorted(&client, "root_icu").await, ICU_ORDER);
    assert_eq!(sorted(&client, "\"C\"").await, C_ORDER);
    // The collations initdb imports from ICU are there too.
    let imported: i64 = client
        .query_one("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(imported, 1);
    // The server's own contrib modules, beside it in the same directory.
    client
        .batch_execute(
            "CREATE EXTENSION hstore; CREATE EXTENSION pg_trgm; CREATE EXTENSION citext; \
             CREATE EXTENSION pgcrypto",
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT ('a=>1'::hstore -> 'a'), similarity('word', 'words') > 0.5, \
             'ABC'::citext = 'abc'::citext, encode(digest('x', 'sha256'), 'hex')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1");
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
    assert_eq!(
        row.get::<_, String>(3),
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    );
    if major.number() >= 15 {
        client
            .batch_execute(
                "CREATE DATABASE icu_db TEMPLATE template0 ENCODING 'UTF8' \
                 LOCALE_PROVIDER icu ICU_LOCALE 'und'",
            )
            .await
            .unwrap();
        let provider: i8 = client
            .query_one("SELECT datlocprovider FROM pg_database WHERE datname = 'icu_db'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(provider as u8, b'i');
        let icu_db = connect(port, "icu_db").await;
        assert_eq!(sorted(&icu_db, "").await, ICU_ORDER, "the database's default collation");
    }
    drop(client);
    drop(admin);
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(icu_collations_databases_and_contrib);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_without_icu_is_recognised_and_refuses_icu() {
    let (number, bin_dir) = test_support::non_icu_bin_dir();
    let major = PgMajor::new(number).unwrap();
    let search = BinarySearch { bin_dirs: vec![(major, bin_dir.clone())], roots: Vec::new() };
    let found = search.locate(major).unwrap();
    assert_eq!(found.bin_dir(), bin_dir);
    assert!(!found.supports_icu().unwrap());

    let sandbox = Sandbox::new();
    let spec = sandbox.spec("data");
    let mut options = postgres::InitDbOptions::new(crate::support::ADMIN);
    options.sync = false;
    postgres::initdb(&found, &spec.data_dir, &spec.user, &options).await.unwrap();
    let mut instance = Instance::start(&found, spec).await.unwrap();
    let admin = instance.admin().await.unwrap();
    let error = admin
        .client()
        .batch_execute("CREATE COLLATION root_icu (provider = icu, locale = 'und')")
        .await
        .unwrap_err();
    let message = error.as_db_error().map(|db| db.message().to_owned()).unwrap_or_default();
    assert!(message.contains("ICU is not supported"), "{error:?}");
    drop(admin);
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
