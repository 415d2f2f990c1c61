//! The rules checked against a database's catalog: tables and columns that exist, types that
//! fit the rule, unique indexes whose values would collide, foreign keys whose two sides would
//! stop matching. A pure function over what the catalog says, so every refusal is table-tested.

use std::collections::{BTreeMap, BTreeSet};

use super::{Rule, TableName};

/// A column of a user table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    /// Its table.
    pub table: TableName,
    /// Its name.
    pub column: String,
    /// `format_type()` of it.
    pub sql_type: String,
    /// `pg_type.typcategory`: `S` string, `N` numeric, `D` date/time, `I` network address…
    pub category: char,
    /// `NOT NULL`.
    pub not_null: bool,
    /// A generated column, which cannot be written.
    pub generated: bool,
}

/// A unique index (or primary key, or unique constraint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    /// Its table.
    pub table: TableName,
    /// Its name.
    pub name: String,
    /// Its key columns (expression columns are left out).
    pub columns: Vec<String>,
    /// `NULLS NOT DISTINCT` (PostgreSQL 15 and later).
    pub nulls_not_distinct: bool,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Its name.
    pub name: String,
    /// The referencing table.
    pub table: TableName,
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub referenced_table: TableName,
    /// The referenced columns, in the same order.
    pub referenced_columns: Vec<String>,
}

/// What one database's catalog says about its user tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Every column of every user table.
    pub columns: Vec<CatalogColumn>,
    /// Unique indexes.
    pub unique: Vec<UniqueIndex>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Inheritance that is not partitioning: each parent with one of its children.
    pub inheritance: Vec<(TableName, TableName)>,
}

impl Catalog {
    /// The column, if the table has it.
    pub fn column(&self, table: &TableName, column: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|found| found.table == *table && found.column == column)
    }

    /// Whether the table is a parent or a child in an inheritance tree (not partitioning).
    pub fn is_inherited(&self, table: &TableName) -> bool {
        self.inheritance.iter().any(|(parent, child)| parent == table || child == table)
    }

    /// The table and every table that inherits from it, at any depth.
    pub fn with_descendants(&self, table: &TableName) -> Vec<TableName> {
        let mut found = vec![table.clone()];
        let mut next = 0;
        while let Some(current) = found.get(next).cloned() {
            for (parent, child) in &self.inheritance {
                if *parent == current && !found.contains(child) {
                    found.push(child.clone());
                }
            }
            next += 1;
        }
        found
    }

    /// Whether the table exists.
    pub fn has_table(&self, table: &TableName) -> bool {
        self.columns.iter().any(|found| found.table == *table)
    }
}

/// The groups of tables a set-based rewrite handles together: each masked table with every table
/// that references one of the group by a foreign key (`TRUNCATE` takes a referenced table only
/// with its referencing ones), split into groups that share no key. `None` for a group that
/// holds a table of an inheritance tree, which is masked by `UPDATE` instead (a parent's
/// `TRUNCATE` and `SELECT` would take its children's rows).
pub(super) fn rewrite_groups(
    masked: &BTreeSet<TableName>,
    catalog: &Catalog,
) -> Vec<(BTreeSet<TableName>, bool)> {
    let mut closure = masked.clone();
    loop {
        let referencing: Vec<TableName> = catalog
            .foreign_keys
            .iter()
            .filter(|key| closure.contains(&key.referenced_table) && !closure.contains(&key.table))
            .map(|key| key.table.clone())
            .collect();
        if referencing.is_empty() {
            break;
        }
        closure.extend(referencing);
    }
    let mut groups: Vec<BTreeSet<TableName>> =
        closure.into_iter().map(|table| BTreeSet::from([table])).collect();
    for key in &catalog.foreign_keys {
        let find = |groups: &[BTreeSet<TableName>], table: &TableName| {
            groups.iter().position(|group| group.contains(table))
        };
        if let (Some(here), Some(there)) =
            (find(&groups, &key.table), find(&groups, &key.referenced_table))
            && here != there
        {
            let moved = groups.remove(here.max(there));
            groups[here.min(there)].extend(moved);
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let plain = group.iter().all(|table| !catalog.is_inherited(table));
            (group, plain)
        })
        .collect()
}

