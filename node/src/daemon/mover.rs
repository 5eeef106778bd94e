//! Moving and copying instances between hosts with their data, and evacuating hosts.
//!
//! ```text
//!  API member (orchestrates, as an operation)      target host               source host
//!   BeginMove (journal on the instance: Preparing)
//!   [precopy: PullInstance{full} ───────────────►  waits for the journal, create container,
//!                                                   ExportInstance ──────────► stream layer (running)]
//!   SetDesired Stopped, wait Stopped
//!   PullInstance{cold: full, precopy: delta} ───►  ExportInstance ──────────► stream layer/delta
//!   AdvanceMove (Copied)
//!   CommitMove (new placement generation, desired restored) ── commit point ──
//!   wait Running on target                          (downtime = stop → running)
//!   EndMove{keep}, CloseMove (journal cleared)                                 the stale-copy sweep
//!                                                                              removes its copy
//! ```
//! Before the commit point any failure closes the journal (rolled back: the instance starts
//! again where it was), then ends the session without keeping anything on the target: it
//! is left whole on one host and the move can be retried. If the orchestrating member dies,
//! `move_recovery` closes the journal for it. The layer travels with a sha256 trailer that
//! the target checks.

use shoal_proto::internal as ipb;
use shoal_raft::{Instance, InstanceName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::Status;

use super::ctx::Ctx;
use super::layer_stream::{ChannelReader, ChannelWriter};
use crate::transfer::{self, IdRange};

/// Largest layer accepted by an import.
const MAX_LAYER_BYTES: u64 = 64 << 30;

fn ids(layer: &crate::runtime::Layer) -> IdRange {
    if layer.privileged {
        IdRange::PRIVILEGED
    } else {
        IdRange::unprivileged(layer.root_id)
    }
}

/// Source side: streams container `name`'s layer (full, or the delta since the session's
/// last pass).
pub async fn export_instance(
    ctx: Arc<Ctx>,
    req: ipb::ExportInstanceRequest,
) -> Result<super::operations::BoxStream<ipb::ExportChunk>, Status> {
    let rt = ctx.runtime.clone();
    let name = req.name.clone();
    let layer = tokio::task::spawn_blocking(move || rt.layer(&name))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::not_found(e.to_string()))?;
    let since = if req.delta {
        let s = ctx
            .export_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Some(s.get(&req.session).cloned().ok_or_else(|| {
            Status::failed_precondition(format!("no earlier pass for move session {}", req.session))
        })?)
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let (out_tx, out_rx) = mpsc::channel::<Result<ipb::ExportChunk, Status>>(8);
    let session = req.session.clone();
    let ctx2 = ctx.clone();
    let job = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter::new(tx);
        let r = transfer::export(&layer.upper, ids(&layer), since.as_ref(), &mut w);
        drop(w);
        r
    });
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if out_tx.send(Ok(ipb::ExportChunk { data })).await.is_err() {
                return;
            }
        }
        match job.await {
            Ok(Ok((manifest, stats))) => {
                tracing::info!(
                    entries = stats.entries,
                    bytes = stats.bytes,
                    "layer exported"
                );
                ctx2.export_sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(session, manifest);
            }
            Ok(Err(e)) => {
                let _ = out_tx
                    .send(Err(Status::internal(format!("exporting the layer: {e}"))))
                    .await;
            }
            Err(e) => {
                let _ = out_tx.send(Err(Status::internal(e.to_string()))).await;
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        out_rx,
    )))
}

