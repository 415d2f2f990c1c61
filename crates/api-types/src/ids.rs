//! Validated identifiers: clone IDs, snapshot IDs and branch names, with DBLab's rules checked by hand.
//!
//! The rules are DBLab's regular expressions (reference §1.3), plus length limits and, for snapshot IDs, a ban on
//! empty, `.` and `..` path components. DBLab has neither; Scion adds them because these strings become dataset
//! names and directory paths, and ZFS names are limited to 255 bytes:
//! `<pool>/branch/<branch:64>/<clone:128>/r<N>@<YYYYMMDDHHMMSS>` still fits with a pool name of up to 20 bytes.
//!
//! Request types keep these fields as plain strings (an empty clone ID means "generate one"); the server parses
//! them with these types to answer 400 with a precise message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest clone ID Scion accepts (DBLab has no limit; see the module doc for the budget).
pub const MAX_CLONE_ID_LEN: usize = 128;
/// Longest branch name Scion accepts.
pub const MAX_BRANCH_NAME_LEN: usize = 64;
/// Longest snapshot ID Scion accepts: the ZFS limit for a full snapshot name.
pub const MAX_SNAPSHOT_ID_LEN: usize = 255;

/// Which kind of identifier failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A clone ID.
    Clone,
    /// A snapshot ID.
    Snapshot,
    /// A branch name.
    Branch,
}

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Clone => "clone ID",
            Self::Snapshot => "snapshot ID",
            Self::Branch => "branch name",
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Self::Clone => "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
            Self::Snapshot => "^[a-zA-Z0-9_][a-zA-Z0-9_.:/-]*@[a-zA-Z0-9_][a-zA-Z0-9_.:-]*$",
            Self::Branch => "^[a-zA-Z0-9_][a-zA-Z0-9_-]*$",
        }
    }
}

/// Why an identifier is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The identifier is empty.
    Empty(IdKind),
    /// The identifier is longer than the limit.
    TooLong {
        /// Which identifier.
        kind: IdKind,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A character is not allowed at its position.
    BadChar {
        /// Which identifier.
        kind: IdKind,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A snapshot ID without the `@` that separates dataset and snapshot name.
    MissingAt,
    /// A snapshot ID whose dataset has an empty, `.` or `..` path component.
    BadPathComponent,
}

impl IdError {
    /// The kind of identifier that failed.
    pub fn kind(&self) -> IdKind {
        match self {
            Self::Empty(kind) | Self::TooLong { kind, .. } | Self::BadChar { kind, .. } => *kind,
            Self::MissingAt | Self::BadPathComponent => IdKind::Snapshot,
        }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        let noun = kind.noun();
        match self {
            Self::Empty(_) => write!(f, "{noun} must not be empty"),
            Self::TooLong { len, max, .. } => {
                write!(f, "{noun} is {len} bytes long; at most {max} are allowed")
            }
            Self::BadChar { ch, at, .. } => {
                write!(f, "{noun} has character {ch:?} at byte {at}; it must match {}", kind.rule())
            }
            Self::MissingAt => {
                write!(
                    f,
                    "{noun} must have the form <dataset>@<name>; it must match {}",
                    kind.rule()
                )
            }
            Self::BadPathComponent => {
                write!(f, "{noun} must not contain empty, \".\" or \"..\" path components")
            }
        }
    }
}

impl std::error::Error for IdError {}

/// Checks `text` against `[first][rest]*` with byte offsets counted from `offset` for error messages.
fn check_chars(
    kind: IdKind,
    text: &str,
    offset: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
) -> Result<(), IdError> {
    let mut chars = text.char_indices();
    match chars.next() {
        None => return Err(IdError::Empty(kind)),
        Some((at, ch)) if !first(ch) => return Err(IdError::BadChar { kind, ch, at: offset + at }),
        Some(_) => {}
    }
    match chars.find(|&(_, ch)| !rest(ch)) {
        Some((at, ch)) => Err(IdError::BadChar { kind, ch, at: offset + at }),
        None => Ok(()),
    }
}

fn check_len(kind: IdKind, text: &str, max: usize) -> Result<(), IdError> {
    match text.len() {
        0 => Err(IdError::Empty(kind)),
        len if len > max => Err(IdError::TooLong { kind, len, max }),
        _ => Ok(()),
    }
}

fn alnum(ch: char) -> bool {
    ch.is_ascii_alphanumeric()
}

fn alnum_underscore(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_'
}

/// Declares a validated string newtype with the usual conversions and serde support.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $validate:path, $kind:expr, $max:expr, $example:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn parse(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                $validate(&text)?;
                Ok(Self(text))
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::identifier($kind.noun(), $kind.rule(), $max, $example)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A clone ID: `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`, at most [`MAX_CLONE_ID_LEN`] bytes.
    CloneId,
    validate_clone_id,
    IdKind::Clone,
    MAX_CLONE_ID_LEN,
    "feature-x-test"
);

