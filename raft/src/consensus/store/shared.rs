//! The applied cluster state in memory, shared between the state machine (the only writer)
//! and the daemon (readers).
//!
//! The state machine applies a whole batch of entries under the write lock, so a reader sees
//! the state before an entry or after it, never in between. After each batch is on disk (in
//! sled, not yet fsynced) and after each snapshot install, the revision is published on a
//! watch channel.
//!
//! The revision is the index of the last applied log entry (commands, blank and membership
//! entries alike), so "wait until revision >= i" works for any log index `i`.

use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;

use crate::consensus::types::{MemberNode, NodeId};
use crate::model::ClusterState;

/// What the state machine holds: the state, and where in the log it stands. Also the
/// content of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) last_membership: StoredMembership<NodeId, MemberNode>,
    pub(crate) state: ClusterState,
}

struct Inner {
    applied: RwLock<Applied>,
    revision: watch::Sender<u64>,
}

/// A read handle on the applied cluster state. Cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl SharedState {
    pub(crate) fn new(applied: Applied) -> Self {
        let (revision, _) = watch::channel(applied.state.revision);
        Self {
            inner: Arc::new(Inner {
                applied: RwLock::new(applied),
                revision,
            }),
        }
    }

    /// Runs `f` on the current state. It holds a read lock, which delays the next apply:
    /// keep `f` short (clone what you need).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.applied(|a| f(&a.state))
    }

    /// The revision, bumped after every applied batch and every installed snapshot.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// The current revision (index of the last applied log entry; 0 before any).
    pub fn revision(&self) -> u64 {
        self.read(|s| s.revision)
    }

    /// The id of the last applied log entry.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.applied(|a| a.last_applied)
    }

    pub(crate) fn applied<R>(&self, f: impl FnOnce(&Applied) -> R) -> R {
        let guard = self
            .inner
            .applied
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Applied) -> R) -> R {
        let mut guard = self
            .inner
            .applied
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Replaces the state with a view received from a member that holds a replica (on an
    /// agent, which runs no Raft replica of its own and never applies log entries).
    pub fn install_view(&self, state: ClusterState) {
        self.update(|a| a.state = state);
        self.publish();
    }

    /// Tells subscribers about the current revision.
    pub(crate) fn publish(&self) {
        let revision = self.revision();
        self.inner.revision.send_if_modified(|r| {
            let changed = *r != revision;
            *r = revision;
            changed
        });
    }
}
