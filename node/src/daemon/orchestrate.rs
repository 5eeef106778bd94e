//! The orchestrations behind `shoal move`, `shoal copy`, `shoal cluster evacuate` and
//! `restore`: run as operations on the member that took the call, through commits and
//! the internal calls of [`super::mover`].

use shoal_proto::internal as ipb;
use shoal_raft::scheduler::{place, PlacementRequest, Target};
use shoal_raft::{
    Command, CommandResult, DesiredState, Instance, InstanceConfig, InstanceName, ModelError,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::Ctx;
use super::error::ApiError;
use super::ops::{check, now_ms, Check, Goal, OpHandle};
use shoal_raft::ObservedState;

/// How a move copies the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveMode {
    Cold,
    Precopy,
    Live,
}

impl MoveMode {
    /// Parses `cold`, `precopy` or `live` (empty: cold).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "cold" => Ok(MoveMode::Cold),
            "precopy" | "pre-copy" => Ok(MoveMode::Precopy),
            "live" => Ok(MoveMode::Live),
            other => Err(format!(
                "unknown move mode '{other}': use cold, precopy or live"
            )),
        }
    }
}

/// Waits until instance `name` reaches `goal` for `revision`.
pub async fn wait_for(
    ctx: &Ctx,
    name: &InstanceName,
    revision: u64,
    goal: Goal,
    limit: Duration,
) -> Result<(), String> {
    let mut rx = ctx.state.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match ctx.state.read(|s| check(s, name, revision, goal)) {
            Check::Done(_) => return Ok(()),
            Check::Failed(m) => return Err(m),
            Check::Waiting(_) => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(format!("timed out waiting for {name}")),
        }
    }
}

