//! Branch shapes: list item, protection answer, create and commit.

use api_types::{
    BranchProtection, BranchView, CommitRequest, CommitResponse, CreateBranchRequest,
    CreateBranchResponse, Protection,
};
use serde_json::json;

use crate::{assert_golden, at, wire_time};

#[test]
fn branch_view_golden() {
    let branch = BranchView {
        name: "dev".to_owned(),
        base_dataset: "pool".to_owned(),
        parent: "main".to_owned(),
        data_state_at: "20240502090000".to_owned(),
        snapshot_id: "pool/branch/dev@20240502090000".to_owned(),
        dataset: "pool/branch/dev".to_owned(),
        num_snapshots: 2,
        protection: Protection { protected: true, protected_till: None, delete_at: None },
        masked: false,
    };
    let golden = json!({
        "name": "dev",
        "baseDataset": "pool",
        "parent": "main",
        "dataStateAt": "20240502090000",
        "snapshotID": "pool/branch/dev@20240502090000",
        "dataset": "pool/branch/dev",
        "numSnapshots": 2,
        "protected": true
    });
    assert_golden(&branch, &golden);
}

#[test]
fn branch_protection_golden() {
    let answer = BranchProtection {
        name: "dev".to_owned(),
        protection: Protection {
            protected: true,
            protected_till: Some(at("2024-05-03T00:00:00Z")),
            delete_at: None,
        },
    };
    assert_golden(
        &answer,
        &json!({"name": "dev", "protected": true, "protectedTill": wire_time("2024-05-03T00:00:00Z")}),
    );
}

#[test]
fn create_and_commit() {
    let create = CreateBranchRequest {
        branch_name: "dev".to_owned(),
        base_branch: "main".to_owned(),
        snapshot_id: String::new(),
        recovery_target: None,
    };
    assert_golden(&create, &json!({"branchName": "dev", "baseBranch": "main"}));
    let at_point = CreateBranchRequest {
        branch_name: "before-incident".to_owned(),
        recovery_target: Some(api_types::RecoveryTargetRequest {
            time: Some("2026-12-02T10:00:00Z".to_owned()),
            lsn: None,
        }),
        ..CreateBranchRequest::default()
    };
    assert_golden(
        &at_point,
        &json!({"branchName": "before-incident", "recoveryTarget": {"time": "2026-12-02T10:00:00Z"}}),
    );
    assert_golden(&CreateBranchResponse { name: "dev".to_owned() }, &json!({"name": "dev"}));
    let commit = CommitRequest { clone_id: "c1".to_owned(), message: "add index".to_owned() };
    assert_golden(&commit, &json!({"cloneID": "c1", "message": "add index"}));
    let id = "pool/branch/dev/c1/r0@20240502090000";
    assert_golden(&CommitResponse { snapshot_id: id.to_owned() }, &json!({"snapshotID": id}));
    let lenient: CreateBranchRequest =
        serde_json::from_value(json!({"branchName": "x", "snapshotID": null, "extra": []}))
            .unwrap();
    assert_eq!(lenient.branch_name, "x");
    assert_eq!(lenient.snapshot_id, "");
}
