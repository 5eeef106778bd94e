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
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

use crate::consensus::types::{MemberNode, NodeId};
use crate::model::{ClusterState, StateKey};

/// How many applied batches the change log remembers (a watcher further behind gets the
/// whole view again).
const CHANGE_LOG_BATCHES: usize = 8192;

/// The records each recent batch touched, so a watcher can send only what changed.
#[derive(Debug, Default)]
struct ChangeLog {
    /// Changes after this revision are all in `batches`.
    floor: u64,
    /// (revision after the batch, records it may have touched), oldest first.
    batches: VecDeque<(u64, Vec<StateKey>)>,
}

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
    changes: Mutex<ChangeLog>,
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
        let changes = Mutex::new(ChangeLog {
            floor: applied.state.revision,
            batches: VecDeque::new(),
        });
        Self {
            inner: Arc::new(Inner {
                applied: RwLock::new(applied),
                revision,
                changes,
            }),
        }
    }

    /// Notes that the batch which brought the state to `revision` touched `keys`.
    pub(crate) fn record_changes(&self, revision: u64, keys: impl IntoIterator<Item = StateKey>) {
        let mut log = self.changes();
        log.batches
            .push_back((revision, keys.into_iter().collect()));
        while log.batches.len() > CHANGE_LOG_BATCHES {
            if let Some((rev, _)) = log.batches.pop_front() {
                log.floor = rev;
            }
        }
    }

    /// Forgets the change history: the state was replaced as a whole (a snapshot or a
    /// view was installed), so only whole views can be sent from before `revision`.
    pub(crate) fn reset_changes(&self, revision: u64) {
        let mut log = self.changes();
        log.floor = revision;
        log.batches.clear();
    }

    /// The records that may have changed after revision `since`, and the revision up to
    /// which they are known; `None` when the log no longer reaches back that far (send the
    /// whole view then). The state itself may already be newer than that revision: read
    /// the records' current values and report the returned revision.
    pub fn changes_since(&self, since: u64) -> Option<(u64, BTreeSet<StateKey>)> {
        let log = self.changes();
        if since < log.floor {
            return None;
        }
        let upto = log.batches.back().map_or(log.floor, |b| b.0).max(since);
        let mut keys = BTreeSet::new();
        for (rev, touched) in log.batches.iter().rev() {
            if *rev <= since {
                break;
            }
            keys.extend(touched.iter().cloned());
        }
        Some((upto, keys))
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, ChangeLog> {
        self.inner
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let revision = state.revision;
        self.update(|a| a.state = state);
        self.reset_changes(revision);
        self.publish();
    }

    /// Changes the view in place (an agent applying a delta from the member it follows).
    pub fn update_view(&self, f: impl FnOnce(&mut ClusterState)) {
        self.update(|a| f(&mut a.state));
        let revision = self.revision();
        self.reset_changes(revision);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_at(revision: u64) -> SharedState {
        let mut applied = Applied::default();
        applied.state.revision = revision;
        SharedState::new(applied)
    }

    #[test]
    fn changes_since_unions_later_batches_only() {
        let s = shared_at(10);
        s.record_changes(11, [StateKey::Member("a".into())]);
        s.record_changes(12, []);
        s.record_changes(13, [StateKey::Instance("x".into())]);
        let (upto, keys) = s.changes_since(11).unwrap();
        assert_eq!(upto, 13);
        assert_eq!(keys, BTreeSet::from([StateKey::Instance("x".into())]));
        let (upto, keys) = s.changes_since(10).unwrap();
        assert_eq!((upto, keys.len()), (13, 2));
        // Nothing new past the last batch; asked from beyond it, the answer is "nothing".
        assert_eq!(s.changes_since(13).unwrap(), (13, BTreeSet::new()));
        assert_eq!(s.changes_since(20).unwrap(), (20, BTreeSet::new()));
    }

    #[test]
    fn history_before_the_floor_or_a_whole_install_needs_a_whole_view() {
        let s = shared_at(10);
        assert!(s.changes_since(9).is_none());
        for rev in 11..11 + CHANGE_LOG_BATCHES as u64 + 5 {
            s.record_changes(rev, [StateKey::Scheduler]);
        }
        assert!(
            s.changes_since(11).is_none(),
            "the oldest batches were dropped"
        );
        assert!(s.changes_since(20).is_some());
        s.reset_changes(500);
        assert!(s.changes_since(499).is_none());
        assert_eq!(s.changes_since(500).unwrap().1.len(), 0);
    }
}
