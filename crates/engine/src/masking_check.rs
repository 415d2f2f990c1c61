//! The PII check on demand (`POST /admin/masking/check`, `scion masking check`): the newest
//! snapshot of `main`'s data (an unmasked one first) is cloned into a temporary dataset, a
//! server on it is checked by `retrieval::masking::check_copy`, and the dataset is destroyed.
//! It reads neither the source nor any clone's data, and changes neither.

use chrono::Utc;
use retrieval::Target;
use retrieval::masking::{CheckReport, MaskingConfig};
use storage::{DatasetName, SnapshotName, ThinStorage};
use tracing::info;

use crate::error::{Error, Result};
use crate::model::SnapshotRecord;
use crate::pool::Pool;
use crate::{Engine, MAIN_BRANCH};

/// The start of the temporary dataset's name, `masking_check_<ts>`.
const CHECK_PREFIX: &str = "masking_check_";

/// What a check found, and on which snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskingCheck {
    /// The snapshot whose data was checked.
    pub snapshot_id: String,
    /// Whether that snapshot's data was masked (its ruled columns were rewritten; the unruled
    /// ones, which the check samples, hold the source's values either way).
    pub snapshot_masked: bool,
    /// The findings and the rules' problems.
    pub report: CheckReport,
}

/// The snapshot a check reads: the newest retrieved data on `main` (not a commit, not a
/// branch's), the unmasked one of a refresh that kept both. A masked one serves as well: the
/// check samples only unruled columns, which masking leaves as they were.
pub(crate) fn check_snapshot(snapshots: &[SnapshotRecord]) -> Option<&SnapshotRecord> {
    snapshots
        .iter()
        .filter(|snapshot| {
            snapshot.branch == MAIN_BRANCH && Pool::is_data_snapshot(&snapshot.storage_name)
        })
        .max_by_key(|snapshot| (snapshot.data_state_at, !snapshot.masked, snapshot.created_at))
}

impl Engine {
    /// Runs the PII check and the rules' validation of `[retrieval.masking]` (an empty section
    /// when there is none: every personal-looking column is reported) on a temporary clone of
    /// the newest snapshot of the retrieved data.
    pub async fn check_masking(&self) -> Result<MaskingCheck> {
        let config = self.config();
        let Some(retrieval) = config.retrieval.as_ref() else {
            return Err(Error::InvalidInput(
                "no retrieval is configured: the masking check reads the retrieved data".to_owned(),
            ));
        };
        let masking = retrieval.masking.clone().unwrap_or_default();
        // Snapshots hold the databases as renamed after masking.
        let masking: MaskingConfig = masking.renamed(&retrieval.database_rename);
        let _one_at_a_time = self.inner.masking_check_lock.lock().await;
        let snapshot = check_snapshot(&self.read_state().snapshots).cloned().ok_or_else(|| {
            Error::NotFound(
                "there is no snapshot of retrieved data to check yet: wait for retrieval"
                    .to_owned(),
            )
        })?;
        let name: SnapshotName = snapshot
            .storage_name
            .parse()
            .map_err(|error: storage::Error| Error::InvalidInput(error.to_string()))?;
        let storage = self.inner.pool.storage();
        let listing = storage.list().await?;
        let base = format!("{CHECK_PREFIX}{}", Utc::now().format("%Y%m%d%H%M%S"));
        let mut candidate = base.clone();
        let dataset = (1..)
            .find_map(|suffix| {
                let dataset = DatasetName::new(candidate.clone()).ok()?;
                if listing.dataset(&dataset).is_none() {
                    return Some(dataset);
                }
                candidate = format!("{base}_{suffix}");
                None
            })
            .ok_or_else(|| Error::InvalidInput(format!("no dataset name for {base}")))?;
        let intent = self.intend(&[&dataset])?;
        let mountpoint = {
            // Held only while cloning: a snapshot's deletion waits, and the check's server
            // then runs on a dataset of its own.
            let _serial = self.inner.snapshot_lock.lock().await;
            if !self.read_state().snapshots.iter().any(|found| found.id == snapshot.id) {
                intent.settle();
                return Err(Error::NotFound(format!("snapshot {} was deleted", snapshot.id)));
            }
            match storage.clone_snapshot(&name, &dataset).await {
                Ok(mountpoint) => mountpoint,
                Err(error) => {
                    if self.discard(&dataset).await {
                        intent.settle();
                    }
                    return Err(error.into());
                }
            }
        };
        let mut target =
            Target::new(Pool::pgdata(&mountpoint), self.inner.state_dir.join("masking-check"));
        target.admin_role = config.clone.admin_role.clone();
        let result = retrieval::masking::check_copy(
            &masking,
            self.inner.servers.binaries(),
            self.inner.servers.os_user(),
            &target,
            &self.inner.cancel,
        )
        .await;
        if self.discard(&dataset).await {
            intent.settle();
        }
        let report = result?;
        info!(
            snapshot_id = %snapshot.id,
            findings = report.findings.len(),
            problems = report.problems.len(),
            "masking check done"
        );
        Ok(MaskingCheck { snapshot_id: snapshot.id, snapshot_masked: snapshot.masked, report })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn snapshot(storage_name: &str, branch: &str, minute: u32, masked: bool) -> SnapshotRecord {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        SnapshotRecord {
            id: format!("pool/{storage_name}"),
            pool: "pool".into(),
            storage_name: storage_name.into(),
            branch: branch.into(),
            parent_id: None,
            message: String::new(),
            created_at: at,
            data_state_at: at,
            physical_size: 0,
            logical_size: 0,
            protected: false,
            protected_till: None,
            delete_at: None,
            masked,
        }
    }

    #[test]
    fn the_check_reads_the_newest_retrieved_data_unmasked_first() {
        let older = snapshot("data_1@snapshot_1", "main", 1, false);
        let masked = snapshot("data_2@snapshot_2", "main", 2, true);
        let unmasked = snapshot("data_2@snapshot_3", "main", 2, false);
        let commit = snapshot("branch/main/c/r0@3", "main", 3, false);
        let other_branch = snapshot("branch/dev@4", "dev", 4, false);
        let all = [older.clone(), masked.clone(), unmasked.clone(), commit, other_branch];
        assert_eq!(check_snapshot(&all), Some(&unmasked));
        assert_eq!(check_snapshot(&all[..2]), Some(&masked));
        assert_eq!(check_snapshot(&all[3..]), None);
    }
}
