//! Helpers for Shoal's end-to-end tests and benchmarks: a handle on the network-namespace
//! test bed (`deploy/local-cluster`, driven here rather than rewritten) and a runner for
//! the `shoal` CLI against it.

pub mod bench;
pub mod checker;
pub mod faults;
pub mod fuzzing;
pub mod testbed;

pub use testbed::{is_root, CliOutput, Testbed};
