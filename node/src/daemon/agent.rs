//! The host's agent: converges the containers on this host to what the cluster state
//! wants, and reports what it observes.
//!
//! ```text
//!   state revision changes ──► plan: instances here whose observed revision lags
//!                               │        (one task per instance, never two at once)
//!                               ▼
//!                    converge (blocking runtime calls)
//!                               │
//!                               ▼
//!                ReportStatus / ForgetInstance (committed)
//! ```
//! It acts only on a new intent (observed revision below the desired one), so a container
//! whose init exits by itself is reported Stopped, not restarted in a loop. A periodic
//! resync reports such changes. At daemon start, instances that should run but do not (the
//! host rebooted) are started, unless `boot.autostart=false`.

use shoal_raft::{
    Command, DesiredState, Instance, InstanceConfig, InstanceName, InstanceStatus, ObservedState,
    Usage,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ctx::Ctx;
use super::ops::now_ms;
use crate::cgroups::Limits;
use crate::image::parse_signal;
use crate::runtime::{ContainerConfig, ContainerState, ContainerStatus, Runtime, RuntimeError};

/// How often observed states are compared with what was reported.
const RESYNC: Duration = Duration::from_secs(3);
/// Default clean-stop timeout.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn needs_action(i: &Instance) -> bool {
    i.status.observed_revision < i.desired_revision || i.desired == DesiredState::Deleted
}

fn observed(st: &ContainerState) -> ObservedState {
    match st.status {
        ContainerStatus::Running => ObservedState::Running,
        ContainerStatus::Frozen => ObservedState::Frozen,
        ContainerStatus::Stopped => ObservedState::Stopped,
    }
}

fn status_from(st: &ContainerState, revision: u64) -> InstanceStatus {
    InstanceStatus {
        state: observed(st),
        observed_revision: revision,
        message: String::new(),
        init_pid: st.init_pid.map(i64::from),
        usage: st.usage.as_ref().map(|u| Usage {
            memory_bytes: u.memory_bytes,
            cpu_nanos: u.cpu_nanos,
            processes: u.pids,
        }),
        updated_at_ms: now_ms(),
    }
}

/// Runs the agent loop until the process ends.
pub async fn run(ctx: Arc<Ctx>) {
    let mut rx = ctx.state.subscribe();
    let inflight: Arc<Mutex<HashSet<InstanceName>>> = Default::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tick = tokio::time::interval(RESYNC);
    // In a cluster, containers that fence cannot start before this host holds a lease:
    // wait for the first renewal (a few heartbeats at most) before acting.
    let node = ctx.state.node().clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while ctx.state.read(|s| s.members.len() > 1)
        && !node.lease_held()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    boot(&ctx).await;
    loop {
        let work: Vec<Instance> = ctx.state.read(|s| {
            s.instances_on(&ctx.node)
                .filter(|i| needs_action(i))
                .cloned()
                .collect()
        });
        for inst in work {
            if !inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(inst.name.clone())
            {
                continue;
            }
            let ctx = ctx.clone();
            let inflight = inflight.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let name = inst.name.clone();
                converge(&ctx, inst).await;
                inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                let _ = done.send(());
            });
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = done_rx.recv() => {},
            _ = tick.tick() => resync(&ctx, &inflight).await,
        }
    }
}

/// After a daemon start: containers that should run but do not are started (host reboot),
/// and whatever runs is reported as it is (adoption).
async fn boot(ctx: &Arc<Ctx>) {
    let instances: Vec<Instance> = ctx
        .state
        .read(|s| s.instances_on(&ctx.node).cloned().collect());
    for inst in instances {
        if needs_action(&inst) || inst.desired != DesiredState::Running {
            continue;
        }
        let autostart = InstanceConfig::parse(&inst.config)
            .ok()
            .and_then(|c| c.autostart)
            .unwrap_or(true);
        let rt = ctx.runtime.clone();
        let name = inst.name.to_string();
        let st = tokio::task::spawn_blocking(move || rt.state(&name)).await;
        let stopped = matches!(&st, Ok(Ok(s)) if s.status == ContainerStatus::Stopped)
            || matches!(&st, Ok(Err(_)));
        if stopped && autostart {
            tracing::info!(instance = %inst.name, "starting instance after host start");
            converge(ctx, inst).await;
        }
    }
}

/// Reports observed changes that happened without a new intent (init exited, adoption).
async fn resync(ctx: &Arc<Ctx>, inflight: &Arc<Mutex<HashSet<InstanceName>>>) {
    let instances: Vec<Instance> = ctx.state.read(|s| {
        s.instances_on(&ctx.node)
            .filter(|i| !needs_action(i))
            .cloned()
            .collect()
    });
    for inst in instances {
        if inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&inst.name)
        {
            continue;
        }
        if inst.status.state == ObservedState::Error {
            continue;
        }
        let rt = ctx.runtime.clone();
        let name = inst.name.to_string();
        let Ok(Ok(st)) = tokio::task::spawn_blocking(move || rt.state(&name)).await else {
            continue;
        };
        let seen = observed(&st);
        let pid = st.init_pid.map(i64::from);
        if seen != inst.status.state
            || (seen == ObservedState::Running && pid != inst.status.init_pid)
        {
            tracing::info!(instance = %inst.name, was = ?inst.status.state, now = ?seen, "observed a change");
            let status = status_from(&st, inst.status.observed_revision);
            send_report(ctx, &inst, status, Some(inst.version)).await;
        }
    }
}

/// The status of a failed attempt at `revision`.
fn error_status(revision: u64, message: String) -> InstanceStatus {
    InstanceStatus {
        state: ObservedState::Error,
        observed_revision: revision,
        message,
        init_pid: None,
        usage: None,
        updated_at_ms: now_ms(),
    }
}

