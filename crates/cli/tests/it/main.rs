//! End-to-end tests of the `scion` CLI: the real binary against a real `scion-server` on a real
//! btrfs pool (see `support` for how the server is built, started and cleaned up).

mod branch;
mod ci;
mod clone;
mod environments;
mod errors;
mod forwarding;
mod import;
mod init;
mod instance;
mod masking;
mod package;
mod protection;
mod rds;
mod snapshot;
mod support;
mod teleport;
