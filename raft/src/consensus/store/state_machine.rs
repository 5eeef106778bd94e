//! The Raft state machine: the pure model applied to committed entries, with the result kept
//! in memory (for the daemon's reads) and in sled (so that a restart does not replay the log
//! from zero).
//!
//! ```text
//! apply(entries) ──▶ write lock: model::apply each entry, note the keys it touched
//!                ──▶ read lock: encode the touched records and the position
//!                ──▶ one sled transaction over the state-machine trees
//!                ──▶ publish the revision
//! ```
//!
//! Applying does not fsync: the log entries are durable, and every fsync of the database
//! (the next append, a snapshot) also makes the applied state durable. After a crash the
//! state on disk is a consistent earlier position and openraft re-applies the rest from the
//! log. A write that fails stops Raft (openraft treats storage errors as fatal).
//!
//! Installing a snapshot first stores it with an "installing" marker and flushes, then
//! rewrites the state-machine trees in one transaction that also clears the marker. `open`
//! finishes an install the marker says was interrupted.

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, Snapshot, StorageError, StoredMembership,
};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Arc;

use super::error::{Op, RaftResult, StoreError};
use super::records;
use super::shared::{Applied, SharedState};
use super::snapshot::{self, Meta, SnapshotBuilder};
use super::trees::{Table, Trees, INSTALLING, SNAPSHOT};
use crate::consensus::types::{CommandResponse, MemberNode, NodeId, TypeConfig};
use crate::model::{apply as apply_command, touched, with_raft_members, CommandResult};

/// The durable state machine of one member.
pub struct StateMachineStore {
    trees: Trees,
    shared: SharedState,
    /// Serialises storing and installing snapshots.
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("path", &self.trees.path())
            .field("state", &self.shared)
            .finish_non_exhaustive()
    }
}

impl StateMachineStore {
    pub(crate) fn new(trees: Trees, shared: SharedState) -> Self {
        Self {
            trees,
            shared,
            snapshot_lock: Arc::default(),
        }
    }

    /// A read handle on the applied state, for the daemon.
    pub fn state(&self) -> SharedState {
        self.shared.clone()
    }

    /// Stores the snapshot with the "installing" marker, in one transaction.
    pub(super) fn mark_installing(&self, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
        let batch = snapshot::store_batch(meta, data)?;
        let (snap, sm_meta) = (&self.trees.snapshot, self.trees.table(Table::SmMeta));
        (snap, sm_meta)
            .transaction(|(snap, sm_meta)| {
                snap.apply_batch(&batch)?;
                sm_meta.insert(INSTALLING, &b"1"[..])?;
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(never) => match never {},
                TransactionError::Storage(source) => StoreError::Write {
                    path: self.trees.path(),
                    tree: SNAPSHOT,
                    source,
                },
            })
    }
}

/// Applies one entry to `applied`, noting the records it may change in `keys`.
fn apply_entry(
    applied: &mut Applied,
    entry: Entry<TypeConfig>,
    keys: &mut BTreeSet<crate::model::StateKey>,
) -> CommandResponse {
    let index = entry.log_id.index;
    applied.last_applied = Some(entry.log_id);
    let result = match entry.payload {
        EntryPayload::Blank => {
            applied.state.revision = index;
            Ok(CommandResult::Done)
        }
        EntryPayload::Normal(cmd) => {
            keys.extend(touched(&applied.state, &cmd));
            // A join must not take a node id still in the Raft membership.
            let raft_members = applied
                .last_membership
                .membership()
                .nodes()
                .map(|(id, _)| *id);
            with_raft_members(raft_members.collect(), || {
                apply_command(&mut applied.state, index, &cmd)
            })
        }
        EntryPayload::Membership(membership) => {
            applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
            applied.state.revision = index;
            Ok(CommandResult::Done)
        }
    };
    CommandResponse {
        revision: index,
        result,
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, MemberNode>), StorageError<NodeId>>
    {
        Ok(self
            .shared
            .applied(|a| (a.last_applied, a.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut keys = BTreeSet::new();
        let responses: Vec<CommandResponse> = self.shared.update(|applied| {
            entries
                .into_iter()
                .map(|entry| apply_entry(applied, entry, &mut keys))
                .collect()
        });
        if responses.is_empty() {
            return Ok(responses);
        }
        let batches = self
            .shared
            .applied(|applied| records::changes(applied, &keys))
            .raft(Op::WriteStateMachine)?;
        self.trees.commit(&batches).raft(Op::WriteStateMachine)?;
        self.shared.record_changes(self.shared.revision(), keys);
        self.shared.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            trees: self.trees.clone(),
            shared: self.shared.clone(),
            lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(level = "info", skip_all, fields(snapshot = %meta.snapshot_id))]
    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut applied: Applied = serde_json::from_slice(&data)
            .map_err(|source| StoreError::DecodeSnapshot {
                id: meta.snapshot_id.clone(),
                source,
            })
            .raft(Op::ReadSnapshot)?;
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();

        let _guard = self.snapshot_lock.lock().await;
        self.mark_installing(meta, &data).raft(Op::WriteSnapshot)?;
        self.trees.flush().await.raft(Op::WriteSnapshot)?;
        records::rewrite(&self.trees, &applied).raft(Op::WriteSnapshot)?;
        self.trees.flush().await.raft(Op::WriteSnapshot)?;

        let revision = applied.state.revision;
        self.shared.update(|a| *a = applied);
        self.shared.reset_changes(revision);
        self.shared.publish();
        tracing::info!(revision = self.shared.revision(), "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(snapshot::stored(&self.trees)
            .raft(Op::ReadSnapshot)?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}
