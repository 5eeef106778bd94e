//! The Raft log in sled: entries under their big-endian index, and the vote, the committed
//! log id and the last purged log id in `log_meta`.
//!
//! An append is acknowledged to openraft (`LogFlushed`) only once sled has fsynced it: one
//! flush per appended batch, however many entries it holds. The vote is flushed before
//! `save_vote` returns. (openraft 0.9's rocksdb example skips both flushes; a vote or an
//! entry that is acknowledged and then lost breaks Raft's safety.)

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, Vote};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::Batch;
use std::convert::Infallible;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use super::error::{Op, RaftResult, StoreError};
use super::trees::{encode, Trees, COMMITTED, LAST_PURGED, LOG, LOG_META, VOTE};
use crate::consensus::types::{NodeId, TypeConfig};

/// The durable Raft log of one member. Clones share the same database (the log reader
/// openraft's replication tasks use is a clone).
#[derive(Clone)]
pub struct LogStore {
    trees: Trees,
    /// Appends hand their flush callbacks to one flusher task (group commit).
    flusher: tokio::sync::mpsc::UnboundedSender<(LogFlushed<TypeConfig>, Trees)>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.trees.path())
            .finish_non_exhaustive()
    }
}

fn bound(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl LogStore {
    /// Wraps the trees and starts the flusher task (needs a tokio runtime).
    ///
    /// An append writes its entries and returns at once; the flusher makes them durable
    /// and only then acknowledges them through openraft's callback. So the leader's own
    /// flush overlaps with replication to the followers, and appends that arrive while a
    /// flush runs share the next one. Callbacks are acknowledged in order, each only after
    /// a flush that started after its entries were written.
    pub(crate) fn new(trees: Trees) -> Self {
        // Each request carries its own handle on the trees, so an idle flusher holds no
        // reference to the database (it can be reopened as soon as the store is dropped).
        let (flusher, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(LogFlushed<TypeConfig>, Trees)>();
        tokio::spawn(async move {
            while let Some((first, t)) = rx.recv().await {
                let mut waiting = vec![first];
                while let Ok((more, _)) = rx.try_recv() {
                    waiting.push(more);
                }
                let result = t.flush().await;
                drop(t);
                for cb in waiting {
                    let r = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    };
                    cb.log_io_completed(r);
                }
            }
        });
        Self { trees, flusher }
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let range = (bound(range.start_bound()), bound(range.end_bound()));
        let mut out = Vec::new();
        for item in self.trees.log.range(range) {
            let (k, v) = item.map_err(self.trees.read_err(LOG))?;
            out.push(self.trees.decode(LOG, &k, &v)?);
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        match self.trees.log.last().map_err(self.trees.read_err(LOG))? {
            Some((k, v)) => Ok(Some(
                self.trees.decode::<Entry<TypeConfig>>(LOG, &k, &v)?.log_id,
            )),
            None => Ok(None),
        }
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.trees.get(&self.trees.log_meta, LOG_META, key)
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        what: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.trees
            .log_meta
            .insert(key, encode(what, value)?)
            .map(drop)
            .map_err(self.trees.write_err(LOG_META))
    }

    fn write_batch(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for entry in entries {
            batch.insert(
                &entry.log_id.index.to_be_bytes(),
                encode("a log entry", &entry)?,
            );
        }
        self.trees
            .log
            .apply_batch(batch)
            .map_err(self.trees.write_err(LOG))
    }

    fn remove_since(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for k in self.trees.log.range(index.to_be_bytes()..).keys() {
            batch.remove(k.map_err(self.trees.read_err(LOG))?);
        }
        self.trees
            .log
            .apply_batch(batch)
            .map_err(self.trees.write_err(LOG))
    }

    /// Removes entries up to `log_id` and records it as purged, in one transaction.
    fn remove_upto(&self, log_id: &LogId<NodeId>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for k in self.trees.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(k.map_err(self.trees.read_err(LOG))?);
        }
        let purged = encode("the last purged log id", log_id)?;
        (&self.trees.log, &self.trees.log_meta)
            .transaction(|(log, meta)| {
                meta.insert(LAST_PURGED, purged.clone())?;
                log.apply_batch(&batch)?;
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(never) => match never {},
                TransactionError::Storage(source) => StoreError::Write {
                    path: self.trees.path(),
                    tree: LOG,
                    source,
                },
            })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(range).raft(Op::ReadLogs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.meta(LAST_PURGED).raft(Op::ReadLogs)?;
        let last_log_id = self
            .last_log_id()
            .raft(Op::ReadLogs)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, "the vote", vote).raft(Op::WriteVote)?;
        self.trees.flush().await.raft(Op::WriteVote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta(VOTE).raft(Op::ReadVote)
    }

    /// Not flushed: a committed id lost in a crash only means re-learning it from the leader.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.put_meta(COMMITTED, "the committed log id", &committed)
            .raft(Op::WriteLogs)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .meta::<Option<LogId<NodeId>>>(COMMITTED)
            .raft(Op::ReadLogs)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write_batch(entries).raft(Op::WriteLogs)?;
        if let Err(tokio::sync::mpsc::error::SendError((callback, _))) =
            self.flusher.send((callback, self.trees.clone()))
        {
            // The flusher is gone (runtime shutting down): flush here.
            let r = self.trees.flush().await;
            let io = r
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(io);
            r.raft(Op::WriteLogs)?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_since(log_id.index).raft(Op::WriteLogs)?;
        self.trees.flush().await.raft(Op::WriteLogs)
    }

    /// Not flushed: the purge and its record are one transaction, so a purge lost in a
    /// crash leaves the log as it was.
    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_upto(&log_id).raft(Op::WriteLogs)
    }
}
