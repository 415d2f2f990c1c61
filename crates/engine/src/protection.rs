//! Protection and scheduled deletion of snapshots and branches (DBLab's PATCH): the rules of
//! an update, and the three fields both kinds of record store them in.

use chrono::{DateTime, Utc};
use tracing::info;

use crate::Engine;
use crate::branch::BranchView;
use crate::error::{Error, Result};
use crate::lease::{self, Protection, ProtectionRequest};
use crate::model::{BranchRecord, SnapshotRecord};
use crate::snapshot::SnapshotView;
use crate::store::CatalogChange;

/// A change of protection or scheduled deletion of a snapshot or a branch (DBLab's PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectionUpdate {
    /// Turn protection on or off; `None` leaves it.
    pub protected: Option<bool>,
    /// The lease in minutes when turning protection on; `None` or 0 means forever.
    pub duration_minutes: Option<u64>,
    /// Schedule deletion at this time; clears protection.
    pub delete_at: Option<DateTime<Utc>>,
}

/// Protection and scheduled deletion of one object, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guard {
    pub protection: Protection,
    pub delete_at: Option<DateTime<Utc>>,
}

impl ProtectionUpdate {
    /// Applies the update to `guard` at `now`, with protection capped at `cap_minutes`.
    pub(crate) fn apply(self, guard: Guard, cap_minutes: f64, now: DateTime<Utc>) -> Result<Guard> {
        match (self.protected, self.delete_at) {
            (None, None) => Err(Error::InvalidInput(
                "nothing to update: give `protected` or `deleteAt`".to_owned(),
            )),
            (Some(true), Some(_)) => Err(Error::InvalidInput(
                "`protected: true` and `deleteAt` exclude each other".to_owned(),
            )),
            (Some(true), None) => {
                // Snapshots and branches are protected forever unless a lease is asked for.
                let request = ProtectionRequest {
                    protected: true,
                    duration_minutes: Some(self.duration_minutes.unwrap_or(0)),
                };
                Ok(Guard {
                    protection: lease::grant_within(request, 0.0, cap_minutes, now),
                    delete_at: None,
                })
            }
            (_, Some(delete_at)) => {
                Ok(Guard { protection: Protection::NONE, delete_at: Some(delete_at) })
            }
            (Some(false), None) => Ok(Guard { protection: Protection::NONE, ..guard }),
        }
    }
}

impl Engine {
    /// Sets or lifts a branch's protection, or schedules its deletion.
    pub fn update_branch(&self, name: &str, update: ProtectionUpdate) -> Result<BranchView> {
        let cap = self.config().retention.protection_max_duration_minutes;
        let mut record = self.branch(name)?.record;
        let guard = update.apply(record.guard(), cap, Utc::now())?;
        record.set_guard(guard);
        self.apply_catalog(CatalogChange {
            upsert_branches: vec![record],
            ..CatalogChange::default()
        })?;
        info!(branch = %name, protected = guard.protection.protected, delete_at = ?guard.delete_at, "branch protection updated");
        self.branch(name)
    }

    /// Sets or lifts a snapshot's protection, or schedules its deletion.
    pub fn update_snapshot(&self, id: &str, update: ProtectionUpdate) -> Result<SnapshotView> {
        let cap = self.config().retention.protection_max_duration_minutes;
        let mut record = self.snapshot_record(id)?;
        let guard = update.apply(record.guard(), cap, Utc::now())?;
        record.set_guard(guard);
        self.apply_catalog(CatalogChange {
            upsert_snapshots: vec![record],
            ..CatalogChange::default()
        })?;
        info!(snapshot_id = %id, protected = guard.protection.protected, delete_at = ?guard.delete_at, "snapshot protection updated");
        self.snapshot(id)
    }
}

/// A record that carries protection and a scheduled deletion: snapshots and branches.
pub(crate) trait Guarded: Clone {
    /// The snapshot ID or branch name.
    fn key(&self) -> &str;
    /// Its protection and schedule.
    fn guard(&self) -> Guard;
    /// Replaces its protection and schedule.
    fn set_guard(&mut self, guard: Guard);
}

/// Snapshots and branches store protection in the same three fields.
macro_rules! impl_guarded {
    ($record:ty, $key:ident) => {
        impl Guarded for $record {
            fn key(&self) -> &str {
                &self.$key
            }

            fn guard(&self) -> Guard {
                Guard {
                    protection: Protection { protected: self.protected, till: self.protected_till },
                    delete_at: self.delete_at,
                }
            }

            fn set_guard(&mut self, guard: Guard) {
                self.protected = guard.protection.protected;
                self.protected_till = guard.protection.till;
                self.delete_at = guard.delete_at;
            }
        }
    };
}

impl_guarded!(SnapshotRecord, id);
impl_guarded!(BranchRecord, name);

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    const OPEN: Guard = Guard { protection: Protection::NONE, delete_at: None };

    #[test]
    fn protection_updates_follow_dblab_rules() {
        let nothing = ProtectionUpdate::default().apply(OPEN, 0.0, now());
        assert!(matches!(nothing, Err(Error::InvalidInput(_))), "{nothing:?}");

        let both = ProtectionUpdate {
            protected: Some(true),
            delete_at: Some(now()),
            ..ProtectionUpdate::default()
        }
        .apply(OPEN, 0.0, now());
        assert!(matches!(both, Err(Error::InvalidInput(_))), "{both:?}");

        let forever = ProtectionUpdate { protected: Some(true), ..ProtectionUpdate::default() }
            .apply(OPEN, 0.0, now())
            .unwrap();
        assert_eq!(forever.protection, Protection { protected: true, till: None });

        let capped = ProtectionUpdate {
            protected: Some(true),
            duration_minutes: Some(600),
            ..ProtectionUpdate::default()
        }
        .apply(OPEN, 60.0, now())
        .unwrap();
        assert_eq!(capped.protection.till, Some(now() + chrono::Duration::minutes(60)));

        let scheduled = ProtectionUpdate {
            delete_at: Some(now() + chrono::Duration::hours(1)),
            ..ProtectionUpdate::default()
        }
        .apply(forever, 0.0, now())
        .unwrap();
        assert_eq!(scheduled.protection, Protection::NONE, "deleteAt clears protection");
        assert_eq!(scheduled.delete_at, Some(now() + chrono::Duration::hours(1)));

        let lifted = ProtectionUpdate { protected: Some(false), ..ProtectionUpdate::default() }
            .apply(scheduled, 0.0, now())
            .unwrap();
        assert_eq!(lifted.protection, Protection::NONE);
        assert_eq!(lifted.delete_at, scheduled.delete_at, "lifting protection keeps a schedule");
    }
}
