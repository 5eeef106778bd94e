//! The public `Cluster` service: members and their roles and liveness (as the leader sees
//! them: non-leaders forward), the Raft view, tokens, removal, and client enrolment.

use shoal_proto::api as pb;
use shoal_raft::model::{GroupPolicy, PlacementGroup, Strategy};
use shoal_raft::{Command, Identity, Token, TokenKind};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

use super::auth::{act_for, require, Caller};
use super::ctx::Ctx;
use super::membership::sign;
use super::ops::now_ms;
use crate::cluster::pki::Role;
use crate::cluster::roles::{roles, Role as MemberRole};
use crate::cluster::token::{new_secret, sha256_hex, JoinToken};
use crate::cluster::trust::pem_fingerprint;

/// Default token lifetime.
const TOKEN_TTL: Duration = Duration::from_secs(3 * 3600);

/// The cluster service.
pub struct ClusterService {
    pub(crate) ctx: Arc<Ctx>,
}

impl ClusterService {
    /// A client for the leader's public API, if another member leads.
    fn leader_client(
        &self,
    ) -> Option<pb::cluster_client::ClusterClient<tonic::transport::Channel>> {
        let node = self.ctx.state.node();
        let (id, leader) = node.route()?;
        if id == node.id {
            return None;
        }
        let ch = node.peers.channel(&leader.addr).ok()?;
        Some(pb::cluster_client::ClusterClient::new(ch))
    }

    fn local_members(&self, degraded: Option<String>) -> Vec<pb::Member> {
        let node = self.ctx.state.node();
        let leading = node.is_leader();
        self.ctx.state.read(|s| {
            let roles = roles(node, &s.members);
            let mut v: Vec<pb::Member> = s
                .members
                .values()
                .map(|m| {
                    let role = roles.get(&m.name).copied().unwrap_or(MemberRole::Pending);
                    let online = leading && node.is_online(&m.name);
                    let (mut status, message) = match (&degraded, online) {
                        (Some(why), _) if m.name != node.name => ("Unknown".into(), why.clone()),
                        (_, true) => ("Online".to_string(), String::new()),
                        _ if m.name == node.name => ("Online".into(), String::new()),
                        _ => (
                            "Offline".to_string(),
                            "no heartbeat from this member".to_string(),
                        ),
                    };
                    if m.evacuated && status == "Online" {
                        status = "Evacuated".into();
                    }
                    pb::Member {
                        name: m.name.clone(),
                        address: m.address.clone(),
                        roles: role.names(),
                        status,
                        failure_domain: m.failure_domain.clone(),
                        message,
                        architecture: m.architecture.clone(),
                        id: m.id,
                    }
                })
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        })
    }
}

/// This replica's applied index and the sha256 of its state serialised canonically (JSON of
/// ordered maps; the derived load cache is not part of it), so that members can be compared.
fn state_digest(s: &shoal_raft::ClusterState) -> (u64, String) {
    use sha2::Digest;
    let bytes = serde_json::to_vec(s).unwrap_or_default();
    (s.revision, hex::encode(sha2::Sha256::digest(&bytes)))
}

