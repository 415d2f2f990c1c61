//! `rds-refresh`'s decisions as pure functions: which snapshot to restore, the temporary
//! instance's name and tags, which instance is an orphan to delete, what the engine's retrieval
//! status means while a refresh runs, and what the temporary instance costs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::api::{Cluster, Instance, Snapshot};

/// DBLab's tags: every temporary instance carries them, so a later run can find it again.
pub(crate) const TAG_MANAGED_BY: &str = "ManagedBy";
pub(crate) const MANAGED_BY: &str = "dblab-rds-refresh";
pub(crate) const TAG_AUTO_DELETE: &str = "AutoDelete";
pub(crate) const TAG_DELETE_AFTER: &str = "DeleteAfter";
/// DBLab's name prefix of temporary instances.
pub(crate) const CLONE_PREFIX: &str = "dblab-refresh-";

/// The newest available automated snapshot.
pub(crate) fn latest_automated(snapshots: &[Snapshot]) -> Option<&Snapshot> {
    snapshots
        .iter()
        .filter(|snapshot| snapshot.kind == "automated" && snapshot.status == "available")
        .max_by_key(|snapshot| snapshot.created)
}

/// `dblab-refresh-YYYYMMDD-HHMMSS`, with `-2`, `-3`… when that name is in `taken` (an earlier
/// run's instance deleted within the same second).
pub(crate) fn clone_id(now: DateTime<Utc>, taken: &[String]) -> String {
    let base = format!("{CLONE_PREFIX}{}", now.format("%Y%m%d-%H%M%S"));
    let free = |id: &String| !taken.contains(id);
    std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(free)
        .unwrap_or(base)
}

/// The operator's tags plus DBLab's three, which win.
pub(crate) fn clone_tags(
    user: &BTreeMap<String, String>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> BTreeMap<String, String> {
    let mut tags = user.clone();
    tags.insert(TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    tags.insert(TAG_AUTO_DELETE.to_owned(), "true".to_owned());
    tags.insert(TAG_DELETE_AFTER.to_owned(), delete_after(now, max_age).to_rfc3339());
    tags
}

/// When an instance made at `now` is overdue.
pub(crate) fn delete_after(now: DateTime<Utc>, max_age: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX)
}

/// Why an instance is an orphan to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Orphan {
    /// Its `DeleteAfter` tag has passed.
    Overdue(DateTime<Utc>),
    /// It is older than the maximum age (its tag is missing or unreadable).
    TooOld(DateTime<Utc>),
}

/// Whether `instance` is a temporary instance of a refresh that should be gone: tagged
/// `ManagedBy=dblab-rds-refresh` and `AutoDelete=true`, not already being deleted, and past its
/// `DeleteAfter` or older than `max_age`. Anything else, whatever its name, is left alone; so
/// is an Aurora cluster's member, which goes with its cluster.
pub(crate) fn orphan(instance: &Instance, now: DateTime<Utc>, max_age: Duration) -> Option<Orphan> {
    if instance.cluster.is_some() {
        return None;
    }
    orphan_by_tags(&instance.tags, &instance.status, instance.created, now, max_age)
}

/// [`orphan`] for an Aurora cluster.
pub(crate) fn orphan_cluster(
    cluster: &Cluster,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<Orphan> {
    orphan_by_tags(&cluster.tags, &cluster.status, cluster.created, now, max_age)
}

fn orphan_by_tags(
    tags: &BTreeMap<String, String>,
    status: &str,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<Orphan> {
    let tag = |key: &str| tags.get(key).map(String::as_str);
    if tag(TAG_MANAGED_BY) != Some(MANAGED_BY) || tag(TAG_AUTO_DELETE) != Some("true") {
        return None;
    }
    if status == "deleting" {
        return None;
    }
    let deadline = tag(TAG_DELETE_AFTER)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc));
    if let Some(deadline) = deadline.filter(|deadline| *deadline <= now) {
        return Some(Orphan::Overdue(deadline));
    }
    let created = created?;
    (delete_after(created, max_age) <= now).then_some(Orphan::TooOld(created))
}

/// What the engine's `retrieving.status` says while `rds-refresh` waits for its refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Keep polling.
    Waiting,
    /// The refresh finished.
    Finished,
    /// The refresh failed (with the engine's alert, if any).
    Failed(String),
    /// The engine went idle without running it.
    Stopped,
}

/// DBLab's statuses of a running refresh.
pub(crate) fn is_busy(status: &str) -> bool {
    matches!(status, "refreshing" | "snapshotting" | "pending" | "renewed")
}

/// Reads one `/status` poll: `seen_busy` is whether an earlier poll saw the refresh running.
pub(crate) fn progress(status: &str, seen_busy: bool, alert: Option<&str>) -> Progress {
    match status {
        _ if is_busy(status) => Progress::Waiting,
        "failed" if seen_busy => Progress::Failed(alert.unwrap_or("no alert message").to_owned()),
        "finished" if seen_busy => Progress::Finished,
        "inactive" if seen_busy => Progress::Stopped,
        // Before the engine picked the refresh up, the old run's final status still shows.
        _ => Progress::Waiting,
    }
}

