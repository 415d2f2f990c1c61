//! Continuous refresh's logical replication, on both ends: on the source, the publication each
//! dumped database is subscribed to and the logical slot whose exported snapshot the dump reads;
//! in the target, the subscription on that slot; in a copy of the golden data, the
//! subscriptions detached before its snapshot; in the sync instance, their status.
//!
//! The dump and the replication meet exactly: the slot is created on a `replication=database`
//! connection with `EXPORT_SNAPSHOT`, that connection stays open and idle while `pg_dump
//! --snapshot=<it>` reads the database, so the dump holds every transaction committed before
//! the slot's consistent point and the slot streams every one after it. `exec` has no
//! interactive child, so the connection is a `psql` reading its script from a FIFO the run
//! holds open: the slot's answer goes to a file, and closing the FIFO ends the session.
//!
//! Only the sync instance runs subscriptions: every other server on a copy of the golden data
//! runs with `max_logical_replication_workers = 0` ([`crate::config::NO_APPLY_WORKERS`]), and
//! a copy becomes a snapshot only after [`detach_subscriptions`] (disable, `slot_name = NONE`,
//! drop), so no clone can ever take the slot or connect to the source.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::sql::{quote_ident, quote_literal};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::config::physical::slot_name;
use crate::error::{Error, Result, classify};
use crate::pipe;
use crate::progress::Stage;
use crate::run::spawn_error;
use crate::source::Source;
use crate::target::Target;

/// The oldest source major continuous refresh follows (the project's oldest).
pub const MIN_SOURCE_MAJOR: u8 = 13;
/// The first major whose subscriptions have `disable_on_error`.
const DISABLE_ON_ERROR_MAJOR: u8 = 15;
/// The marker after the slot's answer in the session's output file.
const END_MARKER: &str = "SCION_SLOT_END";
/// How often the session's output file is read while the slot is created.
const POLL: Duration = Duration::from_millis(50);
const FIELD: char = '\u{1f}';

/// One database's replication: kept in the run's summary, so the engine drops the slot (and the
/// publication it created) when the data goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// The database on the source (the subscription lives in its target copy).
    pub database: String,
    /// The logical slot on the source, also the subscription's name.
    pub slot: String,
    /// The publication subscribed to.
    pub publication: String,
    /// Whether this run created the publication (then it is dropped with the slot).
    pub publication_created: bool,
    /// Whether the publication is the engine's own (`FOR ALL TABLES`, made by some run), not
    /// one the operator named: it goes when continuous refresh is turned off. Summaries kept
    /// before this field existed read as not owned, so an older record never drops one.
    #[serde(default)]
    pub publication_owned: bool,
}

/// Which publications go with their slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPublications {
    /// None: the next run subscribes to them again.
    Keep,
    /// Those the run created (a run that failed).
    CreatedByRun,
    /// Every one the engine owns (continuous refresh turned off); an operator's never.
    Owned,
}

impl DropPublications {
    fn applies_to(self, replication: &Replication) -> bool {
        match self {
            DropPublications::Keep => false,
            DropPublications::CreatedByRun => replication.publication_created,
            DropPublications::Owned => {
                replication.publication_created || replication.publication_owned
            }
        }
    }
}

/// Refuses, before any work, a source continuous refresh cannot follow: older than
/// PostgreSQL 13, or with `wal_level` other than `logical`.
pub(crate) async fn check_source(
    source: &Source,
    psql: PathBuf,
    major: u8,
    cancel: &CancellationToken,
) -> Result<()> {
    if major < MIN_SOURCE_MAJOR {
        return Err(Error::invalid(format!(
            "[retrieval.continuous] needs a source on PostgreSQL {MIN_SOURCE_MAJOR} or newer; this one is {major}"
        )));
    }
    let lines =
        source.query_lines(psql, &source.connection_database(), "SHOW wal_level", cancel).await?;
    let level = lines.first().map_or("", |line| line.trim());
    if level != "logical" {
        return Err(Error::invalid(format!(
            "[retrieval.continuous] needs wal_level = logical on the source, which has wal_level = {level}: set it in the source's configuration and restart it"
        )));
    }
    Ok(())
}

