//! The layer stream: a small framed format, little-endian, hashed as it goes.
//!
//! ```text
//! header   "SHOALXFR" version:u16 flags:u8 (bit 0: delta)
//! entry    'E' path kind:u8 mode:u32 uid:u32 gid:u32 mtime_s:i64 mtime_ns:u32
//!              n:u16 (name:bytes16 value:bytes32)*n  body
//!          body: file = size:u64 + data; symlink = target:bytes32; dir, whiteout,
//!          fifo = nothing
//! link     'L' path target        (a hard link to an earlier non-directory entry)
//! delete   'D' path               (delta only: remove path, recursively)
//! trailer  'Z' entries:u64 deleted:u64 data_bytes:u64 sha256[32]
//! ```
//! `path` is `bytes32` (u32 length + bytes): relative, '/'-separated, no empty, `.` or
//! `..` component, no NUL; "" is the layer's root. Owners are container-relative. The
//! sha256 covers every byte before it; nothing may follow it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::TransferError;
use super::xattrs::Xattr;

pub(crate) const MAGIC: &[u8; 8] = b"SHOALXFR";
pub(crate) const VERSION: u16 = 1;
const FLAG_DELTA: u8 = 1;

pub(crate) const TAG_ENTRY: u8 = b'E';
pub(crate) const TAG_LINK: u8 = b'L';
pub(crate) const TAG_DELETE: u8 = b'D';
pub(crate) const TAG_END: u8 = b'Z';

pub(crate) const MAX_PATH: usize = 4096;
pub(crate) const MAX_XATTRS: usize = 1024;
pub(crate) const MAX_XATTR_NAME: usize = 255;
pub(crate) const MAX_XATTR_VALUE: usize = 65536;

const KIND_DIR: u8 = 1;
const KIND_FILE: u8 = 2;
const KIND_SYMLINK: u8 = 3;
const KIND_WHITEOUT: u8 = 4;
const KIND_FIFO: u8 = 5;

/// What an entry is; a file's data follows its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File {
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// An overlay whiteout: a 0:0 character device.
    Whiteout,
    Fifo,
}

/// An entry's header, owners container-relative.
#[derive(Clone, Debug)]
pub(crate) struct EntryHead {
    pub(crate) path: Vec<u8>,
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: (i64, u32),
    pub(crate) xattrs: Vec<Xattr>,
}

/// Totals the trailer carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) entries: u64,
    pub(crate) deleted: u64,
    pub(crate) data_bytes: u64,
}

