//! Shoal's cluster state.
//!
//! `model` is pure: the replicated state, the commands that change it and the deterministic
//! `apply`. Times and ids come inside the commands, so every replica applying the same log
//! reaches the same state. `consensus` holds the adapters around it: openraft's type
//! configuration, the sled log store and state machine, and Raft over gRPC.

pub mod consensus;
pub mod model;
pub mod scheduler;

pub use model::{
    apply, CaRecord, Capacity, ClusterState, Command, CommandResult, ConfigError, DesiredState,
    Identity, Image, Instance, InstanceConfig, InstanceName, InstanceStatus, Member, ModelError,
    MovePhase, MoveRecord, ObservedState, Token, TokenKind, Usage, ViewDelta,
};
