//! Integration tests of `scion-bench`: one module per feature.

mod physical;
mod smoke;