async fn set_desired(
    ctx: &Ctx,
    name: &str,
    desired: DesiredState,
    force: bool,
) -> Result<u64, String> {
    let r = ctx
        .state
        .submit(Command::SetDesired {
            name: name.to_string(),
            desired,
            force,
            timeout_s: 0,
            restart: false,
            expected_version: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    match r {
        CommandResult::Instance(i) => Ok(i.desired_revision),
        _ => Err("unexpected answer to a state change".into()),
    }
}

fn address(ctx: &Ctx, member: &str) -> Result<String, String> {
    ctx.state
        .read(|s| s.members.get(member).map(|m| m.address.clone()))
        .ok_or_else(|| format!("unknown host '{member}'"))
}

fn client(
    ctx: &Ctx,
    addr: &str,
) -> Result<ipb::membership_client::MembershipClient<tonic::transport::Channel>, String> {
    ctx.state
        .node()
        .peers
        .membership(addr)
        .map_err(|e| e.to_string())
}

async fn end(ctx: &Ctx, addr: &str, session: &str, target_name: &str, keep: bool) {
    if let Ok(mut c) = client(ctx, addr) {
        let _ = c
            .end_move(ipb::EndMoveRequest {
                session: session.to_string(),
                target_name: target_name.to_string(),
                keep,
            })
            .await;
    }
}

/// Chooses a host for `inst` other than its own (`target` names one, or the scheduler picks).
async fn choose(ctx: &Ctx, inst: &Instance, target: &str) -> Result<String, String> {
    let online: HashSet<String> = super::membership::online_members(ctx).await;
    let arch = ctx.state.read(|s| {
        s.images
            .get(&inst.image_fingerprint)
            .map(|i| i.architecture.clone())
            .unwrap_or_default()
    });
    let mut t = Target::parse(target);
    if t == Target::Any {
        t = Target::Any;
    }
    let req = PlacementRequest::new(inst.name.as_str(), inst.config.clone(), arch, t);
    let from = inst.location.clone();
    ctx.state
        .read(|s| place(s, &|m: &str| m != from && online.contains(m), &req))
        .map(|p| p.host)
        .map_err(|e| e.to_string())
}

/// Moves `name` to `target` with its data; returns the operation's final message.
pub async fn move_instance(
    ctx: &Arc<Ctx>,
    op: &OpHandle,
    name: &str,
    target: &str,
    mode: MoveMode,
    remember_origin: bool,
) -> Result<String, String> {
    if mode == MoveMode::Live {
        return Err("live migration needs CRIU, which cannot run on this host (Debian's criu fails on this kernel): use --mode cold or --mode precopy".into());
    }
    let key = InstanceName::new(name).map_err(|e| e.to_string())?;
    let inst = ctx
        .state
        .read(|s| s.instances.get(&key).cloned())
        .ok_or_else(|| format!("instance '{name}' not found"))?;
    if inst.desired == DesiredState::Deleted {
        return Err(format!("instance {name} is being deleted"));
    }
    if let Some(m) = &inst.moving {
        return Err(ModelError::MoveInProgress {
            name: name.to_string(),
            what: format!(
                "{}, started {} s ago",
                m.describe(),
                (now_ms() - m.started_at_ms).max(0) / 1000
            ),
        }
        .to_string());
    }
    let source = inst.location.clone();
    let dest = if target.is_empty() {
        choose(ctx, &inst, "").await?
    } else {
        target.to_string()
    };
    if dest == source {
        return Err(format!("instance {name} is already on {dest}"));
    }
    let online = super::membership::online_members(ctx).await;
    if !online.contains(&dest) {
        return Err(format!("target host {dest} is offline"));
    }
    if !online.contains(&source) {
        return Err(format!(
            "host {source} holding {name}'s data is offline: its data cannot be moved"
        ));
    }
    choose(ctx, &inst, &dest)
        .await
        .map_err(|e| format!("target {dest} cannot take {name}: {e}"))?;
    let source_addr = address(ctx, &source)?;
    let dest_addr = address(ctx, &dest)?;
    let running = matches!(inst.desired, DesiredState::Running | DesiredState::Frozen);
    let session = format!("{name}-{}-{:x}", ctx.node, now_ms());
    let _coordinating = super::move_recovery::Coordinating::hold(&session);
    let mode_word = if mode == MoveMode::Precopy {
        "precopy"
    } else {
        "cold"
    };
    ctx.state
        .submit(Command::BeginMove {
            name: name.to_string(),
            from: source.clone(),
            to: dest.clone(),
            mode: mode_word.to_string(),
            session: session.clone(),
            coordinator: ctx.node.clone(),
            expected_generation: inst.placement_generation,
            remember_origin,
            now_ms: now_ms(),
        })
        .await
        .map_err(|e| format!("move of {name} to {dest} not begun: {e}"))?;
    let pull = |delta: bool| {
        let dest_addr = dest_addr.clone();
        let req = ipb::PullInstanceRequest {
            name: name.to_string(),
            target_name: name.to_string(),
            source_address: source_addr.clone(),
            session: session.clone(),
            delta,
        };
        async move {
            let mut c = client(ctx, &dest_addr)?;
            let mut r = tonic::Request::new(req);
            r.set_timeout(Duration::from_secs(3600));
            c.pull_instance(r)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_string())
        }
    };
    let t0 = Instant::now();
    let mut stopped_at = None;
    let attempt = async {
        let mut delta = false;
        let mut first_pass = 0;
        if mode == MoveMode::Precopy && running {
            op.progress(&format!("copying {name} to {dest} while it runs"));
            let r = pull(false).await?;
            op.progress(&format!(
                "copied {} bytes while running; stopping {name}",
                r.bytes
            ));
            first_pass = r.bytes;
            delta = true;
        }
        if running {
            stopped_at = Some(Instant::now());
            let rev = set_desired(ctx, name, DesiredState::Stopped, false).await?;
            wait_for(
                ctx,
                &key,
                rev,
                Goal::State(ObservedState::Stopped),
                Duration::from_secs(120),
            )
            .await?;
        }
        op.progress(&format!("copying {name}'s data to {dest}"));
        let r = pull(delta).await?;
        ctx.state
            .submit(Command::AdvanceMove {
                name: name.to_string(),
                session: session.clone(),
                now_ms: now_ms(),
            })
            .await
            .map_err(|e| e.to_string())?;
        // Fault suite: the orchestrating member dies with the data copied, before the commit.
        fail::fail_point!("orchestrate-before-commit", |_| std::process::abort());
        let committed = ctx
            .state
            .submit(Command::CommitMove {
                name: name.to_string(),
                session: session.clone(),
                expected_generation: inst.placement_generation,
                now_ms: now_ms(),
            })
            .await
            .map_err(|e| e.to_string())?;
        // Fault suite: the orchestrating member dies right after the commit point.
        fail::fail_point!("orchestrate-after-relocate", |_| std::process::abort());
        let revision = match committed {
            CommandResult::Instance(i) => i.desired_revision,
            _ => 0,
        };
        Ok::<(u64, u64, u64), String>((first_pass, r.bytes, revision))
    };
    let outcome = attempt.await;
    // Whatever happened, the journal is closed now: the model rolls the move back if it
    // did not commit, and says where the instance is.
    let closed = ctx
        .state
        .submit(Command::CloseMove {
            name: name.to_string(),
            session: session.clone(),
            reason: outcome.as_ref().err().cloned().unwrap_or_default(),
            now_ms: now_ms(),
        })
        .await;
    let moved: Option<bool> = match &closed {
        Ok(CommandResult::Instance(i)) => Some(i.location == dest),
        Ok(_) => None,
        // Closed already (by recovery, or voided by healing): the state says where it is.
        Err(ApiError::Model(ModelError::NoSuchMove { .. })) => ctx
            .state
            .read(|s| s.instances.get(&key).map(|i| i.location == dest)),
        Err(_) => None,
    };
    let (first_pass, last_pass, revision) = match (outcome, moved) {
        (Ok(b), Some(true)) => b,
        // Committed, but the journal could not be closed yet: the instance is on the
        // target; `move_recovery` closes the journal once this orchestration is over.
        (Ok(b), None) => {
            tracing::warn!(instance = %name, error = ?closed.err(), "move committed; its journal stays open for now");
            b
        }
        (Ok(_), Some(false)) => {
            return Err(format!(
                "move of {name} to {dest} was voided meanwhile (its host was healed or evacuated)"
            ))
        }
        (Err(e), Some(true)) => {
            // Committed although a step reported an error (an answer lost after the
            // commit): the instance is on the target now.
            tracing::warn!(instance = %name, error = %e, "move committed despite an error");
            (0, 0, 0)
        }
        (Err(e), Some(false)) => {
            end(ctx, &dest_addr, &session, name, false).await;
            end(ctx, &source_addr, &session, "", false).await;
            return Err(format!(
                "move of {name} to {dest} failed, {name} stays on {source}: {e}"
            ));
        }
        (Err(e), None) => {
            return Err(format!(
                "move of {name} to {dest} failed ({e}) and its end could not be recorded yet: \
                 the cluster finishes or rolls it back by itself within seconds; `shoal info \
                 {name}` then shows where it is"
            ));
        }
    };
    end(ctx, &dest_addr, &session, name, true).await;
    end(ctx, &source_addr, &session, "", false).await;
    let mut downtime = String::new();
    if running && revision > 0 {
        wait_for(
            ctx,
            &key,
            revision,
            Goal::State(ObservedState::Running),
            Duration::from_secs(120),
        )
        .await?;
        if let Some(t) = stopped_at {
            downtime = format!(", downtime {} ms", t.elapsed().as_millis());
        }
    }
    let copied = if mode == MoveMode::Precopy && running {
        format!("precopy: {first_pass} bytes while running, {last_pass} bytes after stopping")
    } else {
        format!("cold: {last_pass} bytes")
    };
    Ok(format!(
        "moved {name} from {source} to {dest} ({copied}; {} ms in all{downtime})",
        t0.elapsed().as_millis()
    ))
}

/// Copies `name` (its layer, stopped) to a new instance `new_name` on `target`.
pub async fn copy_instance(
    ctx: &Arc<Ctx>,
    op: &OpHandle,
    name: &str,
    new_name: &str,
    target: &str,
) -> Result<String, String> {
    let key = InstanceName::new(name).map_err(|e| e.to_string())?;
    InstanceName::new(new_name).map_err(|e| e.to_string())?;
    let inst = ctx
        .state
        .read(|s| s.instances.get(&key).cloned())
        .ok_or_else(|| format!("instance '{name}' not found"))?;
    if ctx.state.read(|s| {
        s.instances
            .contains_key(&InstanceName::new(new_name).expect("checked"))
    }) {
        return Err(format!("instance '{new_name}' already exists"));
    }
    let online = super::membership::online_members(ctx).await;
    let dest = if target.is_empty() {
        let arch = ctx.state.read(|s| {
            s.images
                .get(&inst.image_fingerprint)
                .map(|i| i.architecture.clone())
                .unwrap_or_default()
        });
        let req = PlacementRequest::new(new_name, inst.config.clone(), arch, Target::Any);
        ctx.state
            .read(|s| place(s, &|m: &str| online.contains(m), &req))
            .map(|p| p.host)
            .map_err(|e| e.to_string())?
    } else {
        target.to_string()
    };
    let source_addr = address(ctx, &inst.location)?;
    let dest_addr = address(ctx, &dest)?;
    let session = format!("{new_name}-{:x}", now_ms());
    op.progress(&format!("copying {name} to {dest} as {new_name}"));
    let mut c = client(ctx, &dest_addr)?;
    let r = c
        .pull_instance(ipb::PullInstanceRequest {
            name: name.to_string(),
            target_name: new_name.to_string(),
            source_address: source_addr.clone(),
            session: session.clone(),
            delta: false,
        })
        .await
        .map_err(|s| s.message().to_string());
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(e) => {
            end(ctx, &dest_addr, &session, new_name, false).await;
            end(ctx, &source_addr, &session, "", false).await;
            return Err(format!("copy failed: {e}"));
        }
    };
    let created = ctx
        .state
        .submit(Command::CreateInstance {
            name: new_name.to_string(),
            image: inst.image.clone(),
            config: inst.config.clone(),
            start: false,
            location: dest.clone(),
            now_ms: now_ms(),
        })
        .await;
    let keep = created.is_ok();
    end(ctx, &dest_addr, &session, new_name, keep).await;
    end(ctx, &source_addr, &session, "", false).await;
    created.map_err(|e| e.to_string())?;
    Ok(format!(
        "copied {name} to {new_name} on {dest} ({} bytes)",
        r.bytes
    ))
}

