//! The runtime's public data types: observed state and exec requests.

use serde::{Deserialize, Serialize};

use crate::cgroups::Usage;

/// What a container is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    Stopped,
    Running,
    Frozen,
}

/// Observed state of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// Host pid of init while running.
    pub init_pid: Option<i32>,
    /// Exit code of init's last run (128 + signal if killed), once stopped.
    pub exit_code: Option<i32>,
    /// Why it stopped (or is stopping): its monitor SIGKILLed init because the host's
    /// lease expired (see `Runtime::renew_lease`). The exit code is then 137.
    pub fenced: bool,
    pub usage: Option<Usage>,
}

impl ContainerState {
    /// A stopped container that has not run (or whose last exit is unknown).
    pub fn stopped() -> Self {
        Self {
            status: ContainerStatus::Stopped,
            init_pid: None,
            exit_code: None,
            fenced: false,
            usage: None,
        }
    }
}

/// A command to run in a running container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (default `/`).
    pub cwd: Option<String>,
    /// Container uid and gid to run as.
    pub uid: u32,
    pub gid: u32,
    /// `Some((rows, cols))` for a terminal; stdin/stdout are then the pty master.
    pub tty: Option<(u16, u16)>,
}
