//! Each masking rule as a SQL expression, and a table's rules as one `UPDATE`: pure functions.
//!
//! Keyed rules compute HMAC-SHA-256 with the builtin `sha256()` (PostgreSQL 11 and later) and
//! the two pad blocks bound as `$1` (inner) and `$2` (outer), so the key is never part of the
//! statement's text, a function or a setting. The hash input is the rule's label and the value
//! as text: the same value gives the same output in every table, column and refresh with the
//! same key, so joins and foreign keys keep matching. NULL stays NULL under keyed rules.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use postgres::sql::{quote_ident, quote_literal};
use sha2::Sha256;

use super::Rule;
use super::words;

/// SHA-256's block size, which HMAC pads its key to.
const BLOCK: usize = 64;
/// What the configured secret is stretched into before use, so that a secret of any length
/// gives a 32-byte HMAC key (and a future scheme can change the label).
const DERIVATION_LABEL: &[u8] = b"scion masking v1";

/// The HMAC key's inner and outer pad blocks, bound as `$1` and `$2` of a keyed statement.
#[derive(Clone)]
pub struct KeyBlocks {
    /// `key XOR 0x36…`.
    pub inner: Vec<u8>,
    /// `key XOR 0x5c…`.
    pub outer: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for KeyBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBlocks(***)")
    }
}

impl KeyBlocks {
    /// The blocks for `secret` (the first line of `key_file`).
    pub fn from_secret(secret: &[u8]) -> KeyBlocks {
        let key = hmac_sha256(secret, DERIVATION_LABEL).to_vec();
        let mut inner = vec![0x36_u8; BLOCK];
        let mut outer = vec![0x5c_u8; BLOCK];
        for (index, byte) in key.iter().enumerate() {
            inner[index] ^= byte;
            outer[index] ^= byte;
        }
        KeyBlocks { inner, outer, key }
    }

