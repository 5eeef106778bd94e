//! The sending side of Raft: openraft asks the factory for a client per target member, and the
//! client makes the RPCs over gRPC with mutual TLS.
//!
//! ```text
//! openraft ──new_client(target, node)──► GrpcNetworkFactory ── one Channel per node.addr ──┐
//!    │                                    (cache shared by clones, created lazily)         │
//!    └─ append_entries / vote / install_snapshot ──► GrpcNetwork ──► RaftClient<Channel> ◄─┘
//! ```
//!
//! A `Channel` connects on first use and reconnects by itself after the peer went away, so the
//! factory keeps it for good. Failures become openraft's `RPCError` so that openraft reacts the
//! right way: a peer it cannot reach (refused, TLS handshake failed, not a member, a message
//! one side cannot decode) is `Unreachable` and openraft backs off; an RPC that outlives its
//! soft time limit is `Timeout`; an answer of the peer's Raft that is an error is
//! `RemoteError`; an AppendEntries batch over the message limit is `PayloadTooLarge` (openraft
//! halves it); anything else is `Network` and is retried at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use shoal_proto::internal::raft_client::RaftClient;
use shoal_proto::internal::RaftReply;
use thiserror::Error;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::wire::{self, WireError, MAX_MESSAGE_BYTES};
use crate::consensus::types::{MemberNode, NodeId, TypeConfig};

/// How long opening a connection (TCP and TLS) to a member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors of the sending side; openraft receives them inside its `RPCError`.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("preparing the connection to node {target} at {addr}: {source}")]
    Endpoint {
        target: NodeId,
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("sending {rpc} to node {target} at {addr}: {source}")]
    Call {
        rpc: RPCTypes,
        target: NodeId,
        addr: String,
        source: tonic::Status,
    },
    #[error("sending {rpc} to node {target}: {source}")]
    Wire {
        rpc: RPCTypes,
        target: NodeId,
        source: WireError,
    },
}

/// Creates openraft's per-target clients; clones share one connection per member address.
#[derive(Clone)]
pub struct GrpcNetworkFactory {
    shared: Arc<Shared>,
}

