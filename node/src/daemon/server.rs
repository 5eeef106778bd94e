//! Start-up and serving: this member's identity (bootstrap a new cluster, or join one with a
//! token), the Raft node, image store, runtime, agent and leader tasks, and the gRPC server
//! over mutual TLS (public API, membership, Raft).

use anyhow::{bail, Context, Result};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use shoal_proto::api as pb;
use shoal_proto::internal as ipb;
use shoal_raft::consensus::{self, GrpcNetworkFactory, MemberNode, RaftGrpcService};
use shoal_raft::{CaRecord, Capacity, Command, InstanceName, Member};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

use super::agent;
use super::args::DaemonArgs;
use super::auth::require_member;
use super::cluster::ClusterService;
use super::ctx::Ctx;
use super::exec::ExecHandler;
use super::images::ImagesService;
use super::instances::InstancesService;
use super::membership::{heartbeat_loop, MembershipService};
use super::operations::OperationsService;
use super::ops::{now_ms, Operations};
use super::state::StateHandle;
use crate::cluster::pki::{self, TlsFiles};
use crate::cluster::{join, roles, ClusterNode, Peers};
use crate::image::ImageStore;
use crate::runtime::{Runtime, RuntimeConfig};

fn data_dir_hash(data_dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    h.finish() & 0xffff_ffff_ffff
}

/// A short directory for this daemon's unix sockets (sun_path is limited to 108 bytes, and
/// data directories can be long), unique per data directory.
pub(crate) fn run_dir(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!("/run/shoal/{:012x}", data_dir_hash(data_dir)))
}

/// The cgroup (beneath the daemon's own) that holds this daemon's containers: named after
/// the member and its data directory, so two daemons on one machine (a test bed) never
/// share one.
pub(crate) fn cgroup_group(name: &str, data_dir: &Path) -> String {
    format!("shoal-{name}-{:08x}", data_dir_hash(data_dir) & 0xffff_ffff)
}

/// Who this member is, written once it has bootstrapped or joined.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberFile {
    id: u64,
    name: String,
    /// Whether this member created the cluster (and must initialise Raft).
    bootstrap: bool,
    /// Member addresses learnt when joining (where an agent first looks for state).
    #[serde(default)]
    seeds: Vec<String>,
}