/// The rule a column gets (`keep` when none is written).
fn rule_of<'a>(
    rules: &'a BTreeMap<TableName, BTreeMap<String, Rule>>,
    table: &TableName,
    column: &str,
) -> &'a Rule {
    rules.get(table).and_then(|columns| columns.get(column)).unwrap_or(&Rule::Keep)
}

/// The problems of `rules` in one database (`database`, for the messages), and the tables the
/// rules name that this database lacks (an error only when no masked database has them).
pub fn validate_rules(
    rules: &BTreeMap<TableName, BTreeMap<String, Rule>>,
    catalog: &Catalog,
    database: &str,
) -> (Vec<String>, Vec<TableName>) {
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (table, columns) in rules {
        if !catalog.has_table(table) {
            missing.push(table.clone());
            continue;
        }
        for (column, rule) in columns {
            let at = format!("masking.tables.\"{table}\".{column} (database {database})");
            let Some(found) = catalog.column(table, column) else {
                problems.push(format!("{at}: table {table} has no column {column:?}"));
                continue;
            };
            if let Some(problem) = type_problem(rule, found) {
                problems.push(format!("{at}: {problem}"));
            }
        }
    }
    for index in &catalog.unique {
        for column in &index.columns {
            let rule = rule_of(rules, &index.table, column);
            let nulls_stay_distinct = *rule == Rule::Null && !index.nulls_not_distinct;
            if !rule.keeps_distinct() && !nulls_stay_distinct {
                problems.push(format!(
                    "masking.tables.\"{}\".{column} (database {database}): the {} rule would make values of unique index {} collide; use hash (full length), email or keep",
                    index.table,
                    rule.name(),
                    index.name
                ));
            }
        }
    }
    for key in &catalog.foreign_keys {
        for (column, referenced) in key.columns.iter().zip(&key.referenced_columns) {
            let here = rule_of(rules, &key.table, column);
            let there = rule_of(rules, &key.referenced_table, referenced);
            if here != there && *here != Rule::Null {
                problems.push(format!(
                    "masking.tables.\"{}\".{column} (database {database}): foreign key {} joins it to {}.{referenced}, whose rule is {} where this one is {}; give both sides the same rule so the key still matches",
                    key.table,
                    key.name,
                    key.referenced_table,
                    there.name(),
                    here.name()
                ));
            }
        }
    }
    (problems, missing)
}

