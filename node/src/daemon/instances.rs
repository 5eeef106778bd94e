//! The `Instances` service (but exec, which lives in `exec.rs`): validates at the edge,
//! commits the change, and returns an operation that completes when the host converges.

use shoal_proto::api as pb;
use shoal_raft::{Command, CommandResult, DesiredState, InstanceConfig, InstanceName};
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::auth::require;
use super::convert;
use super::ctx::Ctx;
use super::error::ApiError;
use super::ops::{now_ms, track_instance, Goal};
use super::orchestrate::MoveMode;
use crate::cluster::pki::Role;
use shoal_raft::scheduler::{place_with, NoFit, PlacementRequest, Target};
use shoal_raft::ObservedState;

/// The instances service.
pub struct InstancesService {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) exec: super::exec::ExecHandler,
}

fn name_of(name: &str) -> Result<InstanceName, Status> {
    InstanceName::new(name).map_err(|e| ApiError::from(e).into())
}

/// What `create` checks of a request before it reads the cluster state: the name, every
/// config key and value, and that an image is named. Pure (the fuzz targets call it too).
pub fn check_create(
    r: &pb::CreateInstanceRequest,
) -> Result<(InstanceName, BTreeMap<String, String>), Status> {
    let key = name_of(&r.name)?;
    let config: BTreeMap<String, String> = r.config.clone().into_iter().collect();
    InstanceConfig::parse(&config)
        .map_err(|e| Status::from(ApiError::from(shoal_raft::ModelError::from(e))))?;
    if r.image.is_empty() {
        return Err(Status::invalid_argument(
            "an image is required (alias or fingerprint)",
        ));
    }
    Ok((key, config))
}

/// What `move` checks of a request before it reads the cluster state. Pure.
pub fn check_move(r: &pb::MoveInstanceRequest) -> Result<(InstanceName, MoveMode), Status> {
    let key = name_of(&r.name)?;
    let mode = MoveMode::parse(&r.mode).map_err(Status::invalid_argument)?;
    if mode == MoveMode::Live {
        return Err(Status::failed_precondition(
            "live migration needs CRIU, which cannot run on this host (Debian's criu fails on this kernel): use --mode cold or --mode precopy",
        ));
    }
    Ok((key, mode))
}

/// What `copy` checks of a request before it reads the cluster state. Pure.
pub fn check_copy(r: &pb::CopyInstanceRequest) -> Result<(InstanceName, InstanceName), Status> {
    Ok((name_of(&r.name)?, name_of(&r.new_name)?))
}

/// The check of an instance name every other call makes. Pure.
pub fn check_name(name: &str) -> Result<InstanceName, Status> {
    name_of(name)
}

impl InstancesService {
    /// Chooses the host for a new instance: the target host, or the scheduler's choice
    /// among the target group or all members.
    async fn place(
        &self,
        name: &str,
        config: &BTreeMap<String, String>,
        image: &str,
        target: &str,
    ) -> Result<String, Status> {
        let target = Target::parse(target);
        if let Target::Host(h) = &target {
            let members = self
                .ctx
                .state
                .read(|s| s.members.keys().cloned().collect::<Vec<_>>());
            if !members.contains(h) {
                return Err(Status::not_found(format!(
                    "unknown target host '{h}' (members: {})",
                    members.join(", ")
                )));
            }
        }
        let online = super::membership::online_members(&self.ctx).await;
        let arch = self
            .ctx
            .state
            .read(|s| s.resolve_image(image).map(|i| i.architecture.clone()))
            .unwrap_or_default();
        let req = PlacementRequest::new(name, config.clone(), arch, target);
        // Plans made here but not yet applied count too, so concurrent launches spread.
        let mut in_flight = self.ctx.placing.lock().unwrap_or_else(|p| p.into_inner());
        let plan = self
            .ctx
            .state
            .read(|s| place_with(s, &|m: &str| online.contains(m), &req, &in_flight))
            .map_err(|e| match e {
                NoFit::UnknownHost { .. }
                | NoFit::EmptyGroup { .. }
                | NoFit::UnknownPlacementGroup { .. } => Status::not_found(e.to_string()),
                NoFit::Config(_) => Status::invalid_argument(e.to_string()),
                NoFit::NoMembers { .. } => Status::failed_precondition(e.to_string()),
                _ => Status::resource_exhausted(e.to_string()),
            })?;
        in_flight.reserve(name, &plan);
        Ok(plan.host)
    }

