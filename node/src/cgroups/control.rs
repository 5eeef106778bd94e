//! Freezing, thawing and killing everything in a container's cgroup.
//!
//! cgroup v2 files are preferred where the container has a v2 directory, even on hybrid
//! hosts where the unified hierarchy has no controllers: `cgroup.freeze` and `cgroup.kill`
//! work there regardless. Otherwise the v1 freezer is used, and killing falls back to
//! freeze → SIGKILL every pid → thaw, repeated until the cgroup is empty. Freezing first
//! stops forks racing the kill and keeps pids from being reused while we signal them.
//!
//! ```text
//! kill_all:  cgroup.kill ──empty?──► done
//!               │ no / absent
//!               ▼
//!            [freeze → SIGKILL pids → thaw → wait] × KILL_ROUNDS ──► done or KillIncomplete
//! ```

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::container::ContainerCgroup;
use super::error::CgroupError;
use super::fsio::{read_string, write_value};
use super::hierarchy::{find, unified};

/// How long freeze and thaw wait for the kernel to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(3);
/// Shorter freeze wait inside the kill fallback; a half-frozen cgroup is still killable.
const KILL_FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the cgroup to empty after `cgroup.kill`.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Signal rounds of the fallback, and the wait after each.
const KILL_ROUNDS: usize = 10;
const ROUND_WAIT: Duration = Duration::from_millis(300);

/// Which freezer interface a container uses.
enum Freezer {
    /// `cgroup.freeze` / `cgroup.events` in this v2 directory.
    V2(PathBuf),
    /// `freezer.state` in this v1 directory.
    V1(PathBuf),
}

impl ContainerCgroup {
    fn freezer(&self) -> Result<Freezer, CgroupError> {
        if let Some(h) = unified(&self.dirs) {
            if h.dir.join("cgroup.freeze").exists() {
                return Ok(Freezer::V2(h.dir.clone()));
            }
        }
        match find(&self.dirs, "freezer") {
            Some(h) => Ok(Freezer::V1(h.dir.clone())),
            None => Err(CgroupError::FreezerUnavailable {
                name: self.name().to_string(),
            }),
        }
    }

    /// Freezes every process of the container and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.freeze_within(FREEZE_TIMEOUT)
    }

    fn freeze_within(&self, timeout: Duration) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V2(dir) => {
                write_value(&dir.join("cgroup.freeze"), "1")?;
                let events = dir.join("cgroup.events");
                wait_state(&events, "frozen 1", timeout, || v2_frozen(&events))
            }
            Freezer::V1(dir) => {
                let state = dir.join("freezer.state");
                // Re-writing FROZEN makes the kernel retry tasks that were busy.
                wait_state(&state, "FROZEN", timeout, || {
                    write_value(&state, "FROZEN")?;
                    v1_state(&state)
                })
            }
        }
    }

    /// Thaws the container and waits until the kernel reports it running.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V2(dir) => {
                write_value(&dir.join("cgroup.freeze"), "0")?;
                let events = dir.join("cgroup.events");
                wait_state(&events, "frozen 0", FREEZE_TIMEOUT, || {
                    v2_frozen(&events).map(|(frozen, last)| (!frozen, last))
                })
            }
            Freezer::V1(dir) => {
                let state = dir.join("freezer.state");
                write_value(&state, "THAWED")?;
                wait_state(&state, "THAWED", FREEZE_TIMEOUT, || {
                    let text = read_string(&state)?;
                    Ok((text.trim() == "THAWED", text))
                })
            }
        }
    }

    /// Whether the container is completely frozen (v1 `FREEZING` counts as not frozen).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer()? {
            Freezer::V2(dir) => v2_frozen(&dir.join("cgroup.events")).map(|(f, _)| f),
            Freezer::V1(dir) => v1_state(&dir.join("freezer.state")).map(|(f, _)| f),
        }
    }

    /// Kills every process in the container (sub-cgroups included) and waits until the
    /// cgroup is empty. Killed children of the caller still need reaping by it.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        if let Some(h) = unified(&self.dirs) {
            let file = h.dir.join("cgroup.kill");
            if file.exists() {
                write_value(&file, "1")?;
                if self.wait_empty(KILL_WAIT)? {
                    return Ok(());
                }
            }
        }
        let has_freezer = self.freezer().is_ok();
        for _ in 0..KILL_ROUNDS {
            if self.pids_except_self()?.is_empty() {
                return Ok(());
            }
            if has_freezer {
                if let Err(err) = self.freeze_within(KILL_FREEZE_TIMEOUT) {
                    tracing::debug!(%err, "freeze before kill incomplete, killing anyway");
                }
            }
            let mut kill_err = None;
            for pid in self.pids_except_self()? {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(err) => {
                        kill_err.get_or_insert(CgroupError::Kill { pid, err });
                    }
                }
            }
            // Thaw even after a failed kill: never leave the container frozen behind.
            if has_freezer {
                self.thaw()?;
            }
            if let Some(err) = kill_err {
                return Err(err);
            }
            if self.wait_empty(ROUND_WAIT)? {
                return Ok(());
            }
        }
        let pids = self.pids()?;
        if pids.is_empty() {
            return Ok(());
        }
        Err(CgroupError::KillIncomplete {
            path: self.dirs.first().map(|h| h.dir.clone()).unwrap_or_default(),
            count: pids.len(),
            pids,
        })
    }

    /// Never signal ourselves, even if someone attached the daemon by mistake.
    fn pids_except_self(&self) -> Result<Vec<i32>, CgroupError> {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let mut pids = self.pids()?;
        pids.retain(|p| *p != me);
        Ok(pids)
    }

    /// Polls until no process is left; `Ok(false)` on timeout.
    fn wait_empty(&self, timeout: Duration) -> Result<bool, CgroupError> {
        let timed_out = poll_until(timeout, || Ok((self.pids()?.is_empty(), String::new())))?;
        Ok(timed_out.is_none())
    }
}

/// `frozen` from a v2 `cgroup.events`, with the file text for error messages.
fn v2_frozen(events: &Path) -> Result<(bool, String), CgroupError> {
    let text = read_string(events)?;
    let frozen = text.lines().any(|l| l.trim() == "frozen 1");
    Ok((frozen, text))
}

/// Whether a v1 `freezer.state` reads FROZEN, with the text.
fn v1_state(state: &Path) -> Result<(bool, String), CgroupError> {
    let text = read_string(state)?;
    Ok((text.trim() == "FROZEN", text))
}

/// Waits for `check` and turns a timeout into [`CgroupError::FreezeTimeout`] on `path`.
fn wait_state(
    path: &Path,
    want: &'static str,
    timeout: Duration,
    check: impl FnMut() -> Result<(bool, String), CgroupError>,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    match poll_until(timeout, check)? {
        None => Ok(()),
        Some(last) => Err(CgroupError::FreezeTimeout {
            path: path.to_path_buf(),
            want,
            last: last.trim().to_string(),
            waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Calls `check` with growing pauses (0.1 ms up to 10 ms) until it reports true.
/// Returns `None` when it did, or the last text it saw when `timeout` ran out.
fn poll_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<(bool, String), CgroupError>,
) -> Result<Option<String>, CgroupError> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let (ok, last) = check()?;
        if ok {
            return Ok(None);
        }
        if start.elapsed() >= timeout {
            return Ok(Some(last));
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
