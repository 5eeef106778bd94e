//! The daemon's side of the control protocol: one request, one reply, per connection.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::error::RuntimeError;
use super::protocol::{self, RecvError, Reply, Request, WireError};

/// A reply, the descriptors that came with it, and the connection (exec keeps using it).
pub(crate) struct Call {
    pub(crate) reply: Reply,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) sock: OwnedFd,
}

/// Sends `req` to the monitor of `name` and waits up to `timeout` for the reply.
/// `Ok(None)` means no monitor is there (not running, or it exited while we asked).
pub(crate) fn call(
    run_dir: &Path,
    name: &str,
    op: &'static str,
    req: &Request,
    timeout: Duration,
) -> Result<Option<Call>, RuntimeError> {
    let sock = match protocol::connect_to(run_dir, name) {
        Ok(s) => s,
        Err(Errno::ENOENT | Errno::ECONNREFUSED) => return Ok(None),
        Err(e) => return Err(RuntimeError::sys(name, "connecting to the monitor", e)),
    };
    let tv = TimeVal::new(
        timeout.as_secs() as libc::time_t,
        timeout.subsec_micros() as libc::suseconds_t,
    );
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv)
        .map_err(|e| RuntimeError::sys(name, "setting the reply timeout", e))?;
    match protocol::send(sock.as_fd(), req, &[]) {
        Ok(()) => {}
        Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => return Ok(None),
        Err(e) => {
            return Err(RuntimeError::sys(
                name,
                "sending a request to the monitor",
                e,
            ))
        }
    }
    match protocol::recv::<Reply>(sock.as_fd(), false) {
        Ok((reply, fds)) => {
            // Later reads on this connection (exec exit codes) block without a limit.
            let _ = setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(0, 0));
            Ok(Some(Call { reply, fds, sock }))
        }
        Err(RecvError::Closed | RecvError::Os(Errno::ECONNRESET)) => Ok(None),
        Err(RecvError::Os(Errno::EAGAIN)) => Err(RuntimeError::Timeout {
            name: name.into(),
            op,
            waited_ms: timeout.as_millis() as u64,
        }),
        Err(RecvError::Os(e)) => Err(RuntimeError::sys(name, "reading the monitor's reply", e)),
        Err(other) => Err(RuntimeError::Protocol {
            name: name.into(),
            op,
            got: format!("{other:?}"),
        }),
    }
}

pub(crate) fn monitor_error(name: &str, op: &'static str, e: WireError) -> RuntimeError {
    RuntimeError::Monitor {
        name: name.into(),
        op,
        step: e.step,
        errno: Errno::from_raw(e.errno),
        detail: e.detail,
    }
}

pub(crate) fn unexpected(name: &str, op: &'static str, reply: &Reply) -> RuntimeError {
    RuntimeError::Protocol {
        name: name.into(),
        op,
        got: format!("{reply:?}"),
    }
}

pub(crate) fn done(name: &str, op: &'static str, reply: Reply) -> Result<(), RuntimeError> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Error(e) => Err(monitor_error(name, op, e)),
        other => Err(unexpected(name, op, &other)),
    }
}
