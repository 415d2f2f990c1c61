//! Intents: the datasets and snapshots an operation is about to create, recorded in the store
//! before they exist (design §5), so that a crash at any step leaves nothing the next start
//! cannot name. The start-up audit ([`crate::audit`]) removes what an intent names and no record
//! owns; an operation that finishes (recording what it made, or removing it) settles its intent.

use std::collections::BTreeSet;
use std::fmt::Display;

use tracing::warn;

use crate::Engine;
use crate::error::Result;

/// The intent of one operation; [`Intent::settle`] clears it. Dropped unsettled (the operation
/// failed and could not remove what it made), it stays for the next start's audit.
#[must_use = "an intent is settled once the operation has recorded or removed what it made"]
pub(crate) struct Intent<'a> {
    engine: &'a Engine,
    objects: Vec<String>,
}

impl Engine {
    /// Records that the objects named are about to be created.
    pub(crate) fn intend(&self, objects: &[&dyn Display]) -> Result<Intent<'_>> {
        let objects: Vec<String> = objects.iter().map(ToString::to_string).collect();
        self.inner.store.record_intents(&objects)?;
        Ok(Intent { engine: self, objects })
    }

    /// The objects of unfinished operations, as the last run left them.
    pub(crate) fn intents(&self) -> BTreeSet<String> {
        match self.inner.store.intents() {
            Ok(intents) => intents.into_iter().collect(),
            Err(error) => {
                warn!(error = %error, "failed to read the store's intents");
                BTreeSet::new()
            }
        }
    }

    /// Clears the intents of `objects`, which the audit has settled.
    pub(crate) fn settle_intents(&self, objects: &[String]) {
        if let Err(error) = self.inner.store.clear_intents(objects) {
            // The next start finds them recorded, or gone, and settles them again.
            warn!(error = %error, "failed to clear settled intents");
        }
    }
}

impl Intent<'_> {
    /// The operation recorded or removed everything it made.
    pub(crate) fn settle(self) {
        self.engine.settle_intents(&self.objects);
    }
}
