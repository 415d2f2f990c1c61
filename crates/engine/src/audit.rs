//! The whole-pool audit at start: what in the pool no record of the store accounts for.
//!
//! Every dataset and snapshot in the pool is one of: recorded (a clone's or a warm clone's
//! dataset, a branch's dataset, a catalog snapshot and the dataset it is of, the data dataset
//! in use), a container of other datasets (`branch`, `branch/<b>`, `branch/<b>/<clone>`), or a
//! leftover. A leftover that an intent in the store names (an
//! operation recorded the name before creating it, then never finished) is removed; any other
//! is reported and kept, because nobody can tell whether someone still wants it. The decision
//! is this pure function; the engine applies it.

use std::collections::BTreeSet;

use storage::Listing;

/// What the store accounts for, by storage name.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Datasets a record owns.
    pub datasets: BTreeSet<String>,
    /// Snapshots the catalog records (`<dataset>@<tag>`).
    pub snapshots: BTreeSet<String>,
    /// Datasets and snapshots an unfinished operation was about to create.
    pub intents: BTreeSet<String>,
}

/// Something in the pool that no record accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leftover {
    /// The dataset or snapshot name.
    pub object: String,
    /// A snapshot rather than a dataset.
    pub snapshot: bool,
    /// An interrupted operation made it: remove it.
    pub remove: bool,
}

/// The leftovers in `listing`, in the order they can be removed: datasets deepest first (a
/// clone before the dataset it lives under), then snapshots (a clone before its origin).
pub(crate) fn leftovers(listing: &Listing, known: &Known) -> Vec<Leftover> {
    let recorded = |name: &str| {
        known.datasets.contains(name)
            || known
                .snapshots
                .iter()
                .any(|snapshot| snapshot.split_once('@').is_some_and(|(d, _)| d == name))
    };
    // A dataset with others under it is reported through them: the deepest unknown one names
    // the leftover, and its parents go with it.
    let container = |name: &str| {
        let prefix = format!("{name}/");
        listing.datasets.iter().any(|dataset| dataset.name.as_str().starts_with(&prefix))
            || known.datasets.iter().any(|dataset| dataset.starts_with(&prefix))
            || known.snapshots.iter().any(|snapshot| snapshot.starts_with(&prefix))
    };
    let mut found: Vec<Leftover> = listing
        .datasets
        .iter()
        .map(|dataset| dataset.name.as_str())
        .filter(|name| !recorded(name) && !container(name))
        .map(|name| Leftover {
            object: name.to_owned(),
            snapshot: false,
            remove: known.intents.contains(name),
        })
        .collect();
    found.sort_by(|a, b| {
        let depth = |name: &str| name.matches('/').count();
        depth(&b.object).cmp(&depth(&a.object)).then(a.object.cmp(&b.object))
    });
    found.extend(
        listing
            .snapshots
            .iter()
            .map(|snapshot| snapshot.name.to_string())
            .filter(|name| !known.snapshots.contains(name))
            .map(|name| Leftover {
                remove: known.intents.contains(&name),
                object: name,
                snapshot: true,
            }),
    );
    found
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use storage::{DatasetInfo, DatasetName, SnapshotName};

    use super::*;

    fn listing(datasets: &[&str], snapshots: &[&str]) -> Listing {
        Listing::new(
            datasets
                .iter()
                .map(|name| DatasetInfo {
                    name: DatasetName::new(*name).unwrap(),
                    mountpoint: PathBuf::from("/pool").join(name),
                    origin: None,
                })
                .collect(),
            snapshots.iter().map(|name| name.parse::<SnapshotName>().unwrap()).collect(),
        )
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn recorded_objects_and_their_containers_are_not_leftovers() {
        let pool = listing(
            &[
                "branch",
                "branch/main",
                "branch/main/c1",
                "branch/main/c1/r0",
                "branch/dev",
                "data_1",
            ],
            &["data_1@snapshot_1", "branch/dev@2"],
        );
        let known = Known {
            datasets: set(&["branch/main/c1/r0", "branch/dev"]),
            snapshots: set(&["data_1@snapshot_1", "branch/dev@2"]),
            intents: BTreeSet::new(),
        };
        assert_eq!(leftovers(&pool, &known), Vec::new());
    }

    #[test]
    fn unrecorded_objects_are_reported_and_only_intended_ones_removed() {
        let pool = listing(
            &[
                "branch",
                "branch/main",
                "branch/main/c1",
                "branch/main/c1/r0",
                "branch/main/c1/r1",
                "data_1",
                "data_2",
                "by_hand",
            ],
            &["data_1@snapshot_1", "data_1@snapshot_2", "branch/main/c1/r0@3"],
        );
        let known = Known {
            datasets: set(&["branch/main/c1/r0"]),
            snapshots: set(&["data_1@snapshot_1"]),
            intents: set(&["data_2", "branch/main/c1/r0@3", "branch/main/c1/r1"]),
        };
        let found = leftovers(&pool, &known);
        let shown: Vec<(&str, bool, bool)> =
            found.iter().map(|left| (left.object.as_str(), left.snapshot, left.remove)).collect();
        assert_eq!(
            shown,
            vec![
                // Deepest datasets first, then the rest by name, then snapshots.
                ("branch/main/c1/r1", false, true),
                ("by_hand", false, false),
                ("data_2", false, true),
                ("branch/main/c1/r0@3", true, true),
                ("data_1@snapshot_2", true, false),
            ]
        );
    }
}
