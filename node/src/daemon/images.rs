//! The `Images` service: streamed import into the host's image store, then a committed
//! record in the cluster state; list, get, delete and aliases.

use shoal_proto::api as pb;
use shoal_raft::{Command, CommandResult, Image};
use std::io::Write;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::auth::require;
use super::convert;
use super::ctx::Ctx;
use super::error::ApiError;
use super::ops::now_ms;
use crate::cluster::pki::Role;
use crate::image::ImportLimits;

/// The images service.
pub struct ImagesService {
    pub(crate) ctx: Arc<Ctx>,
}

impl ImagesService {
    async fn resolve(&self, name: &str) -> Result<Image, Status> {
        self.ctx
            .state
            .read_or_catch_up(|s| s.resolve_image(name).cloned(), Option::is_some)
            .await
            .ok_or_else(|| {
                Status::not_found(format!("image '{name}' not found (see `shoal image list`)"))
            })
    }
}

/// Removes the spooled upload however the import ends.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What an import checks of its first message: it must be the header. Pure (the fuzz
/// targets call it too).
pub fn check_import_header(
    first: Option<pb::ImportImageChunk>,
) -> Result<pb::ImportImageHeader, Status> {
    match first {
        Some(pb::ImportImageChunk {
            chunk: Some(pb::import_image_chunk::Chunk::Header(h)),
        }) => Ok(h),
        _ => Err(Status::invalid_argument(
            "the first message of an import must be its header",
        )),
    }
}

#[tonic::async_trait]
impl pb::images_server::Images for ImagesService {
    async fn import(
        &self,
        req: Request<Streaming<pb::ImportImageChunk>>,
    ) -> Result<Response<pb::Image>, Status> {
        require(&req, Role::Operator, "import images")?;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Err(e)) => return Err(e),
            first => check_import_header(first.and_then(Result::ok))?,
        };
        for alias in &header.aliases {
            let taken = self.ctx.state.read(|s| s.aliases.get(alias).cloned());
            if taken.is_some() {
                return Err(Status::already_exists(format!(
                    "alias '{alias}' already exists: delete it with `shoal image alias delete {alias}` or move it with `shoal image alias set`"
                )));
            }
        }
        let limits = ImportLimits::default();
        std::fs::create_dir_all(&self.ctx.spool_dir)
            .map_err(|e| ApiError::Internal(format!("creating the spool dir: {e}")))?;
        let spool = Spool(self.ctx.spool_dir.join(format!(
            "import-{}-{}",
            now_ms(),
            std::process::id()
        )));
        let mut file = std::fs::File::create(&spool.0)
            .map_err(|e| ApiError::Internal(format!("creating {}: {e}", spool.0.display())))?;
        let mut total: u64 = 0;
        while let Some(msg) = stream.next().await {
            match msg?.chunk {
                Some(pb::import_image_chunk::Chunk::Data(d)) => {
                    total += d.len() as u64;
                    if total > limits.max_tarball_bytes {
                        return Err(Status::invalid_argument(format!(
                            "image is larger than the limit of {} bytes",
                            limits.max_tarball_bytes
                        )));
                    }
                    file.write_all(&d).map_err(|e| {
                        ApiError::Internal(format!("writing {}: {e}", spool.0.display()))
                    })?;
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "only data may follow the header of an import",
                    ))
                }
            }
        }
        drop(file);
        if total == 0 {
            return Err(Status::invalid_argument("the image file is empty"));
        }
        let store = self.ctx.images.clone();
        let path = spool.0.clone();
        let imported = tokio::task::spawn_blocking(move || store.import_file(&path, &limits))
            .await
            .map_err(|e| ApiError::Internal(format!("import task: {e}")))?
            .map_err(ApiError::from)?;
        let m = &imported.metadata;
        let image = Image {
            fingerprint: imported.fingerprint.clone(),
            size: imported.size,
            architecture: m.architecture.clone(),
            os: m.os.clone(),
            release: m.release.clone(),
            description: m.description.clone(),
            stop_signal: m.stop_signal.clone(),
            created_at_ms: now_ms(),
            locations: Default::default(),
        };
        let res = self
            .ctx
            .state
            .submit(Command::AddImage {
                image,
                aliases: header.aliases.clone(),
                node: self.ctx.node.clone(),
            })
            .await?;
        let CommandResult::Image(img) = res else {
            return Err(ApiError::Internal("add image returned no image".into()).into());
        };
        tracing::info!(fingerprint = %img.fingerprint, size = img.size, "image imported");
        Ok(Response::new(
            self.ctx.state.read(|s| convert::image(s, &img)),
        ))
    }

    async fn list(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        require(&req, Role::Viewer, "list images")?;
        Ok(self
            .ctx
            .state
            .current(|s| pb::ListImagesResponse {
                images: s.images.values().map(|i| convert::image(s, i)).collect(),
            })
            .await)
    }

    async fn get(&self, req: Request<pb::GetImageRequest>) -> Result<Response<pb::Image>, Status> {
        require(&req, Role::Viewer, "read images")?;
        let img = self.resolve(&req.get_ref().image).await?;
        Ok(Response::new(
            self.ctx.state.read(|s| convert::image(s, &img)),
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        require(&req, Role::Operator, "delete images")?;
        let img = self.resolve(&req.get_ref().image).await?;
        self.ctx
            .state
            .submit(Command::DeleteImage {
                fingerprint: img.fingerprint.clone(),
            })
            .await?;
        let store = self.ctx.images.clone();
        let fp = img.fingerprint.clone();
        tokio::task::spawn_blocking(move || store.delete(&fp))
            .await
            .map_err(|e| ApiError::Internal(format!("delete task: {e}")))?
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    async fn set_alias(
        &self,
        req: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        require(&req, Role::Operator, "change image aliases")?;
        let r = req.into_inner();
        let img = self.resolve(&r.image).await?;
        self.ctx
            .state
            .submit(Command::SetAlias {
                alias: r.alias,
                fingerprint: img.fingerprint.clone(),
            })
            .await?;
        Ok(Response::new(
            self.ctx.state.read(|s| convert::image(s, &img)),
        ))
    }

    async fn delete_alias(
        &self,
        req: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        require(&req, Role::Operator, "change image aliases")?;
        let alias = req.into_inner().alias;
        let known = self
            .ctx
            .state
            .read_or_catch_up(|s| s.aliases.contains_key(&alias), |k| *k)
            .await;
        if !known {
            return Err(Status::not_found(format!("alias '{alias}' not found")));
        }
        self.ctx
            .state
            .submit(Command::DeleteAlias { alias })
            .await?;
        Ok(Response::new(pb::DeleteAliasResponse {}))
    }
}
