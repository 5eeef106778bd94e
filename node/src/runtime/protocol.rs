//! The control protocol between the daemon and a container's monitor.
//!
//! One `SOCK_SEQPACKET` unix socket per container at `<run_dir>/<name>.sock`. SEQPACKET
//! keeps message boundaries, so every message is exactly one JSON document, and file
//! descriptors ride along with SCM_RIGHTS. Each connection carries one request:
//!
//! ```text
//! daemon                          monitor
//!   State ─────────────────────────► State{status, init_pid, usage, fenced}
//!   Stop{timeout_ms, force} ───────► Done            (after init is gone and cleaned up)
//!   Freeze / Thaw ─────────────────► Done
//!   SetFence{fence} ───────────────► Done            (fencing policy, see lease.rs)
//!   Exec{argv, env, ...} ──────────► ExecStarted{pid} + fds (stdin, stdout[, stderr])
//!                                    ... later: ExecExit{code}
//!   any ───────────────────────────► Error{step, errno, detail}
//! ```
//!
//! Socket paths may exceed the 108 bytes of `sun_path` (data dirs can be deep), so both
//! sides address the socket as `/proc/self/fd/<dirfd>/<name>.sock` through an `O_PATH` fd
//! of the run dir, which is always short.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{
    accept4, bind, connect, listen, recvmsg, sendmsg, socket, AddressFamily, Backlog,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::config::socket_name;
use super::types::{ContainerStatus, ExecRequest};

/// Largest message either side sends (exec requests carry argv and env).
pub(crate) const MAX_MESSAGE: usize = 128 * 1024;

/// A request from the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    State,
    Stop { timeout_ms: u64, force: bool },
    Freeze,
    Thaw,
    SetFence { fence: bool },
    Exec(ExecRequest),
}

/// Usage counters on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireUsage {
    pub(crate) memory_bytes: u64,
    pub(crate) cpu_nanos: u64,
    pub(crate) pids: u64,
}

/// A failure inside the monitor or the container child: the step, the errno and a detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) step: String,
    pub(crate) errno: i32,
    pub(crate) detail: String,
}

impl WireError {
    pub(crate) fn new(step: impl Into<String>, errno: Errno, detail: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            errno: errno as i32,
            detail: detail.into(),
        }
    }
}

/// A reply from the monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum Reply {
    State {
        status: ContainerStatus,
        init_pid: i32,
        usage: Option<WireUsage>,
        /// The monitor has fenced init (lease expired); it is exiting.
        #[serde(default)]
        fenced: bool,
    },
    Done,
    ExecStarted {
        pid: i32,
    },
    ExecExit {
        code: i32,
    },
    Error(WireError),
}

/// Why a message could not be received.
#[derive(Debug)]
pub(crate) enum RecvError {
    Os(Errno),
    /// The peer closed the connection.
    Closed,
    Truncated,
    /// Not valid JSON for the expected type (read through `Debug` in error messages).
    #[allow(dead_code)]
    Decode(String),
}

/// Sends one message with optional file descriptors.
pub(crate) fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[RawFd],
) -> Result<(), Errno> {
    let bytes = serde_json::to_vec(msg).map_err(|_| Errno::EINVAL)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(Errno::EMSGSIZE);
    }
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one message and the file descriptors sent with it (close-on-exec).
pub(crate) fn recv<T: serde::de::DeserializeOwned>(
    sock: BorrowedFd<'_>,
    nonblocking: bool,
) -> Result<(T, Vec<OwnedFd>), RecvError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let (bytes, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RecvError::Os(e)),
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw.into_iter().map(own_fd));
                        }
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (msg.bytes, fds, truncated);
            }
        }
    };
    if truncated {
        return Err(RecvError::Truncated);
    }
    if bytes == 0 {
        return Err(RecvError::Closed);
    }
    let msg =
        serde_json::from_slice(&buf[..bytes]).map_err(|e| RecvError::Decode(e.to_string()))?;
    Ok((msg, fds))
}

/// Takes ownership of a descriptor the kernel just installed for us (SCM_RIGHTS, accept).
fn own_fd(raw: RawFd) -> OwnedFd {
    crate::sys::own_new_fd(raw)
}

/// An `O_PATH` fd of the run dir and the short socket path through it.
fn short_path(run_dir: &Path, name: &str) -> Result<(OwnedFd, String), Errno> {
    let dir = open(
        run_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), socket_name(name));
    Ok((dir, path))
}

/// Connects to the monitor of `name`.
pub(crate) fn connect_to(run_dir: &Path, name: &str) -> Result<OwnedFd, Errno> {
    let (_dir, path) = short_path(run_dir, name)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path.as_str())?;
    loop {
        match connect(sock.as_raw_fd(), &addr) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(sock),
        }
    }
}

/// Binds and listens on the socket of `name`, replacing a stale socket file.
pub(crate) fn listen_at(run_dir: &Path, name: &str) -> Result<OwnedFd, Errno> {
    let (dir, path) = short_path(run_dir, name)?;
    match nix::unistd::unlinkat(
        &dir,
        socket_name(name).as_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(path.as_str())?;
    bind(sock.as_raw_fd(), &addr)?;
    listen(&sock, Backlog::new(64).unwrap_or(Backlog::MAXCONN))?;
    Ok(sock)
}

/// Removes the socket file of `name` (the monitor does this before it exits).
pub(crate) fn unlink_socket(run_dir: &Path, name: &str) -> Result<(), Errno> {
    let (dir, _) = short_path(run_dir, name)?;
    match nix::unistd::unlinkat(
        &dir,
        socket_name(name).as_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts one pending connection (`None` if there is none).
pub(crate) fn accept_one(listener: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => Ok(Some(own_fd(fd))),
        Err(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn messages_round_trip_with_fds() {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let req = Request::Stop {
            timeout_ms: 5,
            force: true,
        };
        send(a.as_fd(), &req, &[r.as_raw_fd()]).unwrap();
        send(a.as_fd(), &Request::State, &[]).unwrap();
        let (got, fds): (Request, _) = recv(b.as_fd(), false).unwrap();
        assert_eq!(got, req);
        assert_eq!(fds.len(), 1);
        let (got, fds): (Request, _) = recv(b.as_fd(), false).unwrap();
        assert_eq!(got, Request::State);
        assert!(fds.is_empty());
        assert!(matches!(
            recv::<Request>(b.as_fd(), true),
            Err(RecvError::Os(Errno::EAGAIN))
        ));
        drop(a);
        assert!(matches!(
            recv::<Request>(b.as_fd(), false),
            Err(RecvError::Closed)
        ));
    }

    #[test]
    fn reply_json_shape() {
        let r = Reply::Error(WireError::new("mount proc", Errno::EPERM, "x"));
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"reply\":\"error\""), "{s}");
        assert_eq!(serde_json::from_str::<Reply>(&s).unwrap(), r);
    }

    #[test]
    fn long_run_dirs_work() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x".repeat(100)).join("y".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let name = "c".repeat(63);
        let l = listen_at(&deep, &name).unwrap();
        let c = connect_to(&deep, &name).unwrap();
        let s = loop {
            if let Some(s) = accept_one(l.as_fd()).unwrap() {
                break s;
            }
        };
        send(c.as_fd(), &Request::Freeze, &[]).unwrap();
        let (got, _): (Request, _) = recv(s.as_fd(), false).unwrap();
        assert_eq!(got, Request::Freeze);
        unlink_socket(&deep, &name).unwrap();
        assert_eq!(connect_to(&deep, &name).unwrap_err(), Errno::ENOENT);
    }
}
