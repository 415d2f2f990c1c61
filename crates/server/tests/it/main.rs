//! End-to-end tests of `scion-server`: the real binary on a real btrfs pool, driven over HTTP.
