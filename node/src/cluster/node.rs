//! This member's place in the cluster: its Raft instance, the replicated state it applies,
//! and how it gets a command committed from wherever it is (directly when it leads, through
//! the leader otherwise).

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use shoal_proto::internal as ipb;
use shoal_raft::consensus::{CommandResponse, MemberNode, NodeId, SharedState, TypeConfig};
use shoal_raft::{Command, CommandResult};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Semaphore};

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
/// A member's replica must have applied what the leader had applied this long ago: only
/// then does its heartbeat renew its lease, and only then does the leader count it live. A
/// member whose replica stopped applying (its Raft core died, or it is stuck far behind)
/// cannot learn that its instances were placed elsewhere, so it must fence them and must
/// not look Online. An agent's replica is the view it follows, with its revision.
pub const CATCH_UP: Duration = Duration::from_secs(3);

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
    /// On a member: the leader's applied revision in heartbeat replies of the last
    /// [`CATCH_UP`] (when, revision).
    leader_revisions: Mutex<VecDeque<(Instant, u64)>>,
    /// On the leader: its own applied revision over the last [`CATCH_UP`] and a little more
    /// (when, revision), to tell whether a member keeps up.
    own_revisions: Mutex<VecDeque<(Instant, u64)>>,
    /// On the leader: members whose heartbeats show a replica stuck behind (logged once).
    lagging: Mutex<HashSet<String>>,
}

