//! The store's layout in sled, and the reads and writes every other part shares.
//!
//! One `sled::Db` per member, with these trees:
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `log` | index, big-endian u64 | JSON `Entry` |
//! | `log_meta` | `vote`, `committed`, `last_purged` | JSON |
//! | `members`, `images`, `aliases`, `instances`, `tokens`, `identities` | name | JSON record |
//! | `cluster` | `ca` | JSON CA record |
//! | `sm_meta` | `last_applied`, `last_membership`, `revision`, `installing` | JSON |
//! | `snapshot` | `meta` (JSON), `data` (the snapshot bytes) | |
//!
//! The state-machine trees (data and `sm_meta`) always change together in one sled
//! transaction, so the data on disk always matches the last applied log id it records.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Tree};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StoreError;

pub(crate) const LOG: &str = "log";
pub(crate) const LOG_META: &str = "log_meta";
pub(crate) const SNAPSHOT: &str = "snapshot";

pub(crate) const VOTE: &[u8] = b"vote";
pub(crate) const COMMITTED: &[u8] = b"committed";
pub(crate) const LAST_PURGED: &[u8] = b"last_purged";

pub(crate) const LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const LAST_MEMBERSHIP: &[u8] = b"last_membership";
pub(crate) const REVISION: &[u8] = b"revision";
/// Present while a snapshot is being installed: `open` redoes the install from `snapshot`.
pub(crate) const INSTALLING: &[u8] = b"installing";

pub(crate) const SNAPSHOT_META: &[u8] = b"meta";
pub(crate) const SNAPSHOT_DATA: &[u8] = b"data";

pub(crate) const CA: &[u8] = b"ca";

/// A state-machine tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Table {
    Members,
    Images,
    Aliases,
    Instances,
    Tokens,
    Identities,
    Cluster,
    SmMeta,
}

impl Table {
    /// Every state-machine tree, in index order.
    pub(crate) const ALL: [Table; 8] = [
        Table::Members,
        Table::Images,
        Table::Aliases,
        Table::Instances,
        Table::Tokens,
        Table::Identities,
        Table::Cluster,
        Table::SmMeta,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Members => "members",
            Table::Images => "images",
            Table::Aliases => "aliases",
            Table::Instances => "instances",
            Table::Tokens => "tokens",
            Table::Identities => "identities",
            Table::Cluster => "cluster",
            Table::SmMeta => "sm_meta",
        }
    }
}

/// One batch per state-machine tree, committed together.
pub(crate) struct Batches([Batch; Table::ALL.len()]);

impl Batches {
    pub(crate) fn new() -> Self {
        Self(std::array::from_fn(|_| Batch::default()))
    }

    pub(crate) fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        self.0[table as usize].insert(key, value);
    }

    pub(crate) fn remove(&mut self, table: Table, key: &[u8]) {
        self.0[table as usize].remove(key);
    }
}

/// The open database and its trees; cheap to clone.
#[derive(Clone)]
pub(crate) struct Trees {
    db: sled::Db,
    path: Arc<PathBuf>,
    pub(crate) log: Tree,
    pub(crate) log_meta: Tree,
    pub(crate) snapshot: Tree,
    sm: Arc<[Tree]>,
}

impl Trees {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let open = |tree: &'static str| {
            db.open_tree(tree).map_err(|source| StoreError::OpenTree {
                path: dir.to_path_buf(),
                tree,
                source,
            })
        };
        let sm = Table::ALL
            .iter()
            .map(|t| open(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            log: open(LOG)?,
            log_meta: open(LOG_META)?,
            snapshot: open(SNAPSHOT)?,
            sm: sm.into(),
            path: Arc::new(dir.to_path_buf()),
            db,
        })
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.path.as_ref().clone()
    }

    pub(crate) fn table(&self, table: Table) -> &Tree {
        &self.sm[table as usize]
    }

    pub(crate) fn read_err(&self, tree: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        let path = self.path();
        move |source| StoreError::Read { path, tree, source }
    }

    pub(crate) fn write_err(&self, tree: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        let path = self.path();
        move |source| StoreError::Write { path, tree, source }
    }

    /// Makes every write so far durable (one fsync of sled's log, on sled's thread pool).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(|source| StoreError::Flush {
                path: self.path(),
                source,
            })
    }

    /// `flush` for blocking contexts (opening).
    pub(crate) fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|source| StoreError::Flush {
                path: self.path(),
                source,
            })
    }

    /// Decodes the JSON `bytes` read at `tree`/`key`.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::CorruptValue {
            path: self.path(),
            tree,
            key: key_text(tree, key),
            source,
        })
    }

    /// Reads and decodes one JSON value.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        tree: &Tree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(self.read_err(name))? {
            Some(bytes) => self.decode(name, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// A corruption that is not a JSON error.
    pub(crate) fn corrupt(&self, tree: &'static str, key: &[u8], reason: String) -> StoreError {
        StoreError::CorruptKey {
            path: self.path(),
            tree,
            key: key_text(tree, key),
            reason,
        }
    }

    /// Writes the state-machine batches in one transaction: all or nothing, also across a
    /// crash.
    pub(crate) fn commit(&self, batches: &Batches) -> Result<(), StoreError> {
        self.sm[..]
            .transaction(|tx| {
                for (tree, batch) in tx.iter().zip(batches.0.iter()) {
                    tree.apply_batch(batch)?;
                }
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(never) => match never {},
                TransactionError::Storage(source) => StoreError::Write {
                    path: self.path(),
                    tree: "state machine",
                    source,
                },
            })
    }
}

/// JSON encoding of a value the store writes.
pub(crate) fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

/// A key as people read it: a log index, or the name.
pub(crate) fn key_text(tree: &str, key: &[u8]) -> String {
    if tree == LOG {
        if let Ok(bytes) = <[u8; 8]>::try_from(key) {
            return u64::from_be_bytes(bytes).to_string();
        }
    }
    String::from_utf8_lossy(key).into_owned()
}