fn forwarded<T>(msg: T, caller: &Caller) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(Duration::from_secs(5));
    act_for(&mut req, caller);
    req
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = require(&req, Role::Viewer, "list members")?;
        let node = self.ctx.state.node();
        if node.is_leader() {
            return Ok(Response::new(pb::ListMembersResponse {
                members: self.local_members(None),
            }));
        }
        if let Some(mut client) = self.leader_client() {
            if let Ok(r) = client
                .list_members(forwarded(pb::ListMembersRequest {}, &caller))
                .await
            {
                return Ok(r);
            }
        }
        let why = "no leader reachable: this member's view may be stale".to_string();
        Ok(Response::new(pb::ListMembersResponse {
            members: self.local_members(Some(why)),
        }))
    }

    async fn show(
        &self,
        req: Request<pb::ShowClusterRequest>,
    ) -> Result<Response<pb::ShowClusterResponse>, Status> {
        let caller = require(&req, Role::Viewer, "show the cluster")?;
        let local = req.get_ref().local;
        let node = self.ctx.state.node();
        if !node.is_leader() && !local {
            if let Some(mut client) = self.leader_client() {
                if let Ok(r) = client
                    .show(forwarded(pb::ShowClusterRequest::default(), &caller))
                    .await
                {
                    return Ok(r);
                }
            }
        }
        let m = node.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let roles = self.ctx.state.read(|s| roles(node, &s.members));
        let members = self.ctx.state.read(|s| {
            s.members
                .values()
                .map(|mem| {
                    let matched = if mem.id == node.id {
                        last
                    } else {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&mem.id).cloned().flatten())
                            .map(|l| l.index)
                            .unwrap_or(0)
                    };
                    let role = roles.get(&mem.name).copied().unwrap_or(MemberRole::Pending);
                    pb::MemberProgress {
                        name: mem.name.clone(),
                        id: mem.id,
                        role: role.names()[0].clone(),
                        matched_index: matched,
                        lag: last.saturating_sub(matched),
                    }
                })
                .collect()
        });
        // The leader of `m.current_term`, from the same metrics snapshot (a second read
        // could see a later term and pair it with the wrong leader).
        let leader = m
            .current_leader
            .and_then(|id| m.membership_config.membership().get_node(&id).cloned())
            .map(|n| n.name)
            .unwrap_or_default();
        let (applied_index, state_digest) = self.ctx.state.read(state_digest);
        Ok(Response::new(pb::ShowClusterResponse {
            leader,
            term: m.current_term,
            commit_index: m.last_applied.map(|c| c.index).unwrap_or(0),
            last_log_index: last,
            members,
            answered_by: node.name.clone(),
            applied_index,
            state_digest,
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        require(&req, Role::Admin, "create tokens")?;
        let r = req.into_inner();
        shoal_raft::InstanceName::new(&r.name).map_err(|e| {
            Status::invalid_argument(e.to_string().replace("instance name", "name"))
        })?;
        let kind = match r.kind.as_str() {
            "" | "member" => TokenKind::Member,
            "client" => {
                let role = if r.role.is_empty() {
                    "viewer"
                } else {
                    r.role.as_str()
                };
                if !matches!(role, "admin" | "operator" | "viewer") {
                    return Err(Status::invalid_argument(format!(
                        "unknown role '{role}': use admin, operator or viewer"
                    )));
                }
                TokenKind::Client { role: role.into() }
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown token kind '{other}': use member or client"
                )))
            }
        };
        let (ca_pem, addresses) = self.ctx.state.read(|s| {
            (
                s.ca.as_ref().map(|c| c.cert_pem.clone()),
                s.members
                    .values()
                    .map(|m| m.address.clone())
                    .collect::<Vec<_>>(),
            )
        });
        let ca_pem = ca_pem.ok_or_else(|| Status::unavailable("the cluster CA is not set yet"))?;
        let fingerprint = pem_fingerprint(&ca_pem)
            .ok_or_else(|| Status::internal("the cluster CA certificate does not parse"))?;
        let ttl = if r.ttl_seconds == 0 {
            TOKEN_TTL
        } else {
            Duration::from_secs(r.ttl_seconds as u64)
        };
        let now = now_ms();
        let expires_at_ms = now + ttl.as_millis() as i64;
        let secret = new_secret().map_err(|e| Status::internal(e.to_string()))?;
        let is_client = matches!(kind, TokenKind::Client { .. });
        let token = JoinToken {
            v: 1,
            name: r.name.clone(),
            secret,
            fingerprint,
            addresses,
            expires_at_ms,
            ca_pem: is_client.then_some(ca_pem),
        };
        self.ctx
            .state
            .submit(Command::CreateToken {
                token: Token {
                    name: r.name.clone(),
                    kind,
                    secret_hash: token.secret_hash(),
                    created_at_ms: now,
                    expires_at_ms,
                },
            })
            .await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: token.encode(),
            expires_at_ms,
        }))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        require(&req, Role::Admin, "remove members")?;
        let r = req.into_inner();
        let (exists, used) = self
            .ctx
            .state
            .read_or_catch_up(
                |s| {
                    (
                        s.members.contains_key(&r.name),
                        s.instances_on(&r.name)
                            .map(|i| i.name.to_string())
                            .collect::<Vec<_>>(),
                    )
                },
                |(e, _)| *e,
            )
            .await;
        if !exists {
            return Err(Status::not_found(format!("member '{}' not found", r.name)));
        }
        if !used.is_empty() && !r.force {
            return Err(Status::failed_precondition(format!(
                "member '{}' holds instances ({}): move or delete them, or remove with --force",
                r.name,
                used.join(", ")
            )));
        }
        let node = self.ctx.state.node();
        if !r.force && r.name != node.name && !node.is_online(&r.name) && node.is_leader() {
            return Err(Status::failed_precondition(format!(
                "member '{}' is offline: remove it with --force",
                r.name
            )));
        }
        self.ctx
            .state
            .submit(Command::RemoveMember { name: r.name })
            .await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn evacuate(
        &self,
        req: Request<pb::EvacuateRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Admin, "evacuate hosts")?;
        let host = req.into_inner().name;
        let known = self
            .ctx
            .state
            .read_or_catch_up(|s| s.members.contains_key(&host), |k| *k)
            .await;
        if !known {
            return Err(Status::not_found(format!("member '{host}' not found")));
        }
        let op = self.ctx.ops.start(format!("evacuate {host}"), "");
        let snap = op.snapshot();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match super::orchestrate::evacuate(&ctx, &op, &host).await {
                Ok(m) => op.succeed(&m),
                Err(e) => op.fail(&e),
            }
        });
        Ok(Response::new(snap))
    }

    async fn restore(
        &self,
        req: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Admin, "restore hosts")?;
        let host = req.into_inner().name;
        let known = self
            .ctx
            .state
            .read_or_catch_up(|s| s.members.contains_key(&host), |k| *k)
            .await;
        if !known {
            return Err(Status::not_found(format!("member '{host}' not found")));
        }
        let op = self.ctx.ops.start(format!("restore {host}"), "");
        let snap = op.snapshot();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match super::orchestrate::restore(&ctx, &op, &host).await {
                Ok(m) => op.succeed(&m),
                Err(e) => op.fail(&e),
            }
        });
        Ok(Response::new(snap))
    }

    async fn create_placement_group(
        &self,
        req: Request<pb::PlacementGroup>,
    ) -> Result<Response<pb::PlacementGroup>, Status> {
        require(&req, Role::Operator, "create placement groups")?;
        let r = req.into_inner();
        let policy: GroupPolicy = if r.policy.is_empty() {
            GroupPolicy::Spread
        } else {
            r.policy
                .parse()
                .map_err(|e: shoal_raft::scheduler::UnknownWord| {
                    Status::invalid_argument(e.to_string())
                })?
        };
        let group = PlacementGroup {
            name: r.name.clone(),
            policy,
            strict: r.strict,
        };
        self.ctx
            .state
            .submit(Command::CreatePlacementGroup { group })
            .await?;
        Ok(Response::new(pb::PlacementGroup {
            name: r.name,
            policy: policy.to_string(),
            strict: r.strict,
        }))
    }

    async fn delete_placement_group(
        &self,
        req: Request<pb::DeletePlacementGroupRequest>,
    ) -> Result<Response<pb::DeletePlacementGroupResponse>, Status> {
        require(&req, Role::Operator, "delete placement groups")?;
        let name = req.into_inner().name;
        self.ctx
            .state
            .submit(Command::DeletePlacementGroup { name })
            .await?;
        Ok(Response::new(pb::DeletePlacementGroupResponse {}))
    }

    async fn list_placement_groups(
        &self,
        req: Request<pb::ListPlacementGroupsRequest>,
    ) -> Result<Response<pb::ListPlacementGroupsResponse>, Status> {
        require(&req, Role::Viewer, "list placement groups")?;
        let groups = self.ctx.state.read(|s| {
            s.placement_groups
                .values()
                .map(|g| pb::PlacementGroup {
                    name: g.name.clone(),
                    policy: g.policy.to_string(),
                    strict: g.strict,
                })
                .collect()
        });
        Ok(Response::new(pb::ListPlacementGroupsResponse { groups }))
    }

    async fn set_scheduler_strategy(
        &self,
        req: Request<pb::SetSchedulerStrategyRequest>,
    ) -> Result<Response<pb::SetSchedulerStrategyResponse>, Status> {
        require(&req, Role::Admin, "change the scheduler")?;
        let strategy: Strategy = req.into_inner().strategy.parse().map_err(
            |e: shoal_raft::scheduler::UnknownWord| Status::invalid_argument(e.to_string()),
        )?;
        let mut config = self.ctx.state.read(|s| s.scheduler.clone());
        config.strategy = strategy;
        self.ctx
            .state
            .submit(Command::SetSchedulerConfig { config })
            .await?;
        Ok(Response::new(pb::SetSchedulerStrategyResponse {}))
    }

    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = req.into_inner();
        let hash = sha256_hex(r.secret.as_bytes());
        let role = self
            .ctx
            .state
            .read(|s| {
                s.tokens
                    .values()
                    .find(|t| t.secret_hash == hash)
                    .map(|t| t.kind.clone())
            })
            .and_then(|k| match k {
                TokenKind::Client { role } => Role::parse(&role),
                TokenKind::Member => None,
            })
            .ok_or_else(|| {
                tracing::warn!(client = %r.name, "enrolment with an unknown token refused");
                Status::permission_denied(
                    "token refused: unknown, used, forged or not a client token",
                )
            })?;
        let (cert_pem, ca_pem) = sign(&self.ctx, &r.csr_pem, &r.name, role, &[])?;
        let fingerprint = pem_fingerprint(&cert_pem).unwrap_or_default();
        self.ctx
            .state
            .submit(Command::Enroll {
                secret_hash: hash,
                now_ms: now_ms(),
                identity: Identity {
                    name: r.name.clone(),
                    role: role.as_str().into(),
                    fingerprint,
                    created_at_ms: now_ms(),
                    revoked_at_ms: None,
                    revoked: Default::default(),
                },
            })
            .await
            .map_err(|e| {
                tracing::warn!(client = %r.name, error = %e, "enrolment refused");
                Status::from(e)
            })?;
        let addresses = self
            .ctx
            .state
            .read(|s| s.members.values().map(|m| m.address.clone()).collect());
        tracing::info!(client = %r.name, role = role.as_str(), "client enrolled");
        Ok(Response::new(pb::EnrollResponse {
            cert_pem,
            ca_pem,
            addresses,
            role: role.as_str().into(),
        }))
    }

    async fn list_trust(
        &self,
        req: Request<pb::ListTrustRequest>,
    ) -> Result<Response<pb::ListTrustResponse>, Status> {
        let caller = require(&req, Role::Admin, "list trusted clients")?;
        let node = self.ctx.state.node();
        // An agent's view holds revocations only: the members know the whole list.
        if node.is_agent() {
            let mut client = self
                .leader_client()
                .ok_or_else(|| Status::unavailable("no leader reachable to list the clients"))?;
            return client
                .list_trust(forwarded(pb::ListTrustRequest {}, &caller))
                .await;
        }
        Ok(self.ctx.state.current(trusted_clients).await)
    }

    async fn revoke_trust(
        &self,
        req: Request<pb::RevokeTrustRequest>,
    ) -> Result<Response<pb::RevokeTrustResponse>, Status> {
        let caller = require(&req, Role::Admin, "revoke clients")?;
        let name = req.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name the client to revoke (see `shoal cluster trust list`)",
            ));
        }
        let fingerprint = self.ctx.state.read(|s| {
            s.identities
                .get(&name)
                .filter(|i| i.trusted())
                .map(|i| i.fingerprint.clone())
                .unwrap_or_default()
        });
        self.ctx
            .state
            .submit(Command::RevokeIdentity {
                name: name.clone(),
                now_ms: now_ms(),
            })
            .await?;
        tracing::info!(client = %name, %fingerprint, by = %caller.name, "client revoked");
        Ok(Response::new(pb::RevokeTrustResponse { fingerprint }))
    }
}

