//! Applying the masking rules to a running target: read each database's catalog, check the
//! rules against it, refuse unmasked PII when asked, then rewrite each group of tables joined
//! by foreign keys set-based (copied masked into temporary tables, truncated together, written
//! back; triggers and foreign-key checks off for the session), groups in parallel over admin
//! sessions (a table of an inheritance tree by `UPDATE`, compacted afterwards); last, the WAL
//! that held the original values is switched away and removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::catalog::{
    Catalog, CatalogColumn, ForeignKey, UniqueIndex, rewrite_groups, validate_rules,
};
use super::pii::{ColumnSample, Finding, detect};
use super::sql::{ColumnRule, KeyBlocks, Rewrite, rewrite, update_statement};
use super::{CheckReport, MaskingConfig, Rule, TableName, read_key};
use crate::error::{Error, Result};
use crate::progress::Stage;
use crate::target::{Target, target_error};

/// What masking did, kept with the run's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskingRun {
    /// Tables rewritten, all databases.
    pub tables: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// How long masking took, compaction included.
    pub duration: Duration,
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// The server's own message (a unique violation, a bad cast): what the user must see.
fn detail(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(
        || error.to_string(),
        |db| match db.detail() {
            Some(detail) => format!("{}: {detail}", db.message()),
            None => db.message().to_owned(),
        },
    )
}

fn failed(error: &tokio_postgres::Error) -> Error {
    Error::Failed { stage: Stage::Masking, stderr_tail: detail(error) }
}

async fn connect(target: &Target, database: &str) -> Result<postgres::Admin> {
    postgres::Admin::connect(&target.socket_dir(), target.port, &target.admin_role, database)
        .await
        .map_err(|error| target_error(Stage::Masking, &error))
}

/// The databases masking covers: the configured ones (each must exist), else all but
/// templates.
async fn databases(config: &MaskingConfig, target: &Target) -> Result<Vec<String>> {
    let admin = connect(target, "template1").await?;
    let rows = admin
        .client()
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .map_err(|error| failed(&error))?;
    let present: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    if config.databases.is_empty() {
        return Ok(present);
    }
    let missing: Vec<String> = config
        .databases
        .iter()
        .filter(|name| !present.contains(name))
        .map(|name| format!("masking.databases: the target has no database {name:?}"))
        .collect();
    if missing.is_empty() {
        Ok(config.databases.clone())
    } else {
        Err(Error::InvalidConfig { problems: missing })
    }
}

fn table_of(row: &tokio_postgres::Row, schema: usize, table: usize) -> TableName {
    TableName { schema: row.get(schema), table: row.get(table) }
}

/// What the catalog says about the database's user tables (partitions are their parent's).
async fn read_catalog(client: &Client) -> Result<Catalog> {
    let columns = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                        pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory::text, \
                        a.attnotnull, a.attgenerated <> '' \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 \
                   AND NOT a.attisdropped AND {USER_SCHEMAS} \
                 ORDER BY 1, 2, a.attnum"
            ),
            &[],
        )
        .await
        .map_err(|error| failed(&error))?;
    let unique = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, i.relname::text, \
                        ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                              JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
                              ORDER BY k.ord), \
                        coalesce((pg_catalog.to_jsonb(x) ->> 'indnullsnotdistinct')::bool, false) \
                 FROM pg_catalog.pg_index x \
                 JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
                 JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE x.indisunique AND NOT c.relispartition AND {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(|error| failed(&error))?;
    let keys = client
        .query(
            "SELECT con.conname::text, n.nspname::text, c.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord), \
                    fn.nspname::text, f.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) \
             FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_class f ON f.oid = con.confrelid \
             JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace \
             WHERE con.contype = 'f' AND con.conparentid = 0",
            &[],
        )
        .await
        .map_err(|error| failed(&error))?;
    // Inheritance that is not partitioning: a parent's SELECT and TRUNCATE take its children.
    let inherited = client
        .query(
            "SELECT pn.nspname::text, p.relname::text, cn.nspname::text, c.relname::text \
             FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
             JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
             JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
             WHERE NOT c.relispartition",
            &[],
        )
        .await
        .map_err(|error| failed(&error))?;
    Ok(Catalog {
        inheritance: inherited
            .iter()
            .map(|row| (table_of(row, 0, 1), table_of(row, 2, 3)))
            .collect(),
        columns: columns
            .iter()
            .map(|row| CatalogColumn {
                table: table_of(row, 0, 1),
                column: row.get(2),
                sql_type: row.get(3),
                category: row.get::<_, String>(4).chars().next().unwrap_or('X'),
                not_null: row.get(5),
                generated: row.get(6),
            })
            .collect(),
        unique: unique
            .iter()
            .map(|row| UniqueIndex {
                table: table_of(row, 0, 1),
                name: row.get(2),
                columns: row.get(3),
                nulls_not_distinct: row.get(4),
            })
            .collect(),
        foreign_keys: keys
            .iter()
            .map(|row| ForeignKey {
                name: row.get(0),
                table: table_of(row, 1, 2),
                columns: row.get(3),
                referenced_table: table_of(row, 4, 5),
                referenced_columns: row.get(6),
            })
            .collect(),
    })
}

