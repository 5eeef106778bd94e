//! Reading a layer stream: every non-directory is first built complete (data, owner,
//! mode, xattrs, mtime) in a private staging directory next to `dest`, on the same
//! filesystem; only once the trailing sha256 matches does `apply` touch `dest`. So a
//! corrupted or truncated stream, a refused entry or a full disk while receiving leaves
//! `dest` as it was.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use xattr::FileExt;

use super::apply::apply;
use super::error::TransferError;
use super::format::{checked_path, Counts, Decoder, EntryHead, Kind, Record};
use super::ids::IdRange;
use super::xattrs::{self, Xattr};

const IN_BUFFER: usize = 256 * 1024;

/// What an import applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStats {
    /// Whether the stream was a delta (applied onto an earlier copy).
    pub delta: bool,
    /// Entries applied (directories, files, links, symlinks, whiteouts, FIFOs).
    pub entries: u64,
    /// File data bytes received.
    pub bytes: u64,
    /// Paths deleted (delta).
    pub deleted: u64,
    /// Hex sha256 of the stream, verified.
    pub sha256: String,
}

/// Reads a layer stream into `dest` for a container with host ids `ids`: a full stream
/// into a missing or empty `dest` (created 0700 if missing; its parent must exist), a
/// delta onto the copy an earlier import made. At most `max_bytes` of stream are read,
/// and `input` must end (EOF) right after the trailer: a transport that stays open
/// (a bidirectional RPC) must close its sending side first. Blocking: run it on a
/// blocking thread. One import per `dest` at a time (it stages in `.NAME.incoming`
/// beside `dest`). The plan (every path and directory's metadata) is held in memory,
/// file data never is. On error
/// `dest` is unchanged if the stream was refused, incomplete if applying it failed:
/// the caller deletes it (first pass) or retries the move.
pub fn import<R: Read>(
    input: &mut R,
    dest: &Path,
    ids: IdRange,
    max_bytes: u64,
) -> Result<ImportStats, TransferError> {
    let (mut dec, delta) = Decoder::new(BufReader::with_capacity(IN_BUFFER, input), max_bytes)?;
    check_dest(dest, delta)?;
    let staging = staging_dir(dest)?;
    let stage_err = |source| TransferError::Stage {
        path: staging.clone(),
        source,
    };
    match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(stage_err(e)),
        _ => {}
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(stage_err)?;
    let result = receive(&mut dec, delta, dest, &staging, ids);
    if let Err(e) = fs::remove_dir_all(&staging) {
        tracing::warn!(path = %staging.display(), error = %e, "remove the transfer staging directory");
    }
    result
}

fn receive<R: Read>(
    dec: &mut Decoder<R>,
    delta: bool,
    dest: &Path,
    staging: &Path,
    ids: IdRange,
) -> Result<ImportStats, TransferError> {
    let dir = File::from(
        nix::fcntl::open(
            staging,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TransferError::Stage {
            path: staging.to_path_buf(),
            source: e.into(),
        })?,
    );
    let mut stager = Stager {
        staging,
        dir,
        ids,
        seen: HashSet::new(),
        staged: HashMap::new(),
        seq: 0,
        counts: Counts::default(),
        plan: Plan::default(),
        buf: vec![0u8; IN_BUFFER],
    };
    let sha256 = stager.run(dec)?;
    apply(&stager.plan, dest, staging)?;
    Ok(ImportStats {
        delta,
        entries: stager.counts.entries,
        bytes: stager.counts.data_bytes,
        deleted: stager.counts.deleted,
        sha256,
    })
}

/// Where an import stages `dest`'s entries: `.NAME.incoming` beside it.
pub(crate) fn staging_dir(dest: &Path) -> Result<PathBuf, TransferError> {
    let Some(name) = dest.file_name() else {
        return Err(TransferError::DestNotDir {
            path: dest.to_path_buf(),
        });
    };
    let mut staged = b".".to_vec();
    staged.extend_from_slice(name.as_bytes());
    staged.extend_from_slice(b".incoming");
    Ok(dest.with_file_name(std::ffi::OsStr::from_bytes(&staged)))
}