/// Every client identity (trusted or revoked) and every pending client token, by name.
fn trusted_clients(s: &shoal_raft::ClusterState) -> pb::ListTrustResponse {
    let mut clients: Vec<pb::TrustedClient> = s
        .identities
        .values()
        .map(|i| pb::TrustedClient {
            name: i.name.clone(),
            role: i.role.clone(),
            status: if i.trusted() { "trusted" } else { "revoked" }.into(),
            fingerprint: i.fingerprint.clone(),
            created_at_ms: i.created_at_ms,
            revoked_at_ms: i.revoked_at_ms.unwrap_or(0),
            expires_at_ms: 0,
            revoked_certificates: i.revoked.len() as u32,
        })
        .collect();
    for t in s.tokens.values() {
        if let TokenKind::Client { role } = &t.kind {
            clients.retain(|c| c.name != t.name);
            clients.push(pb::TrustedClient {
                name: t.name.clone(),
                role: role.clone(),
                status: "pending".into(),
                created_at_ms: t.created_at_ms,
                expires_at_ms: t.expires_at_ms,
                revoked_certificates: s
                    .identities
                    .get(&t.name)
                    .map_or(0, |i| i.revoked.len() as u32),
                ..Default::default()
            });
        }
    }
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    pb::ListTrustResponse { clients }
}