fn write_file(path: &Path, data: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Establishes this member's identity: from disk, by joining, or by bootstrapping.
async fn identity(
    args: &DaemonArgs,
    data: &Path,
    advertise: &str,
    host_ip: &str,
) -> Result<MemberFile> {
    let file = data.join("member.json");
    let tls_dir = data.join("tls");
    if let Ok(bytes) = std::fs::read(&file) {
        let m: MemberFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is damaged", file.display()))?;
        if m.name != args.name {
            bail!(
                "the data directory {} belongs to member '{}', not '{}'",
                data.display(),
                m.name,
                args.name
            );
        }
        return Ok(m);
    }
    let m = if let Some(token) = &args.join {
        let j = join::join(token, &args.name, advertise, &args.failure_domain, now_ms())
            .await
            .context("joining the cluster")?;
        std::fs::create_dir_all(&tls_dir)?;
        let files = TlsFiles::in_dir(&tls_dir);
        write_file(&files.ca_cert, &j.ca_pem, 0o644)?;
        write_file(&files.server_key, &j.key_pem, 0o600)?;
        write_file(&files.server_cert, &j.cert_pem, 0o644)?;
        tracing::info!(node_id = j.node_id, "joined the cluster");
        MemberFile {
            id: j.node_id,
            name: args.name.clone(),
            bootstrap: false,
            seeds: j.addresses.clone(),
        }
    } else {
        pki::ensure(&tls_dir, &args.name, &[host_ip.to_string()])
            .context("preparing certificates")?;
        MemberFile {
            id: 1,
            name: args.name.clone(),
            bootstrap: true,
            seeds: vec![],
        }
    };
    write_file(&file, &serde_json::to_string_pretty(&m)?, 0o644)?;
    Ok(m)
}

/// Runs the daemon until SIGTERM or SIGINT. Containers keep running after it returns.
pub async fn run(args: DaemonArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if InstanceName::new(&args.name).is_err() {
        bail!(
            "invalid member name '{}': use 1 to 63 letters, digits and hyphens, starting with a letter",
            args.name
        );
    }
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen '{}' is not an address like 198.18.0.2:8443",
            args.listen
        )
    })?;
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.listen.clone());
    let data = std::fs::canonicalize(&args.data_dir)
        .or_else(|_| {
            std::fs::create_dir_all(&args.data_dir)?;
            std::fs::canonicalize(&args.data_dir)
        })
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let host_ip = advertise
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();

    let me = identity(&args, &data, &advertise, &host_ip).await?;
    let tls = TlsFiles::in_dir(&data.join("tls"));
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let ca_pem = read(&tls.ca_cert)?;
    let cert_pem = read(&tls.server_cert)?;
    let key_pem = read(&tls.server_key)?;
    // Present the CA with our certificate, so a joining host can check its fingerprint.
    let mut chain = cert_pem.clone();
    chain.extend_from_slice(&ca_pem);
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .identity(Identity::from_pem(&cert_pem, &key_pem))
        .domain_name(pki::SERVER_NAME);

    let (log, sm) = consensus::open(&data.join("raft"))
        .await
        .context("opening the Raft store")?;
    let shared = sm.state();
    let config = Arc::new(
        consensus::raft_config("shoal")
            .validate()
            .context("Raft configuration")?,
    );
    let network = GrpcNetworkFactory::new(me.id, client_tls.clone());
    let raft = Raft::new(me.id, config, network, log, sm)
        .await
        .context("starting Raft")?;
    let node = Arc::new(ClusterNode::new(
        me.id,
        args.name.clone(),
        raft.clone(),
        shared,
        Peers::new(client_tls),
    ));
    let state = StateHandle::new(node.clone());

    let images =
        Arc::new(ImageStore::open(&data.join("images")).context("opening the image store")?);
    let exe = std::env::current_exe().context("finding the shoald binary")?;
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            containers_dir: data.join("containers"),
            run_dir: run_dir(&data),
            shoald_exe: exe,
            cgroup_group: cgroup_group(&args.name, &data),
        })
        .context("starting the container runtime")?,
    );
    let ctx = Arc::new(Ctx {
        node: args.name.clone(),
        state: state.clone(),
        ops: Operations::default(),
        images,
        runtime,
        spool_dir: data.join("spool"),
        fenced: Default::default(),
        importing: Default::default(),
        export_sessions: Default::default(),
        placing: Default::default(),
        watchers: Default::default(),
    });
    let _ = std::fs::remove_dir_all(&ctx.spool_dir);

    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&chain, &key_pem))
        .client_ca_root(Certificate::from_pem(&ca_pem))
        .client_auth_optional(true);
    let instances = InstancesService {
        ctx: ctx.clone(),
        exec: ExecHandler { ctx: ctx.clone() },
    };
    let raft_service = tonic::service::interceptor::InterceptedService::new(
        RaftGrpcService::new(raft.clone())
            .into_server()
            .max_decoding_message_size(consensus::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(consensus::MAX_MESSAGE_BYTES),
        |req: tonic::Request<()>| require_member(&req).map(|_| req),
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down; containers keep running");
    };
    let server = Server::builder()
        .tls_config(tls_config)
        .context("configuring TLS")?
        .layer(tonic::service::InterceptorLayer::new(
            super::auth::refuse_revoked(state.clone()),
        ))
        .add_service(pb::instances_server::InstancesServer::new(instances))
        .add_service(pb::images_server::ImagesServer::new(ImagesService {
            ctx: ctx.clone(),
        }))
        .add_service(pb::operations_server::OperationsServer::new(
            OperationsService { ctx: ctx.clone() },
        ))
        .add_service(pb::cluster_server::ClusterServer::new(ClusterService {
            ctx: ctx.clone(),
        }))
        .add_service(ipb::membership_server::MembershipServer::new(
            MembershipService { ctx: ctx.clone() },
        ))
        .add_service(raft_service)
        .serve_with_shutdown(listen, shutdown);
    tracing::info!(node = %ctx.node, id = me.id, %listen, "serving the Shoal API over mutual TLS");
    let serving = tokio::spawn(server);

    if me.bootstrap {
        bootstrap(&node, &args, &advertise, &tls).await?;
    }
    {
        let (state, args, advertise) = (state.clone(), args.clone(), advertise.clone());
        tokio::spawn(async move { register(&state, &args, &advertise, me.id).await });
    }

    if node.is_agent() {
        tracing::info!(
            id = me.id,
            "this member is an agent: it follows the state of a member that holds a replica"
        );
        tokio::spawn(super::follow::run(ctx.clone(), me.seeds.clone()));
    }
    tokio::spawn(agent::run(ctx.clone()));
    tokio::spawn(heartbeat_loop(ctx.clone()));
    tokio::spawn(super::fencing::run(ctx.clone()));
    tokio::spawn(super::healer::run(ctx.clone()));
    tokio::spawn(super::move_recovery::run(ctx.clone()));
    tokio::spawn(super::image_fetch::replicate_loop(ctx.clone()));
    tokio::spawn(roles::run(node.clone(), roles::RolePolicy::default()));

    let r = serving.await.context("server task")?;
    let _ = raft.shutdown().await;
    r.with_context(|| format!("serving on {listen}"))
}

