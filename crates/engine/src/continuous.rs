//! Continuous refresh (logical mode, `[retrieval.continuous]`): a full refresh dumps and
//! restores into a new golden dataset whose databases subscribe to the source (each to its own
//! slot, created with the snapshot the dump read), moves the sync instance onto it, now a
//! primary with subscriptions, and cuts the first snapshot from it with the flow physical
//! mode uses (`physical.rs`: storage snapshot, clone, temporary server, prepare, snapshot; here
//! the subscriptions are detached and dropped in the copy first). The slots of the data a
//! refresh replaces, or of a refresh that failed, are dropped on the source; so are the current
//! data's, with the engine's publications, once continuous refresh is turned off.

use retrieval::{DropPublications, Pipeline, Replication};
use storage::DatasetName;
use tracing::{info, warn};

use crate::Engine;
use crate::error::Result;
use crate::physical::{Live, Retrieval, SLOT_DROP_ATTEMPTS};

/// The store key (`meta`) of the golden dataset a continuous refresh is filling: set before
/// its first slot exists, cleared once its slots are recorded with the data or dropped. Found
/// at start, it names a refresh the engine did not live to finish, whose slots are dropped.
pub const INTERRUPTED_REFRESH_KEY: &str = "continuous_refresh_dataset";

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
        self.inner.store.set_meta(INTERRUPTED_REFRESH_KEY, dataset.as_str())?;
        let result = self.continuous_refresh_into(pipeline, live, &dataset).await;
        if let Err(error) = self.inner.store.delete_meta(INTERRUPTED_REFRESH_KEY) {
            warn!(error = %error, "failed to clear the record of a finished continuous refresh");
        }
        result
    }

    async fn continuous_refresh_into(
        &self,
        pipeline: &Pipeline,
        live: &Live,
        dataset: &DatasetName,
    ) -> Result<String> {
        // A failed run drops its own slots (a failure to is in the log).
        let (summary, intent) = self.restore_into(pipeline, dataset).await?;
        let previous = self.current_data_dataset();
        let previous_replication = self
            .refresh_state()
            .last_summary
            .as_ref()
            .map(|summary| summary.replication.clone())
            .unwrap_or_default();
        match self.go_live(live, dataset, intent).await {
            Ok(snapshot) => {
                self.keep_summary(summary);
                if previous != *dataset {
                    // The old data's publications are the new data's too: only slots go.
                    self.release_replication(
                        pipeline,
                        &previous_replication,
                        DropPublications::Keep,
                    )
                    .await;
                }
                self.destroy_unused_data(&previous).await;
                Ok(snapshot)
            }
            Err(error) => {
                self.release_replication(
                    pipeline,
                    &summary.replication,
                    DropPublications::CreatedByRun,
                )
                .await;
                Err(error)
            }
        }
    }

    /// At start: drops the slots of a continuous refresh the engine did not live to finish
    /// (its dataset is gone by then, removed by the audit as its intent says). The record stays
    /// when the source cannot be reached, for the next start.
    pub(crate) async fn release_interrupted_replication(&self) {
        let Some(Retrieval::Continuous(pipeline, _)) = self.retrieval_setup() else { return };
        let Ok(Some(dataset)) = self.inner.store.meta(INTERRUPTED_REFRESH_KEY) else { return };
        if dataset == self.current_data_dataset().as_str() {
            // It went live before the crash: its slots are the current data's.
            let _ = self.inner.store.delete_meta(INTERRUPTED_REFRESH_KEY);
            return;
        }
        match pipeline.drop_interrupted_slots(&dataset).await {
            Ok(dropped) => {
                info!(%dataset, ?dropped, "replication slots of an interrupted refresh dropped");
                if let Err(error) = self.inner.store.delete_meta(INTERRUPTED_REFRESH_KEY) {
                    warn!(error = %error, "failed to clear the record of an interrupted refresh");
                }
            }
            Err(error) => {
                warn!(%dataset, error = %error, "failed to drop the replication slots of an interrupted refresh; trying again at the next start")
            }
        }
    }

    /// With continuous refresh turned off (a start in another mode, or a refresh that replaces
    /// the data it made): the slots the current data's subscriptions used, which nothing reads
    /// any more and which would keep WAL on the source forever, are dropped with the engine's
    /// own publications; an operator's publication stays. What cannot be dropped (the source
    /// unreachable, or no `[retrieval.source]` left to reach it) becomes a `replication_left`
    /// alert naming the slots, and the record stays for the next start.
    pub(crate) async fn release_abandoned_replication(&self) {
        if matches!(self.retrieval_setup(), Some(Retrieval::Continuous(..))) {
            return;
        }
        let Some(mut summary) = self.refresh_state().last_summary.clone() else { return };
        if summary.replication.is_empty() {
            return;
        }
        let slots: Vec<&str> = summary.replication.iter().map(|r| r.slot.as_str()).collect();
        let source = self.config().retrieval.as_ref().and_then(|r| r.source.clone());
        let failure = match &source {
            Some(source) => retrieval::drop_replication(
                source,
                self.inner.servers.binaries(),
                &summary.replication,
                DropPublications::Owned,
            )
            .await
            .first()
            .map(ToString::to_string),
            None => Some("no [retrieval.source] is configured to reach the source".to_owned()),
        };
        if let Some(error) = failure {
            warn!(%error, ?slots, "continuous refresh is off, but its replication slots could not be dropped: drop them on the source");
            self.refresh_state().alert(
                "replication_left",
                "warning",
                format!(
                    "continuous refresh is off, but its replication slots {} are still on the source and keep its WAL ({error}): drop them there with pg_drop_replication_slot",
                    slots.join(", ")
                ),
            );
            return;
        }
        info!(
            ?slots,
            "continuous refresh is off: its replication slots and the engine's publications dropped on the source"
        );
        self.refresh_state().clear_alerts(&["replication_left"]);
        summary.replication.clear();
        self.keep_summary(summary);
    }

    /// Drops `replications`' slots on the source (and the publications `publications` names),
    /// trying again while a slot is still held by the walsender of a subscriber that just
    /// stopped; what cannot be dropped is logged for the operator.
    async fn release_replication(
        &self,
        pipeline: &Pipeline,
        replications: &[Replication],
        publications: DropPublications,
    ) {
        let mut left: Vec<Replication> = replications.to_vec();
        for attempt in 1..=SLOT_DROP_ATTEMPTS {
            if left.is_empty() {
                break;
            }
            let failures = pipeline.drop_replication(&left, publications).await;
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
