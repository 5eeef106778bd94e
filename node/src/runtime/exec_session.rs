//! A command running in a container, as the daemon holds it: its stdio, its terminal (to
//! resize), and the control connection on which the monitor reports the exit status.
//!
//! For async use, take the fields apart: `stdin`/`stdout`/`stderr` are plain pipe (or pty
//! master) descriptors, and [`ExecControl`] is readable exactly when the exit status has
//! arrived (wrap it in `tokio::io::unix::AsyncFd` and call [`ExecControl::try_exit_code`]
//! on readiness), so no thread has to block for the command's lifetime.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use super::client::{monitor_error, unexpected};
use super::error::RuntimeError;
use super::protocol::{self, RecvError, Reply};
use crate::sys;

/// The exit-status channel of an exec session.
#[derive(Debug)]
pub struct ExecControl {
    name: String,
    sock: OwnedFd,
}

impl AsFd for ExecControl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl ExecControl {
    fn decode(
        &self,
        r: Result<(Reply, Vec<OwnedFd>), RecvError>,
    ) -> Result<Option<i32>, RuntimeError> {
        let name = self.name.as_str();
        match r {
            Ok((Reply::ExecExit { code }, _)) => Ok(Some(code)),
            Ok((Reply::Error(e), _)) => Err(monitor_error(name, "exec", e)),
            Ok((other, _)) => Err(unexpected(name, "exec", &other)),
            Err(RecvError::Os(Errno::EAGAIN)) => Ok(None),
            Err(RecvError::Closed | RecvError::Os(Errno::ECONNRESET)) => {
                Err(RuntimeError::Protocol {
                    name: name.into(),
                    op: "exec",
                    got: "connection closed before the exit status (monitor gone)".into(),
                })
            }
            Err(RecvError::Os(e)) => {
                Err(RuntimeError::sys(name, "reading the exec exit status", e))
            }
            Err(other) => Err(RuntimeError::Protocol {
                name: name.into(),
                op: "exec",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Blocks until the command has exited; returns its exit code (128 + signal if it was
    /// killed by a signal).
    pub fn wait(&self) -> Result<i32, RuntimeError> {
        loop {
            if let Some(code) = self.decode(protocol::recv(self.sock.as_fd(), false))? {
                return Ok(code);
            }
        }
    }

    /// The exit code if it has arrived, without blocking.
    pub fn try_exit_code(&self) -> Result<Option<i32>, RuntimeError> {
        self.decode(protocol::recv(self.sock.as_fd(), true))
    }
}

/// Resizes the terminal of a tty exec session.
#[derive(Debug)]
pub struct TtyResizer {
    name: String,
    master: OwnedFd,
}

impl TtyResizer {
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        sys::set_winsize(self.master.as_fd(), rows, cols)
            .map_err(|e| RuntimeError::sys(&self.name, "resizing the terminal", e))
    }
}

/// A running exec. With a tty, `stdin` and `stdout` are the same pty master (duplicated)
/// and `stderr` is `None`.
#[derive(Debug)]
pub struct ExecSession {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    pub control: ExecControl,
    pub tty: Option<TtyResizer>,
    /// Host pid of the exec helper (the command's parent on the host side).
    pub helper_pid: i32,
}

impl ExecSession {
    pub(crate) fn new(
        name: &str,
        helper_pid: i32,
        tty: bool,
        fds: Vec<OwnedFd>,
        sock: OwnedFd,
    ) -> Result<Self, RuntimeError> {
        let bad = |n: usize| RuntimeError::Protocol {
            name: name.into(),
            op: "exec",
            got: format!("{n} file descriptors"),
        };
        let n = fds.len();
        let mut fds = fds.into_iter();
        let control = ExecControl {
            name: name.into(),
            sock,
        };
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| RuntimeError::io(name, "duplicating the pty master", "-", e))
        };
        if tty {
            let (Some(master), 1) = (fds.next(), n) else {
                return Err(bad(n));
            };
            Ok(Self {
                stdout: dup(&master)?,
                tty: Some(TtyResizer {
                    name: name.into(),
                    master: dup(&master)?,
                }),
                stdin: master,
                stderr: None,
                control,
                helper_pid,
            })
        } else {
            let (Some(stdin), Some(stdout), Some(stderr), 3) =
                (fds.next(), fds.next(), fds.next(), n)
            else {
                return Err(bad(n));
            };
            Ok(Self {
                stdin,
                stdout,
                stderr: Some(stderr),
                control,
                tty: None,
                helper_pid,
            })
        }
    }

    /// Resizes the terminal (tty sessions only).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        match &self.tty {
            Some(t) => t.resize(rows, cols),
            None => Err(RuntimeError::NoTerminal {
                name: self.control.name.clone(),
            }),
        }
    }

    /// Closes stdio and waits for the exit code. Close or drain stdio yourself first if the
    /// command needs EOF on stdin or might block writing a full stdout pipe.
    pub fn wait(self) -> Result<i32, RuntimeError> {
        let Self { control, .. } = self;
        control.wait()
    }
}
