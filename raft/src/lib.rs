//! Shoal's cluster state.
//!
//! `model` is pure: the replicated state, the commands that change it and the deterministic
//! `apply`. Times and ids come inside the commands, so every replica applying the same log
//! reaches the same state. `store` is the durable adapter (sled) that keeps the log and the
//! applied state on disk.

pub mod model;
pub mod store;

pub use model::{
    apply, ClusterState, Command, CommandResult, ConfigError, DesiredState, Image, Instance,
    InstanceConfig, InstanceName, InstanceStatus, Member, ModelError, ObservedState, Usage,
};
