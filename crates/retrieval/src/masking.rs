//! Masking of personal data at snapshot time: the `[retrieval.masking]` section and its
//! validation, the keyed secret, and the entry points the preparation step calls.
//!
//! - `sql` — each rule as a SQL expression (pure functions, table-tested);
//! - `words` — the word lists deterministic fakes pick from, compiled into the binary;
//! - `catalog` — the rules checked against the target's catalog (unknown tables and columns,
//!   types, unique constraints, foreign keys) and the groups of tables rewritten together,
//!   pure functions over what the catalog says;
//! - `pii` — the PII detector, a pure function over column names and sampled values;
//! - `run` — reads the catalog, refuses unmasked PII when asked, and applies the rules, a
//!   set-based rewrite per group of tables joined by foreign keys, groups in parallel over
//!   admin sessions;
//! - `copy` — a temporary server on a copy of prepared data: the PII check on demand, and the
//!   masking of data whose unmasked state a snapshot kept (`keep_unmasked`).
//!
//! The key never reaches the data directory: it is read from `key_file` at every run, turned
//! into the two HMAC pad blocks here, and sent as bound parameters of each `UPDATE`, so no
//! function body, setting or catalog row holds it.

mod catalog;
mod copy;
mod pii;
mod run;
mod sql;
mod words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use catalog::{CatalogColumn, ForeignKey, UniqueIndex, validate_rules};
pub use copy::{CheckReport, check_copy, mask_copy};
pub use pii::{ColumnSample, Finding, PiiKind, detect};
pub use run::MaskingRun;
pub(crate) use run::{mask_target, refuse_target};
pub use sql::KeyBlocks;

/// Tables masked at once by default: each is one `UPDATE` on its own admin session.
pub const DEFAULT_PARALLEL_TABLES: u32 = 2;
/// Rows sampled per table by the PII check.
pub const DEFAULT_SAMPLE_ROWS: u32 = 200;
/// Settings of the server masking runs on: segments of WAL that held original values are
/// removed at the next checkpoint instead of renamed for reuse with their contents.
pub const TARGET_SETTINGS: &[(&str, &str)] = &[("wal_recycle", "off")];
/// The most tables masked at once.
const MAX_PARALLEL_TABLES: u32 = 64;

/// `[retrieval.masking]`: rules applied to the prepared data before its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// A file whose first line is the secret that keys the deterministic rules (hash, fakes,
    /// date shift, number); readable by the engine only. Read at every run, never copied.
    pub key_file: Option<PathBuf>,
    /// Rules per table (`"schema.table"`, or `"table"` for `public`), then per column.
    pub tables: BTreeMap<String, BTreeMap<String, Rule>>,
    /// The databases masked; empty means every database of the target (templates excluded).
    pub databases: Vec<String>,
    /// Refuse to prepare a snapshot while a column that looks personal has no rule (the PII
    /// check, run on the target before masking).
    pub refuse_unmasked_pii: bool,
    /// Tables masked at once.
    pub parallel_tables: u32,
    /// Tables masked by `UPDATE` (those of an inheritance tree; the others are rewritten into
    /// new files and keep no dead row) are rewritten compactly afterwards (`VACUUM FULL`), so
    /// that the snapshot holds no dead row versions with the original values and no doubled
    /// table.
    pub compact: bool,
    /// Rows sampled per table by the PII check.
    pub sample_rows: u32,
    /// Keep the unmasked data too (logical full refreshes): each refresh records its data
    /// unmasked, protected, beside the head of `main`, then masks the same dataset in place for
    /// the head, so clones that name no snapshot get masked data.
    pub keep_unmasked: bool,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            key_file: None,
            tables: BTreeMap::new(),
            databases: Vec::new(),
            refuse_unmasked_pii: false,
            parallel_tables: DEFAULT_PARALLEL_TABLES,
            compact: true,
            sample_rows: DEFAULT_SAMPLE_ROWS,
            keep_unmasked: false,
        }
    }
}

