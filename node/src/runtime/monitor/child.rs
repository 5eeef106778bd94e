//! The container child: what runs between `clone3()` and `execve("/sbin/init")`.
//!
//! It runs in a copy of the monitor's memory (single-threaded, so allocation is safe) and
//! in new user, pid, mount, uts, ipc and net namespaces, born in the container's v2 cgroup.
//! The monitor releases it over a socketpair with the image mount (idmapped once the
//! monitor has written our uid/gid maps); the child then joins the v1 cgroups itself and
//! only afterwards unshares the cgroup namespace (its root is fixed when it is created).
//! Any failure is sent to the monitor as a [`WireError`] on a close-on-exec pipe; a
//! successful exec closes that pipe, which is how the monitor learns that init runs.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use super::super::protocol::{self, RecvError, WireError};
use super::cgjoin::CgroupJoin;
use super::{hardening, rootfs};
use crate::sys::{self, RealSys, Sys};

/// Messages between the monitor and the child, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Handshake {
    /// Monitor to child, with the image mount fd.
    Image,
    /// Child to monitor, with an `O_PATH` fd of the overlay root: the monitor holds the
    /// overlay's superblock alive, so that init's exit does not have to unmount it. An
    /// overlay unmount syncs the whole upper filesystem (the host's), which under write
    /// load takes tens of milliseconds or more; the monitor pays it after the stop is done.
    RootfsPin,
}

/// Everything the child needs, prepared by the monitor before clone.
pub(crate) struct ChildPlan {
    pub(crate) name: String,
    /// Whether the child is in a new user namespace (unprivileged container).
    pub(crate) userns: bool,
    /// The container directory; all mount paths are relative to it. A path, not an fd:
    /// an fd opened before clone points into the host's mount namespace.
    pub(crate) dir: PathBuf,
    /// The console pty slave, used as init's stdio.
    pub(crate) console_slave: OwnedFd,
    /// Its path (`/dev/pts/N`), bound to /dev/console: resolved by path, the bind source
    /// lies in the child's own copy of the host mounts, as mount(MS_BIND) requires.
    pub(crate) console_path: PathBuf,
    /// cgroup hierarchy labels to mount inside (from the cgroup manager).
    pub(crate) cgroup_labels: Vec<String>,
    /// How the child joins the v1 hierarchies (it is born in the v2 cgroup).
    pub(crate) join: CgroupJoin,
    /// init's environment (`KEY=value`).
    pub(crate) env: Vec<CString>,
    pub(crate) seccomp: BpfProgram,
}

/// Runs the child side; never returns (exec or `_exit(1)`).
pub(crate) fn run(plan: &ChildPlan, sock: BorrowedFd<'_>, errpipe: BorrowedFd<'_>) -> ! {
    let err = match setup(plan, sock) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let bytes = serde_json::to_vec(&err).unwrap_or_default();
    let _ = nix::unistd::write(errpipe, &bytes);
    sys::exit_now(1)
}

fn fail(step: &'static str) -> impl Fn(Errno) -> WireError {
    move |e| WireError::new(step, e, "")
}

fn wait_release(sock: BorrowedFd<'_>, want: Handshake) -> Result<Vec<OwnedFd>, WireError> {
    match protocol::recv::<Handshake>(sock, false) {
        Ok((got, fds)) if got == want => Ok(fds),
        Ok((got, _)) => Err(WireError::new(
            "waiting for the monitor",
            Errno::EPROTO,
            format!("expected {want:?}, got {got:?}"),
        )),
        Err(RecvError::Os(e)) => Err(WireError::new("waiting for the monitor", e, "")),
        Err(other) => Err(WireError::new(
            "waiting for the monitor",
            Errno::EPIPE,
            format!("{other:?}"),
        )),
    }
}

