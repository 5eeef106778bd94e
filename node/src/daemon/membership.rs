//! The internal `Membership` service: joins (token-authenticated, before the host has a
//! certificate), writes forwarded by other members to the leader, and heartbeats.

use shoal_proto::internal as ipb;
use shoal_raft::consensus::CommandResponse;
use shoal_raft::{Command, CommandResult, Member};
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::auth::require_member;
use super::ctx::Ctx;
use super::error::ApiError;
use super::ops::now_ms;
use crate::cluster::pki::{CertificateAuthority, Role};
use crate::cluster::token::sha256_hex;

/// The membership service.
pub struct MembershipService {
    pub(crate) ctx: Arc<Ctx>,
}

/// Signs a certificate for `name` with the replicated cluster CA.
pub(crate) fn sign(
    ctx: &Ctx,
    csr_pem: &str,
    name: &str,
    role: Role,
    addresses: &[String],
) -> Result<(String, String), Status> {
    let ca = ctx
        .state
        .read(|s| s.ca.clone())
        .ok_or_else(|| Status::unavailable("the cluster CA is not replicated here yet; retry"))?;
    let authority = CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem)
        .map_err(|e| Status::internal(format!("loading the cluster CA: {e}")))?;
    let cert = authority
        .sign_csr(csr_pem, name, role, addresses)
        .map_err(|e| Status::invalid_argument(format!("bad certificate signing request: {e}")))?;
    Ok((cert, ca.cert_pem))
}

