//! The one error type of the cgroup manager.
//!
//! Every variant names the step that failed and carries the path (and, for writes, the
//! value) so an operator can reproduce it with `echo VALUE > PATH`. The OS error is part
//! of the message and deliberately not exposed as `source()`, so `{:#}` chains print it
//! once.

use std::io;
use std::path::PathBuf;

/// Errors of [`super::CgroupManager`] and [`super::ContainerCgroup`].
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A proc or cgroupfs file could not be read.
    #[error("reading {}: {err}", .path.display())]
    Read { path: PathBuf, err: io::Error },

    /// A cgroupfs file rejected a value.
    #[error("writing {value:?} to {}: {err}", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        err: io::Error,
    },

    /// Enabling controllers in `cgroup.subtree_control` failed (cgroup v2).
    #[error(
        "enabling controllers: writing {value:?} to {}: {err} (the daemon's cgroup must be \
         delegated to it and its parent must not hold processes)",
        .path.display()
    )]
    EnableControllers {
        path: PathBuf,
        value: String,
        err: io::Error,
    },

    /// mkdir of a cgroup directory failed.
    #[error("creating cgroup {}: {err}", .path.display())]
    Create { path: PathBuf, err: io::Error },

    /// rmdir of a cgroup directory failed (after retrying on EBUSY).
    #[error("removing cgroup {}: {err}", .path.display())]
    Remove { path: PathBuf, err: io::Error },

    /// Listing a cgroup directory failed.
    #[error("listing cgroup {}: {err}", .path.display())]
    List { path: PathBuf, err: io::Error },

    /// chown of a cgroup directory or interface file failed.
    #[error("changing owner of {} to {uid}:{gid}: {err}", .path.display())]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        err: io::Error,
    },

    /// A cgroupfs file held something other than what the kernel documents.
    #[error("parsing {}: unexpected content {content:?}", .path.display())]
    Parse { path: PathBuf, content: String },

    /// A line of /proc/self/mountinfo could not be parsed.
    #[error("parsing mountinfo: malformed line {line:?}")]
    Mountinfo { line: String },

    /// A line of /proc/self/cgroup could not be parsed.
    #[error("parsing /proc/self/cgroup: malformed line {line:?}")]
    SelfCgroup { line: String },

    /// Neither a v1 nor a v2 hierarchy is mounted where this process can see it.
    #[error("no cgroup hierarchy is mounted (checked mountinfo against /proc/self/cgroup)")]
    NoHierarchy,

    /// A group or container name is not a single safe path component.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// A limit is outside what the kernel accepts or what makes sense.
    #[error("invalid limit {field} = {value}: {reason}")]
    InvalidLimit {
        field: &'static str,
        value: u64,
        reason: &'static str,
    },

    /// A limit was requested for a controller this host does not offer to the daemon.
    #[error(
        "cannot set {field}: the {controller} controller is not available to the daemon's cgroup"
    )]
    ControllerUnavailable {
        field: &'static str,
        controller: &'static str,
    },

    /// `create` found the container's cgroup already present.
    #[error("cgroup {} already exists (open and remove it first)", .path.display())]
    AlreadyExists { path: PathBuf },

    /// `open` found no cgroup for the container in any hierarchy.
    #[error("no cgroup for container {name:?} under {}", .base.display())]
    NotFound { name: String, base: PathBuf },

    /// Neither a v2 `cgroup.freeze` nor a v1 freezer hierarchy exists for the container.
    #[error("cannot freeze container {name:?}: no v2 cgroup.freeze and no v1 freezer hierarchy")]
    FreezerUnavailable { name: String },

    /// The freezer did not reach the wanted state in time.
    #[error("{} did not become {want} within {waited_ms} ms (last seen {last:?})", .path.display())]
    FreezeTimeout {
        path: PathBuf,
        want: &'static str,
        last: String,
        waited_ms: u64,
    },

    /// A pid that is not a process id (0 would move or kill the caller itself).
    #[error("invalid pid {pid}: not a process id")]
    InvalidPid { pid: i32 },

    /// kill(2) failed with something other than ESRCH.
    #[error("sending SIGKILL to pid {pid}: {err}")]
    Kill { pid: i32, err: nix::errno::Errno },

    /// Processes survived every kill round.
    #[error("{count} process(es) still in {} after killing (pids {pids:?})", .path.display())]
    KillIncomplete {
        path: PathBuf,
        count: usize,
        pids: Vec<i32>,
    },
}
