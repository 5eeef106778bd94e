//! openraft's type configuration: what a log entry carries (`Command`), what applying one
//! returns (`CommandResponse`), and what a node is (`MemberNode`).

use serde::{Deserialize, Serialize};
use std::io::Cursor;

use crate::model::{Command, CommandResult, ModelError};

/// A Raft node id, allocated by the cluster when a member joins (the bootstrap member is 1).
pub type NodeId = u64;

/// What Raft knows of a member: its name and the address of its internal API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    /// host:port.
    pub addr: String,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// The outcome of applying one command: the log index it was applied at, and the model's
/// answer (a refusal is an answer, not a Raft error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub revision: u64,
    pub result: Result<CommandResult, ModelError>,
}

openraft::declare_raft_types!(
    /// Shoal's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
