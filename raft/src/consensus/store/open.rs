//! Opening the store: finish an interrupted snapshot install, check every stored value, and
//! load the applied state into memory.
//!
//! Everything is read and decoded once at open, so a corrupt database is refused here, with
//! the tree and key that failed, rather than discovered by Raft later; and a database that
//! sled recovered as empty is caught by the marker file (see `marker`). A panic inside sled
//! (it has a few on damaged files) is caught and reported as an error too.

use openraft::{Entry, LogId, Vote};
use std::path::Path;

use super::error::StoreError;
use super::log::LogStore;
use super::marker;
use super::records;
use super::shared::{Applied, SharedState};
use super::snapshot;
use super::state_machine::StateMachineStore;
use super::trees::{
    Table, Trees, COMMITTED, INSTALLING, LAST_PURGED, LOG, LOG_META, SNAPSHOT, SNAPSHOT_DATA, VOTE,
};
use crate::consensus::types::{NodeId, TypeConfig};

/// Opens (or creates) the Raft store of this member in `dir`: one sled database holding
/// the log and the state machine.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let path = dir.to_path_buf();
    let task = tokio::task::spawn_blocking(move || open_blocking(&path));
    task.await.map_err(|source| StoreError::Task {
        path: dir.to_path_buf(),
        source,
    })?
}

fn open_blocking(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let trees = Trees::open(dir)?;
    marker::check(&trees, dir)?;
    let sm_meta = trees.table(Table::SmMeta);
    if sm_meta
        .contains_key(INSTALLING)
        .map_err(trees.read_err(Table::SmMeta.name()))?
    {
        finish_install(&trees)?;
    }
    check_log(&trees)?;
    if let Some((_, data)) = snapshot::stored(&trees)? {
        trees.decode::<Applied>(SNAPSHOT, SNAPSHOT_DATA, &data)?;
    }
    let applied = records::load(&trees)?;
    tracing::info!(
        path = %dir.display(),
        revision = applied.state.revision,
        "opened the raft store"
    );
    let shared = SharedState::new(applied);
    Ok((
        LogStore::new(trees.clone()),
        StateMachineStore::new(trees, shared),
    ))
}

/// Redoes an install that a crash interrupted, from the stored snapshot.
fn finish_install(trees: &Trees) -> Result<(), StoreError> {
    let (meta, data) = snapshot::stored(trees)?.ok_or_else(|| {
        trees.corrupt(
            Table::SmMeta.name(),
            INSTALLING,
            "a snapshot install was interrupted but the snapshot is missing".into(),
        )
    })?;
    tracing::warn!(snapshot = %meta.snapshot_id, "finishing an interrupted snapshot install");
    let mut applied: Applied = trees.decode(SNAPSHOT, SNAPSHOT_DATA, &data)?;
    applied.last_applied = meta.last_log_id;
    applied.last_membership = meta.last_membership;
    records::rewrite(trees, &applied)?;
    trees.flush_blocking()
}

/// Checks that every log entry decodes, sits under its own index, and that the log has no
/// holes; and that the log's metadata decodes.
fn check_log(trees: &Trees) -> Result<(), StoreError> {
    trees.get::<Vote<NodeId>>(&trees.log_meta, LOG_META, VOTE)?;
    trees.get::<Option<LogId<NodeId>>>(&trees.log_meta, LOG_META, COMMITTED)?;
    trees.get::<LogId<NodeId>>(&trees.log_meta, LOG_META, LAST_PURGED)?;
    let mut previous: Option<u64> = None;
    for item in trees.log.iter() {
        let (k, v) = item.map_err(trees.read_err(LOG))?;
        let index = <[u8; 8]>::try_from(&k[..])
            .map(u64::from_be_bytes)
            .map_err(|_| trees.corrupt(LOG, &k, "a log key is an 8-byte index".into()))?;
        let entry: Entry<TypeConfig> = trees.decode(LOG, &k, &v)?;
        if entry.log_id.index != index {
            return Err(trees.corrupt(
                LOG,
                &k,
                format!("it holds the entry of index {}", entry.log_id.index),
            ));
        }
        if let Some(p) = previous.filter(|p| p + 1 != index) {
            return Err(trees.corrupt(LOG, &k, format!("the log has a hole after index {p}")));
        }
        previous = Some(index);
    }
    Ok(())
}
