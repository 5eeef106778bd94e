//! The per-daemon cgroup manager: where the base cgroups live and how containers get one.
//!
//! ```text
//! <own cgroup>/                 the daemon's cgroup in each hierarchy (never written)
//! └── <group_name>/             base, e.g. "shoal-a"; v2: controllers enabled for children
//!     └── <container>/          one per container, in every hierarchy
//! ```
//!
//! Several daemons share one machine in tests, so each passes its own `group_name`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::container::ContainerCgroup;
use super::error::CgroupError;
use super::fsio::{mkdir, read_opt, read_string, rmdir_tree, write_raw, write_value};
use super::hierarchy::{discover, version_of, CgroupVersion, Flavor, Hierarchy};
use super::limits::Limits;

/// Controllers enabled on v2 for container cgroups (when the host offers them there).
const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// v1 interface files without a dot, which a cgroup name must not shadow.
const V1_DOTLESS_FILES: [&str; 3] = ["tasks", "notify_on_release", "release_agent"];

/// Creates and opens container cgroups beneath the daemon's own cgroups.
#[derive(Clone, Debug)]
pub struct CgroupManager {
    group_name: String,
    version: CgroupVersion,
    /// The daemon's own cgroup per hierarchy.
    own: Vec<Hierarchy>,
}

impl CgroupManager {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup` of the running process.
    pub fn detect(group_name: &str) -> Result<Self, CgroupError> {
        let mountinfo = read_string(Path::new("/proc/self/mountinfo"))?;
        let self_cgroup = read_string(Path::new("/proc/self/cgroup"))?;
        Self::from_parts(&mountinfo, &self_cgroup, None, group_name)
    }

    /// Builds a manager from the text of mountinfo and /proc/self/cgroup. With `prefix`,
    /// every mount point is taken relative to it (tests use a temporary directory).
    pub fn from_parts(
        mountinfo: &str,
        self_cgroup: &str,
        prefix: Option<&Path>,
        group_name: &str,
    ) -> Result<Self, CgroupError> {
        validate_name(group_name)?;
        let mut own = discover(mountinfo, self_cgroup, prefix)?;
        let on_v1: Vec<String> = own
            .iter()
            .filter(|h| h.flavor == Flavor::V1)
            .flat_map(|h| h.controllers.clone())
            .collect();
        for h in own.iter_mut().filter(|h| h.flavor == Flavor::V2) {
            let available = read_opt(&h.dir.join("cgroup.controllers"))?.unwrap_or_default();
            h.controllers = V2_CONTROLLERS
                .iter()
                .filter(|c| available.split_whitespace().any(|a| a == **c))
                .filter(|c| !on_v1.iter().any(|v| v == **c))
                .map(|c| c.to_string())
                .collect();
        }
        let version = version_of(&own);
        Ok(Self {
            group_name: group_name.to_string(),
            version,
            own,
        })
    }

    /// The host's cgroup layout.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The base cgroup per hierarchy: `(label, <own>/<group_name>)`.
    pub fn base_paths(&self) -> Vec<(String, PathBuf)> {
        self.bases()
            .iter()
            .map(|h| (h.label(), h.dir.clone()))
            .collect()
    }

    /// Creates the container's cgroup in every hierarchy and applies `limits`.
    ///
    /// Fails with [`CgroupError::AlreadyExists`] if it exists anywhere; on any failure the
    /// directories made by this call are removed again.
    pub fn create(&self, container: &str, limits: &Limits) -> Result<ContainerCgroup, CgroupError> {
        validate_name(container)?;
        limits.validate()?;
        self.ensure_bases()?;
        let mut made = Vec::new();
        let result = self.create_in(container, limits, &mut made);
        if result.is_err() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
            for dir in &made {
                if let Err(err) = rmdir_tree(dir, deadline) {
                    tracing::warn!(%err, "rolling back a half-created cgroup");
                }
            }
        }
        result
    }

    fn create_in(
        &self,
        container: &str,
        limits: &Limits,
        made: &mut Vec<PathBuf>,
    ) -> Result<ContainerCgroup, CgroupError> {
        let mut dirs = Vec::new();
        for base in self.bases() {
            let dir = base.dir.join(container);
            if !mkdir(&dir)? {
                return Err(CgroupError::AlreadyExists { path: dir });
            }
            made.push(dir.clone());
            if base.flavor == Flavor::V1 && base.has("cpuset") {
                init_cpuset(&dir)?;
            }
            dirs.push(base.with_dir(dir));
        }
        let cgroup = ContainerCgroup::new(container, dirs);
        cgroup.set_limits(limits)?;
        Ok(cgroup)
    }

    /// Opens an existing container cgroup (adoption after a daemon restart). Only the
    /// hierarchies where the directory exists are included.
    pub fn open(&self, container: &str) -> Result<ContainerCgroup, CgroupError> {
        validate_name(container)?;
        let dirs: Vec<Hierarchy> = self
            .bases()
            .iter()
            .filter(|b| b.dir.join(container).is_dir())
            .map(|b| b.with_dir(b.dir.join(container)))
            .collect();
        if dirs.is_empty() {
            return Err(CgroupError::NotFound {
                name: container.to_string(),
                base: self
                    .bases()
                    .first()
                    .map(|b| b.dir.clone())
                    .unwrap_or_default(),
            });
        }
        Ok(ContainerCgroup::new(container, dirs))
    }

    /// Removes the base cgroups (missing ones count as removed). Fails while a container
    /// cgroup still exists below them.
    pub fn remove_base(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for base in self.bases() {
            match fs::remove_dir(&base.dir) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => {
                    first_err.get_or_insert(CgroupError::Remove {
                        path: base.dir.clone(),
                        err,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn bases(&self) -> Vec<Hierarchy> {
        self.own
            .iter()
            .map(|h| h.with_dir(h.dir.join(&self.group_name)))
            .collect()
    }

    /// Makes the base cgroups exist and, on v2, able to give controllers to containers.
    fn ensure_bases(&self) -> Result<(), CgroupError> {
        for (own, base) in self.own.iter().zip(self.bases()) {
            mkdir(&base.dir)?;
            match own.flavor {
                Flavor::V1 if own.has("cpuset") => init_cpuset(&base.dir)?,
                Flavor::V1 => {}
                Flavor::V2 => {
                    enable_controllers(&own.dir, &own.controllers)?;
                    enable_controllers(&base.dir, &own.controllers)?;
                }
            }
        }
        Ok(())
    }
}

/// Adds `controllers` to `dir/cgroup.subtree_control` unless they are already enabled.
fn enable_controllers(dir: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    let enabled = read_opt(&path)?.unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let value = missing.join(" ");
    write_raw(&path, &value).map_err(|err| CgroupError::EnableControllers { path, value, err })
}

/// A new v1 cpuset cgroup starts with no cpus and mems, and attaching fails with ENOSPC
/// until they are set: copy the parent's.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let Some(current) = read_opt(&path)? else {
            continue;
        };
        if !current.trim().is_empty() {
            continue;
        }
        let Some(parent) = dir.parent() else { continue };
        let value = read_string(&parent.join(file))?;
        write_value(&path, value.trim())?;
    }
    Ok(())
}

/// Group and container names are single path components that cannot collide with
/// interface files: ASCII letters, digits, `-` and `_`.
pub(crate) fn validate_name(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 128 {
        return bad("longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("only ASCII letters, digits, '-' and '_' are allowed");
    }
    if V1_DOTLESS_FILES.contains(&name) {
        return bad("collides with a cgroup v1 interface file");
    }
    Ok(())
}
