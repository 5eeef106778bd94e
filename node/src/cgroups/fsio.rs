//! File helpers for cgroupfs, so that every error names its path (and written value).
//!
//! Writes open with `O_CREAT` so the same code works on the temporary directories that unit
//! tests use as fake hierarchies; on a real cgroupfs a missing file then fails with EACCES,
//! which is translated back to ENOENT so the message stays truthful.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::CgroupError;

/// Reads a whole file as text.
pub(crate) fn read_string(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|err| CgroupError::Read {
        path: path.to_path_buf(),
        err,
    })
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// Parses a trimmed unsigned integer, naming the file on failure.
pub(crate) fn parse_u64(path: &Path, content: &str) -> Result<u64, CgroupError> {
    content.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: content.to_string(),
    })
}

/// Reads a file holding one unsigned integer.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    parse_u64(path, &read_string(path)?)
}

/// Writes `value` with a single write(2), as cgroupfs expects.
pub(crate) fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    write_raw(path, value).map_err(|err| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        err,
    })
}

/// Like [`write_value`] but returns the bare `io::Error` for callers that tolerate some.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(err) if err.kind() == ErrorKind::PermissionDenied && !path.exists() => {
            return Err(io::Error::from(ErrorKind::NotFound));
        }
        Err(err) => return Err(err),
    };
    file.write_all(value.as_bytes())
}

/// Creates one cgroup directory; `Ok(false)` if it already existed.
pub(crate) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// Sub-cgroups of `dir` (directories only); empty if `dir` is gone.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(CgroupError::List {
                path: dir.to_path_buf(),
                err,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| CgroupError::List {
            path: dir.to_path_buf(),
            err,
        })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes a cgroup directory and every sub-cgroup below it, deepest first.
///
/// Missing directories count as removed. EBUSY (tasks still exiting) is retried until
/// `deadline`.
pub(crate) fn rmdir_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for child in child_dirs(dir)? {
        rmdir_tree(&child, deadline)?;
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(err) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    err,
                })
            }
        }
    }
}

/// Process ids listed in `dir/cgroup.procs` and in every sub-cgroup's.
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    if let Some(text) = read_opt(&path)? {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.parse::<i32>() {
                Ok(pid) if pid > 0 => out.push(pid),
                _ => {
                    return Err(CgroupError::Parse {
                        path,
                        content: line.to_string(),
                    })
                }
            }
        }
    }
    for child in child_dirs(dir)? {
        procs_recursive(&child, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_names_path_and_value() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("memory.max");
        fs::create_dir(&target).unwrap();
        let msg = write_value(&target, "67108864").unwrap_err().to_string();
        assert!(msg.starts_with("writing \"67108864\" to "), "{msg}");
        assert!(msg.contains(&target.display().to_string()), "{msg}");
    }

    #[test]
    fn parse_error_names_path_and_content() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("pids.current");
        fs::write(&file, "lots\n").unwrap();
        let msg = read_u64(&file).unwrap_err().to_string();
        assert!(msg.contains("pids.current"), "{msg}");
        assert!(msg.contains("\"lots\\n\""), "{msg}");
    }

    #[test]
    fn rmdir_tree_is_idempotent_and_recursive() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("c");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::create_dir_all(top.join("d")).unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        rmdir_tree(&top, deadline).unwrap();
        assert!(!top.exists());
        rmdir_tree(&top, deadline).unwrap();
    }

    #[test]
    fn procs_are_collected_from_subtree() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("sub")).unwrap();
        fs::write(tmp.path().join("cgroup.procs"), "10\n11\n").unwrap();
        fs::write(tmp.path().join("sub/cgroup.procs"), "12\n").unwrap();
        let mut pids = Vec::new();
        procs_recursive(tmp.path(), &mut pids).unwrap();
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 12]);
    }
}