/// What one column becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Left as it is (and not reported by the PII check).
    Keep,
    /// `NULL`.
    Null,
    /// The same value in every row.
    Constant {
        /// The value, as SQL text (cast to the column's type).
        value: String,
    },
    /// The keyed hash (HMAC-SHA-256) in hex, cut to `length` characters when given.
    Hash {
        /// Characters kept (8 to 64).
        #[serde(default)]
        length: Option<u32>,
    },
    /// A fake e-mail address (`first.last.<hash>@example.com`), distinct per distinct input.
    Email,
    /// A fake full name.
    Name,
    /// A fake first name.
    FirstName,
    /// A fake last name.
    LastName,
    /// A fake phone number in the reserved `+1-555-01xx-xxxx` range.
    Phone,
    /// A fake street address.
    Address,
    /// The date or timestamp moved by up to `days` days either way.
    DateShift {
        /// The largest shift.
        days: u32,
    },
    /// A number between `min` and `max`, both included.
    Number {
        /// The smallest.
        min: i64,
        /// The largest.
        max: i64,
    },
    /// The first `first` and last `last` characters kept, the rest replaced by `mask`.
    Partial {
        /// Characters kept at the start.
        #[serde(default)]
        first: u32,
        /// Characters kept at the end.
        #[serde(default)]
        last: u32,
        /// The character that replaces the others.
        #[serde(default = "default_mask")]
        mask: String,
    },
    /// A SQL expression over the row's columns (`upper(email)`, say).
    Sql {
        /// The expression.
        expression: String,
    },
}

fn default_mask() -> String {
    "*".to_owned()
}

impl Rule {
    /// The rule's name as written in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Keep => "keep",
            Rule::Null => "null",
            Rule::Constant { .. } => "constant",
            Rule::Hash { .. } => "hash",
            Rule::Email => "email",
            Rule::Name => "name",
            Rule::FirstName => "first_name",
            Rule::LastName => "last_name",
            Rule::Phone => "phone",
            Rule::Address => "address",
            Rule::DateShift { .. } => "date_shift",
            Rule::Number { .. } => "number",
            Rule::Partial { .. } => "partial",
            Rule::Sql { .. } => "sql",
        }
    }

    /// The type category (`pg_type.typcategory`) the rule needs, and its description;
    /// `None` for rules that fit any type.
    pub fn category(&self) -> Option<(char, &'static str)> {
        match self {
            Rule::Hash { .. }
            | Rule::Email
            | Rule::Name
            | Rule::FirstName
            | Rule::LastName
            | Rule::Phone
            | Rule::Address
            | Rule::Partial { .. } => Some(('S', "a text")),
            Rule::DateShift { .. } => Some(('D', "a date or timestamp")),
            Rule::Number { .. } => Some(('N', "a numeric")),
            Rule::Keep | Rule::Null | Rule::Constant { .. } | Rule::Sql { .. } => None,
        }
    }

    /// Whether the rule reads the key: every rule of a type category but `partial`.
    pub fn is_keyed(&self) -> bool {
        self.category().is_some() && !matches!(self, Rule::Partial { .. })
    }

    /// Whether distinct inputs keep distinct outputs (up to a 2^-64 chance), so the rule may
    /// sit on a unique column.
    pub fn keeps_distinct(&self) -> bool {
        matches!(self, Rule::Keep | Rule::Hash { length: None } | Rule::Email | Rule::Sql { .. })
            || matches!(self, Rule::Hash { length: Some(length) } if *length >= 16)
    }
}

/// A table named by a rule, split into schema and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema (`public` when the key names none).
    pub schema: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Parses `"schema.table"` or `"table"`; quoting is not needed (names are taken as
    /// written, case included).
    pub fn parse(key: &str) -> Option<TableName> {
        let (schema, table) = key.split_once('.').unwrap_or(("public", key));
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= crate::config::MAX_NAME_BYTES
                && !part.contains('.')
                && !part.chars().any(char::is_control)
        };
        (valid(schema) && valid(table))
            .then(|| TableName { schema: schema.to_owned(), table: table.to_owned() })
    }

    /// The quoted `schema.table` for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            postgres::sql::quote_ident(&self.schema),
            postgres::sql::quote_ident(&self.table)
        )
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