#[tonic::async_trait]
impl ipb::membership_server::Membership for MembershipService {
    async fn join(
        &self,
        req: Request<ipb::JoinRequest>,
    ) -> Result<Response<ipb::JoinReply>, Status> {
        let r = req.into_inner();
        shoal_raft::InstanceName::new(&r.name).map_err(|e| {
            Status::invalid_argument(e.to_string().replace("instance name", "member name"))
        })?;
        if r.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "member address '{}' is not host:port",
                r.address
            )));
        }
        let host = r
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        // Sign first, so a bad CSR consumes nothing.
        let (cert_pem, ca_pem) = sign(&self.ctx, &r.csr_pem, &r.name, Role::Member, &[host])?;
        let member = Member {
            id: 0,
            name: r.name.clone(),
            address: r.address.clone(),
            architecture: r.architecture.clone(),
            failure_domain: if r.failure_domain.is_empty() {
                "default".into()
            } else {
                r.failure_domain.clone()
            },
            joined_at_ms: now_ms(),
            ..Default::default()
        };
        let res = self
            .ctx
            .state
            .submit(Command::Join {
                secret_hash: sha256_hex(r.secret.as_bytes()),
                now_ms: now_ms(),
                member,
            })
            .await
            .map_err(|e| {
                tracing::warn!(member = %r.name, error = %e, "join refused");
                Status::from(e)
            })?;
        let CommandResult::Member(node_id) = res else {
            return Err(ApiError::Internal("join returned no node id".into()).into());
        };
        tracing::info!(member = %r.name, node_id, address = %r.address, "member joined");
        let addresses = self
            .ctx
            .state
            .read(|s| s.members.values().map(|m| m.address.clone()).collect());
        Ok(Response::new(ipb::JoinReply {
            node_id,
            cert_pem,
            ca_pem,
            addresses,
        }))
    }

    async fn submit(
        &self,
        req: Request<ipb::SubmitRequest>,
    ) -> Result<Response<ipb::SubmitReply>, Status> {
        require_member(&req)?;
        let node = self.ctx.state.node();
        // Not the leader: relay it (agents send their writes through the member they
        // follow); a member with a replica always knows where the leader is.
        if !node.is_leader() && node.leader().is_none() {
            return Err(Status::failed_precondition("not the leader"));
        }
        let cmd: Command = serde_json::from_slice(&req.get_ref().command_json)
            .map_err(|e| Status::invalid_argument(format!("bad command: {e}")))?;
        let resp: CommandResponse = node.submit(cmd).await.map_err(ApiError::from)?;
        Ok(Response::new(ipb::SubmitReply {
            response_json: serde_json::to_vec(&resp).expect("responses serialize"),
        }))
    }

    type FetchImageStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<ipb::FetchImageChunk, Status>> + Send>,
    >;

    async fn fetch_image(
        &self,
        req: Request<ipb::FetchImageRequest>,
    ) -> Result<Response<Self::FetchImageStream>, Status> {
        require_member(&req)?;
        let fp = req.into_inner().fingerprint;
        let known = self
            .ctx
            .images
            .get(&fp)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if known.is_none() {
            return Err(Status::not_found(format!("image {fp} is not on this host")));
        }
        let path = self.ctx.images.tarball(&fp);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::internal(format!("opening {}: {e}", path.display())))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let stream = super::operations::async_stream(move |tx| async move {
            use tokio::io::AsyncReadExt;
            let mut file = file;
            let mut first = true;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        let chunk = ipb::FetchImageChunk {
                            data: buf,
                            size: if first { size } else { 0 },
                        };
                        first = false;
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading the image: {e}"))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    type ExportInstanceStream = super::operations::BoxStream<ipb::ExportChunk>;

    async fn export_instance(
        &self,
        req: Request<ipb::ExportInstanceRequest>,
    ) -> Result<Response<Self::ExportInstanceStream>, Status> {
        require_member(&req)?;
        super::mover::export_instance(self.ctx.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn pull_instance(
        &self,
        req: Request<ipb::PullInstanceRequest>,
    ) -> Result<Response<ipb::PullInstanceReply>, Status> {
        require_member(&req)?;
        super::mover::pull_instance(self.ctx.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn end_move(
        &self,
        req: Request<ipb::EndMoveRequest>,
    ) -> Result<Response<ipb::EndMoveReply>, Status> {
        require_member(&req)?;
        super::mover::end_move(self.ctx.clone(), req.into_inner()).await;
        Ok(Response::new(ipb::EndMoveReply {}))
    }

    type WatchStream = super::operations::BoxStream<ipb::StateView>;

    async fn watch(
        &self,
        req: Request<ipb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        require_member(&req)?;
        if self.ctx.state.node().is_agent() {
            return Err(Status::failed_precondition(
                "an agent holds no replica to watch",
            ));
        }
        Ok(Response::new(super::follow::watch(
            self.ctx.clone(),
            req.into_inner(),
        )))
    }

    async fn read_index(
        &self,
        req: Request<ipb::ReadIndexRequest>,
    ) -> Result<Response<ipb::ReadIndexReply>, Status> {
        require_member(&req)?;
        let node = self.ctx.state.node();
        if !node.is_leader() && node.leader().is_none() {
            return Err(Status::failed_precondition("not the leader"));
        }
        let index = node.read_index().await.map_err(ApiError::from)?;
        Ok(Response::new(ipb::ReadIndexReply { index }))
    }

    async fn liveness(
        &self,
        req: Request<ipb::LivenessRequest>,
    ) -> Result<Response<ipb::LivenessReply>, Status> {
        require_member(&req)?;
        let node = self.ctx.state.node();
        if !node.is_leader() {
            if node.leader().is_none() {
                return Err(Status::failed_precondition("not the leader"));
            }
            let online = online_members(&self.ctx).await.into_iter().collect();
            return Ok(Response::new(ipb::LivenessReply { online }));
        }
        let online = self.ctx.state.read(|s| {
            s.members
                .keys()
                .filter(|n| node.is_online(n))
                .cloned()
                .collect()
        });
        Ok(Response::new(ipb::LivenessReply { online }))
    }

    async fn heartbeat(
        &self,
        req: Request<ipb::HeartbeatRequest>,
    ) -> Result<Response<ipb::HeartbeatReply>, Status> {
        require_member(&req)?;
        let node = self.ctx.state.node();
        let r = req.into_inner();
        if !node.is_leader() {
            // Relay an agent's heartbeat to the leader (members trust each other's names).
            let Some((_, leader)) = node.leader() else {
                return Err(Status::failed_precondition("not the leader"));
            };
            let mut client = node
                .peers
                .membership(&leader.addr)
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let mut fwd = Request::new(r);
            fwd.set_timeout(std::time::Duration::from_millis(800));
            return client.heartbeat(fwd).await;
        }
        // Live only if its replica keeps up; the member checks the same against the reply
        // before it renews its lease.
        node.heartbeat_from(&r.name, r.applied_revision);
        let term = node.raft.metrics().borrow().current_term;
        Ok(Response::new(ipb::HeartbeatReply {
            term,
            applied_revision: node.shared.revision(),
        }))
    }
}

/// How long a member reuses the leader's liveness answer (a burst of launches on a
/// follower asks the leader once, not once per launch).
const LIVENESS_CACHE: std::time::Duration = std::time::Duration::from_millis(250);

/// The members online as the leader sees them (worked out, or asked of the leader when this
/// member does not lead, at most every [`LIVENESS_CACHE`]; if no leader answers, every member counts as
/// online and the leader's check at apply has the last word on resources).
pub async fn online_members(ctx: &Ctx) -> std::collections::HashSet<String> {
    type Cached = Option<(std::time::Instant, std::collections::HashSet<String>)>;
    static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    let node = ctx.state.node();
    let all = || ctx.state.read(|s| s.members.keys().cloned().collect());
    if let Some((at, online)) = &*CACHE.lock().unwrap_or_else(|p| p.into_inner()) {
        if at.elapsed() < LIVENESS_CACHE && node.route().is_some() {
            return online.clone();
        }
    }
    match node.route() {
        Some((id, _)) if id == node.id => {
            let online: std::collections::HashSet<String> = ctx.state.read(|s| {
                s.members
                    .keys()
                    .filter(|n| node.is_online(n))
                    .cloned()
                    .collect()
            });
            *CACHE.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), online.clone()));
            online
        }
        Some((_, leader)) => {
            let Ok(mut client) = node.peers.membership(&leader.addr) else {
                return all();
            };
            let mut req = Request::new(ipb::LivenessRequest {});
            req.set_timeout(std::time::Duration::from_secs(2));
            match client.liveness(req).await {
                Ok(r) => {
                    let online: std::collections::HashSet<String> =
                        r.into_inner().online.into_iter().collect();
                    *CACHE.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((std::time::Instant::now(), online.clone()));
                    online
                }
                Err(_) => all(),
            }
        }
        None => all(),
    }
}

/// Sends a heartbeat to the leader every second (the leader records its own). The lease
/// is renewed only while this member's replica keeps up with the leader's
/// ([`crate::cluster::node::CATCH_UP`]); a member whose Raft core stopped sends none (the
/// leader sees it go silent, and the fencing loop fences its instances at once).
pub async fn heartbeat_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut behind = false;
    loop {
        tick.tick().await;
        let node = ctx.state.node();
        if node.core_failure().is_some() {
            continue;
        }
        let Some((id, leader)) = node.route() else {
            continue;
        };
        if id == node.id {
            node.note_own_revision();
            node.heard_from(&node.name);
            // The leader's lease is a quorum that recently acknowledged it.
            let quorum = node.raft.metrics().borrow().millis_since_quorum_ack;
            if quorum.is_some_and(|ms| ms < super::fencing::FENCE_AFTER.as_millis() as u64) {
                node.renew_lease(node.shared.revision());
                super::fencing::lease_renewed(&ctx).await;
            }
            continue;
        }
        let Ok(mut client) = node.peers.membership(&leader.addr) else {
            continue;
        };
        let mut req = Request::new(ipb::HeartbeatRequest {
            name: node.name.clone(),
            applied_revision: ctx.state.read(|s| s.revision),
        });
        req.set_timeout(std::time::Duration::from_millis(900));
        if let Ok(reply) = client.heartbeat(req).await {
            let local = ctx.state.read(|s| s.revision);
            match node.renew_if_caught_up(reply.into_inner().applied_revision, local) {
                Ok(()) => {
                    if std::mem::take(&mut behind) {
                        tracing::info!(applied = local, "replica caught up: lease renewed again");
                    }
                    super::fencing::lease_renewed(&ctx).await;
                }
                Err(e) => {
                    if !std::mem::replace(&mut behind, true) {
                        tracing::warn!(error = %e, "lease not renewed");
                    }
                }
            }
        }
    }
}