    /// What the SQL computes for `value` under `label`, computed here (for tests and checks).
    pub fn digest(&self, label: &str, value: &str) -> [u8; 32] {
        hmac_sha256(&self.key, format!("{label}:{value}").as_bytes())
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // Any key length is valid for HMAC, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// One column's part of a table's `UPDATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnRule<'a> {
    /// The column's name, as in the catalog.
    pub(super) column: &'a str,
    /// Its type as `format_type()` prints it (`character varying(40)`, `date`).
    pub(super) sql_type: &'a str,
    /// The rule.
    pub(super) rule: &'a Rule,
}

/// The `UPDATE` for one table, and whether it binds the key blocks; `None` when every rule
/// is `keep`.
pub(super) fn update_statement(
    table_sql: &str,
    columns: &[ColumnRule<'_>],
) -> Option<(String, bool)> {
    let mut sets = Vec::new();
    let mut keyed = false;
    for column in columns {
        if let Some(expression) = expression(column.rule, column.column, column.sql_type) {
            keyed |= column.rule.is_keyed();
            sets.push(format!("{} = {expression}", quote_ident(column.column)));
        }
    }
    if sets.is_empty() {
        return None;
    }
    Some((format!("UPDATE {table_sql} SET {}", sets.join(", ")), keyed))
}

/// One table of a set-based rewrite: its rows copied, masked, into a temporary table, then
/// written back after the group's `TRUNCATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rewrite {
    /// `CREATE TEMP TABLE … AS SELECT <columns> … WITH NO DATA`: the columns' own types.
    pub(super) create: String,
    /// `INSERT INTO <temp> SELECT <masked values> FROM <table>`, binding the key when `keyed`.
    pub(super) fill: String,
    /// Whether `fill` binds the key blocks.
    pub(super) keyed: bool,
    /// `INSERT INTO <table> (<columns>) OVERRIDING SYSTEM VALUE SELECT … FROM <temp>`.
    pub(super) refill: String,
}

/// The rewrite of table `table_sql` through the temporary table `temp`: `columns` are the
/// table's writable (not generated) columns in order, each with its rule when it has one.
pub(super) fn rewrite(table_sql: &str, temp: &str, columns: &[ColumnRule<'_>]) -> Rewrite {
    let names: Vec<String> = columns.iter().map(|column| quote_ident(column.column)).collect();
    let list = names.join(", ");
    let mut keyed = false;
    let values: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(column, name)| match expression(column.rule, column.column, column.sql_type) {
            Some(expression) => {
                keyed |= column.rule.is_keyed();
                expression
            }
            None => name.clone(),
        })
        .collect();
    let temp = quote_ident(temp);
    Rewrite {
        create: format!(
            "CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {list} FROM {table_sql} WITH NO DATA"
        ),
        fill: format!("INSERT INTO {temp} ({list}) SELECT {} FROM {table_sql}", values.join(", ")),
        keyed,
        refill: format!(
            "INSERT INTO {table_sql} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {temp}"
        ),
    }
}

/// The value `rule` gives column `column` (of type `sql_type`), or `None` for `keep`.
pub(super) fn expression(rule: &Rule, column: &str, sql_type: &str) -> Option<String> {
    let value = quote_ident(column);
    let text = format!("{value}::text");
    let body = match rule {
        Rule::Keep => return None,
        Rule::Null => "NULL".to_owned(),
        Rule::Constant { value } => quote_literal(value),
        Rule::Sql { expression } => format!("({expression})"),
        Rule::Partial { first, last, mask } => {
            let (first, last, mask) = (*first, *last, quote_literal(mask));
            format!(
                "CASE WHEN length({text}) <= {keep} THEN repeat({mask}, length({text})) \
                 ELSE left({text}, {first}) || repeat({mask}, length({text}) - {keep}) || right({text}, {last}) END",
                keep = u64::from(first) + u64::from(last),
            )
        }
        keyed => {
            let body = keyed_body(keyed, &value);
            let hash = keyed_hash(keyed.name(), &text);
            format!(
                "CASE WHEN {value} IS NULL THEN NULL ELSE (SELECT {body} FROM (SELECT {hash} AS h) AS k) END"
            )
        }
    };
    Some(format!("({body})::{sql_type}"))
}

/// HMAC-SHA-256 of `label:value` with the pads bound as `$1` and `$2`.
fn keyed_hash(label: &str, text: &str) -> String {
    format!(
        "sha256($2::bytea || sha256($1::bytea || convert_to({} || {text}, 'UTF8')))",
        quote_literal(&format!("{label}:"))
    )
}

/// A non-negative integer from `bytes` bytes of the hash `h` at `offset` (0-based).
fn number(offset: u32, bytes: u32) -> String {
    format!(
        "('x' || encode(substr(k.h, {}, {bytes}), 'hex'))::bit({})::bigint",
        offset + 1,
        bytes * 8
    )
}

/// A word of `list`, picked by three bytes of the hash at `offset`.
fn pick(list: &[&str], offset: u32) -> String {
    let mut array = String::from("(ARRAY[");
    for (index, word) in list.iter().enumerate() {
        if index > 0 {
            array.push(',');
        }
        array.push_str(&quote_literal(word));
    }
    let _ = write!(array, "])[1 + {} % {}]", number(offset, 3), list.len());
    array
}

/// What a keyed rule computes from the row's hash `k.h` (and `value`, the quoted column).
fn keyed_body(rule: &Rule, value: &str) -> String {
    match rule {
        Rule::Hash { length: None } => "encode(k.h, 'hex')".to_owned(),
        Rule::Hash { length: Some(length) } => format!("left(encode(k.h, 'hex'), {length})"),
        Rule::Email => format!(
            "lower({}) || '.' || lower({}) || '.' || encode(substr(k.h, 9, 8), 'hex') || '@' || {}",
            pick(words::FIRST_NAMES, 0),
            pick(words::LAST_NAMES, 3),
            pick(words::EMAIL_DOMAINS, 6),
        ),
        Rule::Name => {
            format!("{} || ' ' || {}", pick(words::FIRST_NAMES, 0), pick(words::LAST_NAMES, 3))
        }
        Rule::FirstName => pick(words::FIRST_NAMES, 0),
        Rule::LastName => pick(words::LAST_NAMES, 3),
        // 555-0100 to 555-0199 are the numbers reserved for fiction.
        Rule::Phone => format!(
            "'+1-555-01' || lpad(({} % 100)::text, 2, '0') || '-' || lpad(({} % 10000)::text, 4, '0')",
            number(0, 3),
            number(3, 3)
        ),
        Rule::Address => format!(
            "(1 + {} % 9899)::text || ' ' || {} || ' ' || {} || ', ' || {}",
            number(0, 3),
            pick(words::STREETS, 3),
            pick(words::STREET_SUFFIXES, 6),
            pick(words::CITIES, 9),
        ),
        Rule::DateShift { days } => format!(
            "{value} + (({} % {}) - {days}) * interval '1 day'",
            number(0, 6),
            u64::from(*days) * 2 + 1
        ),
        Rule::Number { min, max } => {
            format!("{min}::numeric + ({} % ({max}::numeric - {min}::numeric + 1))", number(0, 6))
        }
        Rule::Keep
        | Rule::Null
        | Rule::Constant { .. }
        | Rule::Partial { .. }
        | Rule::Sql { .. } => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_per_rule() {
        let cases: &[(Rule, &str, &str, &[&str])] = &[
            (Rule::Null, "note", "text", &["(NULL)::text"]),
            (Rule::Constant { value: "it's".into() }, "c", "text", &["('it''s')::text"]),
            (Rule::Sql { expression: "upper(c)".into() }, "c", "text", &["((upper(c)))::text"]),
            (
                Rule::Hash { length: None },
                "email",
                "text",
                &[
                    "CASE WHEN \"email\" IS NULL THEN NULL",
                    "sha256($2::bytea || sha256($1::bytea || convert_to('hash:' || \"email\"::text, 'UTF8')))",
                    "encode(k.h, 'hex')",
                ],
            ),
            (Rule::Hash { length: Some(12) }, "c", "text", &["left(encode(k.h, 'hex'), 12)"]),
            (
                Rule::Email,
                "Mail",
                "character varying(80)",
                &[
                    "'email:' || \"Mail\"::text",
                    "'@' || (ARRAY['example.com'",
                    ")::character varying(80)",
                ],
            ),
            (Rule::Phone, "p", "text", &["'+1-555-01' || lpad("]),
            (
                Rule::DateShift { days: 10 },
                "born",
                "date",
                &["\"born\" + ((", "% 21) - 10) * interval '1 day'", ")::date"],
            ),
            (
                Rule::Number { min: -5, max: 5 },
                "n",
                "integer",
                &["-5::numeric + (", "(5::numeric - -5::numeric + 1)"],
            ),
            (
                Rule::Partial { first: 2, last: 3, mask: "#".into() },
                "card",
                "text",
                &[
                    "WHEN length(\"card\"::text) <= 5 THEN repeat('#', length(\"card\"::text))",
                    "left(\"card\"::text, 2) || repeat('#', length(\"card\"::text) - 5) || right(\"card\"::text, 3)",
                ],
            ),
        ];
        for (rule, column, sql_type, fragments) in cases {
            let Some(sql) = expression(rule, column, sql_type) else {
                panic!("{rule:?} gave no expression");
            };
            for fragment in *fragments {
                assert!(sql.contains(fragment), "{rule:?}: {sql}\nlacks {fragment}");
            }
            assert_eq!(sql.contains("$1"), rule.is_keyed(), "{rule:?}: {sql}");
        }
        assert_eq!(expression(&Rule::Keep, "c", "text"), None);
    }

    #[test]
    fn a_table_is_one_update_that_binds_the_key_only_when_a_rule_needs_it() {
        let (email, null, keep) = (Rule::Email, Rule::Null, Rule::Keep);
        let column = |column, rule| ColumnRule { column, sql_type: "text", rule };
        let Some((sql, keyed)) = update_statement(
            "\"public\".\"users\"",
            &[column("email", &email), column("note", &null)],
        ) else {
            panic!("no statement");
        };
        assert!(sql.starts_with("UPDATE \"public\".\"users\" SET \"email\" = "), "{sql}");
        assert!(sql.contains(", \"note\" = (NULL)::text"), "{sql}");
        assert!(keyed);
        let Some((_, keyed)) = update_statement("t", &[column("note", &null)]) else {
            panic!("no statement");
        };
        assert!(!keyed);
        assert_eq!(update_statement("t", &[column("id", &keep)]), None);
    }

    #[test]
    fn a_rewrite_copies_masked_values_out_and_every_column_back() {
        let (email, keep) = (Rule::Email, Rule::Keep);
        let columns = [
            ColumnRule { column: "id", sql_type: "integer", rule: &keep },
            ColumnRule { column: "email", sql_type: "text", rule: &email },
        ];
        let users = rewrite("\"public\".\"users\"", "scion_mask_0", &columns);
        assert_eq!(
            users.create,
            "CREATE TEMP TABLE \"scion_mask_0\" ON COMMIT DROP AS SELECT \"id\", \"email\" FROM \"public\".\"users\" WITH NO DATA"
        );
        assert!(users.fill.starts_with("INSERT INTO \"scion_mask_0\" (\"id\", \"email\") SELECT \"id\", (CASE WHEN \"email\" IS NULL"), "{}", users.fill);
        assert!(users.fill.ends_with(" FROM \"public\".\"users\""), "{}", users.fill);
        assert!(users.keyed);
        assert_eq!(
            users.refill,
            "INSERT INTO \"public\".\"users\" (\"id\", \"email\") OVERRIDING SYSTEM VALUE SELECT \"id\", \"email\" FROM \"scion_mask_0\""
        );
        let plain = rewrite("t", "scion_mask_1", &columns[..1]);
        assert!(!plain.keyed);
        assert_eq!(plain.fill, "INSERT INTO \"scion_mask_1\" (\"id\") SELECT \"id\" FROM t");
    }

    #[test]
    fn key_blocks_are_hmac_pads_and_hide_the_key_from_debug() {
        let blocks = KeyBlocks::from_secret(b"secret");
        assert_eq!((blocks.inner.len(), blocks.outer.len()), (64, 64));
        // Past the 32-byte derived key the pads are the bare constants.
        assert!(blocks.inner[32..].iter().all(|byte| *byte == 0x36));
        assert!(blocks.outer[32..].iter().all(|byte| *byte == 0x5c));
        assert_eq!(format!("{blocks:?}"), "KeyBlocks(***)");
        assert_ne!(
            blocks.digest("hash", "a"),
            KeyBlocks::from_secret(b"other").digest("hash", "a")
        );
        assert_eq!(
            blocks.digest("hash", "a"),
            KeyBlocks::from_secret(b"secret").digest("hash", "a")
        );
    }
}
