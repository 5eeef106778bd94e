//! Test harness for the Raft network: a throwaway CA issuing member certificates (as the
//! daemon's `pki` does), and Raft members on the sled store in their own temporary directories,
//! served over gRPC with mutual TLS on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, Raft};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use shoal_proto::internal::raft_server;
use shoal_proto::internal::{RaftReply, RaftRequest, RaftSnapshotChunk};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::{raft_server as limited_server, GrpcNetworkFactory, RaftGrpcService};
use crate::consensus::store::{open, SharedState};
use crate::consensus::types::{MemberNode, NodeId, TypeConfig};
use crate::model::ClusterState;

/// The DNS name every member certificate carries.
pub(crate) const SERVER_NAME: &str = "shoal";

/// A throwaway cluster CA.
pub(crate) struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "shoal test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A member certificate for `name`: client and server use, SAN `shoal` and 127.0.0.1.
    pub(crate) fn member(&self, name: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, "member");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.subject_alt_names = vec![
            SanType::DnsName(SERVER_NAME.try_into().unwrap()),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity::from_pem(cert.pem(), key.serialize_pem())
    }

    fn ca(&self) -> Certificate {
        Certificate::from_pem(&self.cert_pem)
    }

    /// What a member's network factory is given.
    pub(crate) fn client_tls(&self, name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca())
            .identity(self.member(name))
            .domain_name(SERVER_NAME)
    }

    /// What a member's server is given: its identity, and client certificates required.
    pub(crate) fn server_tls(&self, name: &str) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.member(name))
            .client_ca_root(self.ca())
    }
}

/// Counts the snapshot chunks a member receives, then passes every call on.
struct CountingRaft {
    inner: RaftGrpcService,
    chunks: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl raft_server::Raft for CountingRaft {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.inner.append_entries(request).await
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.inner.vote(request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftSnapshotChunk>,
    ) -> Result<Response<RaftReply>, Status> {
        self.chunks.fetch_add(1, Ordering::SeqCst);
        self.inner.install_snapshot(request).await
    }
}

/// One Raft member on 127.0.0.1.
pub(crate) struct TestNode {
    pub(crate) id: NodeId,
    pub(crate) node: MemberNode,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) network: GrpcNetworkFactory,
    pub(crate) snapshot_chunks: Arc<AtomicUsize>,
    applied: SharedState,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// Removed when the node is dropped, after its Raft (and sled) stopped.
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts member `id`: its Raft, and its gRPC server on an ephemeral port.
    pub(crate) async fn start(ca: &TestCa, id: NodeId, config: Arc<Config>) -> TestNode {
        Self::start_at(ca, id, config, "127.0.0.1:0").await
    }

    /// Starts member `id` on `addr` (a fresh store), e.g. where a stopped member listened.
    pub(crate) async fn start_at(
        ca: &TestCa,
        id: NodeId,
        config: Arc<Config>,
        addr: &str,
    ) -> TestNode {
        let name = format!("m{id}");
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let network = GrpcNetworkFactory::new(id, ca.client_tls(&name));
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open(dir.path()).await.unwrap();
        let applied = sm.state();
        let raft = Raft::new(id, config, network.clone(), log, sm)
            .await
            .unwrap();
        let snapshot_chunks = Arc::new(AtomicUsize::new(0));
        let service = limited_server(CountingRaft {
            inner: RaftGrpcService::new(raft.clone()),
            chunks: snapshot_chunks.clone(),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(ca.server_tls(&name))
            .unwrap()
            .add_service(service);
        let handle = tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            let _ = router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
                .await;
        });
        TestNode {
            id,
            node: MemberNode { name, addr },
            raft,
            network,
            snapshot_chunks,
            applied,
            server: Some((stop_tx, handle)),
            _dir: dir,
        }
    }

    /// The cluster state this member applied.
    pub(crate) fn state(&self) -> ClusterState {
        self.applied.read(|s| s.clone())
    }

    /// Stops Raft and the server, like a killed member: no more heartbeats, no more answers.
    pub(crate) async fn stop(&mut self) {
        let _ = self.raft.shutdown().await;
        if let Some((stop, handle)) = self.server.take() {
            let _ = stop.send(());
            // Peers keep their connections open; don't wait for them longer than needed.
            if tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .is_err()
            {
                tracing::warn!(node = self.id, "server did not stop within 5 s");
            }
        }
    }
}

/// The members as openraft's initial membership.
pub(crate) fn members(nodes: &[&TestNode]) -> BTreeMap<NodeId, MemberNode> {
    nodes.iter().map(|n| (n.id, n.node.clone())).collect()
}

/// Waits until every node in `nodes` names the same leader, one not in `exclude`.
pub(crate) async fn wait_for_leader(
    nodes: &[&TestNode],
    exclude: &[NodeId],
    within: Duration,
) -> Option<NodeId> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(Some(l)) = leaders.first() {
            if !exclude.contains(l) && leaders.iter().all(|x| *x == Some(*l)) {
                // The leader itself must agree it leads.
                let leader = nodes.iter().find(|n| n.id == *l);
                if leader.is_none_or(|n| n.raft.metrics().borrow().state.is_leader()) {
                    return Some(*l);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
