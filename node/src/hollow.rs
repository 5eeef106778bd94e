//! Hollow agents: simulated hosts for scale tests, in the manner of Kubernetes' kubemark.
//!
//! A hollow agent is a real cluster member from the servers' point of view: it joins with
//! a real token (CSR, member certificate, node id), registers its capacity, heartbeats its
//! lease through the member it follows, follows its part of the state through the same
//! `Membership.Watch` stream a real agent uses (whole view, then deltas), and answers every
//! instance placed on it by reporting the desired state (`ReportStatus`, `ForgetInstance`)
//! through the same relay. Only the containers are missing: nothing is created, so a
//! thousand of them fit in one process and the servers' placement, replication and watch
//! paths can be measured at a scale this machine cannot run for real.

use shoal_proto::internal as ipb;
use shoal_raft::consensus::CommandResponse;
use shoal_raft::{
    Capacity, ClusterState, Command, DesiredState, Instance, InstanceStatus, Member, ObservedState,
    ViewDelta,
};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::cluster::join::{join, JoinError};
use crate::cluster::peers::Peers;
use crate::cluster::pki;

/// Why a hollow agent stopped.
#[derive(Debug, Error)]
pub enum HollowError {
    #[error("joining: {0}")]
    Join(#[from] JoinError),
    #[error("member {addr}: {message}")]
    Rpc { addr: String, message: String },
}

/// What a hollow agent claims to be.
#[derive(Debug, Clone)]
pub struct HollowSpec {
    pub name: String,
    /// The address it advertises. Nothing dials an agent that holds no image and runs no
    /// container; use a loopback address so that nothing could leave the host if it did.
    pub address: String,
    pub failure_domain: String,
    pub capacity: Capacity,
    /// Cluster groups (`--target @GROUP`).
    pub groups: BTreeSet<String>,
}

/// Counters shared by many hollow agents.
#[derive(Debug, Default)]
pub struct HollowStats {
    /// Status reports committed.
    pub reports: AtomicU64,
    /// Reports the cluster refused (stale placement, version changed) or that failed.
    pub report_errors: AtomicU64,
    /// Instances seen Running after their report (committed and echoed back).
    pub running: AtomicU64,
    /// Whole views and deltas received.
    pub views: AtomicU64,
    pub deltas: AtomicU64,
    /// Heartbeats answered.
    pub heartbeats: AtomicU64,
    /// Agents whose capacity and groups the cluster records.
    pub registered: AtomicU64,
}

/// A joined hollow agent.
pub struct HollowAgent {
    spec: HollowSpec,
    peers: Peers,
    /// Members holding a replica (from the join reply, then from the view).
    seeds: Vec<String>,
    node_id: u64,
}

/// Joins the cluster with `token` as `spec`.
pub async fn join_hollow(
    token: &str,
    spec: HollowSpec,
    now_ms: i64,
) -> Result<HollowAgent, HollowError> {
    let joined = join(
        token,
        &spec.name,
        &spec.address,
        &spec.failure_domain,
        now_ms,
    )
    .await?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&joined.ca_pem))
        .identity(Identity::from_pem(&joined.cert_pem, &joined.key_pem))
        .domain_name(pki::SERVER_NAME);
    Ok(HollowAgent {
        spec,
        peers: Peers::new(tls),
        seeds: joined.addresses,
        node_id: joined.node_id,
    })
}

