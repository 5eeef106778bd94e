//! Consensus: openraft's type configuration for Shoal, the sled log store and state machine,
//! and Raft over gRPC. The model stays pure; these are the adapters around it.

mod network;
mod store;
mod types;

pub use network::{
    raft_config, raft_server, ClientError, GrpcNetwork, GrpcNetworkFactory, RaftGrpcService,
    WireError, CONNECT_TIMEOUT, ELECTION_TIMEOUT_MAX_MS, ELECTION_TIMEOUT_MIN_MS,
    HEARTBEAT_INTERVAL_MS, MAX_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES,
};
pub use store::{open, LogStore, SharedState, SnapshotBuilder, StateMachineStore, StoreError};
pub use types::{CommandResponse, MemberNode, NodeId, TypeConfig};
