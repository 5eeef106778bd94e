//! The daemon's handle on the cluster state: serialised, durable writes and a revision
//! channel that wakes whoever waits for a change (the agent loop, operation waiters).

use shoal_raft::store::{LocalStore, StoreError};
use shoal_raft::{ClusterState, Command, CommandResult};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use super::error::ApiError;

/// Shared handle on the state store.
#[derive(Clone)]
pub struct StateHandle {
    store: Arc<Mutex<LocalStore>>,
    revision: watch::Sender<u64>,
}

impl StateHandle {
    /// Opens the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = LocalStore::open(dir)?;
        let (revision, _) = watch::channel(store.state().revision);
        Ok(Self {
            store: Arc::new(Mutex::new(store)),
            revision,
        })
    }

    /// Appends a command durably and applies it.
    pub async fn submit(&self, cmd: Command) -> Result<CommandResult, ApiError> {
        let store = self.store.clone();
        let (result, rev) = tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            let r = s.append(&cmd);
            (r, s.state().revision)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("state writer panicked: {e}")))?;
        self.revision.send_replace(rev);
        Ok(result?)
    }

    /// Runs `f` on the current state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let s = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(s.state())
    }

    /// A receiver that changes whenever a command is applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }
}
