//! Errors of the sled Raft store. Each names the store's directory and the step (and, for
//! corruption, the tree and key) that failed, so that an operator knows which file to restore.
//! openraft receives them wrapped in its `StorageError`, which stops the Raft node: a store
//! that cannot write is not served from.

use openraft::{AnyError, StorageError, StorageIOError};
use std::path::PathBuf;
use thiserror::Error;

use crate::consensus::types::NodeId;

/// An error of the durable Raft store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("opening the raft store at {}: {source}", path.display())]
    Open { path: PathBuf, source: sled::Error },
    #[error("opening tree '{tree}' of the raft store at {}: {source}", path.display())]
    OpenTree {
        path: PathBuf,
        tree: &'static str,
        source: sled::Error,
    },
    #[error("reading tree '{tree}' of the raft store at {}: {source}", path.display())]
    Read {
        path: PathBuf,
        tree: &'static str,
        source: sled::Error,
    },
    #[error("writing tree '{tree}' of the raft store at {}: {source}", path.display())]
    Write {
        path: PathBuf,
        tree: &'static str,
        source: sled::Error,
    },
    #[error("flushing the raft store at {} to disk: {source}", path.display())]
    Flush { path: PathBuf, source: sled::Error },
    #[error(
        "the raft store at {} is corrupt: tree '{tree}', key '{key}' holds an unreadable value: {source}",
        path.display()
    )]
    CorruptValue {
        path: PathBuf,
        tree: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "the raft store at {} is corrupt: tree '{tree}', key '{key}': {reason}",
        path.display()
    )]
    CorruptKey {
        path: PathBuf,
        tree: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "the raft store at {} lost its contents: {} names store '{expected}' but the database holds {found}; restore the directory from a backup, or remove it and rejoin as a new member",
        path.display(),
        marker.display()
    )]
    Lost {
        path: PathBuf,
        marker: PathBuf,
        expected: String,
        found: String,
    },
    #[error("accessing the store marker {}: {source}", path.display())]
    Marker {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding {what} for the raft store: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("decoding snapshot '{id}': {source}")]
    DecodeSnapshot {
        id: String,
        source: serde_json::Error,
    },
    #[error("opening the raft store at {}: the loading task failed: {source}", path.display())]
    Task {
        path: PathBuf,
        source: tokio::task::JoinError,
    },
}

/// Which openraft operation failed, for its error report.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    ReadLogs,
    WriteLogs,
    ReadVote,
    WriteVote,
    WriteStateMachine,
    ReadSnapshot,
    WriteSnapshot,
}

impl StoreError {
    /// Wraps the error for openraft.
    pub(crate) fn into_raft(self, op: Op) -> StorageError<NodeId> {
        let e = AnyError::new(&self);
        let io = match op {
            Op::ReadLogs => StorageIOError::read_logs(e),
            Op::WriteLogs => StorageIOError::write_logs(e),
            Op::ReadVote => StorageIOError::read_vote(e),
            Op::WriteVote => StorageIOError::write_vote(e),
            Op::WriteStateMachine => StorageIOError::write_state_machine(e),
            Op::ReadSnapshot => StorageIOError::read_snapshot(None, e),
            Op::WriteSnapshot => StorageIOError::write_snapshot(None, e),
        };
        io.into()
    }
}

/// Shorthand: `result.raft(Op::ReadLogs)?`. The error type is the one openraft's storage
/// traits return.
#[allow(clippy::result_large_err)]
pub(crate) trait RaftResult<T> {
    fn raft(self, op: Op) -> Result<T, StorageError<NodeId>>;
}

#[allow(clippy::result_large_err)]
impl<T> RaftResult<T> for Result<T, StoreError> {
    fn raft(self, op: Op) -> Result<T, StorageError<NodeId>> {
        self.map_err(|e| {
            tracing::error!(error = %e, ?op, "raft store failed");
            e.into_raft(op)
        })
    }
}
