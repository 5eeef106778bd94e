//! Running a command inside a running container, on the monitor's side.
//!
//! ```text
//! monitor ──clone3(INTO_CGROUP v2)──► helper (host pid ns, non-dumpable)
//!                     join the v1 cgroups ("0" > tasks, see cgjoin.rs)
//!                     setgroups([]) while still host root
//!                     setns(init pidfd, USER|MNT|PID|UTS|IPC|NET|CGROUP)  (one call)
//!                     ──fork──► command (now in the container's pid ns)
//!                     close every fd,      setsid, [TIOCSCTTY], stdio, chdir(cwd),
//!                     waitpid(command),    drop caps, seccomp (+no_new_privs),
//!                     _exit(its status)    setresgid/setresuid, close fds ≥ 3, exec
//! ```
//!
//! Errors before the exec travel over a close-on-exec pipe (EOF means the exec happened).
//! The helper exits with the command's exit code (or 128 + signal), which the monitor, as
//! its parent, reaps and sends to the daemon.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::pty::Winsize;
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use seccompiler::BpfProgram;

use super::super::protocol::WireError;
use super::super::types::ExecRequest;
use super::cgjoin::CgroupJoin;
use super::hardening;
use crate::sys::{self, Forked};

/// What the monitor knows about the container an exec joins.
pub(crate) struct ExecTarget<'a> {
    pub(crate) init_pidfd: BorrowedFd<'a>,
    /// Host pid of init, to reach the container's own devpts through /proc.
    pub(crate) init_pid: Pid,
    pub(crate) join: &'a CgroupJoin,
    pub(crate) userns: bool,
    pub(crate) seccomp: &'a BpfProgram,
    pub(crate) single: sys::SingleThreaded,
}

/// A started helper: its pid, the error pipe, and the fds that go to the daemon
/// (stdin write end, stdout read end, stderr read end; or the pty master alone).
pub(crate) struct Spawned {
    pub(crate) helper: Pid,
    pub(crate) errpipe: OwnedFd,
    pub(crate) daemon_fds: Vec<OwnedFd>,
}

struct Prepared {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    uid: u32,
    gid: u32,
}

/// Exit status as a shell reports it: the code, or 128 + the signal number.
pub(crate) fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn cstring(step: &'static str, s: &str) -> Result<CString, WireError> {
    CString::new(s).map_err(|_| WireError::new(step, Errno::EINVAL, format!("{s:?} contains NUL")))
}

