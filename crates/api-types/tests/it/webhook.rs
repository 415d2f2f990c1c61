//! Webhook event names and payload golden JSON (reference §7).

use api_types::{WebhookEvent, WebhookPayload};
use serde_json::json;

use crate::{assert_golden, at, wire_time};

#[test]
fn event_names_are_dblabs() {
    let names = [
        "clone_create",
        "clone_reset",
        "clone_delete",
        "clone_protection_expiring",
        "clone_protection_expired",
        "snapshot_create",
        "snapshot_delete",
        "branch_create",
        "branch_delete",
    ];
    assert_eq!(WebhookEvent::ALL.len(), names.len());
    for (index, (event, name)) in WebhookEvent::ALL.into_iter().zip(names).enumerate() {
        assert_eq!(event.as_str(), name);
        assert_eq!(event.index(), index);
        assert_eq!(name.parse::<WebhookEvent>().unwrap(), event);
        assert_eq!(serde_json::to_value(event).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<WebhookEvent>(json!(name)).unwrap(), event);
    }
    assert!("clone_created".parse::<WebhookEvent>().is_err());
    assert!(serde_json::from_value::<WebhookEvent>(json!("CLONE_CREATE")).is_err());
}

#[test]
fn basic_payload_golden() {
    let payload = WebhookPayload::basic(WebhookEvent::SnapshotCreate, "pool@snapshot_20240501");
    assert_golden(
        &payload,
        &json!({"event_type": "snapshot_create", "entity_id": "pool@snapshot_20240501"}),
    );
    let branch = WebhookPayload::basic(WebhookEvent::BranchDelete, "dev");
    assert_golden(&branch, &json!({"event_type": "branch_delete", "entity_id": "dev"}));
}

#[test]
fn clone_create_payload_golden() {
    let payload = WebhookPayload {
        owner_user: "alice@example.com".to_owned(),
        ..WebhookPayload::clone_event(
            WebhookEvent::CloneCreate,
            "c1",
            "db.example.com",
            6000,
            "alice",
            "app",
        )
    };
    let golden = json!({
        "event_type": "clone_create",
        "entity_id": "c1",
        "host": "db.example.com",
        "port": 6000,
        "username": "alice",
        "dbname": "app",
        "owner_user": "alice@example.com",
        "container_name": "c1"
    });
    assert_golden(&payload, &golden);
}

#[test]
fn protection_expiring_payload_golden() {
    let payload = WebhookPayload {
        protected_till: Some(at("2024-05-02T12:00:00Z")),
        expires_in_hours: 1,
        ..WebhookPayload::clone_event(
            WebhookEvent::CloneProtectionExpiring,
            "c1",
            "127.0.0.1",
            6001,
            "bob",
            "postgres",
        )
    };
    let golden = json!({
        "event_type": "clone_protection_expiring",
        "entity_id": "c1",
        "host": "127.0.0.1",
        "port": 6001,
        "username": "bob",
        "dbname": "postgres",
        "container_name": "c1",
        "protected_till": wire_time("2024-05-02T12:00:00Z"),
        "expires_in_hours": 1
    });
    assert_golden(&payload, &golden);
}
