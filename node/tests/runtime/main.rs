//! Integration tests of the container runtime: real containers from a busybox image.
//! They need root (namespaces, cgroups, mounts) and are skipped with a message otherwise.
//! Every test has its own directories and cgroup group and cleans up on drop.
//!
//! `isolation`: what a container sees and cannot do; `lifecycle`: start, stop, freeze,
//! persistence, adoption, deletion and errors; `robustness`: monitor failure, CVE
//! defences, live limits, async exec; `fencing`: monitors kill their container when the
//! host's lease expires.

#[path = "../common/mod.rs"]
mod common;
mod fencing;
mod isolation;
mod lifecycle;
mod robustness;

use std::fs;

/// Whitespace-separated words of `s`.
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// cgroup directories named `<group>/<name>` anywhere under /sys/fs/cgroup.
pub fn cgroup_dirs_named(group: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(dir: &std::path::Path, group: &str, name: &str, depth: usize, found: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || depth > 6 {
                continue;
            }
            if p.ends_with(format!("{group}/{name}")) {
                found.push(p.display().to_string());
            }
            walk(&p, group, name, depth + 1, found);
        }
    }
    walk(
        std::path::Path::new("/sys/fs/cgroup"),
        group,
        name,
        0,
        &mut found,
    );
    found
}
