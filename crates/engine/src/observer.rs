//! The observer: what an observation session reads from a clone's server, through an admin
//! session the `servers` component opens, and from the clone's log. It never sees the store or
//! the engine's state: it is given a session and a directory and returns what it read.
//!
//! Dangerous locks are DBLab's: an `AccessExclusiveLock` on a relation, granted to a client
//! session whose transaction has lasted longer than `max_lock_duration`. The transaction's age
//! bounds how long it has held the lock, and Postgres records no grant time, so this is the
//! measure DBLab's observer also uses (with the statement's start). Each artifact is a JSON
//! array of rows, as DBLab writes them; relations another session holds locked exclusively are
//! left out of size queries, which would wait for the lock.

use std::path::Path;

use api_types::{ObjectsStat, SummaryLogErrors};
use postgres::{Admin, ENGINE_APPLICATION_NAME};
use tracing::warn;

use crate::error::{Error, Result};

/// How long a statistics query may wait for a lock or run before its artifact is skipped.
const STATEMENT_LIMITS: &str = "SET lock_timeout = '5s'; SET statement_timeout = '60s'";

/// The dangerous locks held now, one JSON row per line; empty when there are none.
pub(crate) async fn dangerous_locks(admin: &Admin, max_lock_duration: u64) -> Result<String> {
    let rows = admin
        .client()
        .query(
            "SELECT row_to_json(t)::text FROM (
               SELECT a.pid, a.usename, a.application_name, a.datname, l.relation::regclass::text
                        AS relation, l.mode, a.state, a.query,
                      round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 3)
                        AS xact_duration_seconds
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND a.pid <> pg_backend_pid()
                  AND a.application_name IS DISTINCT FROM $1
                  AND a.xact_start IS NOT NULL
                  AND clock_timestamp() - a.xact_start > $2::float8 * interval '1 second'
                ORDER BY a.pid, relation) t",
            &[&ENGINE_APPLICATION_NAME, &(max_lock_duration as f64)],
        )
        .await
        .map_err(sql("read dangerous locks"))?;
    let mut warning = String::new();
    for row in rows {
        warning.push_str(row.get::<_, &str>(0));
        warning.push('\n');
    }
    Ok(warning)
}

/// Whether `pg_stat_statements` can be read: the extension is available and preloaded.
async fn statements_available(admin: &Admin) -> Result<bool> {
    let row = admin
        .client()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')
                    AND current_setting('shared_preload_libraries') ~ 'pg_stat_statements'",
            &[],
        )
        .await
        .map_err(sql("look for pg_stat_statements"))?;
    Ok(row.get(0))
}

/// Prepares a session's start: `pg_stat_statements` created where it can work, statistics
/// counters reset; returns the database's size.
pub(crate) async fn begin(admin: &Admin) -> Result<i64> {
    if statements_available(admin).await? {
        admin
            .client()
            .batch_execute(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
                 SELECT pg_stat_statements_reset();",
            )
            .await
            .map_err(sql("reset pg_stat_statements"))?;
    }
    admin
        .client()
        .batch_execute("SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('bgwriter');")
        .await
        .map_err(sql("reset statistics"))?;
    database_size(admin).await
}

async fn database_size(admin: &Admin) -> Result<i64> {
    let row = admin
        .client()
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(sql("read the database size"))?;
    Ok(row.get(0))
}

/// Tables no other session holds locked exclusively (size functions would wait for them).
const UNLOCKED: &str = "NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = c.oid
    AND l.mode = 'AccessExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid())";

