//! Errors of a layer transfer. Each names the step and the path (relative to the layer)
//! so a failed move says which file stopped it.

use std::io;
use std::path::PathBuf;

/// Everything that can stop an export or an import.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    // Reading the source layer.
    #[error("open the layer {path}: {source}")]
    OpenLayer { path: PathBuf, source: io::Error },
    #[error("read {path} in the layer: {source}")]
    ReadEntry { path: PathBuf, source: io::Error },
    #[error("{path} is device {major}:{minor}; only 0:0 whiteouts can be moved")]
    Device {
        path: PathBuf,
        major: u64,
        minor: u64,
    },
    #[error("{path} is nested deeper than {limit} directories")]
    TooDeep { path: PathBuf, limit: usize },
    #[error("{path}: {what} {id} is outside the container's id range ({base}, {size} ids)")]
    IdOutOfRange {
        path: PathBuf,
        what: &'static str,
        id: u64,
        base: u32,
        size: u32,
    },
    #[error("{path}: {field} is {len} bytes, more than the limit of {limit}")]
    TooLong {
        path: PathBuf,
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{path}: xattr {name} has a malformed value")]
    BadXattr { path: PathBuf, name: String },
    #[error("write the stream: {source}")]
    WriteStream { source: io::Error },

    // Reading the stream.
    #[error("read the stream: {source}")]
    ReadStream { source: io::Error },
    #[error("the stream ends early")]
    Truncated,
    #[error("not a layer stream (bad magic)")]
    BadMagic,
    #[error("layer stream version {found} is not supported (expected {expected})")]
    Version { found: u16, expected: u16 },
    #[error("unknown record type {tag:#04x}")]
    UnknownRecord { tag: u8 },
    #[error("{path}: unknown entry kind {kind}")]
    UnknownKind { path: PathBuf, kind: u8 },
    #[error("refused path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("{path}: mode {mode:#o} has bits besides the permissions")]
    BadMode { path: PathBuf, mode: u32 },
    #[error("{path}: mtime nanoseconds {nsec} out of range")]
    BadTime { path: PathBuf, nsec: u32 },
    #[error("{path} appears twice in the stream")]
    Duplicate { path: PathBuf },
    #[error("hard link {path} points at {target}, which is not an earlier non-directory")]
    BadLink { path: PathBuf, target: PathBuf },
    #[error("{path}: xattr {name} is not allowed")]
    XattrNotAllowed { path: PathBuf, name: String },
    #[error("the stream is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("checksum mismatch: the stream says {expected}, its data hashes to {actual}")]
    Checksum { expected: String, actual: String },
    #[error("the trailer counts {expected} {what}, the stream holds {found}")]
    TrailerCount {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("data after the end of the stream")]
    TrailingData,

    // Writing the destination.
    #[error("destination {path} exists and is not a directory")]
    DestNotDir { path: PathBuf },
    #[error("destination {path} is not empty; a full stream needs an empty or missing one")]
    DestNotEmpty { path: PathBuf },
    #[error("destination {path} is missing; a delta applies only onto an earlier copy")]
    DeltaWithoutBase { path: PathBuf },
    #[error("stage {path}: {source}")]
    Stage { path: PathBuf, source: io::Error },
    #[error("apply {path}: {source}")]
    Apply { path: PathBuf, source: io::Error },
    #[error("{path}: parent {parent} is not a directory")]
    ParentNotDir { path: PathBuf, parent: PathBuf },
    #[error("{path}: parent directory {parent} is missing")]
    ParentMissing { path: PathBuf, parent: PathBuf },
}
