//! ID validation tables: DBLab's rules, Scion's length limits and hostile inputs.

use api_types::{
    BranchName, CloneId, IdError, IdKind, MAX_BRANCH_NAME_LEN, MAX_CLONE_ID_LEN,
    MAX_SNAPSHOT_ID_LEN, SnapshotId,
};

#[test]
fn clone_ids() {
    let valid =
        ["a", "0", "my-clone", "ci-migration-test-4521", "A.b_c-D", "cnr1s3bl2s0ab4p0c5rg", "x.."];
    for id in valid {
        assert_eq!(CloneId::parse(id).unwrap().as_str(), id);
    }
    let long_ok = "a".repeat(MAX_CLONE_ID_LEN);
    assert!(CloneId::parse(long_ok).is_ok());

    let invalid: &[(&str, IdError)] = &[
        ("", IdError::Empty(IdKind::Clone)),
        ("-a", IdError::BadChar { kind: IdKind::Clone, ch: '-', at: 0 }),
        ("_a", IdError::BadChar { kind: IdKind::Clone, ch: '_', at: 0 }),
        (".hidden", IdError::BadChar { kind: IdKind::Clone, ch: '.', at: 0 }),
        ("..", IdError::BadChar { kind: IdKind::Clone, ch: '.', at: 0 }),
        ("a/b", IdError::BadChar { kind: IdKind::Clone, ch: '/', at: 1 }),
        ("a b", IdError::BadChar { kind: IdKind::Clone, ch: ' ', at: 1 }),
        ("a;rm -rf /", IdError::BadChar { kind: IdKind::Clone, ch: ';', at: 1 }),
        ("a$(id)", IdError::BadChar { kind: IdKind::Clone, ch: '$', at: 1 }),
        ("a`id`", IdError::BadChar { kind: IdKind::Clone, ch: '`', at: 1 }),
        ("a\nb", IdError::BadChar { kind: IdKind::Clone, ch: '\n', at: 1 }),
        ("a\0", IdError::BadChar { kind: IdKind::Clone, ch: '\0', at: 1 }),
        ("é", IdError::BadChar { kind: IdKind::Clone, ch: 'é', at: 0 }),
        ("aé", IdError::BadChar { kind: IdKind::Clone, ch: 'é', at: 1 }),
        ("a\u{0660}", IdError::BadChar { kind: IdKind::Clone, ch: '\u{0660}', at: 1 }),
        ("a@b", IdError::BadChar { kind: IdKind::Clone, ch: '@', at: 1 }),
        ("a:b", IdError::BadChar { kind: IdKind::Clone, ch: ':', at: 1 }),
    ];
    for (id, expected) in invalid {
        assert_eq!(&CloneId::parse(*id).unwrap_err(), expected, "{id:?}");
    }
    let too_long = "a".repeat(MAX_CLONE_ID_LEN + 1);
    assert_eq!(
        CloneId::parse(too_long).unwrap_err(),
        IdError::TooLong { kind: IdKind::Clone, len: MAX_CLONE_ID_LEN + 1, max: MAX_CLONE_ID_LEN }
    );
}

#[test]
fn branch_names() {
    for name in ["main", "feature-1", "_tmp", "A_b-C", "0"] {
        assert_eq!(BranchName::parse(name).unwrap().as_str(), name);
    }
    let invalid: &[(&str, IdError)] = &[
        ("", IdError::Empty(IdKind::Branch)),
        ("-x", IdError::BadChar { kind: IdKind::Branch, ch: '-', at: 0 }),
        ("a.b", IdError::BadChar { kind: IdKind::Branch, ch: '.', at: 1 }),
        ("a/b", IdError::BadChar { kind: IdKind::Branch, ch: '/', at: 1 }),
        ("../etc", IdError::BadChar { kind: IdKind::Branch, ch: '.', at: 0 }),
        ("a b", IdError::BadChar { kind: IdKind::Branch, ch: ' ', at: 1 }),
        ("a@b", IdError::BadChar { kind: IdKind::Branch, ch: '@', at: 1 }),
    ];
    for (name, expected) in invalid {
        assert_eq!(&BranchName::parse(*name).unwrap_err(), expected, "{name:?}");
    }
    assert!(BranchName::parse("b".repeat(MAX_BRANCH_NAME_LEN)).is_ok());
    assert!(matches!(
        BranchName::parse("b".repeat(MAX_BRANCH_NAME_LEN + 1)),
        Err(IdError::TooLong { kind: IdKind::Branch, .. })
    ));
    assert_eq!(BranchName::main().as_str(), "main");
}

