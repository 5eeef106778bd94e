//! Putting a new process into the container's cgroups without a `cgroup.procs` write.
//!
//! Writing a pid to `cgroup.procs` takes the kernel's global threadgroup rwsem for writing;
//! after an idle spell that waits for an RCU grace period (≈10 ms here), which used to be
//! the largest part of a container start and of every exec. Two ways around it:
//!
//! - cgroup v2: `clone3(CLONE_INTO_CGROUP)` creates the process inside its cgroup.
//! - cgroup v1: a single-threaded process moves *itself* by writing `0` to the hierarchy's
//!   `tasks` file; migrating only the current thread needs no global lock. The container
//!   child does this as the mapped root (`tasks` is delegated to it), the exec helper as
//!   host root, before either joins the cgroup namespace.
//!
//! If CLONE_INTO_CGROUP is refused (old kernel), the parent writes `cgroup.procs` instead.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::super::protocol::WireError;
use crate::cgroups::ContainerCgroup;
use crate::sys::{self, Forked, SingleThreaded};

/// The label the cgroup manager gives the unified hierarchy.
const UNIFIED: &str = "unified";

/// How a process joins one container's cgroups.
pub(crate) struct CgroupJoin {
    /// `tasks` of every v1 hierarchy.
    v1_tasks: Vec<PathBuf>,
    /// The v2 directory (for CLONE_INTO_CGROUP) and its `cgroup.procs` (fallback).
    v2: Option<(OwnedFd, PathBuf)>,
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl CgroupJoin {
    pub(crate) fn new(cgroup: &ContainerCgroup) -> Result<Self, WireError> {
        let mut v1_tasks = Vec::new();
        let mut v2 = None;
        for (label, dir) in cgroup.paths() {
            if label == UNIFIED {
                let fd = open(
                    &dir,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    WireError::new("opening the v2 cgroup", e, dir.display().to_string())
                })?;
                v2 = Some((fd, dir.join("cgroup.procs")));
            } else {
                v1_tasks.push(dir.join("tasks"));
            }
        }
        Ok(Self { v1_tasks, v2 })
    }

    /// Moves the calling (single-threaded) process into every v1 hierarchy.
    pub(crate) fn join_v1_self(&self) -> Result<(), WireError> {
        for tasks in &self.v1_tasks {
            OpenOptions::new()
                .write(true)
                .open(tasks)
                .and_then(|mut f| f.write_all(b"0"))
                .map_err(|e| {
                    WireError::new(
                        "joining the cgroup",
                        io_errno(&e),
                        tasks.display().to_string(),
                    )
                })?;
        }
        Ok(())
    }

    /// Moves `pid` into the v2 cgroup through `cgroup.procs` (the fallback).
    pub(crate) fn join_v2(&self, pid: Pid) -> Result<(), WireError> {
        let Some((_, procs)) = &self.v2 else {
            return Ok(());
        };
        std::fs::write(procs, pid.as_raw().to_string()).map_err(|e| {
            WireError::new(
                "joining the v2 cgroup",
                io_errno(&e),
                procs.display().to_string(),
            )
        })
    }

    /// `clone3(flags)` straight into the v2 cgroup when there is one. Returns whether the
    /// child is already in it (if not, the caller must [`join_v2`](Self::join_v2) it).
    pub(crate) fn clone(
        &self,
        single: SingleThreaded,
        flags: u64,
    ) -> Result<(Forked, bool), Errno> {
        if let Some((dir, _)) = &self.v2 {
            match sys::clone3(single, flags, Some(dir.as_fd())) {
                Ok(forked) => return Ok((forked, true)),
                Err(
                    Errno::EINVAL | Errno::EOPNOTSUPP | Errno::EBADF | Errno::E2BIG | Errno::ENOSYS,
                ) => {}
                Err(e) => return Err(e),
            }
        }
        let forked = sys::clone3(single, flags, None)?;
        Ok((forked, self.v2.is_none()))
    }
}
