//! A single-member durable log in sled: each command is appended and flushed to disk before
//! it is applied, and the applied state is snapshotted every so often so that opening is
//! fast. On open the snapshot is loaded and the log after it replayed, which yields exactly
//! the state that was acknowledged before a crash.
//!
//! This is the single-host form of the replicated log; the Raft log store and state machine
//! of a multi-member cluster keep the same contract (acknowledge only what is on disk).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::model::{apply, ClusterState, Command, CommandResult, ModelError};

/// Errors of the local store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("opening the state store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("writing log entry {index}: {source}")]
    Append { index: u64, source: sled::Error },
    #[error("reading the state store: {0}")]
    Read(sled::Error),
    #[error("log entry {index} is corrupt: {source}")]
    Corrupt {
        index: u64,
        source: serde_json::Error,
    },
    #[error("writing the snapshot at {index}: {source}")]
    Snapshot { index: u64, source: sled::Error },
    #[error(transparent)]
    Refused(#[from] ModelError),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    state: ClusterState,
}

/// The durable log and the state it produces.
pub struct LocalStore {
    db: sled::Db,
    log: sled::Tree,
    state: ClusterState,
    snapshot_every: u64,
}

const SNAPSHOT_KEY: &[u8] = b"snapshot";

impl LocalStore {
    /// Opens (or creates) the store in `dir` and rebuilds the state.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let log = db.open_tree("log").map_err(StoreError::Read)?;
        let mut state = match db.get(SNAPSHOT_KEY).map_err(StoreError::Read)? {
            Some(bytes) => {
                serde_json::from_slice::<Snapshot>(&bytes)
                    .map_err(|source| StoreError::Corrupt { index: 0, source })?
                    .state
            }
            None => ClusterState::default(),
        };
        for item in log.range((state.revision + 1).to_be_bytes()..) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let index = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            let cmd: Command = serde_json::from_slice(&v)
                .map_err(|source| StoreError::Corrupt { index, source })?;
            // Refusals are deterministic: they were refused the first time too.
            let _ = apply(&mut state, index, &cmd);
        }
        Ok(Self {
            db,
            log,
            state,
            snapshot_every: 1000,
        })
    }

    /// The current state.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Appends `cmd` durably, then applies it. The returned error of a refused command is
    /// the model's; the state is unchanged but for its revision.
    pub fn append(&mut self, cmd: &Command) -> Result<CommandResult, StoreError> {
        let index = self.state.revision + 1;
        let bytes = serde_json::to_vec(cmd).expect("commands always serialize");
        self.log
            .insert(index.to_be_bytes(), bytes)
            .map_err(|source| StoreError::Append { index, source })?;
        self.db
            .flush()
            .map_err(|source| StoreError::Append { index, source })?;
        let result = apply(&mut self.state, index, cmd);
        if index % self.snapshot_every == 0 {
            self.snapshot()?;
        }
        Ok(result?)
    }

    /// Writes the applied state and drops the log entries it covers.
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        let index = self.state.revision;
        let snap = serde_json::to_vec(&Snapshot {
            state: self.state.clone(),
        })
        .expect("state always serializes");
        self.db
            .insert(SNAPSHOT_KEY, snap)
            .map_err(|source| StoreError::Snapshot { index, source })?;
        self.db
            .flush()
            .map_err(|source| StoreError::Snapshot { index, source })?;
        for k in self.log.range(..=index.to_be_bytes()).keys() {
            let k = k.map_err(StoreError::Read)?;
            self.log
                .remove(k)
                .map_err(|source| StoreError::Snapshot { index, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Member;

    fn member(name: &str) -> Command {
        Command::RegisterMember {
            member: Member {
                name: name.into(),
                address: "198.18.0.2:8443".into(),
                architecture: "x86_64".into(),
                failure_domain: "default".into(),
                joined_at_ms: 0,
            },
        }
    }

    #[test]
    fn state_survives_reopen_with_and_without_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LocalStore::open(dir.path()).unwrap();
            s.snapshot_every = 3;
            for n in ["a", "b", "c", "d", "e"] {
                s.append(&member(n)).unwrap();
            }
            assert!(s
                .append(&Command::DeleteAlias {
                    alias: "missing".into()
                })
                .is_err());
        }
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.state().revision, 6);
        assert_eq!(s.state().members.len(), 5);
    }
}
