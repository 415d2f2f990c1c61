//! Clone shapes: golden JSON for responses, and lenient decoding of the create/patch/reset requests.

use std::collections::BTreeMap;

use api_types::{
    Clone, CloneId, CloneLimits, CloneMetadata, CloneUsage, CreateCloneRequest, Database,
    DatabaseRequest, PatchCloneRequest, Protection, ProtectionLimits, ResetCloneRequest, Snapshot,
    SnapshotRef, Status, StatusCode,
};
use serde_json::json;

use crate::{assert_golden, at, wire_time};

fn snapshot() -> Snapshot {
    Snapshot {
        id: "pool/branch/main/r0@20240501100000".to_owned(),
        created_at: Some(at("2024-05-01T10:05:00Z")),
        data_state_at: Some(at("2024-05-01T10:00:00Z")),
        physical_size: 1024,
        logical_size: 4096,
        pool: "pool".to_owned(),
        num_clones: 1,
        clones: vec!["my-clone".to_owned()],
        branch: "main".to_owned(),
        message: String::new(),
        protection: Protection { protected: false, protected_till: None, delete_at: None },
        masked: false,
    }
}

fn ready_clone() -> Clone {
    Clone {
        id: "my-clone".to_owned(),
        snapshot: Some(snapshot()),
        branch: "main".to_owned(),
        revision: 0,
        protected: true,
        protected_till: Some(at("2024-05-01T14:00:00Z")),
        delete_at: None,
        created_at: Some(at("2024-05-01T12:00:00Z")),
        status: Status::for_clone(StatusCode::Ok),
        stopped_at: None,
        db: Database {
            conn_str: Database::format_conn_str("127.0.0.1", 6000, "alice", "postgres"),
            host: "127.0.0.1".to_owned(),
            port: "6000".to_owned(),
            username: "alice".to_owned(),
            password: String::new(),
            db_name: "postgres".to_owned(),
            owner_user: String::new(),
        },
        metadata: CloneMetadata {
            clone_diff_size: 8192,
            logical_size: 4096,
            cloning_time: 0.052,
            max_idle_minutes: 120,
            protection_limits: ProtectionLimits {
                lease_duration_minutes: 1440,
                max_duration_minutes: 10080,
            },
        },
        limits: None,
        usage: None,
        client_certificate: None,
    }
}

#[test]
fn ready_clone_golden() {
    let golden = json!({
        "id": "my-clone",
        "snapshot": {
            "id": "pool/branch/main/r0@20240501100000",
            "createdAt": wire_time("2024-05-01T10:05:00Z"),
            "dataStateAt": wire_time("2024-05-01T10:00:00Z"),
            "physicalSize": 1024,
            "logicalSize": 4096,
            "pool": "pool",
            "numClones": 1,
            "clones": ["my-clone"],
            "branch": "main",
            "message": "",
            "protected": false
        },
        "branch": "main",
        "revision": 0,
        "protected": true,
        "protectedTill": wire_time("2024-05-01T14:00:00Z"),
        "deleteAt": null,
        "createdAt": wire_time("2024-05-01T12:00:00Z"),
        "status": {"code": "OK", "message": "Clone is ready to accept Postgres connections."},
        "db": {
            "connStr": "host=127.0.0.1 port=6000 user=alice dbname=postgres",
            "host": "127.0.0.1",
            "port": "6000",
            "username": "alice",
            "password": "",
            "dbName": "postgres"
        },
        "metadata": {
            "cloneDiffSize": 8192,
            "logicalSize": 4096,
            "cloningTime": 0.052,
            "maxIdleMinutes": 120,
            "protectionLeaseDurationMinutes": 1440,
            "protectionMaxDurationMinutes": 10080
        }
    });
    assert_golden(&ready_clone(), &golden);
}

#[test]
fn creating_clone_golden_omits_empty_optionals() {
    let clone = Clone {
        protected: false,
        protected_till: None,
        snapshot: None,
        status: Status::for_clone(StatusCode::Creating),
        stopped_at: None,
        db: Database {
            username: "alice".to_owned(),
            owner_user: "alice@example.com".to_owned(),
            ..Database::default()
        },
        metadata: CloneMetadata { max_idle_minutes: 120, ..CloneMetadata::default() },
        ..ready_clone()
    };
    let golden = json!({
        "id": "my-clone",
        "snapshot": null,
        "branch": "main",
        "revision": 0,
        "protected": false,
        "deleteAt": null,
        "createdAt": wire_time("2024-05-01T12:00:00Z"),
        "status": {"code": "CREATING", "message": "Clone is being created."},
        "db": {
            "connStr": "",
            "host": "",
            "port": "",
            "username": "alice",
            "password": "",
            "dbName": "",
            "ownerUser": "alice@example.com"
        },
        "metadata": {"cloneDiffSize": 0, "logicalSize": 0, "cloningTime": 0.0, "maxIdleMinutes": 120}
    });
    assert_golden(&clone, &golden);
}

/// Scion's additions: a limited clone shows its limits and usage; a request may carry limits.
#[test]
fn limits_and_usage_are_additive_fields() {
    let clone = Clone {
        limits: Some(CloneLimits { cpu: Some(1.5), memory: Some(268435456), disk: Some(1 << 30) }),
        usage: Some(CloneUsage {
            memory: Some(1024),
            oom_kills: Some(1),
            cpu_usage_micros: Some(7),
            ..CloneUsage::default()
        }),
        ..ready_clone()
    };
    let value = serde_json::to_value(&clone).unwrap();
    assert_eq!(value["limits"], json!({"cpu": 1.5, "memory": 268435456, "disk": 1073741824}));
    assert_eq!(value["usage"], json!({"memory": 1024, "oomKills": 1, "cpuUsageMicros": 7}));
    assert_eq!(serde_json::from_value::<Clone>(value).unwrap(), clone);
    let request: CreateCloneRequest = serde_json::from_value(json!({
        "db": {"username": "u", "password": "p"},
        "limits": {"memory": 134217728, "disk": 2147483648u64}
    }))
    .unwrap();
    assert_eq!(
        request.limits,
        Some(CloneLimits { cpu: None, memory: Some(134217728), disk: Some(2147483648) })
    );
    let request: CreateCloneRequest =
        serde_json::from_value(json!({"db": {"username": "u", "password": "p"}, "limits": null}))
            .unwrap();
    assert_eq!(request.limits, None);
}

