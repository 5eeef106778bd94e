//! Benchmarks that run a reference beside Shoal in the same invocation and print the ratio.

pub mod raft;
pub mod runtime;
pub mod stats;
