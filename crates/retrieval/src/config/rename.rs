//! `database_rename`: DBLab's rules for a rename map (§6.8 of the reference), shared by logical
//! runs and physical promotions.

use std::collections::{BTreeMap, BTreeSet};

use super::{CONNECTION_DATABASE, DatabaseConfig, MAX_NAME_BYTES};

/// DBLab's rule for database names in renames: `^[a-zA-Z_][a-zA-Z0-9_-]*$`, at most 63 bytes.
pub fn check_rename_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "{name:?} is not a valid database name (letters, digits, `_` and `-`, not starting with a digit or `-`)"
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("{name:?} is longer than {MAX_NAME_BYTES} bytes"));
    }
    Ok(())
}

/// Every problem of a rename map (DBLab §6.8): names, self-renames, the connection database,
/// two sources with one target, chains; with an explicit database list, sources must be in it
/// and targets must not collide with a database that keeps its name.
pub fn rename_problems(
    renames: &BTreeMap<String, String>,
    databases: &BTreeMap<String, DatabaseConfig>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
    for (old, new) in renames {
        for name in [old, new] {
            if let Err(problem) = check_rename_name(name) {
                problems.push(format!("database_rename: {problem}"));
            }
        }
        if old == new {
            problems.push(format!("database_rename: {old:?} is renamed to itself"));
        }
        for name in [old, new] {
            if name == CONNECTION_DATABASE {
                problems.push(format!(
                    "database_rename: {name:?} is the connection database and cannot be renamed or be a rename target"
                ));
            }
        }
        if let Some(first) = targets.insert(new, old) {
            problems.push(format!(
                "database_rename: {first:?} and {old:?} are both renamed to {new:?}"
            ));
        }
    }
    for (old, new) in renames {
        if old != new
            && let Some(next) = renames.get(new)
        {
            problems.push(format!(
                "database_rename: chained rename {old:?} → {new:?} → {next:?} is not allowed ({new:?} is both a target and a source)"
            ));
        }
    }
    if !databases.is_empty() {
        let kept: BTreeSet<&str> = databases
            .keys()
            .map(String::as_str)
            .filter(|name| !renames.contains_key(*name))
            .collect();
        for (old, new) in renames {
            if !databases.contains_key(old) {
                problems
                    .push(format!("database_rename: {old:?} is not among the retrieved databases"));
            }
            if kept.contains(new.as_str()) {
                problems.push(format!("database_rename: {old:?} → {new:?} collides with the retrieved database {new:?}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::renames;

    #[test]
    fn rename_rules() {
        let none = BTreeMap::new();
        assert!(
            rename_problems(
                &renames(&[("myapp_production", "myapp"), ("analytics_prod", "analytics")]),
                &none
            )
            .is_empty()
        );
        let check = |pairs: &[(&str, &str)], needle: &str| {
            let found = rename_problems(&renames(pairs), &none);
            assert!(found.iter().any(|p| p.contains(needle)), "{pairs:?}: {found:?}");
        };
        check(&[("a", "a")], "renamed to itself");
        check(&[("a", "c"), ("b", "c")], "both renamed to \"c\"");
        check(&[("a", "b"), ("b", "c")], "chained rename \"a\" → \"b\" → \"c\"");
        check(&[("postgres", "main")], "connection database");
        check(&[("app", "postgres")], "connection database");
        check(&[("1abc", "x")], "not a valid database name");
        check(&[("a b", "x")], "not a valid database name");
        check(&[("a", "")], "not a valid database name");
        check(&[("a", &"x".repeat(64))], "longer than 63");
        // Hyphens are allowed, as in DBLab.
        assert!(rename_problems(&renames(&[("my-app_prod", "my-app")]), &none).is_empty());
    }

    #[test]
    fn renames_against_an_explicit_database_list() {
        let databases: BTreeMap<String, DatabaseConfig> = ["app", "shop"]
            .iter()
            .map(|name| ((*name).to_owned(), DatabaseConfig::default()))
            .collect();
        let found = rename_problems(&renames(&[("other", "x"), ("app", "shop")]), &databases);
        assert!(found.iter().any(|p| p.contains("\"other\" is not among")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("collides")), "{found:?}");
    }
}