fn type_problem(rule: &Rule, column: &CatalogColumn) -> Option<String> {
    if column.generated && *rule != Rule::Keep {
        return Some(
            "a generated column cannot be masked (mask the columns it is computed from)".to_owned(),
        );
    }
    if *rule == Rule::Null && column.not_null {
        return Some("the column is NOT NULL, so the null rule cannot apply".to_owned());
    }
    let wanted = rule.category()?;
    (column.category != wanted.0).then(|| {
        format!(
            "the {} rule needs {} column, and this one is {}",
            rule.name(),
            wanted.1,
            column.sql_type
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableName {
        TableName { schema: "public".into(), table: name.into() }
    }

    fn column(table_name: &str, name: &str, sql_type: &str, category: char) -> CatalogColumn {
        CatalogColumn {
            table: table(table_name),
            column: name.into(),
            sql_type: sql_type.into(),
            category,
            not_null: false,
            generated: false,
        }
    }

    fn shop() -> Catalog {
        let mut id = column("customers", "id", "integer", 'N');
        id.not_null = true;
        Catalog {
            columns: vec![
                id,
                column("customers", "email", "text", 'S'),
                column("customers", "born", "date", 'D'),
                column("orders", "customer_email", "text", 'S'),
                column("orders", "note", "text", 'S'),
                CatalogColumn { generated: true, ..column("orders", "total", "numeric", 'N') },
            ],
            unique: vec![
                UniqueIndex {
                    table: table("customers"),
                    name: "customers_pkey".into(),
                    columns: vec!["id".into()],
                    nulls_not_distinct: false,
                },
                UniqueIndex {
                    table: table("customers"),
                    name: "customers_email_key".into(),
                    columns: vec!["email".into()],
                    nulls_not_distinct: false,
                },
            ],
            foreign_keys: vec![ForeignKey {
                name: "orders_customer_email_fkey".into(),
                table: table("orders"),
                columns: vec!["customer_email".into()],
                referenced_table: table("customers"),
                referenced_columns: vec!["email".into()],
            }],
            inheritance: Vec::new(),
        }
    }

    fn rules(entries: &[(&str, &str, Rule)]) -> BTreeMap<TableName, BTreeMap<String, Rule>> {
        let mut rules: BTreeMap<TableName, BTreeMap<String, Rule>> = BTreeMap::new();
        for (table_name, column, rule) in entries {
            rules.entry(table(table_name)).or_default().insert((*column).into(), rule.clone());
        }
        rules
    }

    #[test]
    fn rules_against_the_catalog() {
        type Case = (Vec<(&'static str, &'static str, Rule)>, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (
                vec![
                    ("customers", "email", Rule::Email),
                    ("orders", "customer_email", Rule::Email),
                ],
                None,
            ),
            (
                vec![("customers", "email", Rule::Email), ("orders", "customer_email", Rule::Null)],
                None,
            ),
            (vec![("customers", "nope", Rule::Null)], Some("has no column \"nope\"")),
            (
                vec![("customers", "born", Rule::Email)],
                Some("needs a text column, and this one is date"),
            ),
            (
                vec![("customers", "email", Rule::DateShift { days: 3 })],
                Some("needs a date or timestamp"),
            ),
            (vec![("customers", "id", Rule::Null)], Some("NOT NULL")),
            (vec![("orders", "total", Rule::Null)], Some("generated column")),
            (
                vec![
                    ("customers", "email", Rule::Constant { value: "x".into() }),
                    ("orders", "customer_email", Rule::Constant { value: "x".into() }),
                ],
                Some(
                    "the constant rule would make values of unique index customers_email_key collide",
                ),
            ),
            (
                vec![("customers", "email", Rule::Null), ("orders", "customer_email", Rule::Null)],
                None,
            ),
            (
                vec![("customers", "email", Rule::Email)],
                Some(
                    "foreign key orders_customer_email_fkey joins it to public.customers.email, whose rule is email where this one is keep",
                ),
            ),
            (
                vec![
                    ("customers", "email", Rule::Hash { length: None }),
                    ("orders", "customer_email", Rule::Email),
                ],
                Some("whose rule is hash where this one is email"),
            ),
        ];
        for (entries, expected) in cases {
            let (problems, missing) = validate_rules(&rules(&entries), &shop(), "shop");
            assert!(missing.is_empty());
            match expected {
                None => assert!(problems.is_empty(), "{entries:?}: {problems:?}"),
                Some(expected) => assert!(
                    problems.iter().any(|problem| problem.contains(expected)),
                    "{entries:?}: {problems:?} lacks {expected:?}"
                ),
            }
        }
    }

    #[test]
    fn rewrite_groups_take_referencing_tables_and_split_on_no_key() {
        let mut catalog = shop();
        catalog.columns.push(column("audit", "note", "text", 'S'));
        catalog.columns.push(column("refunds", "order_id", "integer", 'N'));
        catalog.foreign_keys.push(ForeignKey {
            name: "refunds_order_fkey".into(),
            table: table("refunds"),
            columns: vec!["order_id".into()],
            referenced_table: table("orders"),
            referenced_columns: vec!["id".into()],
        });
        let masked = BTreeSet::from([table("customers"), table("audit")]);
        let groups = rewrite_groups(&masked, &catalog);
        assert_eq!(
            groups,
            vec![
                (BTreeSet::from([table("audit")]), true),
                (BTreeSet::from([table("customers"), table("orders"), table("refunds")]), true),
            ]
        );
        catalog.inheritance.push((table("refunds"), table("refunds_2025")));
        catalog.inheritance.push((table("refunds_2025"), table("refunds_2025_q1")));
        let groups = rewrite_groups(&masked, &catalog);
        assert!(!groups[1].1, "an inheritance tree is masked by UPDATE");
        assert_eq!(
            catalog.with_descendants(&table("refunds")),
            [table("refunds"), table("refunds_2025"), table("refunds_2025_q1")]
        );
    }

    #[test]
    fn a_table_the_database_lacks_is_reported_apart() {
        let (problems, missing) =
            validate_rules(&rules(&[("invoices", "email", Rule::Email)]), &shop(), "shop");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(missing, vec![table("invoices")]);
    }
}
