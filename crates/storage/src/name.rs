//! Validated names of datasets and snapshots.
//!
//! A name that passed these checks is safe to join to a pool root as a path and to pass to `zfs`
//! or `btrfs` as an argument on every backend: no traversal, no option-like leading `-`, no
//! characters a backend gives meaning to (`@`, `%`, `#`, spaces, control bytes).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The longest segment (one `/`-separated component, or a snapshot tag).
pub const MAX_SEGMENT_LEN: usize = 64;
/// The longest dataset name, so that `<pool>/<dataset>@<tag>` stays under ZFS's 255-byte limit
/// for pool names of a sensible length.
pub const MAX_DATASET_LEN: usize = 160;
/// The most segments in a dataset name.
pub const MAX_DEPTH: usize = 16;

/// A dataset name: segments joined by `/`, each `[A-Za-z0-9_][A-Za-z0-9_.:-]*`.
///
/// Nested names such as `branch/main/c1/r0` are children of `branch/main/c1`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

/// A snapshot name: a dataset name, `@`, and a tag with the segment rules (`data@s1`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotName {
    dataset: DatasetName,
    tag: String,
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName { name: name.to_owned(), reason: reason.into() }
}

fn check_segment(whole: &str, segment: &str) -> Result<()> {
    if segment.is_empty() {
        return Err(invalid(whole, "empty segment"));
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(invalid(whole, format!("segment longer than {MAX_SEGMENT_LEN} bytes")));
    }
    let mut bytes = segment.bytes();
    let first = bytes.next().unwrap_or(b'.');
    // `.`, `..`, hidden names and a leading `-` (read as an option by the tools) all fail here.
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(invalid(whole, "a segment must start with a letter, digit or `_`"));
    }
    if let Some(bad) = bytes.find(|b| !(b.is_ascii_alphanumeric() || b"_.:-".contains(b))) {
        return Err(invalid(whole, format!("character {:?} not allowed", char::from(bad))));
    }
    Ok(())
}

impl DatasetName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.len() > MAX_DATASET_LEN {
            return Err(invalid(&name, format!("longer than {MAX_DATASET_LEN} bytes")));
        }
        let mut depth = 0;
        for segment in name.split('/') {
            check_segment(&name, segment)?;
            depth += 1;
        }
        if depth > MAX_DEPTH {
            return Err(invalid(&name, format!("more than {MAX_DEPTH} segments")));
        }
        Ok(DatasetName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The enclosing dataset, if the name has more than one segment.
    pub fn parent(&self) -> Option<DatasetName> {
        self.0.rsplit_once('/').map(|(parent, _)| DatasetName(parent.to_owned()))
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> Vec<DatasetName> {
        let mut ancestors = Vec::new();
        let mut current = self.parent();
        while let Some(parent) = current {
            current = parent.parent();
            ancestors.push(parent);
        }
        ancestors.reverse();
        ancestors
    }

    /// True when `self` lies strictly below `other` (`a/b` is below `a`).
    pub fn is_below(&self, other: &DatasetName) -> bool {
        self.0.len() > other.0.len()
            && self.0.starts_with(other.as_str())
            && self.0.as_bytes()[other.0.len()] == b'/'
    }

    /// The snapshot of this dataset tagged `tag`.
    pub fn snapshot(&self, tag: &str) -> Result<SnapshotName> {
        SnapshotName::new(self.clone(), tag)
    }
}

impl SnapshotName {
    /// Checks `tag` and joins it to `dataset`.
    pub fn new(dataset: DatasetName, tag: &str) -> Result<Self> {
        check_segment(&format!("{dataset}@{tag}"), tag)?;
        Ok(SnapshotName { dataset, tag: tag.to_owned() })
    }

    /// The dataset this is a snapshot of.
    pub fn dataset(&self) -> &DatasetName {
        &self.dataset
    }

    /// The part after `@`.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl FromStr for DatasetName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        DatasetName::new(name)
    }
}

impl FromStr for SnapshotName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let (dataset, tag) =
            name.split_once('@').ok_or_else(|| invalid(name, "a snapshot name needs `@`"))?;
        SnapshotName::new(DatasetName::new(dataset)?, tag)
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.dataset, self.tag)
    }
}

impl TryFrom<String> for DatasetName {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        DatasetName::new(name)
    }
}

impl TryFrom<String> for SnapshotName {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        name.parse()
    }
}

impl From<DatasetName> for String {
    fn from(name: DatasetName) -> String {
        name.0
    }
}

impl From<SnapshotName> for String {
    fn from(name: SnapshotName) -> String {
        name.to_string()
    }
}

impl AsRef<str> for DatasetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_nested_names() {
        for name in ["data", "branch/main/c1/r0", "a_b.c:d-e", "_x", "9", "pgdata-15"] {
            let parsed: DatasetName = name.parse().unwrap();
            assert_eq!(parsed.to_string(), name);
        }
        let snapshot: SnapshotName = "branch/main/c1/r0@20260101120000".parse().unwrap();
        assert_eq!(snapshot.dataset().as_str(), "branch/main/c1/r0");
        assert_eq!(snapshot.tag(), "20260101120000");
        assert_eq!(snapshot.to_string(), "branch/main/c1/r0@20260101120000");
    }

    #[test]
    fn rejects_hostile_names() {
        let long_segment = "a".repeat(MAX_SEGMENT_LEN + 1);
        let deep = vec!["a"; MAX_DEPTH + 1].join("/");
        for name in [
            "",
            "/",
            "/abs",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "../x",
            ".hidden",
            "-rf",
            "a/-R",
            "a b",
            "a@b",
            "a%b",
            "a#b",
            "a\nb",
            "a\0b",
            "ä",
            "a\\b",
            "a*",
            "$(x)",
            "a;b",
            &long_segment,
            &deep,
        ] {
            assert!(DatasetName::new(name).is_err(), "{name:?} was accepted");
        }
        for name in ["data", "data@", "@s1", "data@s1@s2", "data@a/b", "data@..", "data@-x"] {
            assert!(name.parse::<SnapshotName>().is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn relations_between_names() {
        let name = DatasetName::new("a/b/c").unwrap();
        assert_eq!(name.parent().unwrap().as_str(), "a/b");
        let ancestors: Vec<_> = name.ancestors().iter().map(ToString::to_string).collect();
        assert_eq!(ancestors, ["a", "a/b"]);
        assert!(name.is_below(&DatasetName::new("a").unwrap()));
        assert!(!DatasetName::new("ab").unwrap().is_below(&DatasetName::new("a").unwrap()));
        assert!(!name.is_below(&name));
    }
}