/// The artifacts: each type with the query whose rows it holds.
fn artifact_queries(with_statements: bool) -> Vec<(&'static str, String)> {
    let mut queries: Vec<(&'static str, String)> = Vec::new();
    if with_statements {
        queries.push(("pg_stat_statements", "SELECT * FROM pg_stat_statements(true)".to_owned()));
    }
    let tables = format!(
        "SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS table_full_name,
                pg_relation_size(s.relid) AS table_size_b,
                pg_total_relation_size(s.relid) AS total_relation_size_b,
                coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_size_b,
                s.seq_scan, s.seq_tup_read, s.idx_scan, s.idx_tup_fetch, s.n_tup_ins, s.n_tup_upd,
                s.n_tup_del, s.n_tup_hot_upd, s.n_live_tup, s.n_dead_tup, s.vacuum_count,
                s.autovacuum_count, s.analyze_count, s.autoanalyze_count
           FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
          WHERE {UNLOCKED}"
    );
    let objects = format!(
        "SELECT n.nspname AS schema_name, c.relname AS table_name,
                greatest(c.reltuples, 0)::int8 AS row_estimate,
                pg_total_relation_size(c.oid) AS total_size_bytes,
                pg_total_relation_size(c.oid) - pg_indexes_size(c.oid)
                  - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
                  AS table_size_bytes,
                pg_indexes_size(c.oid) AS indexes_size_bytes,
                coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_size_bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname NOT IN ('information_schema', 'pg_catalog')
            AND {UNLOCKED}
          ORDER BY total_size_bytes DESC"
    );
    for (kind, query) in [
        ("pg_stat_database", "SELECT * FROM pg_stat_database WHERE datname = current_database()"),
        ("pg_stat_bgwriter", "SELECT * FROM pg_stat_bgwriter"),
        ("pg_stat_all_indexes", "SELECT * FROM pg_stat_all_indexes WHERE idx_scan > 0"),
        (
            "pg_stat_all_tables",
            "SELECT * FROM pg_stat_all_tables WHERE seq_scan > 0 OR idx_scan > 0
               OR n_tup_ins > 0 OR n_tup_upd > 0 OR n_tup_del > 0
               OR vacuum_count > 0 OR analyze_count > 0",
        ),
        (
            "pg_statio_all_indexes",
            "SELECT * FROM pg_statio_all_indexes WHERE idx_blks_read > 0 OR idx_blks_hit > 0",
        ),
        (
            "pg_statio_all_tables",
            "SELECT * FROM pg_statio_all_tables WHERE heap_blks_read > 0 OR heap_blks_hit > 0
               OR idx_blks_read > 0 OR idx_blks_hit > 0",
        ),
        (
            "pg_statio_all_sequences",
            "SELECT * FROM pg_statio_all_sequences WHERE blks_read > 0 OR blks_hit > 0",
        ),
        ("pg_stat_user_functions", "SELECT * FROM pg_stat_user_functions WHERE calls > 0"),
    ] {
        queries.push((kind, query.to_owned()));
    }
    queries.push(("pg_stat_user_tables", tables));
    queries.push(("objects_size", objects));
    queries
}

/// What a session's stop read besides the artifact files.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Collected {
    /// The artifact types written, in the order written.
    pub(crate) artifacts: Vec<String>,
    /// The database's size at the end.
    pub(crate) db_size: i64,
    /// The longest statement in milliseconds (from `pg_stat_statements`; 0 without it).
    pub(crate) longest_query_ms: u64,
    /// Totals over the tables.
    pub(crate) objects: ObjectsStat,
}

