//! Continuous refresh (logical mode, `[retrieval.continuous]`): a full refresh dumps and
//! restores into a new golden dataset whose databases subscribe to the source (each to its own
//! slot, created with the snapshot the dump read), moves the sync instance onto it, now a
//! primary with subscriptions, and cuts the first snapshot from it with the flow physical
//! mode uses (`physical.rs`: storage snapshot, clone, temporary server, prepare, snapshot; here
//! the subscriptions are detached and dropped in the copy first). The slots of the data a
//! refresh replaces, or of a refresh that failed, are dropped on the source.

use retrieval::{Pipeline, Replication};
use storage::DatasetName;
use tracing::{info, warn};

use crate::Engine;
use crate::error::Result;
use crate::physical::{Live, SLOT_DROP_ATTEMPTS};

impl Engine {
    /// A continuous full refresh into the new, still unmade golden dataset `dataset`. On
    /// failure the previous data and its sync instance are as they were, and the new run's
    /// slots (and the publications it created) are gone from the source.
    pub(crate) async fn continuous_refresh(
        &self,
        pipeline: &Pipeline,
        live: &Live,
        dataset: DatasetName,
    ) -> Result<String> {
        let (summary, intent) = self.restore_into(pipeline, &dataset).await?;
        let previous = self.current_data_dataset();
        let previous_replication = self
            .refresh_state()
            .last_summary
            .as_ref()
            .map(|summary| summary.replication.clone())
            .unwrap_or_default();
        match self.go_live(live, &dataset, intent).await {
            Ok(snapshot) => {
                self.keep_summary(summary);
                if previous != dataset {
                    // The old data's publications are the new data's too: only slots go.
                    self.release_replication(pipeline, &previous_replication, false).await;
                }
                self.destroy_unused_data(&previous).await;
                Ok(snapshot)
            }
            Err(error) => {
                self.release_replication(pipeline, &summary.replication, true).await;
                Err(error)
            }
        }
    }

    /// Drops `replications`' slots on the source (and, `with_publications`, the publications
    /// their run created), trying again while a slot is still held by the walsender of a
    /// subscriber that just stopped; what cannot be dropped is logged for the operator.
    async fn release_replication(
        &self,
        pipeline: &Pipeline,
        replications: &[Replication],
        with_publications: bool,
    ) {
        let mut left: Vec<Replication> = replications.to_vec();
        for attempt in 1..=SLOT_DROP_ATTEMPTS {
            if left.is_empty() {
                break;
            }
            let failures = pipeline.drop_replication(&left, with_publications).await;
            if failures.is_empty() {
                for replication in &left {
                    info!(slot = %replication.slot, database = %replication.database, "replication slot of old data released");
                }
                left.clear();
                break;
            }
            if attempt == SLOT_DROP_ATTEMPTS {
                for error in failures {
                    warn!(error = %error, slots = ?left.iter().map(|r| r.slot.as_str()).collect::<Vec<_>>(), "failed to drop a replication slot of old data: drop it on the source");
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
