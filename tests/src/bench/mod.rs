//! Benchmarks that run a reference beside Shoal in the same invocation and print the ratio.

pub mod all;
pub mod exec;
pub mod failover;
pub mod moves;
pub mod raft;
pub mod runtime;
pub mod schedule;
pub mod stats;