    async fn change(
        &self,
        name: &str,
        desired: DesiredState,
        force: bool,
        timeout_s: u32,
        restart: bool,
        what: &str,
    ) -> Result<Response<pb::Operation>, Status> {
        let key = name_of(name)?;
        let res = self
            .ctx
            .state
            .submit(Command::SetDesired {
                name: name.to_string(),
                desired,
                force,
                timeout_s,
                restart,
                expected_version: None,
            })
            .await?;
        let CommandResult::Instance(inst) = res else {
            return Err(ApiError::Internal("set desired returned no instance".into()).into());
        };
        let goal = match desired {
            DesiredState::Running => Goal::State(ObservedState::Running),
            DesiredState::Stopped => Goal::State(ObservedState::Stopped),
            DesiredState::Frozen => Goal::State(ObservedState::Frozen),
            DesiredState::Deleted => Goal::Gone,
        };
        let op = self.ctx.ops.start(format!("{what} instance {name}"), name);
        let snap = op.snapshot();
        track_instance(self.ctx.state.clone(), op, key, inst.desired_revision, goal);
        Ok(Response::new(snap))
    }
}

#[tonic::async_trait]
impl pb::instances_server::Instances for InstancesService {
    async fn create(
        &self,
        req: Request<pb::CreateInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "create instances")?;
        let r = req.into_inner();
        let (key, config) = check_create(&r)?;
        let known = self
            .ctx
            .state
            .read_or_catch_up(|s| s.resolve_image(&r.image).is_some(), |k| *k)
            .await;
        if !known {
            return Err(Status::not_found(format!(
                "image '{}' not found: import it with `shoal image import FILE --alias {}` or see `shoal image list`",
                r.image, r.image
            )));
        }
        let location = self.place(&r.name, &config, &r.image, &r.target).await?;
        let res = self
            .ctx
            .state
            .submit(Command::CreateInstance {
                name: r.name.clone(),
                image: r.image.clone(),
                config,
                start: r.start,
                location,
                now_ms: now_ms(),
            })
            .await;
        // Applied (or refused): the state now counts it, or it never will.
        self.ctx
            .placing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(&r.name);
        let res = res?;
        let CommandResult::Instance(inst) = res else {
            return Err(ApiError::Internal("create returned no instance".into()).into());
        };
        let (goal, verb) = if r.start {
            (Goal::State(ObservedState::Running), "launch")
        } else {
            (Goal::State(ObservedState::Stopped), "create")
        };
        let op = self
            .ctx
            .ops
            .start(format!("{verb} instance {}", r.name), &r.name);
        let snap = op.snapshot();
        track_instance(self.ctx.state.clone(), op, key, inst.desired_revision, goal);
        Ok(Response::new(snap))
    }

    async fn get(
        &self,
        req: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        require(&req, Role::Viewer, "read instances")?;
        let key = name_of(&req.get_ref().name)?;
        let resp = self
            .ctx
            .state
            .current(|s| s.instances.get(&key).map(convert::instance))
            .await;
        let (meta, found, ext) = resp.into_parts();
        let inst = found.ok_or_else(|| Status::not_found(format!("instance '{key}' not found")))?;
        Ok(Response::from_parts(meta, inst, ext))
    }

    async fn list(
        &self,
        req: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        require(&req, Role::Viewer, "list instances")?;
        Ok(self
            .ctx
            .state
            .current(|s| pb::ListInstancesResponse {
                instances: s.instances.values().map(convert::instance).collect(),
            })
            .await)
    }

    async fn start(
        &self,
        req: Request<pb::StartInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "start instances")?;
        let r = req.into_inner();
        self.change(&r.name, DesiredState::Running, false, 0, false, "start")
            .await
    }

    async fn stop(
        &self,
        req: Request<pb::StopInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "stop instances")?;
        let r = req.into_inner();
        self.change(
            &r.name,
            DesiredState::Stopped,
            r.force,
            r.timeout_seconds,
            false,
            "stop",
        )
        .await
    }

    async fn restart(
        &self,
        req: Request<pb::RestartInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "restart instances")?;
        let r = req.into_inner();
        self.change(
            &r.name,
            DesiredState::Running,
            r.force,
            r.timeout_seconds,
            true,
            "restart",
        )
        .await
    }

    async fn freeze(
        &self,
        req: Request<pb::FreezeInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "freeze instances")?;
        let r = req.into_inner();
        self.change(&r.name, DesiredState::Frozen, false, 0, false, "freeze")
            .await
    }

    async fn unfreeze(
        &self,
        req: Request<pb::UnfreezeInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "unfreeze instances")?;
        let r = req.into_inner();
        self.change(&r.name, DesiredState::Running, false, 0, false, "unfreeze")
            .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "delete instances")?;
        let r = req.into_inner();
        self.change(&r.name, DesiredState::Deleted, r.force, 0, false, "delete")
            .await
    }

    async fn r#move(
        &self,
        req: Request<pb::MoveInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "move instances")?;
        let r = req.into_inner();
        let (key, mode) = check_move(&r)?;
        let (location, members) = self
            .ctx
            .state
            .read_or_catch_up(
                |s| {
                    (
                        s.instances.get(&key).map(|i| i.location.clone()),
                        s.members.keys().cloned().collect::<Vec<_>>(),
                    )
                },
                |(l, m)| l.is_some() && (r.target.is_empty() || m.contains(&r.target)),
            )
            .await;
        let location =
            location.ok_or_else(|| Status::not_found(format!("instance '{key}' not found")))?;
        if !r.target.is_empty() && !members.contains(&r.target) {
            return Err(Status::not_found(format!(
                "unknown target host '{}' (members: {})",
                r.target,
                members.join(", ")
            )));
        }
        if r.target == location {
            return Err(Status::failed_precondition(format!(
                "instance {key} is already on {location}"
            )));
        }
        let op = self
            .ctx
            .ops
            .start(format!("move instance {key}"), key.as_str());
        let snap = op.snapshot();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match super::orchestrate::move_instance(&ctx, &op, &r.name, &r.target, mode, false)
                .await
            {
                Ok(m) => op.succeed(&m),
                Err(e) => op.fail(&e),
            }
        });
        Ok(Response::new(snap))
    }

    async fn copy(
        &self,
        req: Request<pb::CopyInstanceRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Operator, "copy instances")?;
        let r = req.into_inner();
        let (key, new) = check_copy(&r)?;
        let (exists, taken) = self
            .ctx
            .state
            .read_or_catch_up(
                |s| {
                    (
                        s.instances.contains_key(&key),
                        s.instances.contains_key(&new),
                    )
                },
                |(e, _)| *e,
            )
            .await;
        if !exists {
            return Err(Status::not_found(format!("instance '{key}' not found")));
        }
        if taken {
            return Err(Status::already_exists(format!(
                "instance '{new}' already exists"
            )));
        }
        let op = self
            .ctx
            .ops
            .start(format!("copy instance {key} to {new}"), new.as_str());
        let snap = op.snapshot();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match super::orchestrate::copy_instance(&ctx, &op, &r.name, &r.new_name, &r.target)
                .await
            {
                Ok(m) => op.succeed(&m),
                Err(e) => op.fail(&e),
            }
        });
        Ok(Response::new(snap))
    }

    type ExecStream = super::exec::ExecOutputStream;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = require(&req, Role::Operator, "exec in instances")?;
        self.exec
            .exec(&caller, req.into_inner())
            .await
            .map(Response::new)
    }
}
