//! The masking check on the wire (`POST /admin/masking/check`, Scion's): the personal-looking
//! columns without a masking rule, and what is wrong with the rules.

use serde::{Deserialize, Serialize};

/// `POST /admin/masking/check` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MaskingCheck {
    /// The snapshot whose data was read (through a temporary clone of it).
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// Whether that snapshot's data was masked; its unruled columns hold the source's values
    /// either way.
    pub snapshot_masked: bool,
    /// The databases checked (as the snapshot names them, after renames).
    pub databases: Vec<String>,
    /// The columns that look personal and have no rule; empty when none.
    pub columns: Vec<UnmaskedColumn>,
    /// What is wrong with the rules against the data (unknown tables and columns, types,
    /// unique indexes, foreign keys), each naming its configuration key; empty when nothing.
    pub problems: Vec<String>,
}

impl MaskingCheck {
    /// Whether nothing was found: no unruled personal column, no problem.
    pub fn is_clean(&self) -> bool {
        self.columns.is_empty() && self.problems.is_empty()
    }
}

/// A column that looks personal and has no masking rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnmaskedColumn {
    /// The database.
    pub database: String,
    /// The table's schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// What it looks like: `email`, `phone`, `name`, `card_number`, `ip_address`, `address`,
    /// `birth_date` or `text_with_email`.
    pub kind: String,
    /// Why: its name, or how many sampled values matched.
    pub why: String,
}