/// Writes every artifact as `<dir>/<type>.json`. An artifact whose query fails (a lock held
/// past the timeout, a view a major lacks) is left out and logged; the summary's own figures
/// must be read.
pub(crate) async fn collect(admin: &Admin, dir: &Path) -> Result<Collected> {
    admin.client().batch_execute(STATEMENT_LIMITS).await.map_err(sql("set statement limits"))?;
    let with_statements = statements_available(admin).await?;
    let mut collected = Collected::default();
    for (kind, query) in artifact_queries(with_statements) {
        let wrapped =
            format!("SELECT coalesce(json_agg(row_to_json(t)), '[]'::json)::text FROM ({query}) t");
        match admin.client().query_one(&wrapped, &[]).await {
            Ok(row) => {
                write_artifact(dir, kind, row.get::<_, &str>(0).as_bytes())?;
                collected.artifacts.push(kind.to_owned());
            }
            Err(error) => {
                warn!(artifact = kind, error = %error, "failed to collect an observation artifact")
            }
        }
    }
    if with_statements {
        let row = admin
            .client()
            .query_one(
                "SELECT coalesce(max(max_exec_time + max_plan_time), 0)::float8
                   FROM pg_stat_statements",
                &[],
            )
            .await
            .map_err(sql("read the longest statement"))?;
        collected.longest_query_ms = row.get::<_, f64>(0).max(0.0).round() as u64;
    }
    collected.db_size = database_size(admin).await?;
    let objects = format!(
        "SELECT count(*)::int8, coalesce(sum(greatest(c.reltuples, 0)), 0)::int8,
                coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8,
                coalesce(sum(pg_total_relation_size(c.oid) - pg_indexes_size(c.oid)
                  - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0)::int8,
                coalesce(sum(pg_indexes_size(c.oid)), 0)::int8,
                coalesce(sum(pg_total_relation_size(nullif(c.reltoastrelid, 0))), 0)::int8
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname NOT IN ('information_schema', 'pg_catalog')
            AND {UNLOCKED}"
    );
    let row =
        admin.client().query_one(&objects, &[]).await.map_err(sql("read the objects' sizes"))?;
    collected.objects = ObjectsStat {
        count: row.get(0),
        row_estimate_sum: row.get(1),
        total_size_bytes_sum: row.get(2),
        table_size_bytes_sum: row.get(3),
        indexes_size_bytes_sum: row.get(4),
        toast_size_bytes_sum: row.get(5),
    };
    Ok(collected)
}

/// Writes one artifact file.
pub(crate) fn write_artifact(dir: &Path, kind: &str, contents: &[u8]) -> Result<()> {
    let path = dir.join(format!("{kind}.json"));
    std::fs::write(&path, contents).map_err(|error| Error::Io {
        what: "write observation artifact",
        path,
        error,
    })
}

/// One error line of a clone's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LogError {
    /// The line's time, as the server wrote it.
    pub(crate) log_time: String,
    /// `ERROR`, `FATAL` or `PANIC`.
    pub(crate) error_severity: String,
    /// The message.
    pub(crate) message: String,
}

/// The error lines of a clone's log text (its `log_line_prefix` is `%m [%p] `: time, zone,
/// process ID).
pub(crate) fn log_errors(text: &str) -> Vec<LogError> {
    let mut errors = Vec::new();
    for line in text.lines() {
        let Some((prefix, rest)) = line.split_once("] ") else { continue };
        let Some((severity, message)) = rest.split_once(":  ") else { continue };
        if !matches!(severity, "ERROR" | "FATAL" | "PANIC") {
            continue;
        }
        let log_time = prefix.rsplit_once(" [").map_or(prefix, |(time, _)| time);
        errors.push(LogError {
            log_time: log_time.to_owned(),
            error_severity: severity.to_owned(),
            message: message.to_owned(),
        });
    }
    errors
}

/// The summary's `log_errors`: how many, and their distinct messages.
pub(crate) fn log_error_summary(errors: &[LogError]) -> SummaryLogErrors {
    let mut messages: Vec<&str> = errors.iter().map(|error| error.message.as_str()).collect();
    messages.sort_unstable();
    messages.dedup();
    SummaryLogErrors { count: errors.len() as u64, message: messages.join(",") }
}

fn sql(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |cause| Error::Postgres(postgres::Error::Sql { action, cause })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_found_with_their_time_severity_and_message() {
        let log = "\
2026-12-03 04:10:00.123 UTC [41] LOG:  database system is ready to accept connections
2026-12-03 04:10:01.000 UTC [42] ERROR:  relation \"missing\" does not exist at character 15
2026-12-03 04:10:01.000 UTC [42] STATEMENT:  select * from missing
2026-12-03 04:10:02.500 UTC [43] FATAL:  password authentication failed for user \"x\"
2026-12-03 04:10:03.000 UTC [44] ERROR:  relation \"missing\" does not exist at character 15
a line without a prefix: ERROR:  not one
";
        let errors = log_errors(log);
        assert_eq!(errors.len(), 3);
        assert_eq!(
            errors[0],
            LogError {
                log_time: "2026-12-03 04:10:01.000 UTC".to_owned(),
                error_severity: "ERROR".to_owned(),
                message: "relation \"missing\" does not exist at character 15".to_owned(),
            }
        );
        assert_eq!(errors[1].error_severity, "FATAL");
        let summary = log_error_summary(&errors);
        assert_eq!(summary.count, 3);
        assert_eq!(
            summary.message,
            "password authentication failed for user \"x\",relation \"missing\" does not exist at \
             character 15"
        );
    }
}
