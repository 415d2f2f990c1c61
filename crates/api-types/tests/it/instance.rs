//! `/status` (Instance) and `/healthz` (Engine) golden JSON.

use std::collections::BTreeMap;

use api_types::{
    Activity, Alert, AlertLevel, AlertType, Cloning, Engine, FileSystem, Instance, PgActivityEvent,
    PoolEntry, PoolStatus, ProtectionLimits, Provisioner, RetrievalMode, RetrievalStatus,
    Retrieving, Status, StatusCode, Synchronization,
};
use serde_json::json;

use crate::{assert_golden, at, wire_time};

fn engine() -> Engine {
    Engine {
        version: "v4.1.0-scion".to_owned(),
        edition: "community".to_owned(),
        billing_active: None,
        instance_id: "cnr1s3bl2s0ab4p0c5rg".to_owned(),
        started_at: None,
        telemetry: None,
        disable_config_modification: None,
    }
}

#[test]
fn healthz_golden() {
    assert_golden(
        &engine(),
        &json!({"version": "v4.1.0-scion", "edition": "community", "instanceID": "cnr1s3bl2s0ab4p0c5rg"}),
    );
}

#[test]
fn status_golden() {
    let instance = Instance {
        status: Status::new(StatusCode::Ok, Instance::READY_MESSAGE),
        engine: Engine {
            started_at: Some(at("2024-05-01T08:00:00Z")),
            telemetry: Some(false),
            disable_config_modification: Some(false),
            ..engine()
        },
        pools: vec![PoolEntry {
            name: "pool".to_owned(),
            mode: "btrfs".to_owned(),
            data_state_at: Some(at("2024-05-01T10:00:00Z")),
            status: PoolStatus::Active,
            clone_list: vec!["c1".to_owned()],
            file_system: FileSystem {
                mode: "btrfs".to_owned(),
                size: 1000,
                free: 600,
                used: 400,
                data_size: 350,
                used_by_snapshots: 30,
                used_by_clones: 20,
                compress_ratio: 1.0,
            },
        }],
        cloning: Cloning {
            expected_cloning_time: 0.05,
            num_clones: 0,
            clones: Vec::new(),
            protection_limits: ProtectionLimits {
                lease_duration_minutes: 1440,
                max_duration_minutes: 0,
            },
        },
        retrieving: Retrieving {
            mode: RetrievalMode::Logical,
            status: RetrievalStatus::Finished,
            last_refresh: Some(at("2024-05-01T10:00:00Z")),
            next_refresh: None,
            alerts: BTreeMap::new(),
            activity: None,
            wal_window: None,
            progress: None,
            warnings: None,
        },
        provisioner: Provisioner::default(),
        synchronization: Some(Synchronization::not_available()),
        reconciliation: None,
        extensions: None,
    };
    let golden = json!({
        "status": {"code": "OK", "message": "Instance is ready"},
        "engine": {
            "version": "v4.1.0-scion",
            "edition": "community",
            "instanceID": "cnr1s3bl2s0ab4p0c5rg",
            "startedAt": wire_time("2024-05-01T08:00:00Z"),
            "telemetry": false,
            "disableConfigModification": false
        },
        "pools": [{
            "name": "pool",
            "mode": "btrfs",
            "dataStateAt": wire_time("2024-05-01T10:00:00Z"),
            "status": "active",
            "cloneList": ["c1"],
            "fileSystem": {
                "mode": "btrfs",
                "size": 1000,
                "free": 600,
                "used": 400,
                "dataSize": 350,
                "usedBySnapshots": 30,
                "usedByClones": 20,
                "compressRatio": 1.0
            }
        }],
        "cloning": {
            "expectedCloningTime": 0.05,
            "numClones": 0,
            "clones": [],
            "protectionLeaseDurationMinutes": 1440
        },
        "retrieving": {
            "mode": "logical",
            "status": "finished",
            "lastRefresh": wire_time("2024-05-01T10:00:00Z"),
            "nextRefresh": null,
            "alerts": {},
            "activity": null
        },
        "provisioner": {"dockerImage": "", "containerConfig": {}},
        // DBLab's models.Status always carries its message, empty here.
        "synchronization": {"status": {"code": "Not available", "message": ""}}
    });
    assert_golden(&instance, &golden);
}

#[test]
fn retrieving_with_alerts_map_and_activity_golden() {
    let retrieving = Retrieving {
        mode: RetrievalMode::Physical,
        status: RetrievalStatus::Refreshing,
        last_refresh: None,
        next_refresh: Some(at("2024-05-02T00:00:00Z")),
        alerts: BTreeMap::from([(
            AlertType::RefreshFailed,
            Alert {
                level: AlertLevel::Error,
                message: "pg_basebackup failed".to_owned(),
                last_seen: Some(at("2024-05-01T23:00:00Z")),
                count: 3,
            },
        )]),
        activity: Some(Activity {
            source: vec![PgActivityEvent {
                user: "replicator".to_owned(),
                query: "BASE_BACKUP".to_owned(),
                duration: 12.5,
                wait_event_type: "IO".to_owned(),
                wait_event: "DataFileRead".to_owned(),
            }],
            target: Vec::new(),
        }),
        progress: Some(api_types::RetrievalProgress {
            stage: "copying".to_owned(),
            database: Some("shop".to_owned()),
            bytes_done: 1024,
            bytes_total: Some(4096),
            bytes_per_second: Some(512),
            eta_seconds: Some(6),
            tables_done: 3,
            tables_total: None,
            started_at: Some(at("2024-05-01T22:00:00Z")),
            error: None,
            databases: Vec::new(),
        }),
        warnings: None,
        wal_window: Some(api_types::WalWindow {
            oldest: api_types::WalPoint {
                at: at("2024-05-01T20:00:00Z"),
                lsn: "0/3000148".to_owned(),
            },
            newest: api_types::WalPoint {
                at: at("2024-05-01T22:30:00Z"),
                lsn: "0/5000060".to_owned(),
            },
        }),
    };
    let golden = json!({
        "mode": "physical",
        "status": "refreshing",
        "walWindow": {
            "oldest": {"at": wire_time("2024-05-01T20:00:00Z"), "lsn": "0/3000148"},
            "newest": {"at": wire_time("2024-05-01T22:30:00Z"), "lsn": "0/5000060"}
        },
        "progress": {
            "stage": "copying",
            "database": "shop",
            "bytesDone": 1024,
            "bytesTotal": 4096,
            "bytesPerSecond": 512,
            "etaSeconds": 6,
            "tablesDone": 3,
            "startedAt": wire_time("2024-05-01T22:00:00Z")
        },
        "lastRefresh": null,
        "nextRefresh": wire_time("2024-05-02T00:00:00Z"),
        "alerts": {
            "refresh_failed": {
                "level": "error",
                "message": "pg_basebackup failed",
                "lastSeen": wire_time("2024-05-01T23:00:00Z"),
                "count": 3
            }
        },
        "activity": {
            "source": [{
                "user": "replicator",
                "query": "BASE_BACKUP",
                "duration": 12.5,
                "waitEventType": "IO",
                "waitEvent": "DataFileRead"
            }],
            "target": []
        }
    });
    assert_golden(&retrieving, &golden);
}

