//! Commands: the only way the cluster state changes. Each carries its own time, so `apply`
//! stays deterministic.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::state::{DesiredState, Image, Instance, InstanceStatus, Member};

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a member or updates its address.
    RegisterMember { member: Member },
    /// Adds an image (or, if known, records another host holding it) and sets aliases.
    AddImage {
        image: Image,
        aliases: Vec<String>,
        node: String,
    },
    /// Deletes an image no instance uses, with its aliases.
    DeleteImage { fingerprint: String },
    /// Points an alias at an image.
    SetAlias { alias: String, fingerprint: String },
    /// Removes an alias.
    DeleteAlias { alias: String },
    /// Creates an instance placed on `location`.
    CreateInstance {
        name: String,
        image: String,
        config: BTreeMap<String, String>,
        start: bool,
        location: String,
        now_ms: i64,
    },
    /// Changes what is desired of an instance.
    SetDesired {
        name: String,
        desired: DesiredState,
        /// Stop with SIGKILL at once.
        force: bool,
        timeout_s: u32,
        /// Restart (stop then start) even if already running.
        restart: bool,
        /// Compare-and-set on the instance version, if given.
        expected_version: Option<u64>,
    },
    /// A host reports what it observes of an instance placed on it.
    ReportStatus {
        name: String,
        node: String,
        placement_generation: u64,
        status: InstanceStatus,
    },
    /// A host confirms it removed an instance that was to be deleted.
    ForgetInstance {
        name: String,
        node: String,
        placement_generation: u64,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    Instance(Box<Instance>),
    Image(Box<Image>),
}