/// The columns of `catalog` without a rule that look personal, from their names and up to
/// `sample_rows` rows of each table.
pub(crate) async fn unmasked_pii(
    client: &Client,
    database: &str,
    catalog: &Catalog,
    rules: &BTreeMap<TableName, BTreeMap<String, Rule>>,
    sample_rows: u32,
) -> Result<Vec<Finding>> {
    let mut by_table: BTreeMap<&TableName, Vec<&CatalogColumn>> = BTreeMap::new();
    for column in &catalog.columns {
        let ruled =
            rules.get(&column.table).is_some_and(|columns| columns.contains_key(&column.column));
        // Booleans hold no personal data, whatever their names say (`email_verified`).
        if !ruled && column.category != 'B' {
            by_table.entry(&column.table).or_default().push(column);
        }
    }
    let mut findings = Vec::new();
    for (table, columns) in by_table {
        // Values are sampled from text and network columns; others are judged by name.
        let sampled: Vec<&CatalogColumn> =
            columns.iter().copied().filter(|column| matches!(column.category, 'S' | 'I')).collect();
        let mut values: Vec<Vec<String>> = vec![Vec::new(); sampled.len()];
        if !sampled.is_empty() {
            let list: Vec<String> = sampled
                .iter()
                .map(|column| format!("{}::text", postgres::sql::quote_ident(&column.column)))
                .collect();
            let rows = client
                .query(
                    &format!(
                        "SELECT {} FROM {} LIMIT {sample_rows}",
                        list.join(", "),
                        table.quoted()
                    ),
                    &[],
                )
                .await
                .map_err(|error| failed(&error))?;
            for row in &rows {
                for (index, slot) in values.iter_mut().enumerate() {
                    if let Some(value) = row.get::<_, Option<String>>(index) {
                        slot.push(value);
                    }
                }
            }
        }
        for column in columns {
            let index = sampled.iter().position(|found| found.column == column.column);
            let sample = ColumnSample {
                table: table.clone(),
                column: column.column.clone(),
                sql_type: column.sql_type.clone(),
                values: index.map(|index| std::mem::take(&mut values[index])).unwrap_or_default(),
            };
            if let Some((kind, reason)) = detect(&sample) {
                findings.push(Finding {
                    database: database.to_owned(),
                    schema: table.schema.clone(),
                    table: table.table.clone(),
                    column: column.column.clone(),
                    kind,
                    reason,
                });
            }
        }
    }
    Ok(findings)
}

/// One job of the rewrite, on its own admin session: a group of tables rewritten together, or
/// one table updated in place.
struct TableJob {
    database: String,
    /// The masked tables (for messages, compaction and statistics).
    tables: Vec<TableName>,
    work: Work,
}

impl TableJob {
    /// The tables whose rows changed: the masked ones, and an updated parent's descendants.
    fn changed(&self) -> &[TableName] {
        match &self.work {
            Work::Update { compact, .. } => compact,
            Work::Rewrite(_) => &self.tables,
        }
    }
}

/// How a job rewrites its tables.
enum Work {
    /// Set-based: every table of the group copied (masked ones masked) into a temporary table,
    /// the group truncated in one command, the rows written back, in one transaction. The
    /// tables get new files and freshly built indexes: no dead row keeps an original value, so
    /// no compaction is needed, and no index is updated row by row. Each part is the table and
    /// whether it is masked.
    Rewrite(Vec<(TableName, bool, Rewrite)>),
    /// One `UPDATE` of a table of an inheritance tree (its children's rows included), binding
    /// the key when `keyed`; `compact` are the table and its descendants, whose dead rows
    /// `VACUUM FULL` removes (it does not recurse into inheritance children).
    Update { statement: String, keyed: bool, compact: Vec<TableName> },
}

