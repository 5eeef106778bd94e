//! Requests on the control socket (state, stop, freeze, thaw, fencing policy, exec) and
//! the replies, including the exec sessions' start and exit reports.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;

use super::super::super::protocol::{self, Reply, Request, WireError, WireUsage};
use super::super::super::types::ContainerStatus;
use super::super::exec::{self, ExecTarget};
use super::{ExecSession, Monitor};

impl Monitor {
    /// A stopping container still counts as running until init is gone.
    pub(super) fn status(&self) -> ContainerStatus {
        if self.frozen {
            ContainerStatus::Frozen
        } else {
            ContainerStatus::Running
        }
    }

    pub(super) fn reply(conn: &OwnedFd, reply: &Reply, fds: &[RawFd]) {
        let _ = protocol::send(conn.as_fd(), reply, fds);
    }

    pub(super) fn handle_conn(&mut self, conn: OwnedFd) {
        let req = match protocol::recv::<Request>(conn.as_fd(), true) {
            Ok((req, _)) => req,
            Err(protocol::RecvError::Os(Errno::EAGAIN)) => {
                self.conns.push(conn);
                return;
            }
            Err(_) => return,
        };
        let err = |step: &str, errno: Errno, detail: String| {
            Reply::Error(WireError::new(step, errno, detail))
        };
        match req {
            Request::State => {
                let usage = self.launched.cgroup.usage().ok().map(|u| WireUsage {
                    memory_bytes: u.memory_bytes,
                    cpu_nanos: u.cpu_nanos,
                    pids: u.pids,
                });
                let reply = Reply::State {
                    status: self.status(),
                    init_pid: self.launched.pid.as_raw(),
                    usage,
                    fenced: self.fenced,
                };
                Self::reply(&conn, &reply, &[]);
            }
            Request::Stop { timeout_ms, force } => {
                self.begin_stop(Duration::from_millis(timeout_ms), force, Some(conn))
            }
            Request::SetFence { fence } => {
                self.set_fence(fence);
                Self::reply(&conn, &Reply::Done, &[]);
            }
            Request::Freeze | Request::Thaw => {
                let freeze = matches!(req, Request::Freeze);
                if self.stop.is_some() || self.exit_code.is_some() {
                    Self::reply(
                        &conn,
                        &err("freezing", Errno::ESRCH, "container is stopping".into()),
                        &[],
                    );
                    return;
                }
                let result = if freeze {
                    self.launched.cgroup.freeze()
                } else {
                    self.launched.cgroup.thaw()
                };
                let reply = match result {
                    Ok(()) => {
                        self.frozen = freeze;
                        Reply::Done
                    }
                    Err(e) => err(
                        if freeze { "freezing" } else { "thawing" },
                        Errno::EIO,
                        e.to_string(),
                    ),
                };
                Self::reply(&conn, &reply, &[]);
            }
            Request::Exec(req) => {
                let refuse = if self.stop.is_some() || self.exit_code.is_some() {
                    Some((Errno::ESRCH, "container is stopping"))
                } else if self.frozen {
                    Some((Errno::EBUSY, "container is frozen"))
                } else {
                    None
                };
                if let Some((errno, why)) = refuse {
                    Self::reply(&conn, &err("exec", errno, why.into()), &[]);
                    return;
                }
                let target = ExecTarget {
                    init_pidfd: self.launched.pidfd.as_fd(),
                    init_pid: self.launched.pid,
                    join: &self.launched.join,
                    userns: !self.cfg.privileged && self.cfg.idmap.is_some(),
                    seccomp: &self.seccomp,
                    single: self.single,
                };
                match exec::spawn(&target, &req) {
                    Ok(sp) => self.execs.push(ExecSession {
                        conn,
                        helper: sp.helper,
                        errpipe: Some(sp.errpipe),
                        daemon_fds: sp.daemon_fds,
                        exit: None,
                        failed: false,
                    }),
                    Err(e) => Self::reply(&conn, &Reply::Error(e), &[]),
                }
            }
        }
    }

    /// The helper's error pipe is readable: an error, or EOF once the command exec'd.
    pub(super) fn exec_pipe_ready(&mut self, i: usize) {
        let Some(session) = self.execs.get_mut(i) else {
            return;
        };
        let Some(pipe) = session.errpipe.take() else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(&pipe, &mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            let fds: Vec<RawFd> = session.daemon_fds.iter().map(|f| f.as_raw_fd()).collect();
            let reply = Reply::ExecStarted {
                pid: session.helper.as_raw(),
            };
            Self::reply(&session.conn, &reply, &fds);
            session.daemon_fds.clear();
            if let Some(code) = session.exit {
                Self::reply(&session.conn, &Reply::ExecExit { code }, &[]);
                self.execs.swap_remove(i);
            }
        } else {
            let e = serde_json::from_slice::<WireError>(&buf).unwrap_or_else(|_| {
                WireError::new(
                    "exec",
                    Errno::EPROTO,
                    String::from_utf8_lossy(&buf).into_owned(),
                )
            });
            Self::reply(&session.conn, &Reply::Error(e), &[]);
            session.daemon_fds.clear();
            // Keep the session until the helper is reaped (it exits right away).
            if session.exit.is_some() {
                self.execs.swap_remove(i);
            } else {
                session.failed = true;
            }
        }
    }
}