/// DBLab's dump parallelism: half the vCPUs of the temporary instance's class (at least one),
/// from its size (`db.<family>.<size>`); `None` for a size it does not know.
pub(crate) fn dump_jobs(class: &str) -> Option<u32> {
    let size = class.rsplit('.').next()?;
    let vcpus = match size {
        "micro" | "small" | "medium" | "large" => 2,
        "xlarge" => 4,
        "metal" => 96,
        _ => {
            let multiple: u32 = size.strip_suffix("xlarge")?.parse().ok()?;
            multiple.checked_mul(4)?
        }
    };
    Some((vcpus / 2).max(1))
}

/// On-demand hourly prices (USD, us-east-1, PostgreSQL, single-AZ) of common classes, for the
/// estimate printed before a refresh; other regions and classes differ.
#[allow(clippy::approx_constant, reason = "$0.318 is a price, not 1/π")]
const HOURLY_USD: &[(&str, f64)] = &[
    ("db.t3.micro", 0.018),
    ("db.t3.small", 0.036),
    ("db.t3.medium", 0.072),
    ("db.t3.large", 0.145),
    ("db.t4g.micro", 0.016),
    ("db.t4g.small", 0.032),
    ("db.t4g.medium", 0.065),
    ("db.t4g.large", 0.129),
    ("db.m5.large", 0.178),
    ("db.m5.xlarge", 0.356),
    ("db.m5.2xlarge", 0.712),
    ("db.m6g.large", 0.159),
    ("db.m6g.xlarge", 0.318),
    ("db.m6i.large", 0.178),
    ("db.m6i.xlarge", 0.356),
    ("db.m7g.large", 0.168),
    ("db.r5.large", 0.25),
    ("db.r5.xlarge", 0.50),
    ("db.r6g.large", 0.225),
    ("db.r6g.xlarge", 0.45),
    ("db.r6i.large", 0.25),
    ("db.r7g.large", 0.239),
];