impl HollowAgent {
    /// Its Raft node id (above the Raft group's: an agent).
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Follows the cluster and answers placements until the task is dropped.
    pub async fn run(self, stats: Arc<HollowStats>) {
        let me = Arc::new(self);
        let mut next = me.node_id as usize;
        loop {
            let members: Vec<String> = me.seeds.clone();
            let addr = members[next % members.len()].clone();
            next += 1;
            if let Err(e) = me.clone().follow(&addr, &stats).await {
                tracing::debug!(agent = %me.spec.name, member = %addr, error = %e, "hollow agent: switching member");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn follow(
        self: Arc<Self>,
        addr: &str,
        stats: &Arc<HollowStats>,
    ) -> Result<(), HollowError> {
        let rpc = |e: &dyn std::fmt::Display| HollowError::Rpc {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let mut client = self.peers.membership(addr).map_err(|e| rpc(&e))?;
        let mut stream = client
            .watch(ipb::WatchRequest {
                name: self.spec.name.clone(),
                from_revision: 0,
            })
            .await
            .map_err(|s| rpc(&s.message()))?
            .into_inner();
        // The revision of the view followed: heartbeats carry it, and the leader counts the
        // agent live only while it keeps up.
        let followed = Arc::new(AtomicU64::new(0));
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.clone(),
            addr.to_string(),
            stats.clone(),
            followed.clone(),
        ));
        let _stop = AbortOnDrop(heartbeat);
        let mut view = ClusterState::default();
        let mut registered = false;
        let mut register_sent: Option<tokio::time::Instant> = None;
        // (instance, placement generation, desired revision) already answered.
        let mut answered: HashSet<(String, u64, u64)> = HashSet::new();
        while let Some(msg) = stream.message().await.map_err(|s| rpc(&s.message()))? {
            if !msg.state_json.is_empty() {
                view = serde_json::from_slice(&msg.state_json).map_err(|e| rpc(&e))?;
                stats.views.fetch_add(1, Ordering::Relaxed);
            } else if !msg.delta_json.is_empty() {
                let delta: ViewDelta =
                    serde_json::from_slice(&msg.delta_json).map_err(|e| rpc(&e))?;
                delta.apply_to(&mut view);
                stats.deltas.fetch_add(1, Ordering::Relaxed);
            } else {
                view.revision = view.revision.max(msg.revision);
                followed.store(view.revision, Ordering::Relaxed);
                continue;
            }
            followed.store(view.revision, Ordering::Relaxed);
            if !registered {
                if let Some(known) = view.members.get(&self.spec.name) {
                    if known.capacity == self.spec.capacity && known.groups == self.spec.groups {
                        registered = true;
                        stats.registered.fetch_add(1, Ordering::Relaxed);
                    } else if register_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                        register_sent = Some(tokio::time::Instant::now());
                        let member = Member {
                            capacity: self.spec.capacity,
                            groups: self.spec.groups.clone(),
                            ..known.clone()
                        };
                        let agent = self.clone();
                        let addr = addr.to_string();
                        tokio::spawn(async move {
                            let _ = agent
                                .submit(&addr, Command::RegisterMember { member })
                                .await;
                        });
                    }
                }
            }
            for inst in view.instances.values() {
                if inst.location != self.spec.name {
                    continue;
                }
                let key = (
                    inst.name.to_string(),
                    inst.placement_generation,
                    inst.desired_revision,
                );
                let Some(cmd) = answer(inst, &self.spec.name) else {
                    if inst.status.state == ObservedState::Running && answered.remove(&key) {
                        stats.running.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                };
                if answered.insert(key) {
                    let (agent, addr, stats) = (self.clone(), addr.to_string(), stats.clone());
                    tokio::spawn(async move {
                        match agent.submit(&addr, cmd).await {
                            Ok(()) => stats.reports.fetch_add(1, Ordering::Relaxed),
                            Err(_) => stats.report_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
            }
        }
        Err(rpc(&"the stream ended"))
    }

    /// Commits `cmd` through the member at `addr` (which relays it to the leader).
    async fn submit(&self, addr: &str, cmd: Command) -> Result<(), HollowError> {
        let rpc = |e: &dyn std::fmt::Display| HollowError::Rpc {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let mut client = self.peers.membership(addr).map_err(|e| rpc(&e))?;
        let reply = client
            .submit(ipb::SubmitRequest {
                command_json: serde_json::to_vec(&cmd).expect("commands serialize"),
            })
            .await
            .map_err(|s| rpc(&s.message()))?;
        let resp: CommandResponse =
            serde_json::from_slice(&reply.into_inner().response_json).map_err(|e| rpc(&e))?;
        resp.result.map(|_| ()).map_err(|e| rpc(&e))
    }
}

/// What a host without containers reports for `inst`: the desired state, at once.
fn answer(inst: &Instance, node: &str) -> Option<Command> {
    let observed = match inst.desired {
        DesiredState::Deleted => {
            return Some(Command::ForgetInstance {
                name: inst.name.to_string(),
                node: node.to_string(),
                placement_generation: inst.placement_generation,
            })
        }
        DesiredState::Running => ObservedState::Running,
        DesiredState::Stopped => ObservedState::Stopped,
        DesiredState::Frozen => ObservedState::Frozen,
    };
    let s = &inst.status;
    if s.state == observed && s.observed_revision >= inst.desired_revision {
        return None;
    }
    Some(Command::ReportStatus {
        name: inst.name.to_string(),
        node: node.to_string(),
        placement_generation: inst.placement_generation,
        status: InstanceStatus {
            state: observed,
            observed_revision: inst.desired_revision,
            message: String::new(),
            init_pid: None,
            usage: None,
            updated_at_ms: 0,
        },
        if_version: Some(inst.version),
    })
}

/// Renews the agent's lease every second through the member it follows.
async fn heartbeat_loop(
    agent: Arc<HollowAgent>,
    addr: String,
    stats: Arc<HollowStats>,
    followed: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(mut client) = agent.peers.membership(&addr) else {
            continue;
        };
        let mut req = tonic::Request::new(ipb::HeartbeatRequest {
            name: agent.spec.name.clone(),
            applied_revision: followed.load(Ordering::Relaxed),
        });
        req.set_timeout(Duration::from_millis(900));
        if client.heartbeat(req).await.is_ok() {
            stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::InstanceName;

    fn instance(desired: DesiredState, state: ObservedState, observed: u64) -> Instance {
        Instance {
            name: InstanceName::new("h1").unwrap(),
            image: "busybox".into(),
            image_fingerprint: "ab".repeat(32),
            config: Default::default(),
            desired,
            desired_revision: 7,
            restart_revision: 0,
            stop_force: false,
            stop_timeout_s: 0,
            location: "x".into(),
            placement_generation: 3,
            status: InstanceStatus {
                state,
                observed_revision: observed,
                message: String::new(),
                init_pid: None,
                usage: None,
                updated_at_ms: 0,
            },
            created_at_ms: 0,
            version: 9,
            origin: None,
            moving: None,
        }
    }

    #[test]
    fn answers_the_desired_state_once() {
        let pending = instance(DesiredState::Running, ObservedState::Pending, 0);
        match answer(&pending, "x") {
            Some(Command::ReportStatus {
                placement_generation: 3,
                status,
                if_version: Some(9),
                ..
            }) => {
                assert_eq!(status.state, ObservedState::Running);
                assert_eq!(status.observed_revision, 7);
            }
            other => panic!("{other:?}"),
        }
        assert!(answer(
            &instance(DesiredState::Running, ObservedState::Running, 7),
            "x"
        )
        .is_none());
        assert!(matches!(
            answer(
                &instance(DesiredState::Stopped, ObservedState::Running, 7),
                "x"
            ),
            Some(Command::ReportStatus { .. })
        ));
        assert!(matches!(
            answer(
                &instance(DesiredState::Deleted, ObservedState::Running, 7),
                "x"
            ),
            Some(Command::ForgetInstance { .. })
        ));
    }
}
