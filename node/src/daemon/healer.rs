//! Healing, on the leader: a member silent for [`HEAL_AFTER`] has fenced itself by then (or
//! its monitors did), so its instances with `cluster.evacuate=auto` are recreated from
//! their image on other hosts, with a new placement generation. Instances with another
//! policy stay and are shown as unreachable.

use shoal_raft::scheduler::{place, PlacementRequest, Target};
use shoal_raft::{Command, DesiredState, Instance, ObservedState};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::ctx::Ctx;
use super::fencing::{fenceable, HEAL_AFTER};
use super::ops::now_ms;

/// Runs the healer; it acts only while this member leads.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let node = ctx.state.node();
        if !node.is_leader() {
            continue;
        }
        let members: Vec<String> = ctx.state.read(|s| s.members.keys().cloned().collect());
        if members.len() < 2 {
            continue;
        }
        let silent: HashSet<String> = members
            .iter()
            .filter(|m| node.silent_for(m).is_some_and(|d| d >= HEAL_AFTER))
            .cloned()
            .collect();
        if silent.is_empty() {
            continue;
        }
        let online: HashSet<String> = members
            .iter()
            .filter(|m| !silent.contains(*m) && node.is_online(m))
            .cloned()
            .collect();
        let stranded: Vec<Instance> = ctx.state.read(|s| {
            s.instances
                .values()
                .filter(|i| silent.contains(&i.location) && i.desired != DesiredState::Deleted)
                .cloned()
                .collect()
        });
        for inst in stranded {
            heal(&ctx, &inst, &online).await;
        }
    }
}

async fn heal(ctx: &Arc<Ctx>, inst: &Instance, online: &HashSet<String>) {
    let host = inst.location.clone();
    let recreate = inst.desired != DesiredState::Stopped && fenceable(&inst.config);
    if recreate {
        let arch = ctx.state.read(|s| {
            s.images
                .get(&inst.image_fingerprint)
                .map(|i| i.architecture.clone())
                .unwrap_or_default()
        });
        let req = PlacementRequest::new(inst.name.as_str(), inst.config.clone(), arch, Target::Any);
        let plan = ctx
            .state
            .read(|s| place(s, &|m: &str| online.contains(m), &req));
        match plan {
            Ok(p) => {
                let cmd = Command::Relocate {
                    name: inst.name.to_string(),
                    from: host.clone(),
                    to: p.host.clone(),
                    expected_generation: inst.placement_generation,
                    remember_origin: false,
                    reason: format!("host {host} went silent: recreated from its image"),
                    now_ms: now_ms(),
                };
                match ctx.state.submit(cmd).await {
                    Ok(_) => {
                        tracing::warn!(instance = %inst.name, from = %host, to = %p.host, "healed: recreated on another host")
                    }
                    Err(e) => tracing::warn!(instance = %inst.name, error = %e, "healing failed"),
                }
                return;
            }
            Err(e) => {
                mark(
                    ctx,
                    inst,
                    format!("host {host} is offline and no other host fits: {e}"),
                )
                .await;
                return;
            }
        }
    }
    let policy = shoal_raft::InstanceConfig::parse(&inst.config)
        .map(|c| c.evacuate)
        .unwrap_or_default();
    let why = if inst.desired == DesiredState::Stopped {
        format!("host {host} is offline")
    } else {
        format!("host {host} is offline; cluster.evacuate={policy} keeps it there")
    };
    mark(ctx, inst, why).await;
}

async fn mark(ctx: &Arc<Ctx>, inst: &Instance, message: String) {
    if inst.status.state == ObservedState::Unknown && inst.status.message == message {
        return;
    }
    let cmd = Command::MarkUnreachable {
        name: inst.name.to_string(),
        node: inst.location.clone(),
        placement_generation: inst.placement_generation,
        message,
        now_ms: now_ms(),
    };
    if let Err(e) = ctx.state.submit(cmd).await {
        tracing::warn!(instance = %inst.name, error = %e, "marking unreachable failed");
    }
}