/// The jobs that mask `database`: a set-based rewrite per group of tables joined by foreign
/// keys, an `UPDATE` per masked table of an inheritance tree.
fn table_jobs(
    database: &str,
    rules: &BTreeMap<TableName, BTreeMap<String, Rule>>,
    catalog: &Catalog,
) -> Vec<TableJob> {
    let keep = Rule::Keep;
    let column_rules = |table: &TableName| -> Vec<ColumnRule<'_>> {
        let ruled = rules.get(table);
        catalog
            .columns
            .iter()
            .filter(|column| column.table == *table && !column.generated)
            .map(|column| ColumnRule {
                column: &column.column,
                sql_type: &column.sql_type,
                rule: ruled.and_then(|columns| columns.get(&column.column)).unwrap_or(&keep),
            })
            .collect()
    };
    // Tables with at least one rule that changes data.
    let masked: BTreeSet<TableName> = rules
        .iter()
        .filter(|(table, columns)| {
            catalog.has_table(table)
                && columns.iter().any(|(column, rule)| {
                    *rule != Rule::Keep && catalog.column(table, column).is_some()
                })
        })
        .map(|(table, _)| table.clone())
        .collect();
    let mut jobs = Vec::new();
    for (group, plain) in rewrite_groups(&masked, catalog) {
        let tables: Vec<TableName> = group.iter().filter(|t| masked.contains(t)).cloned().collect();
        if plain {
            let parts = group
                .iter()
                .enumerate()
                .map(|(index, table)| {
                    let temp = format!("scion_mask_{index}");
                    let rewrite = rewrite(&table.quoted(), &temp, &column_rules(table));
                    (table.clone(), masked.contains(table), rewrite)
                })
                .collect();
            jobs.push(TableJob {
                database: database.to_owned(),
                tables,
                work: Work::Rewrite(parts),
            });
            continue;
        }
        for table in tables {
            if let Some((statement, keyed)) =
                update_statement(&table.quoted(), &column_rules(&table))
            {
                let compact = catalog.with_descendants(&table);
                jobs.push(TableJob {
                    database: database.to_owned(),
                    tables: vec![table],
                    work: Work::Update { statement, keyed, compact },
                });
            }
        }
    }
    jobs
}

/// What reading the masked databases found: the rules' problems, the unruled personal-looking
/// columns (when looked for), and each table's rewrite.
struct Inspection {
    databases: Vec<String>,
    problems: Vec<String>,
    findings: Vec<Finding>,
    jobs: Vec<TableJob>,
}

/// Reads each masked database's catalog, checks the rules against it, runs the PII check when
/// `pii`, and builds each ruled table's `UPDATE`. Changes nothing.
async fn inspect(config: &MaskingConfig, target: &Target, pii: bool) -> Result<Inspection> {
    let rules = config.rules();
    let mut problems = Vec::new();
    let mut found_anywhere: Vec<TableName> = Vec::new();
    let mut findings = Vec::new();
    let mut jobs = Vec::new();
    let databases = databases(config, target).await?;
    for database in &databases {
        let admin = connect(target, database).await?;
        let catalog = read_catalog(admin.client()).await?;
        let (mut found, missing) = validate_rules(&rules, &catalog, database);
        problems.append(&mut found);
        found_anywhere.extend(rules.keys().filter(|table| !missing.contains(table)).cloned());
        if pii {
            findings.extend(
                unmasked_pii(admin.client(), database, &catalog, &rules, config.sample_rows)
                    .await?,
            );
        }
        jobs.extend(table_jobs(database, &rules, &catalog));
    }
    for table in rules.keys().filter(|table| !found_anywhere.contains(table)) {
        problems
            .push(format!("masking.tables.\"{table}\": no masked database has a table {table}"));
    }
    Ok(Inspection { databases, problems, findings, jobs })
}

/// The PII check and the rules' validation on a running server, changing nothing: what
/// `scion masking check` reports.
pub(crate) async fn check_target(config: &MaskingConfig, target: &Target) -> Result<CheckReport> {
    let Inspection { databases, problems, findings, .. } = inspect(config, target, true).await?;
    Ok(CheckReport { databases, findings, problems })
}

