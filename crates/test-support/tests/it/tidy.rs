//! Tidy checks (rust-analyzer's tidy tests are the model): rules of ARCHITECTURE.md that a
//! reader would otherwise have to enforce.
//!
//! - The dependency edges between workspace crates are exactly [`ALLOWED_EDGES`], the table
//!   ARCHITECTURE.md shows. Normal dependencies only: dev-dependencies (test fixtures, a crate's
//!   own tests running the binaries) may reach further.
//! - Only `postgres` touches files inside a data directory: no PGDATA file name in the product
//!   code (`src/`, before its `#[cfg(test)]` module; comments aside) of any other crate, except
//!   the files of [`PGDATA_BREACHES`], which may only shrink.
//! - Every `.rs` file opens with a `//!` line saying what it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every workspace crate and the workspace crates it depends on. Keep it the same as the table
/// in ARCHITECTURE.md ("Dependencies between crates").
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("exec", &[]),
    ("api-types", &[]),
    ("storage", &["exec"]),
    ("postgres", &["exec"]),
    ("retrieval", &["exec", "postgres"]),
    ("webhooks", &["api-types"]),
    ("engine", &["api-types", "exec", "postgres", "retrieval", "storage"]),
    ("http-api", &["api-types", "engine"]),
    ("ui", &[]),
    ("server", &["api-types", "engine", "http-api", "retrieval", "storage", "ui", "webhooks"]),
    ("api-client", &["api-types"]),
    ("cli", &["api-client", "api-types", "exec", "webhooks"]),
    ("test-support", &["exec", "postgres", "storage"]),
    ("bench", &["api-client", "api-types", "exec", "postgres", "storage", "test-support"]),
];

/// File names inside a data directory that only `postgres` may use.
const PGDATA_NAMES: &[&str] = &[
    "postmaster.pid",
    "PG_VERSION",
    "postgresql.conf",
    "pg_hba.conf",
    "postmaster.opts",
    "pg_wal",
    "global/pg_control",
];

/// Product files outside `postgres` that still look for PGDATA files themselves: none since the
/// engine's reshaping (issue 19). The test fails when a listed file no longer breaches, so the
/// list only shrinks: never add to it, ask `postgres` instead.
const PGDATA_BREACHES: &[&str] = &[];

/// Server messages that name a PGDATA file but do not touch one: the classifier of libpq errors
/// matches them. `(file, text)`; the test fails when a text is no longer in its file.
const MESSAGE_TEXTS: &[(&str, &str)] = &[("crates/retrieval/src/error.rs", "no pg_hba.conf entry")];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root")
}

/// Every `.rs` file under `dir`, as paths relative to the workspace root.
fn rust_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(root, &path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path.strip_prefix(root).expect("a file under the root").to_owned());
        }
    }
}

fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("the crates directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn crate_dependencies_are_the_ones_architecture_md_allows() {
    let root = workspace_root();
    #[allow(clippy::disallowed_methods, reason = "the tidy test asks cargo itself, as CI would")]
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<&str> =
        packages.iter().map(|package| package["name"].as_str().unwrap()).collect();
    let actual: BTreeMap<&str, BTreeSet<&str>> = packages
        .iter()
        .map(|package| {
            let edges = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .map(|dependency| dependency["name"].as_str().unwrap())
                .filter(|name| names.contains(name))
                .collect();
            (package["name"].as_str().unwrap(), edges)
        })
        .collect();
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED_EDGES
        .iter()
        .map(|(name, edges)| (*name, edges.iter().copied().collect()))
        .collect();
    for (name, edges) in &actual {
        let Some(allowed) = allowed.get(name) else {
            panic!("crate {name} is not in ALLOWED_EDGES (nor in ARCHITECTURE.md's table)");
        };
        let extra: Vec<_> = edges.difference(allowed).collect();
        let missing: Vec<_> = allowed.difference(edges).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{name}: depends on {extra:?} which ARCHITECTURE.md does not allow, and no longer on \
             {missing:?} which it shows; change the code or both tables"
        );
    }
    let gone: Vec<_> = allowed.keys().filter(|name| !actual.contains_key(*name)).collect();
    assert!(gone.is_empty(), "ALLOWED_EDGES lists crates that do not exist: {gone:?}");
}

/// Whether `line` names a PGDATA file as a whole word (`pg_wal`, not `pg_wal_lsn_diff`).
fn names_pgdata_file(line: &str) -> Option<&'static str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    PGDATA_NAMES.iter().copied().find(|name| {
        line.match_indices(name).any(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + name.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
    })
}

/// The lines of `text` that name a PGDATA file in code: comments and the `#[cfg(test)]` module
/// (at the end of a file, by the project's convention) left out.
fn pgdata_lines(file: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut code = code.to_owned();
        for (_, message) in MESSAGE_TEXTS.iter().filter(|(path, _)| *path == file) {
            code = code.replace(message, "");
        }
        if let Some(name) = names_pgdata_file(&code) {
            found.push(format!("{file}:{}: {name}", number + 1));
        }
    }
    found
}

#[test]
fn only_postgres_names_pgdata_files() {
    let root = workspace_root();
    let mut breaches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for dir in crate_dirs(&root) {
        // `test-support` is no product code: its source primary plays the source's DBA, who
        // edits that server's pg_hba.conf.
        if dir.file_name().is_some_and(|name| name == "postgres" || name == "test-support") {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&root, &dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            let file = file.to_string_lossy().into_owned();
            let lines = pgdata_lines(&file, &text);
            if !lines.is_empty() {
                breaches.insert(file, lines);
            }
        }
    }
    let new: Vec<&String> = breaches
        .iter()
        .filter(|(file, _)| !PGDATA_BREACHES.contains(&file.as_str()))
        .flat_map(|(_, lines)| lines)
        .collect();
    assert!(
        new.is_empty(),
        "only `postgres` touches files inside a data directory; ask it instead:\n{}",
        new.iter().map(|line| line.as_str()).collect::<Vec<_>>().join("\n")
    );
    let mended: Vec<&str> =
        PGDATA_BREACHES.iter().copied().filter(|file| !breaches.contains_key(*file)).collect();
    assert!(mended.is_empty(), "no longer breaches, remove it from PGDATA_BREACHES: {mended:?}");
    for (file, message) in MESSAGE_TEXTS {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.contains(message),
            "{file} no longer has {message:?}: remove it from MESSAGE_TEXTS"
        );
    }
}

#[test]
fn the_pgdata_check_sees_code_and_skips_comments_and_tests() {
    let text = "//! Reads `postmaster.pid`.\nlet a = dir.join(\"pg_wal\");\nlet b = \"pg_wal_lsn_diff\";\n\
                // PG_VERSION\nlet c = \"no pg_hba.conf entry\";\n#[cfg(test)]\nlet d = \"PG_VERSION\";\n";
    assert_eq!(
        pgdata_lines("crates/retrieval/src/error.rs", text),
        ["crates/retrieval/src/error.rs:2: pg_wal"]
    );
    assert_eq!(
        pgdata_lines("crates/engine/src/x.rs", text),
        ["crates/engine/src/x.rs:2: pg_wal", "crates/engine/src/x.rs:5: pg_hba.conf"]
    );
}

#[test]
fn every_rust_file_opens_with_a_module_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in crate_dirs(&root) {
        rust_files(&root, &dir, &mut files);
    }
    assert!(files.len() > 100, "found only {} .rs files under crates/", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            !text.starts_with("//!")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` first line: {missing:?}");
}
