//! The pure cluster-state model: no I/O, no clocks, no randomness.

mod apply;
mod command;
mod config;
mod error;
mod names;
mod state;

pub use apply::apply;
pub use command::{Command, CommandResult};
pub use config::{parse_bytes, InstanceConfig, KNOWN_KEYS};
pub use error::{ConfigError, ModelError};
pub use names::InstanceName;
pub use state::{
    ClusterState, DesiredState, Image, Instance, InstanceStatus, Member, ObservedState, Usage,
};
