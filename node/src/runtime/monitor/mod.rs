//! `shoald monitor`: the per-container supervisor process.
//!
//! ```text
//! daemon ──spawn──► shoald monitor <containers_dir> <run_dir> <cgroup_group> <name>
//!                     └─fork──► monitor (setsid; the first process exits at once, so the
//!                                monitor is neither the daemon's child nor in its session)
//!                                subreaper, non-dumpable, flock(monitor.lock), signalfd,
//!                                bind <run_dir>/<name>.sock, launch (launch.rs),
//!                                write state.json, print "ok <init pid>" on stdout
//!                                (the daemon's pipe), then serve (event_loop.rs)
//! ```
//!
//! The monitor is single-threaded (dispatched before anything else in `main`), which is
//! what makes clone/fork and setns into the container's mount namespace safe. It outlives
//! the daemon; a restarted daemon finds it again through the socket.

mod cgjoin;
mod child;
mod console;
mod entry;
mod event_loop;
mod exec;
mod hardening;
mod launch;
mod rootfs;

pub use entry::monitor_main;
pub(crate) use entry::{DEFAULT_PATH, REPORT_ERR, REPORT_OK};
pub use hardening::{DENIED_SYSCALLS, DROPPED_CAPS};
