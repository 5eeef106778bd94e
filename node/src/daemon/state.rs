//! The daemon's handle on the cluster state: commits go through Raft (directly on the
//! leader, forwarded otherwise); reads come from this member's applied replica; a revision
//! channel wakes whoever waits for a change (the agent loop, operation waiters).

use shoal_raft::{ClusterState, Command, CommandResult};
use std::sync::Arc;
use tokio::sync::watch;

use super::error::ApiError;
use crate::cluster::{ClusterNode, SubmitError};

/// Shared handle on the replicated state.
#[derive(Clone)]
pub struct StateHandle {
    node: Arc<ClusterNode>,
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl StateHandle {
    /// A handle on `node`'s state.
    pub fn new(node: Arc<ClusterNode>) -> Self {
        Self { node }
    }

    /// The cluster node behind the handle.
    pub fn node(&self) -> &Arc<ClusterNode> {
        &self.node
    }

    /// Commits a command and returns the model's answer, once this member's replica has
    /// applied it too (so a caller reads its own writes here).
    pub async fn submit(&self, cmd: Command) -> Result<CommandResult, ApiError> {
        let resp = self.node.submit(cmd).await?;
        let mut rx = self.node.shared.subscribe();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.node.shared.revision() < resp.revision {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(ApiError::Unavailable(format!(
                    "committed at revision {}, but this member has not applied it within 10 s",
                    resp.revision
                )));
            }
        }
        Ok(resp.result?)
    }

    /// Header that marks a read served without a quorum's confirmation.
    pub const STALE_HEADER: &'static str = "x-shoal-stale";

    /// A response for a read that must be current: after a read barrier, or, when the
    /// cluster cannot confirm (no leader, no quorum), from this member's replica with a
    /// `x-shoal-stale` header saying why it may be stale.
    pub async fn current<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> tonic::Response<T> {
        let barrier = self.node.read_barrier().await;
        let mut resp = tonic::Response::new(self.read(read));
        if let Err(e) = barrier {
            let why = format!("this view may be stale: {e}");
            if let Ok(v) = why.replace(['\n', '\r'], " ").parse() {
                resp.metadata_mut().insert(Self::STALE_HEADER, v);
            }
        }
        resp
    }

    /// Reads `f` from this member's replica; when the answer is not `found` (something is
    /// missing), passes a read barrier and reads again. So a replica that lags (a member
    /// just restarted, a follower a few entries behind) never answers "not found" for
    /// something the cluster has, and the common case costs no round trip.
    pub async fn read_or_catch_up<T>(
        &self,
        f: impl Fn(&ClusterState) -> T,
        found: impl Fn(&T) -> bool,
    ) -> T {
        let v = self.read(&f);
        if found(&v) {
            return v;
        }
        // Without a quorum the local answer stands (the write that follows fails anyway).
        let _ = self.node.read_barrier().await;
        self.read(f)
    }

    /// Runs `f` on this member's applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.node.shared.read(f)
    }

    /// A receiver that changes whenever a command is applied here.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.node.shared.subscribe()
    }
}
