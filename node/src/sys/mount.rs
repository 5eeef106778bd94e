//! The new mount API calls nix does not wrap: open_tree, mount_setattr, move_mount.
//!
//! They are what makes idmapped mounts possible: `open_tree(OPEN_TREE_CLONE)` makes a
//! detached copy of a mount, `mount_setattr(MOUNT_ATTR_IDMAP)` attaches a user namespace's
//! mapping to it, and `move_mount` puts it into the (container's) mount tree.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::NixPath;

pub(crate) const OPEN_TREE_CLONE: u32 = libc::OPEN_TREE_CLONE;
pub(crate) const OPEN_TREE_CLOEXEC: u32 = libc::OPEN_TREE_CLOEXEC;
pub(crate) const AT_RECURSIVE: u32 = libc::AT_RECURSIVE as u32;

/// The attributes `mount_setattr` sets and clears (`MOUNT_ATTR_*`), and the user
/// namespace whose mapping `MOUNT_ATTR_IDMAP` applies.
#[derive(Debug, Default)]
pub(crate) struct MountAttr<'a> {
    pub(crate) set: u64,
    pub(crate) clr: u64,
    pub(crate) userns: Option<BorrowedFd<'a>>,
}

fn dirfd_raw(dirfd: Option<BorrowedFd<'_>>) -> RawFd {
    dirfd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd())
}

/// `open_tree(dirfd, path, flags)`; with `OPEN_TREE_CLONE` the result is a detached copy of
/// the mount at `path` (recursive with `AT_RECURSIVE`).
pub(crate) fn open_tree(
    dirfd: Option<BorrowedFd<'_>>,
    path: &Path,
    flags: u32,
) -> Result<OwnedFd, Errno> {
    let ret = path.with_nix_path(|cpath| {
        // SAFETY: `cpath` is a NUL-terminated string valid during the call; the other
        // arguments are integers.
        unsafe { libc::syscall(libc::SYS_open_tree, dirfd_raw(dirfd), cpath.as_ptr(), flags) }
    })?;
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `mount_setattr(dirfd, path, flags, attr)`. An empty `path` with a `dirfd` acts on the
/// mount `dirfd` refers to (AT_EMPTY_PATH is added).
pub(crate) fn mount_setattr_fd(
    dirfd: Option<BorrowedFd<'_>>,
    path: &Path,
    flags: u32,
    attr: &MountAttr<'_>,
) -> Result<(), Errno> {
    let mut flags = flags;
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    let raw = libc::mount_attr {
        attr_set: attr.set,
        attr_clr: attr.clr,
        propagation: 0,
        userns_fd: attr.userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let ret = path.with_nix_path(|cpath| {
        // SAFETY: `cpath` is NUL-terminated and `raw` is a valid `struct mount_attr`, both
        // valid during the call; the size passed is the size of that struct.
        unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                dirfd_raw(dirfd),
                cpath.as_ptr(),
                flags,
                std::ptr::addr_of!(raw),
                std::mem::size_of::<libc::mount_attr>(),
            )
        }
    })?;
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `move_mount(from, "", to_dirfd, to, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the (detached)
/// mount `from` at `to`.
pub(crate) fn move_mount(
    from: BorrowedFd<'_>,
    to_dirfd: Option<BorrowedFd<'_>>,
    to: &Path,
) -> Result<(), Errno> {
    let ret = to.with_nix_path(|cto| {
        // SAFETY: both strings are NUL-terminated and valid during the call; `from` is a
        // valid borrowed fd.
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                from.as_raw_fd(),
                c"".as_ptr(),
                dirfd_raw(to_dirfd),
                cto.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        }
    })?;
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