/// Writes records and hashes every byte.
pub(crate) struct Encoder<W: Write> {
    out: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(out: W, delta: bool) -> Result<Encoder<W>, TransferError> {
        let mut enc = Encoder {
            out,
            hasher: Sha256::new(),
            written: 0,
        };
        enc.put(MAGIC)?;
        enc.put(&VERSION.to_le_bytes())?;
        enc.put(&[if delta { FLAG_DELTA } else { 0 }])?;
        Ok(enc)
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|source| TransferError::WriteStream { source })
    }

    fn bytes16(&mut self, b: &[u8]) -> Result<(), TransferError> {
        self.put(&(b.len() as u16).to_le_bytes())?;
        self.put(b)
    }

    fn bytes32(&mut self, b: &[u8]) -> Result<(), TransferError> {
        self.put(&(b.len() as u32).to_le_bytes())?;
        self.put(b)
    }

    /// An entry header; a file's `size` data bytes must follow through `put`.
    pub(crate) fn entry(&mut self, e: &EntryHead) -> Result<(), TransferError> {
        self.put(&[TAG_ENTRY])?;
        self.bytes32(&e.path)?;
        let kind = match e.kind {
            Kind::Dir => KIND_DIR,
            Kind::File { .. } => KIND_FILE,
            Kind::Symlink { .. } => KIND_SYMLINK,
            Kind::Whiteout => KIND_WHITEOUT,
            Kind::Fifo => KIND_FIFO,
        };
        self.put(&[kind])?;
        for v in [e.mode, e.uid, e.gid] {
            self.put(&v.to_le_bytes())?;
        }
        self.put(&e.mtime.0.to_le_bytes())?;
        self.put(&e.mtime.1.to_le_bytes())?;
        self.put(&(e.xattrs.len() as u16).to_le_bytes())?;
        for (name, value) in &e.xattrs {
            self.bytes16(name)?;
            self.bytes32(value)?;
        }
        match &e.kind {
            Kind::File { size } => self.put(&size.to_le_bytes()),
            Kind::Symlink { target } => self.bytes32(target),
            _ => Ok(()),
        }
    }

    pub(crate) fn link(&mut self, path: &[u8], target: &[u8]) -> Result<(), TransferError> {
        self.put(&[TAG_LINK])?;
        self.bytes32(path)?;
        self.bytes32(target)
    }

    pub(crate) fn delete(&mut self, path: &[u8]) -> Result<(), TransferError> {
        self.put(&[TAG_DELETE])?;
        self.bytes32(path)
    }

    /// The trailer; returns the hex sha256 and the stream's length.
    pub(crate) fn finish(mut self, counts: Counts) -> Result<(String, u64), TransferError> {
        self.put(&[TAG_END])?;
        for v in [counts.entries, counts.deleted, counts.data_bytes] {
            self.put(&v.to_le_bytes())?;
        }
        let digest = self.hasher.clone().finalize();
        self.put(&digest)?;
        self.out
            .flush()
            .map_err(|source| TransferError::WriteStream { source })?;
        Ok((hex::encode(digest), self.written))
    }
}

/// A record as read; a file entry's data must be read with `Decoder::fill` next.
#[derive(Debug)]
pub(crate) enum Record {
    Entry(EntryHead),
    Link {
        path: Vec<u8>,
        target: Vec<u8>,
    },
    Delete {
        path: Vec<u8>,
    },
    /// The trailer, checksum verified.
    End {
        counts: Counts,
        sha256: String,
    },
}

