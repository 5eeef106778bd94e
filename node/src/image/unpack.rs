//! Unpacks an image tarball into a private directory without trusting a byte of it.
//!
//! The `tar` crate only parses; every file is created here, so the rules are ours:
//!
//! - top level: `metadata.yaml` (a regular file of at most 1 MiB), `rootfs/` (unpacked)
//!   and `templates/` (ignored: Shoal does not run LXD templates); anything else is refused,
//!   so a typo'd layout fails loudly instead of yielding an empty rootfs
//! - paths must be relative and free of `..`; hard links must point inside `rootfs/` at an
//!   earlier non-directory entry; device nodes are refused; FIFOs are allowed
//! - nothing is created through a symlink: each parent component is checked with `lstat`
//!   (missing ones are made as 0755 directories), files are opened `O_CREAT|O_EXCL|O_NOFOLLOW`
//!   after removing whatever non-directory held the name, symlinks are created, never
//!   followed, and may point anywhere (they resolve inside the container)
//! - owners (when running as root), modes with setuid/setgid/sticky, and mtimes are kept;
//!   directory modes and mtimes are applied last, so a 0555 directory can still be filled
//! - xattrs (file capabilities, ACLs) are not restored
//!
//! The destination is a fresh directory only the store writes to, which is what makes the
//! `lstat` walk race-free.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::sys::stat::Mode;
use tar::EntryType;

use super::error::ImageError;
use super::fsops::{make_dir, set_file_mtime, set_mtime_nofollow};
use super::layout::{place, Place};
use super::metadata::ImageMetadata;
use super::ImportLimits;

/// Largest `metadata.yaml` accepted.
pub(crate) const METADATA_MAX_BYTES: u64 = 1 << 20;

/// Unpack `src` (an uncompressed tar stream) into `dest`, which must be an empty private
/// directory: `dest/metadata.yaml` and `dest/rootfs/`. Returns the parsed metadata.
pub(crate) fn unpack(
    src: impl Read,
    dest: &Path,
    limits: &ImportLimits,
) -> Result<ImageMetadata, ImageError> {
    let exceeded = Rc::new(Cell::new(false));
    let bounded = Bounded {
        inner: src,
        left: limits.max_unpacked_bytes,
        exceeded: exceeded.clone(),
    };
    let mut unpacker = Unpacker {
        dest: dest.to_path_buf(),
        rootfs: dest.join("rootfs"),
        limits,
        as_root: nix::unistd::geteuid().is_root(),
        dirs: BTreeMap::new(),
        saw_rootfs: false,
        metadata: None,
    };
    match unpacker.run(bounded) {
        Err(_) if exceeded.get() => Err(ImageError::UnpackedTooLarge {
            limit: limits.max_unpacked_bytes,
        }),
        other => other,
    }
}

/// Fails reads once more than `left` bytes went through (a gzip bomb stops here).
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("unpacked size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Why walking to an entry's parent failed.
enum WalkError {
    Symlink(PathBuf),
    NotDir,
    Missing,
    Io(PathBuf, io::Error),
}

struct Unpacker<'a> {
    dest: PathBuf,
    rootfs: PathBuf,
    limits: &'a ImportLimits,
    as_root: bool,
    /// Directory modes and mtimes, applied after everything else (last entry wins).
    dirs: BTreeMap<PathBuf, (u32, u64)>,
    saw_rootfs: bool,
    metadata: Option<String>,
}

fn bad_header(name: &str, e: io::Error) -> ImageError {
    ImageError::BadHeader {
        entry: name.to_string(),
        problem: e.to_string(),
    }
}

