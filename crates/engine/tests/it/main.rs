//! Engine integration tests: a real engine on a real btrfs pool with real Postgres servers.
//!
//! Each test makes its own pool on an image file and its own state directory; the pool's guard
//! stops every server inside it and detaches it, also when the test fails.

#![allow(clippy::unwrap_used, reason = "helpers shared by tests panic on failure, as tests do")]

/// Runs each named `async fn(PoolKind)` as a test on btrfs and on ZFS.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod btrfs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(test_support::PoolKind::Btrfs).await;
                }
            )*
        }
        mod zfs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(test_support::PoolKind::Zfs).await;
                }
            )*
        }
    };
}

mod branches;
mod continuous;
mod disk;
mod harness;
mod isolation;
mod lifecycle;
mod physical;
mod quotas;
mod races;
mod recovery;
mod restart;
mod space;
mod sync;
mod tls;
mod wake;
mod warm;
