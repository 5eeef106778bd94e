//! Snapshots: the whole applied state (with its last applied log id and membership) as JSON.
//!
//! The current snapshot (built here or installed from a leader) is kept in the `snapshot`
//! tree, `meta` and `data` written in one batch and flushed. A build that finishes after a
//! newer snapshot was stored does not replace it.
//!
//! Storing a built snapshot flushes the whole database, the state-machine trees included:
//! openraft purges the log up to a snapshot, so the applied state must be on disk at least
//! up to that point first.

use openraft::{RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError};
use sled::Batch;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{Op, RaftResult, StoreError};
use super::shared::SharedState;
use super::trees::{encode, Trees, SNAPSHOT, SNAPSHOT_DATA, SNAPSHOT_META};
use crate::consensus::types::{MemberNode, NodeId, TypeConfig};

pub(crate) type Meta = SnapshotMeta<NodeId, MemberNode>;

/// Builds snapshots of the state machine, concurrently with applying.
pub struct SnapshotBuilder {
    pub(crate) trees: Trees,
    pub(crate) shared: SharedState,
    /// Serialises storing and installing snapshots.
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

/// The batch that stores `meta` and `data` as the current snapshot.
pub(crate) fn store_batch(meta: &Meta, data: &[u8]) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    batch.insert(SNAPSHOT_META, encode("a snapshot's metadata", meta)?);
    batch.insert(SNAPSHOT_DATA, data);
    Ok(batch)
}

/// The metadata of the stored snapshot.
pub(crate) fn stored_meta(trees: &Trees) -> Result<Option<Meta>, StoreError> {
    trees.get(&trees.snapshot, SNAPSHOT, SNAPSHOT_META)
}

/// The stored snapshot.
pub(crate) fn stored(trees: &Trees) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let Some(meta) = stored_meta(trees)? else {
        return Ok(None);
    };
    let data = trees
        .snapshot
        .get(SNAPSHOT_DATA)
        .map_err(trees.read_err(SNAPSHOT))?
        .ok_or_else(|| {
            trees.corrupt(
                SNAPSHOT,
                SNAPSHOT_DATA,
                format!("snapshot '{}' has metadata but no data", meta.snapshot_id),
            )
        })?;
    Ok(Some((meta, data.to_vec())))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    #[tracing::instrument(level = "debug", skip(self))]
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Cloning under the read lock is quicker than serialising under it.
        let applied = self.shared.applied(Clone::clone);
        let data = encode("a snapshot", &applied).raft(Op::WriteSnapshot)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let position = applied
            .last_applied
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into());
        let meta = Meta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id: format!("{position}-{nanos:x}"),
        };
        let _guard = self.lock.lock().await;
        let current = stored_meta(&self.trees).raft(Op::ReadSnapshot)?;
        if current.is_none_or(|c| c.last_log_id <= meta.last_log_id) {
            let batch = store_batch(&meta, &data).raft(Op::WriteSnapshot)?;
            self.trees
                .snapshot
                .apply_batch(batch)
                .map_err(self.trees.write_err(SNAPSHOT))
                .raft(Op::WriteSnapshot)?;
            self.trees.flush().await.raft(Op::WriteSnapshot)?;
        }
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
