//! Physical mode: copies of a standby's data directory made ready for snapshots.

pub mod promote;
