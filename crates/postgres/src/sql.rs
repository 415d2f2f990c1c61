//! Quoting for the SQL Scion builds itself: utility statements such as `CREATE ROLE` take no
//! bind parameters, so names and literals are quoted here, the way Postgres' own
//! `quote_ident` and `quote_literal` do.

use crate::error::{Error, Result};

/// Postgres truncates longer names (NAMEDATALEN - 1 bytes); Scion refuses them instead.
pub const MAX_NAME_BYTES: usize = 63;

/// Quotes an identifier: always double-quoted, inner `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal: inner `'` doubled; with an `E` prefix and doubled backslashes when
/// the text has a backslash, so the result means the same whatever
/// `standard_conforming_strings` says.
pub fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Checks that `name` can be a role name as given: not empty, no NUL, at most 63 bytes, not
/// reserved (`pg_` prefix, `public`, `none`).
pub fn check_role_name(name: &str) -> Result<()> {
    let invalid =
        |reason: &str| Error::InvalidRoleName { name: name.to_owned(), reason: reason.to_owned() };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid("longer than 63 bytes; Postgres would truncate it"));
    }
    if name.starts_with("pg_") {
        return Err(invalid("the pg_ prefix is reserved for system roles"));
    }
    if matches!(name, "public" | "none") {
        return Err(invalid("reserved by Postgres"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x'; DROP ROLE postgres; --"), "\"x'; DROP ROLE postgres; --\"");
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\'b"), r"E'a\\''b'");
    }

    #[test]
    fn checks_role_names() {
        assert!(check_role_name("dev_alice").is_ok());
        assert!(check_role_name("Ünïcødé ✓").is_ok());
        assert!(check_role_name(&"x".repeat(63)).is_ok());
        for bad in ["", "a\0b", "pg_monitor", "public", "none"] {
            assert!(check_role_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_role_name(&"é".repeat(32)).is_err(), "64 bytes");
    }
}
