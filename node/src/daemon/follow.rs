//! Agents: members beyond the Raft group (ids above `RAFT_MEMBERS`) keep no replica. They
//! follow the part of the state they need through a resumable watch stream from a member
//! that holds one (`Membership.Watch`, resumed from the revision they have), and that
//! member relays their writes, heartbeats and reads to the leader. So a cluster can grow
//! to many hosts without growing the Raft group.

use shoal_proto::internal as ipb;
use shoal_raft::consensus::MemberNode;
use shoal_raft::model::view_for;
use shoal_raft::{ClusterState, InstanceName, ViewDelta};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;

use super::ctx::Ctx;
use super::operations::BoxStream;

/// Bursts of changes are coalesced for this long before a message goes out.
const COALESCE: Duration = Duration::from_millis(20);
/// A revision that moved without changing anything the agent sees is sent at most this
/// often (an agent's read barrier waits for it; a thousand agents must not each get a
/// message for every write).
const REVISION_EVERY: Duration = Duration::from_millis(100);

/// Server side: a whole view first (unless the agent's revision is still within the change
/// log), then only the records of the agent's view that changed.
pub fn watch(ctx: Arc<Ctx>, req: ipb::WatchRequest) -> BoxStream<ipb::StateView> {
    super::operations::async_stream(move |tx| async move {
        let shared = ctx.state.node().shared.clone();
        let mut rx = shared.subscribe();
        let name = req.name;
        // Changes are examined up to `seen`; the agent was told up to `told`.
        let mut seen = req.from_revision;
        let mut told = req.from_revision;
        let mut held: BTreeSet<InstanceName> = BTreeSet::new();
        let mut resumed = req.from_revision > 0;
        let mut whole = req.from_revision == 0;
        let mut last_sent = Instant::now() - REVISION_EVERY;
        loop {
            let mut msg = None;
            let changes = if whole {
                None
            } else {
                shared.changes_since(seen)
            };
            match changes {
                None => {
                    let view = shared.read(|s| view_for(s, &name));
                    held = view.instances.keys().cloned().collect();
                    seen = view.revision;
                    whole = false;
                    resumed = false;
                    msg = Some(ipb::StateView {
                        revision: seen,
                        state_json: serde_json::to_vec(&view).expect("state serializes"),
                        delta_json: Vec::new(),
                    });
                }
                Some((upto, keys)) if upto > seen => {
                    if resumed {
                        // The agent's own view may hold any of these instances.
                        held.extend(keys.iter().filter_map(|k| match k {
                            shoal_raft::model::StateKey::Instance(n) => InstanceName::new(n).ok(),
                            _ => None,
                        }));
                        resumed = false;
                    }
                    let delta =
                        shared.read(|s| ViewDelta::for_agent(s, upto, &keys, &name, &mut held));
                    seen = upto;
                    if !delta.is_empty() {
                        msg = Some(ipb::StateView {
                            revision: upto,
                            state_json: Vec::new(),
                            delta_json: serde_json::to_vec(&delta).expect("deltas serialize"),
                        });
                    }
                }
                Some(_) => {}
            }
            if msg.is_none() && seen > told && last_sent.elapsed() >= REVISION_EVERY {
                msg = Some(ipb::StateView {
                    revision: seen,
                    state_json: Vec::new(),
                    delta_json: Vec::new(),
                });
            }
            if let Some(msg) = msg {
                told = msg.revision;
                last_sent = Instant::now();
                if tx.send(Ok::<_, Status>(msg)).await.is_err() {
                    return;
                }
            }
            if seen > told {
                // Only the revision is owed: send it when its turn comes, or with the
                // next change.
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep_until(last_sent + REVISION_EVERY) => {}
                }
            } else if rx.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(COALESCE).await;
        }
    })
}

/// Agent side: follows a member's state, trying the known members in turn.
pub async fn run(ctx: Arc<Ctx>, seeds: Vec<String>) {
    let node = ctx.state.node().clone();
    // Agents start at different members (by node id), so a thousand of them spread over
    // the members holding a replica instead of all following the first.
    let mut next = node.id as usize;
    loop {
        let mut candidates: Vec<String> = ctx.state.read(|s| {
            let mut raft: Vec<_> = s
                .members
                .values()
                .filter(|m| m.id <= crate::cluster::node::RAFT_MEMBERS && m.name != ctx.node)
                .map(|m| m.address.clone())
                .collect();
            raft.sort();
            raft
        });
        for s in &seeds {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        if candidates.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let addr = candidates[next % candidates.len()].clone();
        next += 1;
        if let Err(e) = follow(&ctx, &addr).await {
            tracing::info!(member = %addr, error = %e, "following the cluster state: switching member");
        }
        node.set_gateway(None);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow(ctx: &Arc<Ctx>, addr: &str) -> Result<(), String> {
    let node = ctx.state.node();
    let mut client = node.peers.membership(addr).map_err(|e| e.to_string())?;
    let mut stream = client
        .watch(ipb::WatchRequest {
            name: ctx.node.clone(),
            from_revision: node.shared.revision(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    node.set_gateway(Some(MemberNode {
        name: addr.to_string(),
        addr: addr.to_string(),
    }));
    while let Some(view) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        if !view.state_json.is_empty() {
            let state: ClusterState =
                serde_json::from_slice(&view.state_json).map_err(|e| format!("bad view: {e}"))?;
            node.shared.install_view(state);
        } else if !view.delta_json.is_empty() {
            let delta: ViewDelta =
                serde_json::from_slice(&view.delta_json).map_err(|e| format!("bad delta: {e}"))?;
            node.shared.update_view(|s| delta.apply_to(s));
        } else {
            node.shared
                .update_view(|s| s.revision = s.revision.max(view.revision));
        }
    }
    Err("the stream ended".into())
}
