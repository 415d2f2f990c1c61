//! The JSON bodies that list clones (`GET /status`, `GET /clones`), written with each snapshot's
//! view serialized once per answer.
//!
//! DBLab's shape puts a clone's snapshot inside the clone, and a snapshot lists the IDs of all its
//! clones, so an answer with 1,000 clones on one snapshot holds a million clone IDs. Serializing
//! that snapshot again for each of its clones was most of the time such an answer took; here it
//! is serialized once, and its bytes are copied into each clone's place. The bytes are those of
//! the plain serialization (`serde_json::to_vec` of the same `api_types` values, which the tests
//! compare): each clone is serialized without its snapshot, and its `"snapshot":null` is replaced
//! by the snapshot's JSON. That key occurs once in a clone's JSON as a key (no string can hold
//! it unescaped, and a `Clone` has no map whose key could end in it); a clone whose JSON holds it
//! other than once is serialized whole instead, so the answer is right whatever a later field adds.

use std::collections::HashMap;
use std::sync::Arc;

use api_types::{Instance, ProtectionLimits};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use engine::{CloneView, SnapshotView};

use crate::error::ApiFailure;
use crate::views;

/// What a clone without its snapshot holds in the snapshot's place.
const SNAPSHOT_NULL: &[u8] = b"\"snapshot\":null";
/// The key alone: [`SNAPSHOT_NULL`] without its `null`.
const SNAPSHOT_KEY: &[u8] = b"\"snapshot\":";
/// What an instance without its clones holds in their place.
const CLONES_EMPTY: &[u8] = b"\"clones\":[]";

/// Clones ready to be written into an answer: each serialized without its snapshot, each
/// distinct snapshot serialized once.
pub(crate) struct CloneList {
    /// Every clone's JSON, one after the other (`ranges` tells them apart).
    bytes: Vec<u8>,
    clones: Vec<Serialized>,
    /// Each snapshot's JSON.
    snapshots: Vec<Vec<u8>>,
}

/// One clone of a [`CloneList`].
struct Serialized {
    /// Its JSON in [`CloneList::bytes`].
    range: std::ops::Range<usize>,
    /// Where its `"snapshot":null` starts in that JSON and which snapshot goes there; `None`
    /// when its JSON is whole already.
    splice: Option<(usize, usize)>,
}

impl CloneList {
    /// `views` in their order.
    pub(crate) fn new<'a>(
        views: impl IntoIterator<Item = &'a CloneView>,
        limits: ProtectionLimits,
    ) -> serde_json::Result<CloneList> {
        let mut list = CloneList { bytes: Vec::new(), clones: Vec::new(), snapshots: Vec::new() };
        // The clones of one snapshot share its view (`Engine::clones`), so its address names it.
        let mut seen: HashMap<*const SnapshotView, usize> = HashMap::new();
        for view in views {
            let start = list.bytes.len();
            let bare = views::clone_without_snapshot(view, limits);
            serde_json::to_writer(&mut list.bytes, &bare)?;
            let splice = match &view.snapshot {
                None => None,
                Some(snapshot) => match find_once(&list.bytes[start..], SNAPSHOT_NULL) {
                    Some(at) => {
                        let index = match seen.get(&Arc::as_ptr(snapshot)) {
                            Some(index) => *index,
                            None => {
                                list.snapshots
                                    .push(serde_json::to_vec(&views::snapshot(snapshot))?);
                                seen.insert(Arc::as_ptr(snapshot), list.snapshots.len() - 1);
                                list.snapshots.len() - 1
                            }
                        };
                        Some((at, index))
                    }
                    None => {
                        list.bytes.truncate(start);
                        serde_json::to_writer(&mut list.bytes, &views::clone(view, limits))?;
                        None
                    }
                },
            };
            list.clones.push(Serialized { range: start..list.bytes.len(), splice });
        }
        Ok(list)
    }

    /// Writes the JSON array of the clones, each with its snapshot.
    fn write_array(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (n, clone) in self.clones.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let json = &self.bytes[clone.range.clone()];
            match clone.splice {
                None => out.extend_from_slice(json),
                Some((at, index)) => {
                    out.extend_from_slice(&json[..at + SNAPSHOT_KEY.len()]);
                    out.extend_from_slice(&self.snapshots[index]);
                    out.extend_from_slice(&json[at + SNAPSHOT_NULL.len()..]);
                }
            }
        }
        out.push(b']');
    }

    /// The length of [`CloneList::write_array`]'s output, so the answer is allocated once.
    fn array_len(&self) -> usize {
        let clones: usize = self
            .clones
            .iter()
            .map(|clone| {
                let snapshot = clone.splice.map_or(0, |(_, index)| self.snapshots[index].len());
                clone.range.len() + snapshot - clone.splice.map_or(0, |_| "null".len())
            })
            .sum();
        clones + self.clones.len().saturating_sub(1) + "[]".len()
    }
}