struct Shared {
    /// This member's node id, named in timeout errors.
    id: NodeId,
    tls: ClientTlsConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcNetworkFactory {
    /// A factory for member `id`. `tls` carries the cluster CA, this member's certificate and
    /// key, and the server name every member certificate holds (`shoal`).
    pub fn new(id: NodeId, tls: ClientTlsConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                id,
                tls,
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The channel to `addr` (host:port), created on first use. Must run inside a tokio runtime.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self
            .shared
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint_err = |source| ClientError::Endpoint {
            target,
            addr: addr.to_string(),
            source,
        };
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(endpoint_err)?
            .tls_config(self.shared.tls.clone())
            .map_err(endpoint_err)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    #[cfg(test)]
    pub(crate) fn cached_channels(&self) -> usize {
        self.shared.channels.lock().unwrap().len()
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> GrpcNetwork {
        let client = self.channel(target, &node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        GrpcNetwork {
            id: self.shared.id,
            target,
            node: node.clone(),
            client,
        }
    }
}

/// openraft's client for one target member.
pub struct GrpcNetwork {
    id: NodeId,
    target: NodeId,
    node: MemberNode,
    /// The error, if the address could not even be turned into an endpoint; every RPC then
    /// reports the target unreachable.
    client: Result<RaftClient<Channel>, ClientError>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, MemberNode, E>>;

impl GrpcNetwork {
    /// Makes one call with the deadline from `option`: the peer is told the hard limit, and the
    /// call is given up at the soft one, so openraft gets a `Timeout` rather than a drop.
    /// `entries` is the size of an AppendEntries batch: one the peer refuses as too large
    /// (`RESOURCE_EXHAUSTED`) is retried by openraft with half as many entries.
    async fn call<Req, F, Fut, E>(
        &self,
        rpc: RPCTypes,
        option: &RPCOption,
        entries: u64,
        req: Req,
        send: F,
    ) -> RpcResult<RaftReply, E>
    where
        F: FnOnce(RaftClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftReply>, tonic::Status>>,
        E: std::error::Error,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let mut request = tonic::Request::new(req);
        request.set_timeout(option.hard_ttl());
        // The peer refuses a call meant for another node id (one that replaced the target
        // under its address).
        request.metadata_mut().insert(
            super::server::TARGET_HEADER,
            tonic::metadata::MetadataValue::from(self.target),
        );
        let soft = option.soft_ttl();
        match tokio::time::timeout(soft, send(client, request)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) if status.code() == Code::ResourceExhausted && entries > 1 => Err(
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)),
            ),
            Ok(Err(status)) => {
                tracing::debug!(target_node = self.target, %rpc, %status, "raft rpc failed");
                Err(rpc_error(self.call_error(rpc, status)))
            }
            Err(_) => Err(RPCError::Timeout(Timeout {
                action: rpc,
                id: self.id,
                target: self.target,
                timeout: soft,
            })),
        }
    }

    fn call_error(&self, rpc: RPCTypes, source: tonic::Status) -> ClientError {
        ClientError::Call {
            rpc,
            target: self.target,
            addr: self.node.addr.clone(),
            source,
        }
    }

    /// Turns the peer's reply into openraft's result: its Raft's error is a `RemoteError`.
    // The error type is openraft's, returned as it is by the `RaftNetwork` methods.
    #[allow(clippy::result_large_err)]
    fn outcome<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        rpc: RPCTypes,
        reply: RaftReply,
    ) -> RpcResult<T, E> {
        match wire::decode_reply::<T, E>(rpc_name(rpc), reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(err)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                err,
            ))),
            Err(source) => Err(self.wire_error(rpc, source)),
        }
    }

    fn wire_error<E: std::error::Error>(
        &self,
        rpc: RPCTypes,
        source: WireError,
    ) -> RPCError<NodeId, MemberNode, E> {
        rpc_error(ClientError::Wire {
            rpc,
            target: self.target,
            source,
        })
    }
}

fn rpc_name(rpc: RPCTypes) -> &'static str {
    match rpc {
        RPCTypes::AppendEntries => "append entries message",
        RPCTypes::Vote => "vote message",
        RPCTypes::InstallSnapshot => "install snapshot message",
    }
}