fn check_dest(dest: &Path, delta: bool) -> Result<(), TransferError> {
    let apply_err = |source| TransferError::Apply {
        path: dest.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_dir() => {
            if !delta && fs::read_dir(dest).map_err(apply_err)?.next().is_some() {
                return Err(TransferError::DestNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
            Ok(())
        }
        Ok(_) => Err(TransferError::DestNotDir {
            path: dest.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound && delta => {
            Err(TransferError::DeltaWithoutBase {
                path: dest.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(apply_err(e)),
    }
}

/// What `apply` does to `dest`, in order: deletions, then `ops`, then directory
/// metadata and mtimes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) deletions: Vec<PathBuf>,
    pub(crate) ops: Vec<Op>,
}

#[derive(Debug)]
pub(crate) enum Op {
    Dir(DirMeta),
    /// Rename the staged entry `staged` (a name in the staging directory) to `path`.
    Place {
        path: PathBuf,
        staged: String,
    },
}

/// A directory's metadata, host ids and host xattr values.
#[derive(Debug)]
pub(crate) struct DirMeta {
    pub(crate) path: PathBuf,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: TimeSpec,
    pub(crate) xattrs: Vec<Xattr>,
}

struct Stager<'a> {
    staging: &'a Path,
    dir: File,
    ids: IdRange,
    seen: HashSet<PathBuf>,
    /// Non-directories staged so far: path → staged name (hard link targets).
    staged: HashMap<PathBuf, String>,
    seq: u64,
    counts: Counts,
    plan: Plan,
    buf: Vec<u8>,
}

impl Stager<'_> {
    /// Stages every record; returns the verified sha256.
    fn run<R: Read>(&mut self, dec: &mut Decoder<R>) -> Result<String, TransferError> {
        loop {
            match dec.next()? {
                Record::Entry(head) => self.entry(head, dec)?,
                Record::Link { path, target } => self.link(&path, &target)?,
                Record::Delete { path } => {
                    self.plan.deletions.push(checked_path(&path, false)?);
                    self.counts.deleted += 1;
                }
                Record::End { counts, sha256 } => {
                    let found = self.counts;
                    for (what, expected, found) in [
                        ("entries", counts.entries, found.entries),
                        ("deletions", counts.deleted, found.deleted),
                        ("data bytes", counts.data_bytes, found.data_bytes),
                    ] {
                        if expected != found {
                            return Err(TransferError::TrailerCount {
                                what,
                                expected,
                                found,
                            });
                        }
                    }
                    return Ok(sha256);
                }
            }
        }
    }

    fn next_name(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }

    fn claim(&mut self, path: &Path) -> Result<(), TransferError> {
        if !self.seen.insert(path.to_path_buf()) {
            return Err(TransferError::Duplicate {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        head: EntryHead,
        dec: &mut Decoder<R>,
    ) -> Result<(), TransferError> {
        let path = checked_path(&head.path, head.kind == Kind::Dir)?;
        self.claim(&path)?;
        if head.mode & !0o7777 != 0 {
            return Err(TransferError::BadMode {
                path,
                mode: head.mode,
            });
        }
        if head.mtime.1 >= 1_000_000_000 {
            return Err(TransferError::BadTime {
                path,
                nsec: head.mtime.1,
            });
        }
        let uid = self.ids.host_id(head.uid, &path, "uid")?;
        let gid = self.ids.host_id(head.gid, &path, "gid")?;
        let mut xattrs = Vec::with_capacity(head.xattrs.len());
        for (name, value) in &head.xattrs {
            xattrs.push((
                name.clone(),
                xattrs::from_wire(name, value, self.ids, &path)?,
            ));
        }
        let mtime = TimeSpec::new(head.mtime.0, head.mtime.1.into());
        self.counts.entries += 1;
        if head.kind == Kind::Dir {
            self.plan.ops.push(Op::Dir(DirMeta {
                path,
                mode: head.mode,
                uid,
                gid,
                mtime,
                xattrs,
            }));
            return Ok(());
        }
        let name = self.next_name();
        let staged = self.staging.join(&name);
        let err = |e: io::Error| TransferError::Stage {
            path: path.clone(),
            source: e,
        };
        let nix_err = |e: nix::Error| err(e.into());
        let (owner, group) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let mode = Mode::from_bits_retain(head.mode);
        if let Kind::File { size } = head.kind {
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let mut file = File::from(
                openat(
                    &self.dir,
                    name.as_str(),
                    flags,
                    Mode::from_bits_retain(0o600),
                )
                .map_err(nix_err)?,
            );
            let mut left = size;
            while left > 0 {
                let n = left.min(self.buf.len() as u64) as usize;
                dec.fill(&mut self.buf[..n])?;
                file.write_all(&self.buf[..n]).map_err(err)?;
                left -= n as u64;
            }
            self.counts.data_bytes += size;
            // chown first: it clears setuid bits and file capabilities.
            fchown(&file, owner, group).map_err(nix_err)?;
            fchmod(&file, mode).map_err(nix_err)?;
            for (n, v) in &xattrs {
                file.set_xattr(std::ffi::OsStr::from_bytes(n), v)
                    .map_err(err)?;
            }
            futimens(&file, &TimeSpec::UTIME_OMIT, &mtime).map_err(nix_err)?;
        } else {
            let name = name.as_str();
            match &head.kind {
                Kind::Symlink { target } => {
                    symlinkat(std::ffi::OsStr::from_bytes(target), &self.dir, name)
                        .map_err(nix_err)?
                }
                Kind::Whiteout => {
                    mknodat(&self.dir, name, SFlag::S_IFCHR, mode, 0).map_err(nix_err)?
                }
                _ => mknodat(&self.dir, name, SFlag::S_IFIFO, mode, 0).map_err(nix_err)?,
            }
            fchownat(&self.dir, name, owner, group, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(nix_err)?;
            if !matches!(head.kind, Kind::Symlink { .. }) {
                // Our own device node or FIFO in the private staging directory.
                fchmodat(&self.dir, name, mode, FchmodatFlags::FollowSymlink).map_err(nix_err)?;
            }
            for (n, v) in &xattrs {
                xattr::set(&staged, std::ffi::OsStr::from_bytes(n), v).map_err(err)?;
            }
            utimensat(
                &self.dir,
                name,
                &TimeSpec::UTIME_OMIT,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(nix_err)?;
        }
        self.staged.insert(path.clone(), name.clone());
        self.plan.ops.push(Op::Place { path, staged: name });
        Ok(())
    }

    fn link(&mut self, path: &[u8], target: &[u8]) -> Result<(), TransferError> {
        let path = checked_path(path, false)?;
        let target = checked_path(target, false)?;
        self.claim(&path)?;
        let Some(existing) = self.staged.get(&target).cloned() else {
            return Err(TransferError::BadLink { path, target });
        };
        let name = self.next_name();
        linkat(
            &self.dir,
            existing.as_str(),
            &self.dir,
            name.as_str(),
            AtFlags::empty(),
        )
        .map_err(|e| TransferError::Stage {
            path: path.clone(),
            source: e.into(),
        })?;
        self.counts.entries += 1;
        self.staged.insert(path.clone(), name.clone());
        self.plan.ops.push(Op::Place { path, staged: name });
        Ok(())
    }
}
