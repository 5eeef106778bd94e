//! cgroup manager of the node agent: one cgroup per container, beneath the daemon's own.
//!
//! Works on cgroup v1, v2 and hybrid hosts. Hierarchies are found by joining
//! `/proc/self/mountinfo` with `/proc/self/cgroup`; both are parameters
//! ([`CgroupManager::from_parts`]) so tests run against temporary directories.
//!
//! ```text
//! CgroupManager::detect("shoal-a")
//!   └─ create("web", &limits) ──► ContainerCgroup
//!        mkdir <own>/shoal-a/web in every hierarchy (v1 controllers, name=systemd, unified)
//!        limits: v1 memory/cpu/pids if mounted, else v2 memory.max/cpu.max/pids.max
//!   attach(pid) → chown(root uid) → usage() / freeze() / thaw()
//!   kill_all()  (v2 cgroup.kill where a v2 dir exists, else freezer + SIGKILL rounds)
//!   remove()    (rmdir everywhere, idempotent)
//! ```
//!
//! Hand-written on purpose: youki's `libcgroups` was considered and rejected for its
//! dependency weight; what we need is a few hundred lines over `std::fs`. No `unsafe`
//! here: signals go through `nix`.

mod container;
mod control;
mod error;
mod fsio;
mod hierarchy;
mod limits;
mod manager;

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod live_tests;

pub use container::ContainerCgroup;
pub use error::CgroupError;
pub use hierarchy::CgroupVersion;
pub use limits::{Limits, Usage, CPU_PERIOD_US, MIN_CPU_MILLICORES};
pub use manager::CgroupManager;
