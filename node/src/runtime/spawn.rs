//! Starting a monitor: `shoald monitor ...` exec'd through a read-only view of the binary,
//! double-forked away from the daemon, reporting on a pipe whether init runs.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;

use super::config::{ContainerPaths, RuntimeConfig};
use super::error::RuntimeError;
use super::monitor::{DEFAULT_PATH, REPORT_ERR, REPORT_OK};
use super::protocol::WireError;
use crate::sys;

/// Spawns the monitor of `name` and waits for its one-line report: returns once init
/// has been exec'd, or with the failed step.
pub(crate) fn spawn_monitor(
    cfg: &RuntimeConfig,
    exe: &OwnedFd,
    name: &str,
    paths: &ContainerPaths,
) -> Result<(), RuntimeError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.monitor_log())
        .map_err(|e| RuntimeError::io(name, "opening monitor.log", paths.monitor_log(), e))?;
    let exe_path = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let mut child = Command::new(&exe_path)
        .arg0("shoald")
        .arg("monitor")
        .arg(&cfg.containers_dir)
        .arg(&cfg.run_dir)
        .arg(&cfg.cgroup_group)
        .arg(name)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|err| RuntimeError::Spawn {
            name: name.into(),
            exe: cfg.shoald_exe.clone(),
            err,
        })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    // The first process exits right after forking the monitor.
    let _ = child.wait();
    parse_report(name, line.trim_end(), paths)
}

/// A read-only detached mount of the shoald binary (CVE-2019-5736): exec'ing through it
/// makes /proc/<pid>/exe of every monitor (and of every process forked from one) point
/// into a read-only mount, so it cannot be opened for writing even by a privileged
/// container's root. Falls back to the plain file where the new mount API is refused.
pub(crate) fn readonly_exe(path: &Path) -> Result<OwnedFd, RuntimeError> {
    let fail = |e: Errno| RuntimeError::io("-", "opening the shoald binary", path, e.into());
    match sys::open_tree(None, path, sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC) {
        Ok(fd) => {
            let attr = sys::MountAttr {
                set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV,
                clr: 0,
                userns: None,
            };
            sys::mount_setattr_fd(Some(std::os::fd::AsFd::as_fd(&fd)), Path::new(""), 0, &attr)
                .map_err(fail)?;
            Ok(fd)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no read-only mount of the shoald binary; monitors exec the plain file");
            let file = fs::File::open(path)
                .map_err(|e| RuntimeError::io("-", "opening the shoald binary", path, e))?;
            Ok(file.into())
        }
    }
}

fn parse_report(name: &str, line: &str, paths: &ContainerPaths) -> Result<(), RuntimeError> {
    if let Some(rest) = line.strip_prefix(REPORT_OK) {
        if rest.trim().parse::<i32>().is_ok() {
            return Ok(());
        }
    }
    if let Some(json) = line.strip_prefix(REPORT_ERR) {
        if let Ok(e) = serde_json::from_str::<WireError>(json.trim()) {
            return Err(RuntimeError::Setup {
                name: name.into(),
                step: e.step,
                errno: Errno::from_raw(e.errno),
                detail: e.detail,
            });
        }
    }
    let log = fs::read_to_string(paths.monitor_log()).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
    Err(RuntimeError::MonitorDied {
        name: name.into(),
        log_tail: if line.is_empty() {
            tail
        } else {
            format!("{line}; {tail}")
        },
    })
}