#[test]
fn snapshot_ids() {
    let valid = [
        (
            "dblab_pool@snapshot_20240501120000",
            "dblab_pool",
            "snapshot_20240501120000",
            "dblab_pool",
        ),
        (
            "pool/branch/main/clone1/r0@20240501120000",
            "pool/branch/main/clone1/r0",
            "20240501120000",
            "pool",
        ),
        ("_p/a.b:c-d@n.1:2-3", "_p/a.b:c-d", "n.1:2-3", "_p"),
        (
            "p/branch/main/clone_pre_20240501/r0@snapshot_x",
            "p/branch/main/clone_pre_20240501/r0",
            "snapshot_x",
            "p",
        ),
    ];
    for (id, dataset, name, pool) in valid {
        let parsed = SnapshotId::parse(id).unwrap();
        assert_eq!((parsed.dataset(), parsed.name(), parsed.pool()), (dataset, name, pool), "{id}");
    }

    let invalid: &[(&str, IdError)] = &[
        ("", IdError::Empty(IdKind::Snapshot)),
        ("pool", IdError::MissingAt),
        ("pool@", IdError::MissingAt),
        ("@snap", IdError::BadChar { kind: IdKind::Snapshot, ch: '@', at: 0 }),
        ("pool@a@b", IdError::BadChar { kind: IdKind::Snapshot, ch: '@', at: 6 }),
        ("pool@a/b", IdError::BadChar { kind: IdKind::Snapshot, ch: '/', at: 6 }),
        ("/pool@s", IdError::BadChar { kind: IdKind::Snapshot, ch: '/', at: 0 }),
        ("-pool@s", IdError::BadChar { kind: IdKind::Snapshot, ch: '-', at: 0 }),
        ("pool@-s", IdError::BadChar { kind: IdKind::Snapshot, ch: '-', at: 5 }),
        ("pool@.s", IdError::BadChar { kind: IdKind::Snapshot, ch: '.', at: 5 }),
        ("pool;rm -rf /@s", IdError::BadChar { kind: IdKind::Snapshot, ch: ';', at: 4 }),
        ("pool@s;reboot", IdError::BadChar { kind: IdKind::Snapshot, ch: ';', at: 6 }),
        ("pool@s $(id)", IdError::BadChar { kind: IdKind::Snapshot, ch: ' ', at: 6 }),
        ("pool@s\n", IdError::BadChar { kind: IdKind::Snapshot, ch: '\n', at: 6 }),
        ("pool/é@s", IdError::BadChar { kind: IdKind::Snapshot, ch: 'é', at: 5 }),
        ("pool/../etc@s", IdError::BadPathComponent),
        ("pool/./x@s", IdError::BadPathComponent),
        ("pool//x@s", IdError::BadPathComponent),
        ("pool/x/@s", IdError::BadPathComponent),
        ("pool/..@s", IdError::BadPathComponent),
    ];
    for (id, expected) in invalid {
        assert_eq!(&SnapshotId::parse(*id).unwrap_err(), expected, "{id:?}");
    }
    let at_limit = format!("p@{}", "s".repeat(MAX_SNAPSHOT_ID_LEN - 2));
    assert!(SnapshotId::parse(at_limit.as_str()).is_ok());
    assert!(matches!(
        SnapshotId::parse(format!("{at_limit}s")),
        Err(IdError::TooLong { kind: IdKind::Snapshot, .. })
    ));
}

#[test]
fn error_messages_name_the_rule() {
    let message = CloneId::parse("a/b").unwrap_err().to_string();
    assert_eq!(
        message,
        "clone ID has character '/' at byte 1; it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
    );
    let message = SnapshotId::parse("pool").unwrap_err().to_string();
    assert!(message.contains("<dataset>@<name>"), "{message}");
}

#[test]
fn ids_serialize_as_strings_and_validate_when_read() {
    let id = SnapshotId::parse("pool/branch/main/r0@20240501120000").unwrap();
    assert_eq!(
        serde_json::to_value(&id).unwrap(),
        serde_json::json!("pool/branch/main/r0@20240501120000")
    );
    let back: SnapshotId = serde_json::from_value(serde_json::json!(id.as_str())).unwrap();
    assert_eq!(back, id);
    assert!(serde_json::from_value::<CloneId>(serde_json::json!("../x")).is_err());
    assert!(serde_json::from_value::<BranchName>(serde_json::json!("a b")).is_err());
    assert_eq!("my-clone".parse::<CloneId>().unwrap().to_string(), "my-clone");
}