impl MaskingConfig {
    /// Whether there is anything to do: a rule that changes data, or the PII refusal.
    pub fn is_active(&self) -> bool {
        self.refuse_unmasked_pii
            || self.tables.values().flat_map(BTreeMap::values).any(|rule| *rule != Rule::Keep)
    }

    /// This configuration for data whose databases were renamed after masking (a snapshot's):
    /// `databases` names them as `renames` made them.
    #[must_use]
    pub fn renamed(&self, renames: &BTreeMap<String, String>) -> MaskingConfig {
        let databases =
            self.databases.iter().map(|name| renames.get(name).unwrap_or(name).clone()).collect();
        MaskingConfig { databases, ..self.clone() }
    }

    /// The rules by parsed table name (only valid names; `problems` reports the others).
    pub fn rules(&self) -> BTreeMap<TableName, BTreeMap<String, Rule>> {
        self.tables
            .iter()
            .filter_map(|(key, columns)| Some((TableName::parse(key)?, columns.clone())))
            .collect()
    }

    /// Every problem found without a server, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let keyed = self.tables.values().flat_map(BTreeMap::values).any(Rule::is_keyed);
        match &self.key_file {
            Some(path) if !path.is_absolute() => problems
                .push(format!("masking.key_file {} must be an absolute path", path.display())),
            Some(path) if !path.is_file() => problems.push(format!(
                "masking.key_file {} is not a readable file",
                path.display()
            )),
            Some(_) => {}
            None if keyed => problems.push(
                "masking.key_file is required: the hash, fake, date_shift and number rules are keyed by its secret"
                    .to_owned(),
            ),
            None => {}
        }
        if self.parallel_tables == 0 || self.parallel_tables > MAX_PARALLEL_TABLES {
            problems.push(format!(
                "masking.parallel_tables must be 1 to {MAX_PARALLEL_TABLES}, not {}",
                self.parallel_tables
            ));
        }
        if self.sample_rows == 0 {
            problems.push("masking.sample_rows must be at least 1".to_owned());
        }
        for database in &self.databases {
            if let Err(problem) = crate::config::check_database_name(database) {
                problems.push(format!("masking.databases: {problem}"));
            }
        }
        let mut seen = BTreeMap::new();
        for (key, columns) in &self.tables {
            let Some(table) = TableName::parse(key) else {
                problems.push(format!(
                    "masking.tables.{key:?}: not a table name (\"schema.table\" or \"table\")"
                ));
                continue;
            };
            if let Some(other) = seen.insert(table.clone(), key) {
                problems.push(format!("masking.tables: {other:?} and {key:?} both name {table}"));
            }
            for (column, rule) in columns {
                let at = format!("masking.tables.\"{key}\".{column}");
                if column.is_empty() || column.len() > crate::config::MAX_NAME_BYTES {
                    problems.push(format!("{at}: not a column name"));
                }
                if let Some(problem) = rule_problem(rule) {
                    problems.push(format!("{at}: {problem}"));
                }
            }
        }
        problems
    }
}

/// What is wrong with a rule on its own, if anything.
fn rule_problem(rule: &Rule) -> Option<String> {
    match rule {
        Rule::Constant { value } if value.contains('\0') => {
            Some("a constant cannot hold a NUL character".to_owned())
        }
        Rule::Hash { length: Some(length) } if !(8..=64).contains(length) => {
            Some(format!("hash length must be 8 to 64 characters, not {length}"))
        }
        Rule::DateShift { days: 0 } => Some("date_shift days must be at least 1".to_owned()),
        Rule::Number { min, max } if min > max => {
            Some(format!("number min ({min}) is greater than max ({max})"))
        }
        Rule::Partial { mask, .. } if mask.chars().count() != 1 || mask.contains('\0') => {
            Some(format!("partial mask must be one character, not {mask:?}"))
        }
        Rule::Sql { expression } if expression.trim().is_empty() || expression.contains(';') => {
            Some("sql expression must be one non-empty expression (no `;`)".to_owned())
        }
        _ => None,
    }
}

