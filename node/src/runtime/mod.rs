//! The container runtime: system containers (busybox init as PID 1), unprivileged by
//! default, each supervised by its own `shoald monitor` process.
//!
//! ```text
//! daemon (tokio, multi-threaded)          monitor (one per container, single-threaded)
//!   Runtime::create   dirs, id range, config.json
//!   Runtime::start  ──spawn──► shoald monitor ... ──clone3──► container init
//!                   ◄─"ok <pid>" on a pipe───┘        (namespaces, idmapped overlay,
//!   state/stop/freeze/exec ──unix socket──► monitor     cgroups, caps, seccomp)
//! ```
//!
//! See `docs/runtime.md` for the design decisions (namespaces, id maps, overlay, the
//! capability and seccomp lists, the monitor protocol, lease fencing and the CVE
//! defences).

mod api;
mod client;
mod config;
mod error;
mod exec_session;
mod idmap;
mod layer;
mod lease;
mod monitor;
mod protocol;
mod spawn;
mod types;

pub use api::Runtime;
pub use config::{ContainerConfig, RuntimeConfig};
pub use error::RuntimeError;
pub use exec_session::{ExecControl, ExecSession, TtyResizer};
pub use idmap::{IdRange, IdmapAllocator, IDMAP_BASE, IDMAP_SIZE};
pub use layer::Layer;
pub use monitor::{monitor_main, DENIED_SYSCALLS, DROPPED_CAPS};
pub use types::{ContainerState, ContainerStatus, ExecRequest};