fn setup(plan: &ChildPlan, sock: BorrowedFd<'_>) -> Result<Infallible, WireError> {
    let image = wait_release(sock, Handshake::Image)?
        .into_iter()
        .next()
        .ok_or_else(|| WireError::new("receiving the image mount", Errno::EBADF, ""))?;
    // Enter the container dir while still host uid 0: it may sit below 0700 directories
    // that the mapped root could not traverse.
    nix::unistd::chdir(&plan.dir).map_err(|e| {
        WireError::new(
            "entering the container directory",
            e,
            plan.dir.display().to_string(),
        )
    })?;
    if plan.userns {
        let root_g = Gid::from_raw(0);
        let root_u = Uid::from_raw(0);
        nix::unistd::setresgid(root_g, root_g, root_g).map_err(fail("setresgid 0"))?;
        nix::unistd::setresuid(root_u, root_u, root_u).map_err(fail("setresuid 0"))?;
        nix::unistd::setgroups(&[]).map_err(fail("setgroups"))?;
    }
    // Into the v1 cgroups before anything else is charged; the cgroup namespace below
    // must be created after this (its root is fixed at creation).
    plan.join.join_v1_self()?;
    let real = RealSys;
    rootfs::mount_overlay(&real, image.as_fd(), plan.userns)?;
    drop(image);
    let pin = nix::fcntl::open(
        super::super::config::ROOTFS,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("opening the rootfs"))?;
    protocol::send(sock, &Handshake::RootfsPin, &[pin.as_raw_fd()])
        .map_err(fail("pinning the rootfs"))?;
    drop(pin);
    rootfs::mount_dev(&real, Some(&plan.console_path))?;
    rootfs::mount_proc_sys(&real)?;
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(fail("unsharing the cgroup namespace"))?;
    rootfs::mount_cgroups(&real, &plan.cgroup_labels)?;
    rootfs::pivot(&real)?;
    real.sethostname(&plan.name).map_err(fail("sethostname"))?;
    sys::loopback_up().map_err(fail("bringing up lo"))?;
    nix::unistd::setsid().map_err(fail("setsid"))?;
    let slave = plan.console_slave.as_fd();
    sys::set_controlling_tty(slave).map_err(fail("setting the console as controlling tty"))?;
    nix::unistd::dup2_stdin(slave).map_err(fail("dup2 console to stdin"))?;
    nix::unistd::dup2_stdout(slave).map_err(fail("dup2 console to stdout"))?;
    nix::unistd::dup2_stderr(slave).map_err(fail("dup2 console to stderr"))?;
    hardening::drop_capabilities()?;
    hardening::apply_seccomp(&plan.seccomp)?;
    sys::reset_signals().map_err(fail("resetting signal dispositions"))?;
    // If the monitor dies, the container dies with it: nobody would supervise it. Set
    // last, because every credential change (setresuid, capset) clears it; then make sure
    // the monitor did not die before it was set.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(fail("setting the parent death signal"))?;
    let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    {
        return Err(WireError::new(
            "checking the monitor",
            Errno::ESRCH,
            "monitor gone",
        ));
    }
    // No descriptor of the monitor may reach init (CVE-2024-21626): everything above
    // stdio is closed by the exec.
    sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).map_err(fail("close_range"))?;
    let init = c"/sbin/init";
    let errno = match nix::unistd::execve(init, &[init], &plan.env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(WireError::new("exec /sbin/init", errno, ""))
}

/// init's environment: defaults, then the container's own variables.
pub(crate) fn init_env(extra: &[(String, String)]) -> Vec<CString> {
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), super::DEFAULT_PATH.into()),
        ("TERM".into(), "linux".into()),
        ("container".into(), "shoal".into()),
        ("HOME".into(), "/root".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(ek, _)| ek != k);
        vars.push((k.clone(), v.clone()));
    }
    vars.into_iter()
        .filter(|(k, _)| !k.is_empty() && !k.contains('='))
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_and_overrides() {
        let env = init_env(&[
            ("PATH".into(), "/bin".into()),
            ("X".into(), "1".into()),
            ("BAD=KEY".into(), "2".into()),
            ("NUL".into(), "a\0b".into()),
        ]);
        let env: Vec<String> = env.into_iter().map(|c| c.into_string().unwrap()).collect();
        assert_eq!(
            env,
            [
                "TERM=linux",
                "container=shoal",
                "HOME=/root",
                "PATH=/bin",
                "X=1"
            ]
        );
    }
}
