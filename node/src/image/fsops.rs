//! Filesystem primitives of the image store that never follow a symlink at the last
//! component and do not depend on the umask.

use std::fs::{self, File, FileTimes, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::error::ImageError;

/// A directory with mode 0755 whatever the umask.
pub(crate) fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o755))
}

pub(crate) fn set_file_mtime(file: &File, mtime: u64) -> io::Result<()> {
    let Some(t) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(mtime)) else {
        return Ok(());
    };
    file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
}

pub(crate) fn set_mtime_nofollow(path: &Path, mtime: u64, name: &str) -> Result<(), ImageError> {
    let Ok(secs) = libc::time_t::try_from(mtime) else {
        return Ok(());
    };
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ImageError::Unpack {
        entry: name.to_string(),
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Remove a tree; absent is fine. Without root, directories unpacked read-only (0555)
/// are made writable first, never following symlinks.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(path)? {
        make_writable(&entry?.path())?;
    }
    Ok(())
}
