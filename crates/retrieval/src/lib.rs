//! Retrieval: data from a source PostgreSQL (dumps, or a physical copy) into a fresh target
//! data directory, ready for a snapshot.
//!
//! - [`config`] — the `[retrieval]` configuration and its validation (rename rules, cron);
//! - [`pipeline`] — [`Pipeline::run`], the order of the stages: probe, initdb + temporary target,
//!   roles, dump and restore or stream, preprocessing, VACUUM (FREEZE, ANALYZE), renames,
//!   CHECKPOINT, clean stop;
//! - [`masking`] — masking of personal data at snapshot time (`[retrieval.masking]`): rules,
//!   the SQL they become, the PII check, the runner the preparation step calls;
//! - `logical` — the tools of logical retrieval (plan, dump, restore, stream, VACUUM);
//! - [`physical`] — physical mode: its initial copy ([`InitialCopy`]: pg_basebackup, pgBackRest
//!   or a custom tool into an empty directory, made a standby), its replication slots, and
//!   [`physical::promote`], which turns a crash-consistent copy of the standby into a promoted,
//!   prepared data directory, at the latest WAL or a point in time;
//! - [`extensions`] — the source's extensions and preload libraries against the target's
//!   install, checked before any dump, restore or copy; the preload settings a copy carries;
//! - `target` — the temporary target server ([`Target`]): initdb, start, admin SQL, its log;
//! - [`progress`] — [`Progress`] through a `tokio::sync::watch` channel;
//! - [`error`] — [`Error`], with pg_dump/pg_restore/libpq messages mapped to variants.
//!
//! The engine schedules runs (cron, `/full-refresh`), gives each one a new dataset, and takes the
//! snapshot after a successful run. This crate does not know about datasets or snapshots.
//! Processes are spawned through `exec`; the target instance is run through `postgres`.

pub mod archive;
pub mod check;
pub mod config;
pub mod error;
pub mod extensions;
mod logical;
pub mod masking;
pub mod physical;
mod pipe;
pub mod pipeline;
mod prepare;
pub mod progress;
mod run;
mod source;
mod target;

pub use archive::DumpFormat;
pub use config::{
    ContinuousConfig, DatabaseConfig, DumpConfig, PhysicalConfig, PhysicalTool,
    PreprocessingConfig, RestoreConfig, RetrievalConfig, SourceConfig,
};
pub use error::{Error, Result};
pub use logical::replication::{
    DropPublications, MIN_SOURCE_MAJOR, Replication, SubscriberStatus, SubscriptionStatus,
    subscription_status,
};
pub use masking::MaskingConfig;
pub use physical::{CopySummary, CopyTarget, InitialCopy};
pub use pipeline::{DatabaseSummary, Pipeline, Summary, Target, drop_replication};
pub use progress::{Progress, Stage, StageTiming};
pub use source::SOURCE_APPLICATION_NAME;
