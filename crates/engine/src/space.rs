//! The pool's free space: the check before every operation that writes to the pool, and how
//! the space stands against the pool's minimum for `/status` and `/metrics`.
//!
//! A clone's server whose `CHECKPOINT` meets a full pool PANICs, and a snapshot, a clone's
//! start or a reset half done on a full pool fails with nothing said about space. So the
//! operations that write to the pool read its space first (not the collector's cached value)
//! and are refused with [`Error::NoSpace`] below [`crate::Pool::min_free`], before they change
//! anything.

use storage::{PoolSpace, ThinStorage};
use tracing::{info, warn};

use crate::Engine;
use crate::error::{Error, Result};
use crate::pool::MinFreeSpace;
use crate::sync::write;

/// How the pool's free space stands against its minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceLevel {
    /// At least twice the minimum is free.
    Enough,
    /// Less than twice the minimum: operations still run, but not for long.
    Low,
    /// Below the minimum: operations that write to the pool are refused.
    Exhausted,
}

impl SpaceLevel {
    /// The level of `space` in a pool that keeps `min_free`.
    pub fn of(space: PoolSpace, min_free: MinFreeSpace) -> SpaceLevel {
        let floor = min_free.bytes(space.total);
        if space.free < floor || space.free == 0 {
            SpaceLevel::Exhausted
        } else if space.free < floor.saturating_mul(2) {
            SpaceLevel::Low
        } else {
            SpaceLevel::Enough
        }
    }
}

/// Bytes in binary units, as `df -h` shows them.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// What `/status` says about the pool's space, or nothing when there is enough.
pub(crate) fn describe(space: PoolSpace, min_free: MinFreeSpace) -> Option<String> {
    let floor = human(min_free.bytes(space.total));
    let (free, total) = (human(space.free), human(space.total));
    match SpaceLevel::of(space, min_free) {
        SpaceLevel::Enough => None,
        SpaceLevel::Low => Some(format!(
            "The pool is low on free space ({free} free of {total}); below {floor} new clones, \
             resets, snapshots, commits and branches are refused"
        )),
        SpaceLevel::Exhausted if space.free == 0 => Some(format!(
            "The pool has no free space left (0 of {total}); new clones, resets, snapshots, \
             commits and branches are refused until space is freed"
        )),
        SpaceLevel::Exhausted => Some(format!(
            "The pool is out of space ({free} free of {total}, below the minimum of {floor}); \
             new clones, resets, snapshots, commits and branches are refused until space is freed"
        )),
    }
}

impl Engine {
    /// Refuses `operation` (named in the message, like "create clone") with [`Error::NoSpace`]
    /// when the pool's free space, read now, is below its minimum. Space freed moments ago is
    /// made to count before refusing. A pool whose space cannot be read does not block the
    /// operation: the operation itself then meets the pool's fault and reports it.
    pub(crate) async fn ensure_space(&self, operation: &str) -> Result<()> {
        let storage = self.inner.pool.storage();
        let min_free = self.inner.pool.min_free();
        // The path of every clone: one statvfs while the pool has room to spare. Only near the
        // minimum is the space read exactly (after a commit), which costs milliseconds.
        if storage
            .pool_space_now()
            .is_ok_and(|space| SpaceLevel::of(space, min_free) == SpaceLevel::Enough)
        {
            return Ok(());
        }
        let Some(space) = self.read_space().await else { return Ok(()) };
        if SpaceLevel::of(space, min_free) != SpaceLevel::Exhausted {
            return Ok(());
        }
        // btrfs (and ZFS) return a removed file's or a destroyed clone's space only once the
        // transaction commits: a pool just cleaned up must not be refused.
        if let Err(error) = storage.settle_freed_space().await {
            warn!(error = %error, "failed to make freed pool space count");
        }
        let Some(space) = self.read_space().await else { return Ok(()) };
        if SpaceLevel::of(space, min_free) != SpaceLevel::Exhausted {
            info!(free = space.free, "freed pool space counts again");
            return Ok(());
        }
        let floor = min_free.bytes(space.total);
        warn!(
            operation,
            free = space.free,
            total = space.total,
            min_free = floor,
            "refused: the pool is out of space"
        );
        Err(Error::NoSpace(format!(
            "{operation}: refused, the pool is out of space ({} free of {}, below the minimum of \
             {} kept free); free space (destroy clones, delete snapshots or branches) and try \
             again",
            human(space.free),
            human(space.total),
            human(floor)
        )))
    }

    /// Reads the pool's space now and keeps it for `/status`; `None` (logged) if it cannot.
    async fn read_space(&self) -> Option<PoolSpace> {
        match self.inner.pool.storage().pool_space().await {
            Ok(space) => {
                *write(&self.inner.space) = Some(space);
                Some(space)
            }
            Err(error) => {
                warn!(error = %error, "failed to read pool space");
                None
            }
        }
    }

    /// Re-reads the pool's space; called by the collector loop and after big changes.
    pub(crate) async fn refresh_space(&self) {
        self.read_space().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn space(free: u64) -> PoolSpace {
        PoolSpace { total: 1000 * MIB, free, used: 1000 * MIB - free }
    }

    #[test]
    fn levels_follow_the_minimum() {
        let min = MinFreeSpace::Percent(5.0);
        assert_eq!(SpaceLevel::of(space(500 * MIB), min), SpaceLevel::Enough);
        assert_eq!(SpaceLevel::of(space(100 * MIB), min), SpaceLevel::Enough);
        assert_eq!(SpaceLevel::of(space(99 * MIB), min), SpaceLevel::Low);
        assert_eq!(SpaceLevel::of(space(50 * MIB), min), SpaceLevel::Low);
        assert_eq!(SpaceLevel::of(space(49 * MIB), min), SpaceLevel::Exhausted);
        assert_eq!(SpaceLevel::of(space(0), min), SpaceLevel::Exhausted);
        let fixed = MinFreeSpace::Bytes(10 * MIB);
        assert_eq!(SpaceLevel::of(space(15 * MIB), fixed), SpaceLevel::Low);
        assert_eq!(SpaceLevel::of(space(9 * MIB), fixed), SpaceLevel::Exhausted);
        // No minimum still calls an empty pool exhausted: nothing can be written.
        assert_eq!(SpaceLevel::of(space(0), MinFreeSpace::Bytes(0)), SpaceLevel::Exhausted);
    }

    #[test]
    fn descriptions_say_what_is_refused() {
        let min = MinFreeSpace::Bytes(10 * MIB);
        assert_eq!(describe(space(500 * MIB), min), None);
        let low = describe(space(15 * MIB), min).unwrap();
        assert!(
            low.starts_with("The pool is low on free space (15.0 MiB free of 1000.0 MiB)"),
            "{low}"
        );
        let out = describe(space(5 * MIB), min).unwrap();
        assert!(out.contains("out of space (5.0 MiB free") && out.contains("10.0 MiB"), "{out}");
        let none = describe(space(0), min).unwrap();
        assert!(none.starts_with("The pool has no free space left"), "{none}");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