impl Unpacker<'_> {
    fn run(&mut self, src: impl Read) -> Result<ImageMetadata, ImageError> {
        self.mkdir(&self.rootfs.clone(), "rootfs/")?;
        let mut archive = tar::Archive::new(src);
        let entries = archive
            .entries()
            .map_err(|source| ImageError::ReadArchive { source })?;
        let mut count: u64 = 0;
        for entry in entries {
            count += 1;
            if count > self.limits.max_entries {
                return Err(ImageError::TooManyEntries {
                    limit: self.limits.max_entries,
                });
            }
            let mut entry = entry.map_err(|source| ImageError::ReadArchive { source })?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            if entry.size() > self.limits.max_entry_bytes {
                return Err(ImageError::EntryTooLarge {
                    entry: name,
                    size: entry.size(),
                    limit: self.limits.max_entry_bytes,
                });
            }
            if entry.header().entry_type() == EntryType::XGlobalHeader {
                continue;
            }
            match place(&raw, &name)? {
                Place::Skip | Place::Template => {}
                Place::Metadata => self.read_metadata(&mut entry, &name)?,
                Place::Rootfs(rel) => {
                    self.saw_rootfs = true;
                    self.rootfs_entry(&mut entry, &name, &rel)?;
                }
            }
        }
        drop(archive);
        let text = self.metadata.take().ok_or(ImageError::MissingMetadata)?;
        if !self.saw_rootfs {
            return Err(ImageError::MissingRootfs);
        }
        let metadata = ImageMetadata::from_yaml(&text)?;
        self.finish_dirs()?;
        Ok(metadata)
    }

    fn read_metadata<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name: &str,
    ) -> Result<(), ImageError> {
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            return Err(ImageError::Conflict {
                entry: name.to_string(),
                problem: "metadata.yaml must be a regular file",
            });
        }
        if entry.size() > METADATA_MAX_BYTES {
            return Err(ImageError::MetadataTooLarge {
                entry: name.to_string(),
                limit: METADATA_MAX_BYTES,
            });
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| ImageError::ReadArchive { source })?;
        let text = String::from_utf8(bytes).map_err(|_| ImageError::MetadataField {
            field: "(document)",
            problem: "is not utf-8".to_string(),
        })?;
        let path = self.dest.join("metadata.yaml");
        fs::write(&path, &text).map_err(|source| ImageError::Unpack {
            entry: name.to_string(),
            path,
            source,
        })?;
        self.metadata = Some(text);
        Ok(())
    }

    fn rootfs_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name: &str,
        rel: &Path,
    ) -> Result<(), ImageError> {
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| bad_header(name, e))? & 0o7777;
        let uid = header.uid().map_err(|e| bad_header(name, e))?;
        let gid = header.gid().map_err(|e| bad_header(name, e))?;
        let mtime = header.mtime().map_err(|e| bad_header(name, e))?;
        let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) => (u, g),
            _ => {
                return Err(ImageError::BadHeader {
                    entry: name.to_string(),
                    problem: format!("uid {uid} or gid {gid} does not fit in 32 bits"),
                })
            }
        };
        if rel.as_os_str().is_empty() {
            if kind != EntryType::Directory {
                return Err(ImageError::Conflict {
                    entry: name.to_string(),
                    problem: "rootfs must be a directory",
                });
            }
            let root = self.rootfs.clone();
            self.chown(&root, uid, gid, name)?;
            self.dirs.insert(root, (mode, mtime));
            return Ok(());
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            return Err(ImageError::DeviceNode {
                entry: name.to_string(),
            });
        }
        let path = self.walk(rel, true).map_err(|e| self.walk_error(e, name))?;
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        self.clear(&path, name)?;
                        self.mkdir(&path, name)?;
                    }
                    Err(_) => self.mkdir(&path, name)?,
                }
                self.chown(&path, uid, gid, name)?;
                self.dirs.insert(path, (mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&path, name)?;
                let io_err = |source| ImageError::Unpack {
                    entry: name.to_string(),
                    path: path.clone(),
                    source,
                };
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(io_err)?;
                io::copy(entry, &mut file).map_err(io_err)?;
                file.flush().map_err(io_err)?;
                if self.as_root {
                    std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err)?;
                }
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(io_err)?;
                set_file_mtime(&file, mtime).map_err(io_err)?;
            }
            EntryType::Symlink => {
                let target = link_target(entry, name)?;
                self.clear(&path, name)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(
                    |source| ImageError::Unpack {
                        entry: name.to_string(),
                        path: path.clone(),
                        source,
                    },
                )?;
                self.chown(&path, uid, gid, name)?;
                set_mtime_nofollow(&path, mtime, name)?;
            }
            EntryType::Link => self.hard_link(entry, name, &path)?,
            EntryType::Fifo => {
                self.clear(&path, name)?;
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).map_err(|e| {
                    ImageError::Unpack {
                        entry: name.to_string(),
                        path: path.clone(),
                        source: e.into(),
                    }
                })?;
                self.chown(&path, uid, gid, name)?;
                fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(|source| {
                    ImageError::Unpack {
                        entry: name.to_string(),
                        path: path.clone(),
                        source,
                    }
                })?;
                set_mtime_nofollow(&path, mtime, name)?;
            }
            other => {
                return Err(ImageError::UnsupportedEntryType {
                    entry: name.to_string(),
                    kind: format!("{:?}", other.as_byte() as char),
                })
            }
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        name: &str,
        path: &Path,
    ) -> Result<(), ImageError> {
        let raw = link_target(entry, name)?;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_link = |problem| ImageError::UnsafeHardLink {
            entry: name.to_string(),
            target: shown.clone(),
            problem,
        };
        let rel = match place(&raw, &shown) {
            Err(ImageError::AbsolutePath { .. }) => return Err(unsafe_link("is absolute")),
            Err(ImageError::ParentComponent { .. }) => return Err(unsafe_link("contains ..")),
            Ok(Place::Rootfs(rel)) if !rel.as_os_str().is_empty() => rel,
            _ => return Err(unsafe_link("is outside rootfs/")),
        };
        let target = self.walk(&rel, false).map_err(|e| match e {
            WalkError::Symlink(_) => unsafe_link("goes through a symlink"),
            WalkError::NotDir | WalkError::Missing => {
                unsafe_link("does not exist earlier in the tarball")
            }
            WalkError::Io(path, source) => ImageError::Unpack {
                entry: name.to_string(),
                path,
                source,
            },
        })?;
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return Err(unsafe_link("is a directory")),
            Ok(_) => {}
            Err(_) => return Err(unsafe_link("does not exist earlier in the tarball")),
        }
        if target == path {
            return Ok(());
        }
        self.clear(path, name)?;
        fs::hard_link(&target, path).map_err(|source| ImageError::Unpack {
            entry: name.to_string(),
            path: path.to_path_buf(),
            source,
        })
    }

    /// Walk to `rootfs/<rel>`, checking every parent with `lstat`; with `create`, missing
    /// parents become 0755 directories. Returns the full path of `rel` itself (unchecked).
    fn walk(&self, rel: &Path, create: bool) -> Result<PathBuf, WalkError> {
        let parts: Vec<_> = rel.iter().collect();
        let mut cur = self.rootfs.clone();
        for (i, part) in parts.iter().enumerate().take(parts.len().saturating_sub(1)) {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    let shown: PathBuf =
                        Path::new("rootfs").join(parts[..=i].iter().collect::<PathBuf>());
                    return Err(WalkError::Symlink(shown));
                }
                Ok(_) => return Err(WalkError::NotDir),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    make_dir(&cur).map_err(|e| WalkError::Io(cur.clone(), e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(WalkError::Missing),
                Err(e) => return Err(WalkError::Io(cur, e)),
            }
        }
        if let Some(last) = parts.last() {
            cur.push(last);
        }
        Ok(cur)
    }

    fn walk_error(&self, e: WalkError, name: &str) -> ImageError {
        let entry = name.to_string();
        match e {
            WalkError::Symlink(parent) => ImageError::ThroughSymlink { entry, parent },
            WalkError::NotDir => ImageError::Conflict {
                entry,
                problem: "a parent path is not a directory",
            },
            WalkError::Missing => ImageError::Conflict {
                entry,
                problem: "a parent directory is missing",
            },
            WalkError::Io(path, source) => ImageError::Unpack {
                entry,
                path,
                source,
            },
        }
    }

    /// Make room for a non-directory at `path`: remove a file, symlink or FIFO already there.
    fn clear(&self, path: &Path, name: &str) -> Result<(), ImageError> {
        match fs::symlink_metadata(path) {
            Err(_) => Ok(()),
            Ok(m) if m.is_dir() => Err(ImageError::Conflict {
                entry: name.to_string(),
                problem: "a directory of the same name is in the way",
            }),
            Ok(_) => fs::remove_file(path).map_err(|source| ImageError::Unpack {
                entry: name.to_string(),
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn mkdir(&self, path: &Path, name: &str) -> Result<(), ImageError> {
        make_dir(path).map_err(|source| ImageError::Unpack {
            entry: name.to_string(),
            path: path.to_path_buf(),
            source,
        })
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32, name: &str) -> Result<(), ImageError> {
        if !self.as_root {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|source| ImageError::Unpack {
            entry: name.to_string(),
            path: path.to_path_buf(),
            source,
        })
    }

    /// Apply directory modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        for (path, (mode, mtime)) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let shown = path.display().to_string();
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(|source| {
                ImageError::Unpack {
                    entry: shown.clone(),
                    path: path.clone(),
                    source,
                }
            })?;
            set_mtime_nofollow(&path, mtime, &shown)?;
        }
        Ok(())
    }
}

fn link_target<R: Read>(entry: &tar::Entry<R>, name: &str) -> Result<Vec<u8>, ImageError> {
    match entry.link_name_bytes() {
        Some(t) if !t.is_empty() => Ok(t.into_owned()),
        _ => Err(ImageError::BadHeader {
            entry: name.to_string(),
            problem: "link without a target".to_string(),
        }),
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
