//! Writing a layer as a stream. The layer may belong to a running container (precopy),
//! whose processes can rename, swap and replace anything in it while it is read, so:
//!
//! - every step is relative to an open directory fd (`openat`/`fstatat` with
//!   `O_NOFOLLOW`, listing through `/proc/self/fd/N`): a directory swapped for a symlink
//!   is skipped, never followed out of the layer; files are opened `O_NONBLOCK` (a
//!   file swapped for a FIFO cannot block) and checked with `fstat` before a byte is
//!   read;
//! - an entry that changes or vanishes while read is marked racy (or left out of the
//!   manifest), so the next export sends it again; a file that shrinks is padded;
//! - the final export runs with the container stopped, and is exact.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};
use xattr::FileExt;

use super::error::TransferError;
use super::format::{Counts, Encoder, EntryHead, Kind, MAX_PATH, MAX_XATTRS};
use super::ids::IdRange;
use super::manifest::{deletions, must_send, Manifest, Stamp};
use super::xattrs::{self, Xattr};

/// Deepest directory nesting exported (one open fd per level).
pub(crate) const MAX_DEPTH: usize = 256;
const OUT_BUFFER: usize = 256 * 1024;
const READ_BUFFER: usize = 256 * 1024;

/// What an export sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportStats {
    /// Entries sent: directories, files, links, symlinks, whiteouts, FIFOs.
    pub entries: u64,
    /// File data bytes sent.
    pub bytes: u64,
    /// Deletion records (delta only).
    pub deleted: u64,
    /// Length of the whole stream.
    pub stream_bytes: u64,
    /// Hex sha256 of the stream before its checksum (the trailer's value).
    pub sha256: String,
}

/// Writes the layer `upper` of a container with host ids `ids` to `out`. With
/// `since` (the manifest of an earlier export of the same layer) only entries new or
/// changed since then are sent, plus deletion records. Returns what this export saw,
/// for the next one. Sockets are skipped; device nodes other than whiteouts refused.
pub fn export<W: Write>(
    upper: &Path,
    ids: IdRange,
    since: Option<&Manifest>,
    out: &mut W,
) -> Result<(Manifest, ExportStats), TransferError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root =
        nix::fcntl::open(upper, flags, Mode::empty()).map_err(|e| TransferError::OpenLayer {
            path: upper.to_path_buf(),
            source: e.into(),
        })?;
    let enc = Encoder::new(BufWriter::with_capacity(OUT_BUFFER, out), since.is_some())?;
    let mut ex = Exporter {
        ids,
        since,
        enc,
        manifest: Manifest::default(),
        links: HashMap::new(),
        counts: Counts::default(),
        buf: vec![0u8; READ_BUFFER],
    };
    ex.dir(root, PathBuf::new(), 0)?;
    if let Some(since) = since {
        for path in deletions(since, &ex.manifest) {
            ex.enc.delete(path.as_os_str().as_bytes())?;
            ex.counts.deleted += 1;
        }
    }
    let counts = ex.counts;
    let (sha256, stream_bytes) = ex.enc.finish(counts)?;
    let stats = ExportStats {
        entries: counts.entries,
        bytes: counts.data_bytes,
        deleted: counts.deleted,
        stream_bytes,
        sha256,
    };
    Ok((ex.manifest, stats))
}

struct Exporter<'a, W: Write> {
    ids: IdRange,
    since: Option<&'a Manifest>,
    enc: Encoder<W>,
    manifest: Manifest,
    /// (dev, ino) of multiply linked inodes → the first path sent.
    links: HashMap<(u64, u64), Vec<u8>>,
    counts: Counts,
    buf: Vec<u8>,
}

/// Where to read an entry's xattrs from.
enum XattrSource<'f> {
    File(&'f File),
    /// `/proc/self/fd/N`, followed to the open directory.
    OpenDir(PathBuf),
    /// `/proc/self/fd/PARENT/NAME`, the last component not followed.
    Entry(PathBuf),
}

fn read_err(path: &Path) -> impl Fn(io::Error) -> TransferError + '_ {
    move |source| TransferError::ReadEntry {
        path: path.to_path_buf(),
        source,
    }
}

/// Errors that mean "the entry changed under us": skip it, the next export sees it.
fn raced(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENXIO | Errno::EINVAL
    )
}

