//! Masking at snapshot time against a real source: personal data generated here (customers,
//! orders joined by id and by e-mail under foreign keys, a newsletter list joined by e-mail, a
//! unique column), retrieved with `[retrieval.masking]`; then no original value is left in the
//! target, joins and constraints hold, the keyed hash is the HMAC computed in Rust, two
//! refreshes agree, the key is in no file of the data directory, and the PII check and the
//! rules' validation refuse what they must.

use std::collections::{BTreeMap, BTreeSet};

use retrieval::masking::{KeyBlocks, MaskingConfig, Rule};
use retrieval::{DatabaseConfig, Error, RetrievalConfig, Stage, Target};
use test_support::files_holding;
use tokio_util::sync::CancellationToken;

use crate::support::{Inspect, Sandbox, SourceDb, live_config, pipeline};

const KEY: &str = "masking-test-secret-7f3a";
const CUSTOMERS: i64 = 400;

async fn personal_source(sandbox: &Sandbox) -> SourceDb {
    let source = SourceDb::start(sandbox, 16).await;
    source.sql("postgres", "CREATE DATABASE crm").await;
    source
        .sql(
            "crm",
            &format!(
                "CREATE TABLE customers (
                    id int PRIMARY KEY, email text NOT NULL UNIQUE, full_name text, phone text,
                    born date, card_number text, ssn text, notes text, vip boolean);
                 INSERT INTO customers
                 SELECT i, 'person' || i || '@corp-mail.test', 'Given' || i || ' Family' || i,
                        '+49 30 ' || (1000000 + i), date '1980-01-01' + i, '4111-0000-0000-' || lpad(i::text, 4, '0'),
                        'SSN-' || i, CASE WHEN i % 2 = 0 THEN 'call person' || i || '@corp-mail.test' END, i % 3 = 0
                 FROM generate_series(1, {CUSTOMERS}) AS i;
                 CREATE TABLE orders (
                    id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id),
                    customer_email text NOT NULL REFERENCES customers (email), amount numeric);
                 INSERT INTO orders SELECT o, 1 + o % {CUSTOMERS}, 'person' || (1 + o % {CUSTOMERS}) || '@corp-mail.test', o * 1.5
                 FROM generate_series(1, 1000) AS o;
                 CREATE TABLE newsletter (email text, subscribed date);
                 INSERT INTO newsletter SELECT 'person' || i || '@corp-mail.test', date '2020-01-01' + i
                 FROM generate_series(1, {CUSTOMERS}, 4) AS i;
                 CREATE TABLE logins (at timestamptz, client_ip text, message text);
                 INSERT INTO logins SELECT now(), '10.1.' || (i % 250) || '.' || (i % 200), 'ok'
                 FROM generate_series(1, 50) AS i;
                 -- A trigger that would fail an UPDATE: masking must not fire it.
                 CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION 'customers are read-only'; END $$;
                 CREATE TRIGGER customers_read_only BEFORE UPDATE ON customers
                   FOR EACH ROW EXECUTE FUNCTION refuse();"
            ),
        )
        .await;
    source
}

fn rules(entries: &[(&str, &str, Rule)]) -> BTreeMap<String, BTreeMap<String, Rule>> {
    let mut tables: BTreeMap<String, BTreeMap<String, Rule>> = BTreeMap::new();
    for (table, column, rule) in entries {
        tables.entry((*table).to_owned()).or_default().insert((*column).to_owned(), rule.clone());
    }
    tables
}

fn full_rules() -> BTreeMap<String, BTreeMap<String, Rule>> {
    rules(&[
        ("customers", "email", Rule::Email),
        ("customers", "full_name", Rule::Name),
        ("customers", "phone", Rule::Phone),
        ("customers", "born", Rule::DateShift { days: 30 }),
        ("customers", "card_number", Rule::Partial { first: 0, last: 4, mask: "*".into() }),
        ("customers", "ssn", Rule::Hash { length: None }),
        ("customers", "notes", Rule::Null),
        ("public.orders", "customer_email", Rule::Email),
        ("public.orders", "amount", Rule::Number { min: 1, max: 100 }),
        ("newsletter", "email", Rule::Email),
    ])
}

fn masked_config(
    sandbox: &Sandbox,
    source: &SourceDb,
    tables: BTreeMap<String, BTreeMap<String, Rule>>,
) -> RetrievalConfig {
    let key_file = sandbox.path().join("masking.key");
    std::fs::write(&key_file, format!("{KEY}\nignored second line\n")).unwrap();
    let mut config = live_config(sandbox, source, 16);
    config.databases.insert("crm".into(), DatabaseConfig::default());
    config.masking =
        Some(MaskingConfig { key_file: Some(key_file), tables, ..MaskingConfig::default() });
    config
}

