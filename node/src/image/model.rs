//! The values the image store takes in (limits) and hands out (imported images).

use serde::{Deserialize, Serialize};

use super::metadata::ImageMetadata;

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedImage {
    /// sha256 of the tarball bytes as imported, lowercase hex.
    pub fingerprint: String,
    /// Size of the tarball in bytes.
    pub size: u64,
    pub metadata: ImageMetadata,
}

/// Bounds on what an import may consume. Exceeding one refuses the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Bytes of the tarball as received (compressed if gzip).
    pub max_tarball_bytes: u64,
    /// Bytes of a single entry once unpacked.
    pub max_entry_bytes: u64,
    /// Entries in the tarball (files, directories, links).
    pub max_entries: u64,
    /// Bytes of the uncompressed tar stream, headers included: stops gzip bombs.
    pub max_unpacked_bytes: u64,
}

impl Default for ImportLimits {
    /// 8 GiB tarball, 4 GiB per entry, a million entries, 32 GiB unpacked.
    fn default() -> Self {
        Self {
            max_tarball_bytes: 8 << 30,
            max_entry_bytes: 4 << 30,
            max_entries: 1_000_000,
            max_unpacked_bytes: 32 << 30,
        }
    }
}
