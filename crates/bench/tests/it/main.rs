//! Integration tests of `scion-bench`: one module per feature.

mod smoke;
