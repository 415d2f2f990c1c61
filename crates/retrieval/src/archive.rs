//! Dump files: finding existing dumps in a directory (directory, custom and plain formats, plain
//! optionally gzip- or bzip2-compressed) and reading an archive's table of contents
//! (`pg_restore --list --create`) for table counts, schemas, the database's own entries and the
//! dump time, and a dump's `CREATE DATABASE` statement for its encoding and locale.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// How much of a plain dump is read to find its `CREATE DATABASE`.
const PLAIN_HEAD_BYTES: u64 = 1 << 20;

/// The format of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// `pg_dump -Fd`: a directory with `toc.dat`.
    Directory,
    /// `pg_dump -Fc`: one file starting with `PGDMP`.
    Custom,
    /// Plain SQL.
    Plain,
    /// Plain SQL, gzip-compressed.
    PlainGzip,
    /// Plain SQL, bzip2-compressed.
    PlainBzip2,
}

impl DumpFormat {
    /// True for the formats pg_restore reads (the others go through psql).
    pub fn is_archive(self) -> bool {
        matches!(self, DumpFormat::Directory | DumpFormat::Custom)
    }
}

/// One dump to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DumpFile {
    pub(crate) path: PathBuf,
    pub(crate) format: DumpFormat,
    /// The database, from the file name without its extensions.
    pub(crate) database: String,
}

/// Finds the dumps in `dir`, sorted by database name. Unknown files are an error, so a typo
/// does not silently leave a database out.
pub(crate) fn discover(dir: &Path) -> Result<Vec<DumpFile>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list dumps in", dir, error))?;
    let mut dumps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list dumps in", dir, error))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let format = detect(&path)?;
        let database = strip_extensions(&name);
        dumps.push(DumpFile { path, format, database });
    }
    dumps.sort_by(|a, b| a.database.cmp(&b.database));
    if dumps.is_empty() {
        return Err(Error::invalid(format!("restore.from_dump: {} holds no dumps", dir.display())));
    }
    Ok(dumps)
}

/// The format of one dump, from its content (magic bytes), not its name.
pub(crate) fn detect(path: &Path) -> Result<DumpFormat> {
    if path.is_dir() {
        if path.join("toc.dat").is_file() {
            return Ok(DumpFormat::Directory);
        }
        return Err(Error::invalid(format!(
            "{} is a directory without toc.dat: not a directory-format dump",
            path.display()
        )));
    }
    let mut head = [0_u8; 5];
    let mut file = File::open(path).map_err(|error| Error::io("open dump", path, error))?;
    let read = file.read(&mut head).map_err(|error| Error::io("read dump", path, error))?;
    let head = &head[..read];
    Ok(if head.starts_with(b"PGDMP") {
        DumpFormat::Custom
    } else if head.starts_with(&[0x1f, 0x8b]) {
        DumpFormat::PlainGzip
    } else if head.starts_with(b"BZh") {
        DumpFormat::PlainBzip2
    } else {
        DumpFormat::Plain
    })
}

fn strip_extensions(name: &str) -> String {
    let mut name = name;
    for extension in [".gz", ".bz2", ".sql", ".dump", ".custom", ".backup", ".dir"] {
        name = name.strip_suffix(extension).unwrap_or(name);
    }
    name.to_owned()
}

/// The first part of a plain dump, decompressed.
pub(crate) fn plain_head(path: &Path, format: DumpFormat) -> Result<String> {
    let reader = plain_reader(path, format)?;
    let mut head = Vec::new();
    reader
        .take(PLAIN_HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(|error| Error::io("read dump", path, error))?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// What in dump SQL needs ICU, one description per kind found: ICU collations created
/// (`provider = icu`), databases with the ICU locale provider, and columns or indexes naming a
/// predefined ICU collation (`"…-x-icu"`).
pub(crate) fn icu_mentions(sql: impl std::io::BufRead) -> std::io::Result<Vec<&'static str>> {
    let mut found = Vec::new();
    let mut note = |what: &'static str| {
        if !found.contains(&what) {
            found.push(what);
        }
    };
    for line in sql.split(b'\n') {
        let line = String::from_utf8_lossy(&line?).to_ascii_lowercase();
        // pg_dump writes each of these statements on one line that starts with it; a row of
        // COPY data does not start with a keyword.
        if line.starts_with("create collation ") && line.contains("provider = icu") {
            note("ICU collations");
        }
        if line.starts_with("create database ") && line.contains("locale_provider = icu") {
            note("databases with the ICU locale provider");
        }
        if line.contains(" collate ") && line.contains("-x-icu\"") {
            note("predefined ICU collations");
        }
    }
    Ok(found)
}