/// Which `RPCError` a failed call is. Failures that will not clear by retrying at once (the
/// peer is down, its connection broke or refused our certificate, it refuses us, or one side
/// does not understand the other) are `Unreachable`, so openraft backs off.
pub(crate) fn rpc_error<E: std::error::Error>(err: ClientError) -> RPCError<NodeId, MemberNode, E> {
    let code = match &err {
        ClientError::Call { source, .. } if broke_connection(source) => Code::Unavailable,
        ClientError::Call { source, .. } => source.code(),
        ClientError::Endpoint { .. } => Code::Unavailable,
        ClientError::Wire { .. } => Code::InvalidArgument,
    };
    match code {
        Code::Unavailable
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::InvalidArgument
        | Code::FailedPrecondition => RPCError::Unreachable(Unreachable::new(&err)),
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

/// Whether the call failed at the connection (a TLS alert, a closed connection) rather than
/// with an answer of the peer; tonic reports those as `UNKNOWN` or `CANCELLED`.
fn broke_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let kind = RPCTypes::AppendEntries;
        let entries = rpc.entries.len() as u64;
        let req = wire::request(rpc_name(kind), &rpc).map_err(|e| self.wire_error(kind, e))?;
        if req.json.len() > MAX_MESSAGE_BYTES && entries > 1 {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            ));
        }
        let reply = self
            .call(kind, &option, entries, req, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await?;
        self.outcome(kind, reply)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let kind = RPCTypes::InstallSnapshot;
        let chunk = wire::snapshot_chunk(rpc).map_err(|e| self.wire_error(kind, e))?;
        let reply = self
            .call(kind, &option, 0, chunk, |mut c, r| async move {
                c.install_snapshot(r).await
            })
            .await?;
        self.outcome(kind, reply)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let kind = RPCTypes::Vote;
        let req = wire::request(rpc_name(kind), &rpc).map_err(|e| self.wire_error(kind, e))?;
        let reply = self
            .call(
                kind,
                &option,
                0,
                req,
                |mut c, r| async move { c.vote(r).await },
            )
            .await?;
        self.outcome(kind, reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;

    fn tls() -> ClientTlsConfig {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientTlsConfig::new().domain_name("shoal")
    }

    fn node(addr: &str) -> MemberNode {
        MemberNode {
            name: "peer".into(),
            addr: addr.into(),
        }
    }

    fn vote_req() -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(1, 1), None)
    }

    /// An address nothing listens on.
    async fn closed_port() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn clones_share_one_channel_per_address() {
        let mut a = GrpcNetworkFactory::new(1, tls());
        let mut b = a.clone();
        let _c1 = a.new_client(2, &node("127.0.0.1:7001")).await;
        let _c2 = b.new_client(2, &node("127.0.0.1:7001")).await;
        assert_eq!(a.cached_channels(), 1);
        let _c3 = b.new_client(3, &node("127.0.0.1:7002")).await;
        assert_eq!(a.cached_channels(), 2);
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let mut f = GrpcNetworkFactory::new(1, tls());
        let addr = closed_port().await;
        let mut c = f.new_client(2, &node(&addr)).await;
        let err = c
            .vote(vote_req(), RPCOption::new(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        // The channel stays cached and tries again on the next call.
        let err = c
            .vote(vote_req(), RPCOption::new(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn bad_address_is_unreachable() {
        let mut f = GrpcNetworkFactory::new(1, tls());
        let mut c = f.new_client(2, &node("no such host:port:x")).await;
        let err = c
            .vote(vote_req(), RPCOption::new(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        assert_eq!(f.cached_channels(), 0, "failures are not cached");
    }

    #[tokio::test]
    async fn silent_member_times_out_at_the_soft_ttl() {
        // Accepts TCP connections and never answers the TLS handshake.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let mut f = GrpcNetworkFactory::new(1, tls());
        let mut c = f.new_client(2, &node(&addr)).await;
        let option = RPCOption::new(Duration::from_millis(400));
        let started = std::time::Instant::now();
        let err = c.vote(vote_req(), option.clone()).await.unwrap_err();
        match err {
            RPCError::Timeout(t) => {
                assert_eq!((t.id, t.target, t.timeout), (1, 2, option.soft_ttl()));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < option.hard_ttl());
        hold.abort();
    }

    #[test]
    fn status_codes_map_to_rpc_errors() {
        let call = |status: tonic::Status| ClientError::Call {
            rpc: RPCTypes::Vote,
            target: 2,
            addr: "127.0.0.1:1".into(),
            source: status,
        };
        let unreachable = [
            tonic::Status::unavailable("refused"),
            tonic::Status::permission_denied("not a member"),
            tonic::Status::unauthenticated("no certificate"),
            tonic::Status::unimplemented("old member"),
            tonic::Status::invalid_argument("bad json"),
        ];
        for s in unreachable {
            let e: RPCError<NodeId, MemberNode, RaftError<NodeId>> = rpc_error(call(s));
            assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");
        }
        for s in [
            tonic::Status::internal("oops"),
            tonic::Status::unknown("connection reset"),
        ] {
            let e: RPCError<NodeId, MemberNode, RaftError<NodeId>> = rpc_error(call(s));
            assert!(matches!(e, RPCError::Network(_)), "{e:?}");
        }
        let garbled = ClientError::Wire {
            rpc: RPCTypes::Vote,
            target: 2,
            source: WireError::EmptyReply { what: "vote reply" },
        };
        let e: RPCError<NodeId, MemberNode, RaftError<NodeId>> = rpc_error(garbled);
        assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");
        let e: RPCError<NodeId, MemberNode, RaftError<NodeId>> =
            rpc_error(call(tonic::Status::unavailable("refused")));
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
