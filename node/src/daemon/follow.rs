//! Agents: members beyond the Raft group (ids above `RAFT_MEMBERS`) keep no replica. They
//! follow the part of the state they need through a resumable watch stream from a member
//! that holds one (`Membership.Watch`, resumed from the revision they have), and that
//! member relays their writes, heartbeats and reads to the leader. So a cluster can grow
//! to many hosts without growing the Raft group.

use shoal_proto::internal as ipb;
use shoal_raft::consensus::MemberNode;
use shoal_raft::model::{view_for, StateKey};
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
const REVISION_EVERY: Duration = Duration::from_millis(250);

/// Server side: a whole view first (or, when the agent resumes from a revision still in
/// the change log, what changed since), then only the records of the agent's view that
/// changed, as the member's watch hub dispatches them.
pub fn watch(ctx: Arc<Ctx>, req: ipb::WatchRequest) -> BoxStream<ipb::StateView> {
    super::operations::async_stream(move |tx| async move {
        let shared = ctx.state.node().shared.clone();
        let name = req.name;
        let reg = ctx.watchers.register(&shared, &name);
        let mut held: BTreeSet<InstanceName> = BTreeSet::new();
        let whole = |held: &mut BTreeSet<InstanceName>| {
            let view = shared.read(|s| view_for(s, &name));
            *held = view.instances.keys().cloned().collect();
            ipb::StateView {
                revision: view.revision,
                state_json: serde_json::to_vec(&view).expect("state serializes"),
                delta_json: Vec::new(),
            }
        };
        let delta = |held: &mut BTreeSet<InstanceName>, upto: u64, keys: &BTreeSet<StateKey>| {
            let d = shared.read(|s| ViewDelta::for_agent(s, upto, keys, &name, held));
            (!d.is_empty()).then(|| ipb::StateView {
                revision: upto,
                state_json: Vec::new(),
                delta_json: serde_json::to_vec(&d).expect("deltas serialize"),
            })
        };
        // The first message.
        let first = match (req.from_revision, shared.changes_since(req.from_revision)) {
            (0, _) | (_, None) => Some(whole(&mut held)),
            (from, Some((upto, keys))) => {
                // The agent's view may hold any instance among these.
                held.extend(keys.iter().filter_map(|k| match k {
                    StateKey::Instance(n) => InstanceName::new(n).ok(),
                    _ => None,
                }));
                delta(&mut held, upto, &keys).or_else(|| {
                    (upto > from).then(|| ipb::StateView {
                        revision: upto,
                        ..Default::default()
                    })
                })
            }
        };
        let mut told = req.from_revision;
        let mut last_sent = Instant::now() - REVISION_EVERY;
        if let Some(msg) = first {
            told = msg.revision;
            last_sent = Instant::now();
            if tx.send(Ok::<_, Status>(msg)).await.is_err() {
                return;
            }
        }
        loop {
            // Woken for a change of the view, or, when only the revision is owed, when
            // its turn comes.
            let owes_revision = reg.dispatched() > told;
            if owes_revision {
                tokio::select! {
                    _ = reg.notify.notified() => {}
                    _ = tokio::time::sleep_until(last_sent + REVISION_EVERY) => {}
                }
            } else {
                tokio::select! {
                    _ = reg.notify.notified() => {}
                    // Look again now and then: the revision may move without a wake-up.
                    _ = tokio::time::sleep(REVISION_EVERY) => {}
                }
            }
            tokio::time::sleep(COALESCE).await;
            let owed = reg.take();
            let mut msg = if owed.whole {
                Some(whole(&mut held))
            } else if owed.keys.is_empty() {
                None
            } else {
                delta(&mut held, owed.upto, &owed.keys)
            };
            if msg.is_none() && owed.upto > told && last_sent.elapsed() >= REVISION_EVERY {
                msg = Some(ipb::StateView {
                    revision: owed.upto,
                    ..Default::default()
                });
            }
            if let Some(msg) = msg {
                told = told.max(msg.revision);
                last_sent = Instant::now();
                if tx.send(Ok::<_, Status>(msg)).await.is_err() {
                    return;
                }
            }
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