/// Reads records, hashing every byte and refusing more than `limit` bytes.
pub(crate) struct Decoder<R: Read> {
    inp: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> Decoder<R> {
    /// Reads the header; returns the decoder and whether the stream is a delta.
    pub(crate) fn new(inp: R, limit: u64) -> Result<(Decoder<R>, bool), TransferError> {
        let mut dec = Decoder {
            inp,
            hasher: Sha256::new(),
            read: 0,
            limit,
        };
        let mut magic = [0u8; 8];
        dec.fill(&mut magic)?;
        if &magic != MAGIC {
            return Err(TransferError::BadMagic);
        }
        let version = u16::from_le_bytes(dec.array()?);
        if version != VERSION {
            return Err(TransferError::Version {
                found: version,
                expected: VERSION,
            });
        }
        let [flags] = dec.array()?;
        Ok((dec, flags & FLAG_DELTA != 0))
    }

    /// Fills `buf` from the stream (file data or fields).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<(), TransferError> {
        if self.read + buf.len() as u64 > self.limit {
            return Err(TransferError::TooLarge { limit: self.limit });
        }
        self.inp.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => TransferError::Truncated,
            _ => TransferError::ReadStream { source: e },
        })?;
        self.hasher.update(&*buf);
        self.read += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TransferError> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, TransferError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, TransferError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bytes(
        &mut self,
        len: usize,
        path: &[u8],
        field: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, TransferError> {
        if len > limit {
            return Err(TransferError::TooLong {
                path: lossy(path),
                field,
                len,
                limit,
            });
        }
        let mut b = vec![0u8; len];
        self.fill(&mut b)?;
        Ok(b)
    }

    fn bytes32(
        &mut self,
        path: &[u8],
        field: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, TransferError> {
        let len = self.u32()? as usize;
        self.bytes(len, path, field, limit)
    }

    fn path(&mut self) -> Result<Vec<u8>, TransferError> {
        self.bytes32(b"", "path", MAX_PATH)
    }

    pub(crate) fn next(&mut self) -> Result<Record, TransferError> {
        let [tag] = self.array()?;
        match tag {
            TAG_ENTRY => self.entry().map(Record::Entry),
            TAG_LINK => {
                let path = self.path()?;
                let target = self.bytes32(&path, "link target", MAX_PATH)?;
                Ok(Record::Link { path, target })
            }
            TAG_DELETE => Ok(Record::Delete { path: self.path()? }),
            TAG_END => self.end(),
            tag => Err(TransferError::UnknownRecord { tag }),
        }
    }

    fn entry(&mut self) -> Result<EntryHead, TransferError> {
        let path = self.path()?;
        let [kind] = self.array()?;
        let (mode, uid, gid) = (self.u32()?, self.u32()?, self.u32()?);
        let mtime = (i64::from_le_bytes(self.array()?), self.u32()?);
        let n = u16::from_le_bytes(self.array()?) as usize;
        if n > MAX_XATTRS {
            return Err(TransferError::TooLong {
                path: lossy(&path),
                field: "xattr list",
                len: n,
                limit: MAX_XATTRS,
            });
        }
        let mut xattrs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u16::from_le_bytes(self.array()?) as usize;
            let name = self.bytes(len, &path, "xattr name", MAX_XATTR_NAME)?;
            let value = self.bytes32(&path, "xattr value", MAX_XATTR_VALUE)?;
            xattrs.push((name, value));
        }
        let kind = match kind {
            KIND_DIR => Kind::Dir,
            KIND_FILE => Kind::File { size: self.u64()? },
            KIND_SYMLINK => Kind::Symlink {
                target: self.bytes32(&path, "symlink target", MAX_PATH)?,
            },
            KIND_WHITEOUT => Kind::Whiteout,
            KIND_FIFO => Kind::Fifo,
            kind => {
                return Err(TransferError::UnknownKind {
                    path: lossy(&path),
                    kind,
                })
            }
        };
        Ok(EntryHead {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn end(&mut self) -> Result<Record, TransferError> {
        let counts = Counts {
            entries: self.u64()?,
            deleted: self.u64()?,
            data_bytes: self.u64()?,
        };
        let actual = self.hasher.clone().finalize();
        let expected: [u8; 32] = self.array()?;
        if expected[..] != actual[..] {
            return Err(TransferError::Checksum {
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
        let mut probe = [0u8; 1];
        loop {
            match self.inp.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => return Err(TransferError::TrailingData),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(TransferError::ReadStream { source }),
            }
        }
        Ok(Record::End {
            counts,
            sha256: hex::encode(actual),
        })
    }
}

fn lossy(path: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(path).into_owned())
}

/// A stream path as a relative `PathBuf`; "" (the root) only if `root_ok`.
pub(crate) fn checked_path(bytes: &[u8], root_ok: bool) -> Result<PathBuf, TransferError> {
    let refuse = |reason| TransferError::BadPath {
        path: String::from_utf8_lossy(bytes).into_owned(),
        reason,
    };
    if bytes.is_empty() {
        return if root_ok {
            Ok(PathBuf::new())
        } else {
            Err(refuse("the layer's root cannot be linked or deleted"))
        };
    }
    if bytes.len() > MAX_PATH {
        return Err(refuse("too long"));
    }
    if bytes.contains(&0) {
        return Err(refuse("contains NUL"));
    }
    if bytes[0] == b'/' {
        return Err(refuse("absolute"));
    }
    for part in bytes.split(|b| *b == b'/') {
        match part {
            b"" => return Err(refuse("empty component")),
            b"." => return Err(refuse("'.' component")),
            b".." => return Err(refuse("'..' component")),
            _ => {}
        }
    }
    use std::os::unix::ffi::OsStrExt;
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)).to_path_buf())
}
