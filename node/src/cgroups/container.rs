//! One container's cgroup, present in every hierarchy: attach, limits, ownership, usage,
//! removal. Freezing and killing live in `control.rs`.

use std::io::ErrorKind;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::CgroupError;
use super::fsio::{procs_recursive, rmdir_tree, write_value};
use super::hierarchy::Hierarchy;
use super::limits::{self, Limits, Usage};

/// How long `remove` retries rmdir on EBUSY (tasks still exiting).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Files an unprivileged container root needs to own to manage its own subtree
/// (v2 delegation: procs, threads, subtree_control; v1: procs, tasks, clone_children).
const DELEGATED_FILES: [&str; 5] = [
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "tasks",
    "cgroup.clone_children",
];

/// A container's cgroup directories, one per hierarchy.
#[derive(Clone, Debug)]
pub struct ContainerCgroup {
    name: String,
    pub(crate) dirs: Vec<Hierarchy>,
}

impl ContainerCgroup {
    pub(crate) fn new(name: &str, dirs: Vec<Hierarchy>) -> Self {
        Self {
            name: name.to_string(),
            dirs,
        }
    }

    /// The container name this cgroup was created or opened for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(label, directory)` per hierarchy; the label is the v1 controller list
    /// (`memory`, `cpu,cpuacct`, `name=systemd`) or `unified` for cgroup v2.
    pub fn paths(&self) -> Vec<(String, PathBuf)> {
        self.dirs
            .iter()
            .map(|h| (h.label(), h.dir.clone()))
            .collect()
    }

    /// The cgroup v2 directory, if any (for `clone3(CLONE_INTO_CGROUP)`).
    pub fn unified_path(&self) -> Option<&Path> {
        super::hierarchy::unified(&self.dirs).map(|h| h.dir.as_path())
    }

    /// Moves process `pid` (all its threads) into the container's cgroup in every hierarchy.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { pid });
        }
        let value = pid.to_string();
        for h in &self.dirs {
            write_value(&h.dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// Writes memory, cpu and pids limits; `None` fields become unlimited.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        limits::apply(&self.dirs, limits)
    }

    /// Hands the directories and their delegation files to `uid:gid` (the container's
    /// mapped root), so it can create and populate sub-cgroups itself.
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), CgroupError> {
        let change = |path: &Path| {
            chown(path, Some(uid), Some(gid)).map_err(|err| CgroupError::Chown {
                path: path.to_path_buf(),
                uid,
                gid,
                err,
            })
        };
        for h in &self.dirs {
            change(&h.dir)?;
            for file in DELEGATED_FILES {
                let path = h.dir.join(file);
                match change(&path) {
                    Ok(()) => {}
                    Err(CgroupError::Chown { err, .. }) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    }

    /// Memory, cpu time and task count of the container (sub-cgroups included).
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        limits::read_usage(&self.dirs)
    }

    /// Process ids in the container's cgroups and their sub-cgroups, in every hierarchy,
    /// sorted and without duplicates.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for h in &self.dirs {
            procs_recursive(&h.dir, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Removes the cgroup (and sub-cgroups the container made) in every hierarchy. Missing
    /// directories count as removed, so this is idempotent; EBUSY is retried briefly. All
    /// hierarchies are tried; the first error is returned.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let mut first_err = None;
        for h in &self.dirs {
            if let Err(err) = rmdir_tree(&h.dir, deadline) {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