#[test]
fn physical_sync_golden() {
    let sync = Synchronization {
        status: Status::new(StatusCode::Ok, ""),
        started_at: Some(at("2024-05-01T08:00:00Z")),
        last_replayed_lsn: "0/3000060".to_owned(),
        last_replayed_lsn_at: Some(at("2024-05-01T09:59:58Z")),
        replication_lag: 2,
        replication_uptime: 7190,
    };
    let golden = json!({
        "status": {"code": "OK", "message": ""},
        "startedAt": wire_time("2024-05-01T08:00:00Z"),
        "lastReplayedLsn": "0/3000060",
        "lastReplayedLsnAt": wire_time("2024-05-01T09:59:58Z"),
        "replicationLag": 2,
        "replicationUptime": 7190
    });
    assert_golden(&sync, &golden);
}

#[test]
fn a_dblab_status_with_go_nulls_and_unknown_fields_decodes() {
    let body = json!({
        "status": {"code": "WARNING", "message": "Subsystems that need attention: retrieving"},
        "engine": {"version": "v4.1.3", "edition": "standard", "billingActive": true, "instanceID": "x"},
        "pools": null,
        "cloning": {"expectedCloningTime": 0, "numClones": 0, "clones": null},
        "retrieving": {"mode": "logical", "status": "failed", "lastRefresh": null, "nextRefresh": null,
                       "alerts": null, "activity": null},
        "provisioner": {"dockerImage": "postgresai/extended-postgres:17", "containerConfig": null},
        "synchronization": {"status": {"code": "Not available", "message": ""}},
        "someNewSection": {}
    });
    let instance: Instance = serde_json::from_value(body).unwrap();
    assert_eq!(instance.status.code, StatusCode::Warning);
    assert_eq!(instance.engine.billing_active, Some(true));
    assert!(instance.pools.is_empty() && instance.cloning.clones.is_empty());
    assert_eq!(instance.retrieving.status, RetrievalStatus::Failed);
    assert_eq!(instance.synchronization.unwrap().status.code, StatusCode::SyncNotAvailable);
}

#[test]
fn retrieving_after_a_refresh_with_warnings_golden() {
    let retrieving = Retrieving {
        mode: RetrievalMode::Logical,
        status: RetrievalStatus::Finished,
        last_refresh: Some(at("2024-05-01T10:00:00Z")),
        next_refresh: None,
        alerts: BTreeMap::from([(
            AlertType::RefreshWarnings,
            Alert {
                level: AlertLevel::Warning,
                message: "the refresh finished with 2 warnings".to_owned(),
                last_seen: Some(at("2024-05-01T10:00:00Z")),
                count: 1,
            },
        )]),
        activity: None,
        wal_window: None,
        progress: Some(api_types::RetrievalProgress {
            stage: "finished".to_owned(),
            database: None,
            bytes_done: 4096,
            bytes_total: Some(4096),
            bytes_per_second: None,
            eta_seconds: None,
            tables_done: 7,
            tables_total: Some(7),
            started_at: Some(at("2024-05-01T09:00:00Z")),
            error: None,
            databases: vec![api_types::RetrievalDatabase {
                name: "shop".to_owned(),
                bytes: 4096,
                tables: 7,
            }],
        }),
        warnings: Some(api_types::RetrievalWarnings {
            count: 2,
            first: vec!["shop: restore errors ignored: …".to_owned()],
        }),
    };
    let golden = json!({
        "mode": "logical",
        "status": "finished",
        "progress": {
            "stage": "finished",
            "bytesDone": 4096,
            "bytesTotal": 4096,
            "tablesDone": 7,
            "tablesTotal": 7,
            "startedAt": wire_time("2024-05-01T09:00:00Z"),
            "databases": [{"name": "shop", "bytes": 4096, "tables": 7}]
        },
        "warnings": {"count": 2, "first": ["shop: restore errors ignored: …"]},
        "lastRefresh": wire_time("2024-05-01T10:00:00Z"),
        "nextRefresh": null,
        "alerts": {
            "refresh_warnings": {
                "level": "warning",
                "message": "the refresh finished with 2 warnings",
                "lastSeen": wire_time("2024-05-01T10:00:00Z"),
                "count": 1
            }
        },
        "activity": null
    });
    assert_golden(&retrieving, &golden);
}