id_type!(
    /// A branch name: `^[a-zA-Z0-9_][a-zA-Z0-9_-]*$`, at most [`MAX_BRANCH_NAME_LEN`] bytes.
    BranchName,
    validate_branch_name,
    IdKind::Branch,
    MAX_BRANCH_NAME_LEN,
    "main"
);

id_type!(
    /// A snapshot ID `<dataset>@<name>`, e.g. `pool/branch/main/r0@20240501120000`:
    /// `^[a-zA-Z0-9_][a-zA-Z0-9_.:/-]*@[a-zA-Z0-9_][a-zA-Z0-9_.:-]*$`, at most [`MAX_SNAPSHOT_ID_LEN`] bytes,
    /// and no empty, `.` or `..` component in the dataset path.
    SnapshotId,
    validate_snapshot_id,
    IdKind::Snapshot,
    MAX_SNAPSHOT_ID_LEN,
    "scion/data@snapshot_20240501120000"
);

fn validate_clone_id(text: &str) -> Result<(), IdError> {
    check_len(IdKind::Clone, text, MAX_CLONE_ID_LEN)?;
    check_chars(IdKind::Clone, text, 0, alnum, |ch| alnum_underscore(ch) || ch == '.' || ch == '-')
}

fn validate_branch_name(text: &str) -> Result<(), IdError> {
    check_len(IdKind::Branch, text, MAX_BRANCH_NAME_LEN)?;
    check_chars(IdKind::Branch, text, 0, alnum_underscore, |ch| alnum_underscore(ch) || ch == '-')
}

fn validate_snapshot_id(text: &str) -> Result<(), IdError> {
    let kind = IdKind::Snapshot;
    check_len(kind, text, MAX_SNAPSHOT_ID_LEN)?;
    let (dataset, name) = text.split_once('@').ok_or(IdError::MissingAt)?;
    if dataset.is_empty() {
        return Err(IdError::BadChar { kind, ch: '@', at: 0 });
    }
    check_chars(kind, dataset, 0, alnum_underscore, |ch| {
        alnum_underscore(ch) || matches!(ch, '.' | ':' | '/' | '-')
    })?;
    let name_offset = dataset.len() + 1;
    if name.is_empty() {
        return Err(IdError::MissingAt);
    }
    check_chars(kind, name, name_offset, alnum_underscore, |ch| {
        alnum_underscore(ch) || matches!(ch, '.' | ':' | '-')
    })?;
    if dataset.split('/').any(|component| matches!(component, "" | "." | "..")) {
        return Err(IdError::BadPathComponent);
    }
    Ok(())
}

impl BranchName {
    /// The name of the branch every pool has.
    pub const MAIN: &'static str = "main";

    /// The `main` branch.
    pub fn main() -> Self {
        Self(Self::MAIN.to_owned())
    }
}

impl SnapshotId {
    /// The dataset part, before the `@`.
    pub fn dataset(&self) -> &str {
        self.0.split_once('@').map_or(self.0.as_str(), |(dataset, _)| dataset)
    }

    /// The snapshot name, after the `@`.
    pub fn name(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, name)| name)
    }

    /// The pool: the first component of the dataset path.
    pub fn pool(&self) -> &str {
        let dataset = self.dataset();
        dataset.split_once('/').map_or(dataset, |(pool, _)| pool)
    }
}