#[test]
fn fatal_status_keeps_the_error_text_and_unknown_codes_round_trip() {
    let fatal = Status::new(StatusCode::Fatal, "start postgres: exited with 1");
    assert_golden(&fatal, &json!({"code": "FATAL", "message": "start postgres: exited with 1"}));
    let future = Status::new(StatusCode::Other("HIBERNATING".to_owned()), "");
    // DBLab's models.Status has no omitempty: an empty message is still sent.
    assert_golden(&future, &json!({"code": "HIBERNATING", "message": ""}));
}

#[test]
fn create_request_from_the_seed_post() {
    let body = json!({
        "id": "my-clone",
        "protected": true,
        "protectionDurationMinutes": 120,
        "db": {"username": "postgres", "password": "secret"},
        "branch": "main"
    });
    let request: CreateCloneRequest = serde_json::from_value(body).unwrap();
    assert_eq!(
        request,
        CreateCloneRequest {
            id: "my-clone".to_owned(),
            protected: true,
            protection_duration_minutes: Some(120),
            branch: "main".to_owned(),
            snapshot: None,
            extra_conf: BTreeMap::new(),
            db: Some(DatabaseRequest {
                username: "postgres".to_owned(),
                password: "secret".to_owned(),
                restricted: false,
                db_name: String::new(),
            }),
            limits: None,
            client_certificate: false,
        }
    );
    assert_eq!(request.clone_id().unwrap(), Some(CloneId::parse("my-clone").unwrap()));
}

#[test]
fn create_request_full_shape_golden() {
    let request = CreateCloneRequest {
        id: "c1".to_owned(),
        protected: false,
        protection_duration_minutes: Some(0),
        branch: String::new(),
        snapshot: Some(SnapshotRef { id: "pool@snapshot_20240501".to_owned() }),
        extra_conf: BTreeMap::from([("statement_timeout".to_owned(), "1s".to_owned())]),
        db: Some(DatabaseRequest {
            username: "u".to_owned(),
            password: "p".to_owned(),
            restricted: true,
            db_name: "app".to_owned(),
        }),
        limits: None,
        client_certificate: true,
    };
    let golden = json!({
        "id": "c1",
        "protected": false,
        "protectionDurationMinutes": 0,
        "snapshot": {"id": "pool@snapshot_20240501"},
        "extra_conf": {"statement_timeout": "1s"},
        "db": {"username": "u", "password": "p", "restricted": true, "db_name": "app"},
        "clientCertificate": true
    });
    assert_golden(&request, &golden);
}

#[test]
fn requests_ignore_unknown_fields_and_treat_null_as_absent() {
    let body = json!({
        "id": null,
        "protected": null,
        "protectionDurationMinutes": null,
        "branch": null,
        "snapshot": null,
        "extra_conf": null,
        "clientCertificate": null,
        "db": {"username": "u", "password": "p", "restricted": null, "db_name": null, "role": "x"},
        "name": "field from the v4.1 spec that DBLab ignores",
        "futureOption": {"nested": [1, 2, 3]}
    });
    let request: CreateCloneRequest = serde_json::from_value(body).unwrap();
    assert_eq!(request.id, "");
    assert_eq!(request.clone_id().unwrap(), None, "empty ID means: generate one");
    assert!(!request.protected);
    assert_eq!(request.protection_duration_minutes, None);
    assert_eq!(request.db.unwrap().username, "u");

    let empty: CreateCloneRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, CreateCloneRequest::default());
    assert_eq!(empty.db, None, "a missing db object is the server's 400, not a decode error");
}

#[test]
fn create_request_reports_an_invalid_id() {
    let request: CreateCloneRequest = serde_json::from_value(json!({"id": "../etc"})).unwrap();
    assert!(request.clone_id().is_err());
}

#[test]
fn patch_request_is_two_state() {
    let on: PatchCloneRequest =
        serde_json::from_value(json!({"protected": true, "protectionDurationMinutes": 1440}))
            .unwrap();
    assert_eq!(on, PatchCloneRequest { protected: true, protection_duration_minutes: Some(1440) });
    let off: PatchCloneRequest = serde_json::from_value(json!({})).unwrap();
    assert_eq!(off, PatchCloneRequest { protected: false, protection_duration_minutes: None });
    assert_golden(&on, &json!({"protected": true, "protectionDurationMinutes": 1440}));
    assert_golden(&off, &json!({"protected": false}));
}

#[test]
fn reset_request_shapes() {
    let to_snapshot = ResetCloneRequest { snapshot_id: "pool@s1".to_owned(), latest: false };
    assert_golden(&to_snapshot, &json!({"snapshotID": "pool@s1"}));
    let latest = ResetCloneRequest { snapshot_id: String::new(), latest: true };
    assert_golden(&latest, &json!({"latest": true}));
    let both: ResetCloneRequest =
        serde_json::from_value(json!({"snapshotID": "pool@s1", "latest": true, "extra": 1}))
            .unwrap();
    assert_eq!(both, ResetCloneRequest { snapshot_id: "pool@s1".to_owned(), latest: true });
}
