//! Start-up and serving: certificates, state, image store, runtime, agent, and the gRPC
//! server over mutual TLS.

use anyhow::{bail, Context, Result};
use shoal_proto::api as pb;
use shoal_raft::{Command, InstanceName, Member};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::args::DaemonArgs;
use super::cluster::ClusterService;
use super::ctx::Ctx;
use super::exec::ExecHandler;
use super::images::ImagesService;
use super::instances::InstancesService;
use super::operations::OperationsService;
use super::ops::{now_ms, Operations};
use super::state::StateHandle;
use super::{agent, pki};
use crate::image::ImageStore;
use crate::runtime::{Runtime, RuntimeConfig};

/// A short directory for this daemon's unix sockets (sun_path is limited to 108 bytes, and
/// data directories can be long), unique per data directory.
pub(crate) fn run_dir(data_dir: &Path) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    std::path::PathBuf::from(format!("/run/shoal/{:012x}", h.finish() & 0xffff_ffff_ffff))
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
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen '{}' is not an address like 198.18.0.2:8443", args.listen))?;
    let advertise = args.advertise.clone().unwrap_or_else(|| args.listen.clone());
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
    let tls = pki::ensure(&data.join("tls"), &args.name, &[host_ip])
        .context("preparing certificates")?;
    let state = StateHandle::open(&data.join("state")).context("opening the cluster state")?;

    let me = Member {
        name: args.name.clone(),
        address: advertise.clone(),
        architecture: std::env::consts::ARCH.to_string(),
        failure_domain: args.failure_domain.clone(),
        joined_at_ms: now_ms(),
    };
    let known = state.read(|s| s.members.get(&args.name).cloned());
    if known.as_ref().map(|m| (&m.address, &m.failure_domain)) != Some((&me.address, &me.failure_domain)) {
        let member = Member {
            joined_at_ms: known.map(|k| k.joined_at_ms).unwrap_or(me.joined_at_ms),
            ..me
        };
        state
            .submit(Command::RegisterMember { member })
            .await
            .context("registering this member")?;
    }

    let images = Arc::new(ImageStore::open(&data.join("images")).context("opening the image store")?);
    let exe = std::env::current_exe().context("finding the shoald binary")?;
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            containers_dir: data.join("containers"),
            run_dir: run_dir(&data),
            shoald_exe: exe,
            cgroup_group: format!("shoal-{}", args.name),
        })
        .context("starting the container runtime")?,
    );
    let ctx = Arc::new(Ctx {
        node: args.name.clone(),
        state,
        ops: Operations::default(),
        images,
        runtime,
        spool_dir: data.join("spool"),
    });
    let _ = std::fs::remove_dir_all(&ctx.spool_dir);

    tokio::spawn(agent::run(ctx.clone()));

    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&tls.server_cert)?, read(&tls.server_key)?))
        .client_ca_root(Certificate::from_pem(read(&tls.ca_cert)?));

    let instances = InstancesService {
        ctx: ctx.clone(),
        exec: ExecHandler { ctx: ctx.clone() },
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down; containers keep running");
    };
    tracing::info!(node = %ctx.node, %listen, "serving the Shoal API over mutual TLS");
    Server::builder()
        .tls_config(tls_config)
        .context("configuring TLS")?
        .add_service(pb::instances_server::InstancesServer::new(instances))
        .add_service(pb::images_server::ImagesServer::new(ImagesService { ctx: ctx.clone() }))
        .add_service(pb::operations_server::OperationsServer::new(OperationsService {
            ctx: ctx.clone(),
        }))
        .add_service(pb::cluster_server::ClusterServer::new(ClusterService { ctx: ctx.clone() }))
        .serve_with_shutdown(listen, shutdown)
        .await
        .with_context(|| format!("serving on {listen}"))?;
    Ok(())
}
