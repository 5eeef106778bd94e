//! Images reach hosts on demand: a host that lacks an image fetches the tarball from a peer
//! that holds it (streamed in chunks over mutual TLS), imports it (which checks it like any
//! import and computes its fingerprint), refuses it if the fingerprint differs, and records
//! itself as a location. A background pass keeps every image on at least
//! [`MIN_COPIES`] hosts.

use shoal_proto::internal as ipb;
use shoal_raft::Command;
use std::io::Write;
use std::sync::Arc;

use super::ctx::Ctx;
use super::ops::now_ms;
use crate::image::ImportLimits;

/// How many hosts should hold each image.
pub const MIN_COPIES: usize = 3;

/// Makes sure image `fp` is on this host, fetching it from a peer if needed.
pub async fn ensure_image(ctx: &Arc<Ctx>, fp: &str) -> Result<(), String> {
    let have = {
        let images = ctx.images.clone();
        let f = fp.to_string();
        tokio::task::spawn_blocking(move || images.get(&f))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .is_some()
    };
    let (image, sources) = ctx.state.read(|s| {
        let img = s.images.get(fp).cloned();
        let sources: Vec<(String, String)> = img
            .as_ref()
            .map(|i| {
                i.locations
                    .iter()
                    .filter(|n| **n != ctx.node)
                    .filter_map(|n| s.members.get(n).map(|m| (n.clone(), m.address.clone())))
                    .collect()
            })
            .unwrap_or_default();
        (img, sources)
    });
    let image = image.ok_or_else(|| format!("image {fp} is not known to the cluster"))?;
    if have {
        if !image.locations.contains(&ctx.node) {
            record(ctx, &image).await?;
        }
        return Ok(());
    }
    let mut errors = Vec::new();
    for (name, addr) in sources {
        match fetch_from(ctx, fp, &addr).await {
            Ok(()) => {
                tracing::info!(image = %&fp[..12.min(fp.len())], from = %name, "image fetched");
                return record(ctx, &image).await;
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(if errors.is_empty() {
        format!("no other host holds image {}", &fp[..12.min(fp.len())])
    } else {
        format!(
            "image {} could not be fetched: {}",
            &fp[..12.min(fp.len())],
            errors.join("; ")
        )
    })
}

async fn record(ctx: &Arc<Ctx>, image: &shoal_raft::Image) -> Result<(), String> {
    ctx.state
        .submit(Command::AddImage {
            image: image.clone(),
            aliases: vec![],
            node: ctx.node.clone(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("recording the image's new location: {e}"))
}

async fn fetch_from(ctx: &Arc<Ctx>, fp: &str, addr: &str) -> Result<(), String> {
    let mut client = ctx
        .state
        .node()
        .peers
        .membership(addr)
        .map_err(|e| e.to_string())?;
    let mut stream = client
        .fetch_image(ipb::FetchImageRequest {
            fingerprint: fp.to_string(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    std::fs::create_dir_all(&ctx.spool_dir).map_err(|e| e.to_string())?;
    let path = ctx
        .spool_dir
        .join(format!("fetch-{}-{}", &fp[..12.min(fp.len())], now_ms()));
    let guard = SpoolFile(path.clone());
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let limits = ImportLimits::default();
    let mut total = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        total += chunk.data.len() as u64;
        if total > limits.max_tarball_bytes {
            return Err("the image is larger than the import limit".into());
        }
        file.write_all(&chunk.data).map_err(|e| e.to_string())?;
    }
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    let images = ctx.images.clone();
    let p = path.clone();
    let imported = tokio::task::spawn_blocking(move || images.import_file(&p, &limits))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    drop(guard);
    if imported.fingerprint != fp {
        let _ = ctx.images.delete(&imported.fingerprint);
        return Err(format!(
            "the peer sent an image with fingerprint {}, not {fp}: refused",
            imported.fingerprint
        ));
    }
    Ok(())
}

struct SpoolFile(std::path::PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs image replication every few seconds.
pub async fn replicate_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        replicate(&ctx).await;
    }
}

/// One pass of image replication: for each image held by fewer than [`MIN_COPIES`]
/// hosts, the first hosts (by member id) that lack it fetch it, so that the hosts agree
/// on who does the work without talking.
async fn replicate(ctx: &Arc<Ctx>) {
    let todo: Vec<String> = ctx.state.read(|s| {
        let mut ids: Vec<(&u64, &String)> = s.members.values().map(|m| (&m.id, &m.name)).collect();
        ids.sort();
        s.images
            .values()
            .filter(|img| img.locations.len() < MIN_COPIES && !img.locations.contains(&ctx.node))
            .filter(|img| {
                let missing = MIN_COPIES - img.locations.len();
                ids.iter()
                    .filter(|(_, n)| !img.locations.contains(*n))
                    .take(missing)
                    .any(|(_, n)| **n == ctx.node)
            })
            .map(|img| img.fingerprint.clone())
            .collect()
    });
    for fp in todo {
        if let Err(e) = ensure_image(ctx, &fp).await {
            tracing::debug!(image = %fp, error = %e, "image replication deferred");
        }
    }
}
