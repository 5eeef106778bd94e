//! Moving a container's own layer (its overlay `upper/` directory, never the image) from
//! one host to another as one byte stream, so `shoal move` can send it over gRPC.
//!
//! ```text
//! source host                                      target host
//! export(upper, ids, since) ──stream──► import(stream, dest, ids, max_bytes)
//!   walk upper with *at() calls              stage every non-directory in a private
//!   (never through a symlink), owners        sibling `.NAME.incoming/` (data, owner,
//!   made container-relative, entries         mode, xattrs, mtime), verify the trailing
//!   unchanged since `since` skipped,         sha256, then apply: deletions, directories,
//!   deletions listed, sha256 trailer         renames into place, directory modes and
//!                                            mtimes last, syncfs
//! ```
//!
//! - `format`: the framed stream (magic, version, records, sha256 trailer) and its limits
//! - `ids`: container-relative owners; `xattrs`: which xattrs travel and the shifting of
//!   the ids inside file capabilities and POSIX ACLs
//! - `manifest`: what an export saw, so the next export sends only the changes (precopy)
//! - `export`, `import` (staging) and `apply` (the last, local step)
//!
//! A stream whose checksum fails changes nothing in `dest`; an error while applying a
//! verified stream leaves `dest` incomplete, and the caller must not use it (a first pass
//! deletes it, a move is retried from the start).

mod apply;
mod error;
mod export;
mod format;
mod ids;
mod import;
mod manifest;
mod xattrs;

#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod testutil;

pub use error::TransferError;
pub use export::{export, ExportStats};
pub use ids::IdRange;
pub use import::{import, ImportStats};
pub use manifest::Manifest;
