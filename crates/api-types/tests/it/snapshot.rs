//! Snapshot shapes: list item, commit details, and the snapshot requests.

use api_types::{
    CreateSnapshotRequest, Protection, ProtectionUpdateRequest, Snapshot, SnapshotCloneRequest,
    SnapshotDetails,
};
use serde_json::json;

use crate::{assert_golden, at, wire_time};

#[test]
fn protected_snapshot_golden() {
    let snapshot = Snapshot {
        id: "pool/branch/dev/c1/r0@20240502090000".to_owned(),
        created_at: Some(at("2024-05-02T09:00:01Z")),
        data_state_at: Some(at("2024-05-02T09:00:00Z")),
        physical_size: 0,
        logical_size: 10_737_418_240,
        pool: "pool".to_owned(),
        num_clones: 0,
        clones: Vec::new(),
        branch: "dev".to_owned(),
        message: "add index".to_owned(),
        protection: Protection {
            protected: true,
            protected_till: Some(at("2024-05-09T09:00:00Z")),
            delete_at: None,
        },
        masked: false,
    };
    let golden = json!({
        "id": "pool/branch/dev/c1/r0@20240502090000",
        "createdAt": wire_time("2024-05-02T09:00:01Z"),
        "dataStateAt": wire_time("2024-05-02T09:00:00Z"),
        "physicalSize": 0,
        "logicalSize": 10_737_418_240_u64,
        "pool": "pool",
        "numClones": 0,
        "clones": [],
        "branch": "dev",
        "message": "add index",
        "protected": true,
        "protectedTill": wire_time("2024-05-09T09:00:00Z")
    });
    assert_golden(&snapshot, &golden);
}

#[test]
fn a_masked_snapshot_says_so_and_an_unmasked_one_looks_like_dblab_s() {
    let snapshot: Snapshot = serde_json::from_value(json!({"id": "p@s"})).unwrap();
    assert!(!snapshot.masked);
    assert!(serde_json::to_value(&snapshot).unwrap().get("masked").is_none());
    let masked = Snapshot { masked: true, ..snapshot };
    let value = serde_json::to_value(&masked).unwrap();
    assert_eq!(value["masked"], json!(true));
    assert!(serde_json::from_value::<Snapshot>(value).unwrap().masked);
}

#[test]
fn go_null_slices_read_as_empty() {
    let snapshot: Snapshot = serde_json::from_value(
        json!({"id": "p@s", "clones": null, "deleteAt": wire_time("2024-06-01T00:00:00Z")}),
    )
    .unwrap();
    assert!(snapshot.clones.is_empty());
    assert_eq!(snapshot.protection.delete_at, Some(at("2024-06-01T00:00:00Z")));
}

#[test]
fn snapshot_details_golden() {
    let details = SnapshotDetails {
        id: "pool/branch/main/c1/r0@20240502090000".to_owned(),
        parent: "pool@snapshot_20240501100000".to_owned(),
        child: vec!["pool/branch/main/c2/r0@20240503090000".to_owned()],
        branch: vec!["main".to_owned()],
        root: vec!["dev".to_owned(), "qa".to_owned()],
        data_state_at: "20240502090000".to_owned(),
        message: "schema change".to_owned(),
        dataset: "pool/branch/main/c1/r0".to_owned(),
        clones: vec!["pool/branch/dev".to_owned()],
        num_clones: 0,
        protection: Protection {
            protected: false,
            protected_till: None,
            delete_at: Some(at("2024-05-10T00:00:00Z")),
        },
        masked: false,
    };
    let golden = json!({
        "id": "pool/branch/main/c1/r0@20240502090000",
        "parent": "pool@snapshot_20240501100000",
        "child": ["pool/branch/main/c2/r0@20240503090000"],
        "branch": ["main"],
        "root": ["dev", "qa"],
        "dataStateAt": "20240502090000",
        "message": "schema change",
        "dataset": "pool/branch/main/c1/r0",
        "clones": ["pool/branch/dev"],
        "numClones": 0,
        "protected": false,
        "deleteAt": wire_time("2024-05-10T00:00:00Z")
    });
    assert_golden(&details, &golden);
}

#[test]
fn snapshot_requests() {
    assert_golden(
        &CreateSnapshotRequest { pool_name: "pool2".to_owned(), ..Default::default() },
        &json!({"poolName": "pool2"}),
    );
    assert_golden(
        &CreateSnapshotRequest {
            pool_name: String::new(),
            recovery_target: Some(api_types::RecoveryTargetRequest {
                time: None,
                lsn: Some("0/3000148".to_owned()),
            }),
        },
        &json!({"recoveryTarget": {"lsn": "0/3000148"}}),
    );
    assert_eq!(serde_json::from_str::<CreateSnapshotRequest>("{}").unwrap().pool_name, "");
    assert_golden(
        &SnapshotCloneRequest { clone_id: "c1".to_owned(), message: "m".to_owned() },
        &json!({"cloneID": "c1", "message": "m"}),
    );
}

#[test]
fn protection_update_is_three_state() {
    let protect = ProtectionUpdateRequest {
        protected: Some(true),
        protection_duration_minutes: Some(60),
        delete_at: None,
    };
    assert_golden(&protect, &json!({"protected": true, "protectionDurationMinutes": 60}));
    let schedule = ProtectionUpdateRequest {
        protected: None,
        protection_duration_minutes: None,
        delete_at: Some(at("2024-07-01T00:00:00Z")),
    };
    let read: ProtectionUpdateRequest =
        serde_json::from_value(json!({"deleteAt": "2024-07-01T02:00:00+02:00", "unknown": true}))
            .unwrap();
    assert_eq!(read, schedule);
    let nothing: ProtectionUpdateRequest =
        serde_json::from_value(json!({"protected": null})).unwrap();
    assert_eq!(
        nothing,
        ProtectionUpdateRequest::default(),
        "null is 'not given', so the server answers 400"
    );
    assert!(
        serde_json::from_value::<ProtectionUpdateRequest>(json!({"deleteAt": "tomorrow"})).is_err()
    );
}
