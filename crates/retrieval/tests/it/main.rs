//! Integration tests against real PostgreSQL clusters: a source with several databases,
//! schemas, roles, extensions and large objects, retrieved into a fresh target and compared
//! table by table (row count and checksum); and physical copies (pg_basebackup, pgBackRest,
//! custom) started as standbys that replay the source's new rows.
//!
//! They run as root (servers run as the OS user `postgres`), each in its own temp directory under
//! /tmp, on free loopback ports; the full-disk case mounts a small ext4 image and detaches it.

// The helpers are not `#[test]` functions, which clippy's allow-unwrap-in-tests would cover.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any unexpected error")]

mod extensions;
mod failures;
mod fidelity;
mod files;
mod masking;
mod physical;
mod promote;
mod refresh;
mod support;