/// Evacuates `host`: marks it, then moves, stops or leaves its instances by policy.
pub async fn evacuate(ctx: &Arc<Ctx>, op: &OpHandle, host: &str) -> Result<String, String> {
    let (members, others_online) = {
        let online = super::membership::online_members(ctx).await;
        let members: Vec<String> = ctx.state.read(|s| s.members.keys().cloned().collect());
        let others = members
            .iter()
            .filter(|m| *m != host && online.contains(*m))
            .count();
        (members, others)
    };
    if !members.iter().any(|m| m == host) {
        return Err(format!("unknown host '{host}'"));
    }
    if others_online == 0 {
        return Err(format!(
            "cannot evacuate {host}: it is the last online host"
        ));
    }
    ctx.state
        .submit(Command::SetEvacuated {
            name: host.to_string(),
            evacuated: true,
        })
        .await
        .map_err(|e| e.to_string())?;
    let online = super::membership::online_members(ctx).await;
    let host_online = online.contains(host);
    let instances: Vec<Instance> = ctx.state.read(|s| s.instances_on(host).cloned().collect());
    let (mut moved, mut stopped, mut stayed, mut failed) = (0, 0, 0, Vec::new());
    for inst in instances {
        let name = inst.name.to_string();
        let policy = InstanceConfig::parse(&inst.config)
            .map(|c| c.evacuate)
            .unwrap_or_default();
        let r = match (policy.as_str(), host_online) {
            ("stay", _) => {
                stayed += 1;
                Ok(())
            }
            ("stop", _) => stop_in_place(ctx, &inst, host, host_online)
                .await
                .map(|_| stopped += 1),
            (_, true) => move_instance(ctx, op, &name, "", MoveMode::Cold, true)
                .await
                .map(|_| moved += 1),
            ("auto", false) => relocate_from_image(ctx, &inst).await.map(|_| moved += 1),
            (_, false) => {
                stayed += 1;
                Ok(())
            }
        };
        if let Err(e) = r {
            failed.push(format!("{name}: {e}"));
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "evacuation of {host} incomplete: {}",
            failed.join("; ")
        ));
    }
    Ok(format!(
        "evacuated {host}: {moved} moved, {stopped} stopped, {stayed} stayed"
    ))
}

