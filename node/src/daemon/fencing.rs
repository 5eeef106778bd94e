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
/// How long a member whose Raft core failed (a storage error such as a full disk, or a
/// panic) waits, fenced, before it restarts itself; doubled on each restart in a row, up
/// to [`RESTART_MAX`].
const RESTART_FIRST: Duration = Duration::from_secs(2);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// Free space the Raft store's file system needs before a restart is tried.
const RESTART_MIN_FREE: u64 = 8 << 20;
/// Counts restarts in a row (passed on to the restarted daemon).
const RESTARTS_ENV: &str = "SHOALD_CORE_RESTARTS";

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
    let mut stopped_at = tokio::time::Instant::now();
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
                stopped_at = tokio::time::Instant::now();
                tracing::error!(
                    %failure,
                    "this member's Raft core stopped: fencing its instances; shoald restarts itself"
                );
            }
            fence(&ctx, true).await;
            if let Some(delay) = restart_delay(node) {
                if stopped_at.elapsed() >= delay {
                    restart_self(&ctx, &failure);
                }
            }
            continue;
        }
        if stopped_at.elapsed() > Duration::from_secs(60) {
            restarts().store(0, std::sync::atomic::Ordering::Relaxed);
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

/// How long to stay fenced before restarting, or `None` when the core was stopped on
/// purpose (the daemon is shutting down).
fn restart_delay(node: &crate::cluster::ClusterNode) -> Option<Duration> {
    if matches!(
        node.raft.metrics().borrow().running_state,
        Err(openraft::error::Fatal::Stopped)
    ) {
        return None;
    }
    let n = restarts().load(std::sync::atomic::Ordering::Relaxed);
    Some((RESTART_FIRST * 2u32.saturating_pow(n.min(8))).min(RESTART_MAX))
}

/// Restarts in a row: from the environment at start, reset once the core ran healthy for a
/// minute.
fn restarts() -> &'static std::sync::atomic::AtomicU32 {
    static N: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let n = std::env::var(RESTARTS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::sync::atomic::AtomicU32::new(n)
    })
}

/// Replaces this daemon with a fresh one (same binary, arguments and pid), as a supervisor
/// would restart it: the store is opened again, so a member whose disk filled up serves
/// again once there is room, and one whose store is damaged refuses to start with an error
/// naming it. Containers and their monitors live on and are adopted.
fn restart_self(ctx: &Ctx, failure: &str) {
    use std::os::unix::process::CommandExt;
    // A store opened on a full disk fails at once: wait for room first.
    if let Some(data) = ctx.spool_dir.parent() {
        if let Ok(st) = nix::sys::statvfs::statvfs(&data.join("raft")) {
            let free = st.blocks_available().saturating_mul(st.fragment_size());
            if free < RESTART_MIN_FREE {
                tracing::warn!(
                    free_bytes = free,
                    "not restarting yet: the disk holding the Raft store has no room; free some"
                );
                return;
            }
        }
    }
    let n = restarts().load(std::sync::atomic::Ordering::Relaxed);
    tracing::error!(%failure, restart = n + 1, "restarting shoald after its Raft core stopped");
    // Every descriptor Rust opens is close-on-exec; the monitors are other processes.
    let err = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env(RESTARTS_ENV, (n + 1).to_string())
        .exec();
    tracing::error!(error = %err, "restarting shoald failed; restart it by hand");
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