/// The secret in `key_file`: its first line, which must not be empty.
pub(crate) fn read_key(path: &Path) -> crate::Result<Vec<u8>> {
    let key = crate::config::read_password_file(path)
        .map_err(|error| crate::Error::io("read the masking key", path, error))?;
    if key.trim().is_empty() {
        return Err(crate::Error::invalid(format!(
            "masking.key_file {} holds no key on its first line",
            path.display()
        )));
    }
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> MaskingConfig {
        match toml::from_str(text) {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn rules_parse_from_inline_tables() {
        let config = parse(
            r#"
key_file = "/etc/hostname"
[tables."public.customers"]
email = { rule = "email" }
name = { rule = "name" }
card = { rule = "partial", last = 4 }
born = { rule = "date_shift", days = 30 }
[tables.orders]
note = { rule = "null" }
"#,
        );
        let rules = config.rules();
        let customers = &rules[&TableName { schema: "public".into(), table: "customers".into() }];
        assert_eq!(customers["email"], Rule::Email);
        assert_eq!(customers["card"], Rule::Partial { first: 0, last: 4, mask: "*".into() });
        assert_eq!(customers["born"], Rule::DateShift { days: 30 });
        assert!(rules.contains_key(&TableName { schema: "public".into(), table: "orders".into() }));
        assert!(config.is_active());
    }

    #[test]
    fn an_unknown_rule_or_key_is_refused_by_the_parser() {
        assert!(
            toml::from_str::<MaskingConfig>("[tables.t]\nc = { rule = \"scramble\" }").is_err()
        );
        assert!(
            toml::from_str::<MaskingConfig>("[tables.t]\nc = { rule = \"hash\", size = 3 }")
                .is_err()
        );
    }

    #[test]
    fn problems_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("[tables.t]\nc = { rule = \"hash\" }", "masking.key_file is required"),
            ("key_file = \"relative\"", "must be an absolute path"),
            (
                "key_file = \"/etc/hostname\"\n[tables.t]\nc = { rule = \"number\", min = 5, max = 1 }",
                "masking.tables.\"t\".c: number min (5) is greater than max (1)",
            ),
            (
                "[tables.t]\nc = { rule = \"partial\", mask = \"ab\" }",
                "partial mask must be one character",
            ),
            ("[tables.t]\nc = { rule = \"sql\", expression = \"1; drop table t\" }", "no `;`"),
            ("[tables.\"a.b.c\"]\nc = { rule = \"null\" }", "not a table name"),
            (
                "[tables.t]\nc = { rule = \"null\" }\n[tables.\"public.t\"]\nd = { rule = \"null\" }",
                "both name public.t",
            ),
            ("parallel_tables = 0", "masking.parallel_tables must be 1 to 64"),
        ];
        for (text, expected) in cases {
            let problems = parse(text).problems();
            assert!(
                problems.iter().any(|problem| problem.contains(expected)),
                "{text}: {problems:?} lacks {expected:?}"
            );
        }
        assert_eq!(parse("[tables.t]\nc = { rule = \"null\" }").problems(), Vec::<String>::new());
    }

    #[test]
    fn renamed_databases_are_named_as_renamed() {
        let config = parse("databases = [\"crm_prod\", \"billing\"]");
        let renames = BTreeMap::from([("crm_prod".to_owned(), "crm".to_owned())]);
        assert_eq!(config.renamed(&renames).databases, ["crm", "billing"]);
        assert_eq!(config.renamed(&renames).tables, config.tables);
    }

    #[test]
    fn only_injective_rules_keep_distinct_values() {
        assert!(Rule::Email.keeps_distinct());
        assert!(Rule::Hash { length: None }.keeps_distinct());
        assert!(!Rule::Hash { length: Some(8) }.keeps_distinct());
        assert!(!Rule::Name.keeps_distinct());
        assert!(!Rule::Constant { value: "x".into() }.keeps_distinct());
        assert!(!Rule::Null.keeps_distinct());
    }
}