impl<W: Write> Exporter<'_, W> {
    fn dir(&mut self, dir: OwnedFd, rel: PathBuf, depth: usize) -> Result<(), TransferError> {
        let err = |e: Errno| TransferError::ReadEntry {
            path: rel.clone(),
            source: e.into(),
        };
        let st = fstat(&dir).map_err(err)?;
        // The open directory itself, through its fd: never a path lookup.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let (host_x, wire_x) = self.xattrs(&XattrSource::OpenDir(by_fd.clone()), &rel)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&by_fd).map_err(read_err(&rel))? {
            names.push(entry.map_err(read_err(&rel))?.file_name().into_vec());
        }
        names.sort();
        let mut stamp = Stamp::new(&st, xattrs::digest(&host_x));
        stamp.racy |= stamp.moved(&fstat(&dir).map_err(err)?);
        if must_send(self.since, &rel, &stamp) {
            self.entry(&rel, &st, Kind::Dir, wire_x)?;
        }
        self.manifest.entries.insert(rel.clone(), stamp);
        for name in names {
            self.child(&dir, &rel, OsStr::from_bytes(&name), depth)?;
        }
        Ok(())
    }

    fn child(
        &mut self,
        dir: &OwnedFd,
        parent: &Path,
        name: &OsStr,
        depth: usize,
    ) -> Result<(), TransferError> {
        let rel = parent.join(name);
        if rel.as_os_str().len() > MAX_PATH {
            return Err(TransferError::TooLong {
                path: rel.clone(),
                field: "path",
                len: rel.as_os_str().len(),
                limit: MAX_PATH,
            });
        }
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if raced(e) => return Ok(()),
            Err(e) => return Err(read_err(&rel)(e.into())),
        };
        let format = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        match format {
            SFlag::S_IFDIR => {
                if depth + 1 > MAX_DEPTH {
                    return Err(TransferError::TooDeep {
                        path: rel,
                        limit: MAX_DEPTH,
                    });
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                match openat(dir, name, flags, Mode::empty()) {
                    Ok(sub) => self.dir(sub, rel, depth + 1),
                    Err(e) if raced(e) => Ok(()),
                    Err(e) => Err(read_err(&rel)(e.into())),
                }
            }
            SFlag::S_IFREG => self.file(dir, name, rel),
            SFlag::S_IFLNK => match readlinkat(dir, name) {
                Ok(target) => {
                    let target = target.into_vec();
                    self.special(dir, name, rel, st, Kind::Symlink { target })
                }
                Err(e) if raced(e) => Ok(()),
                Err(e) => Err(read_err(&rel)(e.into())),
            },
            SFlag::S_IFCHR if st.st_rdev == 0 => self.special(dir, name, rel, st, Kind::Whiteout),
            SFlag::S_IFCHR | SFlag::S_IFBLK => Err(TransferError::Device {
                path: rel,
                major: major(st.st_rdev),
                minor: minor(st.st_rdev),
            }),
            SFlag::S_IFIFO => self.special(dir, name, rel, st, Kind::Fifo),
            // Sockets mean nothing on another host; anything else is unknown.
            _ => Ok(()),
        }
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, rel: PathBuf) -> Result<(), TransferError> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let opened = match openat(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
            Err(Errno::EPERM) => openat(dir, name, flags, Mode::empty()),
            other => other,
        };
        let file = match opened {
            Ok(fd) => File::from(fd),
            Err(e) if raced(e) => return Ok(()),
            Err(e) => return Err(read_err(&rel)(e.into())),
        };
        let st = fstat(&file).map_err(|e| read_err(&rel)(e.into()))?;
        if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Ok(());
        }
        let (host_x, wire_x) = self.xattrs(&XattrSource::File(&file), &rel)?;
        let mut stamp = Stamp::new(&st, xattrs::digest(&host_x));
        if !must_send(self.since, &rel, &stamp) {
            self.manifest.entries.insert(rel, stamp);
            return Ok(());
        }
        if self.linked(&rel, &st)? {
            self.manifest.entries.insert(rel, stamp);
            return Ok(());
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        self.entry(&rel, &st, Kind::File { size }, wire_x)?;
        let mut left = size;
        let mut file_ref = &file;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file_ref.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(&rel)(e)),
            };
            self.enc.put(&self.buf[..n])?;
            left -= n as u64;
        }
        if left > 0 {
            // The file shrank while read: pad, and send it again next time.
            stamp.racy = true;
            self.buf.fill(0);
            while left > 0 {
                let n = left.min(self.buf.len() as u64) as usize;
                self.enc.put(&self.buf[..n])?;
                left -= n as u64;
            }
        }
        stamp.racy |= stamp.moved(&fstat(&file).map_err(|e| read_err(&rel)(e.into()))?);
        self.counts.data_bytes += size;
        self.manifest.entries.insert(rel, stamp);
        Ok(())
    }

    /// Symlinks, whiteouts and FIFOs: no data, xattrs read through the parent's fd.
    fn special(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: PathBuf,
        st: FileStat,
        kind: Kind,
    ) -> Result<(), TransferError> {
        let mut proc_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        proc_path.push(name);
        let (host_x, wire_x) = self.xattrs(&XattrSource::Entry(proc_path), &rel)?;
        let mut stamp = Stamp::new(&st, xattrs::digest(&host_x));
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(after) => stamp.racy |= stamp.moved(&after),
            Err(e) if raced(e) => return Ok(()),
            Err(e) => return Err(read_err(&rel)(e.into())),
        }
        if must_send(self.since, &rel, &stamp) && !self.linked(&rel, &st)? {
            self.entry(&rel, &st, kind, wire_x)?;
        }
        self.manifest.entries.insert(rel, stamp);
        Ok(())
    }

    /// Sends a link record if this inode was already sent under another path.
    fn linked(&mut self, rel: &Path, st: &FileStat) -> Result<bool, TransferError> {
        if st.st_nlink < 2 {
            return Ok(false);
        }
        let path = rel.as_os_str().as_bytes();
        match self.links.get(&(st.st_dev, st.st_ino)) {
            Some(first) => {
                self.enc.link(path, first)?;
                self.counts.entries += 1;
                Ok(true)
            }
            None => {
                self.links.insert((st.st_dev, st.st_ino), path.to_vec());
                Ok(false)
            }
        }
    }

    fn entry(
        &mut self,
        rel: &Path,
        st: &FileStat,
        kind: Kind,
        xattrs: Vec<Xattr>,
    ) -> Result<(), TransferError> {
        let head = EntryHead {
            path: rel.as_os_str().as_bytes().to_vec(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: self.ids.container_id(st.st_uid, rel, "uid")?,
            gid: self.ids.container_id(st.st_gid, rel, "gid")?,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            xattrs,
        };
        self.counts.entries += 1;
        self.enc.entry(&head)
    }

    /// The entry's travelling xattrs: (host values sorted, for the manifest; wire values).
    fn xattrs(
        &self,
        src: &XattrSource,
        rel: &Path,
    ) -> Result<(Vec<Xattr>, Vec<Xattr>), TransferError> {
        let listed = match src {
            XattrSource::File(f) => f.list_xattr(),
            XattrSource::OpenDir(p) => xattr::list_deref(p),
            XattrSource::Entry(p) => xattr::list(p),
        };
        let names: Vec<_> = match listed {
            Ok(names) => names.collect(),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Vec::new(),
            Err(e) => return Err(read_err(rel)(e)),
        };
        let mut host = Vec::new();
        for name in names {
            if !xattrs::allowed(name.as_bytes()) {
                continue;
            }
            let value = match src {
                XattrSource::File(f) => f.get_xattr(&name),
                XattrSource::OpenDir(p) => xattr::get_deref(p, &name),
                XattrSource::Entry(p) => xattr::get(p, &name),
            }
            .map_err(read_err(rel))?;
            if let Some(value) = value {
                host.push((name.into_vec(), value));
            }
        }
        host.sort();
        let mut wire = Vec::with_capacity(host.len());
        for (name, value) in &host {
            if let Some(v) = xattrs::to_wire(name, value, self.ids, rel)? {
                wire.push((name.clone(), v));
            }
        }
        if wire.len() > MAX_XATTRS {
            return Err(TransferError::TooLong {
                path: rel.to_path_buf(),
                field: "xattr list",
                len: wire.len(),
                limit: MAX_XATTRS,
            });
        }
        Ok((host, wire))
    }
}