/// The estimate's text: the hourly price and the cost of a typical 2–5 h run and of the
/// longest run the timeout allows, or why there is none.
pub(crate) fn cost_estimate(class: &str, timeout: Duration) -> String {
    let Some((_, hourly)) = HOURLY_USD.iter().find(|(name, _)| *name == class) else {
        return format!(
            "cost estimate: no price known for {class}; see the RDS pricing page (storage, I/O \
             and snapshot restore are charged apart)"
        );
    };
    let hours = timeout.as_secs_f64() / 3600.0;
    format!(
        "cost estimate: {class} at about ${hourly:.3}/hour (on demand, us-east-1): ${:.2}-${:.2} \
         for a typical 2-5 h run, at most ${:.2} if it runs until the {hours:.1} h timeout; \
         storage and I/O are extra",
        hourly * 2.0,
        hourly * 5.0,
        hourly * hours
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, hour, 0, 0).unwrap()
    }

    fn snapshot(id: &str, kind: &str, status: &str, hour: u32) -> Snapshot {
        Snapshot {
            id: id.to_owned(),
            instance: "prod".to_owned(),
            status: status.to_owned(),
            kind: kind.to_owned(),
            engine: "postgres".to_owned(),
            created: Some(at(hour)),
        }
    }

    fn instance(tags: &[(&str, &str)], created_hour: u32) -> Instance {
        Instance {
            id: "dblab-refresh-20261203-010000".to_owned(),
            status: "available".to_owned(),
            class: "db.t3.medium".to_owned(),
            engine: "postgres".to_owned(),
            address: None,
            port: None,
            created: Some(at(created_hour)),
            deletion_protection: false,
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            cluster: None,
        }
    }

    #[test]
    fn the_latest_available_automated_snapshot_wins() {
        let snapshots = vec![
            snapshot("rds:prod-1", "automated", "available", 1),
            snapshot("rds:prod-3", "automated", "creating", 3),
            snapshot("manual-4", "manual", "available", 4),
            snapshot("rds:prod-2", "automated", "available", 2),
        ];
        assert_eq!(latest_automated(&snapshots).map(|s| s.id.as_str()), Some("rds:prod-2"));
        assert_eq!(latest_automated(&snapshots[2..3]), None);
    }

    #[test]
    fn names_and_tags_are_dblabs() {
        assert_eq!(clone_id(at(10), &[]), "dblab-refresh-20261203-100000");
        let taken = ["dblab-refresh-20261203-100000".to_owned()];
        assert_eq!(clone_id(at(10), &taken), "dblab-refresh-20261203-100000-2");
        let user = BTreeMap::from([
            ("team".to_owned(), "dba".to_owned()),
            ("ManagedBy".to_owned(), "me".to_owned()),
        ]);
        let tags = clone_tags(&user, at(10), Duration::from_secs(48 * 3600));
        assert_eq!(tags["team"], "dba");
        assert_eq!(tags["ManagedBy"], "dblab-rds-refresh");
        assert_eq!(tags["AutoDelete"], "true");
        assert_eq!(tags["DeleteAfter"], "2026-12-05T10:00:00+00:00");
    }

    #[test]
    fn orphans() {
        let max_age = Duration::from_secs(2 * 3600);
        let managed = [("ManagedBy", "dblab-rds-refresh"), ("AutoDelete", "true")];
        let now = at(10);
        let cases: Vec<(&str, Instance, Option<Orphan>)> = vec![
            (
                "young, not yet due",
                instance(&[managed[0], managed[1], ("DeleteAfter", "2026-12-03T12:00:00Z")], 9),
                None,
            ),
            (
                "past DeleteAfter",
                instance(&[managed[0], managed[1], ("DeleteAfter", "2026-12-03T09:30:00Z")], 9),
                Some(Orphan::Overdue(Utc.with_ymd_and_hms(2026, 12, 3, 9, 30, 0).unwrap())),
            ),
            (
                "older than the maximum age though its tag says later",
                instance(&[managed[0], managed[1], ("DeleteAfter", "2026-12-09T00:00:00Z")], 7),
                Some(Orphan::TooOld(at(7))),
            ),
            ("no DeleteAfter, young", instance(&managed, 9), None),
            ("no DeleteAfter, old", instance(&managed, 8), Some(Orphan::TooOld(at(8)))),
            (
                "an unreadable DeleteAfter falls back on the age",
                instance(&[managed[0], managed[1], ("DeleteAfter", "soon")], 1),
                Some(Orphan::TooOld(at(1))),
            ),
            ("not ours", instance(&[("ManagedBy", "terraform"), ("AutoDelete", "true")], 1), None),
            ("AutoDelete off", instance(&[managed[0], ("AutoDelete", "false")], 1), None),
            ("untagged, whatever its name", instance(&[], 1), None),
        ];
        for (name, instance, expected) in cases {
            assert_eq!(orphan(&instance, now, max_age), expected, "{name}");
        }
        let mut deleting = instance(&managed, 1);
        deleting.status = "deleting".to_owned();
        assert_eq!(orphan(&deleting, now, max_age), None);
        // A cluster's member goes with its cluster, which is judged by the same tags.
        let mut member = instance(&managed, 1);
        member.cluster = Some("dblab-refresh-x".to_owned());
        assert_eq!(orphan(&member, now, max_age), None);
        let cluster = Cluster {
            id: "dblab-refresh-x".to_owned(),
            status: "available".to_owned(),
            endpoint: None,
            port: None,
            created: Some(at(1)),
            deletion_protection: true,
            tags: member.tags.clone(),
            members: vec![member.id.clone()],
        };
        assert_eq!(orphan_cluster(&cluster, now, max_age), Some(Orphan::TooOld(at(1))));
    }

    #[test]
    fn progress_needs_the_refresh_to_have_been_seen() {
        let cases = [
            ("finished", false, Progress::Waiting),
            ("inactive", false, Progress::Waiting),
            ("refreshing", false, Progress::Waiting),
            ("snapshotting", true, Progress::Waiting),
            ("finished", true, Progress::Finished),
            ("inactive", true, Progress::Stopped),
            ("failed", false, Progress::Waiting),
            ("failed", true, Progress::Failed("disk full".to_owned())),
        ];
        for (status, seen, expected) in cases {
            assert_eq!(progress(status, seen, Some("disk full")), expected, "{status} {seen}");
        }
        assert!(is_busy("renewed") && is_busy("pending") && !is_busy("finished"));
    }

    #[test]
    fn dump_jobs_are_half_the_vcpus() {
        let cases = [
            ("db.t3.micro", Some(1)),
            ("db.t3.medium", Some(1)),
            ("db.m5.xlarge", Some(2)),
            ("db.r6g.2xlarge", Some(4)),
            ("db.r5.24xlarge", Some(48)),
            ("db.m5.metal", Some(48)),
            ("db.m5.huge", None),
            ("db.m5.xxlarge", None),
        ];
        for (class, expected) in cases {
            assert_eq!(dump_jobs(class), expected, "{class}");
        }
    }

    #[test]
    fn cost_estimates() {
        let text = cost_estimate("db.t3.medium", Duration::from_secs(4 * 3600));
        assert_eq!(
            text,
            "cost estimate: db.t3.medium at about $0.072/hour (on demand, us-east-1): $0.14-$0.36 \
             for a typical 2-5 h run, at most $0.29 if it runs until the 4.0 h timeout; storage \
             and I/O are extra"
        );
        assert!(cost_estimate("db.x99.huge", Duration::from_secs(60)).contains("no price known"));
    }
}
