//! The pure cluster-state model: no I/O, no clocks, no randomness.

mod apply;
mod apply_cluster;
mod apply_move;
mod apply_placement;
mod command;
mod config;
mod error;
mod keys;
mod names;
mod state;
mod view;

pub use apply::apply;
pub(crate) use apply_cluster::with_raft_members;
pub use command::{Command, CommandResult};
pub use config::{parse_bytes, InstanceConfig, KNOWN_KEYS};
pub use error::{ConfigError, ModelError};
pub use keys::{touched, StateKey};
pub use names::InstanceName;
pub use state::{
    CaRecord, Capacity, ClusterState, DesiredState, GroupPolicy, Identity, Image, Instance,
    InstanceStatus, Member, MovePhase, MoveRecord, ObservedState, PlacementGroup, SchedulerConfig,
    Strategy, Token, TokenKind, Usage,
};
pub use view::{view_for, ViewDelta};
