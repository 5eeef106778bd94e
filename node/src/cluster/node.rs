//! This member's place in the cluster: its Raft instance, the replicated state it applies,
//! and how it gets a command committed from wherever it is (directly when it leads, through
//! the leader otherwise).

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use shoal_proto::internal as ipb;
use shoal_raft::consensus::{CommandResponse, MemberNode, NodeId, SharedState, TypeConfig};
use shoal_raft::{Command, CommandResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};
use std::time::{Duration, Instant};
use thiserror::Error;

use super::peers::Peers;

/// How long a write may take before it is reported as not committed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Members with ids up to this are in the Raft group (3 voters + 2 stand-bys by default);
/// later ones are agents: no replica, they follow their part of the state through a watch
/// stream from a member that holds one.
pub const RAFT_MEMBERS: u64 = 5;

/// How long a linearizable read may wait for the leader and a quorum.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A member not heard from for this long is Offline.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(5);

/// Why a command could not be committed.
#[derive(Debug, Clone, Error)]
pub enum SubmitError {
    #[error("no leader could commit the write within {0:?}: a majority of the voters may be down or cut off (the write may still be applied later)")]
    NoQuorum(Duration),
    #[error(
        "the cluster has no leader right now (election in progress or no quorum); retry shortly"
    )]
    NoLeader,
    #[error("forwarding to the leader {leader} failed: {status}")]
    Forward { leader: String, status: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// This member in the cluster.
pub struct ClusterNode {
    pub id: NodeId,
    pub name: String,
    pub raft: Raft<TypeConfig>,
    pub shared: SharedState,
    pub peers: Peers,
    /// The leader's view of liveness: member name -> last heartbeat.
    liveness: Mutex<HashMap<String, Instant>>,
    /// When this member last became leader (a grace period for liveness).
    leader_since: Mutex<Option<Instant>>,
    /// When this member last renewed its lease (a heartbeat the leader answered, or, on the
    /// leader, a quorum acknowledging it).
    lease_renewed: Mutex<Instant>,
    /// The leader's applied revision in its last heartbeat reply.
    leader_revision: std::sync::atomic::AtomicU64,
    /// Whether the lease was renewed at least once since this daemon started.
    renewed_once: std::sync::atomic::AtomicBool,
    /// On an agent: the member whose state it follows, which relays its calls.
    gateway: Mutex<Option<MemberNode>>,
    /// Writes waiting to be committed together (started on first use).
    batcher: std::sync::OnceLock<mpsc::UnboundedSender<Pending>>,
}

/// A write waiting in the batcher, and where its answer goes.
type Pending = (
    Command,
    oneshot::Sender<Result<CommandResponse, SubmitError>>,
);

/// At most this many commands go into one log entry.
const MAX_BATCH: usize = 256;
/// At most this many batches are being committed at once; while they are, new writes
/// queue up and leave together in the next batch.
const BATCHES_IN_FLIGHT: usize = 4;

impl ClusterNode {
    /// Wraps a started Raft instance.
    pub fn new(
        id: NodeId,
        name: String,
        raft: Raft<TypeConfig>,
        shared: SharedState,
        peers: Peers,
    ) -> Self {
        Self {
            id,
            name,
            raft,
            shared,
            peers,
            liveness: Mutex::new(HashMap::new()),
            leader_since: Mutex::new(None),
            lease_renewed: Mutex::new(Instant::now()),
            leader_revision: std::sync::atomic::AtomicU64::new(0),
            renewed_once: std::sync::atomic::AtomicBool::new(false),
            gateway: Mutex::new(None),
            batcher: std::sync::OnceLock::new(),
        }
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<(NodeId, MemberNode)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Whether this member is an agent (no Raft replica).
    pub fn is_agent(&self) -> bool {
        self.id > RAFT_MEMBERS
    }

    /// Sets the member an agent follows.
    pub fn set_gateway(&self, node: Option<MemberNode>) {
        *self.gateway.lock().unwrap_or_else(|p| p.into_inner()) = node;
    }

    /// Where calls for the leader go: the leader itself, or, on an agent, its gateway
    /// (which relays them).
    pub fn route(&self) -> Option<(NodeId, MemberNode)> {
        self.leader().or_else(|| {
            self.gateway
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .map(|g| (0, g))
        })
    }

    /// Whether this member leads now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Commits `cmd`, directly or through the leader, within [`WRITE_TIMEOUT`]. Writes that
    /// arrive while earlier ones are being committed are committed together, as one log
    /// entry (`Command::Batch`), each with its own result: one replication round and one
    /// fsync for many writes.
    pub async fn submit(self: &Arc<Self>, cmd: Command) -> Result<CommandResponse, SubmitError> {
        let queue = self.batcher.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_loop(Arc::downgrade(self), rx));
            tx
        });
        let (tx, rx) = oneshot::channel();
        queue
            .send((cmd, tx))
            .map_err(|_| SubmitError::Raft("the daemon is shutting down".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(SubmitError::Raft("the write was dropped".into())))
    }

    /// Commits a batch of pending writes and answers each.
    async fn commit_batch(&self, mut batch: Vec<Pending>) {
        if batch.len() == 1 {
            let (cmd, tx) = batch.pop().expect("one write");
            let _ = tx.send(self.submit_now(cmd).await);
            return;
        }
        let (commands, answers): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
        match self.submit_now(Command::Batch { commands }).await {
            Ok(CommandResponse {
                revision,
                result: Ok(CommandResult::Batch(results)),
            }) if results.len() == answers.len() => {
                for (tx, result) in answers.into_iter().zip(results) {
                    let _ = tx.send(Ok(CommandResponse { revision, result }));
                }
            }
            Ok(other) => {
                let e = SubmitError::Raft(format!("a batch was answered with {other:?}"));
                for tx in answers {
                    let _ = tx.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for tx in answers {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// Commits `cmd` as one log entry, directly or through the leader.
    async fn submit_now(&self, cmd: Command) -> Result<CommandResponse, SubmitError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(if self.leader().is_some() {
                    SubmitError::NoQuorum(WRITE_TIMEOUT)
                } else {
                    SubmitError::NoLeader
                });
            }
            match self.route() {
                Some((id, _)) if id == self.id => {
                    match tokio::time::timeout(left, self.raft.client_write(cmd.clone())).await {
                        Ok(Ok(resp)) => return Ok(resp.data),
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(Err(e)) => return Err(SubmitError::Raft(e.to_string())),
                        Err(_) => return Err(SubmitError::NoQuorum(WRITE_TIMEOUT)),
                    }
                }
                Some((_, node)) => match self.forward(&node, &cmd, left).await {
                    Ok(r) => return Ok(r),
                    Err(Retry::Yes) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(Retry::No(e)) => return Err(e),
                },
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn forward(
        &self,
        leader: &MemberNode,
        cmd: &Command,
        left: Duration,
    ) -> Result<CommandResponse, Retry> {
        let fail = |status: String| {
            Retry::No(SubmitError::Forward {
                leader: leader.name.clone(),
                status,
            })
        };
        let mut client = self
            .peers
            .membership(&leader.addr)
            .map_err(|e| fail(e.to_string()))?;
        let mut req = tonic::Request::new(ipb::SubmitRequest {
            command_json: serde_json::to_vec(cmd).expect("commands serialize"),
        });
        req.set_timeout(left);
        match client.submit(req).await {
            Ok(r) => serde_json::from_slice(&r.into_inner().response_json)
                .map_err(|e| fail(format!("bad response: {e}"))),
            // Not the leader any more, or not reachable: ask again who leads.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::Unavailable
                ) =>
            {
                Err(Retry::Yes)
            }
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => {
                Err(Retry::No(SubmitError::NoQuorum(WRITE_TIMEOUT)))
            }
            Err(s) => Err(fail(s.message().to_string())),
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the index to have
    /// applied for a linearizable read.
    pub async fn read_index_here(&self) -> Result<u64, SubmitError> {
        let r = tokio::time::timeout(READ_TIMEOUT, self.raft.ensure_linearizable()).await;
        match r {
            Ok(Ok(log_id)) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(e)) => Err(SubmitError::Raft(e.to_string())),
            Err(_) => Err(SubmitError::NoQuorum(READ_TIMEOUT)),
        }
    }

    /// A read barrier: returns once this member's replica is at least as current as the
    /// leader was when asked (read index), so a read served here next is linearizable.
    pub async fn read_barrier(&self) -> Result<(), SubmitError> {
        let index = self.read_index().await?;
        let mut rx = self.shared.subscribe();
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        while self.shared.revision() < index {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(SubmitError::NoQuorum(READ_TIMEOUT));
            }
        }
        Ok(())
    }

    /// The read index: from the leader itself, or asked of it (through the gateway on an
    /// agent).
    pub async fn read_index(&self) -> Result<u64, SubmitError> {
        Ok(match self.route() {
            Some((id, _)) if id == self.id => self.read_index_here().await?,
            Some((_, leader)) => {
                let mut client = self
                    .peers
                    .membership(&leader.addr)
                    .map_err(|e| SubmitError::Raft(e.to_string()))?;
                let mut req = tonic::Request::new(ipb::ReadIndexRequest {});
                req.set_timeout(READ_TIMEOUT);
                client
                    .read_index(req)
                    .await
                    .map_err(|s| SubmitError::Forward {
                        leader: leader.name.clone(),
                        status: s.message().to_string(),
                    })?
                    .into_inner()
                    .index
            }
            None => return Err(SubmitError::NoLeader),
        })
    }

    /// Records a heartbeat from `name` (on the leader).
    pub fn heard_from(&self, name: &str) {
        self.liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Instant::now());
    }

    /// Notes that this member (still) leads; starts the grace period on a new leadership.
    pub fn note_leadership(&self, leading: bool) {
        let mut since = self.leader_since.lock().unwrap_or_else(|p| p.into_inner());
        match (leading, since.is_some()) {
            (true, false) => *since = Some(Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }

    /// Records a renewed lease; `leader_revision` is what the leader had applied.
    pub fn renew_lease(&self, leader_revision: u64) {
        *self.lease_renewed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.renewed_once
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.leader_revision
            .store(leader_revision, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the lease was renewed since this daemon started.
    pub fn lease_held(&self) -> bool {
        self.renewed_once.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the lease was last renewed.
    pub fn lease_age(&self) -> Duration {
        self.lease_renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// The leader's applied revision at the last renewal.
    pub fn leader_revision(&self) -> u64 {
        self.leader_revision
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long the leader has not heard from `name` (counting from when it became leader);
    /// `None` if this member does not lead.
    pub fn silent_for(&self, name: &str) -> Option<Duration> {
        if name == self.name {
            return Some(Duration::ZERO);
        }
        let since = (*self.leader_since.lock().unwrap_or_else(|p| p.into_inner()))?;
        let heard = self
            .liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        let last = match heard {
            Some(h) if h > since => h,
            _ => since,
        };
        Some(last.elapsed())
    }

    /// Whether `name` is online, as the leader sees it.
    pub fn is_online(&self, name: &str) -> bool {
        if name == self.name {
            return true;
        }
        let grace = self
            .leader_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed() < OFFLINE_AFTER)
            .unwrap_or(false);
        let seen = self
            .liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|t| t.elapsed() < OFFLINE_AFTER)
            .unwrap_or(false);
        seen || grace
    }
}

/// Takes writes off the queue: whatever is waiting leaves as one batch as soon as one of
/// [`BATCHES_IN_FLIGHT`] slots is free.
async fn batch_loop(node: Weak<ClusterNode>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            node.commit_batch(batch).await;
            drop(slot);
        });
    }
}

enum Retry {
    Yes,
    No(SubmitError),
}
