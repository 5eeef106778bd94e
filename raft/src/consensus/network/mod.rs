//! Raft between members over gRPC with mutual TLS (`shoal.internal.v1.Raft`).
//!
//! `client` is what openraft sends through (one reused connection per member), `server` is the
//! service that receives, `wire` the encoding both share, and `config` openraft's timing and
//! snapshot settings, which belong with the network because they are tuned to it.

mod client;
mod config;
mod server;
mod wire;

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod cluster_tests;

pub use client::{ClientError, GrpcNetwork, GrpcNetworkFactory, CONNECT_TIMEOUT};
pub use config::{
    raft_config, ELECTION_TIMEOUT_MAX_MS, ELECTION_TIMEOUT_MIN_MS, HEARTBEAT_INTERVAL_MS,
    SNAPSHOT_CHUNK_BYTES,
};
pub use server::{raft_server, RaftGrpcService};
pub use wire::{WireError, MAX_MESSAGE_BYTES};
