//! Everything the CLI prints as a result: aligned tables and key-value blocks for people, and the
//! API's JSON unchanged for scripts. Functions return strings so tests can check them; `main`
//! decides where they go (results to stdout, diagnostics to stderr).

use std::fmt::Write;

use api_types::{
    BranchProtection, BranchView, Clone, Instance, LocalTime, Protection, Snapshot,
    SnapshotDetails, Status,
};
use chrono::{Local, NaiveDateTime};
use serde::Serialize;

use crate::commands::EnvironmentView;

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
    if clone.stopped_at.is_some() {
        rows.push(("Stopped at", time(clone.stopped_at)));
    }
    rows.push(("Logical size", size(clone.metadata.logical_size)));
    if let Some(limits) = &clone.limits {
        if let Some(cpu) = limits.cpu {
            rows.push(("CPU limit", format!("{cpu} cores")));
        }
        if let Some(memory) = limits.memory {
            rows.push(("Memory limit", size(memory)));
        }
        if let Some(disk) = limits.disk {
            rows.push(("Disk quota", size(disk)));
        }
    }
    if let Some(usage) = &clone.usage {
        if let Some(memory) = usage.memory {
            rows.push(("Memory used", size(memory)));
        }
        if let Some(kills) = usage.oom_kills.filter(|kills| *kills > 0) {
            rows.push(("OOM kills", kills.to_string()));
        }
    }
    if clone.snapshot.as_ref().is_some_and(|snapshot| snapshot.masked) {
        rows.push(("Masked", "yes".to_owned()));
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
                yes_no(clone.snapshot.as_ref().is_some_and(|snapshot| snapshot.masked)),
                size(clone.metadata.clone_diff_size),
                time(clone.created_at),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["ID", "STATUS", "BRANCH", "SNAPSHOT", "PORT", "PROTECTED", "MASKED", "DIFF", "CREATED"],
        &rows,
    )
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
                yes_no(snapshot.protection.protected),
                yes_no(snapshot.masked),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["ID", "DATA STATE AT", "CREATED", "BRANCH", "CLONES", "SIZE", "PROTECTED", "MASKED"],
        &rows,
    )
}

/// One snapshot as `Key  value` lines.
pub(crate) fn snapshot_detail(snapshot: &Snapshot) -> String {
    let mut rows = vec![
        ("ID", snapshot.id.clone()),
        ("Pool", dash(&snapshot.pool)),
        ("Branch", dash(&snapshot.branch)),
        ("Data state at", time(snapshot.data_state_at)),
        ("Created at", time(snapshot.created_at)),
        ("Size", size(snapshot.logical_size)),
        ("Clones", snapshot.num_clones.to_string()),
    ];
    let notes = protection_notes(&snapshot.protection);
    if !notes.is_empty() {
        rows.push(("Protection", notes.join(", ")));
    }
    if snapshot.masked {
        rows.push(("Masked", "yes".to_owned()));
    }
    key_values(&rows)
}

/// Branches as DBLab's CLI lists them: the current one starred, protection and scheduled
/// deletion in brackets, then Scion's `[masked]` when the head's data is masked.
pub(crate) fn branch_list(branches: &[BranchView], current: &str) -> String {
    let mut text = String::new();
    for branch in branches {
        let marker = if branch.name == current { '*' } else { ' ' };
        let _ = write!(text, "{marker} {}", branch.name);
        for note in protection_notes(&branch.protection) {
            let _ = write!(text, " [{note}]");
        }
        if branch.masked {
            text.push_str(" [masked]");
        }
        text.push('\n');
    }
    text
}

/// The CLI's named environments, the current one starred.
pub(crate) fn environment_list(environments: &[EnvironmentView]) -> String {
    let rows: Vec<Vec<String>> = environments
        .iter()
        .map(|environment| {
            vec![
                if environment.current { "*".to_owned() } else { String::new() },
                environment.id.clone(),
                environment.url.clone().unwrap_or_default(),
                environment.current_branch.clone(),
            ]
        })
        .collect();
    table(&["", "ENVIRONMENT", "URL", "BRANCH"], &rows)
}