/// The body of `GET /clones`: `views`, newest (last) first.
pub(crate) fn clones_json(
    views: &[CloneView],
    limits: ProtectionLimits,
) -> serde_json::Result<Vec<u8>> {
    let list = CloneList::new(views.iter().rev(), limits)?;
    let mut out = Vec::with_capacity(list.array_len());
    list.write_array(&mut out);
    Ok(out)
}

/// The body of `GET /status`: `instance` (whose `cloning.clones` is left empty by
/// [`views::instance`]) with `views` in `cloning.clones`.
pub(crate) fn status_json(
    mut instance: Instance,
    views: &[CloneView],
) -> serde_json::Result<Vec<u8>> {
    let limits = instance.cloning.protection_limits;
    let without = serde_json::to_vec(&instance)?;
    let Some(at) = find_once(&without, CLONES_EMPTY) else {
        // Not where it is looked for: the plain serialization (see the module).
        instance.cloning.clones = views.iter().map(|view| views::clone(view, limits)).collect();
        return serde_json::to_vec(&instance);
    };
    let list = CloneList::new(views, limits)?;
    let key = CLONES_EMPTY.len() - "[]".len();
    let mut out = Vec::with_capacity(without.len() + list.array_len());
    out.extend_from_slice(&without[..at + key]);
    list.write_array(&mut out);
    out.extend_from_slice(&without[at + CLONES_EMPTY.len()..]);
    Ok(out)
}

/// Where `needle` starts in `haystack` if it occurs there exactly once.
fn find_once(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut found = haystack.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle);
    let (at, _) = found.next()?;
    found.next().is_none().then_some(at)
}