/// Creates the cluster on its first member: a one-voter Raft group, then the CA and this
/// member as the first command.
async fn bootstrap(
    node: &Arc<ClusterNode>,
    args: &DaemonArgs,
    advertise: &str,
    tls: &TlsFiles,
) -> Result<()> {
    if !node
        .raft
        .is_initialized()
        .await
        .context("reading Raft state")?
    {
        let mut members = BTreeMap::new();
        members.insert(
            node.id,
            MemberNode {
                name: args.name.clone(),
                addr: advertise.to_string(),
            },
        );
        node.raft
            .initialize(members)
            .await
            .context("initialising the Raft group")?;
    }
    if node.shared.read(|s| s.ca.is_some()) {
        return Ok(());
    }
    let ca = CaRecord {
        cert_pem: std::fs::read_to_string(&tls.ca_cert)?,
        key_pem: std::fs::read_to_string(&tls.ca_key)?,
    };
    let member = Member {
        id: node.id,
        name: args.name.clone(),
        address: advertise.to_string(),
        architecture: std::env::consts::ARCH.to_string(),
        failure_domain: args.failure_domain.clone(),
        joined_at_ms: now_ms(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match node
            .submit(Command::Bootstrap {
                ca: ca.clone(),
                member: member.clone(),
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting to bootstrap");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("bootstrapping the cluster: {e}"),
        }
    }
}

/// What this host offers: its CPUs, memory and process slots.
fn host_capacity() -> Capacity {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    let processes = std::fs::read_to_string("/proc/sys/kernel/threads-max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    Capacity {
        cpu_millicores: cpus * 1000,
        memory_bytes,
        processes,
    }
}

/// Keeps this member's record (address, failure domain, capacity, labels, groups) up to
/// date. A member that just joined does not see its own record until its replica catches
/// up, so this retries until the record is there and current.
async fn register(state: &StateHandle, args: &DaemonArgs, advertise: &str, id: u64) {
    let capacity = host_capacity();
    loop {
        let known = state.read(|s| s.members.get(&args.name).cloned());
        if let Some(known) = known {
            let member = Member {
                id,
                address: advertise.to_string(),
                failure_domain: args.failure_domain.clone(),
                capacity,
                labels: args.labels.iter().cloned().collect(),
                groups: args.groups.iter().cloned().collect(),
                ..known.clone()
            };
            if member == known {
                return;
            }
            match state.submit(Command::RegisterMember { member }).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "updating this member's record failed; retrying")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