/// One named environment; the token only as set or not.
pub(crate) fn environment(environment: &EnvironmentView) -> String {
    key_values(&[
        ("Environment", environment.id.clone()),
        ("URL", environment.url.clone().unwrap_or_default()),
        ("Token", if environment.token { "set" } else { "not set" }.to_owned()),
        ("Branch", environment.current_branch.clone()),
        ("Current", if environment.current { "yes" } else { "no" }.to_owned()),
    ])
}

/// `[protected]`, `[protected until …]` and `[auto-delete at …]`, times in RFC 3339.
fn protection_notes(protection: &Protection) -> Vec<String> {
    let mut notes = Vec::new();
    if protection.protected {
        notes.push(match protection.protected_till.filter(|till| !till.is_zero()) {
            Some(till) => format!("protected until {}", till.to_wire()),
            None => "protected".to_owned(),
        });
    }
    if let Some(at) = protection.delete_at.filter(|at| !at.is_zero()) {
        notes.push(format!("auto-delete at {}", at.to_wire()));
    }
    notes
}

/// The answer to `scion branch NAME --protected VALUE`.
pub(crate) fn branch_protection(answer: &BranchProtection) -> String {
    let notes = protection_notes(&answer.protection);
    if notes.is_empty() {
        format!("Branch {}: not protected\n", answer.name)
    } else {
        format!("Branch {}: {}\n", answer.name, notes.join(", "))
    }
}

/// A branch's history like `git log`: the ID with the branches it heads, the time of its data,
/// the clones on it, and the message.
pub(crate) fn commit_log(commits: &[SnapshotDetails]) -> String {
    let mut text = String::new();
    for commit in commits {
        let _ = write!(text, "snapshot {}", commit.id);
        if !commit.branch.is_empty() {
            let _ = write!(text, " (HEAD -> {})", commit.branch.join(", "));
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "DataStateAt: {}", data_state_at(&commit.data_state_at));
        let _ = writeln!(text, "Clones: {}", commit.num_clones);
        if !commit.message.is_empty() && commit.message != "-" {
            let _ = writeln!(text, "\n    {}", commit.message.replace('\n', "\n    "));
        }
        text.push('\n');
    }
    text
}

