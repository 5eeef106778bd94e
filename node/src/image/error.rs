//! Errors of the image store. Every refusal names the tarball entry (as written in the
//! archive) and the problem, so an operator can fix the image rather than guess.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while importing, reading or deleting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read directory {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("read the image source: {source}")]
    ReadSource { source: io::Error },
    #[error("write {path}: {source}")]
    WriteTemp { path: PathBuf, source: io::Error },
    #[error("sync the image store at {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
    #[error("read the tarball: {source}")]
    ReadArchive { source: io::Error },
    #[error("unpack entry {entry} to {path}: {source}")]
    Unpack {
        entry: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("read {path}: {source}")]
    ReadMetadataFile { path: PathBuf, source: io::Error },

    #[error("tarball is larger than the limit of {limit} bytes")]
    TarballTooLarge { limit: u64 },
    #[error("tarball unpacks to more than the limit of {limit} bytes")]
    UnpackedTooLarge { limit: u64 },
    #[error("entry {entry} is {size} bytes, larger than the limit of {limit} bytes")]
    EntryTooLarge {
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("tarball has more than the limit of {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("tarball is compressed with {found}; supported are uncompressed tar and gzip")]
    UnsupportedCompression { found: &'static str },

    #[error("tarball has no metadata.yaml at its top level")]
    MissingMetadata,
    #[error("tarball has no rootfs/ directory at its top level")]
    MissingRootfs,
    #[error("metadata.yaml is not valid yaml: {source}")]
    MetadataYaml { source: serde_yaml::Error },
    #[error("metadata.yaml field {field}: {problem}")]
    MetadataField {
        field: &'static str,
        problem: String,
    },
    #[error("entry {entry}: metadata.yaml is larger than {limit} bytes")]
    MetadataTooLarge { entry: String, limit: u64 },

    #[error("entry {entry}: path is absolute; entries must be relative")]
    AbsolutePath { entry: String },
    #[error("entry {entry}: path contains ..")]
    ParentComponent { entry: String },
    #[error("entry {entry}: hard link target {target} {problem}")]
    UnsafeHardLink {
        entry: String,
        target: String,
        problem: &'static str,
    },
    #[error(
        "entry {entry}: parent {parent} is a symlink; entries may not be created through symlinks"
    )]
    ThroughSymlink { entry: String, parent: PathBuf },
    #[error("entry {entry}: bad header: {problem}")]
    BadHeader { entry: String, problem: String },
    #[error("entry {entry}: {problem}")]
    Conflict {
        entry: String,
        problem: &'static str,
    },
    #[error("entry {entry}: device nodes are not allowed in images; the runtime creates /dev")]
    DeviceNode { entry: String },
    #[error("entry {entry}: unsupported entry type {kind}")]
    UnsupportedEntryType { entry: String, kind: String },
    #[error("entry {entry}: only metadata.yaml, rootfs/ and templates/ may be at the top level")]
    UnexpectedEntry { entry: String },

    #[error("invalid image fingerprint {fingerprint:?}: expected 64 lowercase hex digits")]
    InvalidFingerprint { fingerprint: String },
    #[error(
        "unknown signal {name:?}: expected a name like SIGUSR2, USR2, SIGRTMIN+3 or a number 1-64"
    )]
    InvalidSignal { name: String },
}