async fn column(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client.query(sql, &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_refresh_leaves_no_original_value_and_keeps_joins_and_constraints() {
    let sandbox = Sandbox::new();
    let source = personal_source(&sandbox).await;
    let original = source.connect("crm").await;
    let originals: Vec<(i32, String, String, String, i32, String, String)> = original
        .query("SELECT id, email, full_name, phone, born - date '1970-01-01', card_number, ssn FROM customers ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6)))
        .collect();

    let config = masked_config(&sandbox, &source, full_rules());
    let summary =
        pipeline(config.clone()).run(&sandbox.target(), &CancellationToken::new()).await.unwrap();
    let masking = summary.masking.clone().unwrap();
    assert_eq!(masking.tables, 3);
    assert_eq!(masking.rows, 400 + 1000 + 100);
    assert!(summary.stages.iter().any(|timing| timing.stage == Stage::Masking));

    // The key and an original value are in no file of the data directory (not in dead rows,
    // WAL, a function body or a setting).
    let target = sandbox.target();
    assert!(!files_holding(&sandbox.path().join("source"), b"person17@corp-mail.test").is_empty());
    assert_eq!(files_holding(&target.data_dir, KEY.as_bytes()), Vec::<String>::new());
    assert_eq!(files_holding(&target.data_dir, b"person17@corp-mail.test"), Vec::<String>::new());

    let inspect = Inspect::start(&sandbox, &target, 16).await;
    let crm = inspect.connect("crm").await;
    let emails: BTreeSet<String> = originals.iter().map(|row| row.1.clone()).collect();
    for sql in [
        "SELECT email FROM customers",
        "SELECT customer_email FROM orders",
        "SELECT email FROM newsletter",
        "SELECT full_name FROM customers",
        "SELECT phone FROM customers",
        "SELECT ssn FROM customers",
        "SELECT card_number FROM customers",
    ] {
        let values = column(&crm, sql).await;
        assert!(!values.is_empty(), "{sql}");
        for value in values {
            assert!(!emails.contains(&value), "{sql}: original e-mail {value}");
            assert!(
                !originals.iter().any(|row| [&row.2, &row.3, &row.5, &row.6].contains(&&value)),
                "{sql}: original value {value}"
            );
        }
    }
    let row = crm
        .query_one(
            "SELECT (SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email AND c.id = o.customer_id),
                    (SELECT count(*) FROM newsletter n JOIN customers c ON c.email = n.email),
                    (SELECT count(DISTINCT email) FROM customers),
                    (SELECT count(*) FROM customers WHERE notes IS NOT NULL),
                    (SELECT count(*) FROM customers WHERE email NOT LIKE '%@example.___'),
                    (SELECT count(*) FROM customers WHERE phone NOT LIKE '+1-555-01__-____'),
                    (SELECT count(*) FROM orders WHERE amount NOT BETWEEN 1 AND 100 OR amount <> round(amount)),
                    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'),
                    (SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1000, "every order still joins its customer by id and e-mail");
    assert_eq!(row.get::<_, i64>(1), 100, "the newsletter joins customers by e-mail");
    assert_eq!(row.get::<_, i64>(2), CUSTOMERS, "the unique column stays unique");
    assert_eq!(row.get::<_, i64>(3), 0);
    assert_eq!(row.get::<_, i64>(4), 0);
    assert_eq!(row.get::<_, i64>(5), 0);
    assert_eq!(row.get::<_, i64>(6), 0);
    assert_eq!(row.get::<_, i64>(7), 1, "only the source's own function; masking leaves none");
    assert_eq!(row.get::<_, i64>(8), 0);
    // The constraints hold when checked again.
    crm.batch_execute(
        "ALTER TABLE orders DROP CONSTRAINT orders_customer_email_fkey, \
           ADD FOREIGN KEY (customer_email) REFERENCES customers (email); \
         REINDEX TABLE customers",
    )
    .await
    .unwrap();

    let key = KeyBlocks::from_secret(KEY.as_bytes());
    let masked: BTreeMap<i32, (String, i32, String)> = crm
        .query("SELECT id, ssn, born - date '1970-01-01', card_number FROM customers", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect();
    for (id, _, _, _, born, card, ssn) in &originals {
        let (masked_ssn, masked_born, masked_card) = &masked[id];
        let expected: String =
            key.digest("hash", ssn).iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(masked_ssn, &expected, "the SQL's HMAC is HMAC-SHA-256 under the derived key");
        assert!((masked_born - born).abs() <= 30, "day {born} → {masked_born}");
        assert_eq!(masked_card.len(), card.len());
        assert!(masked_card.starts_with("***") && masked_card.ends_with(&card[card.len() - 4..]));
    }
    let first: Vec<String> = column(&crm, "SELECT email FROM customers ORDER BY id").await;
    drop(crm);
    inspect.stop().await;

    // A second refresh with the same key gives the same values.
    let again = Target::new(sandbox.path().join("target2"), sandbox.path().join("run2"));
    pipeline(config).run(&again, &CancellationToken::new()).await.unwrap();
    let inspect = Inspect::start(&sandbox, &again, 16).await;
    let second =
        column(&inspect.connect("crm").await, "SELECT email FROM customers ORDER BY id").await;
    assert_eq!(first, second);
    inspect.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_pii_and_bad_rules_are_refused_before_any_rewrite() {
    let sandbox = Sandbox::new();
    let source = personal_source(&sandbox).await;

    // The PII check: the unruled columns are named, the ruled ones are not.
    let mut config = masked_config(
        &sandbox,
        &source,
        rules(&[
            ("customers", "email", Rule::Email),
            ("orders", "customer_email", Rule::Email),
            ("customers", "ssn", Rule::Keep),
        ]),
    );
    if let Some(masking) = config.masking.as_mut() {
        masking.refuse_unmasked_pii = true;
    }
    let error =
        pipeline(config).run(&sandbox.target(), &CancellationToken::new()).await.unwrap_err();
    let Error::UnmaskedPii { columns } = &error else { panic!("{error}") };
    let flagged: Vec<&str> =
        columns.iter().map(|line| line.split(" looks like").next().unwrap()).collect();
    assert_eq!(
        flagged,
        [
            "crm: public.customers.full_name",
            "crm: public.customers.phone",
            "crm: public.customers.born",
            "crm: public.customers.card_number",
            "crm: public.customers.notes",
            "crm: public.logins.client_ip",
            "crm: public.newsletter.email",
        ],
        "{columns:#?}"
    );
    assert!(columns[4].contains("text_with_email"), "{}", columns[4]);
    assert_eq!(error.kind(), "unmasked_pii");

    // The rules against the catalog: every problem at once.
    let config = masked_config(
        &sandbox,
        &source,
        rules(&[
            ("invoices", "email", Rule::Email),
            ("customers", "mail", Rule::Email),
            ("customers", "email", Rule::Constant { value: "x@example.com".into() }),
            ("customers", "born", Rule::Phone),
            ("orders", "customer_email", Rule::Hash { length: None }),
        ]),
    );
    let target = Target::new(sandbox.path().join("target2"), sandbox.path().join("run2"));
    let error = pipeline(config).run(&target, &CancellationToken::new()).await.unwrap_err();
    let Error::InvalidConfig { problems } = &error else { panic!("{error}") };
    for expected in [
        "no masked database has a table public.invoices",
        "table public.customers has no column \"mail\"",
        "the constant rule would make values of unique index customers_email_key collide",
        "the phone rule needs a text column, and this one is date",
        "foreign key orders_customer_email_fkey joins it to public.customers.email, whose rule is constant where this one is hash",
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(expected)),
            "{problems:#?} lacks {expected}"
        );
    }
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inheritance_tree_is_masked_through_its_parent_and_compacted_whole() {
    let sandbox = Sandbox::new();
    let source = SourceDb::start(&sandbox, 16).await;
    source.sql("postgres", "CREATE DATABASE crm").await;
    source
        .sql(
            "crm",
            "CREATE TABLE contacts (id int, email text);
             CREATE TABLE contacts_2025 () INHERITS (contacts);
             INSERT INTO contacts SELECT i, 'old' || i || '@corp-mail.test' FROM generate_series(1, 100) i;
             INSERT INTO contacts_2025 SELECT i, 'new' || i || '@corp-mail.test' FROM generate_series(101, 150) i;",
        )
        .await;
    let config = masked_config(&sandbox, &source, rules(&[("contacts", "email", Rule::Email)]));
    let summary = pipeline(config).run(&sandbox.target(), &CancellationToken::new()).await.unwrap();
    let masking = summary.masking.unwrap();
    assert_eq!(
        (masking.tables, masking.rows),
        (1, 150),
        "the parent's UPDATE takes the child's rows"
    );
    let target = sandbox.target();
    for original in [&b"old17@corp-mail.test"[..], b"new117@corp-mail.test"] {
        assert_eq!(files_holding(&target.data_dir, original), Vec::<String>::new());
    }
    let inspect = Inspect::start(&sandbox, &target, 16).await;
    let crm = inspect.connect("crm").await;
    let row = crm
        .query_one(
            "SELECT (SELECT count(*) FROM contacts WHERE email LIKE '%@example.___'),
                    (SELECT count(*) FROM ONLY contacts_2025 WHERE email LIKE '%@example.___')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (150, 50));
    drop(crm);
    inspect.stop().await;
    source.stop().await;
}