/// A plain dump, decompressed, to read line by line.
pub(crate) fn plain_reader(path: &Path, format: DumpFormat) -> Result<Box<dyn std::io::BufRead>> {
    let file = File::open(path).map_err(|error| Error::io("open dump", path, error))?;
    let reader: Box<dyn Read> = match format {
        DumpFormat::PlainGzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        DumpFormat::PlainBzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        _ => Box::new(file),
    };
    Ok(Box::new(std::io::BufReader::new(reader)))
}

/// The database a plain dump creates itself (`pg_dump --create`), if it does.
pub(crate) fn plain_creates_database(head: &str) -> Option<String> {
    let line = head.lines().find(|line| line.starts_with("CREATE DATABASE "))?;
    let rest = &line["CREATE DATABASE ".len()..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find("\" ").or_else(|| quoted.find("\";")).unwrap_or(quoted.len());
            quoted[..end].replace("\"\"", "\"")
        }
        None => rest.split([' ', ';']).next().unwrap_or_default().to_owned(),
    })
}

/// An archive's table of contents, as `pg_restore --list --create` prints it: without
/// `--create`, pg_restore hides the entries that belong to the database itself (`DATABASE`,
/// `DATABASE PROPERTIES` and the `COMMENT`, `ACL` and `SECURITY LABEL` on it), which pg_dump
/// (11 and later) always writes.
#[derive(Debug, Clone)]
pub(crate) struct Toc {
    text: String,
}

impl Toc {
    pub(crate) fn new(text: String) -> Self {
        Toc { text }
    }

    fn entries(&self) -> impl Iterator<Item = Vec<&str>> {
        self.text
            .lines()
            .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
            .map(|line| line.split_whitespace().collect())
    }

    /// How many tables have data in the archive.
    pub(crate) fn table_data_count(&self) -> u64 {
        self.entries().filter(|tokens| tokens.get(3..5) == Some(&["TABLE", "DATA"][..])).count()
            as u64
    }

    /// The database the archive creates, if it has its `DATABASE` entry.
    pub(crate) fn database(&self) -> Option<String> {
        // `<id>; <class> <oid> DATABASE - <name> <owner>`; a name may hold spaces, an owner
        // printed by pg_restore is one more token.
        self.entries()
            .find(|tokens| tokens.get(3..5) == Some(&["DATABASE", "-"][..]))
            .filter(|tokens| tokens.len() >= 7)
            .map(|tokens| tokens[5..tokens.len() - 1].join(" "))
    }

