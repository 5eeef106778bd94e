//! The durable Raft storage of a member, in sled: the log store (entries, vote) and the
//! state machine (the applied cluster state, also kept in memory for the daemon's reads).
//!
//! See `trees` for the layout on disk, `log` and `state_machine` for what is flushed when.

mod error;
mod log;
mod marker;
mod open;
mod records;
mod shared;
mod snapshot;
mod state_machine;
mod trees;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod suite_tests;

pub use error::StoreError;
pub use log::LogStore;
pub use open::open;
pub use shared::SharedState;
pub use snapshot::SnapshotBuilder;
pub use state_machine::StateMachineStore;
