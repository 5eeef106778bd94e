//! Resumable moves: a move whose coordinator died is finished or rolled back by the cluster.
//!
//! ```text
//!  coordinator: BeginMove ─► stop ─► pull ─► AdvanceMove(Copied) ─► CommitMove ─► CloseMove
//!               (journal on the instance, phase Preparing)      commit point ┘   (journal gone)
//!
//!  every member, each second, for each journal (`Instance::moving`):
//!    coordinated here, but by no orchestration of this process (it restarted) ─┐
//!    leader: its coordinator left the cluster or is silent for ORPHAN_AFTER  ───┴► CloseMove
//!  CloseMove before the commit: rolled back (what was desired comes back on the source);
//!  after it: finished (the commit already placed it on the target and restored it there).
//!  every host: a copy imported for a move that ended without placing it here is discarded;
//!  the source's stale copy is removed by the fencing loop's sweep (`fencing.rs`).
//! ```
//! Every step is a compare-and-set on the move's session, so a coordinator that is only slow
//! and comes back finds its commit refused rather than running an old copy.

use shoal_raft::{Command, CommandResult, Instance, InstanceName, MovePhase, MoveRecord};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ctx::Ctx;
use super::ops::now_ms;

/// The leader ends a move whose coordinator has been silent this long.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(6);
/// How often the journals are checked.
const TICK: Duration = Duration::from_secs(1);

/// Sessions of the moves this process coordinates right now.
static ACTIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn active() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks a move session as coordinated by this process while it is held.
pub struct Coordinating(String);

impl Coordinating {
    pub fn hold(session: &str) -> Self {
        active().insert(session.to_string());
        Self(session.to_string())
    }
}

impl Drop for Coordinating {
    fn drop(&mut self) {
        active().remove(&self.0);
    }
}

/// Whether container `name` here is the target's copy of a move in progress (so no sweep
/// may remove it, even after this daemon restarted).
pub fn moving_here(ctx: &Ctx, name: &str) -> bool {
    let Ok(key) = InstanceName::new(name) else {
        return false;
    };
    ctx.state.read(|s| {
        s.instances
            .get(&key)
            .and_then(|i| i.moving.as_ref())
            .is_some_and(|m| m.target == ctx.node && m.phase < MovePhase::Committed)
    })
}

/// Why the move `m` has nobody to end it, if so.
fn orphaned(ctx: &Ctx, m: &MoveRecord, members: &BTreeSet<String>) -> Option<String> {
    if m.coordinator == ctx.node {
        return (!active().contains(&m.session))
            .then(|| format!("its coordinator {} restarted", m.coordinator));
    }
    let node = ctx.state.node();
    if !node.is_leader() {
        return None;
    }
    if !members.contains(&m.coordinator) {
        return Some(format!(
            "its coordinator {} left the cluster",
            m.coordinator
        ));
    }
    node.silent_for(&m.coordinator)
        .filter(|d| *d >= ORPHAN_AFTER)
        .map(|d| {
            format!(
                "its coordinator {} has been silent for {} s",
                m.coordinator,
                d.as_secs()
            )
        })
}

/// Runs the recovery loop on every member.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let (journals, members): (Vec<Instance>, BTreeSet<String>) = ctx.state.read(|s| {
            (
                s.instances
                    .values()
                    .filter(|i| i.moving.is_some())
                    .cloned()
                    .collect(),
                s.members.keys().cloned().collect(),
            )
        });
        for inst in journals {
            let m = inst.moving.as_ref().expect("filtered");
            if let Some(why) = orphaned(&ctx, m, &members) {
                close(&ctx, &inst, m, &why).await;
            }
        }
        tidy_imports(&ctx).await;
    }
}

/// Ends an orphaned move: rolled back before its commit, finished after it.
async fn close(ctx: &Arc<Ctx>, inst: &Instance, m: &MoveRecord, why: &str) {
    let cmd = Command::CloseMove {
        name: inst.name.to_string(),
        session: m.session.clone(),
        reason: why.to_string(),
        now_ms: now_ms(),
    };
    match ctx.state.submit(cmd).await {
        Ok(CommandResult::Instance(i)) if i.location == m.target => {
            tracing::warn!(instance = %inst.name, from = %m.source, to = %m.target, why, "orphaned move finished (it was committed)")
        }
        Ok(_) => {
            tracing::warn!(instance = %inst.name, from = %m.source, to = %m.target, phase = ?m.phase, why, "orphaned move rolled back")
        }
        Err(e) => tracing::debug!(instance = %inst.name, error = %e, "closing an orphaned move"),
    }
}

/// Containers imported here for a move: kept while the move is journaled with this host as
/// its target, forgotten as imports once placed here, discarded once the move ended
/// elsewhere. Imports for copies (a name not yet in the state) are left to their copy.
async fn tidy_imports(ctx: &Arc<Ctx>) {
    let names: Vec<String> = ctx
        .importing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    for name in names {
        let Ok(key) = InstanceName::new(&name) else {
            continue;
        };
        let Some(inst) = ctx.state.read(|s| s.instances.get(&key).cloned()) else {
            continue;
        };
        if inst.location == ctx.node {
            ctx.importing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        } else if inst.moving.as_ref().is_none_or(|m| m.target != ctx.node) {
            tracing::warn!(instance = %name, "discarding the copy of a move that ended without it");
            super::mover::discard(ctx, &name).await;
        }
    }
}
