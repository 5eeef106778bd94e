//! The last step of an import, run only on a verified stream: deletions, directories,
//! staged entries renamed into place, then directory owners, xattrs and modes, and
//! mtimes last (creating an entry moves its parent's mtime), then `syncfs`.
//!
//! `dest` is host-private while a layer is imported (the container does not run on this
//! host yet), so checking with `lstat` that every parent of a path is a real directory,
//! right before each step, is race-free: nothing is ever created, chowned or chmodded
//! through a symlink, even one an earlier entry of the same stream created.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmodat, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use super::error::TransferError;
use super::import::{DirMeta, Op, Plan};
use super::xattrs;

pub(crate) fn apply(plan: &Plan, dest: &Path, staging: &Path) -> Result<(), TransferError> {
    let mut a = Applier {
        dest,
        dirs: plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Dir(d) => Some(d.path.clone()),
                Op::Place { .. } => None,
            })
            .collect(),
        touched: BTreeMap::new(),
    };
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o700)
            .create(dest)
            .map_err(a.err(Path::new("")))?,
        Err(e) => return Err(a.err(Path::new(""))(e)),
        Ok(m) if !m.file_type().is_dir() => {
            return Err(TransferError::DestNotDir {
                path: dest.to_path_buf(),
            })
        }
        Ok(_) => {}
    }
    for path in &plan.deletions {
        a.delete(path)?;
    }
    for op in &plan.ops {
        match op {
            Op::Dir(d) => a.make_dir(&d.path)?,
            Op::Place { path, staged } => a.place(path, &staging.join(staged))?,
        }
    }
    for op in &plan.ops {
        if let Op::Dir(d) = op {
            a.dir_meta(d)?;
        }
    }
    for op in &plan.ops {
        if let Op::Dir(d) = op {
            let full = a.existing_dir(&d.path)?;
            set_mtime(&full, &d.mtime).map_err(a.err(&d.path))?;
        }
    }
    for (path, (ino, mtime)) in &a.touched {
        if let Ok(full) = a.existing_dir(path) {
            if fs::symlink_metadata(&full).is_ok_and(|m| m.ino() == *ino) {
                set_mtime(&full, mtime).map_err(a.err(path))?;
            }
        }
    }
    let fd = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| a.err(Path::new(""))(e.into()))?;
    nix::unistd::syncfs(&fd).map_err(|e| a.err(Path::new(""))(e.into()))
}

fn set_mtime(full: &Path, mtime: &TimeSpec) -> io::Result<()> {
    utimensat(
        AT_FDCWD,
        full,
        &TimeSpec::UTIME_OMIT,
        mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(Into::into)
}

struct Applier<'a> {
    dest: &'a Path,
    /// Directories the stream carries (their metadata is set from the stream).
    dirs: HashSet<PathBuf>,
    /// Other directories whose content changed: inode and mtime before, restored last.
    touched: BTreeMap<PathBuf, (u64, TimeSpec)>,
}

impl Applier<'_> {
    fn err<'p>(&self, path: &'p Path) -> impl Fn(io::Error) -> TransferError + 'p {
        move |source| TransferError::Apply {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `dest/rel` after checking every parent is a real directory; `None` if one is
    /// missing.
    fn under(&self, rel: &Path) -> Result<Option<PathBuf>, TransferError> {
        let mut full = self.dest.to_path_buf();
        let parts: Vec<_> = rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            full.push(part);
            if i + 1 == parts.len() {
                break;
            }
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(TransferError::ParentNotDir {
                        path: rel.to_path_buf(),
                        parent: parts[..=i].iter().collect(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.err(rel)(e)),
            }
        }
        Ok(Some(full))
    }

    fn under_existing(&self, rel: &Path) -> Result<PathBuf, TransferError> {
        self.under(rel)?
            .ok_or_else(|| TransferError::ParentMissing {
                path: rel.to_path_buf(),
                parent: rel.parent().unwrap_or(Path::new("")).to_path_buf(),
            })
    }

    /// `dest/rel`, which must be a real directory reached through real directories.
    fn existing_dir(&self, rel: &Path) -> Result<PathBuf, TransferError> {
        let full = self.under_existing(rel)?;
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_dir() => Ok(full),
            Ok(_) => Err(TransferError::DestNotDir { path: full }),
            Err(e) => Err(self.err(rel)(e)),
        }
    }

    /// Remembers the mtime of `rel`'s parent before its content changes.
    fn touch(&mut self, rel: &Path) -> Result<(), TransferError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if self.dirs.contains(parent) || self.touched.contains_key(parent) {
            return Ok(());
        }
        let full = self.dest.join(parent);
        let m = fs::symlink_metadata(&full).map_err(self.err(parent))?;
        let mtime = TimeSpec::new(m.mtime(), m.mtime_nsec());
        self.touched.insert(parent.to_path_buf(), (m.ino(), mtime));
        Ok(())
    }

    fn remove(
        &mut self,
        rel: &Path,
        full: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), TransferError> {
        self.touch(rel)?;
        // remove_dir_all never follows symlinks inside the tree.
        if meta.file_type().is_dir() {
            fs::remove_dir_all(full)
        } else {
            fs::remove_file(full)
        }
        .map_err(self.err(rel))
    }

    fn delete(&mut self, rel: &Path) -> Result<(), TransferError> {
        let Some(full) = self.under(rel)? else {
            return Ok(());
        };
        match fs::symlink_metadata(&full) {
            Ok(m) => self.remove(rel, &full, &m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(rel)(e)),
        }
    }

    fn make_dir(&mut self, rel: &Path) -> Result<(), TransferError> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let full = self.under_existing(rel)?;
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_dir() => return Ok(()),
            Ok(m) => self.remove(rel, &full, &m)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.touch(rel)?,
            Err(e) => return Err(self.err(rel)(e)),
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&full)
            .map_err(self.err(rel))
    }

    fn place(&mut self, rel: &Path, staged: &Path) -> Result<(), TransferError> {
        let full = self.under_existing(rel)?;
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_dir() => self.remove(rel, &full, &m)?,
            Ok(_) => self.touch(rel)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.touch(rel)?,
            Err(e) => return Err(self.err(rel)(e)),
        }
        // rename(2) replaces a non-directory (a symlink itself, never its target).
        fs::rename(staged, &full).map_err(self.err(rel))
    }

    fn dir_meta(&self, d: &DirMeta) -> Result<(), TransferError> {
        let full = self.existing_dir(&d.path)?;
        let err = self.err(&d.path);
        let (uid, gid) = (Some(Uid::from_raw(d.uid)), Some(Gid::from_raw(d.gid)));
        fchownat(AT_FDCWD, &full, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| err(e.into()))?;
        let keep: HashSet<&[u8]> = d.xattrs.iter().map(|(n, _)| n.as_slice()).collect();
        let existing: Vec<_> = match xattr::list(&full) {
            Ok(names) => names.collect(),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        for name in existing {
            if xattrs::allowed(name.as_bytes()) && !keep.contains(name.as_bytes()) {
                xattr::remove(&full, &name).map_err(&err)?;
            }
        }
        for (name, value) in &d.xattrs {
            xattr::set(&full, std::ffi::OsStr::from_bytes(name), value).map_err(&err)?;
        }
        // A real directory, checked just above; nothing else writes under dest.
        fchmodat(
            AT_FDCWD,
            &full,
            Mode::from_bits_retain(d.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| err(e.into()))
    }
}