/// Target side: creates the container (first pass) and pulls the layer from the source.
pub async fn pull_instance(
    ctx: Arc<Ctx>,
    req: ipb::PullInstanceRequest,
) -> Result<ipb::PullInstanceReply, Status> {
    let key = InstanceName::new(&req.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let target_name = if req.target_name.is_empty() {
        req.name.clone()
    } else {
        req.target_name.clone()
    };
    InstanceName::new(&target_name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let inst = if target_name == req.name {
        journaled_here(&ctx, &key, &req.session).await?
    } else {
        ctx.state
            .read(|s| s.instances.get(&key).cloned())
            .ok_or_else(|| Status::not_found(format!("instance '{}' not found", req.name)))?
    };
    ctx.importing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(target_name.clone());
    let result = pull(&ctx, &inst, &target_name, &req).await;
    if result.is_err() && !req.delta {
        discard(&ctx, &target_name).await;
    }
    result.map_err(Status::unavailable)
}

/// How long a target waits for its replica to show the move it is asked to pull for.
const JOURNAL_WAIT: Duration = Duration::from_secs(10);

/// The instance, once this replica shows its move `session` journaled with this host as
/// the target (a pull for a move that is not, or no longer, in progress is refused, so a
/// late pull never leaves a copy nobody will commit).
async fn journaled_here(
    ctx: &Arc<Ctx>,
    key: &InstanceName,
    session: &str,
) -> Result<Instance, Status> {
    let mut rx = ctx.state.subscribe();
    let deadline = tokio::time::Instant::now() + JOURNAL_WAIT;
    loop {
        let inst = ctx
            .state
            .read(|s| s.instances.get(key).cloned())
            .ok_or_else(|| Status::not_found(format!("instance '{key}' not found")))?;
        match &inst.moving {
            Some(m) if m.session == session && m.target == ctx.node => return Ok(inst),
            Some(m) if m.session != session => {
                return Err(Status::failed_precondition(format!(
                    "instance {key} is in another move ({})",
                    m.describe()
                )))
            }
            _ => {}
        }
        if !matches!(
            tokio::time::timeout_at(deadline, rx.changed()).await,
            Ok(Ok(()))
        ) {
            return Err(Status::failed_precondition(format!(
                "no move of {key} to {} with session {session} is in progress",
                ctx.node
            )));
        }
    }
}

async fn pull(
    ctx: &Arc<Ctx>,
    inst: &Instance,
    target_name: &str,
    req: &ipb::PullInstanceRequest,
) -> Result<ipb::PullInstanceReply, String> {
    super::image_fetch::ensure_image(ctx, &inst.image_fingerprint).await?;
    if !req.delta {
        // A copy left here by an earlier move away (not yet removed by the stale-copy
        // sweep) would block the import: it is placed elsewhere, so remove it now.
        let placed_here = inst.location == ctx.node && target_name == inst.name.as_str();
        if !placed_here {
            let rt = ctx.runtime.clone();
            let n = target_name.to_string();
            tokio::task::spawn_blocking(move || {
                if rt.list().map(|l| l.contains(&n)).unwrap_or(false) {
                    let _ = rt.stop(&n, Duration::ZERO, true);
                    let _ = rt.delete(&n);
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        let mut cfg = super::agent::container_config(&ctx.images, inst)?;
        cfg.name = target_name.to_string();
        let rt = ctx.runtime.clone();
        tokio::task::spawn_blocking(move || rt.create(&cfg))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("creating the container here: {e}"))?;
    }
    let rt = ctx.runtime.clone();
    let n = target_name.to_string();
    let layer = tokio::task::spawn_blocking(move || rt.layer(&n))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut client = ctx
        .state
        .node()
        .peers
        .membership(&req.source_address)
        .map_err(|e| e.to_string())?;
    let mut stream = client
        .export_instance(ipb::ExportInstanceRequest {
            name: req.name.clone(),
            session: req.session.clone(),
            delta: req.delta,
        })
        .await
        .map_err(|s| format!("the source refused the export: {}", s.message()))?
        .into_inner();
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, String>>(8);
    let dest = layer.upper.clone();
    let range = ids(&layer);
    let job = tokio::task::spawn_blocking(move || {
        let mut r = ChannelReader::new(rx);
        transfer::import(&mut r, &dest, range, MAX_LAYER_BYTES)
    });
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk.data)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(s) => {
                let _ = tx.send(Err(s.message().to_string())).await;
                break;
            }
        }
    }
    drop(tx);
    let stats = job
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("importing the layer: {e}"))?;
    // Fault suite: the target dies with the layer imported, before the move commits.
    fail::fail_point!("mover-after-pull", |_| std::process::abort());
    Ok(ipb::PullInstanceReply {
        entries: stats.entries,
        bytes: stats.bytes,
        sha256: stats.sha256,
    })
}

/// Deletes a container imported for a move that did not commit (unless it is placed here).
pub(crate) async fn discard(ctx: &Arc<Ctx>, name: &str) {
    let placed_here = InstanceName::new(name)
        .ok()
        .and_then(|k| {
            ctx.state
                .read(|s| s.instances.get(&k).map(|i| i.location.clone()))
        })
        .is_some_and(|l| l == ctx.node);
    if !placed_here {
        let rt = ctx.runtime.clone();
        let n = name.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = rt.stop(&n, Duration::ZERO, true);
            rt.delete(&n)
        })
        .await;
    }
    ctx.importing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
}

/// Ends a move session on this member.
pub async fn end_move(ctx: Arc<Ctx>, req: ipb::EndMoveRequest) {
    ctx.export_sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&req.session);
    if req.target_name.is_empty() {
        return;
    }
    if req.keep {
        ctx.importing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.target_name);
    } else {
        discard(&ctx, &req.target_name).await;
    }
}
