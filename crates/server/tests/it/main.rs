//! End-to-end tests of `scion-server`: the real binary, on its embedded btrfs pool, with real
//! Postgres clones, driven over HTTP like DBLab's clients drive DBLab Engine.
//!
//! Every test starts its own server with its own state directory and pool; the guard kills
//! that server by PID, stops the Postgres servers inside its pool and detaches the pool.

#![allow(clippy::unwrap_used, reason = "helpers shared by tests panic on failure, as tests do")]

mod admin;
mod api;
mod branches;
mod crashes;
mod files;
mod fuzz;
mod harness;
mod lifecycle;
mod monitoring;
mod observation;
mod physical;
mod prometheus;
mod refresh;
mod requests;
mod resilience;
mod source;
mod sync;
mod tls;
mod ui;
mod wake;
mod webhooks;
