//! The source's settings carried into a data directory: its preload libraries
//! (`shared_preload_libraries`, `session_preload_libraries`, `local_preload_libraries`) and
//! their modules' settings (`cron.database_name`), which a restored copy needs to load as the
//! source did.
//!
//! Choice: they go into `postgresql.carried.conf`, written once by retrieval into the golden
//! copy (so every snapshot and clone of it has them) and included from `postgresql.conf`
//! *before* Scion's own file, so Scion's and the user's settings win, except that a preload
//! list the configuration sets is merged with the carried one
//! ([`crate::ServerSettings::with_carried`]) rather than dropping the source's libraries.

use std::fmt::Write as _;
use std::path::Path;

use crate::conf::{self, INCLUDE_LINE, quote_conf_value, unquote_conf_value};
use crate::error::{Error, Result};
use crate::user::OsUser;

/// The carried settings' file inside the data directory.
pub const CARRIED_CONF: &str = "postgresql.carried.conf";
/// The line that includes [`CARRIED_CONF`] from `postgresql.conf`, before [`INCLUDE_LINE`].
pub const CARRIED_INCLUDE_LINE: &str = "include_if_exists = 'postgresql.carried.conf'";
/// The settings that name libraries to preload, as lists.
pub const PRELOAD_SETTINGS: &[&str] =
    &["shared_preload_libraries", "session_preload_libraries", "local_preload_libraries"];
const HEADER: &str = "# The source's preload libraries and their settings, carried by Scion's \
                      retrieval into this copy.\n";

/// Writes `settings` into [`CARRIED_CONF`] of `data_dir` (replacing what it held), includes it
/// from `postgresql.conf` before Scion's own file, and gives both to `user`. Names and values
/// are checked as a user's settings are.
pub fn write(data_dir: &Path, user: &OsUser, settings: &[(String, String)]) -> Result<()> {
    conf::check_settings(settings.iter().map(|(name, value)| (name.as_str(), value.as_str())))?;
    let mut text = String::from(HEADER);
    for (name, value) in settings {
        let _ = writeln!(text, "{name} = {}", quote_conf_value(value));
    }
    let path = data_dir.join(CARRIED_CONF);
    std::fs::write(&path, text).map_err(|error| Error::io("write", &path, error))?;
    user.own_path(&path)?;
    let main_conf = data_dir.join("postgresql.conf");
    let current = std::fs::read_to_string(&main_conf)
        .map_err(|error| Error::io("read", main_conf.clone(), error))?;
    if let Some(updated) = with_carried_include(&current) {
        std::fs::write(&main_conf, updated)
            .map_err(|error| Error::io("write", main_conf.clone(), error))?;
        user.own_path(&main_conf)?;
    }
    Ok(())
}

/// The settings [`CARRIED_CONF`] of `data_dir` holds; none when there is no such file.
pub fn read(data_dir: &Path) -> Result<Vec<(String, String)>> {
    let path = data_dir.join(CARRIED_CONF);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("read", path, error)),
    };
    Ok(parse(&text))
}

/// The `name = 'value'` lines of a file this module wrote.
fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once(" = "))
        .map(|(name, value)| (name.trim().to_owned(), unquote_conf_value(value.trim())))
        .collect()
}

/// Adds [`CARRIED_INCLUDE_LINE`] to `postgresql.conf` text unless it is there: before Scion's
/// include line when there is one, else at the end (Scion's comes after it at the next start).
fn with_carried_include(conf: &str) -> Option<String> {
    if conf.lines().any(|line| line.trim() == CARRIED_INCLUDE_LINE) {
        return None;
    }
    let block = format!(
        "# The source's preload libraries (before Scion's settings, which win).\n{CARRIED_INCLUDE_LINE}\n"
    );
    let mut text = String::with_capacity(conf.len() + block.len() + 1);
    let mut placed = false;
    for line in conf.lines() {
        if !placed && line.trim() == INCLUDE_LINE {
            text.push_str(&block);
            placed = true;
        }
        text.push_str(line);
        text.push('\n');
    }
    if !placed {
        text.push('\n');
        text.push_str(&block);
    }
    Some(text)
}

/// The libraries of a preload list (`'a, "b"'` → `a`, `b`).
pub fn libraries(list: &str) -> Vec<String> {
    list.split(',')
        .map(|name| name.trim().trim_matches('"').trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `carried`'s libraries, then `configured`'s that are not among them, as one list.
pub fn merge_libraries(carried: &str, configured: &str) -> String {
    let mut merged = libraries(carried);
    for library in libraries(configured) {
        if !merged.contains(&library) {
            merged.push(library);
        }
    }
    merged.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_include_comes_once_and_before_scions() {
        let with_scion = conf::with_include_line("max_connections = 100\n").unwrap();
        let text = with_carried_include(&with_scion).unwrap();
        let carried = text.find(CARRIED_INCLUDE_LINE).unwrap();
        let scion = text.find(INCLUDE_LINE).unwrap();
        assert!(carried < scion, "{text}");
        assert_eq!(with_carried_include(&text), None);
        let alone = with_carried_include("x = 1").unwrap();
        assert!(
            alone.starts_with("x = 1\n") && alone.ends_with(&format!("{CARRIED_INCLUDE_LINE}\n"))
        );
        // Scion's include, added at the next start, comes after it.
        assert!(conf::with_include_line(&alone).unwrap().ends_with(&format!("{INCLUDE_LINE}\n")));
    }

    #[test]
    fn written_values_read_back() {
        let settings = vec![
            ("shared_preload_libraries".to_owned(), "pg_cron,\"pg stat\"".to_owned()),
            ("cron.database_name".to_owned(), r"it's \ app".to_owned()),
        ];
        let mut text = String::from(HEADER);
        for (name, value) in &settings {
            let _ = writeln!(text, "{name} = {}", quote_conf_value(value));
        }
        assert_eq!(parse(&text), settings);
    }

    #[test]
    fn preload_lists_merge_without_repeats() {
        assert_eq!(libraries(" pg_cron, \"auto_explain\" ,,"), ["pg_cron", "auto_explain"]);
        assert_eq!(
            merge_libraries("pg_cron,pg_stat_statements", "pg_stat_statements, auto_explain"),
            "pg_cron,pg_stat_statements,auto_explain"
        );
        assert_eq!(merge_libraries("", "auto_explain"), "auto_explain");
    }
}