/// A JSON answer from bytes serialized already, with the header `axum::Json` sends.
pub(crate) fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A failed serialization, as `axum::Json` would answer it (a 500), in `{code, message}`.
pub(crate) fn serialization_failed(error: &serde_json::Error) -> ApiFailure {
    ApiFailure::internal(format!("failed to serialize the answer: {error}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use engine::{CloneRecord, CloneState, CloneView, SnapshotRecord, SnapshotView};
    use serde_json::json;

    use super::*;

    fn snapshot(id: &str, clones: &[&str]) -> Arc<SnapshotView> {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        Arc::new(SnapshotView {
            record: SnapshotRecord {
                id: format!("pool/{id}"),
                pool: "pool".to_owned(),
                storage_name: id.to_owned(),
                branch: "main".to_owned(),
                parent_id: None,
                message: "a \"quoted\" \\ message, \"snapshot\":null and \"clones\":[]".to_owned(),
                created_at: at,
                data_state_at: at,
                physical_size: 1,
                logical_size: 2 << 20,
                protected: false,
                protected_till: None,
                delete_at: None,
                masked: id.ends_with('m'),
            },
            clones: clones.iter().map(|id| (*id).to_owned()).collect(),
            is_head: true,
        })
    }

    fn clone(id: &str, n: u32, snapshot: Option<&Arc<SnapshotView>>) -> CloneView {
        CloneView {
            record: CloneRecord {
                id: id.to_owned(),
                snapshot_id: snapshot.map_or("gone".to_owned(), |s| s.record.id.clone()),
                branch: "main".to_owned(),
                revision: n,
                pool: "pool".to_owned(),
                dataset: format!("branch/main/{id}/r0"),
                port: 6000 + n as u16,
                state: if n.is_multiple_of(3) { CloneState::Creating } else { CloneState::Ok },
                state_message: "Clone is ready to accept Postgres connections.".to_owned(),
                username: "u\"ser".to_owned(),
                password_verifier: String::new(),
                restricted: false,
                db_name: (n.is_multiple_of(2)).then(|| "db".to_owned()),
                protected: n % 2 == 1,
                protected_till: None,
                protection_warning_sent: false,
                created_at: Utc.with_ymd_and_hms(2026, 12, 3, 11, 0, n).unwrap(),
                cloning_time_seconds: Some(0.5),
                extra_conf: Default::default(),
                limits: Default::default(),
                stopped_at: (n % 4 == 1).then(Utc::now),
                cert_login: false,
                server_port: None,
            },
            snapshot: snapshot.map(Arc::clone),
            limits: engine::CloneLimits {
                memory: (n == 2).then_some(1 << 30),
                ..Default::default()
            },
            usage: None,
            diff_size: u64::from(n) * 1000,
            referenced: (n > 3).then_some(5),
            access_host: "127.0.0.1".to_owned(),
            max_idle_minutes: 120.0,
        }
    }

    /// Clones on two snapshots sharing their views as `Engine::clones` builds them, one whose
    /// snapshot is gone, and one with its own copy of a snapshot's view.
    fn views() -> Vec<CloneView> {
        let ids = ["c1", "c2", "c3", "c4", "c5", "c6"];
        let first = snapshot("dblab_pool@snapshot_20261203100000", &ids[..4]);
        let second = snapshot("branch/dev@20261203100000m", &ids[4..]);
        vec![
            clone(ids[0], 0, Some(&first)),
            clone(ids[1], 1, Some(&first)),
            clone(ids[2], 2, None),
            clone(ids[3], 3, Some(&first)),
            clone(ids[4], 4, Some(&second)),
            clone(ids[5], 5, Some(&Arc::new((*second).clone()))),
        ]
    }

    fn limits() -> ProtectionLimits {
        views::protection_limits(1440.0, 10080.0)
    }

    #[test]
    fn the_clone_list_is_byte_for_byte_the_plain_serialization() {
        let views = views();
        let mut plain: Vec<api_types::Clone> =
            views.iter().map(|view| views::clone(view, limits())).collect();
        plain.reverse();
        let fast = clones_json(&views, limits()).unwrap();
        assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&plain).unwrap());
        assert_eq!(clones_json(&[], limits()).unwrap(), b"[]");
    }

    #[test]
    fn each_snapshot_is_serialized_once_and_every_clone_is_spliced() {
        let views = views();
        let list = CloneList::new(&views, limits()).unwrap();
        // Two shared views and the copy.
        assert_eq!(list.snapshots.len(), 3);
        let spliced = list.clones.iter().filter(|clone| clone.splice.is_some()).count();
        assert_eq!(spliced, 5, "the clone without a snapshot has nothing to splice");
    }

    #[test]
    fn the_status_is_byte_for_byte_the_plain_serialization() {
        let views = views();
        let instance: Instance = serde_json::from_value(json!({
            "status": {"code": "OK", "message": "Instance is ready"},
            "engine": {"version": "v4.1.0-scion", "instanceID": "i"},
            "pools": [{"name": "pool", "mode": "btrfs", "status": "active", "cloneList": ["c1"],
                       "fileSystem": {"mode": "btrfs"}}],
            "cloning": {"expectedCloningTime": 0.5, "numClones": 6, "clones": [],
                        "protectionLeaseDurationMinutes": 1440,
                        "protectionMaxDurationMinutes": 10080},
            "retrieving": {"mode": "logical", "status": "finished",
                           "alerts": {}},
        }))
        .unwrap();
        let mut plain = instance.clone();
        plain.cloning.clones = views.iter().map(|view| views::clone(view, limits())).collect();
        let fast = status_json(instance, &views).unwrap();
        assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&plain).unwrap());
    }

    #[test]
    fn a_needle_found_twice_is_not_found() {
        assert_eq!(find_once(b"ab\"snapshot\":null,x", SNAPSHOT_NULL), Some(2));
        assert_eq!(find_once(b"\"snapshot\":null\"snapshot\":null", SNAPSHOT_NULL), None);
        assert_eq!(find_once(b"", SNAPSHOT_NULL), None);
    }
}
