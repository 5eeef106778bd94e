//! Durable storage of the cluster state on one member.

mod local;

pub use local::{LocalStore, StoreError};
