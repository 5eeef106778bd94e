//! [`Sys`]: the filesystem and mount operations of container setup behind a trait, so the
//! setup logic (what is mounted where, in which order, with which flags) can run against
//! the recording fake in tests and against the kernel ([`RealSys`]) in the monitor.

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::mount::{mount_setattr_fd, move_mount, MountAttr, AT_RECURSIVE};

/// What `lstat` found at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// Mount and filesystem operations used while building a container's root.
pub(crate) trait Sys {
    /// mount(2).
    fn mount(
        &self,
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    /// mount_setattr(2) on the mount at `target`: sets and clears `MOUNT_ATTR_*` bits.
    fn set_mount_attr(
        &self,
        target: &Path,
        set: u64,
        clr: u64,
        recursive: bool,
    ) -> Result<(), Errno>;
    /// move_mount(2) of a detached mount `fd` onto `target`.
    fn attach_mount(&self, fd: BorrowedFd<'_>, target: &Path) -> Result<(), Errno>;
    /// mkdir(2); an existing directory is not an error.
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Creates an empty regular file (a bind-mount target); an existing one is kept.
    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// symlink(2): `link` pointing to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno>;
    /// lstat(2) kind of `path`, `None` if it does not exist.
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    /// umount2(path, MNT_DETACH).
    fn umount_detach(&self, path: &Path) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
}

/// The real kernel.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealSys;

impl Sys for RealSys {
    fn mount(
        &self,
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(src, target, fstype, flags, data)
    }

    fn set_mount_attr(
        &self,
        target: &Path,
        set: u64,
        clr: u64,
        recursive: bool,
    ) -> Result<(), Errno> {
        let flags = if recursive { AT_RECURSIVE } else { 0 };
        let attr = MountAttr {
            set,
            clr,
            userns: None,
        };
        mount_setattr_fd(None, target, flags, &attr)
    }

    fn attach_mount(&self, fd: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
        move_mount(fd, None, target)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) if self.kind(path) == Some(FileKind::Dir) => Ok(()),
            other => other,
        }
    }

    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        nix::fcntl::open(path, flags, Mode::from_bits_truncate(mode)).map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let ft = meta.file_type();
        Some(if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        })
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn umount_detach(&self, path: &Path) -> Result<(), Errno> {
        nix::mount::umount2(path, MntFlags::MNT_DETACH)
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }
}