fn prepare(req: &ExecRequest) -> Result<Prepared, WireError> {
    let first = req
        .argv
        .first()
        .ok_or_else(|| WireError::new("checking the command", Errno::EINVAL, "empty argv"))?;
    let argv = req
        .argv
        .iter()
        .map(|a| cstring("checking the command", a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env_pairs = req.env.clone();
    if !env_pairs.iter().any(|(k, _)| k == "PATH") {
        env_pairs.push(("PATH".into(), super::DEFAULT_PATH.into()));
    }
    let path_var = env_pairs
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let env = env_pairs
        .iter()
        .filter(|(k, _)| !k.is_empty() && !k.contains('='))
        .map(|(k, v)| cstring("checking the environment", &format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let candidates = if first.contains('/') {
        vec![cstring("checking the command", first)?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| {
                cstring(
                    "checking the command",
                    &format!("{}/{first}", d.trim_end_matches('/')),
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Prepared {
        candidates,
        argv,
        env,
        cwd: cstring(
            "checking the working directory",
            req.cwd.as_deref().unwrap_or("/"),
        )?,
        uid: req.uid,
        gid: req.gid,
    })
}

fn fail(step: &'static str) -> impl Fn(Errno) -> WireError {
    move |e| WireError::new(step, e, "")
}

fn pipe() -> Result<(OwnedFd, OwnedFd), WireError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(fail("pipe"))
}

/// Forks the helper for `req`. The caller keeps `Spawned` and reaps the helper.
pub(crate) fn spawn(target: &ExecTarget<'_>, req: &ExecRequest) -> Result<Spawned, WireError> {
    let prepared = prepare(req)?;
    // (container side: stdin, stdout, stderr), (daemon side).
    let (stdio, daemon_fds): ([OwnedFd; 3], Vec<OwnedFd>) = match req.tty {
        Some((rows, cols)) => {
            let size = Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // The terminal comes from the container's own devpts (so `tty` inside names
            // a /dev/pts entry the container can see), not the host's.
            let ptmx = std::path::PathBuf::from(format!(
                "/proc/{}/root/dev/pts/ptmx",
                target.init_pid.as_raw()
            ));
            let (master, slave) =
                sys::open_pty_at(&ptmx).map_err(fail("opening a pty in the container"))?;
            sys::set_winsize(slave.as_fd(), size.ws_row, size.ws_col)
                .map_err(fail("setting the pty size"))?;
            let a = slave
                .try_clone()
                .map_err(|_| WireError::new("dup", Errno::EMFILE, ""))?;
            let b = slave
                .try_clone()
                .map_err(|_| WireError::new("dup", Errno::EMFILE, ""))?;
            ([slave, a, b], vec![master])
        }
        None => {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            ([in_r, out_w, err_w], vec![in_w, out_r, err_r])
        }
    };
    let (err_r, err_w) = pipe()?;
    let (forked, in_v2) = target
        .join
        .clone(target.single, 0)
        .map_err(fail("clone3 of the exec helper"))?;
    match forked {
        Forked::Child => {
            drop(err_r);
            drop(daemon_fds);
            let tty = req.tty.is_some();
            helper(target, &prepared, &stdio, tty, in_v2, err_w.as_fd())
        }
        Forked::Parent { pid, .. } => Ok(Spawned {
            helper: pid,
            errpipe: err_r,
            daemon_fds,
        }),
    }
}

fn report(err_w: BorrowedFd<'_>, e: &WireError) {
    let bytes = serde_json::to_vec(e).unwrap_or_default();
    let _ = nix::unistd::write(err_w, &bytes);
}

fn helper(
    target: &ExecTarget<'_>,
    p: &Prepared,
    stdio: &[OwnedFd; 3],
    tty: bool,
    in_v2: bool,
    err_w: BorrowedFd<'_>,
) -> ! {
    let joined = (|| -> Result<Pid, WireError> {
        if !in_v2 {
            target.join.join_v2(nix::unistd::getpid())?;
        }
        target.join.join_v1_self()?;
        nix::unistd::setgroups(&[]).map_err(fail("setgroups"))?;
        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP;
        if target.userns {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        setns(target.init_pidfd, flags).map_err(fail("joining the container's namespaces"))?;
        match sys::fork(target.single).map_err(fail("fork into the pid namespace"))? {
            Forked::Child => {
                let e = match command(target, p, stdio, tty) {
                    Ok(never) => match never {},
                    Err(e) => e,
                };
                report(err_w, &e);
                sys::exit_now(127)
            }
            Forked::Parent { pid, .. } => Ok(pid),
        }
    })();
    let cmd = match joined {
        Ok(pid) => pid,
        Err(e) => {
            report(err_w, &e);
            sys::exit_now(126)
        }
    };
    // Keep nothing open: not the daemon's pipes, not the monitor's sockets.
    let _ = sys::close_range(0, u32::MAX, 0);
    loop {
        match waitpid(cmd, None) {
            Err(Errno::EINTR) => continue,
            Ok(status) => match status_code(status) {
                Some(code) => sys::exit_now(code),
                None => continue,
            },
            Err(_) => sys::exit_now(125),
        }
    }
}

fn command(
    target: &ExecTarget<'_>,
    p: &Prepared,
    stdio: &[OwnedFd; 3],
    tty: bool,
) -> Result<Infallible, WireError> {
    nix::unistd::setsid().map_err(fail("setsid"))?;
    if tty {
        sys::set_controlling_tty(stdio[0].as_fd()).map_err(fail("setting the controlling tty"))?;
    }
    nix::unistd::dup2_stdin(&stdio[0]).map_err(fail("dup2 stdin"))?;
    nix::unistd::dup2_stdout(&stdio[1]).map_err(fail("dup2 stdout"))?;
    nix::unistd::dup2_stderr(&stdio[2]).map_err(fail("dup2 stderr"))?;
    nix::unistd::chdir(p.cwd.as_c_str()).map_err(|e| {
        WireError::new(
            "changing to the working directory",
            e,
            p.cwd.to_string_lossy(),
        )
    })?;
    hardening::drop_capabilities()?;
    hardening::apply_seccomp(target.seccomp)?;
    let gid = Gid::from_raw(p.gid);
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(fail("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(fail("setresuid"))?;
    sys::reset_signals().map_err(fail("resetting signal dispositions"))?;
    sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).map_err(fail("close_range"))?;
    let mut last = Errno::ENOENT;
    for path in &p.candidates {
        match nix::unistd::execve(path, &p.argv, &p.env) {
            Ok(never) => match never {},
            Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) => {
                last = if last == Errno::EACCES { last } else { e }
            }
            Err(e @ Errno::EACCES) => last = e,
            Err(e) => return Err(WireError::new("exec", e, path.to_string_lossy())),
        }
    }
    Err(WireError::new(
        "exec",
        last,
        p.argv[0].to_string_lossy().into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str], env: &[(&str, &str)]) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: None,
            uid: 0,
            gid: 0,
            tty: None,
        }
    }

    #[test]
    fn path_search_candidates() {
        let p = prepare(&req(&["ls", "-l"], &[])).unwrap();
        assert_eq!(p.candidates[0].to_str().unwrap(), "/usr/local/sbin/ls");
        assert_eq!(p.candidates.len(), 6);
        assert!(p
            .env
            .iter()
            .any(|e| e.to_str().unwrap().starts_with("PATH=")));
        assert_eq!(p.cwd.to_str().unwrap(), "/");
        let p = prepare(&req(&["x"], &[("PATH", "/a/:/b")])).unwrap();
        let c: Vec<_> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/a/x", "/b/x"]);
        let p = prepare(&req(&["./run"], &[])).unwrap();
        assert_eq!(p.candidates.len(), 1);
    }

    #[test]
    fn bad_requests() {
        assert_eq!(
            prepare(&req(&[], &[])).err().unwrap().errno,
            Errno::EINVAL as i32
        );
        assert!(prepare(&req(&["a\0b"], &[])).is_err());
    }

    #[test]
    fn status_codes() {
        let pid = Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(pid, 7)), Some(7));
        assert_eq!(
            status_code(WaitStatus::Signaled(
                pid,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            Some(137)
        );
        assert_eq!(status_code(WaitStatus::StillAlive), None);
    }
}
