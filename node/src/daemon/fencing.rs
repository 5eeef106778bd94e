//! Fencing: an instance never runs on two hosts at once.
//!
//! ```text
//!  member ── heartbeat every 1 s ──► leader        (the leader's own lease: a quorum acked it)
//!    │ reply: lease renewed, lease file for the monitors = now + FENCE_AFTER
//!    │
//!    ├─ no renewal for FENCE_AFTER (6 s): stop (SIGKILL) every instance here that the cluster
//!    │  may restart elsewhere (cluster.evacuate=auto). If shoald itself is dead, the monitors
//!    │  see the lease file expire and do the same.
//!    └─ renewed again: restart the fenced instances still placed here; remove local copies
//!       of instances now placed elsewhere (once this replica has caught up with the leader).
//!
//!  leader: a member silent for HEAL_AFTER (10 s) has fenced itself by then; its `auto`
//!  instances are placed elsewhere with a new placement generation (see `healer`).
//! ```
//! A heartbeat renews the lease only while this member's replica keeps up: it must have
//! applied what the leader had applied `CATCH_UP` (3 s) ago, or it could not learn that its
//! instances were placed elsewhere; the leader counts a member live by the same rule (see
//! `ClusterNode::renew_if_caught_up` and `heartbeat_from`). A member whose Raft core
//! stopped (openraft `Fatal`, a panic) sends no heartbeat and fences at once.
//! The margins: the member fences at most FENCE_AFTER + 1 s (a heartbeat's round trip)
//! after the leader last heard from it, well before HEAL_AFTER; a new leader waits
//! HEAL_AFTER from its own election.

use shoal_raft::{DesiredState, InstanceConfig, InstanceName};
use std::sync::Arc;
use std::time::Duration;

use super::agent;
use super::ctx::Ctx;
use super::ops::now_ms;

/// A member that could not renew its lease for this long stops its fenceable instances.
pub const FENCE_AFTER: Duration = Duration::from_secs(6);
/// The leader re-places the instances of a member silent for this long.
pub const HEAL_AFTER: Duration = Duration::from_secs(10);

/// Whether the cluster may restart this instance elsewhere (so it must be fenced).
pub fn fenceable(config: &std::collections::BTreeMap<String, String>) -> bool {
    InstanceConfig::parse(config)
        .map(|c| c.evacuate == "auto")
        .unwrap_or(false)
}

fn multi_member(ctx: &Ctx) -> bool {
    ctx.state.read(|s| s.members.len() > 1)
}

/// Called after every renewal: refreshes the lease file the monitors watch.
pub async fn lease_renewed(ctx: &Arc<Ctx>) {
    let rt = ctx.runtime.clone();
    let multi = multi_member(ctx);
    let expires = now_ms() + FENCE_AFTER.as_millis() as i64;
    let r = tokio::task::spawn_blocking(move || {
        if multi {
            rt.renew_lease(expires)
        } else {
            rt.clear_lease()
        }
    })
    .await;
    if let Ok(Err(e)) = r {
        tracing::warn!(error = %e, "writing the lease file failed");
    }
}

/// Runs the fencing loop.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut core_stopped = false;
    loop {
        tick.tick().await;
        if !multi_member(&ctx) {
            continue;
        }
        let node = ctx.state.node();
        // A stopped Raft core learns nothing more: whatever it holds may be placed
        // elsewhere already. Fence at once, without waiting for the lease to run out.
        if let Some(failure) = node.core_failure() {
            if !core_stopped {
                core_stopped = true;
                tracing::error!(
                    %failure,
                    "this member's Raft core stopped: fencing its instances; restart shoald"
                );
            }
            fence(&ctx, true).await;
            continue;
        }
        if !node.lease_held() {
            // Not renewed since this daemon started: nothing is known yet (the monitors
            // fence on their own if the old lease expired).
            continue;
        }
        if node.lease_age() > FENCE_AFTER {
            fence(&ctx, false).await;
        } else {
            unfence(&ctx).await;
            if node.shared.revision() >= node.leader_revision() {
                remove_stale_copies(&ctx).await;
            }
        }
    }
}

/// Kills the fenceable instances placed here. Each is killed once per fencing, unless
/// `recheck` (the Raft core stopped, so nothing will unfence them): then one found running
/// again is killed again.
async fn fence(ctx: &Arc<Ctx>, recheck: bool) {
    let victims: Vec<String> = ctx.state.read(|s| {
        s.instances_on(&ctx.node)
            .filter(|i| fenceable(&i.config))
            .map(|i| i.name.to_string())
            .collect()
    });
    for name in victims {
        let first = ctx
            .fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        if !first {
            if !recheck {
                continue;
            }
            let rt = ctx.runtime.clone();
            let n = name.clone();
            let running = tokio::task::spawn_blocking(move || rt.state(&n))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|st| st.status == crate::runtime::ContainerStatus::Running);
            if !running {
                continue;
            }
        }
        let rt = ctx.runtime.clone();
        let n = name.clone();
        let r = tokio::task::spawn_blocking(move || rt.stop(&n, Duration::ZERO, true)).await;
        match r {
            Ok(Ok(())) => {
                tracing::warn!(instance = %name, "lease expired: instance fenced (killed)")
            }
            Ok(Err(e)) => tracing::warn!(instance = %name, error = %e, "fencing failed"),
            Err(e) => tracing::warn!(instance = %name, error = %e, "fencing task failed"),
        }
    }
}

async fn unfence(ctx: &Arc<Ctx>) {
    let names: Vec<String> = ctx
        .fenced
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for name in names {
        let Ok(key) = InstanceName::new(&name) else {
            continue;
        };
        let inst = ctx.state.read(|s| s.instances.get(&key).cloned());
        match inst {
            Some(i) if i.location == ctx.node && i.desired == DesiredState::Running => {
                tracing::info!(instance = %name, "lease renewed: restarting a fenced instance");
                agent::converge(ctx, i).await;
            }
            _ => {}
        }
    }
}

/// Deletes containers of instances that are no longer placed on this host (moved or
/// healed elsewhere while this host was cut off, or deleted).
async fn remove_stale_copies(ctx: &Arc<Ctx>) {
    let rt = ctx.runtime.clone();
    let Ok(Ok(local)) = tokio::task::spawn_blocking(move || rt.list()).await else {
        return;
    };
    for name in local {
        if ctx
            .importing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name)
            || super::move_recovery::moving_here(ctx, &name)
        {
            continue;
        }
        let placed_here = InstanceName::new(&name)
            .ok()
            .and_then(|k| {
                ctx.state
                    .read(|s| s.instances.get(&k).map(|i| i.location.clone()))
            })
            .map(|loc| loc == ctx.node)
            .unwrap_or(false);
        if placed_here {
            continue;
        }
        let rt = ctx.runtime.clone();
        let n = name.clone();
        let r = tokio::task::spawn_blocking(move || {
            rt.stop(&n, Duration::ZERO, true)?;
            rt.delete(&n)
        })
        .await;
        match r {
            Ok(Ok(())) => {
                tracing::warn!(instance = %name, "removed a stale local copy (placed elsewhere now)")
            }
            Ok(Err(e)) => {
                tracing::warn!(instance = %name, error = %e, "removing a stale copy failed")
            }
            Err(_) => {}
        }
    }
}
