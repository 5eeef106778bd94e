//! Images on one host: import LXD-style unified tarballs (`metadata.yaml` + `rootfs/`)
//! into a content-addressed store, unpacked once and read-only, so that a container's
//! rootfs is an overlay of the image and its own upper layer.
//!
//! - `store`: the store layout, atomic import and delete
//! - `tarball`: the received bytes: streaming, fingerprint, compression
//! - `layout` and `unpack`: unpacking that refuses hostile tarballs and never follows
//!   symlinks (`fsops` holds its filesystem primitives)
//! - `metadata`: `metadata.yaml`; `signal`: stop signal names

mod error;
mod fsops;
mod layout;
mod metadata;
mod model;
mod signal;
mod store;
mod tarball;
#[cfg(test)]
mod testutil;
mod unpack;

pub use error::ImageError;
pub use metadata::{ImageMetadata, DEFAULT_STOP_SIGNAL};
pub use model::{ImportLimits, ImportedImage};
pub use signal::parse_signal;
pub use store::ImageStore;
pub use tarball::sha256_file;
