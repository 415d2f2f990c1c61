//! Reading WAL with `pg_waldump`: the last commit and the last valid record in a directory of
//! WAL segments, a WAL archive or a copy's `pg_wal`.
//!
//! Only the newest segments are read (newest first, at most [`SCANNED_SEGMENTS`]), each on its
//! own, so the cost does not grow with the archive. A segment that holds no valid record (a
//! recycled one waiting in `pg_wal`, or garbage) makes `pg_waldump` stop at once; its records up
//! to the first invalid one are what recovery would replay too. The tool runs with `TZ=UTC`, so
//! the commit times it prints are UTC.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use exec::Cmd;

use crate::controldata::Lsn;
use crate::error::{Error, Result};
use crate::version::PgBinaries;

/// How many of the newest segments are read, at most, to find a commit.
pub const SCANNED_SEGMENTS: usize = 8;
const WALDUMP_TIMEOUT: Duration = Duration::from_secs(120);
/// The `pg_wal` directory inside a data directory.
const PG_WAL: &str = "pg_wal";

/// The end of the WAL in a directory of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEnd {
    /// The newest segment that holds a valid record.
    pub segment: String,
    /// Where the last valid record of that segment starts.
    pub last_record: Lsn,
    /// The last commit's time and the location of its record, in the segments read; `None`
    /// when they hold no commit.
    pub last_commit: Option<(DateTime<Utc>, Lsn)>,
}

/// The end of the WAL in the archive directory `dir`. `newest`, when given, is the newest
/// segment to consider (the source's `pg_stat_archiver.last_archived_wal`): newer files, if
/// any, are ignored. `None` when no segment holds a valid record.
pub async fn archive_end(
    binaries: &PgBinaries,
    dir: &Path,
    newest: Option<&str>,
) -> Result<Option<WalEnd>> {
    scan(binaries, dir, newest).await
}

/// The end of the WAL in the `pg_wal` of the (stopped) copy in `data_dir`.
pub async fn data_dir_end(binaries: &PgBinaries, data_dir: &Path) -> Result<Option<WalEnd>> {
    scan(binaries, &data_dir.join(PG_WAL), None).await
}

async fn scan(binaries: &PgBinaries, dir: &Path, newest: Option<&str>) -> Result<Option<WalEnd>> {
    let tool = binaries.tool("pg_waldump")?;
    let mut segments = segments(dir)?;
    if let Some(newest) = newest {
        let limit = order_key(newest);
        segments.retain(|segment| order_key(segment) <= limit);
    }
    let mut end: Option<WalEnd> = None;
    for segment in segments.iter().take(SCANNED_SEGMENTS) {
        let output = Cmd::new(&tool)
            .arg(format!("--path={}", dir.display()))
            .arg(segment)
            .arg(segment)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .timeout(WALDUMP_TIMEOUT)
            .output_any_status()
            .await?;
        let read = parse_waldump(&output.stdout_text());
        let Some(last_record) = read.last_record else { continue };
        let end = end.get_or_insert_with(|| WalEnd {
            segment: segment.clone(),
            last_record,
            last_commit: None,
        });
        if let Some(commit) = read.last_commit {
            end.last_commit = Some(commit);
            break;
        }
    }
    Ok(end)
}

/// The WAL segment files in `dir`, newest first.
fn segments(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list", dir, error))?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_segment_name(name))
        .collect();
    names.sort_by_key(|name| std::cmp::Reverse(order_key(name)));
    Ok(names)
}

/// A segment's name is its timeline, log and segment number, 8 hex digits each.
fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Segments sort by position in the WAL (log, segment), then timeline.
fn order_key(name: &str) -> (String, String) {
    let name = name.to_ascii_uppercase();
    match (name.get(8..), name.get(..8)) {
        (Some(position), Some(timeline)) => (position.to_owned(), timeline.to_owned()),
        _ => (name.clone(), String::new()),
    }
}

/// What one `pg_waldump` run printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Read {
    last_record: Option<Lsn>,
    last_commit: Option<(DateTime<Utc>, Lsn)>,
}

/// Parses records like `rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/03000060,
/// prev 0/03000028, desc: COMMIT 2026-12-02 19:30:00.123456 UTC`.
fn parse_waldump(output: &str) -> Read {
    let mut read = Read::default();
    for line in output.lines() {
        let Some(lsn) = field(line, "lsn: ", ',').and_then(|text| text.parse::<Lsn>().ok()) else {
            continue;
        };
        read.last_record = Some(lsn);
        if !line.starts_with("rmgr: Transaction") {
            continue;
        }
        if let Some(time) = line
            .split_once("desc: COMMIT ")
            .and_then(|(_, rest)| parse_commit_time(rest.split(';').next().unwrap_or(rest)))
        {
            read.last_commit = Some((time, lsn));
        }
    }
    read
}

fn field<'a>(line: &'a str, label: &str, end: char) -> Option<&'a str> {
    let start = line.find(label)? + label.len();
    let rest = &line[start..];
    Some(rest.split(end).next().unwrap_or(rest).trim())
}

/// `2026-12-02 19:30:00.123456 UTC` → the moment.
fn parse_commit_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let text = text.strip_suffix("UTC").unwrap_or(text).trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|time| time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_record_and_commit() {
        let output = "\
rmgr: Heap        len (rec/tot):     59/    59, tx:        740, lsn: 0/03000028, prev 0/02000110, desc: INSERT off: 3, flags: 0x08, blkref #0: rel 1663/5/16384 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        740, lsn: 0/03000068, prev 0/03000028, desc: COMMIT 2026-12-02 19:30:00.123456 UTC
rmgr: Transaction len (rec/tot):    130/   130, tx:        741, lsn: 0/03000090, prev 0/03000068, desc: COMMIT 2026-12-02 19:30:01.5 UTC; inval msgs: catcache 7 catcache 6
rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, lsn: 0/03000118, prev 0/03000090, desc: SWITCH
pg_waldump: error: error in WAL record at 0/3000118: invalid record length";
        let read = parse_waldump(output);
        assert_eq!(read.last_record, Some(Lsn(0x0300_0118)));
        let (time, lsn) = read.last_commit.unwrap();
        assert_eq!(lsn, Lsn(0x0300_0090));
        assert_eq!(time.to_rfc3339(), "2026-12-02T19:30:01.500+00:00");
        assert_eq!(parse_waldump(""), Read::default());
    }

    #[test]
    fn orders_segments_by_position_then_timeline() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "000000010000000000000003",
            "000000020000000000000003",
            "000000010000000100000000",
            "000000010000000000000004.partial",
            "00000002.history",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(
            segments(dir.path()).unwrap(),
            ["000000010000000100000000", "000000020000000000000003", "000000010000000000000003"]
        );
    }
}
