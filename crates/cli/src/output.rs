//! Everything the CLI prints as a result: aligned tables and key-value blocks for people, and the
//! API's JSON unchanged for scripts. Functions return strings so tests can check them; `main`
//! decides where they go (results to stdout, diagnostics to stderr).

use std::fmt::Write;

use api_types::{Clone, Instance, LocalTime, Snapshot, Status};
use chrono::Local;
use serde::Serialize;

/// The API's shape, pretty-printed as DBLab does (two-space indent), with a final newline.
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|error| {
        // Serializing plain data structures cannot fail; say so rather than print half a document.
        format!("{{\"error\": \"cannot serialize the answer: {error}\"}}")
    });
    text.push('\n');
    text
}

/// One clone as `Key  value` lines.
pub(crate) fn clone_detail(clone: &Clone) -> String {
    let snapshot = clone.snapshot.as_ref().map_or("-", |snapshot| snapshot.id.as_str());
    let mut rows = vec![
        ("ID", clone.id.clone()),
        ("Status", status(&clone.status)),
        ("Branch", dash(&clone.branch)),
        ("Snapshot", snapshot.to_owned()),
        ("Protected", protection(clone)),
        ("Created at", time(clone.created_at)),
        ("Database", dash(&clone.db.db_name)),
        ("User", dash(&clone.db.username)),
        ("Port", dash(&clone.db.port)),
        ("Diff size", size(clone.metadata.clone_diff_size)),
        ("Cloning time", format!("{:.3} s", clone.metadata.cloning_time)),
    ];
    if clone.metadata.max_idle_minutes > 0 {
        rows.push(("Idle limit", format!("{} min", clone.metadata.max_idle_minutes)));
    }
    key_values(&rows)
}

/// The connection string line printed after a clone is ready.
pub(crate) fn connection_hint(clone: &Clone) -> Option<String> {
    (!clone.db.conn_str.is_empty()).then(|| format!("Connection string: {}\n", clone.db.conn_str))
}

/// Clones as a table.
pub(crate) fn clone_list(clones: &[Clone]) -> String {
    let rows = clones
        .iter()
        .map(|clone| {
            vec![
                clone.id.clone(),
                clone.status.code.to_string(),
                dash(&clone.branch),
                clone.snapshot.as_ref().map_or_else(|| "-".to_owned(), |s| s.id.clone()),
                dash(&clone.db.port),
                protection(clone),
                size(clone.metadata.clone_diff_size),
                time(clone.created_at),
            ]
        })
        .collect::<Vec<_>>();
    table(&["ID", "STATUS", "BRANCH", "SNAPSHOT", "PORT", "PROTECTED", "DIFF", "CREATED"], &rows)
}

/// Snapshots as a table.
pub(crate) fn snapshot_list(snapshots: &[Snapshot]) -> String {
    let rows = snapshots
        .iter()
        .map(|snapshot| {
            vec![
                snapshot.id.clone(),
                time(snapshot.data_state_at),
                time(snapshot.created_at),
                dash(&snapshot.branch),
                snapshot.num_clones.to_string(),
                size(snapshot.logical_size),
                if snapshot.protection.protected { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect::<Vec<_>>();
    table(&["ID", "DATA STATE AT", "CREATED", "BRANCH", "CLONES", "SIZE", "PROTECTED"], &rows)
}

/// One snapshot as `Key  value` lines.
pub(crate) fn snapshot_detail(snapshot: &Snapshot) -> String {
    key_values(&[
        ("ID", snapshot.id.clone()),
        ("Pool", dash(&snapshot.pool)),
        ("Branch", dash(&snapshot.branch)),
        ("Data state at", time(snapshot.data_state_at)),
        ("Created at", time(snapshot.created_at)),
        ("Size", size(snapshot.logical_size)),
        ("Clones", snapshot.num_clones.to_string()),
    ])
}

/// `GET /status` for people: the headline, the engine, retrieval and clones, then the pools.
pub(crate) fn instance(instance: &Instance) -> String {
    let engine = &instance.engine;
    let retrieving = &instance.retrieving;
    let mut rows = vec![
        ("Status", status(&instance.status)),
        ("Version", format!("{} ({})", dash(&engine.version), dash(&engine.edition))),
        ("Instance ID", dash(&engine.instance_id)),
        ("Started at", time(engine.started_at)),
        ("Retrieval", format!("{}, {}", retrieving.mode, retrieving.status)),
        ("Last refresh", time(retrieving.last_refresh)),
        (
            "Clones",
            format!(
                "{} (expected cloning time {:.3} s)",
                instance.cloning.num_clones, instance.cloning.expected_cloning_time
            ),
        ),
    ];
    if let Some(reconciliation) = &instance.reconciliation
        && !reconciliation.differences.is_empty()
    {
        rows.push(("Reconciled", format!("{} differences", reconciliation.differences.len())));
    }
    let mut text = key_values(&rows);
    let pools = instance
        .pools
        .iter()
        .map(|pool| {
            let fs = &pool.file_system;
            vec![
                pool.name.clone(),
                dash(&pool.mode),
                pool.status.to_string(),
                time(pool.data_state_at),
                pool.clone_list.len().to_string(),
                size(fs.size),
                size(fs.free),
                size(fs.used),
            ]
        })
        .collect::<Vec<_>>();
    text.push('\n');
    text.push_str(&table(
        &["POOL", "MODE", "STATUS", "DATA STATE AT", "CLONES", "SIZE", "FREE", "USED"],
        &pools,
    ));
    text
}

/// Aligned columns separated by two spaces, header first; no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_cells: Vec<String> = headers.iter().map(|&header| header.to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    rows.iter().map(|(key, value)| format!("{key:<width$}  {value}\n")).collect()
}

fn status(status: &Status) -> String {
    if status.message.is_empty() {
        status.code.to_string()
    } else {
        format!("{}: {}", status.code, status.message)
    }
}

fn protection(clone: &Clone) -> String {
    match (clone.protected, clone.protected_till) {
        (false, _) => "no".to_owned(),
        (true, Some(till)) if !till.is_zero() => format!("until {}", time(Some(till))),
        (true, _) => "yes".to_owned(),
    }
}

fn dash(text: &str) -> String {
    if text.is_empty() { "-".to_owned() } else { text.to_owned() }
}

/// A time in the local time zone, to the second; `-` when unset.
pub(crate) fn time(time: Option<LocalTime>) -> String {
    match time.and_then(LocalTime::get) {
        Some(instant) => instant.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "-".to_owned(),
    }
}

/// Bytes in binary units, one decimal above a KiB.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss, reason = "one decimal of a size needs no precision")]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![vec!["a".to_owned(), "long value".to_owned(), "".to_owned()]];
        assert_eq!(table(&["ID", "X", "Z"], &rows), "ID  X           Z\na   long value\n");
    }
}