    /// The list of only the entries that belong to the database itself, for `pg_restore
    /// --create --use-list` before a table-filtered restore into it.
    pub(crate) fn database_entries(&self) -> String {
        self.text
            .lines()
            .filter(|line| {
                let tokens: Vec<&str> = line.split_whitespace().collect();
                !line.starts_with(';') && is_database_entry(&tokens)
            })
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The schemas of the archive's tables other than `public`, which a table-filtered restore
    /// must create first (pg_dump/pg_restore `--table` leaves them out).
    pub(crate) fn table_schemas(&self) -> Vec<String> {
        let mut schemas: Vec<String> = self
            .entries()
            .filter(|tokens| tokens.get(3) == Some(&"TABLE") && tokens.get(4) != Some(&"DATA"))
            .filter_map(|tokens| tokens.get(4).map(|schema| (*schema).to_owned()))
            .filter(|schema| schema != "public" && schema != "-")
            .collect();
        schemas.sort();
        schemas.dedup();
        schemas
    }

    /// The list without row-level security policies, for `pg_restore --use-list`.
    pub(crate) fn without_policies(&self) -> String {
        self.text
            .lines()
            .filter(|line| {
                line.starts_with(';') || !line.split_whitespace().any(|token| token == "POLICY")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// When pg_dump wrote the archive, from the header (`Archive created at … UTC`; Scion runs
    /// pg_dump with `TZ=UTC`). Other time zones are not parsed.
    pub(crate) fn created_at(&self) -> Option<DateTime<Utc>> {
        let line = self.text.lines().find(|line| line.contains("Archive created at"))?;
        let stamp = line.split("Archive created at").nth(1)?.trim();
        let stamp = stamp.strip_suffix("UTC").or_else(|| stamp.strip_suffix("GMT"))?.trim();
        NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok().map(|naive| naive.and_utc())
    }
}

/// `DATABASE`, `DATABASE PROPERTIES`, and `COMMENT`/`ACL`/`SECURITY LABEL` whose tag is
/// `DATABASE <name>`.
fn is_database_entry(tokens: &[&str]) -> bool {
    matches!(
        tokens.get(3..),
        Some(
            ["DATABASE", "-", ..]
                | ["DATABASE", "PROPERTIES", "-", ..]
                | ["COMMENT" | "ACL", "-", "DATABASE", ..]
                | ["SECURITY", "LABEL", "-", "DATABASE", ..]
        )
    )
}

/// A database's encoding and locale as a `CREATE DATABASE` statement of pg_dump states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CreateDatabase {
    pub(crate) encoding: Option<String>,
    pub(crate) collate: Option<String>,
    pub(crate) ctype: Option<String>,
    /// `libc`, `icu` or `builtin`; pg_dump before 15 writes none (libc).
    pub(crate) provider: Option<String>,
    /// `ICU_LOCALE` or `BUILTIN_LOCALE`.
    pub(crate) provider_locale: Option<String>,
}

/// Reads the first `CREATE DATABASE` statement of `sql` (`WITH KEY = value …`, values quoted
/// as pg_dump quotes literals or bare words).
pub(crate) fn parse_create_database(sql: &str) -> Option<CreateDatabase> {
    let line = sql.lines().find(|line| line.starts_with("CREATE DATABASE "))?;
    let options = &line[line.find(" WITH ")? + " WITH ".len()..];
    let mut found = CreateDatabase::default();
    let mut rest = options.trim_start();
    while let Some((key, after)) = rest.split_once(" = ") {
        let key = key.trim();
        let (value, remainder) = match after.strip_prefix('\'') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices().peekable();
                let mut end = quoted.len();
                while let Some((at, c)) = chars.next() {
                    if c == '\'' {
                        if chars.peek().map(|(_, next)| *next) == Some('\'') {
                            chars.next();
                            value.push('\'');
                        } else {
                            end = at + 1;
                            break;
                        }
                    } else {
                        value.push(c);
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find([' ', ';']).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        match key {
            "ENCODING" => found.encoding = Some(value),
            "LOCALE" => {
                found.collate.get_or_insert_with(|| value.clone());
                found.ctype.get_or_insert(value);
            }
            "LC_COLLATE" => found.collate = Some(value),
            "LC_CTYPE" => found.ctype = Some(value),
            "LOCALE_PROVIDER" => found.provider = Some(value),
            "ICU_LOCALE" | "BUILTIN_LOCALE" => found.provider_locale = Some(value),
            _ => {}
        }
        rest = remainder.trim_start().trim_start_matches(';').trim_start();
    }
    Some(found)
}

/// The total size of the files under `path`.
pub(crate) fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.flatten().map(|entry| size_of(&entry.path())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_needs_icu_in_dump_sql() {
        let sql = "CREATE DATABASE icu_db WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'C.UTF-8' ICU_LOCALE = 'und';\n\
                   CREATE COLLATION public.german (provider = icu, locale = 'de-u-co-phonebk');\n\
                   CREATE TABLE public.tags (tag text COLLATE pg_catalog.\"und-x-icu\");\n\
                   COPY public.notes (body) FROM stdin;\n\
                   a row: create collation (provider = icu) with locale_provider = icu\n";
        assert_eq!(
            icu_mentions(sql.as_bytes()).unwrap(),
            [
                "databases with the ICU locale provider",
                "ICU collations",
                "predefined ICU collations"
            ]
        );
        let libc = "CREATE COLLATION public.c (provider = libc, locale = 'C');\nCOPY t (x) FROM stdin;\nprovider = icu\n";
        assert!(icu_mentions(libc.as_bytes()).unwrap().is_empty());
    }

    /// `pg_restore --list --create` (TZ=UTC) of a real `pg_dump -Fd` (Debian's 15) of a database
    /// `app` owned by `owner`, with a comment, an ACL, a `search_path` setting, a role setting
    /// in it, the tables `app.orders` and `public.items` and a policy on `items`.
    const TOC: &str = include_str!("../testdata/toc-pg15-create.list");

    #[test]
    fn reads_a_table_of_contents() {
        let toc = Toc::new(TOC.to_owned());
        assert_eq!(toc.table_data_count(), 2);
        assert_eq!(toc.database().as_deref(), Some("app"));
        assert_eq!(toc.table_schemas(), vec!["app".to_owned()]);
        assert!(!toc.without_policies().contains("POLICY"));
        assert!(toc.without_policies().contains("TABLE DATA public items"));
        assert!(toc.without_policies().contains("DATABASE PROPERTIES - app"));
        assert_eq!(toc.created_at().unwrap().to_rfc3339(), "2026-12-02T19:28:04+00:00");
        let entries = toc.database_entries();
        let entries: Vec<&str> =
            entries.lines().map(|line| line.split_once(' ').unwrap().1).collect::<Vec<_>>();
        assert_eq!(
            entries,
            [
                "1262 16395 DATABASE - app owner",
                "0 0 COMMENT - DATABASE app owner",
                "0 0 ACL - DATABASE app owner",
                "0 0 DATABASE PROPERTIES - app owner",
            ]
        );
    }

    /// Lines of real `pg_dump --create` output: Debian's 15 (ICU) and PostgreSQL 17 (builtin,
    /// and libc with different collate and ctype).
    #[test]
    fn reads_the_locale_of_create_database() {
        let lines: Vec<&str> = include_str!("../testdata/create-database.sql").lines().collect();
        let icu = parse_create_database(lines[0]).unwrap();
        assert_eq!(
            icu,
            CreateDatabase {
                encoding: Some("UTF8".into()),
                collate: Some("C.UTF-8".into()),
                ctype: Some("C.UTF-8".into()),
                provider: Some("icu".into()),
                provider_locale: Some("en-US".into()),
            }
        );
        let builtin = parse_create_database(lines[1]).unwrap();
        assert_eq!(builtin.provider.as_deref(), Some("builtin"));
        assert_eq!(builtin.provider_locale.as_deref(), Some("C.UTF-8"));
        assert_eq!(builtin.collate.as_deref(), Some("C"));
        let libc = parse_create_database(lines[2]).unwrap();
        assert_eq!(libc.collate.as_deref(), Some("C"));
        assert_eq!(libc.ctype.as_deref(), Some("C.UTF-8"));
        assert_eq!(libc.provider.as_deref(), Some("libc"));
        assert_eq!(libc.provider_locale, None);
        let quoted = parse_create_database(
            "CREATE DATABASE \"x\" WITH TEMPLATE = template0 ENCODING = 'LATIN1' LOCALE = 'it''s';",
        )
        .unwrap();
        assert_eq!(quoted.encoding.as_deref(), Some("LATIN1"));
        assert_eq!(quoted.ctype.as_deref(), Some("it's"));
        assert_eq!(parse_create_database("CREATE TABLE t ();"), None);
    }

    #[test]
    fn finds_create_database_in_plain_dumps() {
        let head = "--\n-- PostgreSQL database dump\n--\nSET x = 1;\nCREATE DATABASE shop WITH TEMPLATE = template0;\n\\connect shop\n";
        assert_eq!(plain_creates_database(head).as_deref(), Some("shop"));
        assert_eq!(
            plain_creates_database("CREATE DATABASE \"My \"\"db\" WITH x;").as_deref(),
            Some("My \"db")
        );
        assert_eq!(plain_creates_database("CREATE TABLE t ();"), None);
    }

    #[test]
    fn detects_formats_by_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.dump"), b"PGDMP\x01").unwrap();
        std::fs::write(dir.path().join("b.sql.gz"), [0x1f, 0x8b, 0, 0]).unwrap();
        std::fs::write(dir.path().join("c.sql.bz2"), b"BZh91AY").unwrap();
        std::fs::write(dir.path().join("d.sql"), b"select 1;").unwrap();
        std::fs::create_dir(dir.path().join("e")).unwrap();
        std::fs::write(dir.path().join("e/toc.dat"), b"PGDMP").unwrap();
        let found: Vec<(String, DumpFormat)> = discover(dir.path())
            .unwrap()
            .into_iter()
            .map(|dump| (dump.database, dump.format))
            .collect();
        assert_eq!(
            found,
            vec![
                ("a".to_owned(), DumpFormat::Custom),
                ("b".to_owned(), DumpFormat::PlainGzip),
                ("c".to_owned(), DumpFormat::PlainBzip2),
                ("d".to_owned(), DumpFormat::Plain),
                ("e".to_owned(), DumpFormat::Directory),
            ]
        );
        std::fs::create_dir(dir.path().join("junk")).unwrap();
        assert!(discover(dir.path()).is_err());
    }
}