/// Why a heartbeat did not renew this member's lease.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotRenewed {
    #[error("this member's Raft core stopped ({0}): its replica no longer applies anything")]
    CoreStopped(String),
    #[error(
        "this member's replica is behind: it applied revision {applied}, the leader had applied \
         {needed} {CATCH_UP:?} ago"
    )]
    Behind { applied: u64, needed: u64 },
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
            leader_revisions: Mutex::new(VecDeque::new()),
            own_revisions: Mutex::new(VecDeque::new()),
            lagging: Mutex::new(HashSet::new()),
        }
    }

    /// Why this member's Raft core stopped, if it did (openraft `Fatal`: a panic, a storage
    /// error, a shutdown). Its metrics then stay frozen at their last values: a stopped core
    /// must not be taken for a leader, a follower of one, or a quorum's acknowledgement.
    /// Agents hold no replica: their core is idle and never counts.
    pub fn core_failure(&self) -> Option<String> {
        if self.is_agent() {
            return None;
        }
        let rx = self.raft.metrics();
        if let Err(e) = &rx.borrow().running_state {
            return Some(e.to_string());
        }
        // The core's task owns the sender: it is dropped when the task ends, a panic too.
        rx.has_changed()
            .is_err()
            .then(|| "panicked: the Raft core task ended".to_string())
    }

    /// The current leader, if known (never while this member's Raft core is stopped).
    pub fn leader(&self) -> Option<(NodeId, MemberNode)> {
        if self.core_failure().is_some() {
            return None;
        }
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

    /// Whether this member leads now (never while its Raft core is stopped).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
            && self.core_failure().is_none()
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
        self.check_core()?;
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

    /// An error naming the failure if this member's Raft core stopped: it can neither
    /// commit nor serve current reads, and says so rather than "no leader".
    pub fn check_core(&self) -> Result<(), SubmitError> {
        match self.core_failure() {
            None => Ok(()),
            Some(f) => Err(SubmitError::Raft(format!(
                "this member's Raft core stopped ({f}); it fenced its instances and serves \
                 nothing from the cluster state: restart shoald on {} (other members still serve)",
                self.name
            ))),
        }
    }

    /// The read index: from the leader itself, or asked of it (through the gateway on an
    /// agent).
    pub async fn read_index(&self) -> Result<u64, SubmitError> {
        self.check_core()?;
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

    /// On the leader: notes its own applied revision now (kept for a little over
    /// [`CATCH_UP`], at most one sample per 100 ms).
    pub fn note_own_revision(&self) {
        let mut h = self.own_revisions.lock().unwrap_or_else(|p| p.into_inner());
        note_sample(&mut h, Instant::now(), self.shared.revision());
    }

    /// On the leader: the revision a member's replica must have applied to count as
    /// keeping up: what this leader had applied [`CATCH_UP`] ago (0 while it has not led
    /// that long).
    pub fn required_revision(&self) -> u64 {
        let h = self.own_revisions.lock().unwrap_or_else(|p| p.into_inner());
        revision_as_of(&h, Instant::now())
    }

    /// On the leader: a heartbeat from `name`, whose replica applied `applied`. It counts
    /// (the member is live) only if the replica keeps up ([`CATCH_UP`]); returns whether
    /// it did.
    pub fn heartbeat_from(&self, name: &str, applied: u64) -> bool {
        self.note_own_revision();
        let needed = self.required_revision();
        let mut lagging = self.lagging.lock().unwrap_or_else(|p| p.into_inner());
        if applied < needed {
            if lagging.insert(name.to_string()) {
                tracing::warn!(
                    member = %name, applied, needed,
                    "a member's replica is stuck behind: it does not count as live until it catches up"
                );
            }
            return false;
        }
        if lagging.remove(name) {
            tracing::info!(member = %name, applied, "a member's replica caught up again");
        }
        drop(lagging);
        self.heard_from(name);
        true
    }

    /// On a member: the leader answered a heartbeat with its applied revision. The lease is
    /// renewed only if this member's Raft core runs and its replica (`local`: the applied
    /// revision, or an agent's view revision) has reached what the leader had applied
    /// [`CATCH_UP`] ago (the oldest reply of that window; the current one at first).
    pub fn renew_if_caught_up(&self, leader_revision: u64, local: u64) -> Result<(), NotRenewed> {
        if let Some(f) = self.core_failure() {
            return Err(NotRenewed::CoreStopped(f));
        }
        let needed = {
            let mut w = self
                .leader_revisions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            needed_by_replies(&mut w, Instant::now(), leader_revision)
        };
        if local < needed {
            return Err(NotRenewed::Behind {
                applied: local,
                needed,
            });
        }
        self.renew_lease(leader_revision);
        Ok(())
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

/// Adds the leader's own applied revision at `now` to its history (at most one sample per
/// 100 ms), keeping the newest sample at least [`CATCH_UP`] old and everything after it.
fn note_sample(h: &mut VecDeque<(Instant, u64)>, now: Instant, rev: u64) {
    if h.back()
        .is_some_and(|(t, _)| now.duration_since(*t) < Duration::from_millis(100))
    {
        return;
    }
    h.push_back((now, rev));
    while h.len() >= 2 && now.duration_since(h[1].0) >= CATCH_UP {
        h.pop_front();
    }
}

/// What the leader had applied [`CATCH_UP`] before `now`, from its history (0 when the
/// history is shorter: a new leader, whose members are in their grace period anyway).
fn revision_as_of(h: &VecDeque<(Instant, u64)>, now: Instant) -> u64 {
    match h.front() {
        Some((t, rev)) if now.duration_since(*t) >= CATCH_UP => *rev,
        _ => 0,
    }
}

/// Adds a heartbeat reply (the leader's applied revision at `now`) to the window of the
/// last [`CATCH_UP`] and returns the revision this member's replica must have reached: the
/// least in the window (the oldest reply's, as revisions only grow under one leader).
fn needed_by_replies(w: &mut VecDeque<(Instant, u64)>, now: Instant, leader_revision: u64) -> u64 {
    w.push_back((now, leader_revision));
    while w
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > CATCH_UP)
    {
        w.pop_front();
    }
    w.iter().map(|(_, r)| *r).min().unwrap_or(leader_revision)
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

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::consensus::{self, GrpcNetworkFactory};
    use tonic::transport::ClientTlsConfig;

    #[test]
    fn a_replica_must_reach_what_the_leader_had_applied_a_few_seconds_ago() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The member's side: replies every second, the leader moving on by 10 each time.
        let mut w = VecDeque::new();
        assert_eq!(
            needed_by_replies(&mut w, at(0), 100),
            100,
            "at first: caught up now"
        );
        assert_eq!(needed_by_replies(&mut w, at(1000), 110), 100);
        assert_eq!(needed_by_replies(&mut w, at(2000), 120), 100);
        assert_eq!(needed_by_replies(&mut w, at(3000), 130), 100);
        // The reply at 0 left the window: 110 is what the leader had 3 s ago.
        assert_eq!(needed_by_replies(&mut w, at(4000), 140), 110);
        // A replica stuck at 105 stops renewing; one a few entries behind (135) does not.
        let needed = needed_by_replies(&mut w, at(5000), 150);
        assert!(105 < needed && needed <= 135, "{needed}");

        // The leader's side: its own history, sampled often.
        let mut h = VecDeque::new();
        assert_eq!(revision_as_of(&h, at(0)), 0);
        for (i, ms) in (0..=6000).step_by(50).enumerate() {
            note_sample(&mut h, at(ms), 100 + i as u64);
        }
        assert!(h.len() < 40, "the history is trimmed: {}", h.len());
        // At 6 s, what it had at 3 s (samples every 100 ms: 100 + 60).
        let r = revision_as_of(&h, at(6000));
        assert!((158..=160).contains(&r), "{r}");
        // Nothing required of members before it led CATCH_UP long.
        let mut fresh = VecDeque::new();
        note_sample(&mut fresh, at(0), 500);
        assert_eq!(revision_as_of(&fresh, at(2900)), 0);
        assert_eq!(revision_as_of(&fresh, at(3000)), 500);
    }

    async fn single_member(dir: &std::path::Path) -> ClusterNode {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (log, sm) = consensus::open(dir).await.unwrap();
        let shared = sm.state();
        let config = Arc::new(consensus::raft_config("test").validate().unwrap());
        let tls = ClientTlsConfig::new().domain_name("shoal");
        let network = GrpcNetworkFactory::new(1, tls.clone());
        let raft = Raft::new(1, config, network, log, sm).await.unwrap();
        let me = MemberNode {
            name: "a".into(),
            addr: "127.0.0.1:1".into(),
        };
        raft.initialize(std::collections::BTreeMap::from([(1, me)]))
            .await
            .unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(1, "leads")
            .await
            .unwrap();
        ClusterNode::new(1, "a".into(), raft, shared, Peers::new(tls))
    }

    /// A member whose Raft core stopped (as after a panic) neither renews its lease nor
    /// passes for a leader or a follower of one, and says why its writes fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_raft_core_renews_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(single_member(dir.path()).await);
        assert!(node.core_failure().is_none());
        assert!(node.is_leader() && node.leader().is_some());
        let rev = node.shared.revision();
        assert_eq!(node.renew_if_caught_up(rev, rev), Ok(()));
        assert!(node.lease_held());
        // The leader moved on: still renewed while its reply of 3 s ago is reached...
        assert_eq!(node.renew_if_caught_up(rev + 50, rev), Ok(()));
        // ...and not below it.
        let behind = node.renew_if_caught_up(rev + 60, rev - 1);
        assert_eq!(
            behind,
            Err(NotRenewed::Behind {
                applied: rev - 1,
                needed: rev
            })
        );
        node.submit(Command::RemoveMember {
            name: "nobody".into(),
        })
        .await
        .expect("commits while the core runs");

        node.raft.shutdown().await.unwrap();
        let failure = node.core_failure().expect("a stopped core is noticed");
        assert!(
            !node.is_leader(),
            "metrics frozen at 'leader' must not count"
        );
        assert!(node.leader().is_none() && node.route().is_none());
        let rev = node.shared.revision();
        assert_eq!(
            node.renew_if_caught_up(rev, rev),
            Err(NotRenewed::CoreStopped(failure.clone()))
        );
        let err = node
            .submit(Command::RemoveMember {
                name: "nobody".into(),
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Raft core stopped") && err.contains("restart shoald"),
            "{err}"
        );
        let err = node.read_barrier().await.unwrap_err().to_string();
        assert!(err.contains("Raft core stopped"), "{err}");
    }

    /// On the leader: a member whose heartbeats show its replica stuck behind does not
    /// count as live (so the healer may place its instances elsewhere: it fences them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_leader_does_not_count_a_stuck_replica_live() {
        let dir = tempfile::tempdir().unwrap();
        let node = single_member(dir.path()).await;
        node.note_leadership(true);
        {
            // The leader had applied 40 more than now... 4 s ago: pretend history.
            let mut h = node.own_revisions.lock().unwrap();
            h.clear();
            h.push_back((Instant::now() - Duration::from_secs(4), 40));
            h.push_back((Instant::now() - Duration::from_secs(1), 45));
        }
        assert_eq!(node.required_revision(), 40);
        assert!(!node.heartbeat_from("b", 39));
        assert!(node.liveness.lock().unwrap().get("b").is_none());
        assert!(node.heartbeat_from("c", 40));
        assert!(node.liveness.lock().unwrap().contains_key("c"));
        // b catches up: live again.
        assert!(node.heartbeat_from("b", 46));
        assert!(node.liveness.lock().unwrap().contains_key("b"));
        node.raft.shutdown().await.unwrap();
    }
}
