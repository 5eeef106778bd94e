//! Agents: members beyond the Raft group (ids above `RAFT_MEMBERS`) keep no replica. They
//! follow the part of the state they need through a resumable watch stream from a member
//! that holds one (`Membership.Watch`, resumed from the revision they have), and that
//! member relays their writes, heartbeats and reads to the leader. So a cluster can grow
//! to many hosts without growing the Raft group.

use shoal_proto::internal as ipb;
use shoal_raft::consensus::MemberNode;
use shoal_raft::ClusterState;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

use super::ctx::Ctx;
use super::operations::BoxStream;

/// The part of `state` an agent named `name` needs: no CA key, tokens or identities, and
/// only the instances placed on it.
pub fn view_for(state: &ClusterState, name: &str) -> ClusterState {
    ClusterState {
        revision: state.revision,
        members: state.members.clone(),
        images: state.images.clone(),
        aliases: state.aliases.clone(),
        instances: state
            .instances
            .iter()
            .filter(|(_, i)| i.location == name)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        scheduler: state.scheduler.clone(),
        placement_groups: state.placement_groups.clone(),
        ..Default::default()
    }
}

/// Server side: streams views to an agent each time the state changes.
pub fn watch(ctx: Arc<Ctx>, req: ipb::WatchRequest) -> BoxStream<ipb::StateView> {
    super::operations::async_stream(move |tx| async move {
        let mut rx = ctx.state.subscribe();
        let mut sent = req.from_revision;
        // The last view sent, serialised without its revision: unchanged content is not
        // sent again, only the new revision (an agent's read barrier needs it).
        let mut last: Vec<u8> = Vec::new();
        loop {
            let view = ctx
                .state
                .read(|s| (s.revision > sent).then(|| view_for(s, &req.name)));
            if let Some(mut view) = view {
                sent = view.revision;
                view.revision = 0;
                let body = serde_json::to_vec(&view).expect("state serializes");
                let state_json = if body == last {
                    Vec::new()
                } else {
                    view.revision = sent;
                    last = body;
                    serde_json::to_vec(&view).expect("state serializes")
                };
                let msg = ipb::StateView {
                    revision: sent,
                    state_json,
                };
                if tx.send(Ok::<_, Status>(msg)).await.is_err() {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
            // Coalesce bursts of changes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Agent side: follows a member's state, trying the known members in turn.
pub async fn run(ctx: Arc<Ctx>, seeds: Vec<String>) {
    let node = ctx.state.node().clone();
    let mut next = 0usize;
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
        let state: ClusterState =
            serde_json::from_slice(&view.state_json).map_err(|e| format!("bad view: {e}"))?;
        node.shared.install_view(state);
    }
    Err("the stream ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::{CaRecord, Instance, InstanceName, InstanceStatus};

    fn instance(name: &str, location: &str) -> Instance {
        Instance {
            name: InstanceName::new(name).unwrap(),
            image: "busybox".into(),
            image_fingerprint: "ab".repeat(32),
            config: Default::default(),
            desired: shoal_raft::DesiredState::Running,
            desired_revision: 1,
            restart_revision: 0,
            stop_force: false,
            stop_timeout_s: 0,
            location: location.into(),
            placement_generation: 1,
            status: InstanceStatus::pending(0),
            created_at_ms: 0,
            version: 1,
            origin: None,
        }
    }

    #[test]
    fn an_agent_sees_its_instances_and_no_secrets() {
        let mut s = ClusterState {
            revision: 42,
            ca: Some(CaRecord {
                cert_pem: "cert".into(),
                key_pem: "KEY".into(),
            }),
            ..Default::default()
        };
        for (n, loc) in [("x", "f"), ("y", "a")] {
            let i = instance(n, loc);
            s.instances.insert(i.name.clone(), i);
        }
        let v = view_for(&s, "f");
        assert_eq!(v.revision, 42);
        assert!(v.ca.is_none() && v.tokens.is_empty() && v.identities.is_empty());
        let names: Vec<String> = v.instances.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["x"]);
        assert!(!serde_json::to_string(&v).unwrap().contains("KEY"));
    }
}