/// Makes sure `publication` exists in `database` of the source: the engine's own is created
/// `FOR ALL TABLES` when missing (true then); an operator's must exist.
pub(crate) async fn ensure_publication(
    source: &Source,
    psql: PathBuf,
    database: &str,
    (publication, owned): (&str, bool),
    cancel: &CancellationToken,
) -> Result<bool> {
    let count = format!(
        "SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = {}",
        quote_literal(publication)
    );
    let found = source.query_lines(psql.clone(), database, &count, cancel).await?;
    if found.first().is_some_and(|line| line.trim() != "0") {
        return Ok(false);
    }
    if !owned {
        return Err(Error::invalid(format!(
            "continuous.publication {publication} does not exist in database {database} of the source: create it there (CREATE PUBLICATION … FOR TABLE …)"
        )));
    }
    let create = format!("CREATE PUBLICATION {} FOR ALL TABLES", quote_ident(publication));
    source.query_lines(psql, database, &create, cancel).await?;
    Ok(true)
}

/// A logical slot just created on the source, with the snapshot it exported; the session that
/// holds the snapshot stays open until [`ExportedSlot::release`].
#[derive(Debug)]
pub(crate) struct ExportedSlot {
    /// The exported snapshot's name, for `pg_dump --snapshot`.
    pub(crate) snapshot: String,
    script: File,
    session: JoinHandle<std::result::Result<exec::Output, exec::ExecError>>,
    files: [PathBuf; 2],
}