/// Stops an instance where it is and remembers that the evacuation of `host` did it.
async fn stop_in_place(
    ctx: &Arc<Ctx>,
    inst: &Instance,
    host: &str,
    host_online: bool,
) -> Result<(), String> {
    let name = inst.name.to_string();
    if inst.desired == DesiredState::Stopped {
        return Ok(());
    }
    ctx.state
        .submit(Command::SetOrigin {
            name: name.clone(),
            origin: Some(host.to_string()),
        })
        .await
        .map_err(|e| e.to_string())?;
    let rev = set_desired(ctx, &name, DesiredState::Stopped, !host_online).await?;
    if host_online {
        wait_for(
            ctx,
            &inst.name,
            rev,
            Goal::State(ObservedState::Stopped),
            Duration::from_secs(120),
        )
        .await?;
    }
    Ok(())
}

async fn relocate_from_image(ctx: &Arc<Ctx>, inst: &Instance) -> Result<(), String> {
    let to = choose(ctx, inst, "").await?;
    ctx.state
        .submit(Command::Relocate {
            name: inst.name.to_string(),
            from: inst.location.clone(),
            to,
            expected_generation: inst.placement_generation,
            remember_origin: true,
            reason: format!(
                "host {} evacuated while offline: recreated from its image",
                inst.location
            ),
            now_ms: now_ms(),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Restores `host`: placements allowed again, and the instances evacuated from it return.
pub async fn restore(ctx: &Arc<Ctx>, op: &OpHandle, host: &str) -> Result<String, String> {
    ctx.state
        .submit(Command::SetEvacuated {
            name: host.to_string(),
            evacuated: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    let back: Vec<Instance> = ctx.state.read(|s| {
        s.instances
            .values()
            .filter(|i| i.origin.as_deref() == Some(host))
            .cloned()
            .collect()
    });
    let mut failed = Vec::new();
    for inst in &back {
        let name = inst.name.to_string();
        let r = if inst.location == host {
            // Stopped in place by the evacuation: start it again.
            async {
                ctx.state
                    .submit(Command::SetOrigin {
                        name: name.clone(),
                        origin: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let rev = set_desired(ctx, &name, DesiredState::Running, false).await?;
                wait_for(
                    ctx,
                    &inst.name,
                    rev,
                    Goal::State(ObservedState::Running),
                    Duration::from_secs(120),
                )
                .await
            }
            .await
        } else {
            move_instance(ctx, op, &name, host, MoveMode::Cold, false)
                .await
                .map(|_| ())
        };
        if let Err(e) = r {
            failed.push(format!("{name}: {e}"));
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "restore of {host} incomplete: {}",
            failed.join("; ")
        ));
    }
    Ok(format!("restored {host}: {} instances back", back.len()))
}