/// The refusal of what the rules' validation and the PII check found, if anything.
fn refusal(problems: Vec<String>, findings: &[Finding]) -> Result<()> {
    if !problems.is_empty() {
        return Err(Error::InvalidConfig { problems });
    }
    if !findings.is_empty() {
        return Err(Error::UnmaskedPii {
            columns: findings.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(())
}

/// Refuses what masking would refuse (invalid rules, unmasked PII when configured) without
/// rewriting anything: a refresh that keeps its data unmasked checks this before its unmasked
/// snapshot is recorded, and masks a copy of it afterwards.
pub(crate) async fn refuse_target(config: &MaskingConfig, target: &Target) -> Result<()> {
    let Inspection { problems, findings, .. } =
        inspect(config, target, config.refuse_unmasked_pii).await?;
    refusal(problems, &findings)
}

/// Checks the rules against every masked database, refuses unmasked PII when configured, and
/// applies the rules. `None` when there was nothing to rewrite.
pub(crate) async fn mask_target(
    config: &MaskingConfig,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Option<MaskingRun>> {
    mask_with(config, target, false, cancel).await
}

/// [`mask_target`] on data analyzed before masking (a copy of a kept unmasked snapshot): the
/// masked tables are analyzed again and the statistics catalogs rewritten, so that no
/// statistic (most common values, histogram bounds) keeps an original value.
pub(crate) async fn mask_analyzed(
    config: &MaskingConfig,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Option<MaskingRun>> {
    mask_with(config, target, true, cancel).await
}

async fn mask_with(
    config: &MaskingConfig,
    target: &Target,
    analyzed: bool,
    cancel: &CancellationToken,
) -> Result<Option<MaskingRun>> {
    let started = Instant::now();
    let key = match &config.key_file {
        Some(path) => Some(KeyBlocks::from_secret(&read_key(path)?)),
        None => None,
    };
    let Inspection { problems, findings, jobs, .. } =
        inspect(config, target, config.refuse_unmasked_pii).await?;
    refusal(problems, &findings)?;
    if jobs.is_empty() {
        return Ok(None);
    }
    let tables = jobs.iter().map(|job| job.tables.len() as u64).sum();
    let jobs = Arc::new(jobs);
    let rows = apply(config, target, key, &jobs, Pass::Update, cancel).await?;
    if config.compact {
        // Only once every UPDATE has committed: a VACUUM FULL beside a running UPDATE would
        // keep the rows that UPDATE's snapshot still sees, original values included.
        apply(config, target, None, &jobs, Pass::Compact, cancel).await?;
    }
    if analyzed {
        reanalyze(target, &jobs).await?;
    }
    // The restore's WAL holds the original values: move to a new segment and checkpoint, so
    // the old segments are removed (the target runs with wal_recycle off while masking).
    let admin = connect(target, "template1").await?;
    for statement in [
        "SELECT pg_catalog.pg_switch_wal()",
        "CHECKPOINT",
        "SELECT pg_catalog.pg_switch_wal()",
        "CHECKPOINT",
    ] {
        admin.client().batch_execute(statement).await.map_err(|error| failed(&error))?;
    }
    let run = MaskingRun { tables, rows, duration: started.elapsed() };
    info!(tables = run.tables, rows = run.rows, seconds = run.duration.as_secs_f64(), "masked");
    Ok(Some(run))
}

/// Analyzes the masked tables again and rewrites the statistics catalogs, whose dead rows
/// would still hold the statistics of the original values.
async fn reanalyze(target: &Target, jobs: &[TableJob]) -> Result<()> {
    let mut by_database: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for job in jobs {
        by_database
            .entry(&job.database)
            .or_default()
            .extend(job.changed().iter().map(TableName::quoted));
    }
    for (database, tables) in by_database {
        let admin = connect(target, database).await?;
        for statement in [
            format!("ANALYZE {}", tables.join(", ")),
            "VACUUM FULL pg_catalog.pg_statistic, pg_catalog.pg_statistic_ext_data".to_owned(),
        ] {
            admin.client().batch_execute(&statement).await.map_err(|error| failed(&error))?;
        }
    }
    Ok(())
}

/// One pass over the tables: their `UPDATE`s, or their compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Update,
    Compact,
}

/// Runs `statement`, binding the key blocks when it is `keyed`.
async fn execute(
    client: &Client,
    statement: &str,
    keyed: bool,
    key: Option<&KeyBlocks>,
) -> std::result::Result<u64, tokio_postgres::Error> {
    match (keyed, key) {
        (true, Some(key)) => client.execute(statement, &[&key.inner, &key.outer]).await,
        // `apply` refused keyed work without a key before any began.
        _ => client.execute(statement, &[]).await,
    }
}

/// A group's set-based rewrite, in one transaction: each table copied (masked) into its
/// temporary table, the group truncated in one command (a referenced table goes only with the
/// tables that reference it), the rows written back; the rows of the masked tables.
async fn rewrite_group(
    client: &Client,
    parts: &[(TableName, bool, Rewrite)],
    key: Option<&KeyBlocks>,
) -> std::result::Result<u64, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let mut rows = 0;
    for (_, masked, part) in parts {
        client.batch_execute(&part.create).await?;
        let copied = execute(client, &part.fill, part.keyed, key).await?;
        if *masked {
            rows += copied;
        }
    }
    let tables: Vec<String> = parts.iter().map(|(table, _, _)| table.quoted()).collect();
    client.batch_execute(&format!("TRUNCATE {}", tables.join(", "))).await?;
    for (_, _, part) in parts {
        client.batch_execute(&part.refill).await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(rows)
}

/// Runs `pass` on every table, `parallel_tables` at once; the rows updated.
async fn apply(
    config: &MaskingConfig,
    target: &Target,
    key: Option<KeyBlocks>,
    jobs: &Arc<Vec<TableJob>>,
    pass: Pass,
    cancel: &CancellationToken,
) -> Result<u64> {
    let keyed = |job: &TableJob| match &job.work {
        Work::Update { keyed, .. } => *keyed,
        Work::Rewrite(parts) => parts.iter().any(|(_, _, part)| part.keyed),
    };
    if pass == Pass::Update && key.is_none() && jobs.iter().any(keyed) {
        return Err(Error::invalid("masking.key_file is required by a keyed rule"));
    }
    let permits =
        Arc::new(Semaphore::new(usize::try_from(config.parallel_tables).unwrap_or(1).max(1)));
    let key = Arc::new(key);
    let mut tasks = JoinSet::new();
    for index in 0..jobs.len() {
        let (permits, key, target, cancel, jobs) =
            (permits.clone(), key.clone(), target.clone(), cancel.clone(), jobs.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if cancel.is_cancelled() {
                return Err(Error::Cancelled { stage: Stage::Masking });
            }
            let job = &jobs[index];
            let names =
                job.tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let admin = connect(&target, &job.database).await?;
            let client = admin.client();
            let started = Instant::now();
            if pass == Pass::Compact {
                // A set-based rewrite leaves no dead row; an UPDATE does.
                let Work::Update { .. } = &job.work else { return Ok(0) };
                for table in job.changed() {
                    client
                        .batch_execute(&format!("VACUUM FULL {}", table.quoted()))
                        .await
                        .map_err(|error| failed(&error))?;
                }
                info!(database = %job.database, tables = %names, seconds = started.elapsed().as_secs_f64(), "masked table compacted");
                return Ok(0);
            }
            // Triggers and foreign-key checks stay off: both sides of a key get the same
            // rule, and a user's trigger must not see (or log) the rewrite.
            client
                .batch_execute("SET session_replication_role = replica")
                .await
                .map_err(|error| failed(&error))?;
            let key = key.as_ref().as_ref();
            let rows = match &job.work {
                Work::Update { statement, keyed, .. } => {
                    execute(client, statement, *keyed, key).await
                }
                Work::Rewrite(parts) => rewrite_group(client, parts, key).await,
            }
            .map_err(|error| Error::Failed {
                stage: Stage::Masking,
                stderr_tail: format!(
                    "masking {names} in database {}: {}",
                    job.database,
                    detail(&error)
                ),
            })?;
            info!(database = %job.database, tables = %names, rows, seconds = started.elapsed().as_secs_f64(), "tables masked");
            Ok(rows)
        });
    }
    let mut total = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(rows)) => total += rows,
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(error) => {
                first_error.get_or_insert(Error::Failed {
                    stage: Stage::Masking,
                    stderr_tail: error.to_string(),
                });
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}
