//! Integration tests against real PostgreSQL servers, every case on every major from 13 to 18.
//!
//! They run as root (the server itself runs as the OS user `postgres`), each in its own temp
//! directory under /tmp and on its own free loopback port, and stop every server they start.

// The helpers are not `#[test]` functions, which clippy's allow-unwrap-in-tests would cover.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any unexpected error")]

mod support;

mod admin;
mod adopt;
mod controldata;
mod icu;
mod isolated;
mod lifecycle;
mod stale;
mod version;
