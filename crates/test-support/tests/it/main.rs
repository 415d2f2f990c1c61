//! Integration tests of the workspace as a whole: the tidy checks that keep ARCHITECTURE.md's
//! rules true without a reader having to enforce them.

mod tidy;
