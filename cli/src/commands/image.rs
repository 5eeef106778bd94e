//! Image commands: `shoal image import|list|info|delete|alias set|alias delete`.
//!
//! Import streams the tarball: one header message (aliases, size), then the
//! file in 1 MiB chunks. A read error cancels the call, so the server never
//! mistakes a short upload for a whole one.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use shoal_proto::api::import_image_chunk::Chunk;
use shoal_proto::api::{
    DeleteAliasRequest, DeleteImageRequest, GetImageRequest, ImportImageChunk, ImportImageHeader,
    ListImagesRequest, SetAliasRequest,
};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::connect::Connection;
use crate::error::status_error;
use crate::output::{print, render_list, render_one, DetailFormat, Format};
use crate::view::image::{self, ImageView};

/// Size of each data message of an import.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

#[derive(Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Import an image tarball (LXD unified format, plain or gzip)
    Import {
        /// Path of the tarball
        file: PathBuf,
        /// Alias to give the image (repeatable)
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// List images
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one image
    #[command(alias = "show")]
    Info {
        /// Alias or fingerprint
        image: String,
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: DetailFormat,
    },
    /// Delete images no instance uses
    #[command(alias = "rm")]
    Delete {
        /// Aliases or fingerprints
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Manage aliases
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum AliasCommand {
    /// Point an alias at an image, creating or moving it
    #[command(alias = "create")]
    Set(SetAliasArgs),
    /// Remove an alias
    #[command(alias = "rm")]
    Delete {
        /// Alias to remove
        alias: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct SetAliasArgs {
    /// Alias name
    pub(crate) alias: String,
    /// Fingerprint or existing alias of the image
    pub(crate) image: String,
}

/// Runs an image subcommand.
pub(crate) async fn run(conn: &Connection, cmd: ImageCommand) -> Result<()> {
    let err = |s| status_error(s, conn);
    let mut c = conn.images();
    match cmd {
        ImageCommand::Import { file, aliases } => import(conn, file, aliases).await,
        ImageCommand::List { format } => {
            let resp = c.list(ListImagesRequest {}).await.map_err(err)?;
            crate::output::warn_stale(&resp);
            let resp = resp.into_inner();
            let mut views: Vec<ImageView> = resp.images.into_iter().map(ImageView::from).collect();
            views.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            print(&render_list(format, &views, image::table)?)
        }
        ImageCommand::Info { image, format } => {
            let img = c
                .get(GetImageRequest { image })
                .await
                .map_err(err)?
                .into_inner();
            print(&render_one(format, &ImageView::from(img), image::text)?)
        }
        ImageCommand::Delete { images } => {
            for image in images {
                c.delete(DeleteImageRequest { image }).await.map_err(err)?;
            }
            Ok(())
        }
        ImageCommand::Alias(AliasCommand::Set(a)) => {
            c.set_alias(SetAliasRequest {
                alias: a.alias,
                image: a.image,
            })
            .await
            .map_err(err)?;
            Ok(())
        }
        ImageCommand::Alias(AliasCommand::Delete { alias }) => {
            c.delete_alias(DeleteAliasRequest { alias })
                .await
                .map_err(err)?;
            Ok(())
        }
    }
}

/// Streams `file` to `Images.Import` and prints the new fingerprint.
async fn import(conn: &Connection, file: PathBuf, aliases: Vec<String>) -> Result<()> {
    let f = tokio::fs::File::open(&file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let meta = f
        .metadata()
        .await
        .with_context(|| format!("cannot stat {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    let size = meta.len();
    let (tx, rx) = mpsc::channel(4);
    let header = ImportImageChunk {
        chunk: Some(Chunk::Header(ImportImageHeader { aliases, size })),
    };
    tx.send(header)
        .await
        .context("cannot queue the import header")?;
    let (err_tx, err_rx) = oneshot::channel::<std::io::Error>();
    let progress = std::io::stderr().is_terminal();
    tokio::spawn(send_chunks(f, size, tx, err_tx, progress));

    let mut client = conn.images();
    let call = client.import(ReceiverStream::new(rx));
    let result = tokio::select! {
        r = call => r,
        Ok(e) = err_rx => {
            // Dropping the call resets the stream: the server sees an abort.
            clear_progress(progress);
            bail!("cannot read {}: {e}", file.display());
        }
    };
    clear_progress(progress);
    let img = result.map_err(|s| status_error(s, conn))?.into_inner();
    print(&format!(
        "Image imported with fingerprint: {}\n",
        img.fingerprint
    ))
}

/// Reads the file in [`CHUNK_SIZE`] pieces into `tx`; a read error goes to
/// `err` instead of ending the stream.
async fn send_chunks(
    mut f: tokio::fs::File,
    size: u64,
    tx: mpsc::Sender<ImportImageChunk>,
    err: oneshot::Sender<std::io::Error>,
    progress: bool,
) {
    let mut sent: u64 = 0;
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut n = 0;
        while n < CHUNK_SIZE {
            match f.read(&mut buf[n..]).await {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = err.send(e);
                    return;
                }
            }
        }
        if n == 0 {
            return;
        }
        buf.truncate(n);
        sent += n as u64;
        let msg = ImportImageChunk {
            chunk: Some(Chunk::Data(buf)),
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        if progress && size > 0 {
            eprint!("\rUploading image: {}%", sent.min(size) * 100 / size);
        }
    }
}

fn clear_progress(progress: bool) {
    if progress {
        eprint!("\r\x1b[K");
    }
}