impl ExportedSlot {
    /// Creates `slot` (pgoutput) in `database` on a `replication=database` session, and
    /// returns once the slot exported its snapshot. `run_dir` holds the session's FIFO and
    /// output file, named after `index`.
    pub(crate) async fn create(
        source: &Source,
        psql: PathBuf,
        database: &str,
        slot: &str,
        (run_dir, index): (&Path, usize),
        cancel: &CancellationToken,
    ) -> Result<ExportedSlot> {
        let fifo = run_dir.join(format!("slot-{index}.sql"));
        let out = run_dir.join(format!("slot-{index}.out"));
        pipe::make_fifo(&fifo)?;
        let _ = std::fs::remove_file(&out);
        // Read-write: opening never blocks, and psql sees the end of its script only when this
        // handle is closed.
        let mut script = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .map_err(|error| Error::io("open the slot session's script", &fifo, error))?;
        let conninfo = source.conninfo_with(database, &[("replication", "database")]);
        let cmd = source
            .command_to(psql, &conninfo)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--field-separator={FIELD}"))
            .arg(format!("--file={}", fifo.display()))
            .cancel_on(cancel.clone());
        let session = tokio::spawn(cmd.output_any_status());
        let text = format!(
            "\\o {out}\nCREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT;\n\\qecho {END_MARKER}\n\\o\n",
            out = out.display(),
            slot = quote_ident(slot),
        );
        script
            .write_all(text.as_bytes())
            .map_err(|error| Error::io("write the slot session's script", &fifo, error))?;
        let mut held =
            ExportedSlot { snapshot: String::new(), script, session, files: [fifo, out] };
        loop {
            let answer = std::fs::read_to_string(&held.files[1]).unwrap_or_default();
            if answer.contains(END_MARKER) {
                let fields: Vec<&str> =
                    answer.lines().next().unwrap_or_default().split(FIELD).collect();
                match fields.as_slice() {
                    [_, _, snapshot, ..] if !snapshot.is_empty() => {
                        held.snapshot = (*snapshot).to_owned();
                        return Ok(held);
                    }
                    _ => {
                        held.release().await;
                        return Err(Error::Failed {
                            stage: Stage::Dumping,
                            stderr_tail: format!(
                                "CREATE_REPLICATION_SLOT {slot} answered {answer:?}"
                            ),
                        });
                    }
                }
            }
            if held.session.is_finished() {
                let output = (&mut held.session).await;
                held.remove_files();
                return Err(match output {
                    Ok(Ok(output)) => {
                        classify(Stage::Dumping, Some(database), &output.stderr_text())
                    }
                    Ok(Err(error)) => spawn_error(Stage::Dumping, &error),
                    Err(error) => Error::Failed {
                        stage: Stage::Dumping,
                        stderr_tail: format!("the slot session failed: {error}"),
                    },
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends the session that holds the exported snapshot (the slot stays).
    pub(crate) async fn release(self) {
        let ExportedSlot { script, session, files, .. } = self;
        drop(script);
        let _ = session.await;
        for file in &files {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Ends `slot`'s session, if any, once its dump finished with `result`.
    pub(crate) async fn released<T>(slot: Option<ExportedSlot>, result: Result<T>) -> Result<T> {
        if let Some(slot) = slot {
            slot.release().await;
        }
        result
    }

    fn remove_files(&self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Creates, in `database` of the target, the subscription on `replication`'s slot: no slot of
/// its own, no initial copy (the dump is it), enabled, but run only where apply workers are
/// allowed (the sync instance), each applied transaction written before it is acknowledged. On majors that have it, an apply error disables it, so a
/// failing change (DDL not replicated) shows as a disabled subscription instead of a loop.
pub(crate) async fn create_subscription(
    source: &Source,
    psql: PathBuf,
    target: &Target,
    replication: &Replication,
    target_major: u8,
    cancel: &CancellationToken,
) -> Result<()> {
    let conninfo = match source.password() {
        Some(password) => source.conninfo_with(&replication.database, &[("password", password)]),
        None => source.conninfo(&replication.database),
    };
    // synchronous_commit: each applied transaction is written before it is acknowledged, so
    // what the sync instance shows is in the storage snapshot cut from it next (the default,
    // off, would leave the last commits in memory for up to the WAL writer's delay).
    let mut options = format!(
        "create_slot = false, copy_data = false, enabled = true, synchronous_commit = 'on', slot_name = {}",
        quote_literal(&replication.slot)
    );
    if target_major >= DISABLE_ON_ERROR_MAJOR {
        options.push_str(", disable_on_error = true");
    }
    let sql = format!(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({options});\n",
        quote_ident(&replication.slot),
        quote_literal(&conninfo),
        quote_ident(&replication.publication),
    );
    let mut cmd = target
        .command(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={}", target.conninfo(&replication.database)))
        .stdin_bytes(sql)
        .cancel_on(cancel.clone());
    if let Some(password) = source.password() {
        cmd = cmd.redact(password.to_owned());
    }
    let output =
        cmd.output_any_status().await.map_err(|error| spawn_error(Stage::Restoring, &error))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(classify(Stage::Restoring, Some(&replication.database), &output.stderr_text()))
    }
}

/// Drops each slot of `replications` on the source and the publications `publications` names;
/// every failure is returned (the rest is still tried). A slot still in use (its subscriber's
/// walsender not gone yet) fails: the caller may try again.
pub(crate) async fn drop_replication(
    source: &Source,
    psql: PathBuf,
    replications: &[Replication],
    publications: DropPublications,
    cancel: &CancellationToken,
) -> Vec<Error> {
    let mut failures = Vec::new();
    for replication in replications {
        let drop_slot = format!(
            "SELECT count(pg_catalog.pg_drop_replication_slot(slot_name)) \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
            quote_literal(&replication.slot)
        );
        if let Err(error) = source
            .query_lines(psql.clone(), &source.connection_database(), &drop_slot, cancel)
            .await
        {
            failures.push(error);
            continue;
        }
        if publications.applies_to(replication) {
            let drop =
                format!("DROP PUBLICATION IF EXISTS {}", quote_ident(&replication.publication));
            if let Err(error) =
                source.query_lines(psql.clone(), &replication.database, &drop, cancel).await
            {
                failures.push(error);
            }
        }
    }
    failures
}

/// Drops the logical slots on the source that a run into `dataset` created (named
/// `slot_name(base, "<dataset>_<n>")`), when that run was interrupted before anything recorded
/// them; returns their names. A slot in use cannot be dropped: the error says so.
pub(crate) async fn drop_slots_of(
    source: &Source,
    psql: PathBuf,
    base: &str,
    dataset: &str,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let database = source.connection_database();
    let slots = source
        .query_lines(
            psql.clone(),
            &database,
            "SELECT slot_name FROM pg_catalog.pg_replication_slots WHERE slot_type = 'logical'",
            cancel,
        )
        .await?;
    let ours: Vec<String> = slots
        .into_iter()
        .filter(|slot| {
            slot.rsplit_once('_')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .is_some_and(|n| slot_name(base, &format!("{dataset}_{n}")) == *slot)
        })
        .collect();
    for slot in &ours {
        let drop = format!("SELECT pg_catalog.pg_drop_replication_slot({})", quote_literal(slot));
        source.query_lines(psql.clone(), &database, &drop, cancel).await?;
    }
    Ok(ours)
}

/// Detaches and drops every subscription of the server `client` is connected to, database by
/// database through `psql`: `DISABLE`, `SET (slot_name = NONE)` (the slot on the source is the
/// sync instance's, never this copy's), `DROP`. Returns their names. The server must run with
/// no apply workers, so none of them ever connected.
pub(crate) async fn detach_subscriptions(
    client: &Client,
    psql: &Path,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT s.subname::text, d.datname::text FROM pg_catalog.pg_subscription s \
             JOIN pg_catalog.pg_database d ON d.oid = s.subdbid ORDER BY 2, 1",
            &[],
        )
        .await
        .map_err(|error| Error::Failed {
            stage: Stage::Preparing,
            stderr_tail: error.to_string(),
        })?;
    let mut per_database: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        per_database.entry(row.get(1)).or_default().push(row.get(0));
    }
    let mut detached = Vec::new();
    for (database, names) in per_database {
        let mut sql = String::new();
        for name in &names {
            let name = quote_ident(name);
            sql.push_str(&format!(
                "ALTER SUBSCRIPTION {name} DISABLE;\nALTER SUBSCRIPTION {name} SET (slot_name = NONE);\nDROP SUBSCRIPTION {name};\n"
            ));
        }
        let output = target
            .command(psql.to_path_buf())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", target.conninfo(&database)))
            .stdin_bytes(sql)
            .cancel_on(cancel.clone())
            .output_any_status()
            .await
            .map_err(|error| spawn_error(Stage::Preparing, &error))?;
        if !output.status.success() {
            return Err(classify(Stage::Preparing, Some(&database), &output.stderr_text()));
        }
        detached.extend(names);
    }
    Ok(detached)
}

/// One subscription of the sync instance, as `pg_subscription` and `pg_stat_subscription`
/// (its apply worker's row) show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionStatus {
    /// The subscription (and slot) name.
    pub name: String,
    /// Whether it is enabled; an apply error disables it (`disable_on_error`).
    pub enabled: bool,
    /// Its apply worker's PID, while one runs.
    pub worker_pid: Option<i32>,
    /// The last WAL position received from the source.
    pub received_lsn: Option<String>,
    /// When the source sent the last message the worker received.
    pub last_message_sent_at: Option<DateTime<Utc>>,
    /// When the worker received it.
    pub last_message_received_at: Option<DateTime<Utc>>,
}

impl SubscriptionStatus {
    /// Seconds between the source sending the last message and the worker receiving it: how
    /// far behind the stream the worker reads (0 when the clocks disagree the other way).
    pub fn lag_seconds(&self) -> i64 {
        match (self.last_message_sent_at, self.last_message_received_at) {
            (Some(sent), Some(received)) => (received - sent).num_seconds().max(0),
            _ => 0,
        }
    }
}

/// The sync instance of continuous refresh: when it started, and its subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberStatus {
    /// When the server started.
    pub started_at: DateTime<Utc>,
    /// Its subscriptions, by name.
    pub subscriptions: Vec<SubscriptionStatus>,
}

/// The subscriptions of the server `client` is connected to (any database: `pg_subscription`
/// is shared), with their apply workers.
pub async fn subscription_status(
    client: &Client,
) -> std::result::Result<SubscriberStatus, tokio_postgres::Error> {
    let started: std::time::SystemTime =
        client.query_one("SELECT pg_catalog.pg_postmaster_start_time()", &[]).await?.get(0);
    // The apply worker is the row without a table (a table sync has one) and without a
    // leader (a parallel apply worker has one, from 16: read through to_jsonb to run on
    // every major).
    let rows = client
        .query(
            "SELECT s.subname::text, s.subenabled, w.pid, w.received_lsn::text, \
             w.last_msg_send_time, w.last_msg_receipt_time \
             FROM pg_catalog.pg_subscription s LEFT JOIN LATERAL ( \
               SELECT st.pid, st.received_lsn, st.last_msg_send_time, st.last_msg_receipt_time \
               FROM pg_catalog.pg_stat_subscription st \
               WHERE st.subid = s.oid AND st.relid IS NULL \
                 AND (pg_catalog.to_jsonb(st) ->> 'leader_pid') IS NULL LIMIT 1) w ON true \
             ORDER BY 1",
            &[],
        )
        .await?;
    let subscriptions = rows
        .iter()
        .map(|row| SubscriptionStatus {
            name: row.get(0),
            enabled: row.get(1),
            worker_pid: row.get(2),
            received_lsn: row.get(3),
            last_message_sent_at: row
                .get::<_, Option<std::time::SystemTime>>(4)
                .map(DateTime::from),
            last_message_received_at: row
                .get::<_, Option<std::time::SystemTime>>(5)
                .map(DateTime::from),
        })
        .collect();
    Ok(SubscriberStatus { started_at: DateTime::from(started), subscriptions })
}
