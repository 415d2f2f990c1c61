//! Scion's domain core: the `Engine` and everything it decides about clones, snapshots,
//! branches and leases.
//!
//! It knows nothing of HTTP, JSON framing or command-line parsing; the `http-api` and `server`
//! crates translate to and from it.

pub mod model;
pub mod ports;
pub mod store;