/// DBLab's `YYYYMMDDHHMMSS` (UTC) as RFC 1123 with a numeric zone in the local time zone, as
/// DBLab's `log` prints it; the raw value when it does not parse.
fn data_state_at(stamp: &str) -> String {
    match NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S") {
        Ok(naive) => {
            naive.and_utc().with_timezone(&Local).format("%a, %d %b %Y %H:%M:%S %z").to_string()
        }
        Err(_) => stamp.to_owned(),
    }
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
    if let Some(progress) = &retrieving.progress
        && !matches!(progress.stage.as_str(), "finished" | "failed" | "pending")
    {
        rows.push(("Progress", retrieval_progress(progress)));
    }
    if let Some(progress) = &retrieving.progress
        && progress.stage == "finished"
    {
        rows.push((
            "Retrieved",
            format!(
                "{} tables, {} in {} databases",
                progress.tables_done,
                size(progress.bytes_done),
                progress.databases.len()
            ),
        ));
    }
    if let Some(warnings) = &retrieving.warnings {
        rows.push(("Warnings", format!("{} in the last refresh", warnings.count)));
    }
    if let Some(reconciliation) = &instance.reconciliation
        && !reconciliation.differences.is_empty()
    {
        rows.push(("Reconciled", format!("{} differences", reconciliation.differences.len())));
    }
    let mut text = key_values(&rows);
    if let Some(warnings) = &retrieving.warnings {
        text.push_str("\nRefresh warnings (first lines):\n");
        for line in &warnings.first {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
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

/// `scion masking check`: the snapshot read, the unruled personal columns, the rules' problems.
pub(crate) fn masking_check(check: &api_types::MaskingCheck) -> String {
    let kind = if check.snapshot_masked { "masked" } else { "unmasked" };
    let mut text = format!(
        "Checked  {} ({kind})
",
        check.snapshot_id
    );
    if check.columns.is_empty() {
        text.push_str(
            "No personal-looking column without a rule.
",
        );
    } else {
        let rows: Vec<Vec<String>> = check
            .columns
            .iter()
            .map(|found| {
                vec![
                    found.database.clone(),
                    found.schema.clone(),
                    found.table.clone(),
                    found.column.clone(),
                    found.kind.clone(),
                    found.why.clone(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(
            &["DATABASE", "SCHEMA", "TABLE", "COLUMN", "LOOKS LIKE", "WHY"],
            &rows,
        ));
    }
    if !check.problems.is_empty() {
        text.push_str("\nRule problems:\n");
        for problem in &check.problems {
            let _ = writeln!(text, "  {problem}");
        }
    }
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

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
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

/// A running refresh's stage, bytes of the total, rate and time left (a physical copy's, a
/// dump's).
pub(crate) fn retrieval_progress(progress: &api_types::RetrievalProgress) -> String {
    let mut text = progress.stage.clone();
    if progress.bytes_done > 0 || progress.bytes_total.is_some() {
        text.push_str(&format!(": {}", size(progress.bytes_done)));
        if let Some(total) = progress.bytes_total.filter(|total| *total > 0) {
            let percent = progress.bytes_done.saturating_mul(100) / total;
            text.push_str(&format!(" of {} ({percent}%)", size(total)));
        }
    }
    if let Some(rate) = progress.bytes_per_second {
        text.push_str(&format!(", {}/s", size(rate)));
    }
    if let Some(eta) = progress.eta_seconds {
        text.push_str(&format!(", {eta} s left"));
    }
    text
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
    fn retrieval_progress_lines() {
        let mut progress = api_types::RetrievalProgress {
            stage: "copying".to_owned(),
            bytes_done: 3 << 30,
            bytes_total: Some(12 << 30),
            bytes_per_second: Some(100 << 20),
            eta_seconds: Some(92),
            ..api_types::RetrievalProgress::default()
        };
        assert_eq!(
            retrieval_progress(&progress),
            "copying: 3.0 GiB of 12.0 GiB (25%), 100.0 MiB/s, 92 s left"
        );
        progress.bytes_total = None;
        progress.eta_seconds = None;
        assert_eq!(retrieval_progress(&progress), "copying: 3.0 GiB, 100.0 MiB/s");
        let probing = api_types::RetrievalProgress {
            stage: "probing".to_owned(),
            ..api_types::RetrievalProgress::default()
        };
        assert_eq!(retrieval_progress(&probing), "probing");
    }

    #[test]
    fn logs_and_branch_lists() {
        let commit = SnapshotDetails {
            id: "p/branch/dev/c/r0@20240502090000".to_owned(),
            parent: "-".to_owned(),
            child: Vec::new(),
            branch: vec!["dev".to_owned(), "qa".to_owned()],
            root: Vec::new(),
            data_state_at: "20240502090000".to_owned(),
            message: "two\nlines".to_owned(),
            dataset: "p/branch/dev/c/r0".to_owned(),
            clones: Vec::new(),
            num_clones: 2,
            protection: Protection::default(),
            masked: false,
        };
        let text = commit_log(std::slice::from_ref(&commit));
        let expected_time = data_state_at("20240502090000");
        assert_eq!(
            text,
            format!(
                "snapshot p/branch/dev/c/r0@20240502090000 (HEAD -> dev, qa)\n\
                 DataStateAt: {expected_time}\nClones: 2\n\n    two\n    lines\n\n"
            )
        );
        assert_eq!(data_state_at("garbage"), "garbage");
        let branch = |name: &str, protection: Protection| BranchView {
            name: name.to_owned(),
            base_dataset: "p".to_owned(),
            parent: "-".to_owned(),
            data_state_at: String::new(),
            snapshot_id: String::new(),
            dataset: String::new(),
            num_snapshots: 1,
            protection,
            masked: false,
        };
        let guarded = Protection { protected: true, ..Protection::default() };
        let list =
            branch_list(&[branch("dev", guarded), branch("main", Protection::default())], "main");
        assert_eq!(list, "  dev [protected]\n* main\n");
        let masked = BranchView {
            masked: true,
            ..branch("safe", Protection { protected: true, ..Protection::default() })
        };
        assert_eq!(branch_list(&[masked], "main"), "  safe [protected] [masked]\n");
    }

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![vec!["a".to_owned(), "long value".to_owned(), "".to_owned()]];
        assert_eq!(table(&["ID", "X", "Z"], &rows), "ID  X           Z\na   long value\n");
    }
}
