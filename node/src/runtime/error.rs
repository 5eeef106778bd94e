//! The one error type of the container runtime.
//!
//! Every variant names the container and the step that failed; OS failures carry the errno
//! (or the `io::Error`) and the path involved. Failures inside the monitor or the container
//! child travel back as [`WireError`](super::protocol::WireError) and become
//! [`RuntimeError::Setup`] or [`RuntimeError::Monitor`].

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroups::CgroupError;

/// Errors of [`super::Runtime`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container name is not a valid hostname-like label.
    #[error("invalid container name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// A configuration value is unusable.
    #[error("container {name}: invalid configuration: {field}: {reason}")]
    InvalidConfig {
        name: String,
        field: &'static str,
        reason: String,
    },

    /// No container of that name exists.
    #[error("container {name} not found")]
    NotFound { name: String },

    /// `create` found a container of that name with a different configuration.
    #[error("container {name} already exists with a different configuration")]
    AlreadyExists { name: String },

    /// `start` on a running container.
    #[error("container {name} is already running")]
    AlreadyRunning { name: String },

    /// An operation that needs a running container found it stopped.
    #[error("container {name} is not running")]
    NotRunning { name: String },

    /// `delete` on a running container.
    #[error("container {name} is running (stop it before deleting)")]
    StillRunning { name: String },

    /// A file or directory operation on the host failed.
    #[error("container {name}: {step} {}: {err}", .path.display())]
    Io {
        name: String,
        step: &'static str,
        path: PathBuf,
        err: io::Error,
    },

    /// A syscall made by the daemon-side runtime failed.
    #[error("container {name}: {step}: {errno}")]
    Sys {
        name: String,
        step: &'static str,
        errno: Errno,
    },

    /// A stored JSON file (config, state, id map) could not be read or written.
    #[error("container {name}: {step} {}: {err}", .path.display())]
    Json {
        name: String,
        step: &'static str,
        path: PathBuf,
        err: serde_json::Error,
    },

    /// Every host id range is taken.
    #[error("container {name}: no free host id range left ({used} ranges of {size} ids in use)")]
    IdmapExhausted {
        name: String,
        used: usize,
        size: u32,
    },

    /// A cgroup operation failed.
    #[error("container {name}: {step}: {err}")]
    Cgroup {
        name: String,
        step: &'static str,
        err: CgroupError,
    },

    /// The monitor process could not be spawned.
    #[error("container {name}: spawning monitor {}: {err}", .exe.display())]
    Spawn {
        name: String,
        exe: PathBuf,
        err: io::Error,
    },

    /// The monitor exited without reporting whether the container started.
    #[error("container {name}: monitor exited during start without a report ({log_tail})")]
    MonitorDied { name: String, log_tail: String },

    /// Building or starting the container failed in the monitor or the container child.
    #[error("container {name}: start failed at {step}: {errno}{}", fmt_detail(.detail))]
    Setup {
        name: String,
        step: String,
        errno: Errno,
        detail: String,
    },

    /// The monitor refused or failed a request (stop, freeze, exec, ...).
    #[error("container {name}: {op} failed at {step}: {errno}{}", fmt_detail(.detail))]
    Monitor {
        name: String,
        op: &'static str,
        step: String,
        errno: Errno,
        detail: String,
    },

    /// The monitor answered something the protocol does not allow at this point.
    #[error("container {name}: unexpected reply from the monitor to {op}: {got}")]
    Protocol {
        name: String,
        op: &'static str,
        got: String,
    },

    /// The monitor did not answer in time.
    #[error("container {name}: no answer from the monitor to {op} within {waited_ms} ms")]
    Timeout {
        name: String,
        op: &'static str,
        waited_ms: u64,
    },

    /// `start` of a fencing container while the host's lease has expired: its monitor
    /// would kill it at once (the cluster may already run it elsewhere).
    #[error(
        "container {name}: the host's lease expired at {expired_at_ms} (unix ms): \
         renew it before starting a container that fences"
    )]
    LeaseExpired { name: String, expired_at_ms: i64 },

    /// `resize` on an exec session without a terminal.
    #[error("container {name}: exec session has no terminal to resize")]
    NoTerminal { name: String },
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl RuntimeError {
    pub(crate) fn io(
        name: &str,
        step: &'static str,
        path: impl Into<PathBuf>,
        err: io::Error,
    ) -> Self {
        Self::Io {
            name: name.to_string(),
            step,
            path: path.into(),
            err,
        }
    }

    pub(crate) fn sys(name: &str, step: &'static str, errno: Errno) -> Self {
        Self::Sys {
            name: name.to_string(),
            step,
            errno,
        }
    }

    pub(crate) fn cgroup(name: &str, step: &'static str, err: CgroupError) -> Self {
        Self::Cgroup {
            name: name.to_string(),
            step,
            err,
        }
    }
}
