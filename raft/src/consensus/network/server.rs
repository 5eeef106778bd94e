//! The receiving side of Raft: the `shoal.internal.v1.Raft` gRPC service, which decodes each
//! call and hands it to this member's `openraft::Raft`. Snapshot chunks go to openraft's own
//! chunk assembly (`Raft::install_snapshot`), which installs the snapshot with the last one.
//!
//! The service does no authorisation: the daemon serves it behind mutual TLS and admits member
//! certificates only. It does check that a call is meant for this member: every call names
//! its target node id ([`TARGET_HEADER`]), and a call for another id is refused
//! (`FAILED_PRECONDITION`, which the sender treats as unreachable). A member replaced under
//! the same address (a wiped host joining again gets a new node id while the old id may still
//! be in the Raft membership) would otherwise answer for the member it replaced, with an empty
//! log, and the leader would take that for the old member's log going backwards.

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Raft;
use shoal_proto::internal::raft_server::{self, RaftServer};
use shoal_proto::internal::{RaftReply, RaftRequest, RaftSnapshotChunk};
use tonic::{Request, Response, Status};

use super::wire::{self, WireError, MAX_MESSAGE_BYTES};
use crate::consensus::types::{NodeId, TypeConfig};

/// Serves Raft calls from other members to this member's Raft.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft<TypeConfig>,
}

impl RaftGrpcService {
    /// The service for `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }

    /// This member's node id.
    fn id(&self) -> NodeId {
        self.raft.metrics().borrow().id
    }

    /// The service ready to add to a tonic server (`Server::builder().add_service(..)`), with
    /// the message limits the clients use.
    pub fn into_server(self) -> RaftServer<Self> {
        raft_server(self)
    }
}

/// Wraps any implementation of the Raft service (this one, or a wrapper around it) in the
/// generated server with Shoal's message limits.
pub fn raft_server<T: raft_server::Raft>(service: T) -> RaftServer<T> {
    RaftServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The gRPC metadata key naming the node id a Raft call is meant for.
pub const TARGET_HEADER: &str = "shoal-raft-target";

/// Refuses a call meant for another node id than `own` (a call naming none is let through).
fn check_target<T>(own: NodeId, request: &Request<T>) -> Result<(), Status> {
    let Some(v) = request.metadata().get(TARGET_HEADER) else {
        return Ok(());
    };
    let target: NodeId = v
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Status::invalid_argument(format!("bad {TARGET_HEADER} header: {v:?}")))?;
    if target != own {
        return Err(Status::failed_precondition(format!(
            "this member is Raft node {own}, not node {target}: node {target} left or was \
             replaced by this member at the same address; the leader must remove it from the \
             Raft membership"
        )));
    }
    Ok(())
}

fn bad_request(err: WireError) -> Status {
    Status::invalid_argument(err.to_string())
}

fn bad_reply(err: WireError) -> Status {
    Status::internal(err.to_string())
}

#[tonic::async_trait]
impl raft_server::Raft for RaftGrpcService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let what = "append entries request";
        check_target(self.id(), &request)?;
        let req: AppendEntriesRequest<TypeConfig> =
            wire::decode(what, &request.into_inner().json).map_err(bad_request)?;
        let outcome = self.raft.append_entries(req).await;
        wire::reply("append entries reply", &outcome)
            .map(Response::new)
            .map_err(bad_reply)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        check_target(self.id(), &request)?;
        let req: VoteRequest<NodeId> =
            wire::decode("vote request", &request.into_inner().json).map_err(bad_request)?;
        let outcome = self.raft.vote(req).await;
        wire::reply("vote reply", &outcome)
            .map(Response::new)
            .map_err(bad_reply)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftSnapshotChunk>,
    ) -> Result<Response<RaftReply>, Status> {
        check_target(self.id(), &request)?;
        let req = wire::decode_snapshot_chunk(request.into_inner()).map_err(bad_request)?;
        tracing::debug!(
            snapshot = %req.meta.snapshot_id,
            offset = req.offset,
            len = req.data.len(),
            done = req.done,
            "snapshot chunk received"
        );
        let outcome = self.raft.install_snapshot(req).await;
        wire::reply("install snapshot reply", &outcome)
            .map(Response::new)
            .map_err(bad_reply)
    }
}
