//! One PostgreSQL instance, on majors 13 to 18: the only code that touches PGDATA.
//!
//! - [`version`] — majors, `PG_VERSION`, and where each major's binaries are;
//! - [`initdb`] — new clusters;
//! - [`conf`] — the settings and pg_hba.conf Scion writes before every start;
//! - [`carried`] — the source's preload libraries and their settings, carried into a copy;
//! - [`instance`] — start (fast readiness, no polling), stop modes, adopt, stale `postmaster.pid`;
//! - [`pidfile`] — parsing `postmaster.pid`;
//! - [`controldata`] — `pg_controldata`;
//! - [`standby`] — what makes a physical copy start as a standby (`standby.signal`, its
//!   settings, the primary's hot-standby parameters, the replication password file);
//! - [`recovery`] — the recovery settings that turn a copy of a standby into a primary;
//! - [`wal`] — `pg_waldump`: the last commit and the end of the WAL in a directory of segments;
//! - [`admin`] — roles, passwords, sessions, activity, CHECKPOINT over the unix socket;
//! - [`replay`] — a standby's replay positions, lag and WAL receiver;
//! - [`sql`] — quoting of identifiers and literals.
//!
//! Spawning goes through `exec`; SQL through tokio-postgres (this crate is not the crates.io
//! `postgres` crate, which the workspace never uses).

pub mod admin;
pub mod carried;
pub mod conf;
pub mod controldata;
pub mod datadir;
mod error;
pub mod initdb;
pub mod instance;
pub mod pidfile;
pub mod recovery;
pub mod replay;
pub mod sql;
pub mod standby;
pub mod user;
pub mod version;
pub mod wal;

pub use admin::{Activity, Admin, ENGINE_APPLICATION_NAME, RoleKind};
pub use conf::{CERT_LOGIN_ROLE, HbaSettings, HbaTls, HostAuth, ServerSettings, TlsFiles};
pub use controldata::{ClusterState, ControlData, Lsn, read_control_data};
pub use error::{Error, Result};
pub use initdb::{InitDbOptions, initdb};
pub use instance::{
    Instance, InstanceSpec, StartTimings, StopMode, Stopped, remove_stale_pid_file,
};
pub use pidfile::{PidFile, PmStatus};
pub use recovery::{RecoveryPlan, RecoveryTarget};
pub use replay::{ReplayStatus, WalReceiver};
pub use user::OsUser;
pub use version::{BinarySearch, PgBinaries, PgMajor};