async fn report(ctx: &Arc<Ctx>, inst: &Instance, status: InstanceStatus) {
    send_report(ctx, inst, status, None).await
}

/// Reports `status`; with `if_version`, only if nothing changed the record meanwhile.
async fn send_report(
    ctx: &Arc<Ctx>,
    inst: &Instance,
    status: InstanceStatus,
    if_version: Option<u64>,
) {
    let cmd = Command::ReportStatus {
        name: inst.name.to_string(),
        node: ctx.node.clone(),
        placement_generation: inst.placement_generation,
        status,
        if_version,
    };
    if let Err(e) = ctx.state.submit(cmd).await {
        tracing::warn!(instance = %inst.name, error = %e, "status report refused");
    }
}

pub(crate) async fn converge(ctx: &Arc<Ctx>, inst: Instance) {
    let revision = inst.desired_revision;
    if inst.desired != DesiredState::Deleted {
        if let Err(message) = super::image_fetch::ensure_image(ctx, &inst.image_fingerprint).await {
            let exists = {
                let rt = ctx.runtime.clone();
                let n = inst.name.to_string();
                tokio::task::spawn_blocking(move || exists(&rt, &n).unwrap_or(false))
                    .await
                    .unwrap_or(false)
            };
            if !exists {
                report(ctx, &inst, error_status(revision, message)).await;
                return;
            }
        }
    }
    let rt = ctx.runtime.clone();
    let images = ctx.images.clone();
    let i2 = inst.clone();
    let outcome = tokio::task::spawn_blocking(move || converge_blocking(&rt, &images, &i2))
        .await
        .unwrap_or_else(|e| Err(format!("agent task failed: {e}")));
    match (inst.desired, outcome) {
        (DesiredState::Deleted, Ok(_)) => {
            let cmd = Command::ForgetInstance {
                name: inst.name.to_string(),
                node: ctx.node.clone(),
                placement_generation: inst.placement_generation,
            };
            if let Err(e) = ctx.state.submit(cmd).await {
                tracing::warn!(instance = %inst.name, error = %e, "forget refused");
            }
        }
        (_, Ok(st)) => report(ctx, &inst, status_from(&st, revision)).await,
        (_, Err(message)) => {
            tracing::warn!(instance = %inst.name, %message, "converge failed");
            report(ctx, &inst, error_status(revision, message)).await;
        }
    }
}

pub(crate) fn container_config(
    images: &crate::image::ImageStore,
    inst: &Instance,
) -> Result<ContainerConfig, String> {
    let cfg = InstanceConfig::parse(&inst.config).map_err(|e| e.to_string())?;
    let img = images
        .get(&inst.image_fingerprint)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "image {} is not on this host",
                &inst.image_fingerprint[..12.min(inst.image_fingerprint.len())]
            )
        })?;
    let stop_signal = parse_signal(&img.metadata.stop_signal).map_err(|e| e.to_string())?;
    Ok(ContainerConfig {
        name: inst.name.to_string(),
        image_rootfs: images.rootfs(&inst.image_fingerprint),
        privileged: cfg.privileged,
        limits: Limits {
            memory_bytes: cfg.memory_bytes,
            cpu_millicores: cfg.cpu_millicores,
            pids_max: cfg.processes,
        },
        stop_signal,
        env: cfg.environment,
        fence: super::fencing::fenceable(&inst.config),
    })
}

fn exists(rt: &Runtime, name: &str) -> Result<bool, RuntimeError> {
    Ok(rt.list()?.iter().any(|n| n == name))
}

fn converge_blocking(
    rt: &Runtime,
    images: &crate::image::ImageStore,
    inst: &Instance,
) -> Result<ContainerState, String> {
    let name = inst.name.as_str();
    let e = |err: RuntimeError| err.to_string();
    let timeout = if inst.stop_timeout_s == 0 {
        STOP_TIMEOUT
    } else {
        Duration::from_secs(inst.stop_timeout_s as u64)
    };
    let present = exists(rt, name).map_err(e)?;
    if inst.desired == DesiredState::Deleted {
        if present {
            let st = rt.state(name).map_err(e)?;
            if st.status != ContainerStatus::Stopped {
                rt.stop(name, timeout, true).map_err(e)?;
            }
            rt.delete(name).map_err(e)?;
        }
        return Ok(ContainerState::stopped());
    }
    if !present {
        rt.create(&container_config(images, inst)?).map_err(e)?;
        // Fault suite: the daemon dies between creating a container and starting it.
        fail::fail_point!("agent-after-create", |_| std::process::abort());
    }
    let st = rt.state(name).map_err(e)?;
    match inst.desired {
        DesiredState::Running => match st.status {
            ContainerStatus::Running if inst.restart_revision > inst.status.observed_revision => {
                rt.stop(name, timeout, inst.stop_force).map_err(e)?;
                rt.start(name).map_err(e)?;
            }
            ContainerStatus::Running => {}
            ContainerStatus::Frozen => rt.unfreeze(name).map_err(e)?,
            ContainerStatus::Stopped => rt.start(name).map_err(e)?,
        },
        DesiredState::Stopped => {
            if st.status != ContainerStatus::Stopped {
                rt.stop(name, timeout, inst.stop_force).map_err(e)?;
            }
        }
        DesiredState::Frozen => match st.status {
            ContainerStatus::Running => rt.freeze(name).map_err(e)?,
            ContainerStatus::Frozen => {}
            ContainerStatus::Stopped => {
                return Err(format!(
                    "instance {name} is stopped: start it before freezing"
                ))
            }
        },
        DesiredState::Deleted => unreachable!("handled above"),
    }
    rt.state(name).map_err(e)
}
