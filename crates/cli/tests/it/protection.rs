//! The `--protected` forms of the seed post against a server with a 60-minute default lease and a
//! one-day cap: what `scion` sends is what the server grants.

use chrono::{DateTime, Utc};

use crate::support::{PASSWORD, TestServer};

const SERVER_LIMITS: &str =
    "protection_lease_duration_minutes = 60\nprotection_max_duration_minutes = 1440";

/// Minutes between `createdAt` (or now) and `protectedTill`, rounded; `None` when unprotected.
fn lease_minutes(clone: &serde_json::Value, since: DateTime<Utc>) -> Option<i64> {
    if clone["protected"] != true {
        assert!(clone.get("protectedTill").is_none_or(serde_json::Value::is_null), "{clone}");
        return None;
    }
    let till = clone["protectedTill"].as_str().expect("a protected clone has protectedTill");
    let till = DateTime::parse_from_rfc3339(till).expect("RFC 3339").with_timezone(&Utc);
    Some(((till - since).num_seconds() as f64 / 60.0).round() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_forms() {
    let server = TestServer::start(SERVER_LIMITS).await;
    let forms = [
        ("true", Some(60)),
        ("TRUE", Some(60)),
        ("", Some(60)),
        ("120", Some(120)),
        ("0", Some(1440)),
        ("2h", Some(120)),
        ("7d", Some(1440)),
        ("false", None),
    ];
    for (n, (form, minutes)) in forms.iter().enumerate() {
        let id = format!("p{n}");
        let started = Utc::now();
        let json = server
            .scion(&[
                "clone",
                "create",
                "--id",
                &id,
                "--username",
                "u",
                "--password",
                PASSWORD,
                "--protected",
                form,
                "-o",
                "json",
            ])
            .await
            .json();
        assert_eq!(lease_minutes(&json, started), *minutes, "--protected {form:?}: {json}");
    }
    let started = Utc::now();
    let json = server.scion(&["clone", "update", "p7", "-p", "30m", "-o", "json"]).await.json();
    assert_eq!(lease_minutes(&json, started), Some(30));
    let json =
        server.scion(&["clone", "update", "p7", "--protected", "false", "-o", "json"]).await.json();
    assert_eq!(lease_minutes(&json, started), None);
    let json = server.scion(&["clone", "update", "p0", "-o", "json"]).await.json();
    assert_eq!(lease_minutes(&json, started), None, "no --protected lifts protection");

    // Values DBLab refuses are usage errors, before any request.
    for bad in ["yes", "-1", "1.5h", "2w", "366d"] {
        let run = server.scion(&["clone", "update", "p1", "--protected", bad]).await;
        run.expect_code(2);
        assert!(run.stderr.contains("invalid --protected value"), "{bad}: {}", run.stderr);
    }
    server.destroy_all_clones().await;
}
